//! The end: the database's spec updated, every pod checked current, KubeDB's texts.

use super::*;

#[test]
fn the_end_updates_the_database_then_succeeds() {
    let done = [
        "ReconfigureTLS",
        PAUSE_SUCCEEDED,
        SYNCED,
        UPDATE_PETSETS,
        RESTART_NODES,
    ];
    let request = ops("ReconfigureTLS", add(), "Progressing", &done, 0);
    assert_eq!(next_step(&request, &observed(1)), Step::UpdateDatabase);
    let updated = Observed {
        database_has_target_tls: true,
        ..observed(1)
    };
    assert_eq!(next_step(&request, &updated), Step::Succeed);
    let restart = ["Restart", PAUSE_SUCCEEDED, UPDATE_PETSETS, RESTART_NODES];
    assert_eq!(
        next_step(
            &ops("Restart", None, "Progressing", &restart, 0),
            &observed(1)
        ),
        Step::Succeed
    );
}

#[test]
fn a_restart_first_applies_the_workload_from_what_the_secrets_hold_now() {
    let paused = ops(
        "Restart",
        None,
        "Progressing",
        &["Restart", PAUSE_SUCCEEDED],
        0,
    );
    assert_eq!(next_step(&paused, &observed(1)), Step::UpdateStatefulSet);
    let applied = ops(
        "Restart",
        None,
        "Progressing",
        &["Restart", PAUSE_SUCCEEDED, UPDATE_PETSETS],
        0,
    );
    assert_eq!(next_step(&applied, &observed(1)), Step::RecordPods);
}

#[test]
fn a_restart_puts_its_certificates_back_and_waits_while_cert_manager_issues_them() {
    let paused = ops(
        "Restart",
        None,
        "Progressing",
        &["Restart", PAUSE_SUCCEEDED],
        0,
    );
    let issuing = |missing_issuer: Option<&str>, now| Observed {
        certificates: vec![
            synced_cert("server"),
            CertificateState {
                issuing: true,
                missing_issuer: missing_issuer.map(str::to_owned),
                ..synced_cert("client")
            },
        ],
        ..observed(now)
    };
    // Pods restarted now would start on the certificate about to be replaced.
    assert_eq!(
        next_step(&paused, &issuing(None, 1)),
        Step::WaitForIssuance {
            certificate: "client".into()
        }
    );
    // Certificates a failed request left on its own target are applied back first.
    let left_behind = Observed {
        certificates: vec![CertificateState {
            spec_is_target: false,
            issuing: true,
            ..synced_cert("server")
        }],
        ..observed(1)
    };
    assert_eq!(next_step(&paused, &left_behind), Step::UpdateCertificates);
    // With its issuer gone, the issue never ends: the restart goes on with what is there.
    assert_eq!(
        next_step(
            &paused,
            &issuing(Some("Issuer demo/gone does not exist"), 1)
        ),
        Step::UpdateStatefulSet
    );
    // And the wait has the request's timeout (5 minutes).
    assert!(matches!(
        next_step(&paused, &issuing(None, 301)),
        Step::Fail { step, message } if step == UPDATE_PETSETS && message.contains("client certificate")
    ));
}

#[test]
fn a_request_ends_true_or_fails_naming_what_each_pod_runs() {
    let restart = ["Restart", PAUSE_SUCCEEDED, UPDATE_PETSETS, RESTART_NODES];
    let request = ops("Restart", None, "Progressing", &restart, 0);
    let on = |serial: &str| PodState {
        started: [("server".to_owned(), serial.to_owned())].into(),
        ..pod("db-0", true)
    };
    let current = |serial: Option<&str>| Observed {
        pods: vec![on("0A")],
        current_serials: [("server".to_owned(), serial.map(str::to_owned))].into(),
        ..observed(1)
    };
    assert_eq!(next_step(&request, &current(Some("0A"))), Step::Succeed);
    // The Secret was deleted and re-issued while the request ran.
    let Step::Fail { step, message } = next_step(&request, &current(Some("0B"))) else {
        panic!("a stale pod must not succeed")
    };
    assert_eq!(step, CHECK_PODS_CURRENT);
    assert!(
        message.starts_with("not every pod runs what its Secrets hold now, they changed while the request ran: pod db-0 was started for server certificate serial 0A, its Secret holds 0B."),
        "{message}"
    );
    let gone = stale_pods(&current(None));
    assert_eq!(
        gone,
        ["pod db-0 was started for server certificate serial 0A, its Secret holds none now"]
    );
    // A pod that records nothing (TLS off, or made before the record existed) is not judged
    // by serial; one off its StatefulSet's revision always is.
    let unrecorded = Observed {
        pods: vec![pod("db-0", true)],
        ..current(Some("0B"))
    };
    assert_eq!(next_step(&request, &unrecorded), Step::Succeed);
    let off_revision = Observed {
        pods: vec![PodState {
            on_target_revision: false,
            ..on("0A")
        }],
        ..current(Some("0A"))
    };
    assert_eq!(
        stale_pods(&off_revision),
        ["pod db-0 is not on its StatefulSet's current revision"]
    );
}

#[test]
fn step_messages_are_kubedbs() {
    assert_eq!(
        step_message(GET_POD, true, Some("ms-0")),
        "get pod; ConditionStatus:True; PodName:ms-0"
    );
    assert_eq!(
        step_message(CHECK_READY, false, None),
        "check ready condition; ConditionStatus:False"
    );
    assert_eq!(pod_step(EVICT_POD, "ms-0"), "EvictPod--ms-0");
}
