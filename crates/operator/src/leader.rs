//! Leader election on a `coordination.k8s.io` Lease: any number of replicas may run, only the
//! holder of the Lease reconciles and writes. A leader that loses the Lease stops at once and the
//! process exits, so its replacement starts from the objects' status, exactly as after a crash.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tracing::{info, warn};

use crate::metrics::Metrics;

/// A leader that stops renewing is replaced after this many seconds.
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// The leader renews this many seconds before the Lease would expire (so every 10 s).
const RENEW_BEFORE_EXPIRY_SECONDS: u64 = 5;
/// How long a stopping leader tries to release the Lease before it exits all the same.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Lease to hold, and as whom.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease: String,
    /// Unique per replica and stable across restarts of its container (the pod's name), so a
    /// restarted process takes its own Lease back at once.
    pub identity: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use Lease {namespace}/{lease}: {source}")]
    Lease {
        namespace: String,
        lease: String,
        source: LeaseManagerError,
    },
    #[error(
        "lost the Lease {0}: another replica leads now; exiting so that nothing is written twice"
    )]
    Lost(String),
}

/// Waits for the Lease, then runs `work` (the controllers) while holding it. Returns when `work`
/// ends (the process was asked to stop) after releasing the Lease, so a standby takes over at
/// once; or `Err(Lost)` as soon as the Lease is lost.
pub async fn lead<F>(
    client: Client,
    election: &Election,
    metrics: &Metrics,
    work: F,
) -> Result<(), Error>
where
    F: Future<Output = ()>,
{
    let lease = format!("{}/{}", election.namespace, election.lease);
    let manager = LeaseManagerBuilder::new(client, &election.lease)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(LEASE_DURATION_SECONDS)
        .with_grace(RENEW_BEFORE_EXPIRY_SECONDS)
        .build()
        .await
        .map_err(|source| Error::Lease {
            namespace: election.namespace.clone(),
            lease: election.lease.clone(),
            source,
        })?;
    let (mut leading, renewer) = manager.watch().await;
    info!(%lease, identity = %election.identity, "waiting to lead");
    tokio::select! {
        acquired = leading.wait_for(|leader| *leader) => {
            if acquired.is_err() {
                return Err(Error::Lost(lease));
            }
        }
        () = shutdown_signal() => {
            info!("asked to stop while standing by");
            return Ok(());
        }
    }
    info!(%lease, identity = %election.identity, "leading");
    metrics.set_leader(true);
    let outcome = tokio::select! {
        () = work => Ok(()),
        _ = leading.wait_for(|leader| !*leader) => Err(Error::Lost(lease)),
    };
    metrics.set_leader(false);
    if outcome.is_ok() {
        // Closing the channel makes the renewer release the Lease; wait for that to be written,
        // but not for ever: with the API server gone the process must still exit.
        drop(leading);
        match tokio::time::timeout(RELEASE_TIMEOUT, renewer).await {
            Ok(Ok(Ok(_))) => info!("released the Lease"),
            Ok(Ok(Err(error))) => {
                warn!(%error, "could not release the Lease; it expires by itself")
            }
            Ok(Err(error)) => warn!(%error, "the Lease renewer failed"),
            Err(_) => warn!(
                "could not release the Lease within {RELEASE_TIMEOUT:?}; it expires by itself"
            ),
        }
    }
    outcome
}

/// SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
