//! `MSSQLServerOpsRequest` (`ops.kubedb.com/v1alpha1`): one day-2 operation on one database.
//! The spec is immutable once created (a CEL transition rule enforces it in the API server).

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::Condition;
use crate::mssql::CertificateSpec;
use crate::schema::{preserved_object, preserved_objects};

/// Every type KubeDB defines for MSSQLServer, in KubeDB's order.
pub const OPS_TYPES: [&str; 9] = [
    "UpdateVersion",
    "HorizontalScaling",
    "VerticalScaling",
    "VolumeExpansion",
    "Restart",
    "Reconfigure",
    "ReconfigureTLS",
    "RotateAuth",
    "StorageMigration",
];

pub const TYPE_RECONFIGURE_TLS: &str = "ReconfigureTLS";
pub const TYPE_RESTART: &str = "Restart";

/// A request's `status.phase`: it is `Pending` until it may start, `Progressing` while it runs,
/// and ends `Successful`, `Failed` or `Skipped`.
pub const PHASE_PENDING: &str = "Pending";
pub const PHASE_PROGRESSING: &str = "Progressing";
pub const PHASE_SUCCESSFUL: &str = "Successful";
pub const PHASE_FAILED: &str = "Failed";
pub const PHASE_SKIPPED: &str = "Skipped";

pub const APPLY_IF_READY: &str = "IfReady";
pub const APPLY_ALWAYS: &str = "Always";

// CEL rules, shared with the operator's own check so both say the same thing.
pub const MSG_TLS_NIL: &str = "`spec.tls` nil not supported in ReconfigureTLS type";
pub const MSG_NO_TLS_OPERATION: &str = "no reconfiguration is provided in TLS Spec";
pub const MSG_SEVERAL_TLS_OPERATIONS: &str = "more than 1 field have assigned to spec.reconfigureTLS but at a time one is allowed to run one operation";
pub const MSG_SPEC_IMMUTABLE: &str = "spec is immutable: an ops request cannot be changed once created; create a new MSSQLServerOpsRequest instead";

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ops.kubedb.com",
    version = "v1alpha1",
    kind = "MSSQLServerOpsRequest",
    root = "MssqlServerOpsRequest",
    plural = "mssqlserveropsrequests",
    singular = "mssqlserveropsrequest",
    shortname = "msops",
    category = "ops",
    category = "kubedb",
    category = "appscode",
    namespaced,
    status = "OpsRequestStatus",
    derive = "Default",
    derive = "PartialEq",
    label("app.kubernetes.io/name", "kubedb"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    doc = "MSSQLServerOpsRequest asks for one operation on an MSSQLServer (KubeDB-compatible)."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self == oldSelf",
        "message": MSG_SPEC_IMMUTABLE
    },
    {
        "rule": "self.type != 'ReconfigureTLS' || has(self.tls)",
        "message": MSG_TLS_NIL
    },
    {
        "rule": "self.type != 'ReconfigureTLS' || !has(self.tls) || (has(self.tls.remove) && self.tls.remove) || (has(self.tls.rotateCertificates) && self.tls.rotateCertificates) || has(self.tls.issuerRef) || has(self.tls.certificates)",
        "message": MSG_NO_TLS_OPERATION
    },
    {
        "rule": "self.type != 'ReconfigureTLS' || !has(self.tls) || ((has(self.tls.remove) && self.tls.remove ? 1 : 0) + (has(self.tls.rotateCertificates) && self.tls.rotateCertificates ? 1 : 0) + (has(self.tls.issuerRef) || has(self.tls.certificates) ? 1 : 0)) <= 1",
        "message": MSG_SEVERAL_TLS_OPERATIONS
    }
]))]
pub struct OpsRequestSpec {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = OPS_TYPES))]
    pub type_: String,
    pub database_ref: DatabaseRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OpsTlsSpec>,
    /// Go duration string bounding each step, e.g. `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `IfReady` (default): run only once the database is Ready. `Always`: run regardless.
    #[serde(default = "default_apply", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["IfReady", "Always"]))]
    pub apply: Option<String>,
    #[serde(
        default = "default_max_retries",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_retries: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub restart: Option<Value>,
    // The specs of the types this operator does not run yet; accepted and kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub update_version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub horizontal_scaling: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub vertical_scaling: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub volume_expansion: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub authentication: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub migration: Option<Value>,
}

#[allow(clippy::unnecessary_wraps)] // serde's `default = ...` needs the field's type.
fn default_apply() -> Option<String> {
    Some(APPLY_IF_READY.to_owned())
}

#[allow(clippy::unnecessary_wraps)]
fn default_max_retries() -> Option<i32> {
    Some(1)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseRef {
    pub name: String,
}

/// `spec.tls` of a ReconfigureTLS request: exactly one of `remove`, `rotateCertificates`, or new
/// `issuerRef`/`certificates` (optionally with `clientTLS`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsTlsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<TypedLocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<CertificateSpec>>,
    #[serde(rename = "clientTLS", default, skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_certificates: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsRequestStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Pending", "Progressing", "Successful", "WaitingForApproval", "Failed", "Approved", "Denied", "Skipped"]))]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Backup configurations paused during the operation (KubeStash/Stash references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_objects")]
    pub paused_backups: Option<Vec<Value>>,
}

/// What a ReconfigureTLS request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsChange {
    Rotate,
    Remove,
    /// New issuer or certificate fields (add TLS is this with `clientTLS: true`).
    Update,
}

impl OpsRequestSpec {
    /// The TLS change a ReconfigureTLS request asks for. Validation refuses a request that sets
    /// both `rotateCertificates` and `remove`; one created before that rule rotates.
    pub fn tls_change(&self) -> TlsChange {
        let tls = self.tls.as_ref();
        if tls.and_then(|t| t.rotate_certificates) == Some(true) {
            TlsChange::Rotate
        } else if tls.and_then(|t| t.remove) == Some(true) {
            TlsChange::Remove
        } else {
            TlsChange::Update
        }
    }
}

impl MssqlServerOpsRequest {
    /// `status.phase`, empty before the operator has seen the request.
    pub fn phase(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default()
    }

    /// Whether the request has ended: nothing it does changes any more.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.phase(),
            PHASE_SUCCESSFUL | PHASE_FAILED | PHASE_SKIPPED
        )
    }

    /// Its status conditions, none before the operator has written any.
    pub fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map_or(&[], |s| s.conditions.as_slice())
    }
}
