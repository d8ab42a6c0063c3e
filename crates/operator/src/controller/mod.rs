//! What both controllers (the provisioner and the ops-manager) share: their caches, Events,
//! writes (server-side apply, the field manager), the channel by which the provisioner's watches
//! wake the ops-manager, and how a reconcile's outcome is told: conflicts retried at once and
//! silently, every other error counted and logged once, by category.

pub mod apply;
pub mod cache;
pub mod events;
pub mod known;
#[cfg(test)]
pub mod mock;
pub mod owned;
pub mod pods;
pub mod store;
pub mod wake;

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{self, Action};
use kube::runtime::finalizer;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Reconciles run at once, per controller. Unbounded, a thousand new databases meant a thousand
/// reconciles in flight, each holding its responses: memory grew with N while the API server, not
/// the operator, set the pace anyway.
pub const CONCURRENCY: u16 = 16;

/// How soon a reconcile that lost a write race runs again (the newer object usually comes first).
pub const REQUEUE_CONFLICT: Duration = Duration::from_millis(500);

/// The name Events and writes are reported under.
pub const NAME: &str = "mssql-operator";

/// An error of a reconcile: what kind of step failed (a label for logs and metrics), and whether
/// it only lost a write race.
pub trait ReconcileError: std::error::Error {
    /// A short label: the step of the pipeline that failed.
    fn category(&self) -> &'static str;

    /// A write lost a race with another writer (409): the newer object is on its way through the
    /// watch, so this is retried at once, without a Warning Event, and not counted as an error.
    fn is_conflict(&self) -> bool;
}

pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether a finalizer error is a conflict, `inner` judging the reconciler's own errors.
pub fn finalizer_conflict<E: std::error::Error + 'static>(
    error: &finalizer::Error<E>,
    inner: impl Fn(&E) -> bool,
) -> bool {
    match error {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => inner(e),
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => is_conflict(e),
        _ => false,
    }
}

/// The category of a finalizer error: the reconciler's own, or the finalizer's write.
pub fn finalizer_category<E: ReconcileError + 'static>(
    error: &finalizer::Error<E>,
) -> &'static str {
    match error {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.category(),
        _ => "finalizer",
    }
}

/// Counts and times one reconcile of `controller`, and logs a failed one once, with its category
/// (a lost write race only at debug level: it is retried at once and not counted).
pub fn reconciled<E: ReconcileError>(
    metrics: &Metrics,
    controller: &'static str,
    key: &str,
    started: Instant,
    result: Result<&Action, &E>,
) {
    let category = match result {
        Ok(_) => None,
        Err(error) if error.is_conflict() => {
            debug!(controller, object = key, %error, "lost a write race; again at once");
            None
        }
        Err(error) => {
            warn!(controller, object = key, category = error.category(), %error, "reconcile failed");
            Some(error.category())
        }
    };
    metrics.reconciled(controller, started.elapsed(), category);
}

/// Logs what a controller's stream yields. A failed reconcile was already reported by
/// [`reconciled`]; the controller's own problems (a watch the API server refuses, say) are
/// warnings.
pub fn log_outcome<K, E>(
    result: Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>,
) where
    K: Resource<DynamicType = ()>,
    E: std::error::Error + 'static,
{
    match result {
        Ok((object, _)) => debug!(%object, "reconciled"),
        Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(error) => warn!(%error, "controller error"),
    }
}

/// `namespace/name` of an object, as logs, metrics and messages name it.
pub fn key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// A condition's transition time: now.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// The API server refuses an Event whose note is over 1024 bytes (422), and the Event would be
/// lost: a long note (an API error quoting a whole object) is cut, on a character boundary.
pub fn event_note(mut note: String) -> String {
    const LIMIT: usize = 1024;
    const MORE: &str = " …";
    if note.len() > LIMIT {
        let mut end = LIMIT - MORE.len();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str(MORE);
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_fit_the_api_limit_without_splitting_a_character() {
        assert_eq!(event_note("short".to_owned()), "short");
        let exact = "x".repeat(1024);
        assert_eq!(event_note(exact.clone()), exact);
        let long = "é".repeat(600); // 1200 bytes
        let cut = event_note(long);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with(" …"));
        assert!(cut.trim_end_matches(" …").chars().all(|c| c == 'é'));
    }
}
