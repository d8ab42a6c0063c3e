//! The restarts of an availability group's pods (docs/coordinator.md, "A planned switchover",
//! "The endpoint certificate"): a new endpoint certificate is trusted by every replica before any
//! restarts; each restarted replica is back in its group, connected, synchronized and presenting
//! it, before the next pod goes; the primary goes last, after the coordinators handed its role to
//! a synchronized secondary that already runs the new material; the old certificate is retired
//! once every replica presents the new one.

use std::time::Duration;

use mssql_api::MssqlServerOpsRequest;
use mssql_api::ops::APPLY_ALWAYS;
use mssql_api::pods::{EndpointCertificates, SQL_PRIMARY, SQL_SECONDARY};
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

    fn endpoint(&self) -> Option<&EndpointCertificates> {
        self.replica.as_ref().and_then(|r| r.endpoint.as_ref())
    }
}

/// The group's replicas (not the arbiter, which holds no SQL Server certificates).
fn replicas(observed: &Observed) -> impl Iterator<Item = &PodState> {
    observed.pods.iter().filter(|p| !p.arbiter)
}

/// Before any pod restarts onto a new endpoint certificate: every replica trusts it. Nothing to
/// do when every replica presents it already, or when a replica's coordinator does not say what
/// it trusts (one from before this overlap was built: its pod then starts on the new certificate
/// as before).
pub(super) fn endpoint_trust(
    progress: &Progress,
    observed: &Observed,
    expired: bool,
    timeout: Duration,
) -> Option<Step> {
    let serial = observed
        .endpoint_serial
        .as_ref()
        .filter(|_| observed.group)?;
    // Decided before the restarts begin: a restarted replica's first reports know nothing yet.
    if progress.endpoint_trusted || progress.pods.values().any(|p| p.evicted) {
        return None;
    }
    let endpoints: Vec<Option<&EndpointCertificates>> =
        replicas(observed).map(PodState::endpoint).collect();
    if endpoints.iter().any(Option::is_none)
        || endpoints.iter().flatten().all(|e| e.presents(serial))
    {
        return None;
    }
    let behind: Vec<&str> = replicas(observed)
        .filter(|p| !p.endpoint().is_some_and(|e| e.trusts(serial)))
        .map(|p| p.name.as_str())
        .collect();
    if behind.is_empty() {
        return Some(Step::EndpointCertificateTrusted {
            serial: serial.clone(),
        });
    }
    let why = format!(
        "{} do not trust endpoint certificate serial {serial} yet",
        behind.join(", ")
    );
    if expired {
        return Some(Step::Fail {
            step: ENDPOINT_TRUSTED.to_owned(),
            message: format!("{why}, {timeout:?} after it was asked; no pod was restarted"),
        });
    }
    Some(Step::TrustEndpointCertificate {
        serial: serial.clone(),
        why,
    })
}

/// After every pod restarted onto a new endpoint certificate: no replica trusts the old one.
pub(super) fn endpoint_retirement(
    progress: &Progress,
    observed: &Observed,
    expired: bool,
    timeout: Duration,
) -> Option<Step> {
    if !progress.endpoint_trusted || progress.endpoint_retired {
        return None;
    }
    let serial = observed.endpoint_serial.as_ref()?;
    let holding: Vec<String> = replicas(observed)
        .filter(|p| !p.endpoint().is_some_and(|e| e.trusts_only(serial)))
        .map(|p| {
            let trusts = p
                .endpoint()
                .map(|e| e.trusts.join(", "))
                .unwrap_or_default();
            format!("{} trusts {trusts}", p.name)
        })
        .collect();
    if holding.is_empty() {
        return Some(Step::EndpointCertificateRetired {
            serial: serial.clone(),
        });
    }
    let why = format!(
        "waiting for the replicas to drop every endpoint certificate but serial {serial}: {}",
        holding.join("; ")
    );
    if expired {
        return Some(Step::Fail {
            step: ENDPOINT_RETIRED.to_owned(),
            message: format!("{why}, for {timeout:?}"),
        });
    }
    Some(Step::WaitForRetirement { why })
}

/// The restarted replica `pod` is synchronized with its group (and presents endpoint certificate
/// `presenting`, in a rotation of it), or the request waits for it (and fails once `expired`).
pub(super) fn synchronized(
    pod: &PodState,
    presenting: Option<&str>,
    expired: bool,
    timeout: Duration,
) -> Step {
    let in_group = pod.synchronized_secondary() || pod.server_role() == Some(SQL_PRIMARY);
    let presents = presenting.is_none_or(|serial| {
        pod.endpoint()
            .is_some_and(|endpoint| endpoint.presents(serial))
    });
    if in_group && presents {
        return Step::ReplicaSynchronized {
            pod: pod.name.clone(),
        };
    }
    let why = match &pod.replica {
        Some(report) if in_group => format!(
            "its endpoint presents certificate serial {}, not {}",
            report
                .endpoint
                .as_ref()
                .and_then(|e| e.presents.as_deref())
                .unwrap_or("none"),
            presenting.unwrap_or_default()
        ),
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
    // The target asked for stays while its pod runs (its report changes as the role moves); one
    // that went away is replaced by another.
    let asked_runs = observed.switchover_to.as_ref().is_some_and(|asked| {
        observed
            .pods
            .iter()
            .any(|p| &p.name == asked && p.exists && !p.terminating && p.ready)
    });
    Some(Step::WaitForSwitchover {
        from: from.clone(),
        to: if asked_runs {
            None
        } else {
            target(observed, from)
        },
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
