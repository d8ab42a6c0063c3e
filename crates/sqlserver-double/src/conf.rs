//! `mssql.conf`, the INI file SQL Server on Linux reads once at start (`/var/opt/mssql/mssql.conf`,
//! written by `mssql-conf` or, in Kubernetes, mounted from a ConfigMap): `[section]` headers,
//! `key = value` lines, `#` and `;` comments. Section and key names are case-insensitive.

use std::fmt;
use std::path::PathBuf;

use rustls::SupportedProtocolVersion;

/// A parsed INI file: sections in file order, entries in file order (names lowercased).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini {
    pub sections: Vec<Section>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub entries: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("[{section}] {key} = {value:?}: {what}")]
    Value {
        section: &'static str,
        key: &'static str,
        value: String,
        what: String,
    },
}

impl Ini {
    pub fn parse(text: &str) -> Result<Self, ConfError> {
        let mut ini = Self::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let syntax = |what: &str| ConfError::Syntax {
                line: index + 1,
                what: what.to_owned(),
            };
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| syntax("a section header must end with ']'"))?
                    .trim();
                if name.is_empty() {
                    return Err(syntax("empty section name"));
                }
                ini.sections.push(Section {
                    name: name.to_ascii_lowercase(),
                    entries: Vec::new(),
                });
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| syntax("expected 'key = value', a [section] or a comment"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(syntax("empty key before '='"));
            }
            let section = ini
                .sections
                .last_mut()
                .ok_or_else(|| syntax("a setting before the first [section]"))?;
            section
                .entries
                .push((key.to_ascii_lowercase(), value.trim().to_owned()));
        }
        Ok(ini)
    }

    /// The last value of `key` in any `[section]` of that name (later lines win, as in mssql-conf).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .filter(|s| s.name.eq_ignore_ascii_case(section))
            .flat_map(|s| s.entries.iter())
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .next_back()
    }
}

/// TLS protocol versions as `tlsprotocols` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsProtocol {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl TlsProtocol {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "1.0" => Some(Self::V1_0),
            "1.1" => Some(Self::V1_1),
            "1.2" => Some(Self::V1_2),
            "1.3" => Some(Self::V1_3),
            _ => None,
        }
    }

    /// The rustls version for 1.2 and 1.3; rustls (and so the double) has nothing older.
    pub fn rustls(self) -> Option<&'static SupportedProtocolVersion> {
        match self {
            Self::V1_2 => Some(&rustls::version::TLS12),
            Self::V1_3 => Some(&rustls::version::TLS13),
            Self::V1_0 | Self::V1_1 => None,
        }
    }
}

impl fmt::Display for TlsProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
        })
    }
}

/// SQL Server's documented default for `network.tlsprotocols`.
pub const DEFAULT_TLS_PROTOCOLS: [TlsProtocol; 3] =
    [TlsProtocol::V1_2, TlsProtocol::V1_1, TlsProtocol::V1_0];

/// The `[network]` settings the double honours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// `forceencryption`: every connection must be encrypted.
    pub force_encryption: bool,
    /// `forcestrict`: only TDS 8.0 strict (TLS-first) connections are accepted.
    pub force_strict: bool,
    /// `tlscert` / `tlskey`: absolute paths of PEM files; neither set means a self-signed
    /// certificate is generated at start.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `tlsprotocols` as configured, in the configured order.
    pub tls_protocols: Vec<TlsProtocol>,
    /// `tcpport`, if set.
    pub tcp_port: Option<u16>,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            force_encryption: false,
            force_strict: false,
            tls_cert: None,
            tls_key: None,
            tls_protocols: DEFAULT_TLS_PROTOCOLS.to_vec(),
            tcp_port: None,
        }
    }
}

impl Network {
    pub fn from_ini(ini: &Ini) -> Result<Self, ConfError> {
        let mut network = Self {
            force_encryption: flag(ini, "forceencryption")?,
            force_strict: flag(ini, "forcestrict")?,
            tls_cert: path(ini, "tlscert")?,
            tls_key: path(ini, "tlskey")?,
            ..Self::default()
        };
        if let Some(value) = ini.get("network", "tlsprotocols") {
            network.tls_protocols = value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    TlsProtocol::parse(v).ok_or_else(|| ConfError::Value {
                        section: "network",
                        key: "tlsprotocols",
                        value: value.to_owned(),
                        what: format!("{v:?} is not one of 1.0, 1.1, 1.2, 1.3"),
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(value) = ini.get("network", "tcpport") {
            let port = value.parse::<u16>().ok().filter(|p| *p != 0);
            network.tcp_port = Some(port.ok_or_else(|| ConfError::Value {
                section: "network",
                key: "tcpport",
                value: value.to_owned(),
                what: "not a TCP port (1-65535)".into(),
            })?);
        }
        Ok(network)
    }

    /// The configured versions the double can serve (1.2 and 1.3), newest first. Empty when the
    /// configuration allows only 1.0 and 1.1: the caller refuses to start.
    pub fn served_versions(&self) -> Vec<TlsProtocol> {
        let mut served: Vec<TlsProtocol> = self
            .tls_protocols
            .iter()
            .copied()
            .filter(|p| p.rustls().is_some())
            .collect();
        served.sort_unstable_by(|a, b| b.cmp(a));
        served.dedup();
        served
    }
}

fn flag(ini: &Ini, key: &'static str) -> Result<bool, ConfError> {
    match ini.get("network", key) {
        None => Ok(false),
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(ConfError::Value {
            section: "network",
            key,
            value: other.to_owned(),
            what: "must be 0 or 1".into(),
        }),
    }
}

fn path(ini: &Ini, key: &'static str) -> Result<Option<PathBuf>, ConfError> {
    match ini.get("network", key) {
        None | Some("") => Ok(None),
        Some(value) if value.starts_with('/') => Ok(Some(PathBuf::from(value))),
        Some(value) => Err(ConfError::Value {
            section: "network",
            key,
            value: value.to_owned(),
            what: "must be an absolute path".into(),
        }),
    }
}

/// Whether `[EULA] accepteula` accepts the licence (mssql-conf's other way to accept it).
pub fn eula_accepted(ini: &Ini) -> bool {
    ini.get("eula", "accepteula")
        .is_some_and(|v| v.eq_ignore_ascii_case("y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
# written by the operator
[EULA]
accepteula = Y

[network]
forceencryption = 1
; comments with semicolons too
tlscert = /etc/ssl/mssql/tls.crt
tlskey=/etc/ssl/mssql/tls.key
TLSProtocols = 1.3, 1.2
forcestrict = 0
";

    #[test]
    fn the_operator_shaped_file_parses() {
        let ini = Ini::parse(EXAMPLE).unwrap();
        assert!(eula_accepted(&ini));
        let network = Network::from_ini(&ini).unwrap();
        assert_eq!(
            network,
            Network {
                force_encryption: true,
                force_strict: false,
                tls_cert: Some("/etc/ssl/mssql/tls.crt".into()),
                tls_key: Some("/etc/ssl/mssql/tls.key".into()),
                tls_protocols: vec![TlsProtocol::V1_3, TlsProtocol::V1_2],
                tcp_port: None,
            }
        );
        assert_eq!(
            network.served_versions(),
            [TlsProtocol::V1_3, TlsProtocol::V1_2]
        );
    }

    #[test]
    fn a_missing_or_empty_file_means_sql_server_defaults() {
        let network = Network::from_ini(&Ini::parse("").unwrap()).unwrap();
        assert_eq!(network, Network::default());
        assert_eq!(network.tls_protocols, DEFAULT_TLS_PROTOCOLS);
        assert_eq!(network.served_versions(), [TlsProtocol::V1_2]);
        assert!(!eula_accepted(&Ini::default()));
    }

    #[test]
    fn only_old_protocols_leave_nothing_to_serve() {
        let ini = Ini::parse("[network]\ntlsprotocols = 1.0,1.1\n").unwrap();
        let network = Network::from_ini(&ini).unwrap();
        assert!(network.served_versions().is_empty());
    }

    #[test]
    fn later_lines_win() {
        let ini =
            Ini::parse("[network]\nforceencryption = 1\n[NETWORK]\nforceencryption = 0\n").unwrap();
        assert!(!Network::from_ini(&ini).unwrap().force_encryption);
    }

    #[test]
    fn bad_files_say_where_and_what() {
        let error = |text: &str| {
            Ini::parse(text)
                .and_then(|ini| Network::from_ini(&ini))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("forceencryption = 1"),
            "line 1: a setting before the first [section]"
        );
        assert_eq!(
            error("[network\n"),
            "line 1: a section header must end with ']'"
        );
        assert_eq!(
            error("[network]\njunk\n"),
            "line 2: expected 'key = value', a [section] or a comment"
        );
        assert!(error("[network]\nforceencryption = yes\n").contains("must be 0 or 1"));
        assert!(error("[network]\ntlsprotocols = 1.2,2.0\n").contains("\"2.0\" is not one of"));
        assert!(error("[network]\ntlscert = tls.crt\n").contains("absolute path"));
        assert!(error("[network]\ntcpport = 0\n").contains("not a TCP port"));
    }
}
