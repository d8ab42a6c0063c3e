//! The operator binary as a separate process (`target/debug/mssql-operator`, or
//! `$MSSQL_OPERATOR_BIN`), killed with SIGKILL when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::root;

/// The operator binary the process tests run.
pub fn binary() -> PathBuf {
    let binary = std::env::var("MSSQL_OPERATOR_BIN")
        .map_or_else(|_| root().join("target/debug/mssql-operator"), Into::into);
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p mssql-operator` (hack/test does)",
        binary.display()
    );
    binary
}

/// A running operator process.
pub struct Operator(pub Child);

impl Operator {
    /// Starts `mssql-operator args` with extra environment `env`, its output appended to `log`.
    pub fn start(args: &[&str], env: &[(&str, &str)], log: &std::fs::File) -> Self {
        let child = Command::new(binary())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::from(log.try_clone().expect("the log file")))
            .stderr(Stdio::from(log.try_clone().expect("the log file")))
            .spawn()
            .expect("the operator starts");
        Self(child)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
