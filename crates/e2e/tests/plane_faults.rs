//! The plane itself failing or lagging mid-request.
//! - kube-apiserver and cert-manager killed (SIGKILL) while a rotation runs, started again by
//!   their supervisor (as a kubelet restarts a static pod; etcd's data kept), and `hack/cluster/up`
//!   waits until the plane answers. The request ends Successful, the pod was replaced, and the
//!   database is the same object it was. A finalizer holds the evicted pod, so the request cannot
//!   have ended before the plane is killed, however fast the operator is.
//! - The StatefulSet controller stopped (SIGSTOP) as the rotation updates the StatefulSet: no pod
//!   is evicted until it has seen the new template, else it would make the pod again from the
//!   old one (what CI once met after an API server restart).
//!
//! The tests of this file take turns: each stops a part of the plane the other needs.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use mssql_api::MssqlServer;
use mssql_e2e::fixture::{PodHold, READY_TIMEOUT, Setup, create_ops, evicted, wait_ops, wait_step};
use mssql_e2e::plane;
use serde_json::json;

const DB: &str = "mssql-standalone-tls";
const POD: &str = "mssql-standalone-tls-0";
// On fake nodes a restart can wait for a PodDisruptionBudget (docs/testing.md).
const OPS_TIMEOUT: Duration = Duration::from_secs(300);

static PLANE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Ready TLS database in a namespace of its own, and its pod's uid.
async fn ready_database(prefix: &str) -> (Setup, Option<String>) {
    let t = Setup::new(prefix).await;
    t.create_example(DB, |_| {}).await;
    t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
    let pod_uid = t.api::<Pod>().get(POD).await.unwrap().uid();
    (t, pod_uid)
}

async fn rotate(t: &Setup) -> String {
    create_ops(t, "msops-rotate", |ops| {
        ops["spec"]["databaseRef"]["name"] = json!(DB);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_and_cert_manager_killed_mid_rotation_come_back_and_it_succeeds() {
    let _turn = PLANE.lock().await;
    let (t, pod_uid) = ready_database("plane-faults").await;
    let db_uid = t.api::<MssqlServer>().get(DB).await.unwrap().uid();
    let mut hold = PodHold::on(&t.ns.name, POD);

    let name = rotate(&t).await;
    wait_step(&t, &name, "DatabasePauseSucceeded", OPS_TIMEOUT).await;
    plane::kill("cert-manager");
    plane::kill("kube-apiserver");
    // The operator's calls fail for a while; nothing it does may be lost or done twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    plane::resume();
    hold.release();

    let done = wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    assert_eq!(evicted(&done), [POD], "the eviction is recorded");
    let db = t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
    assert_eq!(db.uid(), db_uid, "etcd's data was kept: the same database");
    assert_ne!(
        t.api::<Pod>().get(POD).await.unwrap().uid(),
        pod_uid,
        "the pod was replaced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_pod_is_evicted_before_the_statefulset_controller_has_seen_the_new_template() {
    let _turn = PLANE.lock().await;
    let (t, pod_uid) = ready_database("lagging-controller").await;

    let stopped = plane::Stopped::new("kube-controller-manager");
    let name = rotate(&t).await;
    wait_step(&t, &name, "UpdatePetSets", OPS_TIMEOUT).await;
    // The operator would evict within a second of its update; give it three.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = t.api::<Pod>().get_opt(POD).await.unwrap();
    assert!(
        pod.is_some_and(|p| p.uid() == pod_uid && p.metadata.deletion_timestamp.is_none()),
        "no pod was evicted while its StatefulSet controller had not seen the new template"
    );
    drop(stopped);

    let done = wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    assert_eq!(evicted(&done), [POD]);
    let statefulset = t.api::<StatefulSet>().get(DB).await.unwrap();
    let update_revision = statefulset.status.and_then(|s| s.update_revision);
    let pod = t.api::<Pod>().get(POD).await.unwrap();
    assert_ne!(pod.uid(), pod_uid, "the pod was replaced");
    assert_eq!(
        pod.labels().get("controller-revision-hash"),
        update_revision.as_ref(),
        "the new pod runs the new template"
    );
}
