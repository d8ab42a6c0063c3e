//! An availability group's replicas as the database's status shows them: each pod's role label
//! (what the Services select by) beside what its coordinator last reported of its SQL Server, and
//! whether the group has a primary that serves clients.

use mssql_api::ReplicaStatus;
use mssql_api::labels::ROLE_PRIMARY;
use mssql_api::pods::SQL_PRIMARY;

use crate::controller::pods::PodFacts;

/// The replicas of group `db`: the pods of its StatefulSet (`<db>-<ordinal>`; not the arbiter,
/// which runs no SQL Server), by name.
pub fn of(db: &str, pods: &[PodFacts]) -> Vec<ReplicaStatus> {
    let mut replicas: Vec<ReplicaStatus> = pods
        .iter()
        .filter(|pod| is_replica(db, &pod.name))
        .map(|pod| {
            let report = pod.replica.as_ref();
            ReplicaStatus {
                pod: pod.name.clone(),
                role: pod.role.clone(),
                sql_role: report.and_then(|r| r.role.clone()),
                synchronized: report.is_some_and(|r| r.synchronized),
                connected: report.is_some_and(|r| r.connected),
                since: report.map(|r| r.since.clone()),
            }
        })
        .collect();
    replicas.sort_by(|a, b| a.pod.cmp(&b.pod));
    replicas
}

fn is_replica(db: &str, pod: &str) -> bool {
    pod.strip_prefix(db)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
}

/// The group has a primary for clients (`AGPrimaryReplicaReady`): a Ready pod labelled `primary`
/// (the `<db>` Service's endpoint) whose SQL Server says PRIMARY. A label alone is not enough: it
/// may be left over from a server that has since restarted as RESOLVING.
pub fn primary_ready(pods: &[PodFacts]) -> bool {
    pods.iter().any(|pod| {
        pod.ready
            && pod.role.as_deref() == Some(ROLE_PRIMARY)
            && pod.replica.as_ref().and_then(|r| r.role.as_deref()) == Some(SQL_PRIMARY)
    })
}

/// The pod labelled `primary` among `replicas`.
pub fn labelled_primary(replicas: &[ReplicaStatus]) -> Option<&str> {
    replicas
        .iter()
        .find(|r| r.role.as_deref() == Some(ROLE_PRIMARY))
        .map(|r| r.pod.as_str())
}

#[cfg(test)]
mod tests {
    use mssql_api::pods::ReplicaReport;
    use pretty_assertions::assert_eq;

    use super::*;

    const SINCE: &str = "2026-01-01T00:00:00Z";

    fn pod(name: &str, ready: bool, role: Option<&str>, sql_role: Option<&str>) -> PodFacts {
        PodFacts {
            name: name.to_owned(),
            ready,
            role: role.map(str::to_owned),
            replica: sql_role.map(|sql_role| ReplicaReport {
                role: (!sql_role.is_empty()).then(|| sql_role.to_owned()),
                synchronized: sql_role == "PRIMARY",
                connected: sql_role != "RESOLVING",
                since: SINCE.to_owned(),
                replicas: Vec::new(),
                endpoint: None,
            }),
            ..PodFacts::default()
        }
    }

    #[test]
    fn a_primary_is_ready_only_if_ready_labelled_primary_and_primary_to_sql_server() {
        // Every combination for one pod: `Some("")` is a report of no role (no group, or the
        // server silent); `None`, no report at all.
        for ready in [true, false] {
            for role in [None, Some("primary"), Some("secondary"), Some("arbiter")] {
                for sql_role in [
                    None,
                    Some(""),
                    Some("PRIMARY"),
                    Some("SECONDARY"),
                    Some("RESOLVING"),
                ] {
                    let expected = ready && role == Some("primary") && sql_role == Some("PRIMARY");
                    assert_eq!(
                        primary_ready(&[pod("ag-0", ready, role, sql_role)]),
                        expected,
                        "ready {ready}, label {role:?}, SQL Server {sql_role:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_primary_is_looked_for_among_every_pod() {
        let secondary = pod("ag-1", true, Some("secondary"), Some("SECONDARY"));
        let primary = pod("ag-0", true, Some("primary"), Some("PRIMARY"));
        assert!(primary_ready(&[secondary.clone(), primary.clone()]));
        assert!(
            !primary_ready(std::slice::from_ref(&secondary)),
            "no pod labelled primary"
        );
        assert!(!primary_ready(&[]));
        // The new primary's server says PRIMARY before its pod is labelled: not yet.
        let promoted = pod("ag-1", true, Some("secondary"), Some("PRIMARY"));
        let old = pod("ag-0", true, Some("primary"), Some("RESOLVING"));
        assert!(!primary_ready(&[old, promoted]));
    }

    #[test]
    fn replicas_are_the_statefulsets_pods_with_their_label_and_report() {
        let pods = [
            pod("ag-2", false, None, None),
            pod("ag-arbiter-0", true, Some("arbiter"), None),
            pod("ag-0", true, Some("primary"), Some("PRIMARY")),
            pod("ag-1", true, Some("secondary"), Some("RESOLVING")),
            pod("ag-x", true, None, None),
            pod("ag-", true, None, None),
        ];
        assert_eq!(
            of("ag", &pods),
            [
                ReplicaStatus {
                    pod: "ag-0".to_owned(),
                    role: Some("primary".to_owned()),
                    sql_role: Some("PRIMARY".to_owned()),
                    synchronized: true,
                    connected: true,
                    since: Some(SINCE.to_owned()),
                },
                ReplicaStatus {
                    pod: "ag-1".to_owned(),
                    role: Some("secondary".to_owned()),
                    sql_role: Some("RESOLVING".to_owned()),
                    synchronized: false,
                    connected: false,
                    since: Some(SINCE.to_owned()),
                },
                ReplicaStatus {
                    pod: "ag-2".to_owned(),
                    ..ReplicaStatus::default()
                },
            ]
        );
        assert_eq!(labelled_primary(&of("ag", &pods)), Some("ag-0"));
        assert_eq!(labelled_primary(&of("ag", &pods[..1])), None);
    }
}
