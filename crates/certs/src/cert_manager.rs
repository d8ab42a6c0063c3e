//! The part of cert-manager's `cert-manager.io/v1` API the operator reads and writes. cert-manager
//! installs these CRDs itself; these types are never used to generate them. Fields not modelled
//! are kept in `extra`, so reading and writing back an object loses nothing.
//! Reference: <https://cert-manager.io/docs/reference/api-docs/>.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use mssql_api::mssql::X509Subject;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "cert-manager.io";
pub const KIND_ISSUER: &str = "Issuer";
pub const KIND_CLUSTER_ISSUER: &str = "ClusterIssuer";
/// The Certificate condition cert-manager sets while it issues; set True by hand, it asks for it.
pub const ISSUING: &str = "Issuing";

/// A request for a signed certificate, kept in `spec.secretName` and renewed by cert-manager.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    status = "CertificateStatus",
    derive = "Default",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    pub issuer_ref: IssuerRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// KubeDB's certificate subject has cert-manager's shape, so it is passed through as is.
    pub subject: Option<X509Subject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKey>,
    #[serde(rename = "isCA", default, skip_serializing_if = "Option::is_none")]
    pub is_ca: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKey {
    /// `Never` or `Always` (a new key on each issuance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<String>,
    /// `PKCS1` or `PKCS8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `RSA`, `ECDSA` or `Ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CertificateCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// cert-manager's condition: `Ready` and `Issuing` are the ones that matter here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// An `Issuer` (namespaced) or `ClusterIssuer` spec. Only the CA issuer is modelled; the others
/// (ACME, Vault, self-signed…) are kept in `extra`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Issuer",
    namespaced,
    status = "IssuerStatus",
    derive = "Default",
    derive = "PartialEq"
)]
pub struct IssuerSpec {
    #[serde(flatten)]
    pub config: IssuerConfig,
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "ClusterIssuer",
    status = "IssuerStatus",
    derive = "Default",
    derive = "PartialEq"
)]
pub struct ClusterIssuerSpec {
    #[serde(flatten)]
    pub config: IssuerConfig,
}

/// What an Issuer and a ClusterIssuer have in common: how they sign.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaIssuer>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaIssuer {
    /// The Secret (`tls.crt`, `tls.key`) of the signing CA; for a ClusterIssuer it lives in
    /// cert-manager's cluster resource namespace.
    pub secret_name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CertificateCondition>,
}

impl Certificate {
    /// The condition of `type_`, if cert-manager has set it.
    pub fn condition(&self, type_: &str) -> Option<&CertificateCondition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
    }

    /// Its status conditions with `Issuing=True` (`reason`, `message`, as of `now`) in place of
    /// any earlier one: what `cmctl renew` writes to make cert-manager re-issue it now.
    pub fn conditions_to_reissue(
        &self,
        reason: &str,
        message: &str,
        now: Time,
    ) -> Vec<CertificateCondition> {
        let mut conditions = self.status.clone().unwrap_or_default().conditions;
        conditions.retain(|c| c.type_ != ISSUING);
        conditions.push(CertificateCondition {
            type_: ISSUING.to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_transition_time: Some(now),
            observed_generation: self.metadata.generation,
        });
        conditions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/kubedb-docs");

    /// Reading a cert-manager object and writing it back loses nothing.
    fn lossless<T: serde::de::DeserializeOwned + Serialize>(text: &str) {
        let original: Value = serde_saphyr::from_str(text).unwrap();
        let typed: T = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), original);
    }

    #[test]
    fn kubedb_doc_issuers_round_trip() {
        for name in ["issuer", "new-issuer"] {
            let text = std::fs::read_to_string(format!("{EXAMPLES}/{name}.yaml")).unwrap();
            lossless::<Issuer>(&text);
            let issuer: Issuer = serde_saphyr::from_str(&text).unwrap();
            assert!(
                issuer
                    .spec
                    .config
                    .ca
                    .unwrap()
                    .secret_name
                    .starts_with("mssqlserver-")
            );
        }
    }

    #[test]
    fn certificates_and_other_issuers_round_trip() {
        lossless::<Certificate>(
            r#"
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: db-server-cert, namespace: demo, generation: 2}
spec:
  secretName: db-server-cert
  issuerRef: {name: ca, kind: Issuer, group: cert-manager.io}
  commonName: db
  subject: {organizations: [kubedb], organizationalUnits: [server]}
  dnsNames: [db, db.demo.svc]
  ipAddresses: [127.0.0.1]
  usages: [server auth, client auth]
  privateKey: {rotationPolicy: Always, algorithm: ECDSA, size: 256, encoding: PKCS8}
  secretTemplate: {labels: {app.kubernetes.io/instance: db}}
  revisionHistoryLimit: 2
  keystores: {pkcs12: {create: false}}
status:
  conditions:
    - {type: Ready, status: "True", reason: Ready, message: up to date, observedGeneration: 2, lastTransitionTime: "2026-11-01T10:00:00Z"}
    - {type: Issuing, status: "True", reason: RotateCertificate, message: Rotating Certificate for KubeDB}
  notBefore: "2026-11-01T10:00:00Z"
  notAfter: "2027-01-30T10:00:00Z"
  renewalTime: "2026-12-31T10:00:00Z"
  revision: 3
  nextPrivateKeySecretName: db-server-cert-abcde
"#,
        );
        lossless::<ClusterIssuer>(
            "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: acme}\nspec: {acme: {server: https://acme.example/dir, privateKeySecretRef: {name: k}}}\n",
        );
    }

    #[test]
    fn conditions_are_found_by_type() {
        let text = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c}\nspec: {secretName: s, issuerRef: {name: i}}\nstatus: {conditions: [{type: Issuing, status: 'True'}]}\n";
        let certificate: Certificate = serde_saphyr::from_str(text).unwrap();
        assert_eq!(certificate.condition("Issuing").unwrap().status, "True");
        assert!(certificate.condition("Ready").is_none());
    }

    #[test]
    fn a_reissue_replaces_any_issuing_condition_and_keeps_the_rest() {
        let text = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c, generation: 3}\nspec: {secretName: s, issuerRef: {name: i}}\nstatus: {conditions: [{type: Ready, status: 'True'}, {type: Issuing, status: 'False', reason: Done}]}\n";
        let certificate: Certificate = serde_saphyr::from_str(text).unwrap();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let conditions =
            certificate.conditions_to_reissue("ManuallyTriggered", "renew", now.clone());
        assert_eq!(
            conditions
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str()))
                .collect::<Vec<_>>(),
            [("Ready", "True"), ("Issuing", "True")]
        );
        let issuing = &conditions[1];
        assert_eq!(issuing.reason.as_deref(), Some("ManuallyTriggered"));
        assert_eq!(issuing.message.as_deref(), Some("renew"));
        assert_eq!(issuing.last_transition_time, Some(now));
        assert_eq!(issuing.observed_generation, Some(3));
    }
}
