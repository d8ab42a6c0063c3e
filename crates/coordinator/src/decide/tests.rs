//! The decisions, case by case: who may be promoted, when to fence, when to wait.

use std::time::{Duration, Instant};

use super::*;

fn vote(member: &str, sequence: i64, synchronized: bool) -> Vote {
    Vote {
        member: member.into(),
        ordinal: member.rsplit('-').next().unwrap().parse().unwrap(),
        arbiter: false,
        sequence: Some(sequence),
        synchronized,
        refused: false,
        has_group: true,
    }
}

fn arbiter(sequence: Option<i64>) -> Vote {
    Vote {
        member: "ag-arbiter-0".into(),
        ordinal: 0,
        arbiter: true,
        sequence,
        synchronized: false,
        refused: false,
        has_group: false,
    }
}

fn no_group(member: &str) -> Vote {
    Vote {
        sequence: None,
        synchronized: false,
        has_group: false,
        ..vote(member, 0, false)
    }
}

const PRIMARY: Server = Server::Replica {
    role: Role::Primary,
    sequence: 7,
};
const SECONDARY: Server = Server::Replica {
    role: Role::Secondary,
    sequence: 7,
};
const RESOLVING: Server = Server::Replica {
    role: Role::Resolving,
    sequence: 7,
};

/// A view of `me`, with defaults a test overrides: three voters that all answered.
struct Case {
    me: &'static str,
    server: Server,
    lease: Lease,
    voters: usize,
    votes: Vec<Vote>,
    all_answered_without_group: bool,
    fencing: bool,
    stopping: bool,
    leaving: bool,
    handover_expired: bool,
    switchover_to: Option<&'static str>,
    promised_until: Option<Instant>,
    write_lease_end: Option<Instant>,
    now: Instant,
    timing: Timing,
}

impl Case {
    fn new(me: &'static str, server: Server, lease: Lease, now: Instant) -> Self {
        Self {
            me,
            server,
            lease,
            voters: 3,
            votes: vec![
                vote("ag-0", 7, true),
                vote("ag-1", 7, true),
                vote("ag-2", 7, true),
            ],
            all_answered_without_group: false,
            fencing: false,
            stopping: false,
            leaving: false,
            handover_expired: false,
            switchover_to: None,
            promised_until: None,
            write_lease_end: None,
            now,
            timing: Timing::default(),
        }
    }

    fn next(&self) -> Next {
        next(&View {
            me: self.me,
            server: &self.server,
            lease: &self.lease,
            voters: self.voters,
            votes: &self.votes,
            all_answered_without_group: self.all_answered_without_group,
            fencing: self.fencing,
            stopping: self.stopping,
            leaving: self.leaving,
            handover_expired: self.handover_expired,
            switchover_to: self.switchover_to,
            promised_until: self.promised_until,
            write_lease_end: self.write_lease_end,
            now: self.now,
            timing: &self.timing,
        })
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn mine(now: Instant) -> Lease {
    Lease::Mine { anchor: now }
}

fn theirs(holder: &str, changed: Instant) -> Lease {
    Lease::Theirs {
        holder: holder.into(),
        changed,
    }
}

mod who_may_be_promoted {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_lowest_ordinal_among_synchronized_replicas_with_the_highest_sequence() {
        let votes = [
            vote("ag-0", 7, true),
            vote("ag-1", 8, true),
            vote("ag-2", 8, true),
        ];
        assert_eq!(promotion_target(3, &votes, None), Ok("ag-1"));
        assert_eq!(promotion_target(3, &votes, Some("ag-1")), Ok("ag-2"));
    }

    #[test]
    fn a_synchronized_replica_goes_first_and_sql_server_judges_the_others() {
        let votes = [vote("ag-1", 8, false), vote("ag-2", 8, true)];
        assert_eq!(promotion_target(3, &votes, None), Ok("ag-2"));
        // None was seen synchronized: the one with the latest configuration tries, and
        // FAILOVER refuses it (41142) unless SQL Server knows it was synchronized.
        let mut votes = [vote("ag-1", 8, false), vote("ag-2", 7, true)];
        assert_eq!(promotion_target(3, &votes, None), Ok("ag-1"));
        votes[0].refused = true;
        assert_eq!(
            promotion_target(3, &votes, None),
            Err(NoTarget::NoSynchronizedReplica {
                highest_sequence: Some(8)
            })
        );
    }

    #[test]
    fn never_one_behind_a_configuration_change_another_voter_saw() {
        // ag-1 missed a change ag-2 saw: ag-2 is promoted even at a higher ordinal.
        let votes = [vote("ag-1", 7, true), vote("ag-2", 8, true)];
        assert_eq!(promotion_target(3, &votes, None), Ok("ag-2"));
    }

    #[test]
    fn a_majority_of_voters_must_answer() {
        let votes = [vote("ag-1", 7, true)];
        assert_eq!(
            promotion_target(3, &votes, None),
            Err(NoTarget::TooFewAnswers {
                answered: 1,
                needed: 2
            })
        );
        assert_eq!(promotion_target(5, &votes[..], None).is_err(), true);
    }

    #[test]
    fn the_arbiter_counts_for_the_majority_and_its_sequence_but_is_never_promoted() {
        // Two replicas and an arbiter: the primary ag-0 is gone; ag-1 and the arbiter answer.
        let votes = [vote("ag-1", 7, true), arbiter(Some(7))];
        assert_eq!(promotion_target(3, &votes, None), Ok("ag-1"));
        // The arbiter saw a later configuration than ag-1 has: nobody.
        let votes = [vote("ag-1", 7, true), arbiter(Some(8))];
        assert!(promotion_target(3, &votes, None).is_err());
        // The arbiter alone is not a target.
        assert!(promotion_target(1, &[arbiter(Some(7))], None).is_err());
    }

    #[test]
    fn a_replica_sql_server_refused_is_skipped() {
        let mut votes = [vote("ag-1", 7, true), vote("ag-2", 7, true)];
        votes[0].refused = true;
        assert_eq!(promotion_target(3, &votes, None), Ok("ag-2"));
    }

    #[test]
    fn the_reasons_read_as_sentences() {
        let why = NoTarget::TooFewAnswers {
            answered: 1,
            needed: 2,
        };
        assert!(
            why.to_string()
                .starts_with("only 1 of the group's voters answered")
        );
        let why = NoTarget::NoSynchronizedReplica {
            highest_sequence: Some(8),
        };
        assert!(why.to_string().contains("sequence number 8"));
    }
}

mod the_holder {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn leads_while_its_server_is_primary() {
        let now = Instant::now();
        assert_eq!(
            Case::new("ag-0", PRIMARY, mine(now), now).next(),
            Next::Lead
        );
    }

    #[test]
    fn promotes_its_server_when_it_is_the_target() {
        let now = Instant::now();
        let mut case = Case::new("ag-1", SECONDARY, mine(now), now);
        case.votes = vec![vote("ag-1", 7, true), vote("ag-2", 7, true)];
        assert_eq!(case.next(), Next::Promote);
        case.server = RESOLVING;
        assert_eq!(case.next(), Next::Promote);
    }

    #[test]
    fn promotes_its_own_replica_though_a_lower_ordinal_could_be_promoted_too() {
        // The Lease was handed to ag-2: it does not pass it on to ag-1.
        let now = Instant::now();
        let case = Case::new("ag-2", SECONDARY, mine(now), now);
        assert_eq!(case.next(), Next::Promote);
    }

    #[test]
    fn hands_over_when_sql_server_refused_its_own_failover() {
        let now = Instant::now();
        let mut case = Case::new("ag-1", SECONDARY, mine(now), now);
        case.votes = vec![vote("ag-1", 7, true), vote("ag-2", 7, true)];
        case.votes[0].refused = true;
        assert_eq!(
            case.next(),
            Next::Release {
                to: Some("ag-2".into())
            }
        );
    }

    #[test]
    fn waits_holding_the_lease_when_nobody_may_be_promoted() {
        let now = Instant::now();
        let mut case = Case::new("ag-1", SECONDARY, mine(now), now);
        case.votes = vec![vote("ag-1", 7, false)];
        assert_eq!(
            case.next(),
            Next::Wait(Wait::NoTarget(NoTarget::TooFewAnswers {
                answered: 1,
                needed: 2
            }))
        );
    }

    #[test]
    fn creates_the_group_only_when_every_replica_answered_without_one() {
        let now = Instant::now();
        let mut case = Case::new("ag-0", Server::NoGroup, mine(now), now);
        case.votes = vec![no_group("ag-0"), no_group("ag-1")];
        assert_eq!(case.next(), Next::Wait(Wait::ReplicasToAnswer));
        case.all_answered_without_group = true;
        assert_eq!(case.next(), Next::Bootstrap);
    }

    #[test]
    fn with_no_group_of_its_own_hands_over_to_a_replica_that_has_it() {
        // Its data volume was replaced, say: it must not create a second group.
        let now = Instant::now();
        let mut case = Case::new("ag-0", Server::NoGroup, mine(now), now);
        case.votes = vec![
            no_group("ag-0"),
            vote("ag-1", 7, true),
            vote("ag-2", 7, true),
        ];
        assert_eq!(
            case.next(),
            Next::Release {
                to: Some("ag-1".into())
            }
        );
    }

    #[test]
    fn fences_a_primary_when_the_pod_stops_then_hands_over() {
        let now = Instant::now();
        let mut case = Case::new("ag-0", PRIMARY, mine(now), now);
        case.stopping = true;
        assert_eq!(case.next(), Next::Fence);
        // OFFLINE worked: the server resolves, and the best other replica gets the Lease.
        case.server = RESOLVING;
        assert_eq!(
            case.next(),
            Next::Release {
                to: Some("ag-1".into())
            }
        );
    }

    #[test]
    fn a_stopping_primary_serves_until_a_secondary_has_its_latest_configuration() {
        // ag-0's last configuration change (sequence 8) has not reached its secondaries yet.
        let now = Instant::now();
        let mut case = Case::new("ag-0", PRIMARY, mine(now), now);
        case.stopping = true;
        case.votes = vec![
            vote("ag-0", 8, true),
            vote("ag-1", 7, true),
            vote("ag-2", 7, true),
        ];
        assert_eq!(case.next(), Next::Lead);
        case.votes[1].sequence = Some(8);
        assert_eq!(case.next(), Next::Fence);
        // Not for ever: the pod's grace period is limited.
        case.votes[1].sequence = Some(7);
        case.handover_expired = true;
        assert_eq!(case.next(), Next::Fence);
    }

    #[test]
    fn waits_out_the_write_lease_of_a_silent_server_before_it_lets_go() {
        // A frozen server still accepts connections and may commit until its write lease ends.
        let now = Instant::now();
        let mut case = Case::new("ag-0", Server::Silent { failures: 2 }, mine(now), now);
        case.write_lease_end = Some(now + secs(3));
        assert_eq!(case.next(), Next::Wait(Wait::WriteLeaseRunning));
        case.now = now + secs(3);
        assert_eq!(
            case.next(),
            Next::Release {
                to: Some("ag-1".into())
            }
        );
    }

    #[test]
    fn does_not_give_up_after_one_failed_probe() {
        let now = Instant::now();
        let case = Case::new("ag-0", Server::Silent { failures: 1 }, mine(now), now);
        assert_eq!(case.next(), Next::Wait(Wait::ServerNotAnswering));
    }

    #[test]
    fn keeps_letting_go_once_fencing_began_even_if_its_server_answers_again() {
        // A restarted server comes back resolving; the failover to a secondary goes on.
        let now = Instant::now();
        let mut case = Case::new("ag-0", RESOLVING, mine(now), now);
        case.fencing = true;
        assert_eq!(
            case.next(),
            Next::Release {
                to: Some("ag-1".into())
            }
        );
        case.server = PRIMARY;
        assert_eq!(case.next(), Next::Fence);
    }

    #[test]
    fn frees_the_lease_when_nobody_can_take_it_over() {
        let now = Instant::now();
        let mut case = Case::new("ag-0", RESOLVING, mine(now), now);
        case.stopping = true;
        case.votes = vec![vote("ag-0", 7, true), vote("ag-1", 7, false)];
        assert_eq!(case.next(), Next::Release { to: None });
    }
}

mod the_others {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_secondary_follows_while_the_lease_is_held() {
        let now = Instant::now();
        let case = Case::new("ag-1", SECONDARY, theirs("ag-0", now), now + secs(9));
        assert_eq!(case.next(), Next::Wait(Wait::Following));
    }

    #[test]
    fn the_target_takes_an_expired_lease_and_no_one_else_does() {
        let now = Instant::now();
        let mut case = Case::new("ag-1", SECONDARY, theirs("ag-0", now), now + secs(10));
        case.votes = vec![vote("ag-1", 7, true), vote("ag-2", 7, true)];
        assert_eq!(case.next(), Next::Acquire);
        case.me = "ag-2";
        assert_eq!(case.next(), Next::Wait(Wait::LeaseHeld));
    }

    #[test]
    fn the_target_takes_a_freed_lease_at_once() {
        let now = Instant::now();
        let mut case = Case::new("ag-1", SECONDARY, Lease::Free, now);
        case.votes = vec![vote("ag-1", 7, true), vote("ag-2", 7, true)];
        assert_eq!(case.next(), Next::Acquire);
    }

    #[test]
    fn a_replica_the_lease_was_handed_to_takes_it_though_another_would_be_the_target() {
        let now = Instant::now();
        // ag-0 handed over to ag-1 and is itself a synchronized secondary now.
        let mut case = Case::new("ag-1", SECONDARY, Lease::Offered, now);
        assert_eq!(case.next(), Next::Acquire);
        // ag-1 fell behind meanwhile: the usual target takes the Lease instead.
        case.votes[1].synchronized = false;
        assert_eq!(case.next(), Next::Wait(Wait::LeaseHeld));
        case.me = "ag-0";
        case.server = SECONDARY;
        assert_eq!(case.next(), Next::Acquire);
    }

    #[test]
    fn a_promise_to_the_primary_holds_even_when_the_lease_expired() {
        let now = Instant::now();
        let mut case = Case::new("ag-1", SECONDARY, theirs("ag-0", now), now + secs(12));
        case.votes = vec![vote("ag-1", 7, true), vote("ag-2", 7, true)];
        case.promised_until = Some(now + secs(13));
        assert_eq!(case.next(), Next::Wait(Wait::LeaseHeld));
        case.now = now + secs(13);
        assert_eq!(case.next(), Next::Acquire);
    }

    #[test]
    fn a_primary_without_the_lease_is_taken_offline() {
        let now = Instant::now();
        for lease in [theirs("ag-1", now), Lease::Free, Lease::Unknown] {
            let case = Case::new("ag-0", PRIMARY, lease, now);
            assert_eq!(
                case.next(),
                Next::Demote {
                    offline_first: true
                }
            );
        }
    }

    #[test]
    fn a_resolving_old_primary_becomes_a_secondary_of_the_holder() {
        let now = Instant::now();
        let case = Case::new("ag-0", RESOLVING, theirs("ag-1", now), now);
        assert_eq!(
            case.next(),
            Next::Demote {
                offline_first: false
            }
        );
    }

    #[test]
    fn a_replica_without_the_group_joins_the_one_another_leads() {
        let now = Instant::now();
        let mut case = Case::new("ag-2", Server::NoGroup, theirs("ag-0", now), now);
        case.votes = vec![vote("ag-0", 7, true), no_group("ag-2")];
        assert_eq!(case.next(), Next::Join);
    }

    #[test]
    fn the_first_primary_is_the_lowest_ordinal_once_all_answered() {
        let now = Instant::now();
        let mut case = Case::new("ag-0", Server::NoGroup, Lease::Free, now);
        case.votes = vec![no_group("ag-0"), no_group("ag-1"), no_group("ag-2")];
        assert_eq!(
            case.next(),
            Next::Wait(Wait::NoTarget(NoTarget::NoSynchronizedReplica {
                highest_sequence: None
            }))
        );
        case.all_answered_without_group = true;
        assert_eq!(case.next(), Next::Acquire);
        case.me = "ag-1";
        assert_eq!(case.next(), Next::Wait(Wait::LeaseHeld));
    }

    #[test]
    fn nobody_is_promoted_while_the_api_server_does_not_answer() {
        let now = Instant::now();
        let case = Case::new("ag-1", SECONDARY, Lease::Unknown, now);
        assert_eq!(case.next(), Next::Wait(Wait::ApiServer));
    }

    #[test]
    fn a_stopping_replica_takes_no_lease() {
        let now = Instant::now();
        let mut case = Case::new("ag-1", SECONDARY, Lease::Free, now);
        case.votes = vec![vote("ag-1", 7, true), vote("ag-2", 7, true)];
        case.stopping = true;
        assert_eq!(case.next(), Next::Wait(Wait::Following));
    }

    #[test]
    fn a_leaving_replica_takes_nothing_and_joins_nothing() {
        // The group was scaled from 4 replicas to 3: ag-3 is no longer a voter.
        let now = Instant::now();
        for lease in [Lease::Free, Lease::Offered, theirs("ag-0", now - secs(60))] {
            let mut case = Case::new("ag-3", SECONDARY, lease, now);
            case.leaving = true;
            assert_eq!(case.next(), Next::Wait(Wait::Leaving));
            case.server = Server::NoGroup;
            assert_eq!(case.next(), Next::Wait(Wait::Leaving));
        }
        // A primary it must not stay.
        let mut case = Case::new("ag-3", PRIMARY, theirs("ag-0", now), now);
        case.leaving = true;
        assert_eq!(
            case.next(),
            Next::Demote {
                offline_first: true
            }
        );
    }
}

mod leaving {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_leaving_primary_serves_until_a_wanted_secondary_can_take_over_then_hands_over() {
        let now = Instant::now();
        let mut case = Case::new("ag-3", PRIMARY, mine(now), now);
        case.leaving = true;
        // The voters are those of the group it leaves behind, and its own answer.
        case.votes = vec![
            vote("ag-0", 8, false),
            vote("ag-1", 8, false),
            vote("ag-2", 7, true),
            vote("ag-3", 8, true),
        ];
        assert_eq!(
            case.next(),
            Next::Lead,
            "no synchronized secondary has its latest change"
        );
        // No deadline: nobody is stopping the pod while the group still needs it.
        case.now = now + secs(600);
        assert_eq!(case.next(), Next::Lead);
        case.votes[1].synchronized = true;
        assert_eq!(case.next(), Next::Fence);
        case.server = RESOLVING;
        assert_eq!(
            case.next(),
            Next::Release {
                to: Some("ag-1".into())
            }
        );
    }
}

mod switchover {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_primary_hands_its_role_to_the_replica_the_operator_names() {
        let now = Instant::now();
        let mut case = Case::new("ag-0", PRIMARY, mine(now), now);
        case.switchover_to = Some("ag-2");
        assert_eq!(case.next(), Next::Fence);
        // OFFLINE worked: the Lease goes to the named replica, not to the lowest ordinal.
        case.server = RESOLVING;
        case.fencing = true;
        assert_eq!(
            case.next(),
            Next::Release {
                to: Some("ag-2".into())
            }
        );
    }

    #[test]
    fn the_primary_serves_on_until_sql_server_would_promote_the_named_replica() {
        let now = Instant::now();
        let mut case = Case::new("ag-0", PRIMARY, mine(now), now);
        case.switchover_to = Some("ag-2");
        case.votes[2].synchronized = false;
        assert_eq!(case.next(), Next::Lead, "not synchronized");
        case.votes[2] = vote("ag-2", 6, true);
        assert_eq!(case.next(), Next::Lead, "behind a change of the group");
        case.votes.pop();
        assert_eq!(case.next(), Next::Lead, "not answering");
        case.switchover_to = Some("ag-arbiter-0");
        case.votes.push(arbiter(Some(7)));
        assert_eq!(case.next(), Next::Lead, "never the arbiter");
    }

    #[test]
    fn a_switchover_to_the_primary_itself_changes_nothing() {
        let now = Instant::now();
        let mut case = Case::new("ag-1", PRIMARY, mine(now), now);
        case.switchover_to = Some("ag-1");
        assert_eq!(case.next(), Next::Lead);
    }

    #[test]
    fn a_fenced_primary_whose_target_went_away_hands_over_to_the_best_other() {
        let now = Instant::now();
        let mut case = Case::new("ag-0", RESOLVING, mine(now), now);
        case.fencing = true;
        case.switchover_to = Some("ag-2");
        case.votes[2].synchronized = false;
        assert_eq!(
            case.next(),
            Next::Release {
                to: Some("ag-1".into())
            }
        );
    }

    #[test]
    fn the_named_replica_takes_the_lease_handed_to_it_and_the_others_wait() {
        let now = Instant::now();
        let mut case = Case::new("ag-2", SECONDARY, Lease::Offered, now);
        case.switchover_to = Some("ag-2");
        assert_eq!(case.next(), Next::Acquire);
        let mut other = Case::new("ag-1", SECONDARY, theirs("ag-2", now), now);
        other.switchover_to = Some("ag-2");
        assert_eq!(other.next(), Next::Wait(Wait::Following));
    }
}
