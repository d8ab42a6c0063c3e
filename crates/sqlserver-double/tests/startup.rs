//! The `sqlservr` binary as the operator's pods run it: refusals to start, the data file across
//! restarts, SIGTERM, the serve-first-certificate test knob, and the `sqlcmd` readiness probe.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{PASSWORD, Setup, configured, pki};
use mssql_tds::probe::{self, Mode};

fn assert_refused(setup: &Setup, env: &[(&str, &str)], expected: &[&str]) {
    let (status, out, err) = setup.run_to_exit(env);
    assert_eq!(status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    for text in expected {
        assert!(
            err.contains(text),
            "stderr lacks {text:?}:\n{err}\nstdout:\n{out}"
        );
    }
    assert!(!out.contains("ready for client connections"), "{out}");
}

/// Configures `cert` and `key` and checks that start-up stops with error 26014 and
/// "TLS certificate/key load failed: `file`: `reason`".
fn assert_tls_load_refused(setup: &Setup, cert: &Path, key: &Path, file: &Path, reason: &str) {
    setup.write_conf(cert, key, "");
    assert_refused(
        setup,
        &[],
        &[
            "Error: 26014, Severity: 16, State: 1.",
            &format!(
                "TLS certificate/key load failed: {}: {reason}",
                file.display()
            ),
        ],
    );
}

#[test]
fn an_unreadable_key_file_stops_start_up_naming_the_file() {
    let setup = Setup::new("unreadable-key");
    let pki = pki("test CA");
    let cert = setup.write("tls.crt", &pki.leaf_pem);
    // Unreadable even for root: missing, or a directory.
    let missing = setup.dir.path().join("missing.key");
    assert_tls_load_refused(&setup, &cert, &missing, &missing, "cannot read the file:");
    let directory = setup.dir.path().join("key-dir");
    std::fs::create_dir(&directory).unwrap();
    assert_tls_load_refused(
        &setup,
        &cert,
        &directory,
        &directory,
        "cannot read the file:",
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_stops_start_up() {
    let setup = Setup::new("mismatch");
    let (served, other) = (pki("test CA"), pki("test CA"));
    let cert = setup.write("tls.crt", &served.leaf_pem);
    let key = setup.write("tls.key", &other.key_pem);
    let reason = format!(
        "the private key does not match the public key of the certificate in {}",
        cert.display()
    );
    assert_tls_load_refused(&setup, &cert, &key, &key, &reason);
}

#[test]
fn a_certificate_file_that_is_not_pem_stops_start_up() {
    let setup = Setup::new("not-pem");
    let pki = pki("test CA");
    let cert = setup.write("tls.crt", "this is not a certificate\n");
    let key = setup.write("tls.key", &pki.key_pem);
    assert_tls_load_refused(&setup, &cert, &key, &cert, "no PEM CERTIFICATE block found");
}

#[test]
fn the_licence_and_the_password_are_required() {
    let setup = Setup::new("eula");
    assert_refused(
        &setup,
        &[("ACCEPT_EULA", "")],
        &[
            "The SQL Server End-User License Agreement (EULA) must be accepted before SQL Server can start.",
        ],
    );
    assert_refused(
        &setup,
        &[("ACCEPT_EULA", "N")],
        &["(EULA) must be accepted"],
    );
    assert_refused(
        &setup,
        &[("MSSQL_SA_PASSWORD", "")],
        &[
            "The system administrator password is not set",
            "MSSQL_SA_PASSWORD",
        ],
    );
    assert!(!setup.data_dir().exists(), "a refused start writes no data");
}

#[test]
fn an_invalid_mssql_conf_stops_start_up() {
    let cases: [(&str, &str, &[&str]); 2] = [
        // Only versions the double cannot serve.
        (
            "old-tls",
            "[network]\ntlsprotocols = 1.0,1.1\n",
            &[
                "network.tlsprotocols (1.0,1.1)",
                "supports TLS 1.2 and 1.3 only",
            ],
        ),
        // A value mssql.conf does not allow.
        (
            "broken-conf",
            "[network]\nforceencryption = maybe\n",
            &["mssql.conf is invalid", "forceencryption", "must be 0 or 1"],
        ),
    ];
    for (label, conf, expected) in cases {
        let setup = Setup::new(label);
        setup.write("mssql.conf", conf);
        assert_refused(&setup, &[], expected);
    }
}

fn data_file(setup: &Setup) -> String {
    std::fs::read_to_string(setup.data_dir().join("double.mdf")).unwrap()
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {text}"))
}

#[test]
fn the_data_file_survives_a_restart_and_sigterm_stops_the_server_with_code_0() {
    let setup = Setup::new("restart");
    let double = setup.start(&[]);
    let first = data_file(&setup);
    assert_eq!(field(&first, "starts"), "1");
    let id = field(&first, "database_id").to_owned();
    assert_eq!(id.len(), 16);
    assert!(double.stdout().contains(&format!("database_id={id}")));
    let (status, took) = double.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must end the server with code 0"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    let double = setup.start(&[]);
    let second = data_file(&setup);
    assert_eq!(field(&second, "starts"), "2");
    assert_eq!(field(&second, "database_id"), id);
    assert_eq!(
        field(&second, "created_unix"),
        field(&first, "created_unix")
    );
    assert!(double.stdout().contains("starts=2"), "{}", double.stdout());
}

#[test]
fn start_up_takes_its_delay_before_a_login_and_a_sigterm_meanwhile_stops_it() {
    let setup = Setup::new("startup-delay");
    let began = std::time::Instant::now();
    let double = setup.start(&[("MSSQL_STARTUP_DELAY", "2")]);
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    assert!(
        double
            .stdout()
            .contains("Starting up databases: logins are accepted in 2 s"),
        "{}",
        double.stdout()
    );
    drop(double);

    let mut starting = setup.spawn(&[("MSSQL_STARTUP_DELAY", "60")]);
    std::thread::sleep(Duration::from_millis(500));
    let stopped = std::time::Instant::now();
    let pid = starting.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = starting.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );

    assert_refused(
        &setup,
        &[("MSSQL_STARTUP_DELAY", "soon")],
        &["MSSQL_STARTUP_DELAY=\"soon\" is not a number of seconds (0 or more)"],
    );
}

#[test]
fn the_serve_first_certificate_knob_keeps_serving_the_first_certificate() {
    let setup = Setup::new("knob");
    let (old, new) = (pki("test CA"), pki("test CA"));
    setup.configure_tls(&old, "old", "");
    std::fs::create_dir_all(setup.data_dir()).unwrap();
    std::fs::write(
        setup.data_dir().join("double-faults"),
        "serve-first-certificate\n",
    )
    .unwrap();
    let leaf = |double: &common::Double| {
        probe::probe(
            double.addr,
            "db.ns.svc",
            Mode::Prelogin,
            Duration::from_secs(10),
        )
        .unwrap()
        .chain[0]
            .to_vec()
    };

    let double = setup.start(&[]);
    assert_eq!(leaf(&double), old.leaf_der);
    assert!(
        double
            .stdout()
            .contains("TEST FAULT serve-first-certificate: saved")
    );
    let saved_key = setup.data_dir().join("first-tls.key");
    let mode = std::fs::metadata(&saved_key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(double);

    // The configuration now points at a new certificate; the knob keeps the old one served.
    setup.configure_tls(&new, "new", "");
    let double = setup.start(&[]);
    assert_eq!(leaf(&double), old.leaf_der);
    assert!(
        double
            .stdout()
            .contains("TEST FAULT serve-first-certificate: serving the first certificate"),
        "{}",
        double.stdout()
    );
    drop(double);

    // Without the knob the configured certificate is served again.
    std::fs::remove_file(setup.data_dir().join("double-faults")).unwrap();
    let double = setup.start(&[]);
    assert_eq!(leaf(&double), new.leaf_der);
}

fn sqlcmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sqlcmd"))
        .args(args)
        .env_remove("SQLCMDPASSWORD")
        .output()
        .unwrap()
}

/// Runs `sqlcmd`, expecting exit code 0: its stdout.
fn sqlcmd_succeeds(args: &[&str]) -> String {
    let output = sqlcmd(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn sqlcmd_with_the_readiness_probe_arguments_succeeds_and_fails_on_a_wrong_password() {
    let setup = configured("sqlcmd", &pki("test CA"), "forceencryption = 1");
    let double = setup.start(&[]);
    let server = format!("127.0.0.1,{}", double.addr.port());

    let stdout = sqlcmd_succeeds(&[
        "-S", &server, "-U", "sa", "-P", PASSWORD, "-C", "-l", "5", "-b", "-Q", "SELECT 1",
    ]);
    assert!(stdout.lines().any(|l| l.trim() == "1"), "{stdout}");
    assert!(stdout.contains("(1 rows affected)"), "{stdout}");

    let output = sqlcmd(&[
        "-S", &server, "-U", "sa", "-P", "wrong", "-C", "-l", "5", "-b", "-Q", "SELECT 1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Msg 18456, Level 14, State 1"), "{stderr}");
    assert!(stderr.contains("Login failed for user 'sa'."), "{stderr}");
}

#[test]
fn sqlcmd_verifies_the_certificate_strictly_when_asked_and_reports_query_errors() {
    let pki = pki("test CA");
    let setup = configured("sqlcmd-strict", &pki, "tlsprotocols = 1.3");
    let double = setup.start(&[]);
    let server = format!("tcp:127.0.0.1,{}", double.addr.port());
    let ca = setup.write("ca.crt", &pki.ca_pem);
    let ca = ca.to_str().unwrap();

    let login = ["-S", &server, "-U", "sa", "-P", PASSWORD];
    let trusted = [
        &login[..],
        &["-N", "strict", "--ca-file", ca, "--host-name", "db.ns.svc"],
    ]
    .concat();
    let stdout = sqlcmd_succeeds(&[&trusted[..], &["-Q", "SELECT @@VERSION"]].concat());
    assert!(
        stdout.contains("Microsoft SQL Server 2022 test double"),
        "{stdout}"
    );

    // The certificate names db.ns.svc and localhost, not 127.0.0.1.
    let output = sqlcmd(
        &[
            &login[..],
            &["-N", "s", "--ca-file", ca, "-l", "5", "-Q", "SELECT 1"],
        ]
        .concat(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Sqlcmd: Error:"));

    // With -b a failing query exits 1; without it, 0 (as sqlcmd does).
    let output = sqlcmd(&[&trusted[..], &["-b", "-Q", "SELECT 2"]].concat());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Msg 50000, Level 16"));
    let output = sqlcmd(&[&trusted[..], &["-Q", "SELECT 2"]].concat());
    assert_eq!(output.status.code(), Some(0));
}
