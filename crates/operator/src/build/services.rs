//! Services: `<db>` (the primary), `<db>-pods` (headless, per-pod DNS) and, for an availability
//! group, `<db>-secondary`. The user's `serviceTemplates` adjust them.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mssql_api::labels::{self, ROLE, ROLE_PRIMARY, ROLE_SECONDARY};
use mssql_api::names;
use mssql_api::validated::{Server, Topology};
use serde_json::Value;

use super::pod::{PORT_DB, PORT_MIRROR, PORT_NAME_DB, PORT_NAME_MIRROR};
use super::workload::owned_meta;

fn port(name: &str, number: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(target.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// All services of the database.
pub fn services(server: &Server, owner: &OwnerReference) -> Vec<Service> {
    let cluster = server.topology.is_cluster();
    let role_selector = |role: &str| {
        let mut selector = labels::selector(&server.name);
        selector.insert(ROLE.to_owned(), role.to_owned());
        selector
    };
    // A standalone pod has no coordinator to give it a role: the primary service selects it as is.
    let primary_selector = if cluster {
        role_selector(ROLE_PRIMARY)
    } else {
        labels::selector(&server.name)
    };
    let mut services = vec![service(
        server,
        owner,
        "primary",
        &server.name,
        ServiceSpec {
            selector: Some(primary_selector),
            ports: Some(vec![port("primary", PORT_DB, PORT_NAME_DB)]),
            ..ServiceSpec::default()
        },
    )];

    let mut pod_ports = vec![port(PORT_NAME_DB, PORT_DB, PORT_NAME_DB)];
    if cluster {
        pod_ports.push(port(PORT_NAME_MIRROR, PORT_MIRROR, PORT_NAME_MIRROR));
    }
    services.push(service(
        server,
        owner,
        "",
        &names::governing_service(&server.name),
        ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            // Pods must resolve each other while they start, before they are Ready.
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector(&server.name)),
            ports: Some(pod_ports),
            ..ServiceSpec::default()
        },
    ));

    if matches!(server.topology, Topology::AvailabilityGroup(_)) {
        services.push(service(
            server,
            owner,
            "secondary",
            &names::secondary_service(&server.name),
            ServiceSpec {
                selector: Some(role_selector(ROLE_SECONDARY)),
                ports: Some(vec![port("secondary", PORT_DB, PORT_NAME_DB)]),
                ..ServiceSpec::default()
            },
        ));
    }
    services
}

/// One service, with the user's template of `alias` applied: its labels and annotations, and its
/// spec fields over ours, except the selector and the pods' port numbers. A template port with the
/// name of one of ours sets that port's `port` and `nodePort`.
fn service(
    server: &Server,
    owner: &OwnerReference,
    alias: &str,
    name: &str,
    ours: ServiceSpec,
) -> Service {
    let mut meta = owned_meta(server, name, owner);
    let template = server
        .service_templates
        .iter()
        .find(|t| !alias.is_empty() && t.alias == alias);
    let mut spec = ours;
    if let Some(template) = template {
        if let Some(user) = template.metadata.as_ref() {
            let mut labels = user.labels.clone().unwrap_or_default();
            labels.extend(meta.labels.take().unwrap_or_default());
            meta.labels = Some(labels);
            meta.annotations.clone_from(&user.annotations);
        }
        if let Some(user) = template.spec.as_ref() {
            spec = merge_spec(spec, user);
        }
    }
    Service {
        metadata: meta,
        spec: Some(spec),
        status: None,
    }
}

fn merge_spec(ours: ServiceSpec, user: &ServiceSpec) -> ServiceSpec {
    let mut merged = serde_json::to_value(&ours).unwrap_or(Value::Null);
    let user_value = serde_json::to_value(user).unwrap_or(Value::Null);
    if let (Some(merged), Some(user)) = (merged.as_object_mut(), user_value.as_object()) {
        for (key, value) in user {
            if ![
                "selector",
                "ports",
                "clusterIP",
                "clusterIPs",
                "publishNotReadyAddresses",
            ]
            .contains(&key.as_str())
            {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    // Both sides are ServiceSpecs, so the merge always parses; keep ours if it ever did not.
    let mut spec: ServiceSpec = serde_json::from_value(merged).unwrap_or(ours);
    for user_port in user.ports.iter().flatten() {
        if let Some(port) = spec
            .ports
            .iter_mut()
            .flatten()
            .find(|p| p.name.is_some() && p.name == user_port.name)
        {
            port.port = user_port.port;
            port.node_port = user_port.node_port;
        }
    }
    spec
}
