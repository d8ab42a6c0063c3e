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

/// `role_desc` of `sys.dm_hadr_availability_replica_states`, as a replica's report carries it.
pub const SQL_PRIMARY: &str = "PRIMARY";
pub const SQL_SECONDARY: &str = "SECONDARY";
pub const SQL_RESOLVING: &str = "RESOLVING";

/// What a pod's coordinator last read of its SQL Server's replica (annotation
/// [`annotations::REPLICA`]). Written only when one of the first three fields changes, so
/// `since` is when the replica came to be as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaReport {
    /// [`SQL_PRIMARY`], [`SQL_SECONDARY`] or [`SQL_RESOLVING`]; `None`: the server holds no group
    /// (yet), or does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Every availability database of the group is SYNCHRONIZED here (a primary's always are).
    pub synchronized: bool,
    /// The replica is connected to its group (a primary to itself, a secondary to its primary).
    pub connected: bool,
    /// RFC 3339, whole seconds.
    pub since: String,
    /// On the primary: the replicas its group has (`sys.availability_replicas`), so that the
    /// operator removes a pod only once the group has let it go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// The endpoint certificates its master holds, and the one its endpoint presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointCertificates>,
}

/// A replica's endpoint certificates, by serial (lowercase hex): those it trusts (its master
/// holds them) and the one it presents. A rotation overlaps them (docs/coordinator.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointCertificates {
    #[serde(default)]
    pub trusts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presents: Option<String>,
}

impl EndpointCertificates {
    pub fn trusts(&self, serial: &str) -> bool {
        self.trusts.iter().any(|s| same_serial(s, serial))
    }

    pub fn presents(&self, serial: &str) -> bool {
        self.presents
            .as_deref()
            .is_some_and(|s| same_serial(s, serial))
    }

    /// It trusts `serial` and no other.
    pub fn trusts_only(&self, serial: &str) -> bool {
        self.trusts(serial) && self.trusts.len() == 1
    }
}

/// Whether two spellings of a certificate serial are the same number: hex in either case, with
/// or without `:` and leading zeros (DER keeps a serial positive with a leading zero byte).
pub fn same_serial(a: &str, b: &str) -> bool {
    let canonical = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase()
            .trim_start_matches('0')
            .to_owned()
    };
    canonical(a) == canonical(b)
}

impl ReplicaReport {
    /// Whether `other` says the same of the replica, whenever it was said.
    pub fn same_state(&self, other: &Self) -> bool {
        (
            &self.role,
            self.synchronized,
            self.connected,
            &self.replicas,
        ) == (
            &other.role,
            other.synchronized,
            other.connected,
            &other.replicas,
        )
    }
}

/// What `pod`'s coordinator last reported of its replica; `None` when it reported nothing
/// readable (not a group's pod, or a coordinator that has not looked yet).
pub fn replica_report(pod: &Pod) -> Option<ReplicaReport> {
    let text = pod
        .metadata
        .annotations
        .as_ref()?
        .get(annotations::REPLICA)?;
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_as_numbers() {
        assert!(same_serial("00:8A:1B", "8a1b"));
        assert!(same_serial("008a1b", "8A1B"));
        assert!(!same_serial("8a1b", "8a1c"));
        let endpoint = EndpointCertificates {
            trusts: vec!["008a1b".into(), "0c".into()],
            presents: Some("0c".into()),
        };
        assert!(endpoint.trusts("8A1B") && endpoint.presents("C"));
        assert!(!endpoint.trusts_only("C"));
    }

    fn annotated(value: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.annotations =
            Some([(annotations::REPLICA.to_owned(), value.to_owned())].into());
        pod
    }

    #[test]
    fn a_replica_report_is_read_from_its_annotation() {
        let pod = annotated(
            r#"{"role":"SECONDARY","synchronized":true,"connected":true,"since":"2026-01-01T00:00:00Z"}"#,
        );
        assert_eq!(
            replica_report(&pod),
            Some(ReplicaReport {
                role: Some(SQL_SECONDARY.to_owned()),
                synchronized: true,
                connected: true,
                since: "2026-01-01T00:00:00Z".to_owned(),
                replicas: Vec::new(),
                endpoint: None,
            })
        );
        let none = annotated(r#"{"synchronized":false,"connected":false,"since":"x"}"#);
        assert_eq!(replica_report(&none).unwrap().role, None);
        assert_eq!(replica_report(&annotated("not json")), None);
        assert_eq!(replica_report(&Pod::default()), None);
    }

    #[test]
    fn the_same_state_is_told_apart_from_when_it_was_said() {
        let report = |role: Option<&str>, synchronized, since: &str| ReplicaReport {
            role: role.map(str::to_owned),
            synchronized,
            connected: true,
            since: since.to_owned(),
            replicas: Vec::new(),
            endpoint: None,
        };
        let primary = report(Some(SQL_PRIMARY), true, "a");
        assert!(primary.same_state(&report(Some(SQL_PRIMARY), true, "b")));
        assert!(!primary.same_state(&report(Some(SQL_SECONDARY), true, "a")));
        assert!(!primary.same_state(&report(Some(SQL_PRIMARY), false, "a")));
        assert!(!primary.same_state(&report(None, true, "a")));
        let disconnected = ReplicaReport {
            connected: false,
            ..primary.clone()
        };
        assert!(!primary.same_state(&disconnected));
        let listing = ReplicaReport {
            replicas: vec!["ag-0".to_owned()],
            ..primary.clone()
        };
        assert!(!primary.same_state(&listing), "a primary's group changed");
    }
}
