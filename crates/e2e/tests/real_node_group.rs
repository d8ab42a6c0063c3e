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

use std::time::{Duration, Instant};

use mssql_e2e::cluster::eventually;
use mssql_e2e::group::{DB, Fault, Group};
use mssql_e2e::real_node::{assert_node_ready, wait_leader};

#[tokio::test(flavor = "multi_thread")]
async fn a_group_forms_and_fails_over_on_real_containers_without_losing_a_write() {
    assert_node_ready();
    let group = Group::form("real-ag").await;
    let mut primary = group.primary(None).await;

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
    for fault in Fault::ALL {
        let at = Instant::now();
        fault.inflict(&group, &primary);
        let next = group.primary(Some(&primary)).await;
        println!("{fault:?}: {primary} → {next} in {:.1?}", at.elapsed());
        if fault == Fault::ServerFrozen {
            group.signal(&primary, "mssql", "-CONT");
        }
        // The old primary rejoins as a secondary.
        group.primary(None).await;
        primary = next;
    }

    // The operator stopped: the coordinators fail over by themselves.
    group.scale_operator(0);
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

    let (written, sampled) = traffic.finish().await;
    println!(
        "writer: {} acknowledged, {} failed attempts, longest gap {:.1?}",
        written.acknowledged.len(),
        written.failed,
        written.longest_gap()
    );
    group.assert_nothing_lost(&written, &sampled).await;
    group.delete().await;
}
