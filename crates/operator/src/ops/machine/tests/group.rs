//! An availability group's restarts: each replica synchronized before the next pod goes, the
//! primary last and only once the coordinators handed its role over (or, with `apply: Always`
//! and nobody to take it, in place).

use mssql_api::labels::{ROLE_PRIMARY, ROLE_SECONDARY};
use mssql_api::pods::{EndpointCertificates, SQL_PRIMARY, SQL_RESOLVING, SQL_SECONDARY};

use super::*;

const RUNNING: [&str; 4] = [
    "Restart",
    PAUSE_SUCCEEDED,
    UPDATE_PETSETS,
    "CheckPodRunning--db-1",
];

fn report(role: &str, synchronized: bool) -> Option<ReplicaReport> {
    Some(ReplicaReport {
        role: Some(role.to_owned()),
        synchronized,
        connected: true,
        since: "2026-01-01T00:00:00Z".to_owned(),
        replicas: Vec::new(),
        endpoint: None,
    })
}

fn replica(name: &str, restarted: bool, label: &str, server: Option<ReplicaReport>) -> PodState {
    PodState {
        role: Some(label.to_owned()),
        replica: server,
        ..pod(name, restarted)
    }
}

/// db-1 and db-2 secondaries, db-0 the primary (last); `restarted` says which are back.
fn group(restarted: &[&str], now: i64) -> Observed {
    let back = |name| restarted.contains(&name);
    Observed {
        pods: vec![
            replica(
                "db-1",
                back("db-1"),
                ROLE_SECONDARY,
                report(SQL_SECONDARY, true),
            ),
            replica(
                "db-2",
                back("db-2"),
                ROLE_SECONDARY,
                report(SQL_SECONDARY, true),
            ),
            replica(
                "db-0",
                back("db-0"),
                ROLE_PRIMARY,
                report(SQL_PRIMARY, true),
            ),
        ],
        pods_recorded: true,
        group: true,
        ..observed(now)
    }
}

fn restart(done: &[&str], done_at: i64) -> MssqlServerOpsRequest {
    ops("Restart", None, "Progressing", done, done_at)
}

#[test]
fn a_restarted_replica_must_be_synchronized_before_the_next_pod_goes() {
    let step = restart(&RUNNING, 0);
    let mut seeding = group(&["db-1"], 5);
    seeding.pods[0].replica = report(SQL_SECONDARY, false);
    assert_eq!(
        next_step(&step, &seeding),
        Step::WaitForReplica {
            pod: "db-1".into(),
            why: "its server reports SECONDARY, connected, not synchronized".into()
        }
    );
    seeding.pods[0].replica = None;
    assert!(matches!(
        next_step(&step, &seeding),
        Step::WaitForReplica { why, .. } if why == "its coordinator has not reported its server yet"
    ));
    assert_eq!(
        next_step(&step, &group(&["db-1"], 5)),
        Step::ReplicaSynchronized { pod: "db-1".into() }
    );
    let synchronized = restart(
        &[&RUNNING[..], &["CheckReplicaSynchronized--db-1"]].concat(),
        0,
    );
    assert_eq!(
        next_step(&synchronized, &group(&["db-1"], 5)),
        Step::EvictPod {
            pod: "db-2".into(),
            again: false
        }
    );
    // Not for ever.
    seeding.now = at(301);
    match next_step(&step, &seeding) {
        Step::Fail { step, message } => {
            assert_eq!(step, "CheckReplicaSynchronized--db-1");
            assert!(
                message.contains("did not synchronize with its group within 300s"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_arbiter_runs_no_server_and_is_not_waited_for() {
    let step = restart(
        &[
            "Restart",
            PAUSE_SUCCEEDED,
            UPDATE_PETSETS,
            "CheckPodRunning--db-arbiter-0",
        ],
        0,
    );
    let observed = Observed {
        pods: vec![
            PodState {
                arbiter: true,
                ..pod("db-arbiter-0", true)
            },
            replica("db-1", false, ROLE_SECONDARY, report(SQL_SECONDARY, true)),
        ],
        ..group(&[], 5)
    };
    assert_eq!(
        next_step(&step, &observed),
        Step::EvictPod {
            pod: "db-1".into(),
            again: false
        }
    );
}

fn secondaries_back() -> Vec<String> {
    [
        &RUNNING[..],
        &[
            "CheckReplicaSynchronized--db-1",
            "CheckPodRunning--db-2",
            "CheckReplicaSynchronized--db-2",
        ],
    ]
    .concat()
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn with(done: &[String], more: &[&str], done_at: i64) -> MssqlServerOpsRequest {
    let all: Vec<&str> = done
        .iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect();
    restart(&all, done_at)
}

#[test]
fn the_primary_hands_its_role_to_a_synchronized_secondary_on_the_new_material_before_it_restarts() {
    let step = with(&secondaries_back(), &[], 0);
    assert_eq!(
        next_step(&step, &group(&["db-1", "db-2"], 5)),
        Step::RequestSwitchover {
            from: "db-0".into(),
            to: "db-1".into()
        },
        "the lowest ordinal"
    );
    let mut behind = group(&["db-1", "db-2"], 5);
    behind.pods[0].replica = report(SQL_SECONDARY, false);
    assert_eq!(
        next_step(&step, &behind),
        Step::RequestSwitchover {
            from: "db-0".into(),
            to: "db-2".into()
        },
        "db-1 is not synchronized"
    );

    // Asked: the request waits until another replica is primary and labelled, and db-0's
    // server is not.
    let asked = with(&secondaries_back(), &["SwitchoverPrimary--db-0"], 0);
    let mut moving = group(&["db-1", "db-2"], 6);
    moving.pods[2].replica = report(SQL_RESOLVING, true);
    assert_eq!(
        next_step(&asked, &moving),
        Step::WaitForSwitchover {
            from: "db-0".into(),
            to: Some("db-1".into()),
            why: "no other replica is labelled primary with its server PRIMARY yet".into()
        },
        "asked again: the annotation does not name it"
    );
    // Asked for db-1, whose report changes as it takes over: it stays the target.
    moving.switchover_to = Some("db-1".into());
    moving.pods[0].replica = report(SQL_SECONDARY, false);
    assert!(matches!(
        next_step(&asked, &moving),
        Step::WaitForSwitchover { to: None, .. }
    ));
    // Its pod went away: another is asked for.
    moving.pods[0].terminating = true;
    assert!(matches!(
        next_step(&asked, &moving),
        Step::WaitForSwitchover { to: Some(to), .. } if to == "db-2"
    ));
    let mut promoted_not_labelled = group(&["db-1", "db-2"], 6);
    promoted_not_labelled.pods[0].replica = report(SQL_PRIMARY, true);
    assert!(matches!(
        next_step(&asked, &promoted_not_labelled),
        Step::WaitForSwitchover { why, .. } if why == "db-0's server still says PRIMARY"
    ));
    // The labels changed hands (db-0 now sorts among the secondaries).
    let switched = Observed {
        pods: vec![
            replica("db-0", false, ROLE_SECONDARY, report(SQL_SECONDARY, false)),
            replica("db-2", true, ROLE_SECONDARY, report(SQL_SECONDARY, true)),
            replica("db-1", true, ROLE_PRIMARY, report(SQL_PRIMARY, true)),
        ],
        ..group(&[], 7)
    };
    assert_eq!(
        next_step(&asked, &switched),
        Step::SwitchedOver {
            from: "db-0".into(),
            to: "db-1".into()
        }
    );
    let recorded = with(
        &secondaries_back(),
        &["SwitchoverPrimary--db-0", "CheckPrimarySwitched--db-0"],
        7,
    );
    assert_eq!(
        next_step(&recorded, &switched),
        Step::EvictPod {
            pod: "db-0".into(),
            again: false
        },
        "the old primary restarts as a secondary"
    );
}

#[test]
fn a_switchover_that_does_not_happen_fails_the_request_with_the_primary_untouched() {
    let asked = with(&secondaries_back(), &["SwitchoverPrimary--db-0"], 0);
    match next_step(&asked, &group(&["db-1", "db-2"], 301)) {
        Step::Fail { step, message } => {
            assert_eq!(step, "CheckPrimarySwitched--db-0");
            assert_eq!(
                message,
                "the primary role did not leave db-0 within 300s: db-0's server still says PRIMARY; db-0 was not restarted"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_nobody_to_take_over_the_primary_waits_or_with_apply_always_restarts_in_place() {
    let step = with(&secondaries_back(), &[], 0);
    let mut unsynchronized = group(&["db-1", "db-2"], 5);
    unsynchronized.pods[0].replica = report(SQL_SECONDARY, false);
    unsynchronized.pods[1].replica = None;
    let why = "no secondary both runs the new material and is synchronized (db-1 is not a \
               synchronized secondary, db-2 is not a synchronized secondary)";
    assert_eq!(
        next_step(&step, &unsynchronized),
        Step::WaitForSwitchoverTarget {
            pod: "db-0".into(),
            why: why.into()
        }
    );
    unsynchronized.now = at(301);
    assert!(matches!(
        next_step(&step, &unsynchronized),
        Step::Fail { step, message } if step == "SwitchoverPrimary--db-0"
            && message.contains("db-0 was not restarted (a request with apply: Always restarts the primary in place)")
    ));

    let mut always = step.clone();
    always.spec.apply = Some("Always".into());
    unsynchronized.now = at(5);
    assert_eq!(
        next_step(&always, &unsynchronized),
        Step::RestartPrimaryInPlace {
            pod: "db-0".into(),
            why: why.into()
        }
    );
    let mut in_place = with(&secondaries_back(), &["RestartPrimaryInPlace--db-0"], 0);
    in_place.spec.apply = Some("Always".into());
    assert_eq!(
        next_step(&in_place, &unsynchronized),
        Step::EvictPod {
            pod: "db-0".into(),
            again: false
        }
    );
}

#[test]
fn a_secondary_that_did_not_restart_yet_is_no_target() {
    // Reached only if the restart order was upset (a failover made db-2 primary before its
    // turn): db-1 is back, db-0 is not.
    let step = with(
        &RUNNING.map(str::to_owned),
        &["CheckReplicaSynchronized--db-1"],
        0,
    );
    let observed = Observed {
        pods: vec![
            replica("db-1", true, ROLE_SECONDARY, report(SQL_SECONDARY, true)),
            replica("db-0", false, ROLE_SECONDARY, report(SQL_SECONDARY, true)),
            replica("db-2", false, ROLE_PRIMARY, report(SQL_PRIMARY, true)),
        ],
        ..group(&[], 5)
    };
    assert_eq!(
        next_step(&step, &observed),
        Step::EvictPod {
            pod: "db-0".into(),
            again: false
        }
    );
    let back = with(
        &RUNNING.map(str::to_owned),
        &[
            "CheckReplicaSynchronized--db-1",
            "CheckPodRunning--db-0",
            "CheckReplicaSynchronized--db-0",
        ],
        0,
    );
    let mut observed = observed;
    observed.pods[1] = replica("db-0", true, ROLE_SECONDARY, report(SQL_SECONDARY, true));
    assert_eq!(
        next_step(&back, &observed),
        Step::RequestSwitchover {
            from: "db-2".into(),
            to: "db-0".into()
        }
    );
}

#[test]
fn a_standalone_server_restarts_in_place_as_before() {
    let step = restart(&["Restart", PAUSE_SUCCEEDED, UPDATE_PETSETS], 0);
    let standalone = Observed {
        group: false,
        ..group(&[], 5)
    };
    assert_eq!(
        next_step(&step, &standalone),
        Step::EvictPod {
            pod: "db-1".into(),
            again: false
        }
    );
}

fn endpoint(
    report: Option<ReplicaReport>,
    trusts: &[&str],
    presents: &str,
) -> Option<ReplicaReport> {
    report.map(|r| ReplicaReport {
        endpoint: Some(EndpointCertificates {
            trusts: trusts.iter().map(|s| (*s).to_owned()).collect(),
            presents: Some(presents.to_owned()),
        }),
        ..r
    })
}

/// The group of [`group`] whose replicas trust `trusts` and present `presents`; its Secret holds
/// serial `b`.
fn rotating(restarted: &[&str], trusts: &[&str], presents: &str, now: i64) -> Observed {
    let mut observed = group(restarted, now);
    for pod in &mut observed.pods {
        pod.replica = endpoint(pod.replica.clone(), trusts, presents);
    }
    observed.endpoint_serial = Some("B".to_owned());
    observed
}

#[test]
fn a_new_endpoint_certificate_is_trusted_by_every_replica_before_any_restarts() {
    let step = restart(&["Restart", PAUSE_SUCCEEDED, UPDATE_PETSETS], 0);
    let mut observed = rotating(&[], &["a"], "a", 5);
    observed.pods[1].replica = endpoint(observed.pods[1].replica.clone(), &["a", "b"], "a");
    assert_eq!(
        next_step(&step, &observed),
        Step::TrustEndpointCertificate {
            serial: "B".into(),
            why: "db-1, db-0 do not trust endpoint certificate serial B yet".into()
        }
    );
    let trusted = rotating(&[], &["a", "b"], "a", 5);
    assert_eq!(
        next_step(&step, &trusted),
        Step::EndpointCertificateTrusted { serial: "B".into() }
    );
    observed.now = at(301);
    assert!(matches!(
        next_step(&step, &observed),
        Step::Fail { step, message } if step == ENDPOINT_TRUSTED && message.ends_with("no pod was restarted")
    ));

    // Nothing to overlap: every replica presents it already, or a coordinator does not say.
    let first = Step::EvictPod {
        pod: "db-1".into(),
        again: false,
    };
    let same = rotating(&[], &["b"], "b", 5);
    assert_eq!(next_step(&step, &same), first);
    let mut silent = rotating(&[], &["a"], "a", 5);
    silent.pods[0].replica.as_mut().unwrap().endpoint = None;
    assert_eq!(next_step(&step, &silent), first);
    // Once the restarts began, a restarted replica's report that knows nothing yet starts no
    // trust phase.
    let restarting = restart(
        &["Restart", PAUSE_SUCCEEDED, UPDATE_PETSETS, "EvictPod--db-1"],
        0,
    );
    let mut fresh = rotating(&["db-1"], &["b"], "b", 5);
    fresh.pods[0].replica = endpoint(fresh.pods[0].replica.clone(), &[], "");
    assert!(!matches!(
        next_step(&restarting, &fresh),
        Step::TrustEndpointCertificate { .. }
    ));
}

#[test]
fn a_restarted_replica_must_present_the_new_endpoint_certificate_before_the_next_goes() {
    let done = [&RUNNING[..], &[ENDPOINT_TRUSTED]].concat();
    let step = restart(&done, 0);
    let observed = rotating(&["db-1"], &["a", "b"], "a", 5);
    assert_eq!(
        next_step(&step, &observed),
        Step::WaitForReplica {
            pod: "db-1".into(),
            why: "its endpoint presents certificate serial a, not B".into()
        }
    );
    let presenting = rotating(&["db-1"], &["a", "b"], "b", 5);
    assert_eq!(
        next_step(&step, &presenting),
        Step::ReplicaSynchronized { pod: "db-1".into() }
    );
}

#[test]
fn the_old_endpoint_certificate_is_retired_once_every_replica_presents_the_new_one() {
    let all = ["db-1", "db-2", "db-0"];
    let mut done: Vec<String> = [&RUNNING[..], &[ENDPOINT_TRUSTED, RESTART_NODES]]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let step = with(&done, &[], 0);
    let holding = rotating(&all, &["a", "b"], "b", 5);
    assert!(matches!(
        next_step(&step, &holding),
        Step::WaitForRetirement { why } if why.contains("db-1 trusts a, b")
    ));
    assert_eq!(
        next_step(&step, &rotating(&all, &["b"], "b", 5)),
        Step::EndpointCertificateRetired { serial: "B".into() }
    );
    done.push(ENDPOINT_RETIRED.to_owned());
    assert_ne!(
        next_step(&with(&done, &[], 0), &rotating(&all, &["b"], "b", 5)),
        Step::EndpointCertificateRetired { serial: "B".into() }
    );
    // Without a rotation of it, nothing is waited for.
    let plain = restart(&[&RUNNING[..], &[RESTART_NODES]].concat(), 0);
    assert!(!matches!(
        next_step(&plain, &rotating(&all, &["a", "b"], "b", 5)),
        Step::WaitForRetirement { .. }
    ));
}
