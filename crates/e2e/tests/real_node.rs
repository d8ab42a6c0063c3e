//! Real containers on the real node `real-1` (`hack/cluster/up --real-node`): the operator
//! installed by its Helm chart from an image built here, running in-cluster with its
//! ServiceAccount and its Lease; a 3-replica availability group whose pods run SQL Server's
//! stand-in (hack/cluster/stand-in) there. Checked inside the containers: the init container
//! puts the TLS files in the memory volume, mode 0400, owned by 10001; the server, as 10001, reads
//! them and `mssql.conf` where SQL Server reads them; another uid in the same pod cannot; the
//! kubelet runs the probes. A rotation, with the operator pod evicted in the middle, a Restart and
//! a TLS removal each restart every server container once, the primary last, and each new process
//! reads the new material. The audit log shows that every request of the operator came from its
//! pods, as its ServiceAccount, and that none was refused.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, EvictParams, ListParams};
use kube::{Api, ResourceExt};
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use mssql_e2e::audit::audited;
use mssql_e2e::cluster::{eventually, wait_ready_replicas};
use mssql_e2e::fixture::{SHORT, Setup, create_ops, summary, wait_ops};
use mssql_e2e::kubectl_ok;
use mssql_e2e::real_node::{
    NODE, Release, assert_node_ready, exec, exec_ok, load_images, logs, place_on_node, probe_counts,
};
use mssql_operator::provisioner::is_ready;
use serde_json::{Value, json};

const DB: &str = "mssql-ag-tls";
const VERSION: &str = "2022-stand-in";
const TLS_DIR: &str = "/var/opt/mssql/tls";
/// The primary: pod 1, so that "primary last" cannot be mistaken for ordinal order.
const PRIMARY: &str = "mssql-ag-tls-1";
const RESTART_ORDER: [&str; 3] = ["mssql-ag-tls-0", "mssql-ag-tls-2", "mssql-ag-tls-1"];
const OPS_TIMEOUT: Duration = Duration::from_secs(300);

/// Deletes a cluster-scoped test object when dropped.
struct ClusterObject(&'static str, &'static str);

impl Drop for ClusterObject {
    fn drop(&mut self) {
        let _ = mssql_e2e::kubectl(&["delete", self.0, self.1, "--ignore-not-found"], None);
    }
}

/// The catalog entry of the stand-in: both images are the stand-in's, the uid is SQL Server's.
fn stand_in_version(image: &str) -> String {
    json!({
        "apiVersion": "catalog.kubedb.com/v1alpha1",
        "kind": "MSSQLServerVersion",
        "metadata": {"name": VERSION},
        "spec": {
            "version": "2022",
            "db": {"image": image},
            "initContainer": {"image": image},
            "securityContext": {"runAsUser": 10001},
        },
    })
    .to_string()
}

/// KubeDB's TLS availability group, on the real node: the stand-in version, the node's volumes,
/// small requests, and a second container of another uid that mounts the TLS volume (it must not
/// read the keys).
fn on_the_real_node(db: &mut Value, busybox: &str) {
    let spec = &mut db["spec"];
    spec["version"] = json!(VERSION);
    spec["storage"]["storageClassName"] = json!("real-node-local");
    let pod = &mut spec["podTemplate"]["spec"];
    place_on_node(pod);
    pod["containers"][0]["resources"] = json!({"requests": {"cpu": "50m", "memory": "32Mi"}});
    pod["containers"].as_array_mut().unwrap().push(json!({
        "name": "intruder",
        "image": busybox,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        "securityContext": {"runAsUser": 10002, "runAsGroup": 10002, "runAsNonRoot": true,
                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}],
    }));
}

/// The chart's values for the local image on the real node.
fn operator_values(image: &str) -> Value {
    let (repository, tag) = image.rsplit_once(':').expect("a tagged reference");
    let mut values = json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "logFilter": "info,kube=warn",
    });
    place_on_node(&mut values);
    values
}

async fn operator_pods(client: &kube::Client, namespace: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until one Ready operator pod (not `old`) runs on the node and holds the Lease.
async fn wait_leader(client: &kube::Client, namespace: &str, old: Option<&str>) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    eventually(
        "an operator pod on the node that holds the Lease",
        Duration::from_secs(120),
        || async {
            let pods = operator_pods(client, namespace).await;
            let pod = pods
                .iter()
                .find(|p| is_ready(p) && Some(p.name_any().as_str()) != old)
                .ok_or_else(|| format!("{} pods, none Ready and new", pods.len()))?;
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            if node.as_deref() != Some(NODE) {
                return Err(format!("{} runs on {node:?}", pod.name_any()));
            }
            let holder = leases
                .get_opt("mssql-operator")
                .await
                .map_err(|e| e.to_string())?
                .and_then(|l| l.spec?.holder_identity);
            if holder.as_deref() == Some(pod.name_any().as_str()) {
                Ok(pod.name_any())
            } else {
                Err(format!("the Lease is held by {holder:?}"))
            }
        },
    )
    .await
}

/// One pod's server container, as its pod's status tells.
struct ServerStart {
    uid: String,
    started: Option<Time>,
    restarts: i32,
}

/// Each pod's server container: its pod's uid, when it started, how often it restarted.
async fn pod_starts(t: &Setup) -> BTreeMap<String, ServerStart> {
    let pods = t
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={DB}")))
        .await
        .unwrap();
    pods.items
        .iter()
        .map(|p| {
            let server = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.iter().find(|c| c.name == "mssql"));
            let start = ServerStart {
                uid: p.uid().unwrap(),
                started: server
                    .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone()),
                restarts: server.map_or(-1, |c| c.restart_count),
            };
            (p.name_any(), start)
        })
        .collect()
}

async fn label_roles(t: &Setup) {
    for pod in RESTART_ORDER {
        t.set_role(
            pod,
            if pod == PRIMARY {
                "primary"
            } else {
                "secondary"
            },
        )
        .await;
    }
    t.wait_phase(DB, "Ready", SHORT).await;
}

/// Every server container was replaced exactly once, in `RESTART_ORDER` (its new process started
/// after the previous pod's), and none of the new ones has restarted since.
async fn assert_restarted_once_primary_last(
    t: &Setup,
    before: &BTreeMap<String, ServerStart>,
    ops: &MssqlServerOpsRequest,
) {
    let after = pod_starts(t).await;
    let evicted: Vec<String> = ops
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .filter_map(|c| c.type_.strip_prefix("EvictPod--").map(str::to_owned))
        .collect();
    assert_eq!(
        evicted, RESTART_ORDER,
        "each pod evicted once, primary last"
    );
    let mut previous = None;
    for pod in RESTART_ORDER {
        assert_ne!(after[pod].uid, before[pod].uid, "{pod} was not replaced");
        let started = after[pod].started.clone();
        assert!(
            started.is_some() && started > previous,
            "{pod}'s server started at {started:?}, not after {previous:?}"
        );
        previous = started;
        assert_eq!(after[pod].restarts, 0, "{pod}'s server started once");
    }
}

/// The pod runs on the node with the TLS files as specified, its server process read the
/// certificate in `expected_crt` (`None`: TLS is off) and `mssql.conf`, and another uid cannot
/// read the keys.
async fn assert_runs(t: &Setup, pod: &str, expected_crt: Option<&str>) {
    let ns = &t.ns.name;
    let spec = t.api::<Pod>().get(pod).await.unwrap().spec.unwrap();
    assert_eq!(
        spec.node_name.as_deref(),
        Some(NODE),
        "{pod} runs on {NODE}"
    );
    assert_eq!(exec_ok(ns, pod, "mssql", &["id", "-u"]).trim(), "10001");
    let log = logs(ns, pod, "mssql");
    let conf = exec_ok(ns, pod, "mssql", &["cat", "/var/opt/mssql/mssql.conf"]);
    let Some(expected_crt) = expected_crt else {
        assert!(!conf.contains("tlscert"), "{pod}: TLS is off:\n{conf}");
        assert!(
            log.contains("forceencryption= tlsprotocols=") && !log.contains("tls certificate"),
            "{pod}'s server started without TLS:\n{log}"
        );
        return;
    };
    assert!(
        conf.contains(&format!("tlscert = {TLS_DIR}/server.crt"))
            && conf.contains("tlsprotocols = 1.2"),
        "{pod}: mssql.conf points at the copied files:\n{conf}"
    );

    // The init container copied every file into the memory volume, 0400, owned by SQL Server's uid.
    let files = [
        "ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ];
    let paths: Vec<String> = files.iter().map(|f| format!("{TLS_DIR}/{f}")).collect();
    let mut stat = vec!["stat", "-c", "%a %u %g %n"];
    stat.extend(paths.iter().map(String::as_str));
    let modes = exec_ok(ns, pod, "mssql", &stat);
    for path in &paths {
        assert!(
            modes
                .lines()
                .any(|l| l == format!("400 10001 10001 {path}")),
            "{pod}: {path} is 0400 10001:10001:\n{modes}"
        );
    }
    let mounts = exec_ok(ns, pod, "mssql", &["cat", "/proc/mounts"]);
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs ") && l.contains(&format!(" {TLS_DIR} "))),
        "{pod}: {TLS_DIR} is in memory:\n{mounts}"
    );
    let served = exec_ok(ns, pod, "mssql", &["cat", &format!("{TLS_DIR}/server.crt")]);
    assert_eq!(served, expected_crt, "{pod} has the secret's certificate");

    // The server process read that certificate and the TLS settings when it started.
    let digest = exec_ok(ns, pod, "mssql", &["sha256sum", &paths[1]]);
    let digest = digest.split_whitespace().next().unwrap();
    assert!(
        log.contains(&format!("tls certificate {} sha256 {digest}", paths[1]))
            && log.contains("tls key /var/opt/mssql/tls/server.key readable")
            && log.contains("forceencryption=1 tlsprotocols=1.2"),
        "{pod}'s server read the new material at start-up:\n{log}"
    );

    // Another uid, even in the pod's fsGroup, cannot read a key.
    let groups = exec_ok(ns, pod, "intruder", &["id", "-G"]);
    assert!(groups.split_whitespace().any(|g| g == "10001"), "{groups}");
    let stolen = exec(ns, pod, "intruder", &["cat", "/tls/server.key"]);
    assert!(
        !stolen.ok && stolen.stderr.contains("Permission denied"),
        "{pod}: uid 10002 must not read the key: {}{}",
        stolen.stdout,
        stolen.stderr
    );
}

/// The kubelet ran the server container's startup, readiness and liveness probes, and they passed.
async fn assert_probes_ran(t: &Setup, pod: &str) {
    let ns = t.ns.name.clone();
    eventually(
        &format!("{pod}'s probes to have run"),
        Duration::from_secs(60),
        || async {
            let counts = probe_counts(&ns, pod, "mssql");
            let passed = |probe: &str| {
                counts
                    .get(&(probe.to_owned(), "successful".to_owned()))
                    .copied()
                    .unwrap_or(0.0)
            };
            if ["Startup", "Readiness", "Liveness"]
                .iter()
                .all(|p| passed(p) >= 1.0)
            {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
}

/// KubeDB's availability-group request examples, for this test's database.
fn for_db(ops: &mut Value) {
    ops["spec"]["databaseRef"]["name"] = json!(DB);
}

async fn server_certificate(t: &Setup) -> String {
    t.secret_text(&format!("{DB}-server-cert"), "tls.crt").await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_installed_operator_reconfigures_tls_of_real_containers() {
    assert_node_ready();
    let images = load_images(&["operator", "mssql-stand-in", "busybox"]);

    // The operator, installed as a user installs it, in a container on the node.
    let operator_ns = format!("mssql-operator-{}", std::process::id());
    let _release = Release::install(
        "mssql-operator",
        &operator_ns,
        &operator_values(&images["operator"]),
    );
    let t = Setup::without_operator("real-node").await;
    let leader = wait_leader(&t.client, &operator_ns, None).await;

    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&stand_in_version(&images["mssql-stand-in"])),
    );
    let _version = ClusterObject("mssqlserverversion", VERSION);
    let busybox = images["busybox"].clone();
    t.create_example(DB, |db| on_the_real_node(db, &busybox))
        .await;
    wait_ready_replicas(&t.client, &t.ns.name, DB, 3).await;
    label_roles(&t).await;

    let certificate = server_certificate(&t).await;
    for pod in RESTART_ORDER {
        assert_runs(&t, pod, Some(&certificate)).await;
        assert_probes_ran(&t, pod).await;
    }

    // A rotation, with the operator's pod evicted once the first database pod was.
    let before = pod_starts(&t).await;
    let rotate = create_ops(&t, "msops-ag-rotate", for_db).await;
    let requests: Api<MssqlServerOpsRequest> = t.api();
    eventually("the rotation's first eviction", OPS_TIMEOUT, || async {
        let ops = requests.get(&rotate).await.map_err(|e| e.to_string())?;
        let status = ops.status.unwrap_or_default();
        let conditions = status.conditions;
        assert_ne!(
            status.phase.as_deref(),
            Some("Failed"),
            "{:?}",
            summary(&conditions)
        );
        if conditions.iter().any(|c| c.type_.starts_with("EvictPod--")) {
            Ok(())
        } else {
            Err(format!("{:?}", summary(&conditions)))
        }
    })
    .await;
    let operator_pods_api: Api<Pod> = Api::namespaced(t.client.clone(), &operator_ns);
    operator_pods_api
        .evict(&leader, &EvictParams::default())
        .await
        .expect("the operator pod is evicted");
    let successor = wait_leader(&t.client, &operator_ns, Some(&leader)).await;
    assert_ne!(successor, leader);
    let ops = wait_ops(&t, &rotate, "Successful", OPS_TIMEOUT).await;
    assert_restarted_once_primary_last(&t, &before, &ops).await;
    label_roles(&t).await;
    let rotated = server_certificate(&t).await;
    assert_ne!(
        rotated, certificate,
        "the rotation issued a new certificate"
    );
    for pod in RESTART_ORDER {
        assert_runs(&t, pod, Some(&rotated)).await;
    }

    // A Restart: each server starts again, on the same material.
    let before = pod_starts(&t).await;
    let restart = create_ops(&t, "msops-ag-rotate", |ops| {
        ops["metadata"]["name"] = json!("restart");
        ops["spec"] =
            json!({"type": "Restart", "databaseRef": {"name": DB}, "restart": {}, "timeout": "5m"});
    })
    .await;
    let ops = wait_ops(&t, &restart, "Successful", OPS_TIMEOUT).await;
    assert_restarted_once_primary_last(&t, &before, &ops).await;
    label_roles(&t).await;
    for pod in RESTART_ORDER {
        assert_runs(&t, pod, Some(&rotated)).await;
    }

    // TLS removed: each server starts again, without it.
    let before = pod_starts(&t).await;
    let remove = create_ops(&t, "msops-ag-remove", for_db).await;
    let ops = wait_ops(&t, &remove, "Successful", OPS_TIMEOUT).await;
    assert_restarted_once_primary_last(&t, &before, &ops).await;
    label_roles(&t).await;
    for pod in RESTART_ORDER {
        assert_runs(&t, pod, None).await;
    }

    // The database goes while its operator still runs (it holds the database's finalizer).
    t.api::<MssqlServer>()
        .delete(DB, &DeleteParams::default())
        .await
        .unwrap();
    t.wait_gone::<MssqlServer>(DB).await;

    // Every request of the operator came from its pods, as its ServiceAccount, and none was refused.
    let user = format!("system:serviceaccount:{operator_ns}:mssql-operator");
    let audited = audited(&user);
    assert!(
        !audited.used.is_empty(),
        "no request of {user} in the audit log"
    );
    assert!(audited.refused.is_empty(), "refused: {:?}", audited.refused);
    assert!(
        audited
            .source_ips
            .iter()
            .all(|ip| ip.starts_with("10.250.0.")),
        "requests of {user} from outside the node's pod network: {:?}",
        audited.source_ips
    );
}
