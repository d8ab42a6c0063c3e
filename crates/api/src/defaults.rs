//! Defaulting, as KubeDB's mutating webhook does it (`MSSQLServer.SetDefaults`). This operator has
//! no webhook: the same function runs in `check` and in the operator on every object it reads, and
//! it is idempotent, so applying it twice changes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSecurityContext, ResourceRequirements, SeccompProfile,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Value, json};

use crate::mssql::{
    ArbiterSpec, AvailabilityGroupSpec, CertificateSpec, ConfigurationSpec, HealthCheckSpec,
    LeaderElectionConfig, PodSpec, PodTemplateSpec, SecretReference, TlsConfig, X509Subject,
};
use crate::{
    ALIAS_CLIENT, ALIAS_ENDPOINT, ALIAS_SERVER, CONTAINER_COORDINATOR, CONTAINER_INIT,
    CONTAINER_MSSQL, DELETION_DELETE, MssqlServer, MssqlServerVersion, STORAGE_DURABLE, names,
    quantity,
};

/// The Prometheus exporter's port when monitoring is on.
pub const EXPORTER_PORT: i64 = 9399;

/// Fills every default. Without a catalog entry for `spec.version`, the uid-dependent security
/// contexts are left alone (validation reports the unknown version).
pub fn default_mssqlserver(db: &mut MssqlServer, version: Option<&MssqlServerVersion>) {
    let name = db.metadata.name.clone().unwrap_or_default();
    let standalone = db.is_standalone();
    let availability_group = db.is_availability_group();
    let spec = &mut db.spec;

    // KubeDB treats an empty string like an absent value.
    default_string(&mut spec.storage_type, STORAGE_DURABLE);
    default_string(&mut spec.deletion_policy, DELETION_DELETE);
    spec.auth_secret.get_or_insert_with(|| SecretReference {
        kind: Some("Secret".to_owned()),
        ..SecretReference::default()
    });
    if standalone {
        spec.replicas.get_or_insert(1);
    }
    if let Some(topology) = spec.topology.as_mut() {
        let group = topology
            .availability_group
            .get_or_insert_with(AvailabilityGroupSpec::default);
        default_availability_group(group);
    }
    if availability_group
        && spec
            .replicas
            .is_some_and(crate::validated::group_has_arbiter)
    {
        spec.arbiter.get_or_insert_with(default_arbiter);
    }
    if let Some(secret) = spec.config_secret.take() {
        spec.configuration
            .get_or_insert_with(ConfigurationSpec::default)
            .secret_name
            .get_or_insert(secret.name);
    }
    default_health_checker(
        spec.health_checker
            .get_or_insert_with(HealthCheckSpec::default),
    );
    if let Some(monitor) = spec.monitor.as_mut() {
        default_monitor(monitor);
    }
    if let Some(tls) = spec.tls.as_mut() {
        default_tls(tls, &name, availability_group);
    }

    let template = spec
        .pod_template
        .get_or_insert_with(PodTemplateSpec::default);
    let pod = template.spec.get_or_insert_with(PodSpec::default);
    default_containers(pod, !standalone, availability_group);
    if let Some(version) = version {
        default_security_contexts(pod, version.run_as_user());
    }
}

fn default_string(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_owned());
    }
}

/// KubeDB's webhook values when the user gave no leader election block at all; the CRD's
/// per-field defaults (a shorter period) when the user gave a partial one.
fn default_availability_group(group: &mut AvailabilityGroupSpec) {
    group
        .secondary_access_mode
        .get_or_insert_with(|| "Passive".to_owned());
    let (election, period) = match group.leader_election.as_mut() {
        Some(election) => (election, "100ms"),
        None => (
            group
                .leader_election
                .insert(LeaderElectionConfig::default()),
            "300ms",
        ),
    };
    election.period.get_or_insert_with(|| period.to_owned());
    election.election_tick.get_or_insert(10);
    election.heartbeat_tick.get_or_insert(1);
    election
        .transfer_leadership_interval
        .get_or_insert_with(|| "1s".to_owned());
    election
        .transfer_leadership_timeout
        .get_or_insert_with(|| "1m0s".to_owned());
}

fn default_arbiter() -> ArbiterSpec {
    ArbiterSpec {
        resources: Some(resources(
            &[("storage", "2Gi"), ("cpu", "200m"), ("memory", "256Mi")],
            &[("memory", "256Mi")],
        )),
        ..ArbiterSpec::default()
    }
}

fn default_health_checker(checker: &mut HealthCheckSpec) {
    checker.period_seconds.get_or_insert(10);
    checker.timeout_seconds.get_or_insert(10);
    checker.failure_threshold.get_or_insert(1);
}

/// `monitor.prometheus.exporter.port`, when monitoring is asked for.
fn default_monitor(monitor: &mut Value) {
    let Some(monitor) = monitor.as_object_mut() else {
        return;
    };
    let prometheus = monitor.entry("prometheus").or_insert_with(|| json!({}));
    if let Some(prometheus) = prometheus.as_object_mut() {
        let exporter = prometheus.entry("exporter").or_insert_with(|| json!({}));
        if let Some(exporter) = exporter.as_object_mut() {
            exporter
                .entry("port")
                .or_insert_with(|| json!(EXPORTER_PORT));
        }
    }
}

/// The certificate aliases a topology needs, in KubeDB's order.
pub fn required_aliases(availability_group: bool) -> &'static [&'static str] {
    if availability_group {
        &[ALIAS_SERVER, ALIAS_CLIENT, ALIAS_ENDPOINT]
    } else {
        &[ALIAS_SERVER, ALIAS_CLIENT]
    }
}

/// `SetTLSDefaults`: only with an issuer. User entries keep their order and their values; missing
/// aliases are appended; each entry gets its default secret name and subject where it has none.
pub fn default_tls(tls: &mut TlsConfig, db: &str, availability_group: bool) {
    if tls.issuer_ref.is_none() {
        return;
    }
    tls.client_tls.get_or_insert(false);
    let certificates = tls.certificates.get_or_insert_with(Vec::new);
    for alias in required_aliases(availability_group) {
        if !certificates.iter().any(|c| c.alias == *alias) {
            certificates.push(CertificateSpec {
                alias: (*alias).to_owned(),
                ..CertificateSpec::default()
            });
        }
    }
    for certificate in certificates.iter_mut() {
        default_certificate(certificate, db);
    }
}

fn default_certificate(certificate: &mut CertificateSpec, db: &str) {
    let alias = certificate.alias.clone();
    certificate
        .secret_name
        .get_or_insert_with(|| names::certificate(db, &alias));
    let subject = certificate.subject.get_or_insert_with(X509Subject::default);
    fill_if_empty(&mut subject.organizations, "kubedb");
    fill_if_empty(&mut subject.organizational_units, &alias);
}

fn fill_if_empty(list: &mut Option<Vec<String>>, value: &str) {
    if list.as_ref().is_none_or(Vec::is_empty) {
        *list = Some(vec![value.to_owned()]);
    }
}

/// Makes sure the containers KubeDB manages exist in the template, and gives them resources.
fn default_containers(pod: &mut PodSpec, cluster: bool, availability_group: bool) {
    let mssql = ensure_container(pod.containers.get_or_insert_with(Vec::new), CONTAINER_MSSQL);
    default_resources(
        mssql
            .resources
            .get_or_insert_with(ResourceRequirements::default),
        &resources(&[("cpu", "1.5"), ("memory", "2Gi")], &[("memory", "4Gi")]),
    );

    let init = ensure_container(
        pod.init_containers.get_or_insert_with(Vec::new),
        CONTAINER_INIT,
    );
    default_resources_if_unset(
        &mut init.resources,
        resources(
            &[("cpu", "200m"), ("memory", "256Mi")],
            &[("memory", "512Mi")],
        ),
    );

    if cluster {
        let containers = pod.containers.get_or_insert_with(Vec::new);
        let coordinator = ensure_container(containers, CONTAINER_COORDINATOR);
        if availability_group {
            default_resources_if_unset(
                &mut coordinator.resources,
                resources(
                    &[("cpu", "200m"), ("memory", "256Mi")],
                    &[("memory", "256Mi")],
                ),
            );
        }
    }
}

fn ensure_container<'a>(containers: &'a mut Vec<Container>, name: &str) -> &'a mut Container {
    let index = match containers.iter().position(|c| c.name == name) {
        Some(index) => index,
        None => {
            containers.push(Container {
                name: name.to_owned(),
                ..Container::default()
            });
            containers.len() - 1
        }
    };
    &mut containers[index]
}

fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
    let list = |pairs: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect()
    };
    ResourceRequirements {
        requests: Some(list(requests)),
        limits: Some(list(limits)),
        ..ResourceRequirements::default()
    }
}

/// KubeDB's `SetDefaultResourceLimits`, per resource of the defaults:
/// - limit: the user's limit if above their request, else their request, else their limit, else
///   the default limit;
/// - request: the user's request, else their own limit, else the default request;
/// - finally no limit stays below its request.
pub fn default_resources(user: &mut ResourceRequirements, defaults: &ResourceRequirements) {
    let original_limits = user.limits.clone().unwrap_or_default();
    let requests = user.requests.get_or_insert_with(BTreeMap::new);
    let limits = user.limits.get_or_insert_with(BTreeMap::new);

    for (name, default) in defaults.limits.iter().flatten() {
        let limit = match (requests.get(name), original_limits.get(name)) {
            (Some(request), Some(limit)) if quantity::greater(limit, request) => limit.clone(),
            (Some(request), _) => request.clone(),
            (None, Some(limit)) => limit.clone(),
            (None, None) => default.clone(),
        };
        limits.insert(name.clone(), limit);
    }
    for (name, default) in defaults.requests.iter().flatten() {
        if !requests.contains_key(name) {
            let request = original_limits.get(name).unwrap_or(default).clone();
            requests.insert(name.clone(), request);
        }
    }
    for (name, limit) in limits.iter_mut() {
        if let Some(request) = requests.get(name)
            && quantity::greater(request, limit)
        {
            *limit = request.clone();
        }
    }
}

/// The side containers get their defaults only when the user set no resources at all.
fn default_resources_if_unset(
    user: &mut Option<ResourceRequirements>,
    defaults: ResourceRequirements,
) {
    let unset = user.as_ref().is_none_or(|r| {
        r.requests.as_ref().is_none_or(BTreeMap::is_empty)
            && r.limits.as_ref().is_none_or(BTreeMap::is_empty)
    });
    if unset {
        *user = Some(defaults);
    }
}

/// Non-root as the catalog's uid, no privilege escalation, no capabilities but the one SQL Server
/// needs to bind its port, the runtime's seccomp profile; the pod's `fsGroup` lets that uid own
/// the data volume. Only fields the user left empty are filled.
fn default_security_contexts(pod: &mut PodSpec, uid: i64) {
    for container in pod
        .containers
        .iter_mut()
        .flatten()
        .chain(pod.init_containers.iter_mut().flatten())
    {
        if [CONTAINER_MSSQL, CONTAINER_INIT, CONTAINER_COORDINATOR]
            .contains(&container.name.as_str())
        {
            let add =
                (container.name == CONTAINER_MSSQL).then(|| vec!["NET_BIND_SERVICE".to_owned()]);
            default_container_security(
                container
                    .security_context
                    .get_or_insert_with(SecurityContext::default),
                uid,
                add,
            );
        }
    }
    pod.security_context
        .get_or_insert_with(PodSecurityContext::default)
        .fs_group
        .get_or_insert(uid);
}

fn default_container_security(context: &mut SecurityContext, uid: i64, add: Option<Vec<String>>) {
    context.run_as_user.get_or_insert(uid);
    context.run_as_group.get_or_insert(uid);
    context.run_as_non_root.get_or_insert(true);
    context.allow_privilege_escalation.get_or_insert(false);
    context.capabilities.get_or_insert_with(|| Capabilities {
        drop: Some(vec!["ALL".to_owned()]),
        add,
    });
    context
        .seccomp_profile
        .get_or_insert_with(|| SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        });
}
