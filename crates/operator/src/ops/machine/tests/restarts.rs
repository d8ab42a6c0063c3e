//! The pods' restarts: one at a time, never twice, each verified serving its certificate when asked.

use super::*;

#[test]
fn pods_restart_one_at_a_time_in_the_given_order_and_never_twice() {
    let done = ["ReconfigureTLS", PAUSE_SUCCEEDED, SYNCED, UPDATE_PETSETS];
    let step = ops("ReconfigureTLS", add(), "Progressing", &done, 0);
    let certs = vec![synced_cert("server")];
    let pods = |list: Vec<PodState>| Observed {
        pods: list,
        pods_recorded: true,
        certificates: certs.clone(),
        ..observed(5)
    };
    let unrecorded = Observed {
        pods_recorded: false,
        ..pods(vec![pod("db-1", false)])
    };
    assert_eq!(
        next_step(&step, &unrecorded),
        Step::RecordPods,
        "the running pods are recorded first"
    );

    let fresh = pods(vec![pod("db-1", false), pod("db-0", false)]);
    assert_eq!(
        next_step(&step, &fresh),
        Step::EvictPod {
            pod: "db-1".into(),
            again: false
        }
    );
    let terminating = pods(vec![
        PodState {
            terminating: true,
            ..pod("db-1", false)
        },
        pod("db-0", false),
    ]);
    assert!(
        matches!(next_step(&step, &terminating), Step::WaitForPod { pod, .. } if pod == "db-1")
    );
    let gone = pods(vec![
        PodState {
            exists: false,
            ..pod("db-1", false)
        },
        pod("db-0", false),
    ]);
    assert!(matches!(next_step(&step, &gone), Step::WaitForPod { pod, .. } if pod == "db-1"));
    let not_ready = pods(vec![
        PodState {
            ready: false,
            ..pod("db-1", true)
        },
        pod("db-0", false),
    ]);
    assert!(
        matches!(next_step(&step, &not_ready), Step::WaitForPod { .. }),
        "a recreated pod is never evicted again"
    );

    let back = pods(vec![pod("db-1", true), pod("db-0", false)]);
    assert_eq!(
        next_step(&step, &back),
        Step::PodRunning { pod: "db-1".into() }
    );
    let recorded = ops(
        "ReconfigureTLS",
        add(),
        "Progressing",
        &[&done[..], &["CheckPodRunning--db-1"]].concat(),
        0,
    );
    assert_eq!(
        next_step(&recorded, &back),
        Step::EvictPod {
            pod: "db-0".into(),
            again: false
        }
    );
    let all = ops(
        "ReconfigureTLS",
        add(),
        "Progressing",
        &[
            &done[..],
            &["CheckPodRunning--db-1", "CheckPodRunning--db-0"],
        ]
        .concat(),
        0,
    );
    assert_eq!(
        next_step(&all, &pods(vec![pod("db-1", true), pod("db-0", true)])),
        Step::AllPodsRestarted
    );
}

#[test]
fn with_verification_each_pod_must_serve_its_certificate_before_the_next_is_evicted() {
    let done = ["ReconfigureTLS", PAUSE_SUCCEEDED, SYNCED, UPDATE_PETSETS];
    let running = [&done[..], &["CheckPodRunning--db-1"]].concat();
    let step = ops("ReconfigureTLS", add(), "Progressing", &running, 0);
    let back = |verify_served| Observed {
        pods: vec![pod("db-1", true), pod("db-0", false)],
        pods_recorded: true,
        verify_served,
        certificates: vec![synced_cert("server")],
        ..observed(5)
    };
    assert_eq!(
        next_step(&step, &back(true)),
        Step::VerifyServed { pod: "db-1".into() }
    );
    assert_eq!(
        next_step(&step, &back(false)),
        Step::EvictPod {
            pod: "db-0".into(),
            again: false
        },
        "verification off: the next pod goes at once"
    );
    let verified = ops(
        "ReconfigureTLS",
        add(),
        "Progressing",
        &[&running[..], &["CheckServedCertificate--db-1"]].concat(),
        0,
    );
    assert_eq!(
        next_step(&verified, &back(true)),
        Step::EvictPod {
            pod: "db-0".into(),
            again: false
        }
    );
}

#[test]
fn a_wrong_certificate_fails_at_once_and_no_answer_only_after_the_timeout() {
    let running = ["Restart", PAUSE_SUCCEEDED, "CheckPodRunning--db-1"];
    let step = ops("Restart", None, "Progressing", &running, 0);
    assert_eq!(
        served_outcome(&step, at(1), "db-1", ServedCheck::Verified),
        Step::ServedVerified { pod: "db-1".into() }
    );
    assert_eq!(
        served_outcome(
            &step,
            at(1),
            "db-1",
            ServedCheck::Wrong("serves serial 01".into())
        ),
        Step::Fail {
            step: "CheckServedCertificate--db-1".into(),
            message: "pod db-1 serves serial 01; no further pod was restarted".into(),
        }
    );
    let refused = || ServedCheck::Unreachable("connection refused".into());
    assert_eq!(
        served_outcome(&step, at(299), "db-1", refused()),
        Step::WaitForServed {
            pod: "db-1".into(),
            why: "connection refused".into()
        }
    );
    assert_eq!(
        served_outcome(&step, at(301), "db-1", refused()),
        Step::Fail {
            step: "CheckServedCertificate--db-1".into(),
            message:
                "pod db-1 was not seen serving its certificate within 300s: connection refused"
                    .into(),
        }
    );
}

#[test]
fn a_pod_that_never_comes_back_fails_the_request_after_the_timeout() {
    let step = ops(
        "Restart",
        None,
        "Progressing",
        &["Restart", PAUSE_SUCCEEDED, UPDATE_PETSETS],
        0,
    );
    let stuck = Observed {
        pods: vec![PodState {
            ready: false,
            ..pod("db-0", true)
        }],
        pods_recorded: true,
        ..observed(301)
    };
    match next_step(&step, &stuck) {
        Step::Fail { step, message } => {
            assert_eq!(step, "CheckPodRunning--db-0");
            assert_eq!(
                message,
                "pod db-0 did not restart within 300s: waiting for it to be Ready"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_pod_is_evicted_only_once_its_statefulset_controller_saw_the_new_spec_and_again_if_made_from_the_old()
 {
    let done = ["ReconfigureTLS", PAUSE_SUCCEEDED, SYNCED, UPDATE_PETSETS];
    let step = ops("ReconfigureTLS", add(), "Progressing", &done, 0);
    let with = |state: PodState| Observed {
        pods: vec![state],
        pods_recorded: true,
        certificates: vec![synced_cert("server")],
        ..observed(5)
    };
    let lagging = PodState {
        statefulset_caught_up: false,
        ..pod("db-0", false)
    };
    assert!(
        matches!(
            next_step(&step, &with(lagging)),
            Step::WaitForPod { why, .. } if why == "waiting for the StatefulSet controller to see the new spec"
        ),
        "deleted now, the pod would be made again from the old template"
    );
    let made_from_old = PodState {
        on_target_revision: false,
        ..pod("db-0", true)
    };
    assert_eq!(
        next_step(&step, &with(made_from_old.clone())),
        Step::EvictPod {
            pod: "db-0".into(),
            again: true
        },
        "a pod made again on an old revision never ran the target"
    );
    assert!(
        matches!(
            next_step(
                &step,
                &with(PodState {
                    statefulset_caught_up: false,
                    ..made_from_old.clone()
                })
            ),
            Step::WaitForPod { .. }
        ),
        "not before its controller caught up: it would make the old one again"
    );
    assert!(
        matches!(
            next_step(
                &step,
                &with(PodState {
                    terminating: true,
                    ..made_from_old
                })
            ),
            Step::WaitForPod { why, .. } if why == "waiting for it to terminate"
        ),
        "evicted again once only"
    );
}
