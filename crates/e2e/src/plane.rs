//! The local plane's run directory and processes (hack/cluster/lib.sh), for the tests that read
//! its audit log or kill its components (their supervisors start them again; `hack/cluster/up`
//! waits until the plane answers).

use std::path::PathBuf;

use crate::{command, root};

/// The run dir of hack/cluster/lib.sh: `MSSQL_CLUSTER_DIR`, or its default.
pub fn run_dir() -> PathBuf {
    let dir = std::env::var("MSSQL_CLUSTER_DIR").unwrap_or_else(|_| {
        let runtime = std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".to_owned());
        format!("{runtime}/mssql-operator-cluster")
    });
    PathBuf::from(dir)
}

/// Kills component `name` of the plane (`kube-apiserver`, `cert-manager`, …) with SIGKILL.
pub fn kill(name: &str) {
    signal(name, "KILL");
}

/// Component `name` of the plane stopped (SIGSTOP) while this lives: it answers nothing and its
/// watches fall behind, as a component that lags does. Continued (SIGCONT) when dropped, so a
/// failing test leaves the plane running.
pub struct Stopped(&'static str);

impl Stopped {
    pub fn new(name: &'static str) -> Self {
        signal(name, "STOP");
        Self(name)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

/// Sends `signal` to component `name`, by the process id in its PID file (whose first line it is).
fn signal(name: &str, signal: &str) {
    let file = run_dir().join("pids").join(format!("{name}.pid"));
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}; is the plane up?", file.display()));
    let pid = text.lines().next().unwrap_or_default().trim();
    let run = command("kill", &[&format!("-{signal}"), pid], None, "kill");
    assert!(run.ok, "kill -{signal} {pid} ({name}): {}", run.stderr);
}

/// `hack/cluster/up`, as the plane was started (with the real node when it has one): it waits
/// until the plane answers again (a killed component's supervisor starts it again) and starts
/// what is not running, keeping etcd's data.
pub fn resume() {
    let real_node = run_dir().join("node/pids").is_dir();
    let args: &[&str] = if real_node { &["--real-node"] } else { &[] };
    let up = root().join("hack/cluster/up");
    let run = command(up.to_str().unwrap(), args, None, "hack/cluster/up");
    assert!(run.ok, "hack/cluster/up {args:?} failed:\n{}", run.stderr);
    assert!(
        run.stderr.contains("resum") || run.stderr.contains("reusing"),
        "hack/cluster/up did not resume the plane:\n{}",
        run.stderr
    );
}
