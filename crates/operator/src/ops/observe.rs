//! The snapshot the state machine decides on: the database, the other requests of the same
//! database, the target certificates and their secrets, and the pods to restart.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use mssql_api::annotations;
use mssql_api::labels::{self, ROLE, ROLE_PRIMARY, selector_string};
use mssql_api::names;
use mssql_api::ops::{PHASE_PENDING, PHASE_PROGRESSING, TYPE_RECONFIGURE_TLS, TYPE_RESTART};
use mssql_api::pods::started_with;
use mssql_api::progress::Progress;
use mssql_api::validate::FieldError;
use mssql_api::validated::{Server, validated};
use mssql_api::{MssqlServer, MssqlServerOpsRequest, MssqlServerVersion};
use mssql_certs::cert_manager::{Certificate, ClusterIssuer, ISSUING, Issuer, KIND_CLUSTER_ISSUER};
use mssql_certs::inspect::{Expectations, TlsFiles, check_tls_secret, parse_certificate};

use super::machine::{CertificateState, Database, Observed, PodState};
use super::target::target_database;
use super::{Error, reading};
use crate::build::certificates::certificates;
use crate::controller::apply::applied_hash;

/// The database as the request wants it, and the Certificates of that database with their aliases.
pub async fn target(
    client: &Client,
    ops: &MssqlServerOpsRequest,
) -> Result<(MssqlServer, Vec<(String, Certificate)>), Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let db = Api::<MssqlServer>::namespaced(client.clone(), &namespace)
        .get(&ops.spec.database_ref.name)
        .await
        .map_err(reading("reading the database"))?;
    let (target, valid) = validated_target(client, &db, ops).await?;
    let certificates = match (valid, db.controller_owner_ref(&())) {
        (Ok(server), Some(owner)) => {
            // `certificates` builds one Certificate per alias, in the order of the spec.
            let aliases = server.tls.certificates.iter().map(|c| c.alias.clone());
            aliases.zip(certificates(&server, &owner)).collect()
        }
        _ => Vec::new(),
    };
    Ok((target, certificates))
}

/// The database `db` as request `ops` wants it, and that target validated against `db`'s catalog
/// entry.
async fn validated_target(
    client: &Client,
    db: &MssqlServer,
    ops: &MssqlServerOpsRequest,
) -> Result<(MssqlServer, Result<Server, Vec<FieldError>>), Error> {
    let target = target_database(db, ops);
    let version = Api::<MssqlServerVersion>::all(client.clone())
        .get_opt(&db.spec.version)
        .await
        .map_err(reading("reading the MSSQLServerVersion"))?;
    let valid = validated(&target, version.as_ref());
    Ok((target, valid))
}

/// `verify_served`: the operator checks served certificates (`run`'s flag); it applies to
/// databases that serve client TLS once the request is done.
pub async fn observe(
    client: &Client,
    ops: &MssqlServerOpsRequest,
    verify_served: bool,
) -> Result<Observed, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let db_name = &ops.spec.database_ref.name;
    let now = Timestamp::now();
    let Some(db) = Api::<MssqlServer>::namespaced(client.clone(), &namespace)
        .get_opt(db_name)
        .await
        .map_err(reading("reading the database"))?
    else {
        return Ok(Observed {
            now,
            ..Observed::default()
        });
    };
    let status = db.status.clone().unwrap_or_default();
    let mut observed = Observed {
        now,
        database: Database::Exists {
            phase: status.phase.clone(),
        },
        ..Observed::default()
    };
    serialization(client, ops, &mut observed).await?;
    let target = target_database(&db, ops);
    observed.database_has_target_tls = target.spec.tls == db.spec.tls;
    observed.verify_served =
        verify_served && target.spec.tls.as_ref().and_then(|t| t.client_tls) == Some(true);

    if ops.phase() == PHASE_PENDING && ops.spec.type_ == TYPE_RECONFIGURE_TLS {
        // Judged before the database is touched: a target the provisioner would refuse fails the
        // request at once, not after its certificates were changed.
        if let (_, Err(errors)) = validated_target(client, &db, ops).await? {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            observed.target_invalid = Some(errors.join("; "));
        }
    }
    if ops.phase() != PHASE_PROGRESSING {
        return Ok(observed);
    }
    if ops.spec.type_ == TYPE_RECONFIGURE_TLS {
        observed.certificates = certificate_states(client, ops, now).await?;
    }
    if [TYPE_RECONFIGURE_TLS, TYPE_RESTART].contains(&ops.spec.type_.as_str()) {
        (observed.pods, observed.pods_recorded) = pod_states(client, ops, &db).await?;
        if Progress::of(ops).pods_restarted {
            observed.current_serials = current_serials(client, ops).await?;
        }
    }
    Ok(observed)
}

/// The serial each alias's Secret holds now, for the certificates of the target database.
async fn current_serials(
    client: &Client,
    ops: &MssqlServerOpsRequest,
) -> Result<BTreeMap<String, Option<String>>, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let (_, certificates) = target(client, ops).await?;
    let mut serials = BTreeMap::new();
    for (alias, certificate) in certificates {
        let secret = secrets
            .get_opt(&certificate.spec.secret_name)
            .await
            .map_err(reading("reading a TLS secret"))?;
        let serial = secret
            .and_then(|s| s.data)
            .and_then(|d| d.get("tls.crt").cloned())
            .and_then(|crt| parse_certificate(&crt.0).ok())
            .map(|info| info.serial);
        serials.insert(alias, serial);
    }
    Ok(serials)
}

/// KubeDB's rules: one request Progressing per database; of the waiting requests of one type only
/// the newest survives (the others are Skipped); across types the oldest survivor goes first.
async fn serialization(
    client: &Client,
    ops: &MssqlServerOpsRequest,
    observed: &mut Observed,
) -> Result<(), Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let all = Api::<MssqlServerOpsRequest>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .map_err(reading("listing ops requests"))?;
    let same_db: Vec<&MssqlServerOpsRequest> = all
        .items
        .iter()
        .filter(|o| o.spec.database_ref.name == ops.spec.database_ref.name && o.uid() != ops.uid())
        .collect();
    let created = |o: &MssqlServerOpsRequest| o.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let waiting = |o: &&&MssqlServerOpsRequest| ["", PHASE_PENDING].contains(&o.phase());
    observed.other_progressing = same_db.iter().any(|o| o.phase() == PHASE_PROGRESSING);
    // Newer: later creation, or the same second and a name that sorts first (KubeDB's tie-break).
    let newer = |o: &MssqlServerOpsRequest| {
        (created(o), std::cmp::Reverse(o.name_any()))
            > (created(ops), std::cmp::Reverse(ops.name_any()))
    };
    if let Some(newest) = same_db
        .iter()
        .filter(waiting)
        .filter(|o| o.spec.type_ == ops.spec.type_ && newer(o))
        .max_by_key(|o| created(o))
    {
        observed.superseded_by = Some(format!(
            "skipped as {namespace}/{} is the most updated MSSQLServerOpsRequest of type {} at {}",
            newest.name_any(),
            newest.spec.type_,
            created(newest).map(|t| t.to_string()).unwrap_or_default()
        ));
    }
    // An older waiting request of another type that is not itself superseded runs first.
    observed.older_pending = same_db.iter().filter(waiting).any(|o| {
        o.spec.type_ != ops.spec.type_
            && !newer(o)
            && !same_db.iter().filter(waiting).any(|p| {
                p.spec.type_ == o.spec.type_ && p.uid() != o.uid() && created(p) > created(o)
            })
    });
    Ok(())
}

async fn certificate_states(
    client: &Client,
    ops: &MssqlServerOpsRequest,
    now: Timestamp,
) -> Result<Vec<CertificateState>, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let (_, desired) = target(client, ops).await?;
    let before: BTreeMap<String, i64> = ops
        .annotations()
        .get(annotations::REVISIONS_BEFORE_ROTATION)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let certificates: Api<Certificate> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut states = Vec::new();
    for (alias, wanted) in desired {
        let name = wanted.name_any();
        let Some(current) = certificates
            .get_opt(&name)
            .await
            .map_err(reading(format!("reading certificate {name}")))?
        else {
            states.push(CertificateState {
                alias,
                ..CertificateState::default()
            });
            continue;
        };
        let generation = current.metadata.generation;
        let ready = current.condition("Ready");
        let secret = secrets
            .get_opt(&wanted.spec.secret_name)
            .await
            .map_err(reading("reading a TLS secret"))?;
        let secret_problems = secret_problems(&wanted, secret.as_ref(), now);
        let missing_issuer = missing_issuer(client, &namespace, &wanted).await?;
        states.push(CertificateState {
            exists: true,
            ready_at_generation: ready
                .is_some_and(|r| r.status == "True" && r.observed_generation == generation),
            issuing: current.condition(ISSUING).is_some(),
            not_ready_message: ready
                .filter(|r| r.status != "True")
                .and_then(|r| r.message.clone()),
            revision: current.status.as_ref().and_then(|s| s.revision),
            revision_before_rotation: before.get(&name).copied(),
            spec_is_target: current.annotations().get(annotations::APPLIED_HASH)
                == Some(&applied_hash(&wanted)),
            secret_problems,
            missing_issuer,
            alias,
        });
    }
    Ok(states)
}

/// A message if the issuer `wanted` names does not exist.
async fn missing_issuer(
    client: &Client,
    namespace: &str,
    wanted: &Certificate,
) -> Result<Option<String>, Error> {
    let issuer = &wanted.spec.issuer_ref;
    let cluster = issuer.kind.as_deref() == Some(KIND_CLUSTER_ISSUER);
    let exists = if cluster {
        Api::<ClusterIssuer>::all(client.clone())
            .get_opt(&issuer.name)
            .await
            .map(|i| i.is_some())
    } else {
        Api::<Issuer>::namespaced(client.clone(), namespace)
            .get_opt(&issuer.name)
            .await
            .map(|i| i.is_some())
    }
    .map_err(reading("reading an issuer"))?;
    Ok((!exists).then(|| {
        let place = if cluster {
            issuer.name.clone()
        } else {
            format!("{namespace}/{}", issuer.name)
        };
        format!(
            "{} {place} does not exist",
            issuer.kind.clone().unwrap_or_default()
        )
    }))
}

/// What is wrong with the secret cert-manager wrote for `wanted`, checked before any pod restarts:
/// issued by the requested issuer, key matching, valid now, chained to its CA, every name covered.
fn secret_problems(wanted: &Certificate, secret: Option<&Secret>, now: Timestamp) -> Vec<String> {
    let Some(secret) = secret else {
        return vec![format!(
            "secret {} does not exist yet",
            wanted.spec.secret_name
        )];
    };
    let mut problems = Vec::new();
    let annotation = |key: &str| secret.annotations().get(key).cloned().unwrap_or_default();
    let issuer = &wanted.spec.issuer_ref;
    if annotation("cert-manager.io/issuer-name") != issuer.name
        || Some(annotation("cert-manager.io/issuer-kind")) != issuer.kind
    {
        problems.push(format!(
            "secret {} was issued by {} {}, not by {} {}",
            wanted.spec.secret_name,
            annotation("cert-manager.io/issuer-kind"),
            annotation("cert-manager.io/issuer-name"),
            issuer.kind.clone().unwrap_or_default(),
            issuer.name
        ));
    }
    let data = secret.data.clone().unwrap_or_default();
    let file = |key: &str| data.get(key).map(|v| v.0.clone()).unwrap_or_default();
    let (crt, key, ca) = (file("tls.crt"), file("tls.key"), file("ca.crt"));
    let expect = Expectations {
        previous_serial: None,
        dns_names: wanted.spec.dns_names.clone().unwrap_or_default(),
        ip_addresses: wanted.spec.ip_addresses.clone().unwrap_or_default(),
        usages: wanted.spec.usages.clone().unwrap_or_default(),
    };
    let files = TlsFiles {
        tls_crt: &crt,
        tls_key: &key,
        ca_crt: (!ca.is_empty()).then_some(ca.as_slice()),
    };
    if let Err(found) = check_tls_secret(&files, &expect, now.as_second()) {
        problems.extend(found.iter().map(ToString::to_string));
    }
    problems
}

/// The uids of the pods that ran when the restarts began (`name → uid`).
pub async fn running_pods(
    client: &Client,
    ops: &MssqlServerOpsRequest,
) -> Result<BTreeMap<String, String>, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let selector = selector_string(&labels::selector(&ops.spec.database_ref.name));
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(reading("listing pods"))?;
    Ok(pods
        .items
        .iter()
        .filter_map(|p| Some((p.name_any(), p.uid()?)))
        .collect())
}

/// The pods to restart, in order: secondaries and the arbiter by ordinal, the primary last.
async fn pod_states(
    client: &Client,
    ops: &MssqlServerOpsRequest,
    db: &MssqlServer,
) -> Result<(Vec<PodState>, bool), Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let name = db.name_any();
    let recorded: Option<BTreeMap<String, String>> = ops
        .annotations()
        .get(annotations::PODS_BEFORE_RESTART)
        .and_then(|text| serde_json::from_str(text).ok());

    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let listed = pods
        .list(&ListParams::default().labels(&selector_string(&labels::selector(&name))))
        .await
        .map_err(reading("listing pods"))?;
    let mut states = Vec::new();
    for (sts_name, replicas) in [
        (name.clone(), db.spec.replicas.unwrap_or(1)),
        (names::arbiter(&name), 1),
    ] {
        let Some(sts) = statefulsets
            .get_opt(&sts_name)
            .await
            .map_err(reading("reading a statefulset"))?
        else {
            continue;
        };
        let target_revision = sts.status.as_ref().and_then(|s| s.update_revision.clone());
        for ordinal in 0..replicas {
            let pod_name = format!("{sts_name}-{ordinal}");
            let pod = listed.items.iter().find(|p| p.name_any() == pod_name);
            states.push(PodState {
                exists: pod.is_some(),
                terminating: pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
                ready: pod.is_some_and(mssql_api::pods::is_ready),
                role: pod.and_then(|p| p.labels().get(ROLE).cloned()),
                on_target_revision: pod.and_then(|p| p.labels().get("controller-revision-hash"))
                    == target_revision.as_ref(),
                started: pod
                    .map(started_with)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(alias, started)| (alias, started.serial))
                    .collect(),
                created_since_start: match (&recorded, pod.and_then(|p| p.uid())) {
                    (Some(recorded), Some(uid)) => recorded.get(&pod_name) != Some(&uid),
                    _ => false,
                },
                name: pod_name,
            });
        }
    }
    // A stable sort keeps ordinal order within each group.
    states.sort_by_key(|p| p.role.as_deref() == Some(ROLE_PRIMARY));
    Ok((states, recorded.is_some()))
}
