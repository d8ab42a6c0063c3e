//! The plane itself failing mid-request: kube-apiserver and cert-manager killed (SIGKILL) while a
//! rotation runs, brought back by `hack/cluster/up`, which starts only what is not running and
//! keeps etcd's data. The request ends Successful, the pod was replaced once, and the database is
//! the same object it was.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use mssql_api::MssqlServer;
use mssql_e2e::fixture::{READY_TIMEOUT, Setup, create_ops, evicted, wait_ops, wait_step};
use mssql_e2e::plane;
use serde_json::json;

const DB: &str = "mssql-standalone-tls";
const POD: &str = "mssql-standalone-tls-0";
// On fake nodes a restart can wait for a PodDisruptionBudget (docs/testing.md).
const OPS_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_and_cert_manager_killed_mid_rotation_come_back_and_it_succeeds() {
    let t = Setup::new("plane-faults").await;
    t.create_example(DB, |_| {}).await;
    t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
    let db_uid = t.api::<MssqlServer>().get(DB).await.unwrap().uid();
    let pod_uid = t.api::<Pod>().get(POD).await.unwrap().uid();

    let name = create_ops(&t, "msops-rotate", |ops| {
        ops["spec"]["databaseRef"]["name"] = json!(DB);
    })
    .await;
    wait_step(&t, &name, "DatabasePauseSucceeded", OPS_TIMEOUT).await;
    plane::kill("cert-manager");
    plane::kill("kube-apiserver");
    // The operator's calls fail for a while; nothing it does may be lost or done twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    plane::resume();

    let done = wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    assert_eq!(evicted(&done), [POD], "the pod was evicted once");
    let db = t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
    assert_eq!(db.uid(), db_uid, "etcd's data was kept: the same database");
    assert_ne!(
        t.api::<Pod>().get(POD).await.unwrap().uid(),
        pod_uid,
        "the pod was replaced"
    );
}
