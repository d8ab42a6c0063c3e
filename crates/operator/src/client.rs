//! The Kubernetes client the operator runs with.

use kube::{Client, Config};

/// A client for the current kubeconfig or in-cluster config, without the client's own retries:
/// a refused eviction (429, a PodDisruptionBudget saying "not now") must come back to the
/// ops-manager at once, to be recorded and retried as a visible step, not be retried for minutes
/// inside one HTTP call. Every controller already retries failed reconciles.
pub async fn client() -> Result<Client, kube::Error> {
    let mut config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    Client::try_from(config)
}
