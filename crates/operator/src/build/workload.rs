//! The StatefulSet, its PodDisruptionBudget and its ServiceAccount.

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ServiceAccount};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mssql_api::validated::Server;

use mssql_api::labels::{self, Labels};
use mssql_api::names;

use super::pod::pod_template;
use super::start::Start;

/// Metadata of an object the database owns.
pub fn owned_meta(server: &Server, name: &str, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(server.namespace.clone()),
        labels: Some(labels::offshoot(server)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// `<db>`: pods `<db>-0…`, restarted only when the operator deletes or evicts them (`OnDelete`).
pub fn statefulset(
    server: &Server,
    owner: &OwnerReference,
    config_secret: &str,
    start: &Start,
    coordinator_image: &str,
) -> StatefulSet {
    let mut meta = owned_meta(server, &server.name, owner);
    if let Some(controller) = server.pod_template.controller.as_ref() {
        let mut with_user: Labels = controller.labels.clone().unwrap_or_default();
        with_user.extend(meta.labels.take().unwrap_or_default());
        meta.labels = Some(with_user);
        meta.annotations.clone_from(&controller.annotations);
    }
    let claims = server.storage.as_ref().map(|storage| {
        vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".to_owned()),
                labels: Some(labels::offshoot(server)),
                ..ObjectMeta::default()
            },
            spec: Some(storage.clone()),
            ..PersistentVolumeClaim::default()
        }]
    });
    StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            replicas: Some(server.replicas),
            service_name: Some(names::governing_service(&server.name)),
            selector: LabelSelector {
                match_labels: Some(labels::selector(&server.name)),
                ..LabelSelector::default()
            },
            // Pods of a group start together; each needs only its own volume to start.
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            template: pod_template(server, config_secret, start, coordinator_image),
            volume_claim_templates: claims,
            // A group's pod goes only once the group has let it go (provisioner::scale): its
            // volume holds nothing the others lack, and a later scale-up seeds a new replica
            // rather than reviving a removed one. Deleting the database keeps volumes by its
            // deletion policy, as before.
            persistent_volume_claim_retention_policy: server.group().map(|_| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Delete".to_owned()),
                    when_deleted: Some("Retain".to_owned()),
                }
            }),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// `<db>-arbiter`: the quorum witness of an even-sized availability group, one pod with the
/// arbiter's resources, node selector and tolerations, and a small volume of its own (KubeDB's
/// shape). It only votes and confirms, so its one container is the coordinator: no server, and
/// nothing to prepare for one.
pub fn arbiter(
    server: &Server,
    owner: &OwnerReference,
    config_secret: &str,
    start: &Start,
    coordinator_image: &str,
) -> Option<StatefulSet> {
    let spec = server.arbiter.as_ref()?;
    let mut sts = statefulset(server, owner, config_secret, start, coordinator_image);
    let name = names::arbiter(&server.name);
    sts.metadata.name = Some(name);
    let mut role = labels::selector(&server.name);
    role.insert(labels::ROLE.to_owned(), labels::ROLE_ARBITER.to_owned());
    let resources = spec.resources.clone().unwrap_or_default();
    let sts_spec = sts.spec.as_mut()?;
    sts_spec.replicas = Some(1);
    sts_spec.selector.match_labels = Some(role.clone());
    if let Some(meta) = sts_spec.template.metadata.as_mut() {
        meta.labels.get_or_insert_with(Labels::new).extend(role);
    }
    if let Some(pod) = sts_spec.template.spec.as_mut() {
        pod.node_selector.clone_from(&spec.node_selector);
        pod.tolerations.clone_from(&spec.tolerations);
        pod.containers
            .retain(|c| c.name == mssql_api::CONTAINER_COORDINATOR);
        pod.init_containers = None;
        let mounted: Vec<&str> = pod
            .containers
            .iter()
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .map(|m| m.name.as_str())
            .collect();
        if let Some(volumes) = pod.volumes.as_mut() {
            volumes.retain(|v| mounted.contains(&v.name.as_str()));
        }
        if let Some(coordinator) = pod.containers.first_mut() {
            let without_storage = |list: &Option<
                std::collections::BTreeMap<
                    String,
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity,
                >,
            >| {
                list.as_ref().map(|l| {
                    l.iter()
                        .filter(|(k, _)| *k != "storage")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
            };
            coordinator.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: without_storage(&resources.requests),
                limits: without_storage(&resources.limits),
                ..Default::default()
            });
        }
    }
    let storage = resources
        .requests
        .as_ref()
        .and_then(|r| r.get("storage"))
        .cloned();
    for claim in sts_spec.volume_claim_templates.iter_mut().flatten() {
        if let (Some(claim_spec), Some(storage)) = (claim.spec.as_mut(), storage.clone()) {
            claim_spec
                .resources
                .get_or_insert_with(Default::default)
                .requests = Some([("storage".to_owned(), storage)].into());
        }
    }
    Some(sts)
}

/// At most one pod of the database down at a time, through evictions (the ops-manager's restarts,
/// node drains).
pub fn pod_disruption_budget(server: &Server, owner: &OwnerReference) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(server, &server.name, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&server.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// The pods' ServiceAccount, unless the user runs them under one of theirs.
pub fn service_account(server: &Server, owner: &OwnerReference) -> Option<ServiceAccount> {
    let name = super::pod::service_account(server);
    (name == server.name).then(|| ServiceAccount {
        metadata: owned_meta(server, &name, owner),
        // Pods talk to no API: no token in them.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}
