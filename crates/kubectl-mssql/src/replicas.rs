//! `status`: a database's phase and, in an availability group, each replica's state as the
//! operator gathered it into `status.replicas` (pure: unit-tested with hand-built objects).

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use mssql_api::phase::AG_PRIMARY_REPLICA_READY;
use mssql_api::{MssqlServer, ReplicaStatus, condition};
use serde::Serialize;

use crate::text::age;

/// Everything `status` shows about one database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    pub namespace: String,
    pub database: String,
    /// `None` until the operator has written a status.
    pub phase: Option<String>,
    pub availability_group: bool,
    /// The `AGPrimaryReplicaReady` condition's message, while it is not True.
    pub no_primary: Option<String>,
    pub replicas: Vec<Replica>,
}

/// One replica of an availability group, as the status has it, and for how long it has been so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replica {
    #[serde(flatten)]
    pub status: ReplicaStatus,
    /// How long ago its `since` is.
    pub age: Option<String>,
}

/// The report of `db`, as of `now_unix`.
pub fn database_status(db: &MssqlServer, now_unix: i64) -> DatabaseStatus {
    let status = db.status.clone().unwrap_or_default();
    let primary = condition::find(&status.conditions, AG_PRIMARY_REPLICA_READY);
    DatabaseStatus {
        namespace: db.namespace().unwrap_or_default(),
        database: db.name_any(),
        phase: status.phase.clone(),
        availability_group: db.is_availability_group(),
        no_primary: primary
            .filter(|c| !c.is_true())
            .map(|c| c.message.clone().unwrap_or_default()),
        replicas: status
            .replicas
            .into_iter()
            .map(|status| Replica {
                age: status
                    .since
                    .as_deref()
                    .and_then(|since| since.parse::<Timestamp>().ok())
                    .map(|since| age(now_unix - since.as_second())),
                status,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::testdata::NOW;

    fn group(status: serde_json::Value) -> MssqlServer {
        serde_json::from_value(json!({
            "apiVersion": "kubedb.com/v1alpha2", "kind": "MSSQLServer",
            "metadata": {"name": "ag", "namespace": "demo"},
            "spec": {"version": "2022-cu16", "topology": {"mode": "AvailabilityGroup"}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn each_replica_shows_its_label_its_servers_role_and_for_how_long() {
        let db = group(json!({
            "phase": "Ready",
            "conditions": [{"type": "AGPrimaryReplicaReady", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "message": "Primary replica is ready for MSSQL demo/ag"}],
            "replicas": [
                {"pod": "ag-0", "role": "primary", "sqlRole": "PRIMARY", "synchronized": true,
                 "connected": true, "since": "2025-12-31T23:55:00Z"},
                {"pod": "ag-1", "synchronized": false, "connected": false},
            ],
        }));
        let status = database_status(&db, NOW);
        assert_eq!(
            status,
            DatabaseStatus {
                namespace: "demo".to_owned(),
                database: "ag".to_owned(),
                phase: Some("Ready".to_owned()),
                availability_group: true,
                no_primary: None,
                replicas: vec![
                    Replica {
                        status: ReplicaStatus {
                            pod: "ag-0".to_owned(),
                            role: Some("primary".to_owned()),
                            sql_role: Some("PRIMARY".to_owned()),
                            synchronized: true,
                            connected: true,
                            since: Some("2025-12-31T23:55:00Z".to_owned()),
                        },
                        age: Some("5m0s".to_owned()),
                    },
                    Replica {
                        status: ReplicaStatus {
                            pod: "ag-1".to_owned(),
                            ..ReplicaStatus::default()
                        },
                        age: None,
                    },
                ],
            }
        );
    }

    #[test]
    fn a_group_without_a_primary_says_why() {
        let db = group(json!({
            "phase": "NotReady",
            "conditions": [{"type": "AGPrimaryReplicaReady", "status": "False",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "message": "No ready primary replica for MSSQL demo/ag"}],
        }));
        let status = database_status(&db, NOW);
        assert_eq!(
            status.no_primary.as_deref(),
            Some("No ready primary replica for MSSQL demo/ag")
        );
        let standalone: MssqlServer = serde_json::from_value(json!({
            "apiVersion": "kubedb.com/v1alpha2", "kind": "MSSQLServer",
            "metadata": {"name": "ms", "namespace": "demo"}, "spec": {"version": "2022-cu16"}
        }))
        .unwrap();
        let status = database_status(&standalone, NOW);
        assert!(!status.availability_group);
        assert_eq!((status.phase, status.replicas), (None, vec![]));
    }
}
