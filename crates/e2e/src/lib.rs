//! Helpers for end-to-end tests on the local control plane: `kubectl`, as a user drives it, and
//! the kube client with the operator running beside the tests (`cluster`).

pub mod audit;
pub mod chart;
pub mod client_gap;
pub mod cluster;
pub mod fixture;
pub mod group;
pub mod operator;
pub mod plane;
pub mod real_node;
pub mod renewal;
pub mod scrape;
pub mod tds;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// A file or directory of one test's own under the system's temporary directory (an operator's
/// log, a process's working directory). Removed when dropped, unless the test is failing: then
/// it stays for a look, and its path is printed.
pub struct Scratch(PathBuf);

impl Scratch {
    /// `name` under the temporary directory; nothing is created.
    pub fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(name))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for a look: {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// What a `kubectl` run printed, and whether it succeeded.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` in the repository root with `stdin`; panics if it cannot start (`what`
/// says how to get it).
pub fn command(program: &str, args: &[&str], stdin: Option<&str>, what: &str) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} does not start ({what}): {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap_or_else(|e| panic!("{program} reads stdin: {e}"));
    drop(input);
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `kubectl args` with `stdin`. Panics with a clear message when there is no plane to talk
/// to: an end-to-end test never passes without one.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Run {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: start the local control plane with `eval \"$(hack/cluster/up | tail -n1)\"` (hack/test does this)"
    );
    command(
        "kubectl",
        args,
        stdin,
        "kubectl is on PATH: eval the last line of hack/cluster/up",
    )
}

/// Runs `kubectl args` and returns its output; panics with kubectl's error if it fails.
#[track_caller]
pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let run = kubectl(args, stdin);
    assert!(run.ok, "kubectl {} failed:\n{}", args.join(" "), run.stderr);
    run.stdout
}

/// `kubectl get -o json` of one object.
#[track_caller]
pub fn get_json(args: &[&str]) -> Value {
    let mut all = vec!["get", "-o", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&kubectl_ok(&all, None)).expect("kubectl prints JSON")
}

/// A namespace of its own for one test, deleted when dropped.
pub struct Namespace(pub String);

impl Namespace {
    pub fn new(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", std::process::id());
        kubectl_ok(&["create", "namespace", &name], None);
        Self(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.0, "--wait=false"], None);
    }
}

/// Installs the operator's CRDs and default catalog, and waits until the API serves them.
pub fn install_crds_and_catalog() {
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "deploy/crds.yaml",
        ],
        None,
    );
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            "deploy/crds.yaml",
        ],
        None,
    );
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "deploy/catalog.yaml",
        ],
        None,
    );
}

/// A KubeDB doc example (`examples/kubedb-docs/<name>.yaml`) moved into `namespace`.
pub fn example_in(name: &str, namespace: &str) -> String {
    let path = root().join(format!("examples/kubedb-docs/{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.replace("namespace: demo", &format!("namespace: {namespace}"))
}

/// Makes the `Released` volumes of earlier runs' deleted claims bindable again.
pub fn reclaim_volumes() {
    let reclaimed = Command::new(root().join("hack/cluster/reclaim-pvs"))
        .status()
        .expect("hack/cluster/reclaim-pvs runs");
    assert!(reclaimed.success(), "hack/cluster/reclaim-pvs failed");
}
