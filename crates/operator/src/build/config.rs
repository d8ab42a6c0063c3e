//! `mssql.conf`: KubeDB's defaults, the TLS settings when `clientTLS` is on, and the user's own
//! settings on top (the user's value wins for a key both set).

use std::fmt::Write;

/// Where the pod finds its TLS files (copied there, readable by SQL Server's uid only).
pub const TLS_DIR: &str = "/var/opt/mssql/tls";

/// An ordered INI document: sections in order, keys in order within each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ini(Vec<(String, Vec<(String, String)>)>);

impl Ini {
    fn set(&mut self, section: &str, key: &str, value: &str) {
        let index = match self.0.iter().position(|(s, _)| s == section) {
            Some(index) => index,
            None => {
                self.0.push((section.to_owned(), Vec::new()));
                self.0.len() - 1
            }
        };
        let entries = &mut self.0[index].1;
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_owned(),
            None => entries.push((key.to_owned(), value.to_owned())),
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut ini = Self::default();
        let mut section = None;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.trim().to_owned());
                continue;
            }
            let (Some(section), Some((key, value))) = (section.as_deref(), line.split_once('='))
            else {
                return Err(format!(
                    "mssql.conf line {}: expected `[section]` or `key = value` inside a section, found {line:?}",
                    number + 1
                ));
            };
            ini.set(section, key.trim(), value.trim());
        }
        Ok(ini)
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (section, entries) in &self.0 {
            let _ = writeln!(out, "[{section}]");
            for (key, value) in entries {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        out
    }
}

/// The TLS protocol versions SQL Server may use: 1.2 and newer. TLS 1.3 needs SQL Server 2025.
pub fn tls_protocols(sql_server_version: &str) -> &'static str {
    if sql_server_version.as_bytes() >= b"2025".as_slice() {
        "1.2,1.3"
    } else {
        "1.2"
    }
}

/// The whole `mssql.conf`. `user` is the user's file, if any; an unreadable one is an error that
/// names the line.
pub fn mssql_conf(
    client_tls: bool,
    tls_protocols: &str,
    user: Option<&str>,
) -> Result<String, String> {
    let mut ini = Ini::default();
    ini.set("language", "lcid", "1033");
    if client_tls {
        ini.set("network", "forceencryption", "1");
        ini.set("network", "tlscert", &format!("{TLS_DIR}/server.crt"));
        ini.set("network", "tlskey", &format!("{TLS_DIR}/server.key"));
        ini.set("network", "tlsprotocols", tls_protocols);
    }
    if let Some(user) = user {
        for (section, entries) in Ini::parse(user)?.0 {
            for (key, value) in entries {
                ini.set(&section, &key, &value);
            }
        }
    }
    Ok(ini.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tls_only_the_language_section() {
        assert_eq!(
            mssql_conf(false, "1.2", None).unwrap(),
            "[language]\nlcid = 1033\n"
        );
    }

    #[test]
    fn with_tls_the_network_section_points_at_the_copied_files() {
        assert_eq!(
            mssql_conf(true, "1.2", None).unwrap(),
            "[language]\nlcid = 1033\n[network]\nforceencryption = 1\ntlscert = /var/opt/mssql/tls/server.crt\n\
             tlskey = /var/opt/mssql/tls/server.key\ntlsprotocols = 1.2\n"
        );
    }

    #[test]
    fn user_settings_are_merged_and_win() {
        let user = "# tuned\n[memory]\nmemorylimitmb = 2048\n\n[language]\nlcid = 1031\n[network]\nforceencryption=0\n";
        assert_eq!(
            mssql_conf(false, "1.2", Some(user)).unwrap(),
            "[language]\nlcid = 1031\n[memory]\nmemorylimitmb = 2048\n[network]\nforceencryption = 0\n"
        );
    }

    #[test]
    fn a_broken_user_file_names_the_line() {
        assert_eq!(
            mssql_conf(false, "1.2", Some("[memory]\nmemorylimitmb 2048\n")).unwrap_err(),
            "mssql.conf line 2: expected `[section]` or `key = value` inside a section, found \"memorylimitmb 2048\""
        );
        assert!(
            mssql_conf(false, "1.2", Some("lcid = 1033\n")).is_err(),
            "a key before any section"
        );
    }

    #[test]
    fn tls_1_3_only_from_sql_server_2025() {
        assert_eq!(tls_protocols("2022"), "1.2");
        assert_eq!(tls_protocols("2025"), "1.2,1.3");
    }
}
