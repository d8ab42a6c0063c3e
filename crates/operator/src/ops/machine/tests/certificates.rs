//! The certificate steps: re-issue for a rotation, the target Certificates applied, cert-manager waited for.

use super::*;

#[test]
fn a_missing_issuer_blocks_the_sync_and_is_named_first() {
    let mut cert = synced_cert("server");
    assert!(cert.synced(TlsChange::Update));
    cert.missing_issuer = Some("Issuer demo/x does not exist".to_owned());
    assert!(!cert.synced(TlsChange::Update));
    cert.ready_at_generation = false;
    cert.not_ready_message = Some("cert-manager's words".to_owned());
    assert_eq!(
        describe_certificate(&cert, TlsChange::Update),
        "server certificate: Issuer demo/x does not exist, not Ready: cert-manager's words"
    );
}

/// A change of issuer to one that does not exist switches no Certificate: it waits, saying so,
/// and fails at its timeout with every Certificate as it was (so nothing is re-issued).
#[test]
fn no_certificate_is_switched_to_an_issuer_that_does_not_exist() {
    let step = ops(
        "ReconfigureTLS",
        add(),
        "Progressing",
        &["ReconfigureTLS", PAUSE_SUCCEEDED],
        0,
    );
    let to_switch = |missing: Option<&str>, now| Observed {
        certificates: vec![
            CertificateState {
                spec_is_target: false,
                missing_issuer: missing.map(str::to_owned),
                ..synced_cert("server")
            },
            synced_cert("client"),
        ],
        ..observed(now)
    };
    let why = "server certificate: ClusterIssuer nope does not exist; no Certificate was switched \
               to it: create it, or delete this request and name one that exists";
    assert_eq!(
        next_step(
            &step,
            &to_switch(Some("ClusterIssuer nope does not exist"), 1)
        ),
        Step::WaitForIssuer { why: why.into() }
    );
    // At the request's timeout (5 minutes), it fails with the same words.
    assert_eq!(
        next_step(
            &step,
            &to_switch(Some("ClusterIssuer nope does not exist"), 301)
        ),
        Step::Fail {
            step: SYNCED.into(),
            message: format!("certificates were not synced within 300s: {why}"),
        }
    );
    // Once the issuer exists, the Certificate is switched.
    assert_eq!(
        next_step(&step, &to_switch(None, 2)),
        Step::UpdateCertificates
    );
    // A Certificate not created yet (TLS added) waits for its issuer too.
    let absent = Observed {
        certificates: vec![CertificateState {
            exists: false,
            missing_issuer: Some("Issuer demo/nope does not exist".into()),
            ..synced_cert("server")
        }],
        ..observed(1)
    };
    assert!(matches!(
        next_step(&step, &absent),
        Step::WaitForIssuer { .. }
    ));
}

#[test]
fn waiting_certificates_say_which_sub_steps_hold_from_their_state_not_their_words() {
    let step = ops(
        "ReconfigureTLS",
        add(),
        "Progressing",
        &["ReconfigureTLS", PAUSE_SUCCEEDED],
        0,
    );
    let issuing = CertificateState {
        issuing: true,
        ..synced_cert("server")
    };
    // cert-manager's own message happens to contain the words a text scan looked for.
    let unready = CertificateState {
        ready_at_generation: false,
        not_ready_message: Some("Issuing certificate as Secret does not exist".to_owned()),
        ..synced_cert("client")
    };
    let waiting = |certificates| Observed {
        certificates,
        ..observed(1)
    };
    match next_step(
        &step,
        &waiting(vec![issuing.clone(), synced_cert("client")]),
    ) {
        Step::WaitForCertificates { ready, issued, .. } => assert!(ready && !issued),
        other => panic!("{other:?}"),
    }
    match next_step(&step, &waiting(vec![synced_cert("server"), unready])) {
        Step::WaitForCertificates { ready, issued, .. } => assert!(!ready && issued),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rotation_pauses_requests_reissue_and_waits_for_new_revisions() {
    let mut step = ops(
        "ReconfigureTLS",
        rotate(),
        "Progressing",
        &["ReconfigureTLS"],
        0,
    );
    assert_eq!(next_step(&step, &observed(1)), Step::PauseDatabase);
    step = ops(
        "ReconfigureTLS",
        rotate(),
        "Progressing",
        &["ReconfigureTLS", PAUSE_SUCCEEDED],
        0,
    );
    assert_eq!(next_step(&step, &observed(1)), Step::RequestReissue);
    step = ops(
        "ReconfigureTLS",
        rotate(),
        "Progressing",
        &["ReconfigureTLS", PAUSE_SUCCEEDED, ISSUED],
        0,
    );
    let old = CertificateState {
        revision: Some(1),
        ..synced_cert("server")
    };
    let waiting = Observed {
        certificates: vec![old, synced_cert("client")],
        ..observed(10)
    };
    assert_eq!(
        next_step(&step, &waiting),
        Step::WaitForCertificates {
            ready: true,
            issued: true,
            problems: vec!["server certificate: not re-issued yet".to_owned()]
        }
    );
    let done = Observed {
        certificates: vec![synced_cert("server"), synced_cert("client")],
        ..observed(10)
    };
    assert_eq!(next_step(&step, &done), Step::CertificatesSynced);
}

#[test]
fn an_update_applies_certificates_then_checks_their_secrets() {
    let step = ops(
        "ReconfigureTLS",
        add(),
        "Progressing",
        &["ReconfigureTLS", PAUSE_SUCCEEDED],
        0,
    );
    let missing = Observed {
        certificates: vec![CertificateState {
            alias: "client".into(),
            ..CertificateState::default()
        }],
        ..observed(1)
    };
    assert_eq!(next_step(&step, &missing), Step::UpdateCertificates);
    let stale = Observed {
        certificates: vec![CertificateState {
            spec_is_target: false,
            ..synced_cert("client")
        }],
        ..observed(1)
    };
    assert_eq!(next_step(&step, &stale), Step::UpdateCertificates);
    let bad = CertificateState {
        secret_problems: vec!["tls.crt does not cover DNS name db".into()],
        ..synced_cert("server")
    };
    let observed_bad = Observed {
        certificates: vec![bad],
        ..observed(30)
    };
    assert_eq!(
        next_step(&step, &observed_bad),
        Step::WaitForCertificates {
            ready: true,
            issued: true,
            problems: vec!["server certificate: tls.crt does not cover DNS name db".to_owned()]
        }
    );
    let late = Observed {
        now: at(400),
        ..observed_bad
    };
    match next_step(&step, &late) {
        Step::Fail { step, message } => {
            assert_eq!(step, "CertificateSynced");
            assert!(
                message.contains("tls.crt does not cover DNS name db"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn removal_skips_the_certificate_steps() {
    let step = ops(
        "ReconfigureTLS",
        remove(),
        "Progressing",
        &["ReconfigureTLS", PAUSE_SUCCEEDED],
        0,
    );
    assert_eq!(next_step(&step, &observed(1)), Step::UpdateStatefulSet);
}
