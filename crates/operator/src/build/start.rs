//! What a pod starts with, written into the pod template: the hash of everything SQL Server reads
//! at start-up (a pod on another hash must restart) and, per certificate alias, the serial and
//! expiry of the certificate it loads. SQL Server reads its certificate only when it starts, so
//! this, not the Secret, tells which certificate each pod's server runs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use mssql_api::pods::StartedCertificate;
use mssql_api::{ALIAS_CLIENT, ALIAS_ENDPOINT, ALIAS_SERVER};

use super::secrets;

/// The pods' start-up material.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Start {
    pub restart_hash: String,
    /// By alias.
    pub certificates: BTreeMap<String, StartedCertificate>,
}

/// The certificate one pod of a database runs for one alias (what it loaded at start-up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningCertificate {
    pub pod: String,
    pub alias: String,
    /// Unix seconds.
    pub not_after: i64,
    /// The alias's Secret holds another certificate.
    pub outdated: bool,
}

impl Start {
    /// From the TLS secrets (by alias) and `mssql.conf` the pods will read.
    pub fn of(tls: &BTreeMap<String, Secret>, mssql_conf: &str) -> Self {
        let value = |alias: &str, key: &str| -> &[u8] {
            tls.get(alias)
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(key))
                .map_or(&[], |v| v.0.as_slice())
        };
        let restart_hash = secrets::restart_hash(&[
            value(ALIAS_SERVER, "tls.crt"),
            value(ALIAS_SERVER, "ca.crt"),
            value(ALIAS_CLIENT, "tls.crt"),
            value(ALIAS_ENDPOINT, "tls.crt"),
            mssql_conf.as_bytes(),
        ]);
        let certificates = tls
            .keys()
            .filter_map(|alias| {
                let info = mssql_certs::inspect::parse_certificate(value(alias, "tls.crt")).ok()?;
                let started = StartedCertificate {
                    serial: info.serial,
                    not_after: info.not_after,
                };
                Some((alias.clone(), started))
            })
            .collect();
        Self {
            restart_hash,
            certificates,
        }
    }

    pub fn certificates_annotation(&self) -> String {
        serde_json::to_string(&self.certificates).unwrap_or_default()
    }
}
