//! The Secrets the operator writes: the `sa` credentials (only when the user gave none, and never
//! overwritten) and `mssql.conf`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mssql_api::names;
use mssql_api::validate::CONFIG_KEY;
use mssql_api::validated::Server;

use super::workload::owned_meta;

pub fn config_secret(server: &Server, owner: &OwnerReference, mssql_conf: &str) -> Secret {
    Secret {
        metadata: owned_meta(server, &names::config_secret(&server.name), owner),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            ByteString(mssql_conf.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// `kubernetes.io/basic-auth` with `username: sa` and `password`.
pub fn auth_secret(server: &Server, owner: &OwnerReference, password: &str) -> Secret {
    Secret {
        metadata: owned_meta(server, &server.auth_secret, owner),
        type_: Some("kubernetes.io/basic-auth".to_owned()),
        data: Some(BTreeMap::from([
            ("username".to_owned(), ByteString(b"sa".to_vec())),
            (
                "password".to_owned(),
                ByteString(password.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

/// Why a user's auth Secret cannot be used, if it cannot.
pub fn check_auth_secret(secret: &Secret) -> Result<(), String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let value = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.as_slice())
    };
    if value("username") != Some(b"sa") {
        return Err(format!(
            "auth secret {name} must have username \"sa\": SQL Server's administrator login"
        ));
    }
    match value("password") {
        Some(password) if !password.is_empty() => Ok(()),
        _ => Err(format!(
            "auth secret {name} has no password: add a non-empty key \"password\""
        )),
    }
}

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"-_.~";

/// A 20-character password from `random` bytes that meets SQL Server's complexity policy (at
/// least three of: lower case, upper case, digits, symbols; here all four). Characters that look
/// alike or need quoting in a shell or a connection string are left out.
pub fn password(random: &[u8; 20]) -> String {
    let classes = [LOWER, UPPER, DIGITS, SYMBOLS];
    let all: Vec<u8> = classes.concat();
    random
        .iter()
        .enumerate()
        .map(|(i, byte)| {
            // The first four characters come one from each class.
            let alphabet: &[u8] = classes.get(i).copied().unwrap_or(&all);
            char::from(alphabet[usize::from(*byte) % alphabet.len()])
        })
        .collect()
}

/// A short hash of everything a pod reads at start-up (certificates, CA, config), in order.
pub fn restart_hash(parts: &[&[u8]]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        // The length keeps ("ab", "c") apart from ("a", "bc").
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut hex = String::with_capacity(24);
    for byte in &context.finish().as_ref()[..12] {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}
