//! An even-sized availability group on the real node `real-1`: KubeDB's `mssql-ag-cluster` guide
//! with two replicas, so the operator adds the arbiter `<db>-arbiter-0`, a pod that runs only its
//! coordinator. The arbiter votes and is never primary. The group fails over when the primary pod
//! is deleted (its coordinator hands over), and when the whole primary pod is frozen: then nobody
//! hands over, the Lease runs out, and the surviving secondary and the arbiter are the majority of
//! three voters that elects the secondary. Each time the old primary rejoins as a secondary. A writer commits through the primary Service throughout;
//! no acknowledged write is lost and never two primaries are seen.

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use mssql_api::labels::ROLE;
use mssql_e2e::group::{Fault, Group};
use mssql_e2e::real_node::{QUICK_START, assert_node_ready};

#[tokio::test(flavor = "multi_thread")]
async fn an_even_group_fails_over_by_its_arbiters_vote() {
    assert_node_ready();
    let group = Group::form("real-ag-even", 2, QUICK_START).await;

    // The arbiter: its coordinator alone, labelled arbiter, running on the node.
    let arbiter = format!("{}-arbiter-0", mssql_e2e::group::DB);
    group.ready_pod(&arbiter, None).await;
    let pod = group.t.api::<Pod>().get(&arbiter).await.unwrap();
    assert_eq!(pod.labels().get(ROLE).map(String::as_str), Some("arbiter"));
    let spec = pod.spec.unwrap();
    let containers: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(containers, ["mssql-coordinator"]);
    assert!(spec.init_containers.is_none());

    let primary = group.primary(None).await;
    group.status_shows(&primary).await;
    let traffic = group.traffic().await;
    Fault::PodDeleted.inflict(&group, &primary);
    let next = group.primary(Some(&primary)).await;
    println!("PodDeleted: {primary} → {next}");
    // The old primary rejoins as a secondary.
    group.status_shows(&next).await;

    // The whole primary pod frozen: no coordinator hands over, so the Lease runs out and the
    // secondary is elected by its own vote and the arbiter's, two of three.
    let primary = next;
    let at = Instant::now();
    Fault::PodFrozen.inflict(&group, &primary);
    let next = group.primary(Some(&primary)).await;
    println!("PodFrozen: {primary} → {next} in {:.1?}", at.elapsed());
    group.signal(&primary, "mssql", "-CONT");
    group.signal(&primary, "mssql-coordinator", "-CONT");
    group.status_shows(&next).await;

    group.end(traffic).await;
}
