//! Shared by the integration tests: temporary directories, a test PKI, and the `sqlservr` binary
//! started on 127.0.0.1:0 with its own mssql.conf and data directory.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PASSWORD: &str = "Str0ng!Passw0rd";

/// A directory under the system temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "sqlserver-double-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a leaf it signed (SANs `localhost` and `db.ns.svc`), PEM and DER.
pub struct Pki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_der: Vec<u8>,
    pub key_pem: String,
}

pub fn pki(ca_name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "db.ns.svc".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "db.ns.svc");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        leaf_der: leaf.der().to_vec(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes `pki`'s leaf and key as a PKCS#12 file made by `openssl pkcs12 -export`, protected by
/// `password`, in `dir`; returns its path.
pub fn pfx(pki: &Pki, dir: &Path, name: &str, password: &str) -> PathBuf {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = dir.join(format!("{name}.pfx"));
    std::fs::write(&cert, &pki.leaf_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let status = Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .args(["-passout", &format!("pass:{password}")])
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl pkcs12 -export failed");
    out
}

/// A server's files: `mssql.conf`, the data directory, certificates.
pub struct Setup {
    pub dir: TempDir,
}

impl Setup {
    pub fn new(label: &str) -> Self {
        Self {
            dir: TempDir::new(label),
        }
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mssql.conf")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes the leaf and key as `<prefix>.crt` / `<prefix>.key` and a `[network]` section
    /// using them, plus `extra` lines.
    pub fn configure_tls(&self, pki: &Pki, prefix: &str, extra: &str) -> (PathBuf, PathBuf) {
        let cert = self.write(&format!("{prefix}.crt"), &pki.leaf_pem);
        let key = self.write(&format!("{prefix}.key"), &pki.key_pem);
        self.write_conf(&cert, &key, extra);
        (cert, key)
    }

    pub fn write_conf(&self, cert: &Path, key: &Path, extra: &str) {
        self.write(
            "mssql.conf",
            &format!(
                "[EULA]\naccepteula = Y\n\n[network]\ntlscert = {}\ntlskey = {}\n{extra}\n",
                cert.display(),
                key.display()
            ),
        );
    }

    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sqlservr"));
        command
            .env_clear()
            .env("ACCEPT_EULA", "Y")
            .env("MSSQL_SA_PASSWORD", PASSWORD)
            .env("MSSQL_CONF", self.conf_path())
            .env("MSSQL_DATA_DIR", self.data_dir())
            .env("MSSQL_TCP_LISTEN", "127.0.0.1:0")
            // These tests measure no restart: start-up is not made to take SQL Server's time.
            .env("MSSQL_STARTUP_DELAY", "0");
        for (name, value) in env {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        command
    }

    /// Starts the server with stdin from /dev/null and stdout and stderr piped.
    pub fn spawn(&self, env: &[(&str, &str)]) -> Child {
        self.command(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts the server and waits until it is ready. `env` overrides (an empty value removes).
    pub fn start(&self, env: &[(&str, &str)]) -> Double {
        let mut child = self.spawn(env);
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        {
            let stdout = stdout.clone();
            let pipe = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut addr = None;
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("Server is listening on [ ").nth(1)
                        && let Some((ip, port)) = rest.trim_end_matches("].").split_once(" <ipv4> ")
                    {
                        addr = format!("{ip}:{port}").parse::<SocketAddr>().ok();
                    }
                    if line.contains("SQL Server is now ready for client connections") {
                        let _ = ready_tx.send(addr);
                    }
                    stdout.lock().unwrap().push(line);
                }
            });
        }
        {
            let stderr = stderr.clone();
            let mut pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                stderr.lock().unwrap().push_str(&text);
            });
        }
        let addr = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(addr)) => addr,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the double did not get ready ({other:?}).\nstdout:\n{}\nstderr:\n{}",
                    stdout.lock().unwrap().join("\n"),
                    stderr.lock().unwrap()
                );
            }
        };
        Double {
            child: Some(child),
            addr,
            stdout,
            stderr,
        }
    }

    /// Runs the server expecting it to refuse to start: its exit status, stdout and stderr.
    pub fn run_to_exit(&self, env: &[(&str, &str)]) -> (ExitStatus, String, String) {
        let mut child = self.spawn(env);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the double did not exit within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    }
}

/// A [`Setup`] serving `pki`'s leaf (as `tls.crt` / `tls.key`), with `extra` `[network]` lines.
pub fn configured(label: &str, pki: &Pki, extra: &str) -> Setup {
    let setup = Setup::new(label);
    setup.configure_tls(pki, "tls", extra);
    setup
}

/// A running `sqlservr`; killed when dropped.
pub struct Double {
    child: Option<Child>,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Double {
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM, as the kubelet does, and waits for the exit (at most 10 s).
    pub fn terminate(mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("the double did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Double {
    /// SIGKILL: the process dies at once, as in a node failure.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (briefly) until the server's stdout contains `text`.
pub fn wait_for_line(double: &Double, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if double.stdout().contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
