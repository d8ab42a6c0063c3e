//! The Kubernetes client the operator runs with.

use k8s_openapi::NamespaceResourceScope;
use kube::{Api, Client, Config, Resource};

/// A client for the current kubeconfig or in-cluster config, without the client's own retries:
/// a refused eviction (429, a PodDisruptionBudget saying "not now") must come back to the
/// ops-manager at once, to be recorded and retried as a visible step, not be retried for minutes
/// inside one HTTP call. Every controller already retries failed reconciles.
pub async fn client() -> Result<Client, kube::Error> {
    let mut config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    Client::try_from(config)
}

/// Objects of kind `K` in `namespace`, or in every namespace (`None`): where a controller watches.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}
