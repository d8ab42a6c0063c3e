//! The StatefulSet, its PodDisruptionBudget and its ServiceAccount.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ServiceAccount};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mssql_api::validated::Server;

use super::labels::{self, Labels};
use super::pod::pod_template;
use super::services::governing_service;

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
    restart_hash: &str,
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
            service_name: Some(governing_service(&server.name)),
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
            template: pod_template(server, config_secret, restart_hash),
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
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
