//! The double against real clients: tiberius (TLS in PRELOGIN, login-only encryption, TDS 8.0
//! strict, failures), the operator's probe, and `openssl s_client` offering TLS 1.1.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{PASSWORD, Pki, Setup, configured, pki, wait_for_line};
use mssql_sqlserver_double::openssl;
use mssql_tds::prelogin::Encryption;
use mssql_tds::probe::{self, Mode};
use rustls::ProtocolVersion;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, Row};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

enum Trust<'a> {
    Ca(&'a str),
    Any,
}

async fn connect(
    addr: SocketAddr,
    level: EncryptionLevel,
    trust: Trust<'_>,
    password: &str,
) -> tiberius::Result<Client<Compat<TcpStream>>> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server("sa", password));
    config.encryption(level);
    match trust {
        Trust::Ca(pem) => config.trust_cert_ca_bundle(pem.as_bytes().to_vec()),
        Trust::Any => config.trust_cert(),
    }
    config.hostname_in_certificate("db.ns.svc");
    config.handshake_timeout(Some(Duration::from_secs(20)));
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

/// Logs in as `sa` with the right password, trusting `pki`'s CA; panics when that fails.
async fn log_in(addr: SocketAddr, level: EncryptionLevel, pki: &Pki) -> Client<Compat<TcpStream>> {
    connect(addr, level, Trust::Ca(&pki.ca_pem), PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{level:?}: {e}"))
}

/// The first row `sql` returns.
async fn first_row(client: &mut Client<Compat<TcpStream>>, sql: &str) -> Row {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

async fn select_one(client: &mut Client<Compat<TcpStream>>) -> i32 {
    let row = first_row(client, "SELECT 1").await;
    row.get::<i32, _>(0).unwrap()
}

async fn version(client: &mut Client<Compat<TcpStream>>) -> String {
    let row = first_row(client, "SELECT @@VERSION").await;
    row.get::<&str, _>(0).unwrap().to_owned()
}

#[tokio::test]
async fn tiberius_logs_in_over_tls_trusting_the_ca_and_runs_the_two_queries() {
    let pki = pki("test CA");
    let setup = configured("required", &pki, "");
    let double = setup.start(&[]);
    let mut client = log_in(double.addr, EncryptionLevel::Required, &pki).await;
    assert_eq!(select_one(&mut client).await, 1);
    assert_eq!(
        version(&mut client).await,
        "Microsoft SQL Server 2022 test double (mssql-operator)"
    );
    // Twice on one connection, and a statement the double does not run.
    assert_eq!(select_one(&mut client).await, 1);
    let error = match client.simple_query("SELECT name FROM sys.databases").await {
        Ok(stream) => stream.into_results().await.unwrap_err(),
        Err(e) => e,
    };
    match error {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 50000);
            assert!(
                e.message().contains("runs only SELECT 1"),
                "{}",
                e.message()
            );
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    client.close().await.unwrap();
}

#[tokio::test]
async fn tiberius_strict_tds_8_works() {
    let pki = pki("test CA");
    let setup = configured("strict", &pki, "tlsprotocols = 1.2,1.3");
    let double = setup.start(&[]);
    let mut client = log_in(double.addr, EncryptionLevel::Strict, &pki).await;
    assert_eq!(select_one(&mut client).await, 1);
    assert!(
        version(&mut client)
            .await
            .starts_with("Microsoft SQL Server 2022")
    );
}

#[tokio::test]
async fn login_only_encryption_works_when_encryption_is_not_forced() {
    let pki = pki("test CA");
    let setup = configured("login-only", &pki, "forceencryption = 0");
    let double = setup.start(&[]);
    let mut client = log_in(double.addr, EncryptionLevel::Off, &pki).await;
    assert_eq!(select_one(&mut client).await, 1);
    // No encryption at all also works while it is not forced.
    let mut plain = connect(
        double.addr,
        EncryptionLevel::NotSupported,
        Trust::Any,
        PASSWORD,
    )
    .await
    .unwrap();
    assert_eq!(select_one(&mut plain).await, 1);
}

#[tokio::test]
async fn forced_encryption_encrypts_everything_and_refuses_clients_that_cannot() {
    let pki = pki("test CA");
    let setup = configured("forced", &pki, "forceencryption = 1");
    let double = setup.start(&[]);
    // The client asks for login-only encryption; the server answers ENCRYPT_REQ (full TLS).
    let mut client = log_in(double.addr, EncryptionLevel::Off, &pki).await;
    assert_eq!(select_one(&mut client).await, 1);
    let served = probe::probe(
        double.addr,
        "db.ns.svc",
        Mode::Prelogin,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(served.encryption, Some(Encryption::On));
    assert!(
        connect(
            double.addr,
            EncryptionLevel::NotSupported,
            Trust::Any,
            PASSWORD
        )
        .await
        .is_err()
    );
    assert!(wait_for_line(
        &double,
        "ENCRYPT_NOT_SUP) and forceencryption is set"
    ));
}

#[tokio::test]
async fn forcestrict_accepts_only_tls_first_connections() {
    let pki = pki("test CA");
    let setup = configured("forcestrict", &pki, "forcestrict = 1\ntlsprotocols = 1.3");
    let double = setup.start(&[]);
    assert!(
        connect(
            double.addr,
            EncryptionLevel::Required,
            Trust::Ca(&pki.ca_pem),
            PASSWORD
        )
        .await
        .is_err()
    );
    assert!(wait_for_line(
        &double,
        "forcestrict is set and the client did not start with a TLS handshake"
    ));
    let mut client = log_in(double.addr, EncryptionLevel::Strict, &pki).await;
    assert_eq!(select_one(&mut client).await, 1);
}

#[tokio::test]
async fn a_wrong_password_fails_with_error_18456() {
    let pki = pki("test CA");
    let setup = configured("wrong-password", &pki, "");
    let double = setup.start(&[]);
    for level in [
        EncryptionLevel::Required,
        EncryptionLevel::Strict,
        EncryptionLevel::Off,
    ] {
        let error = connect(
            double.addr,
            level,
            Trust::Ca(&pki.ca_pem),
            "not the password",
        )
        .await
        .unwrap_err();
        match error {
            tiberius::error::Error::Server(e) => {
                assert_eq!(
                    (e.code(), e.class(), e.state()),
                    (18456, 14, 1),
                    "{level:?}"
                );
                assert_eq!(e.message(), "Login failed for user 'sa'.");
            }
            other => panic!("{level:?}: expected error 18456, got {other:?}"),
        }
    }
    assert!(wait_for_line(
        &double,
        "Reason: Password did not match that for the login provided. [CLIENT: 127.0.0.1]"
    ));
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails() {
    let pki_served = pki("served CA");
    let other = pki("another CA");
    let setup = configured("other-ca", &pki_served, "");
    let double = setup.start(&[]);
    for level in [EncryptionLevel::Required, EncryptionLevel::Strict] {
        let error = connect(double.addr, level, Trust::Ca(&other.ca_pem), PASSWORD)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("UnknownIssuer"),
            "{level:?}: {error}"
        );
    }
}

/// Starts a double serving `pki`'s leaf with `tlsprotocols`, probes it with PRELOGIN and with
/// TDS 8.0 strict, and checks that both get the leaf alone over `version`.
fn assert_probe_gets(label: &str, tlsprotocols: &str, version: ProtocolVersion) {
    let pki = pki("test CA");
    let setup = configured(label, &pki, &format!("tlsprotocols = {tlsprotocols}"));
    let double = setup.start(&[]);
    for mode in [Mode::Prelogin, Mode::Strict] {
        let served = probe::probe(double.addr, "db.ns.svc", mode, Duration::from_secs(10)).unwrap();
        assert_eq!(served.chain.len(), 1, "{mode:?}");
        assert_eq!(
            served.chain[0].as_ref(),
            pki.leaf_der.as_slice(),
            "{mode:?}"
        );
        assert_eq!(served.version, version, "{mode:?}");
    }
}

#[test]
fn the_probe_sees_the_configured_leaf_over_tls_1_2() {
    assert_probe_gets("probe-12", "1.2", ProtocolVersion::TLSv1_2);
}

#[test]
fn the_probe_gets_tls_1_3_when_it_is_allowed() {
    assert_probe_gets("probe-13", "1.2,1.3", ProtocolVersion::TLSv1_3);
}

#[test]
fn without_a_configured_certificate_the_fallback_is_served_and_its_hash_logged() {
    let setup = Setup::new("fallback");
    let double = setup.start(&[]);
    let served = probe::probe(
        double.addr,
        "localhost",
        Mode::Prelogin,
        Duration::from_secs(10),
    )
    .unwrap();
    let leaf = served.chain[0].as_ref();
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).unwrap();
    assert_eq!(parsed.subject().to_string(), "CN=SSL_Self_Signed_Fallback");
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
    let hex: String = sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let serial: String = parsed
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let out = double.stdout();
    assert!(
        out.contains(&format!(
            "The certificate [Cert Hash(sha1) \"{hex}\"] was successfully loaded for encryption."
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("Certificate serial number {serial},")),
        "{out}"
    );
    assert!(!out.contains("PRIVATE KEY"), "{out}");
}

/// OpenSSL can still offer TLS 1.1 (at security level 0): the double must refuse it, and accept
/// TLS 1.2 from the same client, TLS first as TDS 8.0 strict does.
#[test]
fn openssl_offering_only_tls_1_1_is_refused_and_tls_1_2_is_accepted() {
    let setup = Setup::new("openssl");
    setup.write("mssql.conf", "[network]\ntlsprotocols = 1.3,1.2,1.1,1.0\n");
    let double = setup.start(&[]);

    let (ok, text) = openssl::handshake(double.addr, "-tls1_1");
    assert!(!ok, "a TLS 1.1 handshake must fail:\n{text}");
    assert!(
        text.contains("Cipher is (NONE)"),
        "no cipher may be agreed:\n{text}"
    );
    assert!(wait_for_line(&double, "TLS handshake failed"));

    let (ok, text) = openssl::handshake(double.addr, "-tls1_2");
    assert!(ok, "a TLS 1.2 handshake must succeed:\n{text}");
    assert!(text.contains("Protocol  : TLSv1.2"), "{text}");
    assert!(text.contains("ALPN protocol: tds/8.0"), "{text}");
}

/// Raw TDS, without a driver: no encryption at all, then a batch, an attention and an RPC.
#[test]
fn a_plain_session_spoken_by_hand_answers_batches_attentions_and_refuses_rpc() {
    use mssql_sqlserver_double::login7::Login7;
    use mssql_tds::packet::{self, kind};
    use mssql_tds::prelogin::Prelogin;

    let setup = Setup::new("raw");
    let double = setup.start(&[]);
    let mut tcp = std::net::TcpStream::connect(double.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut exchange = |kind: u8, payload: &[u8]| {
        packet::write_message(&mut tcp, kind, payload).unwrap();
        let (reply_kind, reply) = packet::read_message(&mut tcp).unwrap().unwrap();
        assert_eq!(reply_kind, kind::TABULAR_RESULT);
        reply
    };

    let reply = exchange(
        kind::PRELOGIN,
        &Prelogin::new([0; 6], Encryption::NotSupported).encode(),
    );
    let reply = Prelogin::decode(&reply).unwrap();
    assert_eq!(reply.encryption, Encryption::NotSupported);
    assert_eq!(reply.version, [16, 0, 0x10, 0x27, 0, 4]);

    let reply = exchange(kind::LOGIN7, &Login7::sql_login("SA", PASSWORD).encode());
    let ack = reply
        .iter()
        .position(|b| *b == 0xAD)
        .expect("a LOGINACK token");
    assert_eq!(&reply[ack + 3..ack + 8], [1, 0x74, 0x00, 0x00, 0x04]);
    assert_eq!(&reply[reply.len() - 13..reply.len() - 9], [0xFD, 0, 0, 0]);

    let mut batch = 22u32.to_le_bytes().to_vec();
    batch.extend_from_slice(&18u32.to_le_bytes());
    batch.extend_from_slice(&2u16.to_le_bytes());
    batch.extend_from_slice(&[0; 8]);
    batch.extend_from_slice(&1u32.to_le_bytes());
    batch.extend("select 1;".encode_utf16().flat_map(u16::to_le_bytes));
    let reply = exchange(kind::SQL_BATCH, &batch);
    assert_eq!(&reply[..3], [0x81, 1, 0]);
    assert_eq!(
        &reply[reply.len() - 13..reply.len() - 7],
        [0xFD, 0x10, 0, 0xC1, 0, 1]
    );

    const ATTENTION: u8 = 0x06;
    let reply = exchange(ATTENTION, &[]);
    assert_eq!(reply, [0xFD, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

    const RPC: u8 = 0x03;
    let reply = exchange(RPC, &[0xFF, 0xFF, 10, 0]);
    assert_eq!(reply[0], 0xAA);
    assert_eq!(
        &reply[reply.len() - 13..reply.len() - 9],
        [0xFD, 0x02, 0, 0]
    );
}

/// FreeTDS's `tsql` (C, GnuTLS: a second TDS client nobody here wrote) with `encryption = require`,
/// trusting only the CA and checking the host name: `SELECT 1` over TLS; a name the certificate
/// does not cover, or a wrong password, is refused.
#[test]
fn freetds_tsql_logs_in_over_tls_trusting_only_the_ca() {
    let pki = pki("test CA");
    let setup = configured("tsql", &pki, "");
    let double = setup.start(&[]);
    let ca = setup.write("tsql-ca.crt", &pki.ca_pem);
    let conf = setup.write(
        "freetds.conf",
        &format!(
            "[global]\n\ttds version = 7.4\n\tencryption = require\n\tca file = {}\n\tcheck certificate hostname = yes\n",
            ca.display()
        ),
    );
    let tsql = |host: &str, password: &str| {
        let mut child = Command::new("timeout")
            .args([
                "20",
                "tsql",
                "-H",
                host,
                "-p",
                &double.addr.port().to_string(),
            ])
            .args(["-U", "sa", "-P", password])
            .env("FREETDSCONF", &conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("FreeTDS's tsql runs (apt-get install freetds-bin; hack/test does)");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"SELECT 1\ngo\nexit\n").unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert_ne!(
            output.status.code(),
            Some(127),
            "tsql is missing: apt-get install freetds-bin"
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let ok = tsql("localhost", PASSWORD);
    assert!(
        ok.contains("(1 row affected)") && ok.lines().any(|l| l.trim() == "1"),
        "{ok}"
    );
    let wrong_name = tsql("127.0.0.1", PASSWORD);
    assert!(
        wrong_name.contains("There was a problem connecting to the server"),
        "{wrong_name}"
    );
    let wrong_password = tsql("localhost", "not the password");
    assert!(
        wrong_password.contains("There was a problem connecting to the server"),
        "{wrong_password}"
    );
}
