//! The typed set of a database's objects: everything the provisioner applies, built in one pure
//! call, and the objects an earlier spec needed that this one does not (to delete).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mssql_api::names;
use mssql_api::validated::Server;
use mssql_certs::cert_manager::Certificate;

use super::start::Start;
use super::{certificates, secrets, services, workload};

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
    /// `None` until cert-manager has issued every TLS secret: the pods' template records what
    /// they start with, so it cannot be written before.
    pub workload: Option<Workload>,
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
    /// The generated password, used only if the auth Secret does not exist yet.
    pub password: &'a str,
}

/// Builds every object of `server`.
pub fn resources(server: &Server, inputs: &Inputs) -> Resources {
    let owner = inputs.owner;
    let config_secret = secrets::config_secret(server, owner, inputs.mssql_conf);
    let config_name = names::config_secret(&server.name);
    Resources {
        auth_secret: (!server.auth_secret_given)
            .then(|| secrets::auth_secret(server, owner, inputs.password)),
        certificates: certificates::certificates(server, owner),
        config_secret,
        service_account: workload::service_account(server, owner),
        services: services::services(server, owner),
        disruption_budget: workload::pod_disruption_budget(server, owner),
        workload: inputs.start.map(|start| Workload {
            statefulset: workload::statefulset(server, owner, &config_name, start),
            arbiter: workload::arbiter(server, owner, &config_name, start),
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
