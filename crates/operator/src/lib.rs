//! The operator's library: the offline `check`, the two controllers (the provisioner and the
//! ops-manager), leader election, metrics and the HTTP endpoints. `main.rs` is only the command
//! line.

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

/// Runs both controllers, the provisioner and the ops-manager, until the process is asked to stop.
pub async fn run_controllers(
    client: kube::Client,
    metrics: std::sync::Arc<metrics::Metrics>,
    settings: ops::Settings,
) {
    let (waker, wakes) = ops::wake::channel();
    tokio::join!(
        provisioner::run(client.clone(), metrics.clone(), waker),
        ops::run(client, metrics, wakes, settings)
    );
}
