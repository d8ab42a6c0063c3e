//! What a coordinator publishes of its replica on its own pod (annotation
//! `mssql-operator.dev/replica`): the role its SQL Server says it has, whether it is synchronized
//! and connected, and since when. The operator gathers these into the database's status.
//!
//! It is written only when the state changes, so a steady group costs no API write, and by a
//! task of its own: an API server that does not answer holds up neither the loop nor, with it,
//! the write lease's renewal.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mssql_api::annotations::REPLICA;
use mssql_api::pods::{
    EndpointCertificates, ReplicaReport, SQL_PRIMARY, SQL_RESOLVING, SQL_SECONDARY, replica_report,
};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::API_DEADLINE;
use crate::decide::Role;
use crate::sql::GroupState;

/// What one look at the local server says of its replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub role: Option<&'static str>,
    pub synchronized: bool,
    pub connected: bool,
    /// On the primary: its group's replicas.
    pub replicas: Vec<String>,
    /// Its endpoint certificates, as its master held them at the last look.
    pub endpoint: Option<EndpointCertificates>,
}

impl Reading {
    /// A server that holds no group, or (once the loop counts it gone) does not answer.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// A server in a group. `databases` are the group's by the spec: a secondary that has not
    /// been seeded with one yet is not synchronized, whatever the databases it has say.
    pub fn of(group: &GroupState, databases: &[String]) -> Self {
        let seeded = databases
            .iter()
            .all(|db| group.databases.iter().any(|d| d.eq_ignore_ascii_case(db)));
        Self {
            role: Some(match group.role {
                Role::Primary => SQL_PRIMARY,
                Role::Secondary => SQL_SECONDARY,
                Role::Resolving => SQL_RESOLVING,
            }),
            synchronized: group.synchronized && (group.role == Role::Primary || seeded),
            connected: group.connected,
            replicas: Vec::new(),
            endpoint: None,
        }
    }

    /// The reading with its server's endpoint certificates.
    pub fn with_endpoint(mut self, endpoint: EndpointCertificates) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// A primary's reading with its group's replicas (what it last read of them).
    pub fn listing(mut self, replicas: &[String]) -> Self {
        if self.role == Some(SQL_PRIMARY) {
            self.replicas = replicas.to_vec();
        }
        self
    }
}

/// The report to publish after `reading`, stamped `now`; `None` when `last` says the same.
pub fn next(
    last: Option<&ReplicaReport>,
    reading: &Reading,
    now: Timestamp,
) -> Option<ReplicaReport> {
    let report = ReplicaReport {
        role: reading.role.map(str::to_owned),
        synchronized: reading.synchronized,
        connected: reading.connected,
        replicas: reading.replicas.clone(),
        endpoint: reading.endpoint.clone(),
        since: Timestamp::from_second(now.as_second())
            .unwrap_or(now)
            .to_string(),
    };
    match last {
        // `since` is when the replica came to be as it is: a change of certificates alone keeps it.
        Some(last) if last.same_state(&report) && last.endpoint == report.endpoint => None,
        Some(last) if last.same_state(&report) => Some(ReplicaReport {
            since: last.since.clone(),
            ..report
        }),
        _ => Some(report),
    }
}

/// Publishes this pod's reports; the latest one waits in a channel for the writing task.
pub struct Publisher {
    reports: watch::Sender<Option<ReplicaReport>>,
}

/// How long the writer waits before it tries a failed write again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Publisher {
    /// The publisher of `pod`, starting from what the pod says already (so a restarted
    /// coordinator that finds the same state keeps its `since` and writes nothing).
    pub async fn start(pods: Api<Pod>, pod: String) -> Self {
        let published = match tokio::time::timeout(API_DEADLINE, pods.get_opt(&pod)).await {
            Ok(Ok(found)) => found.as_ref().and_then(replica_report),
            _ => None,
        };
        let (reports, receiver) = watch::channel(published);
        tokio::spawn(write(pods, pod, receiver));
        Self { reports }
    }

    /// Hands `reading` to the writer if it changes what was published.
    pub fn publish(&self, reading: &Reading) {
        self.reports.send_if_modified(|last| {
            match next(last.as_ref(), reading, Timestamp::now()) {
                Some(report) => {
                    *last = Some(report);
                    true
                }
                None => false,
            }
        });
    }
}

/// Writes each new report until it is written or a newer one replaces it; ends with the loop.
async fn write(pods: Api<Pod>, pod: String, mut reports: watch::Receiver<Option<ReplicaReport>>) {
    while reports.changed().await.is_ok() {
        loop {
            let Some(report) = reports.borrow_and_update().clone() else {
                break;
            };
            let text = serde_json::to_string(&report).expect("a report serializes");
            let patch = json!({"metadata": {"annotations": {REPLICA: text}}});
            let params = PatchParams::default();
            let written = tokio::time::timeout(
                API_DEADLINE,
                pods.patch(&pod, &params, &Patch::Merge(&patch)),
            )
            .await;
            match written {
                Ok(Ok(_)) => {
                    info!(report = text, "reported the replica's state");
                    break;
                }
                Ok(Err(error)) => warn!(%error, "cannot report the replica's state"),
                Err(_) => warn!("cannot report the replica's state: no answer in time"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn group(role: Role, synchronized: bool, connected: bool, databases: &[&str]) -> GroupState {
        GroupState {
            name: "ag".to_owned(),
            sequence: 7,
            role,
            connected,
            synchronized,
            databases: databases.iter().map(|d| (*d).to_owned()).collect(),
            required: 1,
        }
    }

    fn reading(role: Option<&'static str>, synchronized: bool, connected: bool) -> Reading {
        Reading {
            role,
            synchronized,
            connected,
            replicas: Vec::new(),
            endpoint: None,
        }
    }

    #[test]
    fn a_reading_is_what_sql_server_says_of_the_replica() {
        let spec = ["agdb1".to_owned()];
        assert_eq!(
            Reading::of(&group(Role::Primary, true, true, &["agdb1"]), &spec),
            reading(Some("PRIMARY"), true, true)
        );
        assert_eq!(
            Reading::of(&group(Role::Secondary, true, true, &["AGDB1"]), &spec),
            reading(Some("SECONDARY"), true, true),
            "database names compare as SQL Server's do"
        );
        assert_eq!(
            Reading::of(&group(Role::Secondary, false, true, &["agdb1"]), &spec),
            reading(Some("SECONDARY"), false, true)
        );
        assert_eq!(
            Reading::of(&group(Role::Resolving, false, false, &["agdb1"]), &spec),
            reading(Some("RESOLVING"), false, false)
        );
        assert_eq!(Reading::nothing(), reading(None, false, false));
    }

    #[test]
    fn a_secondary_not_seeded_yet_is_not_synchronized() {
        let spec = ["agdb1".to_owned(), "agdb2".to_owned()];
        // Its one database says SYNCHRONIZED; the other has not reached it.
        let seeding = group(Role::Secondary, true, true, &["agdb1"]);
        assert!(!Reading::of(&seeding, &spec).synchronized);
        // The primary adds the databases itself: what it has is all there is yet.
        let primary = group(Role::Primary, true, true, &["agdb1"]);
        assert!(Reading::of(&primary, &spec).synchronized);
    }

    #[test]
    fn a_report_is_made_only_when_the_state_changes_and_says_since_when() {
        let at = |second| Timestamp::from_second(second).unwrap();
        let primary = reading(Some("PRIMARY"), true, true);
        let first = next(None, &primary, at(1_767_225_600)).expect("nothing was published");
        assert_eq!(
            first,
            ReplicaReport {
                role: Some("PRIMARY".to_owned()),
                synchronized: true,
                connected: true,
                since: "2026-01-01T00:00:00Z".to_owned(),
                replicas: Vec::new(),
                endpoint: None,
            }
        );
        assert_eq!(
            next(Some(&first), &primary, at(1_767_225_660)),
            None,
            "steady: no write"
        );
        let silent = next(Some(&first), &Reading::nothing(), at(1_767_225_661)).unwrap();
        assert_eq!(
            (silent.role, silent.since.as_str()),
            (None, "2026-01-01T00:01:01Z")
        );
        for changed in [
            reading(Some("SECONDARY"), true, true),
            reading(Some("PRIMARY"), false, true),
            reading(Some("PRIMARY"), true, false),
            primary.clone().listing(&["ag-0".to_owned()]),
        ] {
            assert!(next(Some(&first), &changed, at(0)).is_some(), "{changed:?}");
        }
    }

    #[test]
    fn only_a_primary_lists_its_group_s_replicas() {
        let replicas = ["ag-0".to_owned(), "ag-1".to_owned()];
        let primary = reading(Some("PRIMARY"), true, true).listing(&replicas);
        assert_eq!(primary.replicas, replicas);
        let secondary = reading(Some("SECONDARY"), true, true).listing(&replicas);
        assert!(secondary.replicas.is_empty());
    }

    #[test]
    fn since_is_in_whole_seconds() {
        let now = Timestamp::from_millisecond(1_767_225_600_750).unwrap();
        let report = next(None, &Reading::nothing(), now).unwrap();
        assert_eq!(report.since, "2026-01-01T00:00:00Z");
    }
}
