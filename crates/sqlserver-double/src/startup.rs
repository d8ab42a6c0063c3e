//! Start-up, in SQL Server on Linux's order: licence and password, `mssql.conf`, the data file,
//! the TLS certificate, then the listener. Every refusal is a [`StartupError`], whose text the
//! binary prints before exiting with code 1. Start-up lines go to stdout as errorlog lines.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rustls::ServerConfig;
use rustls::sign::{CertifiedKey, SingleCertAndKey};

use crate::certificate::{self, LoadError, Loaded, Summary};
use crate::conf::{self, ConfError, Ini, Network, TlsProtocol};
use crate::datafile::{self, DataFile, DataFileError};
use crate::errorlog::log;
use crate::faults::{self, Faults};
use crate::instance::{self, Instance};
use crate::session::{self, Settings};

pub const DEFAULT_CONF: &str = "/var/opt/mssql/mssql.conf";
pub const DEFAULT_DATA_DIR: &str = "/var/opt/mssql/data";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:1433";

/// SQL Server's refusal when the licence is not accepted.
pub const EULA_MESSAGE: &str = "The SQL Server End-User License Agreement (EULA) must be accepted \
before SQL Server can start. The license terms for this product can be found in \
/usr/share/doc/mssql-server or downloaded from Microsoft.\n\nYou can accept the EULA by \
specifying the --accept-eula command line option, setting the ACCEPT_EULA environment variable, \
or using the mssql-conf tool.";

/// The environment start-up reads. `MSSQL_CONF`, `MSSQL_DATA_DIR` and `MSSQL_TCP_LISTEN` exist
/// for tests only; SQL Server has fixed paths and `MSSQL_TCP_PORT` / `[network] tcpport`.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `ACCEPT_EULA`.
    pub accept_eula: Option<String>,
    /// `MSSQL_SA_PASSWORD` (or the older `SA_PASSWORD`).
    pub sa_password: Option<String>,
    /// `MSSQL_CONF`, default [`DEFAULT_CONF`].
    pub conf_path: Option<PathBuf>,
    /// `MSSQL_DATA_DIR`, default [`DEFAULT_DATA_DIR`].
    pub data_dir: Option<PathBuf>,
    /// `MSSQL_TCP_LISTEN`, e.g. `127.0.0.1:0`; default [`DEFAULT_LISTEN`].
    pub listen: Option<String>,
    /// `MSSQL_TCP_PORT`: the port on 0.0.0.0 when `MSSQL_TCP_LISTEN` is not set.
    pub tcp_port: Option<String>,
    /// `MSSQL_ENABLE_HADR`: `1` enables availability groups.
    pub enable_hadr: Option<String>,
    /// `MSSQL_SERVER_NAME` (test only): @@SERVERNAME instead of the host name, so that several
    /// doubles on one host have different names.
    pub server_name: Option<String>,
    /// `MSSQL_HADR_SESSION_TIMEOUT` (test only): the availability replicas' session timeout in
    /// seconds, instead of SQL Server's 10.
    pub session_timeout: Option<String>,
    /// `MSSQL_STARTUP_DELAY` (test only): seconds start-up takes before clients can log in,
    /// instead of [`DEFAULT_STARTUP_DELAY`].
    pub startup_delay: Option<String>,
}

/// How long the double takes to start before it accepts a login: SQL Server recovers master,
/// tempdb and every database before it does, which takes many seconds (KubeDB's failover guide:
/// a restarted pod is back "after 10-30 second"; docs/testing.md). Tests that do not measure a
/// restart's gap set `MSSQL_STARTUP_DELAY` lower.
pub const DEFAULT_STARTUP_DELAY: std::time::Duration = std::time::Duration::from_secs(15);

impl Environment {
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            accept_eula: get("ACCEPT_EULA"),
            sa_password: get("MSSQL_SA_PASSWORD").or_else(|| get("SA_PASSWORD")),
            conf_path: get("MSSQL_CONF").map(PathBuf::from),
            data_dir: get("MSSQL_DATA_DIR").map(PathBuf::from),
            listen: get("MSSQL_TCP_LISTEN"),
            tcp_port: get("MSSQL_TCP_PORT"),
            enable_hadr: get("MSSQL_ENABLE_HADR"),
            server_name: get("MSSQL_SERVER_NAME"),
            session_timeout: get("MSSQL_HADR_SESSION_TIMEOUT"),
            startup_delay: get("MSSQL_STARTUP_DELAY"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{EULA_MESSAGE}")]
    Eula,
    #[error(
        "ERROR: The system administrator password is not set. Set the MSSQL_SA_PASSWORD \
         environment variable to a non-empty password; SQL Server cannot start without one."
    )]
    NoPassword,
    #[error("ERROR: cannot read the configuration file {}: {source}", path.display())]
    ConfRead { path: PathBuf, source: io::Error },
    #[error("ERROR: the configuration file {} is invalid: {source}", path.display())]
    Conf { path: PathBuf, source: ConfError },
    #[error(
        "ERROR: none of the TLS protocol versions allowed by network.tlsprotocols ({configured}) \
         can be served: this SQL Server test double supports TLS 1.2 and 1.3 only."
    )]
    NoTlsProtocol { configured: String },
    #[error("ERROR: network.{set} is set but network.{missing} is not; set both or neither.")]
    HalfTls {
        set: &'static str,
        missing: &'static str,
    },
    #[error(
        "Error: 26014, Severity: 16, State: 1.\nUnable to load user-specified certificate. The \
         server will not accept a connection. You should verify that the certificate is \
         correctly installed.\n{0}"
    )]
    Certificate(LoadError),
    #[error("ERROR: cannot generate the self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("ERROR: {0}")]
    DataFile(DataFileError),
    #[error("ERROR: test fault knobs: {0}")]
    Faults(io::Error),
    #[error("ERROR: TLS configuration: {0}")]
    Tls(rustls::Error),
    #[error("ERROR: the listen address {0:?} is not host:port")]
    ListenAddress(String),
    #[error("ERROR: MSSQL_HADR_SESSION_TIMEOUT={0:?} is not a number of seconds (1 or more)")]
    SessionTimeout(String),
    #[error("ERROR: MSSQL_STARTUP_DELAY={0:?} is not a number of seconds (0 or more)")]
    StartupDelay(String),
    #[error("ERROR: cannot read master, the databases or the availability group: {0}")]
    Instance(io::Error),
    #[error(
        "Server failed to listen on {addr}: {source}. TCP port is already in use or not permitted."
    )]
    Listen { addr: String, source: io::Error },
}

/// A started server: listening, not yet accepting.
pub struct Server {
    listener: TcpListener,
    settings: Arc<Settings>,
    pub data: DataFile,
    pub certificate: Summary,
}

impl Server {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections for ever, one thread each.
    pub fn serve(self) {
        let spids = AtomicU32::new(51); // user sessions start at 51
        for stream in self.listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    log("Server", &format!("accept failed: {e}"));
                    continue;
                }
            };
            let spid = spids.fetch_add(1, Ordering::Relaxed);
            let settings = self.settings.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("spid{spid}"))
                .spawn(move || {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| "?".into());
                    // Refusals and failed logins are logged where they happen.
                    match session::serve(stream, &settings, spid) {
                        Ok(_) => {}
                        Err(e) => log(
                            &format!("spid{spid}"),
                            &format!("Connection from {peer} ended: {e}"),
                        ),
                    }
                });
            if let Err(e) = spawned {
                log("Server", &format!("cannot start a connection thread: {e}"));
            }
        }
    }
}

/// Runs start-up and binds the listener; prints the errorlog lines on the way.
pub fn start(env: &Environment) -> Result<Server, StartupError> {
    log(
        "Server",
        &format!(
            "Microsoft SQL Server 2022 - {} (X64) test double (mssql-operator): TDS login, TLS \
             and SELECT 1 only.",
            session::VERSION_TEXT
        ),
    );
    match std::fs::metadata("/proc/self") {
        Ok(meta) => log(
            "Server",
            &format!(
                "Process ID {} running as uid {}, gid {}.",
                std::process::id(),
                meta.uid(),
                meta.gid()
            ),
        ),
        Err(_) => log("Server", &format!("Process ID {}.", std::process::id())),
    }

    let conf_path = env.conf_path.clone().unwrap_or_else(|| DEFAULT_CONF.into());
    let ini = read_conf(&conf_path)?;
    let network = Network::from_ini(&ini).map_err(|source| StartupError::Conf {
        path: conf_path.clone(),
        source,
    })?;

    let eula = env
        .accept_eula
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("y") || v.eq_ignore_ascii_case("yes"))
        || conf::eula_accepted(&ini);
    if !eula {
        return Err(StartupError::Eula);
    }
    let sa_password = env
        .sa_password
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or(StartupError::NoPassword)?;

    let served = network.served_versions();
    let list = |versions: &[TlsProtocol]| {
        versions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if served.is_empty() {
        return Err(StartupError::NoTlsProtocol {
            configured: list(&network.tls_protocols),
        });
    }
    log(
        "Server",
        &format!(
            "Network settings: forceencryption = {}, forcestrict = {}, tlsprotocols = {} (serving \
             TLS {}), tlscert = {}, tlskey = {}.",
            u8::from(network.force_encryption),
            u8::from(network.force_strict),
            list(&network.tls_protocols),
            list(&served),
            show_path(network.tls_cert.as_deref()),
            show_path(network.tls_key.as_deref()),
        ),
    );

    let data_dir = env
        .data_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let data = datafile::record_start(&data_dir).map_err(StartupError::DataFile)?;
    log(
        "Server",
        &format!(
            "Data file {}: {}",
            data_dir.join(datafile::FILE_NAME).display(),
            data.render().trim_end().replace('\n', " ")
        ),
    );

    let server_name = env
        .server_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(host_name);
    let session_timeout = match &env.session_timeout {
        None => instance::DEFAULT_SESSION_TIMEOUT,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| StartupError::SessionTimeout(text.clone()))?,
    };
    let startup_delay = match &env.startup_delay {
        None => DEFAULT_STARTUP_DELAY,
        Some(text) => text
            .parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|_| StartupError::StartupDelay(text.clone()))?,
    };
    let knobs = read_faults(&data_dir)?;
    let loaded = load_certificate(&network, &data_dir, &server_name, &knobs)?;
    let certificate = certificate::summary(&loaded.chain[0]).map_err(StartupError::SelfSigned)?;
    log(
        "Server",
        &format!(
            "The certificate [Cert Hash(sha1) \"{}\"] was successfully loaded for encryption.",
            certificate.sha1
        ),
    );
    log(
        "Server",
        &format!(
            "Certificate serial number {}, subject \"{}\", issuer \"{}\", DNS names [{}], valid \
             until {}, chain of {}.",
            certificate.serial,
            certificate.subject,
            certificate.issuer,
            certificate.dns_names.join(", "),
            certificate.not_after,
            loaded.chain.len()
        ),
    );

    let (tls_prelogin, tls_strict) =
        tls_configs(&loaded.certified, &served).map_err(StartupError::Tls)?;

    // Recovery, as far as a client can tell: nothing answers on the port until it ends.
    log(
        "Server",
        &format!(
            "Starting up databases: logins are accepted in {} s (MSSQL_STARTUP_DELAY).",
            startup_delay.as_secs()
        ),
    );
    std::thread::sleep(startup_delay);
    let listen = listen_address(env, &network);
    let addr = listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| StartupError::ListenAddress(listen.clone()))?;
    let listener = TcpListener::bind(addr).map_err(|source| StartupError::Listen {
        addr: listen.clone(),
        source,
    })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartupError::Listen {
            addr: listen,
            source,
        })?;
    log(
        "Server",
        &format!(
            "Server is listening on [ {} <ipv4> {}].",
            bound.ip(),
            bound.port()
        ),
    );
    let hadr_enabled = env.enable_hadr.as_deref().map(str::trim) == Some("1");
    log(
        "Server",
        &format!(
            "Always On availability groups are {} (MSSQL_ENABLE_HADR); @@SERVERNAME is '{server_name}'.",
            if hadr_enabled { "enabled" } else { "disabled" }
        ),
    );
    let instance = Instance::open(instance::Settings {
        server_name: server_name.clone(),
        hadr_enabled,
        data_dir,
        session_timeout,
        endpoint_ip: bound.ip(),
        slow_seed: knobs.slow_seed,
    })
    .map_err(StartupError::Instance)?;
    let settings = Arc::new(Settings {
        force_encryption: network.force_encryption,
        force_strict: network.force_strict,
        sa_password,
        tls_prelogin,
        tls_strict,
        server_name,
        instance,
    });
    log(
        "Server",
        "SQL Server is now ready for client connections. This is an informational message; no \
         user action is required.",
    );
    Ok(Server {
        listener,
        settings,
        data,
        certificate,
    })
}

fn show_path(path: Option<&Path>) -> String {
    path.map_or_else(|| "(not set)".into(), |p| p.display().to_string())
}

fn read_conf(path: &Path) -> Result<Ini, StartupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log(
                "Server",
                &format!(
                    "{} does not exist; using the default settings.",
                    path.display()
                ),
            );
            return Ok(Ini::default());
        }
        Err(source) => {
            return Err(StartupError::ConfRead {
                path: path.to_owned(),
                source,
            });
        }
    };
    let ini = Ini::parse(&text).map_err(|source| StartupError::Conf {
        path: path.to_owned(),
        source,
    })?;
    log(
        "Server",
        &format!("Read {} (once, at start):", path.display()),
    );
    for section in &ini.sections {
        for (key, value) in &section.entries {
            log("Server", &format!("  [{}] {key} = {value}", section.name));
        }
    }
    Ok(ini)
}

/// The test fault knobs of `data_dir`, with a line for each one that names none.
fn read_faults(data_dir: &Path) -> Result<Faults, StartupError> {
    let knobs = Faults::read(data_dir).map_err(StartupError::Faults)?;
    for unknown in &knobs.unknown {
        log(
            "Server",
            &format!(
                "TEST FAULT KNOB IGNORED: {unknown:?} in {} names no knob.",
                faults::FILE_NAME
            ),
        );
    }
    if knobs.slow_seed {
        log(
            "Server",
            &format!(
                "TEST FAULT {}: each seeded database takes {} ms longer to write.",
                faults::SLOW_SEED,
                faults::SLOW_SEED_DELAY.as_millis()
            ),
        );
    }
    Ok(knobs)
}

/// The configured certificate, the saved first one (test fault knob), or a generated one.
fn load_certificate(
    network: &Network,
    data_dir: &Path,
    server_name: &str,
    knobs: &Faults,
) -> Result<Loaded, StartupError> {
    if knobs.serve_first_certificate
        && let Some((cert, key)) = faults::saved_first_certificate(data_dir)
    {
        log(
            "Server",
            &format!(
                "TEST FAULT serve-first-certificate: serving the first certificate this server \
                 loaded ({}), not the configured one ({}).",
                cert.display(),
                show_path(network.tls_cert.as_deref())
            ),
        );
        let (loaded, _, _) =
            certificate::load_files(&cert, &key).map_err(StartupError::Certificate)?;
        return Ok(loaded);
    }

    let (loaded, cert_pem, key_pem) = match (&network.tls_cert, &network.tls_key) {
        (Some(cert), Some(key)) => {
            certificate::load_files(cert, key).map_err(StartupError::Certificate)?
        }
        (Some(_), None) => {
            return Err(StartupError::HalfTls {
                set: "tlscert",
                missing: "tlskey",
            });
        }
        (None, Some(_)) => {
            return Err(StartupError::HalfTls {
                set: "tlskey",
                missing: "tlscert",
            });
        }
        (None, None) => {
            let mut names = vec![server_name.to_owned()];
            if server_name != "localhost" {
                names.push("localhost".into());
            }
            let (loaded, cert, key) =
                certificate::self_signed(names).map_err(StartupError::SelfSigned)?;
            log(
                "Server",
                "No certificate is configured (network.tlscert): a self-generated certificate \
                 was created for encryption.",
            );
            (loaded, cert.into_bytes(), key.into_bytes())
        }
    };
    if knobs.serve_first_certificate {
        faults::save_first_certificate(data_dir, &cert_pem, &key_pem)
            .map_err(StartupError::Faults)?;
        let (cert, _) = faults::first_certificate_paths(data_dir);
        log(
            "Server",
            &format!(
                "TEST FAULT serve-first-certificate: saved the certificate loaded now as the first \
                 one ({}); it will be served at every later start.",
                cert.display()
            ),
        );
    }
    Ok(loaded)
}

/// The two server configurations: TLS inside PRELOGIN, and TDS 8.0 strict (ALPN `tds/8.0`).
pub fn tls_configs(
    certified: &Arc<CertifiedKey>,
    versions: &[TlsProtocol],
) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), rustls::Error> {
    let versions: Vec<_> = versions.iter().filter_map(|v| v.rustls()).collect();
    let build = |alpn: bool| -> Result<Arc<ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));
        // Tickets would follow the handshake inside the PRELOGIN framing's back: none.
        config.send_tls13_tickets = 0;
        if alpn {
            config.alpn_protocols = vec![mssql_tds::TDS8_ALPN.to_vec()];
        }
        Ok(Arc::new(config))
    };
    Ok((build(false)?, build(true)?))
}

fn listen_address(env: &Environment, network: &Network) -> String {
    if let Some(listen) = &env.listen {
        return listen.clone();
    }
    let port = env
        .tcp_port
        .clone()
        .or_else(|| network.tcp_port.map(|p| p.to_string()));
    match port {
        Some(port) => format!("0.0.0.0:{port}"),
        None => DEFAULT_LISTEN.to_owned(),
    }
}

/// The host name, as SQL Server's @@SERVERNAME would be.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_read_by_name() {
        let env = Environment::from_lookup(|name| match name {
            "ACCEPT_EULA" => Some("Y".into()),
            "SA_PASSWORD" => Some("old-name".into()),
            "MSSQL_TCP_LISTEN" => Some("127.0.0.1:0".into()),
            _ => None,
        });
        assert_eq!(env.accept_eula.as_deref(), Some("Y"));
        assert_eq!(env.sa_password.as_deref(), Some("old-name"));
        assert_eq!(env.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(env.conf_path, None);
    }

    #[test]
    fn the_listen_address_comes_from_the_test_override_then_the_port() {
        let network = Network {
            tcp_port: Some(14330),
            ..Network::default()
        };
        let mut env = Environment::default();
        assert_eq!(listen_address(&env, &Network::default()), "0.0.0.0:1433");
        assert_eq!(listen_address(&env, &network), "0.0.0.0:14330");
        env.tcp_port = Some("2000".into());
        assert_eq!(listen_address(&env, &network), "0.0.0.0:2000");
        env.listen = Some("127.0.0.1:0".into());
        assert_eq!(listen_address(&env, &network), "127.0.0.1:0");
    }

    #[test]
    fn refusals_come_before_anything_is_written() {
        let dir =
            std::env::temp_dir().join(format!("sqlserver-double-startup-{}", std::process::id()));
        let env = Environment {
            conf_path: Some(dir.join("missing.conf")),
            data_dir: Some(dir.join("data")),
            listen: Some("127.0.0.1:0".into()),
            ..Environment::default()
        };
        assert!(matches!(start(&env), Err(StartupError::Eula)));
        let env = Environment {
            accept_eula: Some("Y".into()),
            sa_password: Some(String::new()),
            ..env
        };
        assert!(matches!(start(&env), Err(StartupError::NoPassword)));
        assert!(
            !dir.exists(),
            "nothing may be written before the checks pass"
        );
    }
}
