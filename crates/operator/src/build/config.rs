//! `mssql.conf`: KubeDB's defaults, the TLS settings when `clientTLS` is on, and the user's own
//! settings on top (the user's value wins for a key both set).

use mssql_api::conf::Ini;

/// Where the pod finds its TLS files (copied there, readable by SQL Server's uid only).
pub const TLS_DIR: &str = "/var/opt/mssql/tls";

/// The whole `mssql.conf`. `user` is the user's file, if any, already checked
/// (`mssql_api::conf::check_user`).
pub fn mssql_conf(client_tls: bool, tls_protocols: &str, user: Option<&Ini>) -> String {
    let mut ini = Ini::default();
    ini.set("language", "lcid", "1033");
    if client_tls {
        ini.set("network", "forceencryption", "1");
        ini.set("network", "tlscert", &format!("{TLS_DIR}/server.crt"));
        ini.set("network", "tlskey", &format!("{TLS_DIR}/server.key"));
        ini.set("network", "tlsprotocols", tls_protocols);
    }
    for (section, key, value) in user.into_iter().flat_map(Ini::entries) {
        ini.set(section, key, value);
    }
    ini.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tls_only_the_language_section() {
        assert_eq!(mssql_conf(false, "1.2", None), "[language]\nlcid = 1033\n");
    }

    #[test]
    fn with_tls_the_network_section_points_at_the_copied_files() {
        assert_eq!(
            mssql_conf(true, "1.2", None),
            "[language]\nlcid = 1033\n[network]\nforceencryption = 1\ntlscert = /var/opt/mssql/tls/server.crt\n\
             tlskey = /var/opt/mssql/tls/server.key\ntlsprotocols = 1.2\n"
        );
    }

    #[test]
    fn user_settings_are_merged_and_win() {
        let user = Ini::parse(
            "# tuned\n[memory]\nmemorylimitmb = 2048\n\n[language]\nlcid = 1031\n[network]\ntlsprotocols=1.2\n",
        )
        .unwrap();
        assert_eq!(
            mssql_conf(true, "1.2,1.3", Some(&user)),
            "[language]\nlcid = 1031\n[network]\nforceencryption = 1\ntlscert = /var/opt/mssql/tls/server.crt\n\
             tlskey = /var/opt/mssql/tls/server.key\ntlsprotocols = 1.2\n[memory]\nmemorylimitmb = 2048\n"
        );
    }
}
