//! `mssql-operator check`: validates YAML files offline, exactly as the operator would validate
//! the objects it reads, against the built-in catalog (plus any `MSSQLServerVersion` in the files).

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mssql_api::catalog;
use mssql_api::defaults::default_mssqlserver;
use mssql_api::validate::{FieldError, validate_mssqlserver, validate_ops_request};
use mssql_api::{MssqlServer, MssqlServerOpsRequest, MssqlServerVersion};
use mssql_certs::cert_manager::{Certificate, ClusterIssuer, Issuer};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One input file.
pub struct Source {
    pub name: String,
    pub text: String,
}

/// What `check` found about one document.
#[derive(Debug)]
pub struct Outcome {
    /// `Kind namespace/name`, or the file and document number when the object has no identity.
    pub object: String,
    pub result: Result<Value, Vec<FieldError>>,
}

impl Outcome {
    pub fn is_valid(&self) -> bool {
        self.result.is_ok()
    }
}

impl fmt::Display for Outcome {
    /// The errors of an invalid object, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Err(errors) = &self.result {
            for error in errors {
                writeln!(f, "{}: {error}", self.object)?;
            }
        }
        Ok(())
    }
}

/// A document of a known kind, parsed.
enum Parsed {
    Server(Box<MssqlServer>),
    Ops(Box<MssqlServerOpsRequest>),
    /// A catalog entry: valid as written, and used to check the databases of the same files.
    Version(Box<MssqlServerVersion>, Value),
    /// Valid as written (a cert-manager object), or not ours to check.
    AsIs(Value),
}

const KUBEDB_KINDS: [(&str, &str); 3] = [
    ("kubedb.com/v1alpha2", "MSSQLServer"),
    ("catalog.kubedb.com/v1alpha1", "MSSQLServerVersion"),
    ("ops.kubedb.com/v1alpha1", "MSSQLServerOpsRequest"),
];

/// Checks every document of every source. Never panics, whatever the input.
pub fn check(sources: &[Source]) -> Vec<Outcome> {
    let mut parsed = Vec::new();
    for source in sources {
        match serde_saphyr::from_multiple::<Value>(&source.text) {
            Ok(values) => {
                let values = values.into_iter().filter(|v| !v.is_null());
                for (i, value) in values.enumerate() {
                    let object = identity(&value)
                        .unwrap_or_else(|| format!("{} document {}", source.name, i + 1));
                    parsed.push((object, parse(value)));
                }
            }
            Err(error) => parsed.push((
                source.name.clone(),
                Err(vec![FieldError::new(
                    "",
                    format!("not valid YAML: {error}"),
                )]),
            )),
        }
    }

    let mut versions = catalog::default_catalog();
    for (_, result) in &parsed {
        if let Ok(Parsed::Version(version, _)) = result {
            versions.retain(|v| v.metadata.name != version.metadata.name);
            versions.push((**version).clone());
        }
    }
    let servers: Vec<(String, String)> = parsed
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(Parsed::Server(db)) => Some(key(&db.metadata, db.metadata.name.as_deref())),
            _ => None,
        })
        .collect();

    parsed
        .into_iter()
        .map(|(object, result)| {
            let result = result.and_then(|parsed| match parsed {
                Parsed::Server(db) => {
                    let version = catalog::find(&versions, &db.spec.version);
                    database(*db, version)
                }
                Parsed::Ops(ops) => {
                    let database = key(&ops.metadata, Some(&ops.spec.database_ref.name));
                    // A database that is not among the files may well exist in the cluster.
                    let exists = servers.contains(&database).then_some(true);
                    ops_request(&ops, exists)
                }
                Parsed::Version(_, value) | Parsed::AsIs(value) => Ok(value),
            });
            Outcome { object, result }
        })
        .collect()
}

/// The database as the operator would run it (defaulted), or every rule it breaks. `version` is
/// its catalog entry, if one exists. `check`, the admission webhook and the operator's
/// `SpecValid` all come here (the operator through `validated`, which does the same two steps).
pub fn database(
    mut db: MssqlServer,
    version: Option<&MssqlServerVersion>,
) -> Result<Value, Vec<FieldError>> {
    default_mssqlserver(&mut db, version);
    finish(&db, validate_mssqlserver(&db, version))
}

/// The ops request as written, or every rule it breaks. `database_exists` is `None` when it
/// cannot be known.
pub fn ops_request(
    ops: &MssqlServerOpsRequest,
    database_exists: Option<bool>,
) -> Result<Value, Vec<FieldError>> {
    finish(ops, validate_ops_request(ops, database_exists))
}

fn finish<T: serde::Serialize>(
    object: &T,
    errors: Vec<FieldError>,
) -> Result<Value, Vec<FieldError>> {
    if errors.is_empty() {
        serde_json::to_value(object).map_err(|e| vec![FieldError::new("", e.to_string())])
    } else {
        Err(errors)
    }
}

/// `(namespace, name)`, in the namespace `kubectl apply` would use for an object without one.
fn key(meta: &ObjectMeta, name: Option<&str>) -> (String, String) {
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    (namespace.to_owned(), name.unwrap_or_default().to_owned())
}

/// `Kind namespace/name` of a document that has a kind and a name.
fn identity(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    Some(match meta.get("namespace").and_then(Value::as_str) {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    })
}

fn parse(value: Value) -> Result<Parsed, Vec<FieldError>> {
    if !value.is_object() {
        return Err(vec![FieldError::new(
            "",
            "a Kubernetes object must be a YAML mapping",
        )]);
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() || api_version.is_empty() {
        return Err(vec![FieldError::new(
            "",
            "apiVersion and kind are required",
        )]);
    }
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    if let Some((expected, _)) = KUBEDB_KINDS.iter().find(|(_, k)| *k == kind)
        && api_version != *expected
        && group.ends_with("kubedb.com")
    {
        return Err(vec![FieldError::new(
            "apiVersion",
            format!(
                "{kind} is served as {expected}; change apiVersion {api_version} to {expected}"
            ),
        )]);
    }
    if value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(vec![FieldError::new("metadata.name", "a name is required")]);
    }
    match (api_version, kind) {
        ("kubedb.com/v1alpha2", "MSSQLServer") => Ok(Parsed::Server(Box::new(typed(value)?))),
        ("ops.kubedb.com/v1alpha1", "MSSQLServerOpsRequest") => {
            Ok(Parsed::Ops(Box::new(typed(value)?)))
        }
        ("catalog.kubedb.com/v1alpha1", "MSSQLServerVersion") => {
            Ok(Parsed::Version(Box::new(typed(value.clone())?), value))
        }
        ("cert-manager.io/v1", "Certificate") => as_is::<Certificate>(value),
        ("cert-manager.io/v1", "Issuer") => as_is::<Issuer>(value),
        ("cert-manager.io/v1", "ClusterIssuer") => as_is::<ClusterIssuer>(value),
        _ => Ok(Parsed::AsIs(value)),
    }
}

/// Parses `value` as `T`, naming the field that does not fit.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![FieldError::new(path, error.into_inner().to_string())]
    })
}

/// Checks the shape of `value` as `T` and keeps it exactly as written.
fn as_is<T: DeserializeOwned>(value: Value) -> Result<Parsed, Vec<FieldError>> {
    typed::<T>(value.clone()).map(|_| Parsed::AsIs(value))
}
