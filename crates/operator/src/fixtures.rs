//! Objects the unit tests share: KubeDB's TLS example as stored, and what a mock API server
//! answers for the objects it refers to (its catalog entry, its issuer, its issued secrets).

use mssql_api::MssqlServer;
use serde_json::{Value, json};

use crate::controller::mock::Call;

pub const NAMESPACE: &str = "demo";
pub const DATABASE: &str = "mssql-standalone-tls";

/// `examples/kubedb-docs/mssql-standalone-tls.yaml` as the API server stores it.
pub fn database() -> MssqlServer {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/kubedb-docs/mssql-standalone-tls.yaml"
    ))
    .unwrap();
    let mut db: MssqlServer = serde_saphyr::from_str(&text).unwrap();
    db.metadata.uid = Some("0b1c".to_owned());
    db.metadata.generation = Some(1);
    db.metadata.resource_version = Some("1".to_owned());
    db
}

/// The answer to a read of what the database refers to, if `call` is one: its catalog entry, its
/// Issuer, its issued TLS secrets.
pub fn references(call: &Call) -> Option<(u16, Value)> {
    if call.method != "GET" {
        return None;
    }
    let path = call.path.split('?').next().unwrap_or_default();
    if path.ends_with("/mssqlserverversions/2025-cu0") {
        let catalog = mssql_api::catalog::default_catalog();
        let version = mssql_api::catalog::find(&catalog, "2025-cu0").unwrap();
        return Some((200, serde_json::to_value(version).unwrap()));
    }
    if path.ends_with("/issuers/mssqlserver-ca-issuer") {
        return Some((
            200,
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
                   "metadata": {"name": "mssqlserver-ca-issuer", "namespace": NAMESPACE},
                   "spec": {"ca": {"secretName": "ca"}}}),
        ));
    }
    if path.contains("/secrets/mssql-standalone-tls-") && path.ends_with("-cert") {
        return Some((
            200,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "x", "namespace": NAMESPACE},
                   "data": {"tls.crt": "Y3J0", "tls.key": "a2V5", "ca.crt": "Y2E="}}),
        ));
    }
    None
}
