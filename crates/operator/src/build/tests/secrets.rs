//! The Secrets: mssql.conf, the generated password, a user's auth Secret, and the restart hash.

use super::*;

#[test]
fn config_secret_holds_mssql_conf() {
    let server = server_from(example("mssql-standalone-tls"));
    let conf = mssql_conf(server.tls.client_tls, "1.2,1.3", None);
    let secret = config_secret(&server, &owner(), &conf);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("mssql-standalone-tls-config")
    );
    let text = String::from_utf8(secret.data.unwrap()["mssql.conf"].0.clone()).unwrap();
    assert!(
        text.contains("forceencryption = 1\ntlscert = /var/opt/mssql/tls/server.crt\n"),
        "{text}"
    );
    assert!(text.ends_with("tlsprotocols = 1.2,1.3\n"));
}

#[test]
fn generated_passwords_meet_sql_servers_policy() {
    for seed in [
        [0u8; 20],
        [255u8; 20],
        std::array::from_fn(|i| i as u8 * 13),
    ] {
        let password = password(&seed);
        assert_eq!(password.len(), 20);
        assert!(password.chars().any(|c| c.is_ascii_lowercase()));
        assert!(password.chars().any(|c| c.is_ascii_uppercase()));
        assert!(password.chars().any(|c| c.is_ascii_digit()));
        assert!(password.chars().any(|c| "-_.~".contains(c)));
    }
}

#[test]
fn auth_secrets_of_users_are_checked() {
    let server = server_from(example("ms-standalone"));
    let mut secret = crate::build::secrets::auth_secret(&server, &owner(), "Str0ng-pass");
    assert_eq!(check_auth_secret(&secret), Ok(()));
    secret.data.as_mut().unwrap().insert(
        "username".into(),
        k8s_openapi::ByteString(b"admin".to_vec()),
    );
    assert_eq!(
        check_auth_secret(&secret).unwrap_err(),
        "auth secret ms-standalone-auth must have username \"sa\": SQL Server's administrator login"
    );
    secret
        .data
        .as_mut()
        .unwrap()
        .insert("username".into(), k8s_openapi::ByteString(b"sa".to_vec()));
    secret.data.as_mut().unwrap().remove("password");
    assert_eq!(
        check_auth_secret(&secret).unwrap_err(),
        "auth secret ms-standalone-auth has no password: add a non-empty key \"password\""
    );
}

#[test]
fn restart_hash_changes_with_any_part() {
    let a = restart_hash(&[b"cert", b"conf"]);
    assert_eq!(a, restart_hash(&[b"cert", b"conf"]));
    assert_eq!(a.len(), 24);
    assert_ne!(a, restart_hash(&[b"cert2", b"conf"]));
    assert_ne!(restart_hash(&[b"ab", b"c"]), restart_hash(&[b"a", b"bc"]));
}
