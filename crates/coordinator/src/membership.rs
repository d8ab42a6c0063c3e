//! Who the group's voters are: the replicas its database's spec asks for (`spec.replicas`), and
//! the arbiter when that count is even. The count is read from the API server while the
//! coordinator runs, not given at its start, so that scaling a group restarts no pod. The same
//! read says which replica the operator wants primary during an ops request (a planned
//! switchover).

use std::time::Duration;

use kube::Api;
use kube::ResourceExt;
use mssql_api::annotations::{ENDPOINT_CERTIFICATE, SWITCHOVER};
use mssql_api::condition;
use mssql_api::mssql::MssqlServer;
use mssql_api::phase::PAUSED;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::API_DEADLINE;
use crate::run::Member;

/// How often the database is read again.
const EVERY: Duration = Duration::from_secs(5);

/// How members are named and reached.
#[derive(Clone, Debug)]
pub struct Membership {
    /// The `MSSQLServer`'s name: replicas are pods `<database>-0` … `<database>-<n - 1>`.
    pub database: String,
    pub namespace: String,
    /// How a member's host name is made from its pod name (`{pod}`, `{database}`, `{namespace}`).
    pub host_template: String,
    /// Members reached elsewhere than the template says (pod name, host): tests that run them as
    /// processes on loopback addresses.
    pub hosts: Vec<(String, String)>,
    /// The port every coordinator answers the others on.
    pub peer_port: u16,
}

impl Membership {
    fn host(&self, pod: &str) -> String {
        self.hosts
            .iter()
            .find(|(name, _)| name == pod)
            .map(|(_, host)| host.clone())
            .unwrap_or_else(|| {
                self.host_template
                    .replace("{pod}", pod)
                    .replace("{database}", &self.database)
                    .replace("{namespace}", &self.namespace)
            })
    }

    fn arbiter_pod(&self) -> String {
        format!("{}-0", mssql_api::names::arbiter(&self.database))
    }

    /// The voters of a group of `replicas` replicas.
    pub fn members(&self, replicas: u32) -> Vec<Member> {
        let mut members: Vec<Member> = (0..replicas)
            .map(|i| self.member(&format!("{}-{i}", self.database)))
            .collect();
        if mssql_api::validated::group_has_arbiter(i32::try_from(replicas).unwrap_or(i32::MAX)) {
            members.push(self.member(&self.arbiter_pod()));
        }
        members
    }

    /// `pod` as a member, whether or not the group has it (a pod the spec no longer wants still
    /// runs until the operator removes it).
    pub fn member(&self, pod: &str) -> Member {
        let arbiter = pod == self.arbiter_pod();
        let ordinal = pod
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        Member {
            host: self.host(pod),
            name: pod.to_owned(),
            ordinal,
            arbiter,
            peer_port: self.peer_port,
        }
    }
}

/// What the database asks of its group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub replicas: u32,
    /// The replica an ops request wants primary ([`SWITCHOVER`]).
    pub switchover_to: Option<String>,
    /// The endpoint certificate an ops request wants every replica to trust
    /// ([`ENDPOINT_CERTIFICATE`]): its serial, and the Secret that holds it.
    pub endpoint: Option<(String, String)>,
}

fn paused(db: &MssqlServer) -> bool {
    db.status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, PAUSED))
        .is_some_and(condition::Condition::is_true)
}

/// The replica count a read of the database gives: its `spec.replicas`, except that while an
/// ops request holds the database (`Paused`) the group keeps the size it had (`last`), as the
/// operator keeps its StatefulSet: a request restarting pods never meets a group changing size.
pub fn replicas(db: &MssqlServer, last: Option<u32>) -> Option<u32> {
    let wanted = db.spec.replicas.and_then(|n| u32::try_from(n).ok());
    if paused(db) { last.or(wanted) } else { wanted }
}

/// What a request asks of the group through annotation `key`: only while it holds the database,
/// so that a mark it left behind is never acted on afterwards.
fn asked(db: &MssqlServer, key: &str) -> Option<String> {
    paused(db)
        .then(|| db.annotations().get(key).cloned())
        .flatten()
        .filter(|value| !value.is_empty())
}

/// The replica a planned switchover names ([`SWITCHOVER`]).
pub fn switchover_to(db: &MssqlServer) -> Option<String> {
    asked(db, SWITCHOVER)
}

/// The endpoint certificate a request wants trusted ([`ENDPOINT_CERTIFICATE`]): its serial, and
/// the Secret that holds it.
pub fn endpoint(db: &MssqlServer) -> Option<(String, String)> {
    let serial = asked(db, ENDPOINT_CERTIFICATE)?;
    Some((serial, db.certificate_secret(mssql_api::ALIAS_ENDPOINT)))
}

/// What the database wants ([`replicas`], [`switchover_to`], [`endpoint`]), read now and every few seconds by
/// a task of its own (an API server that does not answer holds up neither the loop nor the
/// write lease's renewal). `None` until a first read is answered; a failed read keeps the last.
pub fn watch(api: Api<MssqlServer>, database: String) -> watch::Receiver<Option<Wanted>> {
    let (sender, receiver) = watch::channel(None::<Wanted>);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let read = tokio::time::timeout(API_DEADLINE, api.get(&database)).await;
            let db = match read {
                Ok(Ok(db)) => db,
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot read the database");
                    continue;
                }
                Err(_) => continue,
            };
            let last = sender.borrow().as_ref().map(|w| w.replicas);
            let Some(replicas) = replicas(&db, last) else {
                warn!("the database's spec has no replica count");
                continue;
            };
            let wanted = Wanted {
                replicas,
                switchover_to: switchover_to(&db),
                endpoint: endpoint(&db),
            };
            sender.send_if_modified(|last| {
                let changed = last.as_ref() != Some(&wanted);
                if changed {
                    info!(
                        replicas,
                        switchover_to = wanted.switchover_to,
                        "the database wants"
                    );
                    *last = Some(wanted);
                }
                changed
            });
            if sender.is_closed() {
                return;
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership() -> Membership {
        Membership {
            database: "ag".to_owned(),
            namespace: "demo".to_owned(),
            host_template: "{pod}.{database}-pods.{namespace}.svc".to_owned(),
            hosts: vec![("ag-0".to_owned(), "127.0.0.7".to_owned())],
            peer_port: 2380,
        }
    }

    #[test]
    fn members_are_the_replicas_and_for_an_even_count_the_arbiter() {
        let names = |n| -> Vec<(String, u32, bool)> {
            membership()
                .members(n)
                .into_iter()
                .map(|m| (m.name, m.ordinal, m.arbiter))
                .collect()
        };
        let replica = |i: u32| (format!("ag-{i}"), i, false);
        let arbiter = ("ag-arbiter-0".to_owned(), 0, true);
        assert_eq!(names(3), vec![replica(0), replica(1), replica(2)]);
        assert_eq!(names(2), vec![replica(0), replica(1), arbiter.clone()]);
        assert_eq!(
            names(4),
            vec![replica(0), replica(1), replica(2), replica(3), arbiter]
        );
    }

    #[test]
    fn members_are_reached_by_their_dns_names_unless_told_otherwise() {
        let members = membership().members(2);
        assert_eq!(members[0].host, "127.0.0.7");
        assert_eq!(members[1].host, "ag-1.ag-pods.demo.svc");
        assert_eq!(members[2].host, "ag-arbiter-0.ag-pods.demo.svc");
        assert!(members.iter().all(|m| m.peer_port == 2380));
    }

    #[test]
    fn while_an_ops_request_holds_the_database_the_group_keeps_its_size() {
        let mut db: MssqlServer = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedb.com/v1alpha2",
            "kind": "MSSQLServer",
            "metadata": {"name": "ag"},
            "spec": {"version": "2022-cu12", "replicas": 5},
        }))
        .unwrap();
        assert_eq!(replicas(&db, Some(3)), Some(5));
        let paused = |status: &str| {
            serde_json::from_value(serde_json::json!({"conditions": [{
                "type": "Paused", "status": status, "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]}))
            .unwrap()
        };
        db.status = Some(paused("True"));
        assert_eq!(replicas(&db, Some(3)), Some(3));
        assert_eq!(
            replicas(&db, None),
            Some(5),
            "a coordinator started meanwhile"
        );
        db.status = Some(paused("False"));
        assert_eq!(replicas(&db, Some(3)), Some(5));
    }

    #[test]
    fn a_switchover_is_honoured_only_while_an_ops_request_holds_the_database() {
        let mut db: MssqlServer = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedb.com/v1alpha2",
            "kind": "MSSQLServer",
            "metadata": {"name": "ag", "annotations": {SWITCHOVER: "ag-2"}},
            "spec": {"version": "2022-cu12", "replicas": 3},
        }))
        .unwrap();
        assert_eq!(switchover_to(&db), None, "left behind by a request");
        db.status = Some(
            serde_json::from_value(serde_json::json!({"conditions": [{
                "type": "Paused", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]}))
            .unwrap(),
        );
        assert_eq!(switchover_to(&db).as_deref(), Some("ag-2"));
        db.annotations_mut()
            .insert(SWITCHOVER.to_owned(), String::new());
        assert_eq!(switchover_to(&db), None);
    }

    #[test]
    fn a_pod_the_group_no_longer_has_is_still_a_member_by_its_name() {
        let leaving = membership().member("ag-4");
        assert_eq!((leaving.ordinal, leaving.arbiter), (4, false));
        assert!(!membership().members(3).contains(&leaving));
    }
}
