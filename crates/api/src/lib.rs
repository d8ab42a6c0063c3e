//! The KubeDB-compatible API of mssql-operator: types, defaulting and validation, and the
//! vocabulary the operator and `kubectl mssql` share (labels, annotations, condition types and
//! texts, derived names, what a pod or a request says about itself).
//! Pure code: nothing here talks to an API server, so all of it is unit-tested offline.

// kube-derive's `printcolumn(...)` repeats `type_ = "string"` on purpose; clippy reads it as a duplicate.
#![allow(clippy::duplicated_attributes)]

pub mod annotations;
pub mod catalog;
pub mod condition;
pub mod conf;
pub mod crd;
pub mod defaults;
pub mod duration;
pub mod labels;
pub mod mssql;
pub mod names;
pub mod ops;
pub mod phase;
pub mod pods;
pub mod progress;
pub mod quantity;
pub mod renewal;
mod schema;
pub mod steps;
pub mod validate;
pub mod validated;
pub mod version;

pub use mssql::{MssqlServer, MssqlServerSpec, MssqlServerStatus, PodCertificate, ReplicaStatus};
pub use ops::{MssqlServerOpsRequest, OpsRequestSpec, OpsRequestStatus};
pub use version::{MssqlServerVersion, MssqlServerVersionSpec};

pub const TOPOLOGY_AVAILABILITY_GROUP: &str = "AvailabilityGroup";
pub const TOPOLOGY_DISTRIBUTED_AG: &str = "DistributedAG";

pub const STORAGE_DURABLE: &str = "Durable";
pub const STORAGE_EPHEMERAL: &str = "Ephemeral";

pub const DELETION_DELETE: &str = "Delete";
pub const DELETION_DO_NOT_TERMINATE: &str = "DoNotTerminate";

/// The `mssql` user of Microsoft's images.
pub const DEFAULT_RUN_AS_USER: i64 = 10001;

/// Container names KubeDB uses; users address them in `podTemplate`.
pub const CONTAINER_MSSQL: &str = "mssql";
pub const CONTAINER_INIT: &str = "mssql-init";
pub const CONTAINER_COORDINATOR: &str = "mssql-coordinator";

/// Certificate aliases.
pub const ALIAS_SERVER: &str = "server";
pub const ALIAS_CLIENT: &str = "client";
pub const ALIAS_ENDPOINT: &str = "endpoint";
