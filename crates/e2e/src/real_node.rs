//! The real node `real-1` (`hack/cluster/up --real-node`): images loaded into its containerd, the
//! operator installed there by its Helm chart, and what runs in its containers (exec, logs, the
//! kubelet's probe counters).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use mssql_api::pods::is_ready;
use serde_json::{Value, json};

use crate::chart::{CHART, helm, helm_ok};
use crate::cluster::{client, eventually};
use crate::{Run, kubectl, kubectl_ok, root};

/// The node, its label and its taint (hack/cluster/lib.sh).
pub const NODE: &str = "real-1";
pub const NODE_LABEL: (&str, &str) = ("mssql-operator.test/node", "real");
pub const NODE_TAINT: &str = "mssql-operator.test/real-node";

/// The catalog entry of the SQL Server test double (`double_version`).
pub const DOUBLE_VERSION: &str = "2022-double";

/// The catalog entry of the double: both images are the double's, the uid is SQL Server's.
pub fn double_version(image: &str) -> String {
    json!({
        "apiVersion": "catalog.kubedb.com/v1alpha1",
        "kind": "MSSQLServerVersion",
        "metadata": {"name": DOUBLE_VERSION},
        "spec": {
            "version": "2022",
            "db": {"image": image},
            "initContainer": {"image": image},
            "securityContext": {"runAsUser": 10001},
        },
    })
    .to_string()
}

/// The chart's values for the local image on the real node.
pub fn operator_values(image: &str) -> Value {
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
pub async fn wait_leader(client: &kube::Client, namespace: &str, old: Option<&str>) -> String {
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

/// The host's process id of a container's first process (its pid 1), found by the container's
/// id in each process's cgroup and its pid in its own namespace: for signals a process in the
/// container cannot send its own pid 1 (SIGKILL, SIGSTOP).
pub fn container_pid(namespace: &str, pod: &str, container: &str) -> u32 {
    let id = kubectl_ok(
        &[
            "get",
            "pod",
            "-n",
            namespace,
            pod,
            "-o",
            &format!(
                "jsonpath={{.status.containerStatuses[?(@.name==\"{container}\")].containerID}}"
            ),
        ],
        None,
    );
    let id = id
        .trim()
        .rsplit("://")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !id.is_empty(),
        "{namespace}/{pod}/{container} has no running container"
    );
    let pids = std::fs::read_dir("/proc").expect("/proc is readable");
    pids.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
            read("cgroup").is_ok_and(|c| c.contains(&id))
                && read("status").is_ok_and(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .is_some_and(|ns| ns.split_whitespace().last() == Some("1"))
                })
        })
        .unwrap_or_else(|| panic!("no process of container {id} ({pod}/{container})"))
}

/// Sends `signal` (as `kill` spells it: `-KILL`, `-STOP`) to a container's first process.
pub fn signal_container(namespace: &str, pod: &str, container: &str, signal: &str) {
    let pid = container_pid(namespace, pod, container);
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid} ({pod}/{container})");
}

/// How long the double's start-up takes in tests that do not measure a restart's gap: SQL
/// Server's typical start (the double's default) would only make them slower.
pub const QUICK_START: Duration = Duration::from_secs(1);

/// Makes the double in the database's server container (`pod`: its `podTemplate.spec`) take
/// `delay` to start (`MSSQL_STARTUP_DELAY`).
pub fn double_starts_in(pod: &mut Value, delay: Duration) {
    let container = &mut pod["containers"][0];
    if container["name"].is_null() {
        container["name"] = json!("mssql");
    }
    let env = container["env"].as_array().cloned().unwrap_or_default();
    let mut env: Vec<Value> = env
        .into_iter()
        .filter(|e| e["name"] != "MSSQL_STARTUP_DELAY")
        .collect();
    env.push(json!({"name": "MSSQL_STARTUP_DELAY", "value": delay.as_secs().to_string()}));
    container["env"] = json!(env);
}

/// A guide's database (`db`, KubeDB's YAML) on the node: the double's catalog entry, the node's
/// volumes, requests the node can grant (the guides ask SQL Server's 1.5 GiB), each start of the
/// double taking `start`.
pub fn on_the_node(db: &mut Value, start: Duration) {
    let spec = &mut db["spec"];
    spec["version"] = json!(DOUBLE_VERSION);
    spec["storage"]["storageClassName"] = json!("real-node-local");
    let pod = &mut spec["podTemplate"]["spec"];
    place_on_node(pod);
    pod["containers"][0]["resources"] = json!({"requests": {"cpu": "50m", "memory": "32Mi"}});
    double_starts_in(pod, start);
}

/// Puts the node's selector and a toleration of its taint into `spec` (a PodSpec, or the chart's
/// values, which take the same keys): what a pod needs to run on the real node.
pub fn place_on_node(spec: &mut Value) {
    spec["nodeSelector"] = json!({NODE_LABEL.0: NODE_LABEL.1});
    spec["tolerations"] =
        json!([{"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]);
}

/// Builds the images `names` with `hack/cluster/images` and loads them into the node; returns
/// each one's reference. Panics when there is no node to load them into.
pub fn load_images(names: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["--load"];
    args.extend_from_slice(names);
    let output = Command::new(root().join("hack/cluster/images"))
        .args(&args)
        .output()
        .expect("hack/cluster/images runs");
    assert!(
        output.status.success(),
        "hack/cluster/images {} failed (is the node up? hack/cluster/up --real-node):\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().expect("a name").to_owned();
            (name, words.next().expect("a reference").to_owned())
        })
        .collect()
}

/// The images of the operator and the double loaded into the node, the operator installed by its
/// chart in `namespace` and leading, and the double's catalog entry.
pub async fn install_operator(namespace: &str) -> Release {
    let images = load_images(&["operator", "mssql-double"]);
    let release = Release::install(
        "mssql-operator",
        namespace,
        &operator_values(&images["operator"]),
    );
    wait_leader(&client().await, namespace, None).await;
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&double_version(&images["mssql-double"])),
    );
    release
}

/// Creates `object` (JSON or YAML) with kubectl once the operator's webhook answers.
pub async fn create_admitted(object: &str) {
    eventually(
        "the object to be admitted",
        Duration::from_secs(60),
        || async {
            let run = kubectl(&["create", "-f", "-"], Some(object));
            run.ok.then_some(()).ok_or(run.stderr)
        },
    )
    .await;
}

/// The node is there and Ready; panics with how to start it otherwise.
pub fn assert_node_ready() {
    let run = kubectl(
        &[
            "get",
            "node",
            NODE,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        None,
    );
    assert!(
        run.ok && run.stdout == "True",
        "node {NODE} is not Ready ({}{}): start the plane with `hack/cluster/up --real-node` (hack/test does)",
        run.stdout,
        run.stderr
    );
}

/// A Helm release of the chart, uninstalled (and its namespace deleted) when dropped.
pub struct Release {
    pub name: String,
    pub namespace: String,
}

impl Release {
    /// `helm install NAME CHART -n NAMESPACE --create-namespace -f VALUES`, as a user installs it.
    /// The catalog objects may exist already (applied by other tests with kubectl): the release
    /// takes them over.
    pub fn install(name: &str, namespace: &str, values: &Value) -> Self {
        let file = std::env::temp_dir().join(format!("{namespace}-values.json"));
        std::fs::write(&file, values.to_string()).expect("the values file is written");
        helm_ok(&[
            "install",
            name,
            CHART,
            "--namespace",
            namespace,
            "--create-namespace",
            "--take-ownership",
            "--values",
            file.to_str().expect("a UTF-8 path"),
        ]);
        // helm has read it.
        let _ = std::fs::remove_file(&file);
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        // A failed test shows what the operator did.
        if std::thread::panicking() {
            let logs = kubectl(
                &[
                    "logs",
                    "-n",
                    &self.namespace,
                    "--tail=300",
                    "--prefix",
                    "-l",
                    "app.kubernetes.io/name=mssql-operator",
                ],
                None,
            );
            eprintln!("--- the operator's log:\n{}{}", logs.stdout, logs.stderr);
        }
        let _ = helm(&["uninstall", &self.name, "--namespace", &self.namespace]);
        let _ = kubectl(
            &["delete", "namespace", &self.namespace, "--wait=false"],
            None,
        );
    }
}

/// `kubectl exec` of `command` in a pod's container.
pub fn exec(namespace: &str, pod: &str, container: &str, command: &[&str]) -> Run {
    let mut args = vec!["exec", "-n", namespace, pod, "-c", container, "--"];
    args.extend_from_slice(command);
    kubectl(&args, None)
}

/// `kubectl exec` that must succeed; returns what it printed.
#[track_caller]
pub fn exec_ok(namespace: &str, pod: &str, container: &str, command: &[&str]) -> String {
    let run = exec(namespace, pod, container, command);
    assert!(
        run.ok,
        "exec {command:?} in {namespace}/{pod}/{container} failed:\n{}{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// A container's log (of the running container).
#[track_caller]
pub fn logs(namespace: &str, pod: &str, container: &str) -> String {
    kubectl_ok(&["logs", "-n", namespace, pod, "-c", container], None)
}

/// The kubelet's probe counters for one container: `(probe type, result) -> count`, from
/// `/metrics/probes` of the node (through the API server's node proxy).
pub fn probe_counts(
    namespace: &str,
    pod: &str,
    container: &str,
) -> BTreeMap<(String, String), f64> {
    let text = kubectl_ok(
        &[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{NODE}/proxy/metrics/probes"),
        ],
        None,
    );
    let wanted = [
        format!("namespace=\"{namespace}\""),
        format!("pod=\"{pod}\""),
        format!("container=\"{container}\""),
    ];
    let label = |series: &str, key: &str| -> String {
        let start = series.find(&format!("{key}=\"")).map(|i| i + key.len() + 2);
        start
            .and_then(|s| series[s..].find('"').map(|e| series[s..s + e].to_owned()))
            .unwrap_or_default()
    };
    text.lines()
        .filter(|l| l.starts_with("prober_probe_total{"))
        .filter(|l| wanted.iter().all(|w| l.contains(w.as_str())))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let key = (label(series, "probe_type"), label(series, "result"));
            Some((key, value.parse().ok()?))
        })
        .collect()
}
