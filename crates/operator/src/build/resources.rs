//! The typed set of a database's objects: everything the provisioner applies, built in one pure
//! call, and the objects an earlier spec needed that this one does not (to delete).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mssql_api::names;
use mssql_api::validated::Server;
use mssql_certs::cert_manager::Certificate;

use super::start::Start;
use super::{certificates, coordinator, secrets, services, workload};

/// Every object of one database, in the order they are applied: what the pods mount and run as
/// before the pods' workload.
pub struct Resources {
    /// The generated `sa` credentials: only when the user names none, and created once, never
    /// updated (a new password must not reach a running database).
    pub auth_secret: Option<Secret>,
    pub certificates: Vec<Certificate>,
    pub config_secret: Secret,
    /// Only when the user names no ServiceAccount of their own.
    pub service_account: Option<ServiceAccount>,
    pub services: Vec<Service>,
    pub disruption_budget: PodDisruptionBudget,
    /// An availability group's coordination: its generated Secrets, its Lease and its Role.
    pub coordination: Option<Coordination>,
    /// `None` until cert-manager has issued every TLS secret: the pods' template records what
    /// they start with, so it cannot be written before.
    pub workload: Option<Workload>,
}

/// What an availability group's coordinators use besides their pods.
pub struct Coordination {
    /// The endpoint login's and master key's passwords, unless the user named their Secrets:
    /// created once, never updated (like the `sa` credentials).
    pub secrets: Vec<Secret>,
    /// Created empty, then written by the coordinators only.
    pub lease: Lease,
    pub role: Role,
    pub role_binding: RoleBinding,
}

/// The pods' StatefulSets.
pub struct Workload {
    pub statefulset: StatefulSet,
    /// The quorum witness of an even-sized availability group.
    pub arbiter: Option<StatefulSet>,
}

/// Objects an earlier spec of the database needed and this one does not, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Orphans {
    /// The arbiter's StatefulSet, after a group became odd-sized or standalone.
    pub statefulsets: Vec<String>,
    /// The secondaries' Service, once the database is standalone.
    pub services: Vec<String>,
}

/// What the builders need besides the database.
pub struct Inputs<'a> {
    pub owner: &'a OwnerReference,
    pub mssql_conf: &'a str,
    /// What the pods start with, once the TLS secrets are issued.
    pub start: Option<&'a Start>,
    /// Generated passwords, used only for Secrets that do not exist yet: `sa`'s, then the
    /// availability group's endpoint login's and master key's.
    pub passwords: [&'a str; 3],
    /// The image of an availability group's `mssql-coordinator` containers: this operator's.
    pub coordinator_image: &'a str,
}

/// Builds every object of `server`.
pub fn resources(server: &Server, inputs: &Inputs) -> Resources {
    let owner = inputs.owner;
    let config_secret = secrets::config_secret(server, owner, inputs.mssql_conf);
    let config_name = names::config_secret(&server.name);
    Resources {
        auth_secret: (!server.auth_secret_given)
            .then(|| secrets::auth_secret(server, owner, inputs.passwords[0])),
        certificates: certificates::certificates(server, owner),
        config_secret,
        service_account: workload::service_account(server, owner),
        services: services::services(server, owner),
        disruption_budget: workload::pod_disruption_budget(server, owner),
        coordination: server.group().map(|group| Coordination {
            secrets: coordinator::secrets(
                server,
                group,
                owner,
                inputs.passwords[1],
                inputs.passwords[2],
            ),
            lease: coordinator::lease(server, owner),
            role: coordinator::role(server, owner),
            role_binding: coordinator::role_binding(server, owner),
        }),
        workload: inputs.start.map(|start| Workload {
            statefulset: workload::statefulset(
                server,
                owner,
                &config_name,
                start,
                inputs.coordinator_image,
            ),
            arbiter: workload::arbiter(
                server,
                owner,
                &config_name,
                start,
                inputs.coordinator_image,
            ),
        }),
    }
}

/// The objects of an earlier shape of `server` that it no longer has.
pub fn orphans(server: &Server) -> Orphans {
    let mut orphans = Orphans::default();
    if server.arbiter.is_none() {
        orphans.statefulsets.push(names::arbiter(&server.name));
    }
    if !server.topology.is_cluster() {
        orphans
            .services
            .push(names::secondary_service(&server.name));
    }
    orphans
}
