//! The `ValidatingWebhookConfiguration` that sends reviews here. In a cluster the Helm chart
//! renders it (a Service as client) and the operator keeps only its CA bundle current. An
//! operator running as a host process (the local plane) registers it itself, by URL.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::PATH;

/// The webhooks' names, as the API server shows them in a refusal (`admission webhook "…"
/// denied the request: …`).
pub const DATABASES: &str = "mssqlservers.validate.mssql-operator.dev";
pub const OPS_REQUESTS: &str = "mssqlserveropsrequests.validate.mssql-operator.dev";

/// The configuration for the operator as a host process, dialled at `url` (`https://host:port`).
pub fn by_url(
    name: &str,
    url: &str,
    ca_bundle: &str,
    namespace_selector: &BTreeMap<String, String>,
) -> ValidatingWebhookConfiguration {
    let client = WebhookClientConfig {
        url: Some(format!("{}{PATH}", url.trim_end_matches('/'))),
        ca_bundle: Some(ByteString(ca_bundle.as_bytes().to_vec())),
        service: None,
    };
    let selector = (!namespace_selector.is_empty()).then(|| LabelSelector {
        match_labels: Some(namespace_selector.clone()),
        match_expressions: None,
    });
    let webhook = |name: &str, group: &str, version: &str, resource: &str, operations: &[&str]| {
        ValidatingWebhook {
            name: name.into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client.clone(),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: selector.clone(),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![group.into()]),
                api_versions: Some(vec![version.into()]),
                operations: Some(operations.iter().map(|o| (*o).into()).collect()),
                resources: Some(vec![resource.into()]),
                scope: Some("Namespaced".into()),
            }]),
            side_effects: "None".into(),
            timeout_seconds: Some(10),
            ..Default::default()
        }
    };
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".into(),
                "mssql-operator".into(),
            )])),
            ..Default::default()
        },
        webhooks: Some(vec![
            webhook(
                DATABASES,
                "kubedb.com",
                "v1alpha2",
                "mssqlservers",
                &["CREATE", "UPDATE", "DELETE"],
            ),
            webhook(
                OPS_REQUESTS,
                "ops.kubedb.com",
                "v1alpha1",
                "mssqlserveropsrequests",
                &["CREATE", "UPDATE"],
            ),
        ]),
    }
}

/// Registers (or updates) the configuration of a host process.
pub async fn register(
    client: &Client,
    configuration: &ValidatingWebhookConfiguration,
) -> kube::Result<()> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let name = configuration.metadata.name.as_deref().unwrap_or_default();
    let params = PatchParams::apply("mssql-operator").force();
    api.patch(name, &params, &Patch::Apply(configuration))
        .await?;
    Ok(())
}

/// Sets the CA bundle of every webhook of the (chart's) configuration `name`. Returns whether
/// anything changed. The patch carries the resourceVersion it was computed from, so a concurrent
/// change (a `helm upgrade`) makes it fail with a conflict rather than be overwritten.
pub async fn keep_ca_bundle(client: &Client, name: &str, ca_bundle: &str) -> kube::Result<bool> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(name).await?;
    let wanted = ByteString(ca_bundle.as_bytes().to_vec());
    let mut webhooks = current.webhooks.unwrap_or_default();
    if webhooks
        .iter()
        .all(|w| w.client_config.ca_bundle.as_ref() == Some(&wanted))
    {
        return Ok(false);
    }
    for webhook in &mut webhooks {
        webhook.client_config.ca_bundle = Some(wanted.clone());
    }
    let patch = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "webhooks": webhooks,
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(true)
}
