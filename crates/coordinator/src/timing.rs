//! The two leases and the arithmetic that keeps them apart (docs/coordinator.md, "The lock and
//! the fence"). Every instant here is read on this coordinator's own monotonic clock: no decision
//! compares clocks of two machines.

use std::time::{Duration, Instant};

/// The coordinator's clocks and thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `D`: a Lease not renewed for this long, as its observer counts, may be taken.
    pub lease: Duration,
    /// `W`: SQL Server's write lease (`WRITE_LEASE_VALIDITY`, whole seconds).
    pub write_lease: Duration,
    /// Kept between the end of the last write lease and the earliest takeover, for the time a
    /// statement takes to reach the server and for clocks that run at slightly different rates.
    pub margin: Duration,
    /// How often the coordinator looks and acts.
    pub tick: Duration,
    /// How long a probe of the local server may take before it counts as failed.
    pub probe_timeout: Duration,
    /// Failed probes in a row after which the local server counts as gone.
    pub probe_failures: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            write_lease: Duration::from_secs(4),
            margin: Duration::from_secs(2),
            tick: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(1),
            probe_failures: 2,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    #[error(
        "the write lease ({write_lease:?}) plus the margin ({margin:?}) must be shorter than the \
         Lease ({lease:?}): a primary must stop taking writes before anyone may take the Lease"
    )]
    WriteLeaseTooLong {
        write_lease: Duration,
        margin: Duration,
        lease: Duration,
    },
    #[error("the write lease must be a whole number of seconds, at least 1 (SQL Server's unit)")]
    WriteLeaseNotWholeSeconds,
}

impl Timing {
    pub fn validated(self) -> Result<Self, TimingError> {
        if self.write_lease.subsec_nanos() != 0 || self.write_lease.is_zero() {
            return Err(TimingError::WriteLeaseNotWholeSeconds);
        }
        if self.write_lease + self.margin >= self.lease {
            return Err(TimingError::WriteLeaseTooLong {
                write_lease: self.write_lease,
                margin: self.margin,
                lease: self.lease,
            });
        }
        Ok(self)
    }

    /// `WRITE_LEASE_VALIDITY`'s value.
    pub fn write_lease_seconds(&self) -> u64 {
        self.write_lease.as_secs()
    }

    /// Whether the write lease may be given now. `anchor` is when the last proof of holding the
    /// lock began: the start of the last successful Lease renewal, or of the last round of
    /// confirmations every other replica answered. Each promised nobody would take the Lease for
    /// `lease` after that start, so a write lease given until `now + write_lease` must end
    /// `margin` before it.
    pub fn may_give_write_lease(&self, anchor: Instant, now: Instant) -> bool {
        now <= anchor + self.lease - self.write_lease - self.margin
    }

    /// Whether a write to the API server as the Lease's holder (a pod's role label), sent `now`
    /// and given `deadline`, ends `margin` before anyone else may take the Lease after the last
    /// proof, begun at `anchor`. A coordinator whose tick was held up (by a server that froze
    /// mid-statement) must not relabel pods the next holder labels at the same moment.
    pub fn may_write_as_holder(&self, anchor: Instant, now: Instant, deadline: Duration) -> bool {
        now + deadline + self.margin <= anchor + self.lease
    }

    /// How long a statement the holder sends to its server (a failover, a change of the group)
    /// may take when sent `now`: until `margin` before anyone else may take the Lease after the
    /// last proof, begun at `anchor`, and at most `longest`. So a slow statement delays the next
    /// renewal but never outlasts the Lease. `None` when less than a probe's deadline is left:
    /// the statement waits for the next renewal.
    pub fn holder_statement_deadline(
        &self,
        anchor: Instant,
        now: Instant,
        longest: Duration,
    ) -> Option<Duration> {
        let left = (anchor + self.lease).checked_duration_since(now + self.margin)?;
        (left >= self.probe_timeout).then(|| left.min(longest))
    }

    /// Whether another coordinator's Lease may be taken: nobody renewed it for `lease` since this
    /// coordinator saw it last change.
    pub fn lease_expired(&self, last_change_seen: Instant, now: Instant) -> bool {
        now >= last_change_seen + self.lease
    }

    /// When a write lease given at `given` (the moment the statement was sent) has surely ended.
    pub fn write_lease_end(&self, given: Instant) -> Instant {
        given + self.write_lease
    }

    /// Whether the local server, answering no probe, counts as gone.
    pub fn server_gone(&self, failures: u32) -> bool {
        failures >= self.probe_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn a_holder_writes_labels_only_while_its_proof_outlasts_the_write() {
        let timing = Timing::default();
        let start = Instant::now();
        let deadline = Duration::from_secs(1);
        // Lease 10 s, margin 2 s, deadline 1 s: the last write may be sent 7 s after the proof.
        assert!(timing.may_write_as_holder(start, at(start, 0), deadline));
        assert!(timing.may_write_as_holder(start, at(start, 7000), deadline));
        assert!(!timing.may_write_as_holder(start, at(start, 7001), deadline));
        // A tick held up past the Lease (a server frozen mid-statement) writes nothing.
        assert!(!timing.may_write_as_holder(start, at(start, 15_000), deadline));
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Timing::default().validated(), Ok(Timing::default()));
        assert_eq!(Timing::default().write_lease_seconds(), 4);
    }

    #[test]
    fn a_write_lease_as_long_as_the_lease_less_the_margin_is_refused() {
        let timing = Timing {
            write_lease: Duration::from_secs(8),
            ..Timing::default()
        };
        assert!(matches!(
            timing.validated(),
            Err(TimingError::WriteLeaseTooLong { .. })
        ));
        let timing = Timing {
            write_lease: Duration::from_millis(1500),
            ..Timing::default()
        };
        assert_eq!(
            timing.validated(),
            Err(TimingError::WriteLeaseNotWholeSeconds)
        );
    }

    #[test]
    fn the_write_lease_is_given_only_while_it_ends_before_any_takeover() {
        let timing = Timing::default();
        let anchor = Instant::now();
        // D 10 s, W 4 s, margin 2 s: given up to 4 s after the anchor.
        assert!(timing.may_give_write_lease(anchor, at(anchor, 0)));
        assert!(timing.may_give_write_lease(anchor, at(anchor, 4000)));
        assert!(!timing.may_give_write_lease(anchor, at(anchor, 4001)));
        // The latest write lease ends 2 s before the earliest takeover.
        let latest = at(anchor, 4000);
        let takeover = anchor + timing.lease;
        assert_eq!(
            takeover - timing.write_lease_end(latest),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_lease_expires_a_full_duration_after_its_last_change_was_seen() {
        let timing = Timing::default();
        let seen = Instant::now();
        assert!(!timing.lease_expired(seen, at(seen, 9999)));
        assert!(timing.lease_expired(seen, at(seen, 10_000)));
    }

    #[test]
    fn a_holder_s_statement_ends_a_margin_before_the_lease_could_be_taken() {
        let timing = Timing::default();
        let anchor = Instant::now();
        let longest = Duration::from_secs(15);
        // Renewed just now: 10 s Lease - 2 s margin.
        assert_eq!(
            timing.holder_statement_deadline(anchor, anchor, longest),
            Some(Duration::from_secs(8))
        );
        assert_eq!(
            timing.holder_statement_deadline(anchor, anchor, Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            timing.holder_statement_deadline(anchor, at(anchor, 6_500), longest),
            Some(Duration::from_millis(1_500))
        );
        // Less than a probe's deadline left, or none.
        assert_eq!(
            timing.holder_statement_deadline(anchor, at(anchor, 7_500), longest),
            None
        );
        assert_eq!(
            timing.holder_statement_deadline(anchor, at(anchor, 9_000), longest),
            None
        );
    }

    #[test]
    fn the_server_is_gone_after_the_configured_failures() {
        let timing = Timing::default();
        assert!(!timing.server_gone(0));
        assert!(!timing.server_gone(1));
        assert!(timing.server_gone(2));
    }
}
