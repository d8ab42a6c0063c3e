//! `mssql.conf`, SQL Server's INI file: the user's part parsed and checked. The operator owns the
//! TLS keys of `[network]` (it points them at the issued certificate and forces encryption when
//! `spec.tls.clientTLS` is on), so a user's file may not set them; `tlsprotocols` may only narrow
//! the operator's choice to TLS 1.2 and newer. The same check runs on inline configuration (in
//! `validate_mssqlserver`) and on a config Secret's content (when the operator reads it).

use std::fmt::Write;

/// An ordered INI document: sections in order, keys in order within each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini(Vec<(String, Vec<(String, String)>)>);

/// `[network]` keys the operator sets from `spec.tls`, and what the user writes instead.
const OWNED_KEYS: [(&str, &str); 3] = [
    (
        "forceencryption",
        "set spec.tls.clientTLS instead (true forces encryption with the issued certificate)",
    ),
    (
        "tlscert",
        "the operator points it at the certificate issued for spec.tls",
    ),
    (
        "tlskey",
        "the operator points it at the key issued for spec.tls",
    ),
];

/// The TLS versions SQL Server may be allowed; `1.3` needs SQL Server 2025.
const TLS_VERSIONS: [&str; 2] = ["1.2", "1.3"];

/// The TLS protocol versions the operator lets SQL Server use: 1.2 and newer. `sql_server` is the
/// catalog's SQL Server version (`2022`, `2025`).
pub fn tls_protocols(sql_server: &str) -> &'static str {
    if supports_tls_1_3(sql_server) {
        "1.2,1.3"
    } else {
        "1.2"
    }
}

fn supports_tls_1_3(sql_server: &str) -> bool {
    sql_server.as_bytes() >= b"2025".as_slice()
}

impl Ini {
    /// Sets `key` in `section`, appending either when new.
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
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

    /// Parses `text`; an error names the line that is neither a section nor a `key = value`.
    pub fn parse(text: &str) -> Result<Self, String> {
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

    /// Every `(section, key, value)`, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.0.iter().flat_map(|(section, entries)| {
            entries
                .iter()
                .map(move |(k, v)| (section.as_str(), k.as_str(), v.as_str()))
        })
    }

    pub fn render(&self) -> String {
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

/// Parses a user's `mssql.conf` and checks it against what the operator owns. `sql_server` is the
/// catalog's SQL Server version (`2022`, `2025`), when known. Errors say what to do.
pub fn check_user(text: &str, sql_server: Option<&str>) -> Result<Ini, Vec<String>> {
    let ini = Ini::parse(text).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    for (section, key, value) in ini.entries() {
        if !section.eq_ignore_ascii_case("network") {
            continue;
        }
        if let Some((owned, instead)) = OWNED_KEYS
            .iter()
            .find(|(owned, _)| key.eq_ignore_ascii_case(owned))
        {
            errors.push(format!(
                "[network] {owned} is set by the operator and cannot be overridden: remove it; {instead}"
            ));
        } else if key.eq_ignore_ascii_case("tlsprotocols") {
            errors.extend(check_tls_protocols(value, sql_server));
        }
    }
    if errors.is_empty() {
        Ok(ini)
    } else {
        Err(errors)
    }
}

fn check_tls_protocols(value: &str, sql_server: Option<&str>) -> Option<String> {
    let versions: Vec<&str> = value.split(',').map(str::trim).collect();
    if let Some(bad) = versions.iter().find(|v| !TLS_VERSIONS.contains(v)) {
        return Some(format!(
            "[network] tlsprotocols = {value}: TLS {bad} is refused, only 1.2 and 1.3 are allowed; remove the key to let the operator choose (1.2, and 1.3 too from SQL Server 2025)"
        ));
    }
    let before_2025 = sql_server.is_some_and(|v| !supports_tls_1_3(v));
    (versions.contains(&"1.3") && before_2025).then(|| {
        format!(
            "[network] tlsprotocols = {value}: TLS 1.3 needs SQL Server 2025 and this version is {}; write 1.2 or remove the key",
            sql_server.unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_parsed_in_order_and_rendered_back() {
        let ini =
            Ini::parse("# tuned\n[memory]\nmemorylimitmb=2048\n\n; x\n[language]\n lcid = 1031 \n")
                .unwrap();
        assert_eq!(
            ini.entries().collect::<Vec<_>>(),
            [
                ("memory", "memorylimitmb", "2048"),
                ("language", "lcid", "1031")
            ]
        );
        assert_eq!(
            ini.render(),
            "[memory]\nmemorylimitmb = 2048\n[language]\nlcid = 1031\n"
        );
    }

    #[test]
    fn a_broken_file_names_the_line() {
        assert_eq!(
            Ini::parse("[memory]\nmemorylimitmb 2048\n").unwrap_err(),
            "mssql.conf line 2: expected `[section]` or `key = value` inside a section, found \"memorylimitmb 2048\""
        );
        assert!(
            Ini::parse("lcid = 1033\n").is_err(),
            "a key before any section"
        );
        assert_eq!(
            check_user("x\n", None).unwrap_err(),
            [
                "mssql.conf line 1: expected `[section]` or `key = value` inside a section, found \"x\""
            ]
        );
    }

    #[test]
    fn settings_the_operator_does_not_own_are_accepted() {
        let text =
            "[memory]\nmemorylimitmb = 2048\n[network]\ntcpport = 1433\ntlsprotocols = 1.2\n";
        assert!(check_user(text, Some("2022")).is_ok());
        assert!(check_user("[network]\ntlsprotocols = 1.2, 1.3\n", Some("2025")).is_ok());
        // The same key names outside [network] are not SQL Server's TLS settings.
        assert!(check_user("[custom]\nforceencryption = 0\n", None).is_ok());
    }

    #[test]
    fn keys_the_operator_owns_are_refused_whatever_their_case() {
        let errors = check_user(
            "[network]\nforceencryption = 0\nTLSCert = /x.pem\ntlskey=/x.key\n",
            None,
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "[network] forceencryption is set by the operator and cannot be overridden: remove it; set spec.tls.clientTLS instead (true forces encryption with the issued certificate)",
                "[network] tlscert is set by the operator and cannot be overridden: remove it; the operator points it at the certificate issued for spec.tls",
                "[network] tlskey is set by the operator and cannot be overridden: remove it; the operator points it at the key issued for spec.tls",
            ]
        );
        assert!(check_user("[Network]\nforceencryption = 1\n", None).is_err());
    }

    #[test]
    fn tls_below_1_2_is_refused() {
        for value in ["1.0", "1.2,1.1,1.0", "1.1", " 1.2 , 1.0", "1.2,", "ssl3"] {
            let errors = check_user(
                &format!("[network]\ntlsprotocols = {value}\n"),
                Some("2022"),
            )
            .unwrap_err();
            assert_eq!(errors.len(), 1, "{value}");
            assert!(
                errors[0].contains("only 1.2 and 1.3 are allowed"),
                "{value}: {errors:?}"
            );
        }
        assert_eq!(
            check_user("[network]\ntlsprotocols = 1.2,1.1,1.0\n", None).unwrap_err(),
            [
                "[network] tlsprotocols = 1.2,1.1,1.0: TLS 1.1 is refused, only 1.2 and 1.3 are allowed; remove the key to let the operator choose (1.2, and 1.3 too from SQL Server 2025)"
            ]
        );
    }

    #[test]
    fn tls_1_3_needs_sql_server_2025() {
        assert_eq!(tls_protocols("2022"), "1.2");
        assert_eq!(tls_protocols("2025"), "1.2,1.3");
        assert_eq!(
            check_user("[network]\ntlsprotocols = 1.3\n", Some("2022")).unwrap_err(),
            [
                "[network] tlsprotocols = 1.3: TLS 1.3 needs SQL Server 2025 and this version is 2022; write 1.2 or remove the key"
            ]
        );
        assert!(check_user("[network]\ntlsprotocols = 1.3\n", Some("2025")).is_ok());
        // Without a catalog entry the version's own error is reported instead.
        assert!(check_user("[network]\ntlsprotocols = 1.3\n", None).is_ok());
    }
}
