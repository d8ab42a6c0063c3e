//! The snapshot the state machine decides on: the database, the other requests of the same
//! database, the target certificates and their secrets, and the pods to restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, Resource, ResourceExt};
use mssql_api::annotations;
use mssql_api::labels::ROLE_PRIMARY;
use mssql_api::names;
use mssql_api::ops::{PHASE_PENDING, PHASE_PROGRESSING, TYPE_RECONFIGURE_TLS, TYPE_RESTART};
use mssql_api::progress::Progress;
use mssql_api::validate::FieldError;
use mssql_api::validated::{Server, validated};
use mssql_api::{MssqlServer, MssqlServerOpsRequest, MssqlServerVersion};
use mssql_certs::cert_manager::{Certificate, ClusterIssuer, Issuer, KIND_CLUSTER_ISSUER};
use mssql_certs::inspect::{Expectations, TlsFiles, check_tls_secret};

use super::machine::{CertificateState, Database, Observed, PodState};
use super::target::target_database;
use super::{Context, Error, reading};
use crate::build::certificates::certificates;
use crate::controller::apply::applied_hash;
use crate::controller::known::Known;
use crate::controller::store::Key;

/// The database as the request wants it, and the Certificates of that database with their aliases.
pub async fn target(
    context: &Context,
    ops: &MssqlServerOpsRequest,
) -> Result<(MssqlServer, Vec<(String, Certificate)>), Error> {
    let Some(db) = database(context, ops).await? else {
        let missing =
            kube::core::Status::failure(&mssql_api::validate::database_not_found(ops), "NotFound")
                .with_code(404);
        return Err(reading("reading the database")(kube::Error::Api(
            missing.boxed(),
        )));
    };
    Ok(target_of(context.known(), &db, ops))
}

/// The request's database as the provisioner's cache has it, or, when the cache has not seen it
/// yet (created a moment ago), as stored.
async fn database(
    context: &Context,
    ops: &MssqlServerOpsRequest,
) -> Result<Option<MssqlServer>, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let name = &ops.spec.database_ref.name;
    if let Some(db) = context.known().database(&namespace, name) {
        return Ok(Some((*db).clone()));
    }
    Api::<MssqlServer>::namespaced(context.client().clone(), &namespace)
        .get_opt(name)
        .await
        .map_err(reading("reading the database"))
}

/// `db` as request `ops` wants it, and the Certificates of that target with their aliases (none
/// when the target is not valid).
fn target_of(
    known: &Known,
    db: &MssqlServer,
    ops: &MssqlServerOpsRequest,
) -> (MssqlServer, Vec<(String, Certificate)>) {
    let (target, valid) = validated_target(known, db, ops);
    let certificates = match (valid, db.controller_owner_ref(&())) {
        (Ok(server), Some(owner)) => {
            // `certificates` builds one Certificate per alias, in the order of the spec.
            let aliases = server.tls.certificates.iter().map(|c| c.alias.clone());
            aliases.zip(certificates(&server, &owner)).collect()
        }
        _ => Vec::new(),
    };
    (target, certificates)
}

/// The database `db` as request `ops` wants it, and that target validated against `db`'s catalog
/// entry.
fn validated_target(
    known: &Known,
    db: &MssqlServer,
    ops: &MssqlServerOpsRequest,
) -> (MssqlServer, Result<Server, Vec<FieldError>>) {
    let target = target_database(db, ops);
    let version = known
        .versions
        .get(&Key::of::<MssqlServerVersion>("", &db.spec.version));
    let valid = validated(&target, version.as_ref());
    (target, valid)
}

/// What the next step is decided on: the database as stored now, everything else as the watches
/// know it. Served certificates are verified (`run`'s flag) for databases that serve client TLS
/// once the request is done.
pub async fn observe(context: &Context, ops: &MssqlServerOpsRequest) -> Result<Observed, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let now = Timestamp::now();
    let known = context.known();
    let Some(db) = database(context, ops).await? else {
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
    serialization(&context.requests.state(), ops, &mut observed);
    let (target, certificates) = target_of(known, &db, ops);
    observed.database_has_target_tls = target.spec.tls == db.spec.tls;
    observed.verify_served = context.verify_served_certificates
        && target.spec.tls.as_ref().and_then(|t| t.client_tls) == Some(true);

    if ops.phase() == PHASE_PENDING && ops.spec.type_ == TYPE_RECONFIGURE_TLS {
        // Judged before the database is touched: a target the provisioner would refuse fails the
        // request at once, not after its certificates were changed.
        if let (_, Err(errors)) = validated_target(known, &db, ops) {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            observed.target_invalid = Some(errors.join("; "));
        }
    }
    if ops.phase() != PHASE_PROGRESSING {
        return Ok(observed);
    }
    if [TYPE_RECONFIGURE_TLS, TYPE_RESTART].contains(&ops.spec.type_.as_str()) {
        // A Restart looks at its database's Certificates too: it waits while one is issued. The
        // issued Secrets are checked (key, SANs, chain) only while a TLS change decides whether
        // its certificates are synced, the last thing before any pod is restarted.
        let progress = Progress::of(ops);
        let checking = ops.spec.type_ == TYPE_RECONFIGURE_TLS && !progress.certificates_synced;
        let secrets = checking.then_some(context.client());
        observed.certificates = certificate_states(known, secrets, ops, &certificates, now).await?;
        (observed.pods, observed.pods_recorded) = pod_states(known, ops, &db);
        // Coordinators that predate the switchover say nothing of their endpoint certificates
        // (nor do the reports tests write on fake pods): their group restarts as before, the
        // primary last and in place, since they would not honour a switchover.
        let mut reports = observed.pods.iter().filter_map(|p| p.replica.as_ref());
        let switching = reports.clone().next().is_some() && reports.all(|r| r.endpoint.is_some());
        observed.group =
            db.is_availability_group() && db.spec.replicas.unwrap_or(1) > 1 && switching;
        observed.switchover_to = db.annotations().get(annotations::SWITCHOVER).cloned();
        if observed.group || progress.pods_restarted {
            let serials = current_serials(known, &namespace, &certificates);
            if observed.group {
                observed.endpoint_serial =
                    serials.get(mssql_api::ALIAS_ENDPOINT).cloned().flatten();
            }
            if progress.pods_restarted {
                observed.current_serials = serials;
            }
        }
    }
    Ok(observed)
}

/// The serial each alias's Secret holds now, for the certificates of the target database.
fn current_serials(
    known: &Known,
    namespace: &str,
    certificates: &[(String, Certificate)],
) -> BTreeMap<String, Option<String>> {
    certificates
        .iter()
        .map(|(alias, certificate)| {
            let key = Key::of::<Secret>(namespace, &certificate.spec.secret_name);
            let serial = known
                .issued
                .get(&key)
                .and_then(|issued| issued.started)
                .map(|started| started.serial);
            (alias.clone(), serial)
        })
        .collect()
}

/// KubeDB's rules: one request Progressing per database; of the waiting requests of one type only
/// the newest survives (the others are Skipped); across types the oldest survivor goes first.
/// `all`: every request the ops-manager's cache holds.
fn serialization(
    all: &[Arc<MssqlServerOpsRequest>],
    ops: &MssqlServerOpsRequest,
    observed: &mut Observed,
) {
    let namespace = ops.namespace().unwrap_or_default();
    let same_db: Vec<&MssqlServerOpsRequest> = all
        .iter()
        .map(AsRef::as_ref)
        .filter(|o| {
            o.namespace() == ops.namespace()
                && o.spec.database_ref.name == ops.spec.database_ref.name
                && o.uid() != ops.uid()
        })
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
}

/// The state of each certificate the target names, as the watches know it. With `secrets` (a
/// TLS change deciding whether its certificates are synced), once cert-manager has answered for
/// every one of them, each issued secret is read and checked too: before, the answer is not in,
/// and the reads would be wasted.
async fn certificate_states(
    known: &Known,
    secrets: Option<&Client>,
    ops: &MssqlServerOpsRequest,
    desired: &[(String, Certificate)],
    now: Timestamp,
) -> Result<Vec<CertificateState>, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let before: BTreeMap<String, i64> = ops
        .annotations()
        .get(annotations::REVISIONS_BEFORE_ROTATION)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let mut states = Vec::new();
    for (alias, wanted) in desired {
        let name = wanted.name_any();
        let key = Key::of::<Certificate>(&namespace, &name);
        let (Some(issuance), Some(applied)) = (known.certificates.get(&key), known.owned.get(&key))
        else {
            states.push(CertificateState {
                alias: alias.clone(),
                ..CertificateState::default()
            });
            continue;
        };
        states.push(CertificateState {
            exists: true,
            // The operator's own apply is known before cert-manager's answer to it.
            ready_at_generation: issuance.ready_at_generation
                && issuance.generation == applied.generation,
            issuing: issuance.issuing,
            not_ready_message: issuance.not_ready_message,
            revision: issuance.revision,
            revision_before_rotation: before.get(&name).copied(),
            spec_is_target: applied.applied_hash == Some(applied_hash(wanted)),
            secret_problems: Vec::new(),
            missing_issuer: missing_issuer(known, &namespace, wanted),
            alias: alias.clone(),
        });
    }
    let change = ops.spec.tls_change();
    if let Some(client) = secrets.filter(|_| states.iter().all(|s| s.synced(change))) {
        let api = Api::<Secret>::namespaced(client.clone(), &namespace);
        for (state, (_, wanted)) in states.iter_mut().zip(desired) {
            let secret = api
                .get_opt(&wanted.spec.secret_name)
                .await
                .map_err(reading("reading a TLS secret"))?;
            state.secret_problems = secret_problems(wanted, secret.as_ref(), now);
        }
    }
    Ok(states)
}

/// A message if the issuer `wanted` names does not exist.
fn missing_issuer(known: &Known, namespace: &str, wanted: &Certificate) -> Option<String> {
    let issuer = &wanted.spec.issuer_ref;
    let cluster = issuer.kind.as_deref() == Some(KIND_CLUSTER_ISSUER);
    let exists = if cluster {
        known.issuer_exists::<ClusterIssuer>("", &issuer.name)
    } else {
        known.issuer_exists::<Issuer>(namespace, &issuer.name)
    };
    (!exists).then(|| {
        let place = if cluster {
            issuer.name.clone()
        } else {
            format!("{namespace}/{}", issuer.name)
        };
        format!(
            "{} {place} does not exist",
            issuer.kind.clone().unwrap_or_default()
        )
    })
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
pub fn running_pods(known: &Known, ops: &MssqlServerOpsRequest) -> BTreeMap<String, String> {
    let namespace = ops.namespace().unwrap_or_default();
    known
        .pods_of(&namespace, &ops.spec.database_ref.name)
        .into_iter()
        .filter_map(|p| Some((p.name, p.uid?)))
        .collect()
}

/// The pods to restart, in order: secondaries and the arbiter by ordinal, the primary last.
fn pod_states(
    known: &Known,
    ops: &MssqlServerOpsRequest,
    db: &MssqlServer,
) -> (Vec<PodState>, bool) {
    let namespace = ops.namespace().unwrap_or_default();
    let name = db.name_any();
    let recorded: Option<BTreeMap<String, String>> = ops
        .annotations()
        .get(annotations::PODS_BEFORE_RESTART)
        .and_then(|text| serde_json::from_str(text).ok());
    let listed = known.pods_of(&namespace, &name);
    let mut states = Vec::new();
    for (sts_name, replicas, arbiter) in [
        (name.clone(), db.spec.replicas.unwrap_or(1), false),
        (names::arbiter(&name), 1, true),
    ] {
        let Some(counts) = known.statefulset(&namespace, &sts_name) else {
            continue;
        };
        let target_revision = counts.update_revision;
        for ordinal in 0..replicas {
            let pod_name = format!("{sts_name}-{ordinal}");
            let pod = listed.iter().find(|p| p.name == pod_name);
            states.push(PodState {
                exists: pod.is_some(),
                terminating: pod.is_some_and(|p| p.terminating),
                ready: pod.is_some_and(|p| p.ready),
                role: pod.and_then(|p| p.role.clone()),
                arbiter,
                replica: pod.and_then(|p| p.replica.clone()),
                on_target_revision: pod.and_then(|p| p.revision.as_ref())
                    == target_revision.as_ref(),
                statefulset_caught_up: counts.caught_up,
                started: pod
                    .iter()
                    .flat_map(|p| &p.started)
                    .map(|(alias, started)| (alias.clone(), started.serial.clone()))
                    .collect(),
                created_since_start: match (&recorded, pod.and_then(|p| p.uid.as_ref())) {
                    (Some(recorded), Some(uid)) => recorded.get(&pod_name) != Some(uid),
                    _ => false,
                },
                name: pod_name,
            });
        }
    }
    // A stable sort keeps ordinal order within each group.
    states.sort_by_key(|p| p.role.as_deref() == Some(ROLE_PRIMARY));
    (states, recorded.is_some())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use mssql_api::OpsRequestSpec;
    use serde_json::json;

    use super::*;
    use crate::controller::known::Issuance;
    use crate::controller::mock;
    use crate::controller::owned::Owned;

    const NAMESPACE: &str = "demo";

    fn wanted(name: &str) -> Certificate {
        serde_json::from_value(
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"secretName": name, "dnsNames": ["db"],
                     "issuerRef": {"name": "ca", "kind": "Issuer", "group": "cert-manager.io"}}}),
        )
        .unwrap()
    }

    /// The watches know each certificate as applied with its target spec and Ready at that
    /// generation; those named in `issuing` are being issued.
    fn known(desired: &[(String, Certificate)], issuing: &[&str]) -> Known {
        let known = Known::default();
        known.issuers.insert(Key::of::<Issuer>(NAMESPACE, "ca"), ());
        for (_, certificate) in desired {
            let name = certificate.name_any();
            let key = Key::of::<Certificate>(NAMESPACE, &name);
            let meta = ObjectMeta {
                generation: Some(2),
                annotations: Some(
                    [(
                        annotations::APPLIED_HASH.to_owned(),
                        applied_hash(certificate),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            };
            known.owned.insert(key.clone(), Owned::of(&meta, None));
            let issuance = Issuance {
                generation: Some(2),
                ready_at_generation: true,
                issuing: issuing.contains(&name.as_str()),
                revision: Some(1),
                ..Issuance::default()
            };
            known.certificates.insert(key, issuance);
        }
        known
    }

    #[tokio::test]
    async fn a_tls_change_reads_its_secrets_only_once_cert_manager_has_answered_for_all() {
        // Each Secret was issued by another issuer: a problem that holds the pods back.
        let (client, calls) = mock::client(|call| {
            let name = call.path.rsplit('/').next().unwrap_or_default().to_owned();
            (
                200,
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": name, "namespace": NAMESPACE, "annotations": {
                           "cert-manager.io/issuer-name": "old", "cert-manager.io/issuer-kind": "Issuer"}},
                       "data": {}}),
            )
        });
        let desired: Vec<(String, Certificate)> = ["server", "client"]
            .map(|alias| (alias.to_owned(), wanted(&format!("db-{alias}-cert"))))
            .into();
        let mut ops = MssqlServerOpsRequest::new("change", OpsRequestSpec::default());
        ops.metadata.namespace = Some(NAMESPACE.to_owned());
        let now = Timestamp::now();

        let waiting = known(&desired, &["db-client-cert"]);
        let states = certificate_states(&waiting, Some(&client), &ops, &desired, now)
            .await
            .unwrap();
        assert!(calls.lines().is_empty(), "{:?}", calls.lines());
        assert!(states.iter().all(|s| s.secret_problems.is_empty()));

        let answered = known(&desired, &[]);
        let states = certificate_states(&answered, Some(&client), &ops, &desired, now)
            .await
            .unwrap();
        assert_eq!(
            calls.lines(),
            [
                "GET /api/v1/namespaces/demo/secrets/db-server-cert",
                "GET /api/v1/namespaces/demo/secrets/db-client-cert"
            ]
        );
        for state in &states {
            assert!(
                state.secret_problems[0].contains("was issued by Issuer old, not by Issuer ca"),
                "{:?}",
                state.secret_problems
            );
            assert!(!state.synced(ops.spec.tls_change()));
        }
    }
}
