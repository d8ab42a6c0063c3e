//! Objects the unit tests share: KubeDB's TLS example as stored, and what a mock API server
//! answers for the objects it refers to (its catalog entry, its issuer, its issued secrets).

use k8s_openapi::api::core::v1::Secret;
use mssql_api::{MssqlServer, MssqlServerVersion};
use mssql_certs::cert_manager::Issuer;
use serde_json::{Value, json};

use crate::build::start::Issued;
use crate::controller::known::Known;
use crate::controller::mock::Call;
use crate::controller::store::Key;

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

fn catalog_entry() -> Value {
    let catalog = mssql_api::catalog::default_catalog();
    let version = mssql_api::catalog::find(&catalog, "2025-cu0").unwrap();
    serde_json::to_value(version).unwrap()
}

const ISSUER: &str = "mssqlserver-ca-issuer";

/// An issued TLS secret (`tls.crt` "crt", `tls.key` "key", `ca.crt` "ca").
fn issued_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "x", "namespace": NAMESPACE},
           "data": {"tls.crt": "Y3J0", "tls.key": "a2V5", "ca.crt": "Y2E="}})
}

/// The answer to a read of what the database refers to, if `call` is one: its catalog entry, its
/// Issuer, its issued TLS secrets.
pub fn references(call: &Call) -> Option<(u16, Value)> {
    if call.method != "GET" {
        return None;
    }
    let path = call.path.split('?').next().unwrap_or_default();
    if path.ends_with("/mssqlserverversions/2025-cu0") {
        return Some((200, catalog_entry()));
    }
    if path.ends_with(&format!("/issuers/{ISSUER}")) {
        return Some((
            200,
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
                   "metadata": {"name": ISSUER, "namespace": NAMESPACE},
                   "spec": {"ca": {"secretName": "ca"}}}),
        ));
    }
    if path.contains("/secrets/mssql-standalone-tls-") && path.ends_with("-cert") {
        return Some((200, issued_secret()));
    }
    None
}

/// What the watches know when the database's references exist and cert-manager has issued its
/// secrets: the same objects `references` answers with.
pub fn known() -> Known {
    let known = Known::default();
    let version: MssqlServerVersion = serde_json::from_value(catalog_entry()).unwrap();
    known
        .versions
        .insert(Key::of::<MssqlServerVersion>("", "2025-cu0"), version);
    known
        .issuers
        .insert(Key::of::<Issuer>(NAMESPACE, ISSUER), ());
    let secret: Secret = serde_json::from_value(issued_secret()).unwrap();
    for alias in ["server", "client"] {
        let name = format!("{DATABASE}-{alias}-cert");
        known.issued.insert(
            Key::of::<Secret>(NAMESPACE, &name),
            Issued::of(&secret).unwrap(),
        );
    }
    known
}

/// The ops-manager's context over `client`, knowing what `known` does, with no request cached.
pub fn ops_context(client: kube::Client) -> crate::ops::Context {
    crate::ops::Context {
        provisioner: crate::provisioner::Context::new(client, std::sync::Arc::default(), known()),
        requests: kube::runtime::reflector::store().0,
        written: Default::default(),
        verify_served_certificates: false,
    }
}
