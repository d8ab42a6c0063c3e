//! A real availability group on the real node `real-1` (`mssql_e2e::group`): KubeDB's
//! `mssql-ag-cluster` guide on the SQL Server test double, every pod running its
//! `mssql-coordinator`, the operator installed by its Helm chart. The group forms (one primary,
//! labels, the Services' endpoints); a row written through the primary Service reaches every
//! secondary; and the group fails over, the old primary rejoining as a secondary, when the
//! primary pod is deleted, its server killed, its server frozen (SIGSTOP), its coordinator
//! killed, and when the primary pod is deleted while the operator is stopped. Throughout, a
//! writer commits a row through the primary Service every 100 ms and reconnects on error, as a
//! pooled application would, and a sampler checks every 100 ms that never two pods are labelled
//! `primary` and never two servers accept a write. No acknowledged write is missing at the end.
//! After each failover the database's `status.replicas` shows the new primary, and the operator's
//! `mssql_operator_failovers_total` has counted it, even the one made while it was stopped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use mssql_e2e::cluster::eventually;
use mssql_e2e::group::{DB, FAILOVER, Fault, Group};
use mssql_e2e::real_node::{QUICK_START, assert_node_ready, wait_leader};
use mssql_e2e::scrape;

/// Waits until the leading operator's `mssql_operator_failovers_total` of the group is `count`.
async fn failovers_counted(group: &Group, count: u32) {
    let leader = wait_leader(&group.t.client, &group.operator_ns, None).await;
    let pods: Api<Pod> = Api::namespaced(group.t.client.clone(), &group.operator_ns);
    let series = format!(
        "mssql_operator_failovers_total{{namespace=\"{}\",database=\"{DB}\"}}",
        group.t.ns.name
    );
    eventually(
        &format!("{leader} to have counted {count} failovers"),
        Duration::from_secs(30),
        || async {
            let ip = pods
                .get(&leader)
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.pod_ip)
                .ok_or("no address")?;
            let addr = SocketAddr::new(ip.parse().map_err(|_| "an address")?, 8080);
            let (_, metrics) = scrape::get_from(addr, "/metrics")?;
            match scrape::value(&metrics, &series) {
                Some(n) if n == f64::from(count) => Ok(()),
                other => Err(format!("{series} is {other:?}")),
            }
        },
    )
    .await;
}

/// Waits until no operator pod runs: it cannot see what happens next.
async fn operator_gone(group: &Group) {
    let pods: Api<Pod> = Api::namespaced(group.t.client.clone(), &group.operator_ns);
    eventually("the operator's pods to be gone", FAILOVER, || async {
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
        names.is_empty().then_some(()).ok_or(format!("{names:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_forms_and_fails_over_on_real_containers_without_losing_a_write() {
    assert_node_ready();
    let group = Group::form("real-ag", 3, QUICK_START).await;
    let mut primary = group.primary(None).await;
    // Each replica in the status: one PRIMARY labelled primary, two SECONDARY synchronized.
    group.status_shows(&primary).await;
    failovers_counted(&group, 0).await;

    // The secondaries' Service sends clients to the two others.
    let secondaries = format!("{DB}-secondary");
    eventually(
        "the secondaries' Service to have two endpoints",
        Duration::from_secs(30),
        || async {
            let ready = group.ready_endpoints(&secondaries).await?;
            (ready.len() == 2).then_some(()).ok_or(format!("{ready:?}"))
        },
    )
    .await;

    let traffic = group.traffic().await;
    for (done, fault) in (1..).zip(Fault::ALL) {
        let at = Instant::now();
        fault.inflict(&group, &primary);
        let next = group.primary(Some(&primary)).await;
        println!("{fault:?}: {primary} → {next} in {:.1?}", at.elapsed());
        if fault == Fault::ServerFrozen {
            group.signal(&primary, "mssql", "-CONT");
        }
        // The old primary rejoins as a secondary; the status and the count follow.
        group.primary(None).await;
        group.status_shows(&next).await;
        failovers_counted(&group, done).await;
        primary = next;
    }

    // The operator stopped: the coordinators fail over by themselves.
    group.scale_operator(0);
    operator_gone(&group).await;
    let at = Instant::now();
    Fault::PodDeleted.inflict(&group, &primary);
    let next = group.primary(Some(&primary)).await;
    println!(
        "the primary pod deleted, the operator stopped: {primary} → {next} in {:.1?}",
        at.elapsed()
    );
    group.primary(None).await;
    group.scale_operator(1);
    wait_leader(&group.t.client, &group.operator_ns, None).await;
    // The new operator finds the move against the primary its predecessor's status recorded.
    group.status_shows(&next).await;
    failovers_counted(&group, 1).await;

    group.end(traffic).await;
}
