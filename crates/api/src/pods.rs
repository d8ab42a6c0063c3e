//! What a database's pod says about itself: whether it is Ready, and the certificates
//! it started with. SQL Server reads its certificates only when it starts, so the pod's record,
//! not the Secret, tells which certificate each pod's server runs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::annotations;

/// The certificate of one alias a pod loads at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedCertificate {
    /// Hex, uppercase, as `kubectl mssql tls status` and the request's messages show serials.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// The pod's `Ready` condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What `pod` recorded it started with, by alias; empty when it records nothing (TLS off, or a
/// pod made before this record existed).
pub fn started_with(pod: &Pod) -> BTreeMap<String, StartedCertificate> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::CERTIFICATES))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}
