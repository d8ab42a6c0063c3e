//! `tls status`: what a database's certificates are and which pods run them, from API objects
//! read beforehand (pure: unit-tested with hand-built objects).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use mssql_api::annotations;
use mssql_api::annotations::{MAINTENANCE_WINDOW, RENEWAL_ROLLOUT, RENEWAL_SAFETY_MARGIN};
use mssql_api::condition;
use mssql_api::defaults::default_tls;
use mssql_api::phase::CERTIFICATE_ROLLOUT_PENDING;
use mssql_api::pods::{is_ready, started_with};
use mssql_api::{ALIAS_SERVER, MssqlServer, TOPOLOGY_AVAILABILITY_GROUP, names};
use mssql_certs::cert_manager::{Certificate, KIND_ISSUER};
use mssql_certs::inspect::parse_certificate;
use serde::Serialize;

use crate::text::timestamp;

/// The StatefulSet controller's label on each pod: the revision the pod was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Everything `tls status` shows about one database.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    pub namespace: String,
    pub database: String,
    /// `spec.tls.clientTLS`: SQL Server forces encryption with the server certificate.
    pub tls_enabled: bool,
    /// The database's `spec.tls.issuerRef`.
    pub issuer: Option<IssuerName>,
    pub certificates: Vec<CertificateStatus>,
    pub pods: Vec<PodStatus>,
    /// Pods on their StatefulSet's update revision, of all pods.
    pub pods_current: usize,
    /// Pods whose SQL Server runs another server certificate than its Secret holds.
    pub pods_outdated: usize,
    /// The renewal policy annotations set on the database; the operator's defaults apply to
    /// those not set.
    pub renewal_policy: BTreeMap<String, String>,
    /// The operator's `CertificateRolloutPending` condition: what happens to stale pods.
    pub rollout: Option<PendingRollout>,
}

/// A renewed certificate not yet rolled out to every pod, as the operator reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingRollout {
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuerName {
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for IssuerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// One certificate alias: the cert-manager Certificate and the certificate in its Secret.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    pub alias: String,
    /// The cert-manager Certificate's name.
    pub certificate: String,
    pub secret: String,
    /// The issuer the Certificate names (the database's, until the operator has created it).
    pub issuer: Option<IssuerName>,
    /// cert-manager's `Ready` condition: `True`, `False`, `Unknown`; `None` when not set yet.
    pub ready: Option<String>,
    pub ready_message: Option<String>,
    pub revision: Option<i64>,
    pub serial: Option<String>,
    pub subject: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    /// RFC 3339.
    pub not_after: Option<String>,
    /// Whole days until `not_after`; negative once expired.
    pub days_left: Option<i64>,
    /// Why something above is missing: no Certificate yet, no Secret yet, an unreadable tls.crt.
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub name: String,
    pub ready: bool,
    /// The pod's `controller-revision-hash`.
    pub revision: Option<String>,
    /// The StatefulSet's `status.updateRevision`: what a pod created now would run.
    pub update_revision: Option<String>,
    /// The hash of the TLS material and mssql.conf the pod started with.
    pub restart_hash: Option<String>,
    /// Runs the current certificate material: its revision is its StatefulSet's update revision.
    pub current: bool,
    /// The server certificate the pod's SQL Server loaded when it started (clients get it).
    pub serves: Option<ServedCertificate>,
}

/// The server certificate one pod runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedCertificate {
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    /// Its Secret holds another certificate: the pod serves that one only after a restart.
    pub outdated: bool,
}

/// The objects `tls status` reads, by name.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub certificates: BTreeMap<String, Certificate>,
    pub secrets: BTreeMap<String, Secret>,
    pub statefulsets: Vec<StatefulSet>,
    pub pods: Vec<Pod>,
}

/// A certificate alias with the names the operator gives its objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub alias: String,
    pub certificate: String,
    pub secret: String,
    pub issuer: Option<IssuerName>,
}

/// The aliases of `db` (after KubeDB's TLS defaulting) with their Certificate and Secret names.
pub fn planned_certificates(db: &MssqlServer) -> Vec<Planned> {
    let name = db.name_any();
    let mut tls = db.spec.tls.clone().unwrap_or_default();
    let availability_group = db.spec.topology.as_ref().and_then(|t| t.mode.as_deref())
        == Some(TOPOLOGY_AVAILABILITY_GROUP);
    default_tls(&mut tls, &name, availability_group);
    let default_issuer = tls.issuer_ref.as_ref().map(issuer_name);
    tls.certificates
        .unwrap_or_default()
        .into_iter()
        .map(|c| Planned {
            certificate: names::certificate(&name, &c.alias),
            secret: c
                .secret_name
                .unwrap_or_else(|| names::certificate(&name, &c.alias)),
            issuer: c
                .issuer_ref
                .as_ref()
                .map(issuer_name)
                .or_else(|| default_issuer.clone()),
            alias: c.alias,
        })
        .collect()
}

fn issuer_name(reference: &k8s_openapi::api::core::v1::TypedLocalObjectReference) -> IssuerName {
    IssuerName {
        kind: reference.kind.clone(),
        name: reference.name.clone(),
    }
}

/// Whether SQL Server of `db` forces encryption (`spec.tls.clientTLS: true`).
pub fn tls_enabled(db: &MssqlServer) -> bool {
    db.spec.tls.as_ref().and_then(|t| t.client_tls) == Some(true)
}

/// The report of `db`, as of `now_unix`.
pub fn tls_status(db: &MssqlServer, observed: &Observed, now_unix: i64) -> TlsStatus {
    let certificates: Vec<CertificateStatus> = planned_certificates(db)
        .into_iter()
        .map(|planned| certificate_status(planned, observed, now_unix))
        .collect();
    let secret_serial = certificates
        .iter()
        .find(|c| c.alias == ALIAS_SERVER)
        .and_then(|c| c.serial.as_deref());
    let mut pods: Vec<PodStatus> = observed
        .pods
        .iter()
        .map(|pod| pod_status(pod, &observed.statefulsets, secret_serial))
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    TlsStatus {
        namespace: db.namespace().unwrap_or_default(),
        database: db.name_any(),
        tls_enabled: tls_enabled(db),
        issuer: db
            .spec
            .tls
            .as_ref()
            .and_then(|t| t.issuer_ref.as_ref())
            .map(issuer_name),
        pods_current: pods.iter().filter(|p| p.current).count(),
        pods_outdated: pods
            .iter()
            .filter(|p| p.serves.as_ref().is_some_and(|s| s.outdated))
            .count(),
        renewal_policy: [RENEWAL_ROLLOUT, MAINTENANCE_WINDOW, RENEWAL_SAFETY_MARGIN]
            .into_iter()
            .filter_map(|key| Some((key.to_owned(), db.annotations().get(key)?.clone())))
            .collect(),
        rollout: db
            .status
            .as_ref()
            .and_then(|s| condition::find(&s.conditions, CERTIFICATE_ROLLOUT_PENDING))
            .filter(|c| c.is_true())
            .map(|c| PendingRollout {
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            }),
        certificates,
        pods,
    }
}

fn certificate_status(planned: Planned, observed: &Observed, now: i64) -> CertificateStatus {
    let mut status = CertificateStatus {
        alias: planned.alias,
        certificate: planned.certificate,
        secret: planned.secret,
        issuer: planned.issuer,
        ready: None,
        ready_message: None,
        revision: None,
        serial: None,
        subject: None,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        not_after: None,
        days_left: None,
        problems: Vec::new(),
    };
    match observed.certificates.get(&status.certificate) {
        None => status.problems.push(format!(
            "Certificate {} does not exist (yet)",
            status.certificate
        )),
        Some(certificate) => {
            let issuer = &certificate.spec.issuer_ref;
            status.issuer = Some(IssuerName {
                kind: issuer
                    .kind
                    .clone()
                    .unwrap_or_else(|| KIND_ISSUER.to_owned()),
                name: issuer.name.clone(),
            });
            let ready = certificate.condition("Ready");
            status.ready = ready.map(|r| r.status.clone());
            status.ready_message = ready.and_then(|r| r.message.clone());
            status.revision = certificate.status.as_ref().and_then(|s| s.revision);
        }
    }
    let crt = observed
        .secrets
        .get(&status.secret)
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("tls.crt"));
    match crt.map(|crt| parse_certificate(&crt.0)) {
        None => status.problems.push(format!(
            "Secret {} has no tls.crt (not issued yet)",
            status.secret
        )),
        Some(Err(e)) => status
            .problems
            .push(format!("Secret {}: tls.crt: {e}", status.secret)),
        Some(Ok(info)) => {
            status.serial = Some(info.serial);
            status.subject = Some(info.subject);
            status.dns_names = info.dns_names;
            status.ip_addresses = info.ip_addresses;
            status.not_after = Some(timestamp(info.not_after));
            status.days_left = Some((info.not_after - now).div_euclid(86_400));
        }
    }
    status
}

fn pod_status(pod: &Pod, statefulsets: &[StatefulSet], secret_serial: Option<&str>) -> PodStatus {
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.kind == "StatefulSet")
        .map(|o| o.name.as_str());
    let update_revision = statefulsets
        .iter()
        .find(|s| Some(s.name_any().as_str()) == owner)
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    let revision = pod.labels().get(REVISION_LABEL).cloned();
    PodStatus {
        name: pod.name_any(),
        ready: is_ready(pod),
        current: revision.is_some() && revision == update_revision,
        restart_hash: pod.annotations().get(annotations::RESTART_HASH).cloned(),
        revision,
        update_revision,
        serves: started_with(pod)
            .remove(ALIAS_SERVER)
            .map(|started| ServedCertificate {
                outdated: secret_serial.is_some_and(|s| s != started.serial),
                not_after: timestamp(started.not_after),
                serial: started.serial,
            }),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus as CorePodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use mssql_certs::cert_manager::{
        CertificateCondition, CertificateSpec, CertificateStatus as CmStatus, IssuerRef,
    };
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::testdata::{self, NOW};

    fn database(tls: serde_json::Value, topology: Option<serde_json::Value>) -> MssqlServer {
        let mut spec = json!({"version": "2022-cu16", "tls": tls});
        if let Some(topology) = topology {
            spec["topology"] = topology;
        }
        serde_json::from_value(json!({
            "apiVersion": "kubedb.com/v1alpha2", "kind": "MSSQLServer",
            "metadata": {"name": "db", "namespace": "demo"}, "spec": spec
        }))
        .unwrap()
    }

    fn issuer_tls(client_tls: bool) -> serde_json::Value {
        json!({"issuerRef": {"name": "ca", "kind": "Issuer", "apiGroup": "cert-manager.io"}, "clientTLS": client_tls})
    }

    fn certificate(name: &str, issuer: &str, ready: &str, revision: i64) -> Certificate {
        let mut certificate = Certificate::new(
            name,
            CertificateSpec {
                secret_name: name.to_owned(),
                issuer_ref: IssuerRef {
                    name: issuer.to_owned(),
                    kind: Some("ClusterIssuer".to_owned()),
                    group: None,
                },
                ..CertificateSpec::default()
            },
        );
        certificate.status = Some(CmStatus {
            conditions: vec![CertificateCondition {
                type_: "Ready".to_owned(),
                status: ready.to_owned(),
                message: Some("Certificate is up to date and has not expired".to_owned()),
                ..CertificateCondition::default()
            }],
            revision: Some(revision),
            ..CmStatus::default()
        });
        certificate
    }

    fn secret(name: &str, crt: &[u8]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            data: Some([("tls.crt".to_owned(), ByteString(crt.to_vec()))].into()),
            ..Secret::default()
        }
    }

    fn statefulset(name: &str, update_revision: &str) -> StatefulSet {
        StatefulSet {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            status: Some(StatefulSetStatus {
                update_revision: Some(update_revision.to_owned()),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        }
    }

    fn pod(name: &str, owner: &str, revision: &str, ready: bool) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some([(REVISION_LABEL.to_owned(), revision.to_owned())].into()),
                annotations: Some(
                    [(
                        annotations::RESTART_HASH.to_owned(),
                        format!("hash-{revision}"),
                    )]
                    .into(),
                ),
                owner_references: Some(vec![OwnerReference {
                    kind: "StatefulSet".to_owned(),
                    name: owner.to_owned(),
                    ..OwnerReference::default()
                }]),
                ..Default::default()
            },
            status: Some(CorePodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: if ready { "True" } else { "False" }.to_owned(),
                    ..PodCondition::default()
                }]),
                ..CorePodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn aliases_follow_kubedb_defaulting_and_the_users_secret_names() {
        let db = database(
            json!({"issuerRef": {"name": "ca", "kind": "Issuer"}, "certificates": [{"alias": "client", "secretName": "mine", "issuerRef": {"name": "other", "kind": "ClusterIssuer"}}]}),
            None,
        );
        let planned = planned_certificates(&db);
        let summary: Vec<_> = planned
            .iter()
            .map(|p| {
                (
                    p.alias.as_str(),
                    p.certificate.as_str(),
                    p.secret.as_str(),
                    p.issuer.as_ref().map(ToString::to_string),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "client",
                    "db-client-cert",
                    "mine",
                    Some("ClusterIssuer/other".to_owned())
                ),
                (
                    "server",
                    "db-server-cert",
                    "db-server-cert",
                    Some("Issuer/ca".to_owned())
                ),
            ]
        );
        let group = database(issuer_tls(true), Some(json!({"mode": "AvailabilityGroup"})));
        let aliases: Vec<_> = planned_certificates(&group)
            .into_iter()
            .map(|p| p.alias)
            .collect();
        assert_eq!(aliases, ["server", "client", "endpoint"]);
    }

    #[test]
    fn a_database_without_an_issuer_has_no_certificates() {
        let db = database(json!({}), None);
        let status = tls_status(&db, &Observed::default(), NOW);
        assert!(!status.tls_enabled);
        assert_eq!(status.issuer, None);
        assert!(status.certificates.is_empty());
    }

    #[test]
    fn issued_certificates_show_the_secret_and_the_certificate() {
        let db = database(issuer_tls(true), None);
        let server = testdata::leaf(&["db", "db.demo.svc"], &["127.0.0.1"], 90);
        let observed = Observed {
            certificates: [(
                "db-server-cert".to_owned(),
                certificate("db-server-cert", "cluster-ca", "True", 3),
            )]
            .into(),
            secrets: [(
                "db-server-cert".to_owned(),
                secret("db-server-cert", server.pem.as_bytes()),
            )]
            .into(),
            ..Observed::default()
        };
        let status = tls_status(&db, &observed, NOW);
        assert!(status.tls_enabled);
        assert_eq!(status.issuer.as_ref().unwrap().to_string(), "Issuer/ca");
        let server_status = &status.certificates[0];
        assert_eq!(
            server_status,
            &CertificateStatus {
                alias: "server".to_owned(),
                certificate: "db-server-cert".to_owned(),
                secret: "db-server-cert".to_owned(),
                issuer: Some(IssuerName {
                    kind: "ClusterIssuer".to_owned(),
                    name: "cluster-ca".to_owned()
                }),
                ready: Some("True".to_owned()),
                ready_message: Some("Certificate is up to date and has not expired".to_owned()),
                revision: Some(3),
                serial: Some(server.serial.clone()),
                // RFC 4514 order: the last RDN of the DER (rcgen's last push) first.
                subject: Some("O=kubedb,CN=db".to_owned()),
                dns_names: vec!["db".to_owned(), "db.demo.svc".to_owned()],
                ip_addresses: vec!["127.0.0.1".to_owned()],
                not_after: Some(timestamp(NOW + 90 * 86_400)),
                days_left: Some(90),
                problems: vec![],
            }
        );
        // The client alias: neither a Certificate nor a Secret yet.
        let client = &status.certificates[1];
        assert_eq!(client.alias, "client");
        assert_eq!(client.issuer.as_ref().unwrap().to_string(), "Issuer/ca");
        assert_eq!(
            client.problems,
            [
                "Certificate db-client-cert does not exist (yet)",
                "Secret db-client-cert has no tls.crt (not issued yet)"
            ]
        );
        assert_eq!(
            (client.serial.as_ref(), client.ready.as_ref()),
            (None, None)
        );
    }

    #[test]
    fn an_expired_or_unreadable_certificate_says_so() {
        let db = database(issuer_tls(false), None);
        let expired = testdata::leaf(&["db"], &[], -2);
        let observed = Observed {
            secrets: [
                (
                    "db-server-cert".to_owned(),
                    secret("db-server-cert", expired.pem.as_bytes()),
                ),
                (
                    "db-client-cert".to_owned(),
                    secret("db-client-cert", b"not a certificate"),
                ),
            ]
            .into(),
            ..Observed::default()
        };
        let status = tls_status(&db, &observed, NOW);
        assert!(!status.tls_enabled);
        assert_eq!(status.certificates[0].days_left, Some(-2));
        assert_eq!(
            status.certificates[1].problems[1],
            "Secret db-client-cert: tls.crt: no PEM CERTIFICATE block found"
        );
    }

    #[test]
    fn pods_are_current_on_their_statefulsets_update_revision() {
        let db = database(issuer_tls(true), None);
        let observed = Observed {
            statefulsets: vec![
                statefulset("db", "db-new"),
                statefulset("db-arbiter", "a-1"),
            ],
            pods: vec![
                pod("db-1", "db", "db-old", true),
                pod("db-0", "db", "db-new", false),
                pod("db-arbiter-0", "db-arbiter", "a-1", true),
                pod("stray", "gone", "db-new", true),
            ],
            ..Observed::default()
        };
        let status = tls_status(&db, &observed, NOW);
        let pods: Vec<_> = status
            .pods
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.current,
                    p.ready,
                    p.restart_hash.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            pods,
            [
                ("db-0", true, false, Some("hash-db-new")),
                ("db-1", false, true, Some("hash-db-old")),
                ("db-arbiter-0", true, true, Some("hash-a-1")),
                ("stray", false, true, Some("hash-db-new")),
            ]
        );
        assert_eq!(status.pods_current, 2);
        assert_eq!(status.pods[1].update_revision.as_deref(), Some("db-new"));
    }

    #[test]
    fn pods_show_the_server_certificate_they_started_with() {
        let db = database(issuer_tls(true), None);
        let server = testdata::leaf(&["db"], &[], 90);
        let serial = server.serial.clone();
        let started = |serial: &str| {
            let mut pod = pod("db-0", "db", "db-new", true);
            pod.annotations_mut().insert(
                annotations::CERTIFICATES.to_owned(),
                format!(r#"{{"server":{{"serial":"{serial}","notAfter":1790000000}}}}"#),
            );
            pod
        };
        let observed = |pod: Pod| Observed {
            secrets: [(
                "db-server-cert".to_owned(),
                secret("db-server-cert", server.pem.as_bytes()),
            )]
            .into(),
            pods: vec![pod, self::pod("db-1", "db", "db-new", true)],
            ..Observed::default()
        };
        let current = tls_status(&db, &observed(started(&serial)), NOW);
        assert_eq!(
            current.pods[0].serves,
            Some(ServedCertificate {
                serial: serial.clone(),
                not_after: "2026-09-21T14:13:20Z".to_owned(),
                outdated: false,
            })
        );
        assert_eq!(current.pods[1].serves, None, "a pod that records nothing");
        assert_eq!(current.pods_outdated, 0);
        let old = tls_status(&db, &observed(started("01")), NOW);
        assert!(old.pods[0].serves.as_ref().unwrap().outdated);
        assert_eq!(old.pods_outdated, 1);
    }
}
