//! A database the operator can build from: defaulted, validated, and typed so that the builders
//! never meet an `Option` that KubeDB's rules make mandatory.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;

use crate::defaults::default_mssqlserver;
use crate::mssql::{
    ArbiterSpec, CertificateSpec, NamedServiceTemplateSpec, PodTemplateSpec, X509Subject,
};
use crate::validate::{CONFIG_KEY, FieldError, validate_mssqlserver};
use crate::{MssqlServer, MssqlServerVersion, TOPOLOGY_AVAILABILITY_GROUP, names};

#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub name: String,
    pub namespace: String,
    pub replicas: i32,
    pub topology: Topology,
    pub server_image: String,
    pub init_image: String,
    /// The uid and gid SQL Server runs as.
    pub run_as_user: i64,
    /// `None` for `storageType: Ephemeral`.
    pub storage: Option<PersistentVolumeClaimSpec>,
    pub tls: Tls,
    /// The Secret with `username: sa` and `password`.
    pub auth_secret: String,
    /// Whether the user named the auth secret (then it is never written by the operator).
    pub auth_secret_given: bool,
    pub pod_template: PodTemplateSpec,
    pub service_templates: Vec<NamedServiceTemplateSpec>,
    pub config: UserConfig,
    pub deletion_policy: DeletionPolicy,
    pub halted: bool,
    /// The witness of an availability group with an even number of replicas.
    pub arbiter: Option<ArbiterSpec>,
    /// The database object's own labels, passed on to what the operator creates.
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    AvailabilityGroup(Group),
    /// Accepted and kept; provisioned like an availability group without the endpoint alias.
    DistributedAg,
}

/// An availability group, as its coordinator forms it (docs/coordinator.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// `availabilityGroup.databases`: created on the primary and added to the group.
    pub databases: Vec<String>,
    /// `availabilityGroup.secondaryAccessMode`: `Passive`, `ReadOnly` or `All`.
    pub secondary_access_mode: String,
    /// The password of the endpoint's `dbm_login` (`loginSecretName`, else `<db>-dbm-login`).
    pub login_secret: OwnSecret,
    /// The password of the database master key (`masterKeySecretName`, else `<db>-master-key`).
    pub master_key_secret: OwnSecret,
}

/// A Secret the user may name; when they do not, the operator generates it once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnSecret {
    pub name: String,
    /// The user named it: it is read, never written.
    pub given: bool,
}

impl OwnSecret {
    fn new(given: Option<String>, default: String) -> Self {
        Self {
            given: given.is_some(),
            name: given.unwrap_or(default),
        }
    }
}

impl Topology {
    pub fn is_cluster(&self) -> bool {
        !matches!(self, Self::Standalone)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    pub issuer: IssuerRef,
    /// TLS on SQL Server's connections (`mssql.conf` `[network]`); certificates exist either way.
    pub client_tls: bool,
    pub certificates: Vec<Certificate>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerRef {
    /// `Issuer` or `ClusterIssuer`.
    pub kind: String,
    pub name: String,
}

/// One certificate alias, with every default filled.
#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    pub alias: String,
    /// The cert-manager Certificate's name (KubeDB: `<db>-<alias>-cert`).
    pub name: String,
    pub secret_name: String,
    pub issuer: IssuerRef,
    pub subject: X509Subject,
    pub duration: Option<String>,
    pub renew_before: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub private_key_encoding: Option<String>,
}

/// The user's part of `mssql.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserConfig {
    /// A Secret of the user's with key `mssql.conf`.
    pub secret: Option<String>,
    /// `configuration.inline["mssql.conf"]`.
    pub inline: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionPolicy {
    Halt,
    Delete,
    WipeOut,
    DoNotTerminate,
}

impl DeletionPolicy {
    /// The policy a (defaulted) `spec.deletionPolicy` names; `Delete` for anything else.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("Halt") => Self::Halt,
            Some("WipeOut") => Self::WipeOut,
            Some("DoNotTerminate") => Self::DoNotTerminate,
            _ => Self::Delete,
        }
    }
}

impl Server {
    /// The certificate of `alias`, if the topology has one.
    pub fn certificate(&self, alias: &str) -> Option<&Certificate> {
        self.tls.certificates.iter().find(|c| c.alias == alias)
    }

    /// The availability group, if the database is one.
    pub fn group(&self) -> Option<&Group> {
        match &self.topology {
            Topology::AvailabilityGroup(group) => Some(group),
            _ => None,
        }
    }

    /// Pod names, in ordinal order.
    pub fn pod_names(&self) -> Vec<String> {
        (0..self.replicas)
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }
}

/// Whether an availability group of `replicas` replicas has an arbiter: an even count does, so
/// that its voters are odd (KubeDB's rule).
pub fn group_has_arbiter(replicas: i32) -> bool {
    replicas % 2 == 0
}

/// Defaults and validates `db` against its catalog entry; every problem is returned at once.
pub fn validated(
    db: &MssqlServer,
    version: Option<&MssqlServerVersion>,
) -> Result<Server, Vec<FieldError>> {
    let mut db = db.clone();
    default_mssqlserver(&mut db, version);
    let errors = validate_mssqlserver(&db, version);
    match version {
        Some(version) if errors.is_empty() => Ok(convert(db, version)),
        _ => Err(errors),
    }
}

/// Turns a defaulted, valid database into a `Server`. Validation has guaranteed every `expect`.
fn convert(db: MssqlServer, version: &MssqlServerVersion) -> Server {
    let name = db.metadata.name.clone().unwrap_or_default();
    let spec = db.spec;
    let tls = spec.tls.expect("validated: spec.tls");
    let issuer = issuer(
        tls.issuer_ref
            .as_ref()
            .expect("validated: spec.tls.issuerRef"),
    );
    let certificates = tls
        .certificates
        .unwrap_or_default()
        .into_iter()
        .map(|c| certificate(&name, c, &issuer))
        .collect();
    let topology = match spec.topology.as_ref().and_then(|t| t.mode.as_deref()) {
        None => Topology::Standalone,
        Some(TOPOLOGY_AVAILABILITY_GROUP) => {
            let group = spec
                .topology
                .as_ref()
                .and_then(|t| t.availability_group.clone())
                .unwrap_or_default();
            Topology::AvailabilityGroup(Group {
                databases: group.databases.unwrap_or_default(),
                secondary_access_mode: group
                    .secondary_access_mode
                    .unwrap_or_else(|| "Passive".to_owned()),
                login_secret: OwnSecret::new(
                    group.login_secret_name,
                    names::dbm_login_secret(&name),
                ),
                master_key_secret: OwnSecret::new(
                    group.master_key_secret_name,
                    names::master_key_secret(&name),
                ),
            })
        }
        Some(_) => Topology::DistributedAg,
    };
    let auth_name = spec.auth_secret.as_ref().and_then(|s| s.name.clone());
    let replicas = spec.replicas.expect("validated: spec.replicas");
    let even_group =
        matches!(topology, Topology::AvailabilityGroup(_)) && group_has_arbiter(replicas);
    let configuration = spec.configuration.unwrap_or_default();
    Server {
        namespace: db
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        replicas,
        topology,
        server_image: version.spec.db.image.clone(),
        init_image: version
            .spec
            .init_container
            .as_ref()
            .map_or_else(|| version.spec.db.image.clone(), |i| i.image.clone()),
        run_as_user: version.run_as_user(),
        storage: (spec.storage_type.as_deref() != Some(crate::STORAGE_EPHEMERAL))
            .then(|| spec.storage.expect("validated: spec.storage")),
        tls: Tls {
            issuer,
            client_tls: tls.client_tls.unwrap_or(false),
            certificates,
        },
        auth_secret_given: auth_name.is_some(),
        auth_secret: auth_name.unwrap_or_else(|| names::auth_secret(&name)),
        pod_template: spec.pod_template.unwrap_or_default(),
        service_templates: spec.service_templates.unwrap_or_default(),
        config: UserConfig {
            secret: configuration.secret_name,
            inline: configuration.inline.and_then(|mut i| i.remove(CONFIG_KEY)),
        },
        deletion_policy: DeletionPolicy::parse(spec.deletion_policy.as_deref()),
        halted: spec.halted.unwrap_or(false),
        arbiter: even_group.then(|| spec.arbiter.clone().unwrap_or_default()),
        labels: db.metadata.labels.unwrap_or_default(),
        name,
    }
}

fn issuer(reference: &k8s_openapi::api::core::v1::TypedLocalObjectReference) -> IssuerRef {
    IssuerRef {
        kind: reference.kind.clone(),
        name: reference.name.clone(),
    }
}

fn certificate(db: &str, spec: CertificateSpec, default_issuer: &IssuerRef) -> Certificate {
    Certificate {
        name: names::certificate(db, &spec.alias),
        secret_name: spec
            .secret_name
            .unwrap_or_else(|| names::certificate(db, &spec.alias)),
        issuer: spec
            .issuer_ref
            .as_ref()
            .map_or_else(|| default_issuer.clone(), issuer),
        subject: spec.subject.unwrap_or_default(),
        duration: spec.duration,
        renew_before: spec.renew_before,
        dns_names: spec.dns_names.unwrap_or_default(),
        ip_addresses: spec.ip_addresses.unwrap_or_default(),
        uris: spec.uris.unwrap_or_default(),
        email_addresses: spec.email_addresses.unwrap_or_default(),
        private_key_encoding: spec.private_key.and_then(|k| k.encoding),
        alias: spec.alias,
    }
}
