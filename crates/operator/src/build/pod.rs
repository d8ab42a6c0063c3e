//! The pod template: what runs the real `mcr.microsoft.com/mssql/server` image.
//!
//! SQL Server reads its key and certificate once, at start-up, and rewrites `mssql.conf` while it
//! runs. So an init container (the server image itself, as the SQL Server uid) copies both into
//! place: `mssql.conf` into the data volume, the TLS files into an in-memory volume with mode 0400
//! (readable by that uid only). A new certificate therefore takes effect on the next pod start,
//! which the ops-manager drives one pod at a time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, KeyToPath,
    Lifecycle, LifecycleHandler, PodSpec, PodTemplateSpec, Probe, SecretKeySelector,
    SecretVolumeSource, SleepAction, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mssql_api::validated::Server;
use mssql_api::{
    ALIAS_CLIENT, ALIAS_ENDPOINT, ALIAS_SERVER, CONTAINER_COORDINATOR, CONTAINER_INIT,
    CONTAINER_MSSQL,
};
use serde_json::Value;

use mssql_api::annotations;
use mssql_api::labels::{self, Labels};

use super::config::TLS_DIR;
use super::coordinator;
use super::start::Start;

pub const PORT_DB: i32 = 1433;
pub const PORT_MIRROR: i32 = 5022;
pub const PORT_NAME_DB: &str = "db";
pub const PORT_NAME_MIRROR: &str = "mirror";

pub const DATA_DIR: &str = "/var/opt/mssql";
/// How long an availability group's server waits, once its pod is being deleted, before it is
/// asked to stop: its coordinator's handover takes about a second.
const HANDOVER_SECONDS: i64 = 3;
pub const ENDPOINT_CERT_DIR: &str = "/var/opt/mssql/endpoint-cert";
const CONFIG_SOURCE_DIR: &str = "/var/opt/mssql-source/config";
const TLS_SOURCE_DIR: &str = "/var/opt/mssql-source/tls";

/// Volume names. `data`, `config`, `tls` and `endpoint-cert` are KubeDB's reserved names.
const VOLUME_DATA: &str = "data";
const VOLUME_CONFIG: &str = "config";
const VOLUME_TLS: &str = "tls";
pub(super) const VOLUME_ENDPOINT: &str = "endpoint-cert";

/// The name of the volume holding one alias's Secret, seen only by the init container.
fn source_volume(alias: &str) -> String {
    format!("{alias}-cert-source")
}

/// The init container's script. Files land owned by the SQL Server uid (the container runs as
/// it); keys get 0400.
fn init_script(server: &Server) -> String {
    let mut script = String::from("set -eu\n");
    script.push_str(&format!(
        "install -m 0600 {CONFIG_SOURCE_DIR}/mssql.conf {DATA_DIR}/mssql.conf\n"
    ));
    let copy = |script: &mut String, alias: &str, dir: &str, crt: &str, key: &str| {
        let source = format!("{TLS_SOURCE_DIR}/{alias}");
        script.push_str(&format!("install -m 0400 {source}/tls.crt {dir}/{crt}\n"));
        script.push_str(&format!("install -m 0400 {source}/tls.key {dir}/{key}\n"));
    };
    copy(
        &mut script,
        ALIAS_SERVER,
        TLS_DIR,
        "server.crt",
        "server.key",
    );
    script.push_str(&format!(
        "install -m 0400 {TLS_SOURCE_DIR}/{ALIAS_SERVER}/ca.crt {TLS_DIR}/ca.crt\n"
    ));
    copy(
        &mut script,
        ALIAS_CLIENT,
        TLS_DIR,
        "client.crt",
        "client.key",
    );
    if server.certificate(ALIAS_ENDPOINT).is_some() {
        copy(
            &mut script,
            ALIAS_ENDPOINT,
            ENDPOINT_CERT_DIR,
            "tls.crt",
            "tls.key",
        );
    }
    script
}

/// Ready when SQL Server answers a query as `sa` (trusting its own certificate on localhost).
const READINESS_SCRIPT: &str = r#"for sqlcmd in /opt/mssql-tools18/bin/sqlcmd /opt/mssql-tools/bin/sqlcmd; do
  [ -x "$sqlcmd" ] && exec "$sqlcmd" -S localhost -U sa -P "$MSSQL_SA_PASSWORD" -C -l 5 -b -Q "SELECT 1"
done
exit 1"#;

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn memory_volume(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A Secret volume readable by the pod's `fsGroup` (the SQL Server gid) and nobody else.
fn secret_volume(name: String, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name,
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: Some(0o440),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).to_owned(),
                        path: (*k).to_owned(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The user's container of `name` from the pod template, or an empty one.
fn user_container(server: &Server, name: &str, init: bool) -> Container {
    let pod = server.pod_template.spec.as_ref();
    let list = pod.and_then(|p| {
        if init {
            p.init_containers.as_ref()
        } else {
            p.containers.as_ref()
        }
    });
    list.and_then(|l| l.iter().find(|c| c.name == name))
        .cloned()
        .unwrap_or_else(|| Container {
            name: name.to_owned(),
            ..Container::default()
        })
}

fn init_container(server: &Server) -> Container {
    let mut container = user_container(server, CONTAINER_INIT, true);
    container.image = Some(server.init_image.clone());
    container.command = Some(vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        init_script(server),
    ]);
    let mut mounts = vec![
        mount(VOLUME_DATA, DATA_DIR, false),
        mount(VOLUME_CONFIG, CONFIG_SOURCE_DIR, true),
        mount(VOLUME_TLS, TLS_DIR, false),
    ];
    for certificate in &server.tls.certificates {
        let alias = &certificate.alias;
        mounts.push(mount(
            &source_volume(alias),
            &format!("{TLS_SOURCE_DIR}/{alias}"),
            true,
        ));
    }
    if server.certificate(ALIAS_ENDPOINT).is_some() {
        mounts.push(mount(VOLUME_ENDPOINT, ENDPOINT_CERT_DIR, false));
    }
    container.volume_mounts = Some(mounts);
    container
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn mssql_container(server: &Server) -> Container {
    let mut container = user_container(server, CONTAINER_MSSQL, false);
    container.image = Some(server.server_image.clone());
    let mut ports = vec![port(PORT_NAME_DB, PORT_DB)];
    if server.topology.is_cluster() {
        ports.push(port(PORT_NAME_MIRROR, PORT_MIRROR));
    }
    container.ports = Some(ports);

    let mut env_vars = container.env.take().unwrap_or_default();
    env_vars.push(EnvVar {
        name: "MSSQL_SA_PASSWORD".to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: server.auth_secret.clone(),
                key: "password".to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    });
    if server.topology.is_cluster() {
        env_vars.push(env("MSSQL_ENABLE_HADR", "1"));
    }
    container.env = Some(env_vars);
    if server.group().is_some() {
        // The server outlives its coordinator's SIGTERM by a few seconds, so a primary pod being
        // deleted is taken offline and hands its role over before its server stops.
        container.lifecycle.get_or_insert_with(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: HANDOVER_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        });
    }

    let mut mounts = vec![
        mount(VOLUME_DATA, DATA_DIR, false),
        mount(VOLUME_TLS, TLS_DIR, true),
    ];
    if server.certificate(ALIAS_ENDPOINT).is_some() {
        mounts.push(mount(VOLUME_ENDPOINT, ENDPOINT_CERT_DIR, true));
    }
    mounts.extend(container.volume_mounts.take().unwrap_or_default());
    container.volume_mounts = Some(mounts);

    let tcp = || TCPSocketAction {
        port: IntOrString::String(PORT_NAME_DB.to_owned()),
        host: None,
    };
    container.startup_probe.get_or_insert_with(|| Probe {
        tcp_socket: Some(tcp()),
        period_seconds: Some(5),
        failure_threshold: Some(60),
        ..Probe::default()
    });
    container.liveness_probe.get_or_insert_with(|| Probe {
        tcp_socket: Some(tcp()),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    });
    container.readiness_probe.get_or_insert_with(|| Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                READINESS_SCRIPT.to_owned(),
            ]),
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    });
    container
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn volumes(server: &Server, config_secret: &str) -> Vec<Volume> {
    let mut volumes = vec![
        secret_volume(VOLUME_CONFIG.to_owned(), config_secret, &["mssql.conf"]),
        memory_volume(VOLUME_TLS),
    ];
    for certificate in &server.tls.certificates {
        volumes.push(secret_volume(
            source_volume(&certificate.alias),
            &certificate.secret_name,
            &["ca.crt", "tls.crt", "tls.key"],
        ));
    }
    if server.certificate(ALIAS_ENDPOINT).is_some() {
        volumes.push(memory_volume(VOLUME_ENDPOINT));
    }
    if server.storage.is_none() {
        volumes.push(Volume {
            name: VOLUME_DATA.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    volumes
}

/// The service account pods run as: the user's, else `<db>`.
pub fn service_account(server: &Server) -> String {
    server
        .pod_template
        .spec
        .as_ref()
        .and_then(|p| p.service_account_name.clone())
        .unwrap_or_else(|| server.name.clone())
}

/// The pod template of the StatefulSet. `start` identifies the certificates and config the pods
/// must run with; an availability group's pods also run `coordinator_image` as their
/// `mssql-coordinator`.
pub fn pod_template(
    server: &Server,
    config_secret: &str,
    start: &Start,
    coordinator_image: &str,
) -> PodTemplateSpec {
    let user = server.pod_template.spec.clone().unwrap_or_default();
    let user_meta = server.pod_template.metadata.clone().unwrap_or_default();

    // Start from the user's extra PodSpec fields (dnsPolicy, topologySpreadConstraints, …).
    // Validation made sure each is a PodSpec field of the right type; KubeDB's podPlacementPolicy
    // (only `default` is accepted) drops out here.
    let extra: serde_json::Map<String, Value> = user.extra.into_iter().collect();
    let mut spec: PodSpec =
        serde_json::from_value(Value::Object(extra)).expect("validated: podTemplate.spec");

    let ours = [CONTAINER_MSSQL, CONTAINER_INIT, CONTAINER_COORDINATOR];
    let others = |list: Option<Vec<Container>>| -> Vec<Container> {
        list.unwrap_or_default()
            .into_iter()
            .filter(|c| !ours.contains(&c.name.as_str()))
            .collect()
    };
    let mut containers = vec![mssql_container(server)];
    let mut all_volumes = volumes(server, config_secret);
    if let Some(group) = server.group() {
        containers.push(coordinator::container(
            server,
            group,
            coordinator_image,
            &source_volume(ALIAS_ENDPOINT),
            user_container(server, CONTAINER_COORDINATOR, false),
        ));
        all_volumes.push(coordinator::token_volume());
    }
    containers.extend(others(user.containers));
    let mut init_containers = vec![init_container(server)];
    init_containers.extend(others(user.init_containers));
    all_volumes.extend(user.volumes.unwrap_or_default());

    spec.containers = containers;
    spec.init_containers = Some(init_containers);
    spec.volumes = Some(all_volumes);
    spec.service_account_name = Some(service_account(server));
    spec.node_selector = user.node_selector;
    spec.tolerations = user.tolerations;
    spec.affinity = user.affinity;
    spec.security_context = user.security_context;
    spec.image_pull_secrets = user.image_pull_secrets;
    spec.priority_class_name = user.priority_class_name;

    let mut pod_labels: Labels = user_meta.labels.unwrap_or_default();
    pod_labels.extend(labels::offshoot(server));
    let mut annotations: BTreeMap<String, String> = user_meta.annotations.unwrap_or_default();
    annotations.insert(
        annotations::RESTART_HASH.to_owned(),
        start.restart_hash.clone(),
    );
    if !start.certificates.is_empty() {
        annotations.insert(
            annotations::CERTIFICATES.to_owned(),
            start.certificates_annotation(),
        );
    }

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}
