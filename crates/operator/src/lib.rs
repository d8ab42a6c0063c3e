//! The operator's library: the offline `check`, the two controllers (the provisioner and the
//! ops-manager), leader election, metrics and the HTTP endpoints, and the `coordinator` command
//! of availability groups' pods. `main.rs` is only the command line.

pub mod admission;
pub mod build;
pub mod check;
pub mod client;
pub mod controller;
pub mod coordinate;
#[cfg(test)]
mod fixtures;
pub mod leader;
pub mod metrics;
pub mod ops;
pub mod preflight;
pub mod provisioner;
pub mod serve;
pub mod yaml;

/// How the controllers run, from `run`'s command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// After each pod restart of a database with client TLS, connect to the pod and check the
    /// certificate it serves. Off only where the operator cannot reach pods (fake kwok pods).
    pub verify_served_certificates: bool,
    /// How renewed certificates are rolled out where a database's annotations do not say.
    pub renewal: mssql_api::renewal::Policy,
    /// The namespaces the controllers watch; empty: every namespace.
    pub namespaces: Vec<String>,
    /// The image of availability groups' `mssql-coordinator` containers: this operator's own.
    pub coordinator_image: String,
}

/// The coordinator image where `run` is not told: this version of the operator's image.
pub const DEFAULT_COORDINATOR_IMAGE: &str = concat!("mssql-operator:", env!("CARGO_PKG_VERSION"));

/// Runs both controllers, the provisioner and the ops-manager, until the process is asked to stop:
/// one pair over every namespace, or one pair per listed namespace (each with its own caches,
/// so a namespace's objects are all the operator may read there).
pub async fn run_controllers(
    client: kube::Client,
    metrics: std::sync::Arc<metrics::Metrics>,
    settings: Settings,
) {
    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let pairs = scopes.into_iter().map(|namespace| {
        let (waker, wakes) = controller::wake::channel();
        // Fed by the provisioner's watches, read by both controllers.
        let known = controller::known::Known::default();
        let (client, metrics, settings) = (client.clone(), metrics.clone(), settings.clone());
        async move {
            let namespace = namespace.as_deref();
            tokio::join!(
                provisioner::run(
                    client.clone(),
                    metrics.clone(),
                    waker.clone(),
                    settings.renewal,
                    settings.coordinator_image.clone(),
                    namespace,
                    known.clone()
                ),
                ops::run(
                    client,
                    metrics,
                    (waker, wakes),
                    settings.verify_served_certificates,
                    settings.coordinator_image,
                    namespace,
                    known
                )
            );
        }
    });
    futures::future::join_all(pairs).await;
}
