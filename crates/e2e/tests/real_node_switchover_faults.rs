//! Faults during a planned switchover (issue 26), on real containers: a three-replica group on
//! the real node rotates its certificates (server and endpoint) with a writer running through the
//! primary Service, and something is killed while the primary role is being handed over:
//!
//! - the operator, once it asked for the switchover and before it restarts the old primary;
//! - the switchover target (its server and its coordinator), once the old primary let go;
//! - the old primary's coordinator, once the switchover is asked.
//!
//! Each request still ends Successful (which the operator grants only once every pod runs, and
//! serves, what its Secrets hold), with one primary that is not the old one, every replica
//! presenting and trusting only the new endpoint certificate, every acknowledged write on every
//! replica, never two primaries sampled, and the database resumed.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use mssql_api::annotations::SWITCHOVER;
use mssql_api::labels::ROLE;
use mssql_api::names;
use mssql_api::pods::replica_report;
use mssql_api::{ALIAS_ENDPOINT, MssqlServer};
use mssql_e2e::client_gap::{CHANGE_TIMEOUT, Change, during};
use mssql_e2e::cluster::{eventually, eventually_every};
use mssql_e2e::fixture::READY_TIMEOUT;
use mssql_e2e::group::{DB, Group};
use mssql_e2e::real_node::{QUICK_START, assert_node_ready, signal_container, wait_leader};
use mssql_e2e::renewal::serial;

/// How often the moments of a hand-over are looked for: they last a few hundred milliseconds.
const MOMENT: Duration = Duration::from_millis(20);

/// Who is killed during the hand-over.
#[derive(Clone, Copy, Debug)]
enum Killed {
    Operator,
    Target,
    OldPrimaryCoordinator,
}

impl Killed {
    const ALL: [Self; 3] = [Self::Operator, Self::Target, Self::OldPrimaryCoordinator];

    /// Waits for its moment in the request under way, kills, and says what it killed when.
    async fn inflict(self, group: &Group, old: &str) -> String {
        let target = switchover_asked(group).await;
        match self {
            Self::Operator => {
                let leader = wait_leader(&group.t.client, &group.operator_ns, None).await;
                signal_container(&group.operator_ns, &leader, "operator", "-KILL");
                format!("the operator {leader} killed once it asked {old} to hand over to {target}")
            }
            Self::Target => {
                let moment = promotion_begun(group, old, &target).await;
                group.signal(&target, "mssql", "-KILL");
                group.signal(&target, "mssql-coordinator", "-KILL");
                format!("the target {target} killed (server and coordinator) once {moment}")
            }
            Self::OldPrimaryCoordinator => {
                group.signal(old, "mssql-coordinator", "-KILL");
                format!("{old}'s coordinator killed once asked to hand over to {target}")
            }
        }
    }
}

/// The pod the request asked to become primary, once it asks.
async fn switchover_asked(group: &Group) -> String {
    let databases = group.t.api::<MssqlServer>();
    eventually_every(
        MOMENT,
        "the request to ask for a switchover",
        CHANGE_TIMEOUT,
        || async {
            let db = databases.get(DB).await.map_err(|e| e.to_string())?;
            db.annotations()
                .get(SWITCHOVER)
                .cloned()
                .ok_or_else(|| "not asked yet".into())
        },
    )
    .await
}

/// Once the old primary has let go (labelled itself secondary) or the target is labelled
/// primary, whichever is seen first: what was seen.
async fn promotion_begun(group: &Group, old: &str, target: &str) -> String {
    let pods = group.t.api::<Pod>();
    eventually_every(MOMENT, "the hand-over to begin", CHANGE_TIMEOUT, || async {
        let role = |pod: Pod| pod.labels().get(ROLE).cloned();
        let old_role = role(pods.get(old).await.map_err(|e| e.to_string())?);
        let target_role = role(pods.get(target).await.map_err(|e| e.to_string())?);
        match (old_role.as_deref(), target_role.as_deref()) {
            (_, Some("primary")) => Ok(format!("{target} was labelled primary")),
            (Some("primary"), _) => Err("not begun".into()),
            (other, _) => Ok(format!(
                "{old} was labelled {other:?}, {target} not yet primary"
            )),
        }
    })
    .await
}

/// Every replica reports presenting the endpoint Secret's certificate, and trusting no other.
async fn endpoint_current(group: &Group) {
    let secret = names::certificate(DB, ALIAS_ENDPOINT);
    let current = serial(&group.t, &secret).await;
    let pods = group.t.api::<Pod>();
    for pod in group.pods() {
        eventually(
            &format!("{pod} to present and trust only {current}"),
            Duration::from_secs(60),
            || async {
                let found = pods.get(&pod).await.map_err(|e| e.to_string())?;
                let endpoint = replica_report(&found).and_then(|r| r.endpoint);
                match endpoint {
                    Some(e) if e.presents(&current) && e.trusts_only(&current) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switchover_survives_a_kill_of_each_party() {
    assert_node_ready();
    let group = Group::form("real-ag-faults", 3, QUICK_START).await;
    // Rotations need TLS on the group first.
    during(&group, Change::AddTls).await;
    for fault in Killed::ALL {
        let old = group.primary(None).await;
        let (seen, killed) =
            tokio::join!(during(&group, Change::Rotate), fault.inflict(&group, &old));
        println!("{fault:?}: {killed}\n{seen}");
        assert_ne!(
            seen.primaries.0, seen.primaries.1,
            "{fault:?}: the primary role moved"
        );
        group.t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
        endpoint_current(&group).await;
    }
    group.delete().await;
}
