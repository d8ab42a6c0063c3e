//! A request going Pending, waiting its turn or for its database, and failing before it touches anything.

use super::*;

#[test]
fn a_new_request_goes_pending_then_starts_when_the_database_is_ready() {
    assert_eq!(
        next_step(&ops("ReconfigureTLS", rotate(), "", &[], 0), &observed(1)),
        Step::MarkPending
    );
    assert_eq!(
        next_step(
            &ops("ReconfigureTLS", rotate(), "Pending", &[], 0),
            &observed(1)
        ),
        Step::StartProgressing
    );
    for phase in ["Successful", "Failed", "Skipped"] {
        assert_eq!(
            next_step(
                &ops("ReconfigureTLS", rotate(), phase, &[], 0),
                &observed(1)
            ),
            Step::Done
        );
    }
}

#[test]
fn pending_requests_wait_their_turn_or_are_skipped() {
    let pending = ops("ReconfigureTLS", rotate(), "Pending", &[], 0);
    let busy = Observed {
        other_progressing: true,
        ..observed(1)
    };
    assert!(matches!(
        next_step(&pending, &busy),
        Step::WaitToStart { .. }
    ));
    let older = Observed {
        older_pending: true,
        ..observed(1)
    };
    assert!(matches!(
        next_step(&pending, &older),
        Step::WaitToStart { .. }
    ));
    let superseded = Observed {
        superseded_by: Some("skipped as x is newer".to_owned()),
        other_progressing: true,
        ..observed(1)
    };
    assert_eq!(
        next_step(&pending, &superseded),
        Step::Skip {
            message: "skipped as x is newer".to_owned()
        }
    );
}

#[test]
fn if_ready_waits_for_the_database_and_fails_after_the_timeout() {
    let pending = ops("ReconfigureTLS", rotate(), "Pending", &[], 0);
    let not_ready = Observed {
        database: Database::Exists {
            phase: Some("Provisioning".to_owned()),
        },
        ..observed(60)
    };
    match next_step(&pending, &not_ready) {
        Step::WaitToStart { why, .. } => assert!(
            why.contains("the database is Provisioning and apply is IfReady"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    let late = Observed {
        now: at(301),
        ..not_ready.clone()
    };
    assert!(matches!(next_step(&pending, &late), Step::Fail { step, .. } if step == "Pending"));
    let mut always = pending.clone();
    always.spec.apply = Some("Always".to_owned());
    assert_eq!(next_step(&always, &not_ready), Step::StartProgressing);
}

#[test]
fn a_pending_request_that_check_refuses_fails_naming_the_field() {
    let mut banana = ops("Restart", None, "Pending", &[], 0);
    banana.spec.timeout = Some("banana".to_owned());
    match next_step(&banana, &observed(1)) {
        Step::Fail { step, message } => {
            assert_eq!(step, "InvalidSpec");
            assert_eq!(
                message,
                "spec.timeout: timeout \"banana\" is not a duration; write it like 5m, 90s or \
                 1h30m. The database was not touched"
            );
        }
        other => panic!("{other:?}"),
    }
    // Every error at once, as `check` prints them.
    let mut tls = ops("ReconfigureTLS", None, "Pending", &[], 0);
    tls.spec.timeout = Some("soon".to_owned());
    match next_step(&tls, &observed(1)) {
        Step::Fail { message, .. } => assert!(
            message.starts_with("spec.timeout: ") && message.contains("; spec.tls: "),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    // A target the provisioner would refuse fails before anything, certificates included,
    // is changed; a running request goes on to its end.
    let adding = ops("ReconfigureTLS", add(), "Pending", &[], 0);
    let target_invalid = Observed {
        target_invalid: Some(
            "spec.tls.certificates[0].duration: \"90days\" is not a duration".to_owned(),
        ),
        ..observed(1)
    };
    match next_step(&adding, &target_invalid) {
        Step::Fail { step, message } => {
            assert_eq!(step, "InvalidSpec");
            assert_eq!(
                message,
                "the database's target spec is not valid: spec.tls.certificates[0].duration: \
                 \"90days\" is not a duration. The database was not touched"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut started = adding.clone();
    started.status.as_mut().unwrap().phase = Some(PHASE_PROGRESSING.to_owned());
    assert_eq!(next_step(&started, &target_invalid), Step::PauseDatabase);
    // Already running: it goes on (the rules may be newer than the request).
    let mut running = banana.clone();
    running.status.as_mut().unwrap().phase = Some(PHASE_PROGRESSING.to_owned());
    assert_eq!(next_step(&running, &observed(1)), Step::PauseDatabase);
}

#[test]
fn unsupported_types_and_missing_databases_fail_at_once() {
    let scaling = ops("HorizontalScaling", None, "Pending", &[], 0);
    match next_step(&scaling, &observed(1)) {
        Step::Fail { message, .. } => {
            assert!(message.contains("HorizontalScaling is not supported by this operator yet"))
        }
        other => panic!("{other:?}"),
    }
    let gone = Observed {
        database: Database::Missing,
        ..observed(1)
    };
    assert!(matches!(
        next_step(&ops("Restart", None, "Pending", &[], 0), &gone),
        Step::Fail { .. }
    ));
}
