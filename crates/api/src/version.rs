//! `MSSQLServerVersion` (`catalog.kubedb.com/v1alpha1`, cluster-scoped): which images a
//! `spec.version` name means, and the uid SQL Server runs as.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::{preserved_object, preserved_objects};

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "catalog.kubedb.com",
    version = "v1alpha1",
    kind = "MSSQLServerVersion",
    root = "MssqlServerVersion",
    plural = "mssqlserverversions",
    singular = "mssqlserverversion",
    shortname = "msversion",
    category = "catalog",
    category = "kubedb",
    category = "appscode",
    derive = "Default",
    derive = "PartialEq",
    label("app.kubernetes.io/name", "kubedb"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "DB_IMAGE", type_ = "string", json_path = ".spec.db.image"),
    printcolumn(name = "Deprecated", type_ = "boolean", json_path = ".spec.deprecated"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    doc = "MSSQLServerVersion names the images of one SQL Server release (KubeDB-compatible catalog)."
)]
#[serde(rename_all = "camelCase")]
pub struct MssqlServerVersionSpec {
    pub version: String,
    pub db: Image,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<Image>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<Image>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_container: Option<Image>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<VersionSecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_constraints: Option<UpdateConstraints>,
    /// KubeDB's backup add-on settings; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub stash: Option<Value>,
    /// KubeDB's archiver (WAL-G) settings; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub archiver: Option<Value>,
    /// KubeDB's UI charts; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_objects")]
    pub ui: Option<Vec<Value>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Image {
    pub image: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
}

/// Version ranges (`>= 2022-cu12, < 2025-cu1`) this version may be updated to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denylist: Option<Vec<String>>,
}

impl MssqlServerVersion {
    /// The uid SQL Server runs as: the catalog's, else the image's own `mssql` user (10001).
    pub fn run_as_user(&self) -> i64 {
        self.spec
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
            .unwrap_or(crate::DEFAULT_RUN_AS_USER)
    }
}
