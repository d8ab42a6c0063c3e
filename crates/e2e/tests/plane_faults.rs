//! The plane itself failing mid-request: kube-apiserver and cert-manager killed (SIGKILL) while a
//! rotation runs, brought back by `hack/cluster/up`, which starts only what is not running and
//! keeps etcd's data. The request ends Successful, the pod was replaced once, and the database is
//! the same object it was.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use mssql_api::condition;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use mssql_e2e::cluster::eventually;
use mssql_e2e::fixture::{READY_TIMEOUT, Setup, create_ops, summary, wait_ops};
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
    let requests = t.api::<MssqlServerOpsRequest>();
    eventually(
        "the rotation to pause the database",
        OPS_TIMEOUT,
        || async {
            let ops = requests.get(&name).await.map_err(|e| e.to_string())?;
            let conditions = ops.status.unwrap_or_default().conditions;
            match condition::find(&conditions, "DatabasePauseSucceeded") {
                Some(c) if c.is_true() => Ok(()),
                _ => Err(format!("{:?}", summary(&conditions))),
            }
        },
    )
    .await;
    plane::kill("cert-manager");
    plane::kill("kube-apiserver");
    // The operator's calls fail for a while; nothing it does may be lost or done twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    plane::resume();

    let done = wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    let evictions: Vec<String> = done
        .status
        .unwrap()
        .conditions
        .iter()
        .filter(|c| c.type_.starts_with("EvictPod--"))
        .map(|c| c.type_.clone())
        .collect();
    assert_eq!(
        evictions,
        [format!("EvictPod--{POD}")],
        "the pod was evicted once"
    );
    let db = t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
    assert_eq!(db.uid(), db_uid, "etcd's data was kept: the same database");
    assert_ne!(
        t.api::<Pod>().get(POD).await.unwrap().uid(),
        pod_uid,
        "the pod was replaced"
    );
}
