//! The operator's library: the offline `check`, the two controllers (the provisioner and the
//! ops-manager), leader election, metrics and the HTTP endpoints. `main.rs` is only the command
//! line.

pub mod admission;
pub mod build;
pub mod cache;
pub mod check;
pub mod client;
pub mod events;
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
}

/// Runs both controllers, the provisioner and the ops-manager, until the process is asked to stop.
pub async fn run_controllers(
    client: kube::Client,
    metrics: std::sync::Arc<metrics::Metrics>,
    settings: Settings,
) {
    let (waker, wakes) = ops::wake::channel();
    tokio::join!(
        provisioner::run(client.clone(), metrics.clone(), waker, settings.renewal),
        ops::run(client, metrics, wakes, settings.verify_served_certificates)
    );
}
