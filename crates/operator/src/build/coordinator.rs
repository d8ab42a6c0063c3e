//! What an availability group's coordinator needs (docs/coordinator.md): its container in every
//! pod, the Lease it holds, the Secrets of the endpoint's login and of the master key, and a Role
//! that allows exactly what it does, by name.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, Container, ContainerPort, DownwardAPIProjection, DownwardAPIVolumeFile,
    EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector, ProjectedVolumeSource, Secret,
    SecretKeySelector, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mssql_api::names;
use mssql_api::validated::{Group, Server};

use super::pod::{ENDPOINT_CERT_DIR, VOLUME_ENDPOINT, service_account};
use super::workload::owned_meta;
use crate::coordinate::ENDPOINT_SECRET_DIR;

pub const PORT_NAME: &str = "coordinator";
/// KubeDB's `coordinator` port.
pub const PORT: i32 = 2380;
/// The API token, only in the coordinator's container: the server's has none.
const VOLUME_TOKEN: &str = "coordinator-api";
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Environment from a Secret's key.
fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The `mssql-coordinator` container: this operator's image running `coordinator`, with the
/// endpoint certificate's Secret (`endpoint_source`, the volume the init container copies from),
/// the server's endpoint volume (for the one-time PFX) and an API token of its own. `user` is
/// the user's container of that name (resources, security context), kept.
pub fn container(
    server: &Server,
    group: &Group,
    image: &str,
    endpoint_source: &str,
    mut user: Container,
) -> Container {
    // Nothing here depends on `spec.replicas`: the coordinators read it, so scaling restarts no
    // pod.
    let mut args = vec![
        "coordinator".to_owned(),
        format!("--secondary-access-mode={}", group.secondary_access_mode),
    ];
    if !group.databases.is_empty() {
        args.push(format!("--databases={}", group.databases.join(",")));
    }
    user.image = Some(image.to_owned());
    user.command = None;
    user.args = Some(args);
    let mut env = vec![
        EnvVar {
            name: "DB_NAME".to_owned(),
            value: Some(server.name.clone()),
            value_from: None,
        },
        from_field("POD_NAME", "metadata.name"),
        from_field("POD_UID", "metadata.uid"),
        from_field("POD_NAMESPACE", "metadata.namespace"),
        from_secret("MSSQL_SA_PASSWORD", &server.auth_secret, "password"),
        from_secret("DBM_LOGIN_PASSWORD", &group.login_secret.name, "password"),
        from_secret(
            "MASTER_KEY_PASSWORD",
            &group.master_key_secret.name,
            "password",
        ),
    ];
    env.extend(user.env.take().unwrap_or_default());
    user.env = Some(env);
    user.ports = Some(vec![ContainerPort {
        name: Some(PORT_NAME.to_owned()),
        container_port: PORT,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }]);
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    let mut mounts = vec![
        mount(endpoint_source, ENDPOINT_SECRET_DIR, true),
        mount(VOLUME_ENDPOINT, ENDPOINT_CERT_DIR, false),
        mount(VOLUME_TOKEN, TOKEN_DIR, true),
    ];
    mounts.extend(user.volume_mounts.take().unwrap_or_default());
    user.volume_mounts = Some(mounts);
    user
}

/// The API token the coordinator's container mounts where in-cluster clients look for it: what
/// an automounted service account token holds, seen by this container only.
pub fn token_volume() -> Volume {
    Volume {
        name: VOLUME_TOKEN.to_owned(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".to_owned(),
                        expiration_seconds: Some(3607),
                        audience: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".to_owned(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".to_owned(),
                            path: "ca.crt".to_owned(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".to_owned(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".to_owned(),
                                api_version: None,
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

/// `kubernetes.io/basic-auth` with only a `password`: KubeDB's `<db>-dbm-login` and
/// `<db>-master-key`.
fn password_secret(server: &Server, owner: &OwnerReference, name: &str, password: &str) -> Secret {
    Secret {
        metadata: owned_meta(server, name, owner),
        type_: Some("kubernetes.io/basic-auth".to_owned()),
        data: Some(BTreeMap::from([(
            "password".to_owned(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The generated Secrets of the group (those the user did not name), each with its password.
pub fn secrets(
    server: &Server,
    group: &Group,
    owner: &OwnerReference,
    login_password: &str,
    master_key_password: &str,
) -> Vec<Secret> {
    [
        (&group.login_secret, login_password),
        (&group.master_key_secret, master_key_password),
    ]
    .into_iter()
    .filter(|(secret, _)| !secret.given)
    .map(|(secret, password)| password_secret(server, owner, &secret.name, password))
    .collect()
}

/// The Lease the coordinators hold: created empty, then theirs alone to write.
pub fn lease(server: &Server, owner: &OwnerReference) -> Lease {
    Lease {
        metadata: owned_meta(server, &names::coordinator_lease(&server.name), owner),
        spec: None,
    }
}

fn rule(group: &str, resource: &str, verbs: &[&str], names: Vec<String>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        resource_names: Some(names),
        non_resource_urls: None,
    }
}

/// What the coordinator does, by name where Kubernetes allows: read and update its Lease, read
/// and label the group's pods (the arbiter's too: it reads its own), read its endpoint
/// certificate's Secret and its database (the Events' subject), and publish Events (a create
/// cannot be limited by name).
pub fn role(server: &Server, owner: &OwnerReference) -> Role {
    let mut pods = server.pod_names();
    if server.arbiter.is_some() {
        pods.push(format!("{}-0", names::arbiter(&server.name)));
    }
    let endpoint_secret = server
        .certificate(mssql_api::ALIAS_ENDPOINT)
        .map(|c| vec![c.secret_name.clone()])
        .unwrap_or_default();
    Role {
        metadata: owned_meta(server, &names::coordinator_lease(&server.name), owner),
        rules: Some(vec![
            rule(
                "coordination.k8s.io",
                "leases",
                &["get", "update"],
                vec![names::coordinator_lease(&server.name)],
            ),
            rule("", "pods", &["get", "patch"], pods),
            // Its own endpoint certificate, already in its pod: read when a request asks every
            // replica to trust a new one before the kubelet updates the pod's copy.
            rule("", "secrets", &["get"], endpoint_secret),
            rule(
                "kubedb.com",
                "mssqlservers",
                &["get"],
                vec![server.name.clone()],
            ),
            PolicyRule {
                api_groups: Some(vec!["events.k8s.io".to_owned()]),
                resources: Some(vec!["events".to_owned()]),
                verbs: vec!["create".to_owned(), "patch".to_owned()],
                resource_names: None,
                non_resource_urls: None,
            },
        ]),
    }
}

/// The Role, for the pods' ServiceAccount.
pub fn role_binding(server: &Server, owner: &OwnerReference) -> RoleBinding {
    let name = names::coordinator_lease(&server.name);
    RoleBinding {
        metadata: owned_meta(server, &name, owner),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: service_account(server),
            namespace: Some(server.namespace.clone()),
            api_group: None,
        }]),
    }
}
