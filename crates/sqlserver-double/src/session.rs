//! One client connection, from the first byte to the end: PRELOGIN (or, for TDS 8.0 strict, TLS
//! first), the TLS handshake, LOGIN7, then SQL batches until the client goes away.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use mssql_tds::packet::{self, kind};
use mssql_tds::prelogin::{Encryption, Prelogin};
use mssql_tds::tls::{Framing, handshake};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::batch;
use crate::errorlog::log;
use crate::errors;
use crate::exec;
use crate::instance::Instance;
use crate::login7::Login7;
use crate::tokens::{self, Message, env};

/// 16.0.4135.4, a SQL Server 2022 build: major, minor, build (big-endian), sub-build.
pub const VERSION: [u8; 6] = [16, 0, 0x10, 0x27, 0, 4];
pub const VERSION_TEXT: &str = "16.0.4135.4";
/// LOGINACK's program name.
pub const PROGRAM_NAME: &str = "Microsoft SQL Server";
/// The packet size the double always settles on.
pub const PACKET_SIZE: &str = "4096";
/// How long a client may take between connecting and finishing its login.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The first byte of a TLS handshake record: a TDS 8.0 strict client.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const ATTENTION: u8 = 0x06;
/// LOGIN7 TypeFlags fReadOnlyIntent ([MS-TDS] 2.2.6.4): ApplicationIntent=ReadOnly.
const READ_ONLY_INTENT: u8 = 0x20;

/// What every connection needs from start-up.
#[derive(Debug)]
pub struct Settings {
    pub force_encryption: bool,
    pub force_strict: bool,
    pub sa_password: String,
    /// For TLS inside PRELOGIN (TDS 7.x).
    pub tls_prelogin: Arc<ServerConfig>,
    /// For TDS 8.0 strict: offers ALPN `tds/8.0`.
    pub tls_strict: Arc<ServerConfig>,
    /// What ERROR tokens name as the server (SQL Server's @@SERVERNAME: the host name).
    pub server_name: String,
    /// What the statements act on.
    pub instance: Arc<Instance>,
}

/// How the connection goes on after the PRELOGIN answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No TLS at all.
    Plain,
    /// TLS for LOGIN7 only, then plain again (ENCRYPT_OFF).
    LoginOnly,
    /// TLS for everything.
    Full,
    /// Answer, then close: the client cannot encrypt and the server requires it.
    Refuse,
}

/// SQL Server's answer to the client's ENCRYPTION option ([MS-TDS] 2.2.6.5), given
/// `forceencryption`.
pub fn negotiate(client: Encryption, force_encryption: bool) -> (Encryption, Plan) {
    match (client, force_encryption) {
        (Encryption::Off, false) => (Encryption::Off, Plan::LoginOnly),
        (Encryption::Off, true) => (Encryption::Required, Plan::Full),
        (Encryption::On | Encryption::Required, _) => (Encryption::On, Plan::Full),
        (Encryption::NotSupported, false) => (Encryption::NotSupported, Plan::Plain),
        (Encryption::NotSupported, true) => (Encryption::Required, Plan::Refuse),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{stage}: {source}")]
    Io {
        stage: &'static str,
        source: io::Error,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
}

fn io_at(stage: &'static str) -> impl FnOnce(io::Error) -> SessionError {
    move |source| SessionError::Io { stage, source }
}

/// What happened on a connection, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client closed before sending anything (a TCP probe).
    Silent,
    /// Not TLS first while `forcestrict` is set.
    NotStrict,
    /// ENCRYPT_NOT_SUP while `forceencryption` is set.
    EncryptionRefused,
    LoginFailed,
    /// Logged in, served, and the client left.
    Served {
        strict: bool,
        encrypted: bool,
    },
}

/// Serves one connection to its end.
pub fn serve(tcp: TcpStream, settings: &Settings, spid: u32) -> Result<Outcome, SessionError> {
    let peer = tcp.peer_addr().map_err(io_at("peer address"))?;
    tcp.set_nodelay(true).map_err(io_at("TCP_NODELAY"))?;
    tcp.set_read_timeout(Some(LOGIN_TIMEOUT))
        .map_err(io_at("read timeout"))?;
    let control = tcp.try_clone().map_err(io_at("socket clone"))?;

    let mut first = [0u8; 1];
    if tcp.peek(&mut first).map_err(io_at("first byte"))? == 0 {
        return Ok(Outcome::Silent);
    }
    let who = Peer { spid, addr: peer };
    let connection = Connection {
        settings,
        who: &who,
        control: &control,
    };

    if first[0] == TLS_HANDSHAKE_RECORD {
        let mut tls = accept_tls(&settings.tls_strict, tcp, Framing::Bare)?;
        let request = read_message(&mut tls, "PRELOGIN")?;
        expect_kind(&request, kind::PRELOGIN, "PRELOGIN")?;
        // The encryption option means nothing here: TLS is already up. Some drivers send values
        // (such as a strict marker) that TDS 7.x did not define, so a PRELOGIN that does not
        // decode is still answered.
        let client = Prelogin::decode(&request.1).ok();
        let reply = prelogin_reply(client.as_ref(), Encryption::On);
        packet::write_message(&mut tls, kind::TABULAR_RESULT, &reply.encode())
            .map_err(io_at("PRELOGIN reply"))?;
        let login = read_login(&mut tls)?;
        return connection.serve_after(&mut tls, &login, true, true);
    }

    if settings.force_strict {
        log(
            &who.source(),
            &format!(
                "Connection from {peer} closed: forcestrict is set and the client did not start \
                 with a TLS handshake (TDS 8.0 strict encryption is required)."
            ),
        );
        return Ok(Outcome::NotStrict);
    }

    let mut tcp = tcp;
    let request = read_message(&mut tcp, "PRELOGIN")?;
    expect_kind(&request, kind::PRELOGIN, "PRELOGIN")?;
    let client = Prelogin::decode(&request.1).map_err(|e| SessionError::Protocol(e.to_string()))?;
    let (answer, plan) = negotiate(client.encryption, settings.force_encryption);
    let reply = prelogin_reply(Some(&client), answer);
    packet::write_message(&mut tcp, kind::TABULAR_RESULT, &reply.encode())
        .map_err(io_at("PRELOGIN reply"))?;

    match plan {
        Plan::Refuse => {
            log(
                &who.source(),
                &format!(
                    "Connection from {peer} closed: the client does not support encryption \
                     (ENCRYPT_NOT_SUP) and forceencryption is set."
                ),
            );
            Ok(Outcome::EncryptionRefused)
        }
        Plan::Plain => {
            let login = read_login(&mut tcp)?;
            connection.serve_after(&mut tcp, &login, false, false)
        }
        Plan::LoginOnly => {
            let mut tls = accept_tls(&settings.tls_prelogin, tcp, Framing::Prelogin)?;
            let login = read_login(&mut tls)?;
            // The client drops TLS right after sending LOGIN7; so does the server, without a
            // close_notify, and answers in the clear.
            let StreamOwned { sock: mut tcp, .. } = tls;
            connection.serve_after(&mut tcp, &login, false, false)
        }
        Plan::Full => {
            let mut tls = accept_tls(&settings.tls_prelogin, tcp, Framing::Prelogin)?;
            let login = read_login(&mut tls)?;
            connection.serve_after(&mut tls, &login, false, true)
        }
    }
}

struct Peer {
    spid: u32,
    addr: SocketAddr,
}

/// What the part of a connection after LOGIN7 needs, whatever stream it goes on over.
struct Connection<'a> {
    settings: &'a Settings,
    who: &'a Peer,
    /// The TCP socket under the stream, to lift the login timeout once the login succeeded.
    control: &'a TcpStream,
}

impl Connection<'_> {
    /// Answers the LOGIN7 already read, then serves requests over `stream` until the client
    /// leaves; `strict` and `encrypted` describe the connection for the outcome.
    fn serve_after<S: Read + Write>(
        &self,
        stream: &mut S,
        login: &Login7,
        strict: bool,
        encrypted: bool,
    ) -> Result<Outcome, SessionError> {
        if !answer_login(stream, login, self.settings, self.who)? {
            return Ok(Outcome::LoginFailed);
        }
        self.control
            .set_read_timeout(None)
            .map_err(io_at("read timeout"))?;
        let mut session = exec::Session {
            read_only_intent: login.type_flags & READ_ONLY_INTENT != 0,
            ..exec::Session::default()
        };
        serve_requests(stream, self.settings, &mut session)?;
        Ok(Outcome::Served { strict, encrypted })
    }
}

impl Peer {
    fn source(&self) -> String {
        format!("spid{}", self.spid)
    }
}

/// The PRELOGIN answer: the server's version, `encryption`, and the instance check (the default
/// instance, MSSQLSERVER, is the only one).
fn prelogin_reply(client: Option<&Prelogin>, encryption: Encryption) -> Prelogin {
    let mut reply = Prelogin::new(VERSION, encryption);
    let asked = client.map(|c| c.instance.as_slice()).unwrap_or_default();
    if !asked.is_empty() && !asked.eq_ignore_ascii_case(b"MSSQLSERVER") {
        reply.instance = vec![1]; // "not this instance"
    }
    reply
}

fn accept_tls(
    config: &Arc<ServerConfig>,
    mut tcp: TcpStream,
    framing: Framing,
) -> Result<StreamOwned<ServerConnection, TcpStream>, SessionError> {
    let mut conn = ServerConnection::new(config.clone())
        .map_err(|e| SessionError::Tls(io::Error::other(e)))?;
    handshake(&mut conn, &mut tcp, framing).map_err(SessionError::Tls)?;
    Ok(StreamOwned::new(conn, tcp))
}

fn read_message(
    stream: &mut impl Read,
    expected: &'static str,
) -> Result<(u8, Vec<u8>), SessionError> {
    packet::read_message(stream)
        .map_err(io_at(expected))?
        .ok_or_else(|| {
            SessionError::Protocol(format!(
                "the client closed the connection before {expected}"
            ))
        })
}

fn expect_kind(message: &(u8, Vec<u8>), kind: u8, name: &str) -> Result<(), SessionError> {
    if message.0 == kind {
        Ok(())
    } else {
        Err(SessionError::Protocol(format!(
            "expected {name} (packet type {kind:#04x}), got packet type {:#04x}",
            message.0
        )))
    }
}

fn read_login(stream: &mut impl Read) -> Result<Login7, SessionError> {
    let message = read_message(stream, "LOGIN7")?;
    expect_kind(&message, kind::LOGIN7, "LOGIN7")?;
    Login7::parse(&message.1).map_err(|e| SessionError::Protocol(e.to_string()))
}

/// The system databases a login may name; there are no others.
const DATABASES: [&str; 4] = ["master", "tempdb", "model", "msdb"];

/// Checks the login and answers it. `false` when it failed (the caller then closes).
fn answer_login(
    stream: &mut impl Write,
    login: &Login7,
    settings: &Settings,
    who: &Peer,
) -> Result<bool, SessionError> {
    let message = |number: i32, state: u8, class: u8, text: String| Message {
        number,
        state,
        class,
        text,
        server: settings.server_name.clone(),
        procedure: String::new(),
        line: 1,
    };
    let mut out = Vec::new();
    let refusal = if login.integrated_security() {
        Some((
            18452,
            "Login failed. The login is from an untrusted domain and cannot be used with \
             Integrated authentication."
                .to_owned(),
            "Reason: integrated authentication is not supported by this server.".to_owned(),
            1,
        ))
    } else if !login.user_name.eq_ignore_ascii_case("sa") {
        Some((
            18456,
            format!("Login failed for user '{}'.", login.user_name),
            "Reason: Could not find a login matching the name provided.".to_owned(),
            5,
        ))
    } else if login.password != settings.sa_password {
        Some((
            18456,
            format!("Login failed for user '{}'.", login.user_name),
            "Reason: Password did not match that for the login provided.".to_owned(),
            8,
        ))
    } else {
        None
    };
    let database = match login.database.as_str() {
        "" => Some("master"),
        asked => DATABASES
            .into_iter()
            .find(|d| d.eq_ignore_ascii_case(asked)),
    };
    if let Some((number, text, reason, log_state)) = refusal {
        tokens::error(&mut out, &message(number, 1, 14, text.clone()));
        tokens::done(&mut out, tokens::done::ERROR, 0, 0);
        packet::write_message(stream, kind::TABULAR_RESULT, &out).map_err(io_at("login reply"))?;
        log(
            "Logon",
            &format!("Error: {number}, Severity: 14, State: {log_state}."),
        );
        log(
            "Logon",
            &format!("{text} {reason} [CLIENT: {}]", who.addr.ip()),
        );
        return Ok(false);
    }
    let Some(database) = database else {
        tokens::error(
            &mut out,
            &message(
                4060,
                1,
                11,
                format!(
                    "Cannot open database \"{}\" requested by the login. The login failed.",
                    login.database
                ),
            ),
        );
        let text = format!("Login failed for user '{}'.", login.user_name);
        tokens::error(&mut out, &message(18456, 1, 14, text.clone()));
        tokens::done(&mut out, tokens::done::ERROR, 0, 0);
        packet::write_message(stream, kind::TABULAR_RESULT, &out).map_err(io_at("login reply"))?;
        log("Logon", "Error: 18456, Severity: 14, State: 38.");
        log(
            "Logon",
            &format!(
                "{text} Reason: Failed to open the explicitly specified database '{}'. [CLIENT: {}]",
                login.database,
                who.addr.ip()
            ),
        );
        return Ok(false);
    };

    tokens::env_change(&mut out, env::DATABASE, database, "master");
    tokens::info(
        &mut out,
        &message(
            5701,
            2,
            0,
            format!("Changed database context to '{database}'."),
        ),
    );
    tokens::env_change(&mut out, env::LANGUAGE, "us_english", "");
    tokens::info(
        &mut out,
        &message(5703, 1, 0, "Changed language setting to us_english.".into()),
    );
    tokens::login_ack(
        &mut out,
        tokens::TDS_7_4,
        PROGRAM_NAME,
        [VERSION[0], VERSION[1], VERSION[2], VERSION[3]],
    );
    tokens::env_change(&mut out, env::PACKET_SIZE, PACKET_SIZE, PACKET_SIZE);
    tokens::done(&mut out, tokens::done::FINAL, 0, 0);
    packet::write_message(stream, kind::TABULAR_RESULT, &out).map_err(io_at("login reply"))?;
    Ok(true)
}

/// SQL batches and attentions until the client leaves.
fn serve_requests(
    stream: &mut (impl Read + Write),
    settings: &Settings,
    session: &mut exec::Session,
) -> Result<(), SessionError> {
    loop {
        let (kind, payload) = match packet::read_message(stream) {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()),
            // A client that drops the connection without a TLS close_notify, or resets it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(());
            }
            Err(e) => {
                return Err(SessionError::Io {
                    stage: "request",
                    source: e,
                });
            }
        };
        let mut out = Vec::new();
        match kind {
            kind::SQL_BATCH => {
                out = exec::run(&settings.instance, session, &batch::sql_text(&payload));
            }
            ATTENTION => tokens::done(&mut out, tokens::done::ATTN, 0, 0),
            other => {
                let refusal = errors::not_emulated(&format!(
                    "requests of TDS packet type {other:#04x}, such as RPC"
                ));
                tokens::error(&mut out, &refusal.message(&settings.server_name));
                tokens::done(&mut out, tokens::done::ERROR, 0, 0);
            }
        }
        packet::write_message(stream, kind::TABULAR_RESULT, &out).map_err(io_at("reply"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_is_negotiated_as_sql_server_does() {
        use Encryption::*;
        let cases = [
            (Off, false, Off, Plan::LoginOnly),
            (Off, true, Required, Plan::Full),
            (On, false, On, Plan::Full),
            (On, true, On, Plan::Full),
            (Required, false, On, Plan::Full),
            (NotSupported, false, NotSupported, Plan::Plain),
            (NotSupported, true, Required, Plan::Refuse),
        ];
        for (client, force, answer, plan) in cases {
            assert_eq!(
                negotiate(client, force),
                (answer, plan),
                "{client:?} force={force}"
            );
        }
    }

    #[test]
    fn only_the_default_instance_is_accepted() {
        let mut client = Prelogin::new([0; 6], Encryption::On);
        assert!(
            prelogin_reply(Some(&client), Encryption::On)
                .instance
                .is_empty()
        );
        client.instance = b"mssqlserver".to_vec();
        assert!(
            prelogin_reply(Some(&client), Encryption::On)
                .instance
                .is_empty()
        );
        client.instance = b"SQLEXPRESS".to_vec();
        assert_eq!(prelogin_reply(Some(&client), Encryption::On).instance, [1]);
        let reply = prelogin_reply(None, Encryption::On);
        assert_eq!(reply.version, VERSION);
    }
}
