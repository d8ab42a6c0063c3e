//! Scaling an availability group on the real node `real-1`, with a writer committing through the
//! primary Service throughout: KubeDB's `mssql-ag-cluster` guide scaled from three replicas to
//! four (a fourth replica is added and seeded, and the count being even, the arbiter joins), then
//! back to three (the fourth replica leaves the group, then its pod and volume go, and so does
//! the arbiter); no pod the group keeps is restarted and the primary stays. Then, its primary
//! moved to `-1` by a failover, the group is scaled to one replica: the leaving primary hands the
//! role to `-0` before the group lets it go; scaled to three again, two new replicas are seeded.
//! Halted, the group keeps its volumes; resumed, it forms again from them. No acknowledged write
//! is lost and never two primaries are seen.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use mssql_api::labels::{ROLE, ROLE_PRIMARY};
use mssql_api::pods::replica_report;
use mssql_e2e::group::{DB, Fault, Group};
use mssql_e2e::real_node::{QUICK_START, assert_node_ready};

#[tokio::test(flavor = "multi_thread")]
async fn a_group_scales_up_and_down_without_restarting_a_pod() {
    assert_node_ready();
    let mut group = Group::form("real-ag-scale", 3, QUICK_START).await;
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

    // Down: the fourth replica leaves the group before its pod and volume go.
    group.scale(3).await;
    let_go_in_order(&group, std::slice::from_ref(&fourth)).await;
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

    // A leaving primary: failed over to -1 (the lowest synchronized other ordinal), then the
    // group scaled to one replica. -1 hands the role to -0 before it goes.
    let first = format!("{DB}-0");
    assert_eq!(primary, first, "the first primary is the lowest ordinal");
    Fault::PodDeleted.inflict(&group, &primary);
    let second = group.primary(Some(&primary)).await;
    assert_eq!(second, format!("{DB}-1"));
    group.status_shows(&second).await;
    group.scale(1).await;
    let_go_in_order(&group, &[second.clone(), format!("{DB}-2")]).await;
    assert_eq!(group.primary(None).await, first);
    group.status_shows(&first).await;

    // Back to three: two new replicas, seeded from the one left.
    group.scale(3).await;
    group.status_shows(&first).await;

    // Halted, the group keeps its volumes and with them the group; resumed, it forms again.
    group.halt(true).await;
    for pod in group.pods() {
        group.t.wait_gone::<Pod>(&pod).await;
        let claims = group.t.api::<PersistentVolumeClaim>();
        assert!(
            claims
                .get_opt(&format!("data-{pod}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    group.halt(false).await;
    let primary = group.primary(None).await;
    group.status_shows(&primary).await;
    group.end(traffic).await;
}

/// Watches the pods `leaving` go, every 100 ms: once one is seen going, the pod labelled primary
/// is one the group keeps and its group no longer lists the leaving one (the primary's report is
/// rewritten when its group changes, and a removed replica is never listed again). Then each is
/// gone, and its volume too.
async fn let_go_in_order(group: &Group, leaving: &[String]) {
    let pods = group.t.api::<Pod>();
    let kept = group.pods();
    let watching = Instant::now();
    let mut seen_going: Vec<String> = Vec::new();
    while seen_going.len() < leaving.len() {
        for pod in leaving {
            if seen_going.contains(pod) {
                continue;
            }
            let going = match pods.get_opt(pod).await.unwrap() {
                None => true,
                Some(pod) => pod.metadata.deletion_timestamp.is_some(),
            };
            if !going {
                continue;
            }
            let primaries: Vec<Pod> = pods
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|p| p.labels().get(ROLE).map(String::as_str) == Some(ROLE_PRIMARY))
                .collect();
            let [primary] = primaries.as_slice() else {
                panic!(
                    "{pod} went while {} pods were labelled primary",
                    primaries.len()
                );
            };
            let name = primary.name_any();
            assert!(kept.contains(&name), "{pod} went while {name} was primary");
            let listed = replica_report(primary).unwrap().replicas;
            assert!(
                !listed.contains(pod),
                "{pod} went while the group still had it: {listed:?}"
            );
            seen_going.push(pod.clone());
        }
        assert!(
            watching.elapsed() < Duration::from_secs(120),
            "{leaving:?}: only {seen_going:?} were let go"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pod in leaving {
        group.t.wait_gone::<Pod>(pod).await;
        group
            .t
            .wait_gone::<PersistentVolumeClaim>(&format!("data-{pod}"))
            .await;
    }
}
