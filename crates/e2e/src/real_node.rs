//! The real node `real-1` (`hack/cluster/up --real-node`): images loaded into its containerd, the
//! operator installed there by its Helm chart, and what runs in its containers (exec, logs, the
//! kubelet's probe counters).

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};

use crate::chart::{CHART, helm, helm_ok};
use crate::{Run, kubectl, kubectl_ok, root};

/// The node, its label and its taint (hack/cluster/lib.sh).
pub const NODE: &str = "real-1";
pub const NODE_LABEL: (&str, &str) = ("mssql-operator.test/node", "real");
pub const NODE_TAINT: &str = "mssql-operator.test/real-node";

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
