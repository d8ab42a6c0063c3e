//! `MSSQLServer` (`kubedb.com/v1alpha2`): the database a user asks for, in KubeDB's JSON shape.
//!
//! Fields are permissive on purpose (enums are `String`s restricted by the CRD schema, required
//! KubeDB fields are `Option`s): the API server rejects bad values through the schema, and the
//! operator's validation re-checks what it reads with KubeDB's own messages. Fields this operator
//! does not act on yet are kept verbatim, never dropped.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, LocalObjectReference, PersistentVolumeClaimSpec, PodSecurityContext,
    ResourceRequirements, ServiceSpec, Toleration, TypedLocalObjectReference, Volume,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::Condition;
use crate::schema::{preserve_unknown_fields, preserved_object, string_map};

pub type Labels = BTreeMap<String, String>;

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubedb.com",
    version = "v1alpha2",
    kind = "MSSQLServer",
    root = "MssqlServer",
    plural = "mssqlservers",
    singular = "mssqlserver",
    shortname = "ms",
    category = "datastore",
    category = "kubedb",
    category = "appscode",
    category = "all",
    namespaced,
    status = "MssqlServerStatus",
    derive = "Default",
    derive = "PartialEq",
    label("app.kubernetes.io/name", "kubedb"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    doc = "MSSQLServer defines a Microsoft SQL Server database (KubeDB-compatible)."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.topology) || !has(self.replicas) || self.replicas == 1",
        "message": "number of replicas for standalone must be one "
    },
    {
        "rule": "!has(self.topology) || has(self.topology.mode)",
        "message": ".spec.topology.mode can't be empty in cluster mode"
    },
    {
        "rule": "!has(self.topology) || (has(self.replicas) && self.replicas > 0)",
        "message": "number of replicas can not be nil and can not be less than or equal to 0"
    }
]))]
pub struct MssqlServerSpec {
    /// Name of a cluster-scoped `MSSQLServerVersion`.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Absent for a standalone server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<SecretReference>,
    /// `Durable` (default) or `Ephemeral`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Durable", "Ephemeral"]))]
    pub storage_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<PersistentVolumeClaimSpec>,
    /// Required (as in KubeDB's CRD); an `Option` so a missing block read from a file gets KubeDB's message.
    // No `serde(default)`: schemars would then drop `required` (serde reads a missing Option as None).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub tls: Option<TlsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_templates: Option<Vec<NamedServiceTemplateSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ConfigurationSpec>,
    /// Deprecated: moved into `configuration.secretName` by defaulting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret: Option<LocalObjectReference>,
    /// `Halt`, `Delete` (default), `WipeOut` or `DoNotTerminate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Halt", "Delete", "WipeOut", "DoNotTerminate"]))]
    pub deletion_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checker: Option<HealthCheckSpec>,
    /// kmodules `mona.AgentSpec`; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub monitor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arbiter: Option<ArbiterSpec>,
    /// KubeDB's init scripts and restore settings; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub init: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver: Option<ArchiverSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_ops: Option<AutoOpsSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// `AvailabilityGroup` or `DistributedAG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["AvailabilityGroup", "DistributedAG"]))]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_group: Option<AvailabilityGroupSpec>,
    #[serde(
        rename = "distributedAG",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub distributed_ag: Option<DistributedAgSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityGroupSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_election: Option<LeaderElectionConfig>,
    /// `Passive` (default), `ReadOnly` or `All`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Passive", "ReadOnly", "All"]))]
    pub secondary_access_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_cert_secret_name: Option<String>,
}

/// Durations are Go duration strings (`300ms`, `1m0s`), as KubeDB writes them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElectionConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_tick: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_tick: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_leadership_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_leadership_timeout: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributedAgSpec {
    #[serde(rename = "self")]
    pub self_: DistributedAgSelf,
    pub remote: DistributedAgRemote,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributedAgSelf {
    /// `Primary` or `Secondary`.
    #[schemars(extend("enum" = ["Primary", "Secondary"]))]
    pub role: String,
    pub url: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributedAgRemote {
    pub name: String,
    pub url: String,
}

/// KubeDB's `SecretReference`: a Secret (or a virtual secret) holding `username` and `password`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub externally_managed: Option<bool>,
}

/// `spec.tls`. For SQL Server, TLS on the wire is `clientTLS`; certificates are issued either way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": "has(self.issuerRef)", "message": "spec.tls.issuerRef' is missing" }
]))]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<TypedLocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<CertificateSpec>>,
    #[serde(rename = "clientTLS", default, skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<bool>,
}

/// kmodules `CertificateSpec`: one certificate, by alias (`server`, `client`, `endpoint`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    #[schemars(extend("enum" = ["server", "client", "endpoint"]))]
    pub alias: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<TypedLocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<X509Subject>,
    /// Go duration string, e.g. `2160h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Deprecated by KubeDB; passed to cert-manager as is.
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
    pub private_key: Option<CertificatePrivateKey>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct X509Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_units: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provinces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_codes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePrivateKey {
    /// `PKCS1` or `PKCS8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["PKCS1", "PKCS8"]))]
    pub encoding: Option<String>,
}

/// kmodules offshoot `PodTemplateSpec`: pod and workload metadata plus a pod spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Labels and annotations for the workload object itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<TemplateMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map")]
    pub labels: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map")]
    pub annotations: Option<Labels>,
}

/// The pod spec fields this operator reads or merges are typed; every other PodSpec field a user
/// gives (dnsPolicy, hostAliases, topologySpreadConstraints, podPlacementPolicy…) is kept in `extra`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = preserve_unknown_fields)]
pub struct PodSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<Container>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<Container>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map")]
    pub node_selector: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A service override by alias: `primary`, `secondary` or `stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedServiceTemplateSpec {
    #[schemars(extend("enum" = ["primary", "secondary", "standby", "stats", "dashboard"]))]
    pub alias: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSpec {
    /// A Secret with key `mssql.conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Inline config; the only key is `mssql.conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map")]
    pub inline: Option<Labels>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_write_check: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArbiterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map")]
    pub node_selector: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiverSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    #[serde(rename = "ref")]
    pub ref_: NamespacedName,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedName {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoOpsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MssqlServerStatus {
    /// `Provisioning`, `DataRestoring`, `Ready`, `Critical`, `NotReady`, `Halted` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Provisioning", "DataRestoring", "Ready", "Critical", "NotReady", "Halted", "Unknown"]))]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Not in KubeDB's API: per pod and certificate alias, the certificate the pod's SQL Server
    /// loaded when it started (it reads it only then), and whether the Secret holds a newer one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<PodCertificate>,
    /// Not in KubeDB's API: an availability group's replicas, one per pod, with the pod's role
    /// label and what its coordinator last read of its SQL Server. Absent for a standalone server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
}

/// The certificate one pod runs for one alias.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodCertificate {
    pub pod: String,
    pub alias: String,
    /// Hex, uppercase.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    /// The alias's Secret holds another certificate: the pod serves it only after a restart (a
    /// `Restart` or `ReconfigureTLS` request).
    pub outdated: bool,
}

/// One replica of an availability group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub pod: String,
    /// The pod's `kubedb.com/role` label (`primary`, `secondary`), which the Services select by;
    /// absent while it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What the replica's SQL Server says it is (`role_desc`); absent when its server holds no
    /// group yet, does not answer, or its coordinator has reported nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["PRIMARY", "SECONDARY", "RESOLVING"]))]
    pub sql_role: Option<String>,
    /// Every availability database is SYNCHRONIZED on this replica.
    pub synchronized: bool,
    /// Connected to its group (a secondary to its primary).
    pub connected: bool,
    /// RFC 3339: since when the replica has been in this state, as its coordinator saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl MssqlServer {
    /// KubeDB: a server without `spec.topology` is standalone.
    pub fn is_standalone(&self) -> bool {
        self.spec.topology.is_none()
    }

    /// The topology mode string, if any (`AvailabilityGroup`, `DistributedAG`).
    pub fn topology_mode(&self) -> Option<&str> {
        self.spec.topology.as_ref()?.mode.as_deref()
    }

    /// The Secret cert-manager writes the certificate of `alias` to: its `secretName`, or the
    /// default name.
    pub fn certificate_secret(&self, alias: &str) -> String {
        self.spec
            .tls
            .as_ref()
            .and_then(|tls| tls.certificates.as_ref())
            .and_then(|all| all.iter().find(|c| c.alias == alias))
            .and_then(|c| c.secret_name.clone())
            .unwrap_or_else(|| crate::names::certificate(&kube::ResourceExt::name_any(self), alias))
    }

    pub fn is_availability_group(&self) -> bool {
        self.topology_mode() == Some(crate::TOPOLOGY_AVAILABILITY_GROUP)
    }
}
