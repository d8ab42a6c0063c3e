//! The `sqlcmd` of the test image: a tiberius client that takes the options of Microsoft's
//! `sqlcmd` (ODBC sqlcmd 18 and go-sqlcmd) that the operator's probes use:
//!
//! `sqlcmd -S localhost -U sa -P "$MSSQL_SA_PASSWORD" -C -l 5 -b -Q "SELECT 1"`
//!
//! - `-S [tcp:]host[,port]`: the server (default `localhost`, port 1433; `.` and `(local)` are
//!   `localhost`). Named instances (`host\instance`) are not supported.
//! - `-U login`, `-P password` (default: `SQLCMDPASSWORD`): SQL authentication, the only kind.
//! - `-C`: trust the server certificate without checking it.
//! - `-l seconds`: login timeout (default 8; 0 waits for ever).
//! - `-b`: exit with code 1 when the query fails.
//! - `-Q query`: run the query and exit (the only mode).
//! - `-d database`: the database to log in to.
//! - `-N [s|m|o|strict|mandatory|optional|disable]`: encryption; `mandatory` (TLS after
//!   PRELOGIN) is the default, as in sqlcmd 18; `strict` is TDS 8.0 (TLS first); `optional`
//!   encrypts the login only; `disable` nothing.
//! - Test extras: `--ca-file PATH` trusts that CA bundle (PEM) instead of the system store, and
//!   `--host-name NAME` checks the certificate against NAME instead of the `-S` host.
//!
//! Rows go to stdout; errors go to stderr, SQL Server's as `Msg N, Level L, State S, ...`.
//! The exit code is 0 on success and 1 when the login fails or (with `-b`) the query fails.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

pub const DEFAULT_PORT: u16 = 1433;
pub const DEFAULT_LOGIN_TIMEOUT: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encrypt {
    Strict,
    Mandatory,
    Optional,
    Disable,
}

impl Encrypt {
    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "s" | "strict" => Some(Self::Strict),
            "m" | "mandatory" | "true" | "yes" => Some(Self::Mandatory),
            "o" | "optional" | "false" | "no" => Some(Self::Optional),
            "disable" => Some(Self::Disable),
            _ => None,
        }
    }

    fn level(self) -> EncryptionLevel {
        match self {
            Self::Strict => EncryptionLevel::Strict,
            Self::Mandatory => EncryptionLevel::Required,
            Self::Optional => EncryptionLevel::Off,
            Self::Disable => EncryptionLevel::NotSupported,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub trust_server_certificate: bool,
    pub login_timeout: u64,
    pub exit_on_error: bool,
    pub query: Option<String>,
    pub database: Option<String>,
    pub encrypt: Encrypt,
    pub ca_file: Option<PathBuf>,
    pub host_name_in_certificate: Option<String>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("trust_server_certificate", &self.trust_server_certificate)
            .field("login_timeout", &self.login_timeout)
            .field("exit_on_error", &self.exit_on_error)
            .field("query", &self.query)
            .field("database", &self.database)
            .field("encrypt", &self.encrypt)
            .field("ca_file", &self.ca_file)
            .field("host_name_in_certificate", &self.host_name_in_certificate)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: DEFAULT_PORT,
            user: None,
            password: None,
            trust_server_certificate: false,
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
            exit_on_error: false,
            query: None,
            database: None,
            encrypt: Encrypt::Mandatory,
            ca_file: None,
            host_name_in_certificate: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Sqlcmd: {0}")]
pub struct ArgError(String);

pub const USAGE: &str = "usage: sqlcmd -S [tcp:]host[,port] -U login -P password [-C] [-l seconds] \
[-b] [-d database] [-N s|m|o] -Q query [--ca-file PEM] [--host-name NAME]";

/// Parses the arguments after the program name. `password_env` is `SQLCMDPASSWORD`.
pub fn parse_args(args: &[String], password_env: Option<String>) -> Result<Command, ArgError> {
    let mut options = Options {
        password: password_env,
        ..Options::default()
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (long, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| rest.next().cloned())
                    .ok_or_else(|| {
                        ArgError(format!(
                            "'--{name}': Missing argument. Enter '-?' for help."
                        ))
                    })
            };
            match name {
                "ca-file" => options.ca_file = Some(PathBuf::from(value()?)),
                "host-name" => options.host_name_in_certificate = Some(value()?),
                "help" => return Ok(Command::Help),
                _ => {
                    return Err(ArgError(format!(
                        "'{arg}': Unknown Option. Enter '-?' for help."
                    )));
                }
            }
            continue;
        }
        let mut chars = arg.strip_prefix('-').unwrap_or_default().chars();
        let Some(flag) = chars.next() else {
            return Err(ArgError(format!(
                "'{arg}': Unexpected argument. Argument values containing spaces must be enclosed \
                 in quotation marks."
            )));
        };
        let attached = chars.as_str();
        let mut value = || -> Result<String, ArgError> {
            if attached.is_empty() {
                rest.next().cloned().ok_or_else(|| {
                    ArgError(format!("'-{flag}': Missing argument. Enter '-?' for help."))
                })
            } else {
                Ok(attached.to_owned())
            }
        };
        match flag {
            'C' if attached.is_empty() => options.trust_server_certificate = true,
            'b' if attached.is_empty() => options.exit_on_error = true,
            '?' if attached.is_empty() => return Ok(Command::Help),
            'S' => {
                let (host, port) = parse_server(&value()?)?;
                (options.host, options.port) = (host, port);
            }
            'U' => options.user = Some(value()?),
            'P' => options.password = Some(value()?),
            'Q' => options.query = Some(value()?),
            'd' => options.database = Some(value()?),
            'l' => {
                let text = value()?;
                options.login_timeout = text.trim().parse().map_err(|_| {
                    ArgError(format!(
                        "'-l {text}': Value must be greater than or equal to 0 and less than or \
                         equal to 65534."
                    ))
                })?;
            }
            'N' => {
                options.encrypt = if !attached.is_empty() {
                    Encrypt::parse(attached).ok_or_else(|| {
                        ArgError(format!(
                            "'-N {attached}': Unexpected argument. Enter '-?' for help."
                        ))
                    })?
                } else {
                    // The value is optional: take the next argument only when it is one.
                    let next = rest.clone().next().and_then(|n| Encrypt::parse(n));
                    if next.is_some() {
                        rest.next();
                    }
                    next.unwrap_or(Encrypt::Mandatory)
                };
            }
            _ => {
                return Err(ArgError(format!(
                    "'{arg}': Unknown Option. Enter '-?' for help."
                )));
            }
        }
    }
    Ok(Command::Run(options))
}

/// `[tcp:]host[,port]`.
pub fn parse_server(text: &str) -> Result<(String, u16), ArgError> {
    let text = text.trim();
    let text = match text.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("tcp:") => &text[4..],
        _ => text,
    };
    if text.contains('\\') {
        return Err(ArgError(format!(
            "'{text}': named instances are not supported; give host,port."
        )));
    }
    let (host, port) = match text.rsplit_once(',') {
        Some((host, port)) => {
            let port = port
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ArgError(format!("'{port}' is not a TCP port.")))?;
            (host.trim(), port)
        }
        None => (text, DEFAULT_PORT),
    };
    let host = match host {
        "" | "." | "(local)" => "localhost",
        other => other,
    };
    Ok((host.to_owned(), port))
}

fn config(options: &Options, user: &str, password: &str) -> Config {
    let mut config = Config::new();
    config.host(&options.host);
    config.port(options.port);
    config.authentication(AuthMethod::sql_server(user, password));
    config.encryption(options.encrypt.level());
    config.application_name("SQLCMD");
    if options.trust_server_certificate {
        config.trust_cert();
    } else if let Some(ca) = &options.ca_file {
        config.trust_cert_ca(ca.display().to_string());
    }
    if let Some(name) = &options.host_name_in_certificate {
        config.hostname_in_certificate(name);
    }
    if let Some(database) = &options.database {
        config.database(database);
    }
    config.handshake_timeout(timeout(options));
    config
}

fn timeout(options: &Options) -> Option<Duration> {
    (options.login_timeout > 0).then(|| Duration::from_secs(options.login_timeout))
}

/// Runs the query; returns the exit code.
pub fn run(options: &Options, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let (Some(user), Some(password)) = (&options.user, &options.password) else {
        let _ = writeln!(
            err,
            "Sqlcmd: -U and -P (or SQLCMDPASSWORD) are required: this sqlcmd supports SQL \
             authentication only."
        );
        return 1;
    };
    let Some(query) = &options.query else {
        let _ = writeln!(
            err,
            "Sqlcmd: -Q is required: this sqlcmd has no interactive mode."
        );
        return 1;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(err, "Sqlcmd: Error: cannot start: {e}");
            return 1;
        }
    };
    runtime.block_on(async {
        let mut client = match connect(options, user, password).await {
            Ok(client) => client,
            Err(message) => {
                let _ = writeln!(err, "{message}");
                return 1;
            }
        };
        let results = match client.simple_query(query.as_str()).await {
            Ok(stream) => stream.into_results().await,
            Err(e) => Err(e),
        };
        match results {
            Ok(results) => {
                for rows in results {
                    print_rows(out, rows);
                }
                let _ = client.close().await;
                0
            }
            Err(e) => {
                let _ = writeln!(err, "{}", describe(&e));
                u8::from(options.exit_on_error)
            }
        }
    })
}

async fn connect(
    options: &Options,
    user: &str,
    password: &str,
) -> Result<Client<tokio_util::compat::Compat<TcpStream>>, String> {
    let config = config(options, user, password);
    let addr = config.get_addr();
    let connecting = TcpStream::connect(addr.clone());
    let tcp = match timeout(options) {
        Some(limit) => tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| format!("Sqlcmd: Error: Login timeout expired connecting to {addr}."))?,
        None => connecting.await,
    }
    .map_err(|e| format!("Sqlcmd: Error: cannot connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Client::connect(config, tcp.compat_write())
        .await
        .map_err(|e| describe(&e))
}

/// SQL Server's errors as sqlcmd prints them; the others with a `Sqlcmd: Error:` prefix.
pub fn describe(error: &tiberius::error::Error) -> String {
    match error {
        tiberius::error::Error::Server(e) => format!(
            "Msg {}, Level {}, State {}, Server {}, Line {}\n{}",
            e.code(),
            e.class(),
            e.state(),
            e.server(),
            e.line(),
            e.message()
        ),
        other => format!("Sqlcmd: Error: {other}"),
    }
}

fn format_value(value: ColumnData<'_>) -> String {
    match value {
        ColumnData::U8(v) => v.map(|v| v.to_string()),
        ColumnData::I16(v) => v.map(|v| v.to_string()),
        ColumnData::I32(v) => v.map(|v| v.to_string()),
        ColumnData::I64(v) => v.map(|v| v.to_string()),
        ColumnData::F32(v) => v.map(|v| v.to_string()),
        ColumnData::F64(v) => v.map(|v| v.to_string()),
        ColumnData::Bit(v) => v.map(|v| u8::from(v).to_string()),
        ColumnData::String(v) => v.map(|v| v.into_owned()),
        other => Some(format!("{other:?}")),
    }
    .unwrap_or_else(|| "NULL".into())
}

/// Like sqlcmd: a header of column names, dashes, the rows, then the row count.
fn print_rows(out: &mut dyn Write, rows: Vec<tiberius::Row>) {
    let Some(first) = rows.first() else {
        let _ = writeln!(out, "\n(0 rows affected)");
        return;
    };
    let names: Vec<String> = first
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let count = rows.len();
    let values: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| row.into_iter().map(format_value).collect())
        .collect();
    let widths: Vec<usize> = (0..names.len())
        .map(|i| {
            values
                .iter()
                .filter_map(|row| row.get(i))
                .map(|v| v.chars().count())
                .chain([names[i].chars().count(), 1])
                .max()
                .unwrap_or(1)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end()
            .to_owned()
    };
    let _ = writeln!(out, "{}", line(names.clone()));
    let _ = writeln!(
        out,
        "{}",
        line(widths.iter().map(|w| "-".repeat(*w)).collect())
    );
    for row in values {
        let _ = writeln!(out, "{}", line(row));
    }
    let _ = writeln!(out, "\n({count} rows affected)");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    fn run_options(text: &[&str]) -> Options {
        match parse_args(&args(text), None).unwrap() {
            Command::Run(options) => options,
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn the_readiness_probe_command_line_parses() {
        let options = run_options(&[
            "-S",
            "localhost",
            "-U",
            "sa",
            "-P",
            "p@ss -word",
            "-C",
            "-l",
            "5",
            "-b",
            "-Q",
            "SELECT 1",
        ]);
        assert_eq!(
            options,
            Options {
                host: "localhost".into(),
                port: 1433,
                user: Some("sa".into()),
                password: Some("p@ss -word".into()),
                trust_server_certificate: true,
                login_timeout: 5,
                exit_on_error: true,
                query: Some("SELECT 1".into()),
                ..Options::default()
            }
        );
        assert_eq!(options.encrypt, Encrypt::Mandatory);
        assert!(!format!("{options:?}").contains("p@ss"));
    }

    #[test]
    fn attached_values_and_test_extras() {
        let options = run_options(&[
            "-Stcp:127.0.0.1,14330",
            "-Usa",
            "-P-starts-with-dash",
            "-Ns",
            "--ca-file=/tmp/ca.crt",
            "--host-name",
            "db.ns.svc",
            "-QSELECT 1",
        ]);
        assert_eq!((options.host.as_str(), options.port), ("127.0.0.1", 14330));
        assert_eq!(options.password.as_deref(), Some("-starts-with-dash"));
        assert_eq!(options.encrypt, Encrypt::Strict);
        assert_eq!(options.ca_file, Some(PathBuf::from("/tmp/ca.crt")));
        assert_eq!(
            options.host_name_in_certificate.as_deref(),
            Some("db.ns.svc")
        );
    }

    #[test]
    fn n_takes_a_value_only_when_one_follows() {
        assert_eq!(run_options(&["-N", "-C"]).encrypt, Encrypt::Mandatory);
        assert_eq!(run_options(&["-N"]).encrypt, Encrypt::Mandatory);
        assert_eq!(run_options(&["-N", "strict"]).encrypt, Encrypt::Strict);
        assert_eq!(run_options(&["-N", "o"]).encrypt, Encrypt::Optional);
        assert_eq!(run_options(&["-Nm"]).encrypt, Encrypt::Mandatory);
        assert_eq!(run_options(&["-N", "disable"]).encrypt, Encrypt::Disable);
    }

    #[test]
    fn servers_in_sqlcmd_forms() {
        let server = |s: &str| parse_server(s).unwrap();
        assert_eq!(server("localhost"), ("localhost".into(), 1433));
        assert_eq!(server("TCP:db.ns.svc,1434"), ("db.ns.svc".into(), 1434));
        assert_eq!(server("."), ("localhost".into(), 1433));
        assert_eq!(server("(local),5000"), ("localhost".into(), 5000));
        assert!(parse_server("host\\SQLEXPRESS").is_err());
        assert!(parse_server("host,notaport").is_err());
    }

    #[test]
    fn mistakes_are_reported_like_sqlcmd() {
        let error = |text: &[&str]| parse_args(&args(text), None).unwrap_err().to_string();
        assert_eq!(
            error(&["-x"]),
            "Sqlcmd: '-x': Unknown Option. Enter '-?' for help."
        );
        assert_eq!(
            error(&["-S"]),
            "Sqlcmd: '-S': Missing argument. Enter '-?' for help."
        );
        assert!(error(&["-l", "five"]).contains("'-l five'"));
        assert!(error(&["stray"]).contains("Unexpected argument"));
        assert_eq!(parse_args(&args(&["-?"]), None).unwrap(), Command::Help);
    }

    #[test]
    fn the_password_may_come_from_the_environment() {
        let Command::Run(options) = parse_args(&args(&["-U", "sa"]), Some("env".into())).unwrap()
        else {
            panic!()
        };
        assert_eq!(options.password.as_deref(), Some("env"));
    }

    #[test]
    fn missing_credentials_or_query_fail_without_connecting() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&Options::default(), &mut out, &mut err), 1);
        assert!(String::from_utf8(err).unwrap().contains("-U and -P"));
        let options = Options {
            user: Some("sa".into()),
            password: Some("x".into()),
            ..Options::default()
        };
        let mut err = Vec::new();
        assert_eq!(run(&options, &mut out, &mut err), 1);
        assert!(String::from_utf8(err).unwrap().contains("-Q is required"));
    }
}
