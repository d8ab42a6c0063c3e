//! What a pod starts with, written into the pod template: the hash of everything SQL Server reads
//! at start-up (a pod on another hash must restart) and, per certificate alias, the serial and
//! expiry of the certificate it loads. SQL Server reads its certificate only when it starts, so
//! this, not the Secret, tells which certificate each pod's server runs.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// What the pods load from an issued TLS secret: its certificate and CA (never its key, which only
/// the pods read). The CA is shared: every secret of an issuer holds the same one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Issued {
    pub certificate: Vec<u8>,
    pub ca: Arc<[u8]>,
    /// The certificate's serial and expiry, read once when the secret arrives (`None`: it does
    /// not parse).
    pub started: Option<StartedCertificate>,
}

impl Issued {
    /// A secret cert-manager has issued: with a certificate and a key. `None` before.
    pub fn of(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let file = |key: &str| data.get(key).map(|v| v.0.clone()).filter(|v| !v.is_empty());
        file("tls.key")?;
        Some(Self::new(
            file("tls.crt")?,
            file("ca.crt").unwrap_or_default().into(),
        ))
    }

    pub fn new(certificate: Vec<u8>, ca: Arc<[u8]>) -> Self {
        let started = mssql_certs::inspect::parse_certificate(&certificate)
            .ok()
            .map(|info| StartedCertificate {
                serial: info.serial,
                not_after: info.not_after,
            });
        Self {
            certificate,
            ca,
            started,
        }
    }
}

impl Start {
    /// From the issued TLS secrets (by alias) and `mssql.conf` the pods will read.
    pub fn of(tls: &BTreeMap<String, Issued>, mssql_conf: &str) -> Self {
        let certificate = |alias: &str| tls.get(alias).map_or(&[][..], |i| &i.certificate);
        let restart_hash = secrets::restart_hash(&[
            certificate(ALIAS_SERVER),
            tls.get(ALIAS_SERVER).map_or(&[][..], |i| &i.ca),
            certificate(ALIAS_CLIENT),
            certificate(ALIAS_ENDPOINT),
            mssql_conf.as_bytes(),
        ]);
        let certificates = tls
            .iter()
            .filter_map(|(alias, issued)| Some((alias.clone(), issued.started.clone()?)))
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
