//! Scaling an availability group on the real node `real-1`, with a writer committing through the
//! primary Service throughout: KubeDB's `mssql-ag-cluster` guide scaled from three replicas to
//! four (a fourth replica is added and seeded, and the count being even, the arbiter joins), then
//! back to three (the fourth replica leaves the group, then its pod and volume go, and so does
//! the arbiter). No pod the group keeps is restarted, the primary stays, no acknowledged write is
//! lost and never two primaries are seen.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use mssql_api::pods::replica_report;
use mssql_e2e::group::{DB, Group};
use mssql_e2e::real_node::assert_node_ready;

#[tokio::test(flavor = "multi_thread")]
async fn a_group_scales_up_and_down_without_restarting_a_pod() {
    assert_node_ready();
    let mut group = Group::form("real-ag-scale", 3).await;
    let primary = group.primary(None).await;
    let mut uids = Vec::new();
    for pod in group.pods() {
        uids.push((pod.clone(), group.uid(&pod).await));
    }
    let traffic = group.traffic().await;

    // Up: a fourth replica, seeded with every row, and the arbiter.
    group.scale(4).await;
    let fourth = format!("{DB}-3");
    let arbiter = format!("{DB}-arbiter-0");
    group.ready_pod(&fourth, None).await;
    group.ready_pod(&arbiter, None).await;
    group.status_shows(&primary).await;
    group.has_rows(&fourth, &[0], Duration::from_secs(60)).await;
    assert_eq!(group.primary(None).await, primary, "the primary stays");

    // Down: the fourth replica leaves the group before its pod and volume go. Watched every
    // 100 ms: once its pod is seen going, the primary no longer lists it (its report is
    // rewritten when the group changes, and a removed replica is never listed again).
    group.scale(3).await;
    let pods = group.t.api::<Pod>();
    let watching = std::time::Instant::now();
    loop {
        let going = match pods.get_opt(&fourth).await.unwrap() {
            None => true,
            Some(pod) => pod.metadata.deletion_timestamp.is_some(),
        };
        if going {
            let primary_pod = pods.get(&primary).await.unwrap();
            let listed = replica_report(&primary_pod).unwrap().replicas;
            assert!(
                !listed.contains(&fourth),
                "{fourth} went while the group still had it: {listed:?}"
            );
            break;
        }
        assert!(
            watching.elapsed() < Duration::from_secs(120),
            "{fourth} was never let go"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    group.t.wait_gone::<Pod>(&fourth).await;
    group
        .t
        .wait_gone::<PersistentVolumeClaim>(&format!("data-{fourth}"))
        .await;
    group.t.wait_gone::<Pod>(&arbiter).await;
    group.status_shows(&primary).await;
    assert_eq!(group.primary(None).await, primary, "the primary stays");
    for (pod, uid) in &uids {
        assert_eq!(&group.uid(pod).await, uid, "{pod} was not restarted");
    }
    // Each step was told.
    let told: Vec<String> = group
        .t
        .events_of(DB)
        .await
        .into_iter()
        .filter(|(_, note)| note.contains(&fourth))
        .map(|(reason, _)| reason)
        .collect();
    for reason in ["ReplicaAdded", "ReplicaRemoved"] {
        assert!(told.iter().any(|r| r == reason), "no {reason}: {told:?}");
    }
    group.end(traffic).await;
}
