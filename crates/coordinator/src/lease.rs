//! The database's `coordination.k8s.io` Lease: read it, and write its holder against the version
//! read, so that two coordinators can never both take it (the API server refuses the second write
//! with 409). The operator creates the Lease; the coordinator only reads and updates it, by name.

use std::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use crate::decide::Lease;
use crate::timing::Timing;

/// Reads and writes one Lease as one identity.
pub struct LeaseClient {
    api: Api<LeaseObject>,
    name: String,
    identity: String,
    duration_seconds: i32,
    /// An API server that does not answer within this counts as unreachable: the coordinator
    /// must go on deciding (and a primary asking its peers) rather than wait for it.
    timeout: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("the API server did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl LeaseClient {
    pub fn new(api: Api<LeaseObject>, name: &str, identity: &str, timing: &Timing) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration_seconds: i32::try_from(timing.lease.as_secs()).unwrap_or(i32::MAX),
            timeout: timing.probe_timeout,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    async fn within<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaseError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(LeaseError::Timeout(self.timeout)),
        }
    }

    pub async fn read(&self) -> Result<LeaseObject, LeaseError> {
        self.within(self.api.get(&self.name)).await
    }

    /// Writes `holder` (this identity to renew or take it, another to hand it over, `None` to
    /// free it) against the version of `current`.
    pub async fn write(
        &self,
        current: &LeaseObject,
        holder: Option<&str>,
    ) -> Result<LeaseObject, LeaseError> {
        let mut next = current.clone();
        let spec = next.spec.get_or_insert_with(LeaseSpec::default);
        let now = MicroTime(Timestamp::now());
        if spec.holder_identity.as_deref() != holder {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = holder.map(|_| now.clone());
        }
        spec.holder_identity = holder.map(str::to_owned);
        spec.renew_time = holder.map(|_| now);
        spec.lease_duration_seconds = Some(self.duration_seconds);
        self.within(self.api.replace(&self.name, &PostParams::default(), &next))
            .await
    }
}

/// What this coordinator knows of the Lease between reads: when it last changed, and when the
/// last proof that this coordinator holds it began.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    version: Option<String>,
    holder: Option<String>,
    changed: Option<Instant>,
    anchor: Option<Instant>,
}

impl Tracker {
    /// A read (or this coordinator's own write) of the Lease at `at`.
    pub fn seen(&mut self, lease: &LeaseObject, at: Instant) {
        let version = lease.metadata.resource_version.clone();
        if version != self.version {
            self.version = version;
            self.changed = Some(at);
        }
        self.holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
    }

    /// This coordinator proved it holds the Lease with a renewal (or a round of confirmations)
    /// that began at `started`.
    pub fn proved(&mut self, started: Instant) {
        self.anchor = Some(started);
    }

    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    /// The Lease as [`crate::decide`] sees it. `reachable`: the last read answered. A holder's
    /// claim lasts only as long as its last proof: past `anchor + lease` anyone may have taken it.
    pub fn view(&self, me: &str, reachable: bool, now: Instant, timing: &Timing) -> Lease {
        match (self.holder.as_deref(), self.anchor) {
            (Some(holder), Some(anchor)) if holder == me => {
                if now < anchor + timing.lease {
                    Lease::Mine { anchor }
                } else {
                    Lease::Unknown
                }
            }
            _ if !reachable => Lease::Unknown,
            (None, _) | (Some(""), _) => Lease::Free,
            (Some(holder), _) => Lease::Theirs {
                holder: holder.to_owned(),
                changed: self.changed.unwrap_or(now),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn lease(version: &str, holder: Option<&str>) -> LeaseObject {
        LeaseObject {
            metadata: ObjectMeta {
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn another_holder_counts_from_the_last_change_this_coordinator_saw() {
        let timing = Timing::default();
        let start = Instant::now();
        let mut tracker = Tracker::default();
        tracker.seen(&lease("1", Some("ag-0/a")), start);
        let later = start + Duration::from_secs(5);
        tracker.seen(&lease("1", Some("ag-0/a")), later);
        assert_eq!(
            tracker.view("ag-1/b", true, later, &timing),
            Lease::Theirs {
                holder: "ag-0/a".into(),
                changed: start
            }
        );
        tracker.seen(&lease("2", Some("ag-0/a")), later);
        assert_eq!(
            tracker.view("ag-1/b", true, later, &timing),
            Lease::Theirs {
                holder: "ag-0/a".into(),
                changed: later
            }
        );
    }

    #[test]
    fn a_holder_is_one_only_as_long_as_its_last_proof() {
        let timing = Timing::default();
        let start = Instant::now();
        let mut tracker = Tracker::default();
        tracker.seen(&lease("1", Some("ag-0/a")), start);
        // Holding without a proof yet (a restarted coordinator of the same identity) is not
        // holding: it must renew first.
        assert!(matches!(
            tracker.view("ag-0/a", true, start, &timing),
            Lease::Theirs { .. }
        ));
        tracker.proved(start);
        assert_eq!(
            tracker.view("ag-0/a", false, start + Duration::from_secs(9), &timing),
            Lease::Mine { anchor: start }
        );
        assert_eq!(
            tracker.view("ag-0/a", false, start + Duration::from_secs(10), &timing),
            Lease::Unknown
        );
    }

    #[test]
    fn an_empty_holder_is_free_and_an_unreachable_api_server_is_unknown() {
        let timing = Timing::default();
        let now = Instant::now();
        let mut tracker = Tracker::default();
        tracker.seen(&lease("3", None), now);
        assert_eq!(tracker.view("ag-1/b", true, now, &timing), Lease::Free);
        assert_eq!(tracker.view("ag-1/b", false, now, &timing), Lease::Unknown);
    }
}
