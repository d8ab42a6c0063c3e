//! What a database on the real node serves, seen from the test host over the node's bridge: the
//! operator's own probe (`mssql-tds`), an independent TDS client (the test double's `sqlcmd`, on
//! tiberius) that logs in as a user would, and OpenSSL offering TLS 1.1, which neither can.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mssql_tds::prelogin::Encryption;
use mssql_tds::probe::{Mode, Served, prelogin, probe};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::operator::built_binary;
use crate::{Run, command};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain `addr` serves, by the operator's probe; panics with the probe's error.
#[track_caller]
pub fn served(addr: SocketAddr, server_name: &str, mode: Mode) -> Served {
    probe(addr, server_name, mode, TIMEOUT)
        .unwrap_or_else(|e| panic!("probing {addr} ({mode:?}): {e}"))
}

/// The DER of the first certificate of a PEM text (a Secret's `tls.crt`).
pub fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("valid PEM")
        .to_vec()
}

/// What `addr` answers to a PRELOGIN whose ENCRYPTION is `ask`.
#[track_caller]
pub fn encryption_answer(addr: SocketAddr, ask: Encryption) -> Encryption {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    prelogin(&mut stream, ask).unwrap_or_else(|e| panic!("PRELOGIN with {addr}: {e}"))
}

/// Logs in as `sa` with `sqlcmd` (tiberius), trusting only the CA in `ca_file` and checking
/// `server_name` in the certificate, and runs `SELECT 1`.
pub fn login(addr: SocketAddr, server_name: &str, ca_file: &str, password: &str) -> Run {
    let sqlcmd = built_binary("sqlcmd", "mssql-sqlserver-double", "MSSQL_SQLCMD_BIN");
    let server = format!("{},{}", addr.ip(), addr.port());
    let args = [
        "-S",
        &server,
        "-U",
        "sa",
        "-P",
        password,
        "--ca-file",
        ca_file,
        "--host-name",
        server_name,
        "-l",
        "10",
        "-b",
        "-Q",
        "SELECT 1",
    ];
    command(
        sqlcmd.to_str().unwrap(),
        &args,
        None,
        "cargo build -p mssql-sqlserver-double",
    )
}
