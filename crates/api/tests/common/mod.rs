//! Loading KubeDB's documentation examples (`examples/kubedb-docs`) and inline YAML fixtures.
#![allow(dead_code)] // Each test binary uses a different subset.

use mssql_api::catalog;
use mssql_api::defaults::default_mssqlserver;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use serde::de::DeserializeOwned;

pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/kubedb-docs");

/// The databases of KubeDB's TLS guides.
pub const DATABASE_EXAMPLES: [&str; 4] = [
    "ms-standalone",
    "mssql-ag-cluster",
    "mssql-ag-tls",
    "mssql-standalone-tls",
];

/// The ops requests of KubeDB's reconfigure-TLS guide, standalone and availability group.
pub const OPS_EXAMPLES: [&str; 8] = [
    "msops-add-tls",
    "msops-ag-add-tls",
    "msops-rotate",
    "msops-ag-rotate",
    "msops-change-issuer",
    "msops-ag-change-issuer",
    "msops-remove",
    "msops-ag-remove",
];

pub fn example_text(name: &str) -> String {
    let path = format!("{EXAMPLES}/{name}.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn yaml<T: DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{text}"))
}

pub fn example<T: DeserializeOwned>(name: &str) -> T {
    yaml(&example_text(name))
}

/// A database example, defaulted against the built-in catalog as the operator does.
pub fn defaulted(name: &str) -> MssqlServer {
    default_server(example(name))
}

pub fn default_server(mut db: MssqlServer) -> MssqlServer {
    let versions = catalog::default_catalog();
    let version = catalog::find(&versions, &db.spec.version).cloned();
    default_mssqlserver(&mut db, version.as_ref());
    db
}

pub fn ops(name: &str) -> MssqlServerOpsRequest {
    example(name)
}

/// A standalone database that passes validation once defaulted; tests change one thing in it.
pub const MINIMAL: &str = r#"
apiVersion: kubedb.com/v1alpha2
kind: MSSQLServer
metadata: {name: sales, namespace: shop}
spec:
  version: "2022-cu22"
  tls:
    issuerRef: {apiGroup: cert-manager.io, kind: Issuer, name: shop-ca}
  storage:
    resources: {requests: {storage: 1Gi}}
  podTemplate:
    spec:
      containers:
        - name: mssql
          env:
            - {name: ACCEPT_EULA, value: "Y"}
            - {name: MSSQL_PID, value: Developer}
"#;

/// `MINIMAL` with `edit` applied to its JSON form.
pub fn minimal_with(edit: impl FnOnce(&mut serde_json::Value)) -> MssqlServer {
    let mut value: serde_json::Value = yaml(MINIMAL);
    edit(&mut value);
    serde_json::from_value(value).expect("edited fixture parses")
}
