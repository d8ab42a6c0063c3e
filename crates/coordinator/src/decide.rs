//! What a coordinator does next: a pure function of what it sees this tick (docs/coordinator.md,
//! "Deciding"). The runtime reads the local server, the Lease and the other coordinators, asks
//! [`next`], and carries out the one move it returns; the next tick sees the result.

use std::time::Instant;

use crate::timing::Timing;

/// A replica's role, as its server says (`sys.dm_hadr_availability_replica_states.role_desc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Secondary,
    /// Neither: after a restart, an `OFFLINE`, or a failover it was not part of. In a group with
    /// `CLUSTER_TYPE = EXTERNAL` only the cluster manager moves it on.
    Resolving,
}

/// What the local server says of itself this tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    /// It answered none of the last `failures` probes.
    Silent { failures: u32 },
    /// It answers and holds no availability group.
    NoGroup,
    /// It answers as a replica of the group.
    Replica { role: Role, sequence: i64 },
}

/// The database's Lease, as this coordinator knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lease {
    /// The API server did not answer, and no proof of holding it is recent enough.
    Unknown,
    /// Nobody holds it.
    Free,
    /// This coordinator holds it; `anchor` is when its last proof began: the last successful
    /// renewal, or the last round of confirmations every other voter answered.
    Mine { anchor: Instant },
    /// Another coordinator holds it; `changed` is when this one last saw it change.
    Theirs { holder: String, changed: Instant },
    /// Its holder handed it to this coordinator's pod by name (a switchover): this coordinator
    /// takes it if SQL Server would promote its replica, even where another would be the target.
    Offered,
}

/// A voter's answer, collected this tick from its coordinator (this one's own included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The pod's name.
    pub member: String,
    pub ordinal: u32,
    /// The arbiter votes but is never promoted.
    pub arbiter: bool,
    /// The highest `sequence_number` it knows: its server's, or, for the arbiter, the highest the
    /// replicas told it.
    pub sequence: Option<i64>,
    /// Whether its server answers as a replica that was synchronized the last time it could tell:
    /// SQL Server will then accept a `FAILOVER` to it.
    pub synchronized: bool,
    /// It asked SQL Server for a failover since the Lease last changed hands and was refused.
    pub refused: bool,
    /// Its server holds the group.
    pub has_group: bool,
}

/// Why nobody can be promoted now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoTarget {
    /// Fewer voters answered than a majority of the group.
    TooFewAnswers { answered: usize, needed: usize },
    /// No replica with the highest sequence number is synchronized (or all of those were refused).
    NoSynchronizedReplica { highest_sequence: Option<i64> },
}

impl std::fmt::Display for NoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooFewAnswers { answered, needed } => write!(
                f,
                "only {answered} of the group's voters answered; a promotion needs {needed}, so \
                 that no replica that missed a change of the group is made primary"
            ),
            Self::NoSynchronizedReplica {
                highest_sequence: Some(sequence),
            } => write!(
                f,
                "no replica with the group's latest configuration (sequence number {sequence}) \
                 was synchronized, so SQL Server would refuse a failover without data loss"
            ),
            Self::NoSynchronizedReplica {
                highest_sequence: None,
            } => write!(f, "no replica of the group answers with its state"),
        }
    }
}

/// Who may be promoted: a synchronized replica whose sequence number is the highest among a
/// majority of the group's voters (as Microsoft's Pacemaker agent collects them), never the
/// arbiter, not one SQL Server refused since the Lease changed hands; the lowest ordinal among
/// equals, so that coordinators do not race. `exclude` is a replica that must not be chosen (one
/// being fenced).
pub fn promotion_target<'a>(
    voters: usize,
    votes: &'a [Vote],
    exclude: Option<&str>,
) -> Result<&'a str, NoTarget> {
    candidates(voters, votes)?
        .filter(|v| Some(v.member.as_str()) != exclude)
        .min_by_key(|v| v.ordinal)
        .map(|v| v.member.as_str())
        .ok_or(NoTarget::NoSynchronizedReplica {
            highest_sequence: votes.iter().filter_map(|v| v.sequence).max(),
        })
}

/// Every replica that may be promoted (see [`promotion_target`]), in no order; an error when
/// too few voters answered to know. Those last seen synchronized come first; when none was (a
/// primary that went away while its secondaries were still being seeded, say), any replica with
/// the latest configuration may try, and SQL Server's own check decides: `FAILOVER` refuses one
/// that was not synchronized (41142), which is then skipped.
fn candidates(voters: usize, votes: &[Vote]) -> Result<impl Iterator<Item = &Vote>, NoTarget> {
    let needed = voters / 2 + 1;
    if votes.len() < needed {
        return Err(NoTarget::TooFewAnswers {
            answered: votes.len(),
            needed,
        });
    }
    let highest_sequence = votes.iter().filter_map(|v| v.sequence).max();
    let latest = move |v: &&Vote| {
        !v.arbiter && !v.refused && v.sequence.is_some() && v.sequence == highest_sequence
    };
    let any_synchronized = votes.iter().filter(latest).any(|v| v.synchronized);
    Ok(votes
        .iter()
        .filter(latest)
        .filter(move |v| v.synchronized || !any_synchronized))
}

/// Everything [`next`] decides on.
#[derive(Clone, Debug)]
pub struct View<'a> {
    /// This coordinator's pod.
    pub me: &'a str,
    pub server: &'a Server,
    pub lease: &'a Lease,
    /// Voters of the group: its replicas and, for an even count, the arbiter.
    pub voters: usize,
    /// The answers collected this tick, this coordinator's own among them.
    pub votes: &'a [Vote],
    /// Every replica the spec wants answered, and none holds a group: the group is new.
    pub all_answered_without_group: bool,
    /// This coordinator began fencing its server (it went silent, or the pod is stopping):
    /// it gives up the Lease even if the server comes back.
    pub fencing: bool,
    /// The pod is stopping (SIGTERM).
    pub stopping: bool,
    /// The spec no longer wants this pod (the group is scaled down): it hands the primary role
    /// over as a stopping pod does, with no deadline, and takes nothing.
    pub leaving: bool,
    /// It has been stopping too long to wait any more for a secondary to catch up.
    pub handover_expired: bool,
    /// The replica the operator wants primary (a planned switchover, while an ops request
    /// holds the database): a primary hands its role to it once SQL Server would promote it.
    pub switchover_to: Option<&'a str>,
    /// Until when this coordinator promised a primary not to take the Lease (failsafe).
    pub promised_until: Option<Instant>,
    /// When the last write lease this coordinator gave surely ends.
    pub write_lease_end: Option<Instant>,
    pub now: Instant,
    pub timing: &'a Timing,
}

/// The one move a coordinator makes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// It holds the Lease and its server is primary: renew the Lease, give the write lease while
    /// [`Timing::may_give_write_lease`] allows, label the pods, keep the group as the spec says.
    Lead,
    /// Create the group here: it holds the Lease and no replica holds a group yet.
    Bootstrap,
    /// It holds the Lease and is the target: `FAILOVER` to its own server.
    Promote,
    /// Stop the local primary from taking writes (`OFFLINE`), keeping the Lease until that or
    /// the end of its write lease makes it safe to let go.
    Fence,
    /// Let go of the Lease: to `to` at once (a handover, which needs no election), or free.
    Release { to: Option<String> },
    /// Take the Lease: it is free or expired, and this replica is the target.
    Acquire,
    /// Its server is primary or resolving while another holds the Lease (or nobody does): make
    /// it a secondary (`OFFLINE` first when it is primary).
    Demote { offline_first: bool },
    /// Its server holds no group and another replica leads one: join it.
    Join,
    /// Nothing to do: a secondary following the primary, or nothing it may do yet.
    Wait(Wait),
}

/// Why a coordinator waits, in words for its log, Events and the database's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    Following,
    /// Its server did not answer the last probe; one more and it counts as gone.
    ServerNotAnswering,
    /// Fencing: the write lease it gave ends at this instant.
    WriteLeaseRunning,
    /// The group is new, and not every replica answered yet.
    ReplicasToAnswer,
    /// No replica may be promoted.
    NoTarget(NoTarget),
    /// The Lease is held by another and not yet expired, or it promised a primary to wait.
    LeaseHeld,
    /// The API server does not answer: nobody is promoted without the Lease.
    ApiServer,
    /// The spec no longer wants this pod: it waits for the operator to remove it.
    Leaving,
}

/// The next move of the coordinator of `view.me`.
pub fn next(view: &View<'_>) -> Next {
    match view.lease {
        Lease::Mine { .. } => holding(view),
        Lease::Theirs { changed, .. } => {
            let expired = view.timing.lease_expired(*changed, view.now);
            not_holding(view, expired)
        }
        Lease::Free => not_holding(view, true),
        Lease::Offered => {
            let valid = candidates(view.voters, view.votes)
                .is_ok_and(|mut valid| valid.any(|v| v.member == view.me));
            if valid && !view.stopping && !view.leaving {
                Next::Acquire
            } else {
                // Not a replica SQL Server would promote (any more): the others may take it.
                not_holding(view, true)
            }
        }
        Lease::Unknown => match view.server {
            // No proof of holding the Lease is recent enough: a primary must not stay one.
            Server::Replica {
                role: Role::Primary,
                ..
            } => Next::Demote {
                offline_first: true,
            },
            _ => Next::Wait(Wait::ApiServer),
        },
    }
}

/// The replica a planned switchover hands the primary role to: the one the operator names,
/// once SQL Server would promote it (until then the primary serves on).
fn switchover_target<'a>(view: &View<'a>) -> Option<&'a str> {
    let target = view.switchover_to.filter(|t| *t != view.me)?;
    let valid =
        candidates(view.voters, view.votes).is_ok_and(|mut c| c.any(|v| v.member == target));
    valid.then_some(target)
}

fn holding(view: &View<'_>) -> Next {
    let gone = match view.server {
        Server::Silent { failures } => view.timing.server_gone(*failures),
        _ => false,
    };
    let switching = switchover_target(view).is_some()
        && matches!(
            view.server,
            Server::Replica {
                role: Role::Primary,
                ..
            }
        );
    if view.stopping || view.leaving || view.fencing || gone || switching {
        return let_go(view);
    }
    match view.server {
        Server::Replica {
            role: Role::Primary,
            ..
        } => Next::Lead,
        Server::Silent { .. } => Next::Wait(Wait::ServerNotAnswering),
        Server::Replica { .. } => {
            // It holds the Lease (it won it, or it was handed to it): it promotes its own replica
            // if SQL Server would; the lowest ordinal only decides who tries to take a Lease.
            let valid = candidates(view.voters, view.votes)
                .is_ok_and(|mut valid| valid.any(|v| v.member == view.me));
            if valid {
                return Next::Promote;
            }
            match promotion_target(view.voters, view.votes, Some(view.me)) {
                // Another replica can be promoted and this one cannot (it was refused, or is
                // behind): hand over rather than hold everyone up.
                Ok(target) => Next::Release {
                    to: Some(target.to_owned()),
                },
                Err(why) => Next::Wait(Wait::NoTarget(why)),
            }
        }
        Server::NoGroup if view.all_answered_without_group => Next::Bootstrap,
        Server::NoGroup if view.votes.iter().any(|v| v.has_group) => Next::Release {
            to: promotion_target(view.voters, view.votes, Some(view.me))
                .ok()
                .map(str::to_owned),
        },
        Server::NoGroup => Next::Wait(Wait::ReplicasToAnswer),
    }
}

/// A holder that must stop being primary: fence first, then hand the Lease to the best target
/// (the switchover's, when SQL Server would promote it), or free it, once its server can no
/// longer take writes.
fn let_go(view: &View<'_>) -> Next {
    let writes_possible = match view.server {
        // A stopping (or leaving) primary goes on serving until a synchronized secondary has
        // its latest configuration (a switchover, not a failover), for as long as it may wait.
        Server::Replica {
            role: Role::Primary,
            ..
        } if (view.stopping || view.leaving)
            && !view.fencing
            && !view.handover_expired
            && promotion_target(view.voters, view.votes, Some(view.me)).is_err() =>
        {
            return Next::Lead;
        }
        Server::Replica {
            role: Role::Primary,
            ..
        } => return Next::Fence,
        // A silent server may be frozen, not dead: it can take writes until its lease ends.
        Server::Silent { .. } => view.write_lease_end.is_some_and(|end| view.now < end),
        Server::Replica { .. } | Server::NoGroup => false,
    };
    if writes_possible {
        return Next::Wait(Wait::WriteLeaseRunning);
    }
    let to = switchover_target(view)
        .or_else(|| promotion_target(view.voters, view.votes, Some(view.me)).ok());
    Next::Release {
        to: to.map(str::to_owned),
    }
}

fn not_holding(view: &View<'_>, lease_takeable: bool) -> Next {
    match view.server {
        Server::Replica {
            role: Role::Primary,
            ..
        } => {
            return Next::Demote {
                offline_first: true,
            };
        }
        Server::Replica {
            role: Role::Resolving,
            ..
        } if matches!(view.lease, Lease::Theirs { .. }) && !lease_takeable => {
            return Next::Demote {
                offline_first: false,
            };
        }
        Server::NoGroup
            if !lease_takeable
                && view
                    .votes
                    .iter()
                    .any(|v| v.has_group && v.member != view.me) =>
        {
            return Next::Join;
        }
        _ if view.leaving => return Next::Wait(Wait::Leaving),
        _ => {}
    }
    let promised = view.promised_until.is_some_and(|until| view.now < until);
    if !lease_takeable || promised || view.stopping || view.fencing {
        return Next::Wait(match view.server {
            Server::Replica {
                role: Role::Secondary,
                ..
            } if !promised => Wait::Following,
            _ => Wait::LeaseHeld,
        });
    }
    let new_group = matches!(view.server, Server::NoGroup) && view.all_answered_without_group;
    if new_group {
        // The first primary: the lowest ordinal among the replicas, once all answered.
        let first = view
            .votes
            .iter()
            .filter(|v| !v.arbiter)
            .min_by_key(|v| v.ordinal);
        return match first {
            Some(v) if v.member == view.me => Next::Acquire,
            _ => Next::Wait(Wait::LeaseHeld),
        };
    }
    match promotion_target(view.voters, view.votes, None) {
        Ok(target) if target == view.me => Next::Acquire,
        Ok(_) => Next::Wait(Wait::LeaseHeld),
        Err(why) => Next::Wait(Wait::NoTarget(why)),
    }
}

#[cfg(test)]
mod tests;
