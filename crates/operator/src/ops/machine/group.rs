//! The restarts of an availability group's pods (docs/coordinator.md, "A TLS change of a
//! group"): each restarted replica is back in its group, connected and synchronized, before the
//! next pod goes; the primary goes last, after the coordinators handed its role to a
//! synchronized secondary that already runs the new material.

use std::time::Duration;

use mssql_api::MssqlServerOpsRequest;
use mssql_api::ops::APPLY_ALWAYS;
use mssql_api::pods::{SQL_PRIMARY, SQL_SECONDARY};
use mssql_api::progress::Progress;
use mssql_api::steps::*;

use super::{Observed, PodState, Step};

impl PodState {
    /// What its coordinator says of its server's role.
    fn server_role(&self) -> Option<&str> {
        self.replica.as_ref().and_then(|r| r.role.as_deref())
    }

    /// Its server is a secondary connected to its primary and synchronized: SQL Server would
    /// fail the group over to it without data loss.
    fn synchronized_secondary(&self) -> bool {
        self.server_role() == Some(SQL_SECONDARY)
            && self
                .replica
                .as_ref()
                .is_some_and(|r| r.synchronized && r.connected)
    }

    pub(super) fn labelled_primary(&self) -> bool {
        self.role.as_deref() == Some(mssql_api::labels::ROLE_PRIMARY)
    }
}

/// The restarted replica `pod` is synchronized with its group, or the request waits for it (and
/// fails once `expired`).
pub(super) fn synchronized(pod: &PodState, expired: bool, timeout: Duration) -> Step {
    if pod.synchronized_secondary() || pod.server_role() == Some(SQL_PRIMARY) {
        return Step::ReplicaSynchronized {
            pod: pod.name.clone(),
        };
    }
    let why = match &pod.replica {
        None => "its coordinator has not reported its server yet".to_owned(),
        Some(report) => format!(
            "its server reports {}, {}, {}",
            report.role.as_deref().unwrap_or("no group yet"),
            if report.connected {
                "connected"
            } else {
                "not connected"
            },
            if report.synchronized {
                "synchronized"
            } else {
                "not synchronized"
            },
        ),
    };
    if expired {
        return Step::Fail {
            step: pod_step(CHECK_REPLICA_SYNCHRONIZED, &pod.name),
            message: format!(
                "pod {} did not synchronize with its group within {timeout:?}: {why}; no further pod was restarted",
                pod.name
            ),
        };
    }
    Step::WaitForReplica {
        pod: pod.name.clone(),
        why,
    }
}

/// A switchover this request asked for and that has not ended: done once another replica is
/// labelled primary and its server says PRIMARY, and the old primary's server no longer does.
pub(super) fn switchover_under_way(
    progress: &Progress,
    observed: &Observed,
    expired: bool,
    timeout: Duration,
) -> Option<Step> {
    let (from, _) = progress
        .pods
        .iter()
        .find(|(_, p)| p.switchover_asked && !p.primary_may_restart())?;
    let new_primary = observed
        .pods
        .iter()
        .find(|p| &p.name != from && p.labelled_primary() && p.server_role() == Some(SQL_PRIMARY));
    let old = observed.pods.iter().find(|p| &p.name == from);
    let stepped_down = old.is_none_or(|p| p.server_role() != Some(SQL_PRIMARY));
    if let (Some(to), true) = (new_primary, stepped_down) {
        return Some(Step::SwitchedOver {
            from: from.clone(),
            to: to.name.clone(),
        });
    }
    let why = if stepped_down {
        "no other replica is labelled primary with its server PRIMARY yet".to_owned()
    } else {
        format!("{from}'s server still says PRIMARY")
    };
    if expired {
        return Some(Step::Fail {
            step: pod_step(CHECK_PRIMARY_SWITCHED, from),
            message: format!(
                "the primary role did not leave {from} within {timeout:?}: {why}; {from} was not restarted"
            ),
        });
    }
    // The target is chosen again: one that went away since is replaced by another.
    Some(Step::WaitForSwitchover {
        from: from.clone(),
        to: target(observed, from),
        why,
    })
}

/// Before the primary `pod` restarts: ask for a switchover to a synchronized secondary that
/// runs the new material; with none, wait or (`apply: Always`) restart it in place.
pub(super) fn before_primary_restart(
    ops: &MssqlServerOpsRequest,
    observed: &Observed,
    pod: &PodState,
    expired: bool,
    timeout: Duration,
) -> Step {
    if let Some(to) = target(observed, &pod.name) {
        return Step::RequestSwitchover {
            from: pod.name.clone(),
            to,
        };
    }
    let why = no_target(observed, &pod.name);
    if ops.spec.apply.as_deref() == Some(APPLY_ALWAYS) {
        return Step::RestartPrimaryInPlace {
            pod: pod.name.clone(),
            why,
        };
    }
    if expired {
        return Step::Fail {
            step: pod_step(SWITCHOVER_PRIMARY, &pod.name),
            message: format!(
                "no replica could take the primary role over from {} within {timeout:?}: {why}; {} was not restarted (a request with apply: Always restarts the primary in place)",
                pod.name, pod.name
            ),
        };
    }
    Step::WaitForSwitchoverTarget {
        pod: pod.name.clone(),
        why,
    }
}

/// The replica to hand the primary role of `from` to: the lowest ordinal among the restarted
/// replicas whose servers are synchronized secondaries.
fn target(observed: &Observed, from: &str) -> Option<String> {
    observed
        .pods
        .iter()
        .filter(|p| p.name != from && !p.arbiter && p.restarted() && p.synchronized_secondary())
        .map(|p| p.name.clone())
        .min_by_key(|name| ordinal(name))
}

fn ordinal(pod: &str) -> u32 {
    pod.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Why no replica can take the primary role over, pod by pod.
fn no_target(observed: &Observed, from: &str) -> String {
    let reasons: Vec<String> = observed
        .pods
        .iter()
        .filter(|p| p.name != from && !p.arbiter)
        .map(|p| {
            let why = if !p.restarted() {
                "does not run the new material yet"
            } else if p.synchronized_secondary() {
                "could"
            } else {
                "is not a synchronized secondary"
            };
            format!("{} {why}", p.name)
        })
        .collect();
    if reasons.is_empty() {
        return "the group has no other replica".to_owned();
    }
    format!(
        "no secondary both runs the new material and is synchronized ({})",
        reasons.join(", ")
    )
}
