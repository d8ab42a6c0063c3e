//! The operator binary as a separate process (`target/debug/mssql-operator`, or
//! `$MSSQL_OPERATOR_BIN`), killed with SIGKILL when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::root;

/// The operator binary the process tests run.
pub fn binary() -> PathBuf {
    built_binary("mssql-operator", "mssql-operator", "MSSQL_OPERATOR_BIN")
}

/// `target/debug/<name>` (a binary of `package`), or the path in `$env`; panics with the build
/// command when it is missing.
pub fn built_binary(name: &str, package: &str, env: &str) -> PathBuf {
    let binary =
        std::env::var(env).map_or_else(|_| root().join("target/debug").join(name), Into::into);
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p {package}` (hack/test does), or set {env}",
        binary.display()
    );
    binary
}

/// A running operator process.
pub struct Operator(pub Child);

impl Operator {
    /// Starts `mssql-operator args` with extra environment `env`, its output appended to `log`.
    /// Its databases run on kwok's pods, where nothing listens: `run` does not probe them.
    pub fn start(args: &[&str], env: &[(&str, &str)], log: &std::fs::File) -> Self {
        let kwok = if args.first() == Some(&"run") {
            &["--verify-served-certificates=false"][..]
        } else {
            &[]
        };
        let child = Command::new(binary())
            .args(args)
            .args(kwok)
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
