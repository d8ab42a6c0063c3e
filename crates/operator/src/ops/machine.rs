//! The ops-manager's decisions, without I/O: `next_step` looks at an ops request, its database and
//! a snapshot of the cluster, and says what to do next. Progress lives in the request's status
//! conditions (KubeDB's types and texts), and every fact it relies on (a pod's revision and age, a
//! certificate's revision) is observable, so a restarted operator takes up exactly where it was,
//! and never restarts a pod twice.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use mssql_api::MssqlServerOpsRequest;
use mssql_api::ops::{APPLY_ALWAYS, PHASE_PENDING, TYPE_RECONFIGURE_TLS, TYPE_RESTART, TlsChange};
use mssql_api::progress::Progress;
use mssql_api::steps::*;
use mssql_api::validate::validate_ops_request;

/// Each step's limit when the request sets no `timeout` (KubeDB retries 500 times, 5 s apart).
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One certificate of the target TLS spec, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateState {
    pub alias: String,
    pub exists: bool,
    /// Ready=True at the Certificate's current generation.
    pub ready_at_generation: bool,
    /// What cert-manager's Ready condition says, when it is not True.
    pub not_ready_message: Option<String>,
    /// An `Issuing` condition is present.
    pub issuing: bool,
    pub revision: Option<i64>,
    /// The revision recorded before a rotation asked for re-issuance.
    pub revision_before_rotation: Option<i64>,
    /// Whether the Certificate's spec already is the target one.
    pub spec_is_target: bool,
    /// Problems with the issued secret (key, SANs, CA chain, validity, issuer); empty when sound.
    pub secret_problems: Vec<String>,
    /// Set when the issuer the Certificate names does not exist: the first thing to fix.
    pub missing_issuer: Option<String>,
}

impl CertificateState {
    /// cert-manager issued it again since the rotation asked for it.
    fn reissued(&self) -> bool {
        matches!((self.revision, self.revision_before_rotation), (Some(now), Some(before)) if now > before)
    }

    fn synced(&self, change: TlsChange) -> bool {
        let reissued = change != TlsChange::Rotate || self.reissued();
        self.exists
            && self.spec_is_target
            && self.ready_at_generation
            && !self.issuing
            && reissued
            && self.secret_problems.is_empty()
            && self.missing_issuer.is_none()
    }
}

/// One pod to restart, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    pub exists: bool,
    pub terminating: bool,
    pub ready: bool,
    /// `kubedb.com/role`.
    pub role: Option<String>,
    /// Runs its StatefulSet's update revision.
    pub on_target_revision: bool,
    /// Not the pod that ran when the restarts began (its uid differs from the recorded one).
    pub created_since_start: bool,
    /// The certificate serial it started with, by alias (its `mssql-operator.dev/certificates`).
    pub started: BTreeMap<String, String>,
}

impl PodState {
    fn restarted(&self) -> bool {
        self.exists
            && !self.terminating
            && self.ready
            && self.on_target_revision
            && self.created_since_start
    }
}

/// The snapshot `next_step` decides on.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub now: Timestamp,
    /// The database's phase, if it exists.
    pub database_phase: Option<Option<String>>,
    /// The database's `spec.tls` already is the requested one (written at the end).
    pub database_has_target_tls: bool,
    /// Another request of the same database is Progressing.
    pub other_progressing: bool,
    /// A newer request of the same type waits: this one is superseded (KubeDB's message).
    pub superseded_by: Option<String>,
    /// An older pending request of the same database (of another type) runs first.
    pub older_pending: bool,
    pub certificates: Vec<CertificateState>,
    /// Pods in restart order (secondaries, then the primary last).
    pub pods: Vec<PodState>,
    /// The pods' uids were recorded when the restarts began.
    pub pods_recorded: bool,
    /// Each restarted pod must be seen serving its Secret's certificate: the database serves
    /// client TLS once the request is done, and verification is on (`run`'s flag).
    pub verify_served: bool,
    /// Before it starts: what makes the database as the request wants it invalid, if anything.
    pub target_invalid: Option<String>,
    /// Once every pod was restarted: the serial each alias's Secret holds now (`None` for a
    /// Secret that does not exist or holds no certificate).
    pub current_serials: BTreeMap<String, Option<String>>,
}

/// What the served-certificate probe of one pod found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServedCheck {
    /// The pod serves its Secret's certificate, chained to the CA, covering the client names.
    Verified,
    /// No answer yet (the port is not open, the handshake timed out): asked again until the
    /// step's timeout.
    Unreachable(String),
    /// The pod answered with the wrong certificate: SQL Server loaded it at start-up and will not
    /// change it until it restarts again, so waiting cannot help.
    Wrong(String),
}

/// What the ops-manager does next. Each effect's outcome is recorded as a condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do (a finished request).
    Done,
    MarkPending,
    Skip {
        message: String,
    },
    /// Stay Pending: `why` is shown, and checked again after `after`.
    WaitToStart {
        why: String,
        after: Duration,
    },
    StartProgressing,
    PauseDatabase,
    RequestReissue,
    UpdateCertificates,
    /// Record the sub-step conditions and wait for cert-manager.
    WaitForCertificates {
        /// Every certificate is Ready at its generation (`CheckReadyCondition`).
        ready: bool,
        /// No certificate is being issued (`IssuingCondition`).
        issued: bool,
        problems: Vec<String>,
    },
    CertificatesSynced,
    UpdateStatefulSet,
    /// Remember which pods run now, so that a replaced pod is told apart from them.
    RecordPods,
    EvictPod {
        pod: String,
    },
    WaitForPod {
        pod: String,
        why: String,
    },
    /// A pod is back, Ready, on the target revision: record it.
    PodRunning {
        pod: String,
    },
    /// Probe the pod's TLS endpoint and judge what it serves (`served_outcome`).
    VerifyServed {
        pod: String,
    },
    /// The probe is not answered yet: record it, and probe again.
    WaitForServed {
        pod: String,
        why: String,
    },
    /// The pod serves what it should: record it.
    ServedVerified {
        pod: String,
    },
    AllPodsRestarted,
    UpdateDatabase,
    Succeed,
    Fail {
        step: String,
        message: String,
    },
}

fn parse_timeout(ops: &MssqlServerOpsRequest) -> Duration {
    ops.spec
        .timeout
        .as_deref()
        .and_then(mssql_api::duration::parse)
        .unwrap_or(DEFAULT_STEP_TIMEOUT)
}

/// Whether the current step (begun when the last one finished, or when the request was created,
/// `step_started: None`) has run longer than the request's timeout.
fn timed_out(ops: &MssqlServerOpsRequest, step_started: Option<Timestamp>, now: Timestamp) -> bool {
    let Some(started) =
        step_started.or_else(|| ops.metadata.creation_timestamp.as_ref().map(|t| t.0))
    else {
        return false;
    };
    let elapsed = now.duration_since(started).unsigned_abs();
    elapsed > parse_timeout(ops)
}

pub fn next_step(ops: &MssqlServerOpsRequest, observed: &Observed) -> Step {
    if ops.is_finished() {
        return Step::Done;
    }
    let phase = ops.phase();
    let type_ = ops.spec.type_.as_str();
    if phase.is_empty() {
        return Step::MarkPending;
    }
    if ![TYPE_RECONFIGURE_TLS, TYPE_RESTART].contains(&type_) {
        return Step::Fail {
            step: type_.to_owned(),
            message: format!(
                "MSSQLServerOpsRequest type {type_} is not supported by this operator yet; it runs ReconfigureTLS and Restart. The database was not touched"
            ),
        };
    }
    // What `check` refuses, a request that has not started fails with, before the database is
    // touched; one started under an operator that knew fewer rules runs to its end.
    if phase == PHASE_PENDING {
        let invalid = validate_ops_request(ops, None);
        if !invalid.is_empty() {
            let errors: Vec<String> = invalid.iter().map(ToString::to_string).collect();
            return Step::Fail {
                step: INVALID_SPEC.to_owned(),
                message: format!("{}. The database was not touched", errors.join("; ")),
            };
        }
    }
    let Some(database_phase) = observed.database_phase.as_ref() else {
        let namespace = ops.metadata.namespace.as_deref().unwrap_or("default");
        return Step::Fail {
            step: "DatabaseRef".to_owned(),
            message: format!(
                "spec.databaseRef {namespace}/{}, is invalid or not found",
                ops.spec.database_ref.name
            ),
        };
    };

    if phase == PHASE_PENDING {
        if let Some(problem) = observed.target_invalid.as_ref() {
            return Step::Fail {
                step: INVALID_SPEC.to_owned(),
                message: format!(
                    "the database's target spec is not valid: {problem}. The database was not touched"
                ),
            };
        }
        if let Some(newer) = observed.superseded_by.as_ref() {
            return Step::Skip {
                message: newer.clone(),
            };
        }
        let wait = |why: String| {
            if timed_out(ops, None, observed.now) {
                Step::Fail {
                    step: "Pending".to_owned(),
                    message: format!("{why}, and the timeout of {:?} ran out", parse_timeout(ops)),
                }
            } else {
                Step::WaitToStart {
                    why,
                    after: Duration::from_secs(5),
                }
            }
        };
        if observed.other_progressing {
            return wait(
                "another MSSQLServerOpsRequest of this database is Progressing".to_owned(),
            );
        }
        if observed.older_pending {
            return wait("an older MSSQLServerOpsRequest of this database runs first".to_owned());
        }
        let if_ready = ops.spec.apply.as_deref() != Some(APPLY_ALWAYS);
        if if_ready && database_phase.as_deref() != Some("Ready") {
            return wait(format!(
                "the database is {} and apply is IfReady: waiting for it to be Ready",
                database_phase.as_deref().unwrap_or("not provisioned yet")
            ));
        }
        return Step::StartProgressing;
    }

    // Progressing.
    let tls = type_ == TYPE_RECONFIGURE_TLS;
    let change = ops.spec.tls_change();
    let progress = Progress::of(ops);
    let expired = timed_out(ops, progress.step_started, observed.now);
    let timeout = parse_timeout(ops);

    if !progress.paused {
        return Step::PauseDatabase;
    }
    if tls && change == TlsChange::Rotate && !progress.reissue_requested {
        return Step::RequestReissue;
    }
    if tls && change != TlsChange::Remove && !progress.certificates_synced {
        if observed
            .certificates
            .iter()
            .any(|c| !c.exists || !c.spec_is_target)
        {
            return Step::UpdateCertificates;
        }
        let problems: Vec<String> = observed
            .certificates
            .iter()
            .filter(|c| !c.synced(change))
            .map(|c| describe_certificate(c, change))
            .collect();
        return match (problems.is_empty(), expired) {
            (true, _) => Step::CertificatesSynced,
            (false, true) => Step::Fail {
                step: SYNCED.to_owned(),
                message: format!(
                    "certificates were not synced within {timeout:?}: {}",
                    problems.join("; ")
                ),
            },
            (false, false) => Step::WaitForCertificates {
                ready: observed.certificates.iter().all(|c| c.ready_at_generation),
                issued: !observed.certificates.iter().any(|c| c.issuing),
                problems,
            },
        };
    }
    // A Restart applies the workload too: its pods come back on what the Secrets hold now, even
    // when they changed while the database was paused (by this request or the one before).
    if !progress.workload_updated {
        return Step::UpdateStatefulSet;
    }
    if !progress.pods_restarted {
        if !observed.pods_recorded {
            return Step::RecordPods;
        }
        for pod in &observed.pods {
            let recorded = progress.pod(&pod.name);
            if pod.restarted() {
                if !recorded.running {
                    return Step::PodRunning {
                        pod: pod.name.clone(),
                    };
                }
                if observed.verify_served && !recorded.served {
                    return Step::VerifyServed {
                        pod: pod.name.clone(),
                    };
                }
                continue;
            }
            if pod.exists && !pod.terminating && !pod.created_since_start {
                return Step::EvictPod {
                    pod: pod.name.clone(),
                };
            }
            let why = if !pod.exists {
                "waiting for the StatefulSet to recreate it"
            } else if pod.terminating {
                "waiting for it to terminate"
            } else if !pod.on_target_revision {
                "it was recreated on an old revision"
            } else {
                "waiting for it to be Ready"
            };
            return if expired {
                Step::Fail {
                    step: pod_step(CHECK_POD_RUNNING, &pod.name),
                    message: format!("pod {} did not restart within {timeout:?}: {why}", pod.name),
                }
            } else {
                Step::WaitForPod {
                    pod: pod.name.clone(),
                    why: why.to_owned(),
                }
            };
        }
        return Step::AllPodsRestarted;
    }
    if tls && !observed.database_has_target_tls {
        return Step::UpdateDatabase;
    }
    // A request ends true: a Secret that changed while it ran (deleted and re-issued, renewed)
    // leaves pods on material it no longer holds, and the request says so instead of succeeding.
    let stale = stale_pods(observed);
    if !stale.is_empty() {
        return Step::Fail {
            step: CHECK_PODS_CURRENT.to_owned(),
            message: format!(
                "not every pod runs what its Secrets hold now, they changed while the request ran: {}. The database is resumed; the operator rolls the pods onto the current certificates (a renewal Restart request) unless its renewal rollout is Manual",
                stale.join("; ")
            ),
        };
    }
    Step::Succeed
}

/// Each pod that is not on its StatefulSet's update revision, or started with a certificate its
/// Secret no longer holds, described.
pub fn stale_pods(observed: &Observed) -> Vec<String> {
    let mut stale = Vec::new();
    for pod in &observed.pods {
        if !pod.on_target_revision {
            stale.push(format!(
                "pod {} is not on its StatefulSet's current revision",
                pod.name
            ));
        }
        for (alias, started) in &pod.started {
            match observed.current_serials.get(alias) {
                Some(Some(current)) if current == started => {}
                Some(Some(current)) => stale.push(format!(
                    "pod {} was started for {alias} certificate serial {started}, its Secret holds {current}",
                    pod.name
                )),
                Some(None) => stale.push(format!(
                    "pod {} was started for {alias} certificate serial {started}, its Secret holds none now",
                    pod.name
                )),
                None => {}
            }
        }
    }
    stale
}

/// What to do with the probe's finding for `pod`: a wrong certificate fails the request at once,
/// before any other pod is touched; no answer is retried until the step's timeout.
pub fn served_outcome(
    ops: &MssqlServerOpsRequest,
    now: Timestamp,
    pod: &str,
    check: ServedCheck,
) -> Step {
    let step = pod_step(CHECK_SERVED_CERTIFICATE, pod);
    let started = Progress::of(ops).step_started;
    match check {
        ServedCheck::Verified => Step::ServedVerified {
            pod: pod.to_owned(),
        },
        ServedCheck::Wrong(why) => Step::Fail {
            step,
            message: format!("pod {pod} {why}; no further pod was restarted"),
        },
        ServedCheck::Unreachable(why) if timed_out(ops, started, now) => Step::Fail {
            step,
            message: format!(
                "pod {pod} was not seen serving its certificate within {:?}: {why}",
                parse_timeout(ops)
            ),
        },
        ServedCheck::Unreachable(why) => Step::WaitForServed {
            pod: pod.to_owned(),
            why,
        },
    }
}

fn describe_certificate(certificate: &CertificateState, change: TlsChange) -> String {
    let mut reasons: Vec<String> = certificate.missing_issuer.iter().cloned().collect();
    if !certificate.ready_at_generation {
        reasons.push(match certificate.not_ready_message.as_deref() {
            Some(why) => format!("not Ready: {why}"),
            None => "not Ready at its current generation".to_owned(),
        });
    }
    if certificate.issuing {
        reasons.push("still being issued".to_owned());
    }
    if change == TlsChange::Rotate && !certificate.reissued() {
        reasons.push("not re-issued yet".to_owned());
    }
    reasons.extend(certificate.secret_problems.iter().cloned());
    format!("{} certificate: {}", certificate.alias, reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use mssql_api::condition::Condition;
    use mssql_api::ops::{OpsRequestSpec, OpsRequestStatus, OpsTlsSpec, PHASE_PROGRESSING};

    use super::*;

    const T0: i64 = 1_800_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(T0 + seconds).unwrap()
    }

    fn ops(
        type_: &str,
        tls: Option<OpsTlsSpec>,
        phase: &str,
        done: &[&str],
        done_at: i64,
    ) -> MssqlServerOpsRequest {
        let mut ops = MssqlServerOpsRequest::new(
            "op",
            OpsRequestSpec {
                type_: type_.to_owned(),
                tls,
                timeout: Some("5m".to_owned()),
                apply: Some("IfReady".to_owned()),
                ..OpsRequestSpec::default()
            },
        );
        ops.metadata.creation_timestamp = Some(Time(at(0)));
        ops.status = Some(OpsRequestStatus {
            phase: (!phase.is_empty()).then(|| phase.to_owned()),
            conditions: done
                .iter()
                .map(|t| Condition::new(t, true, t, *t, Some(1), Time(at(done_at))))
                .collect(),
            ..OpsRequestStatus::default()
        });
        ops
    }

    fn rotate() -> Option<OpsTlsSpec> {
        Some(OpsTlsSpec {
            rotate_certificates: Some(true),
            ..OpsTlsSpec::default()
        })
    }

    fn remove() -> Option<OpsTlsSpec> {
        Some(OpsTlsSpec {
            remove: Some(true),
            ..OpsTlsSpec::default()
        })
    }

    fn add() -> Option<OpsTlsSpec> {
        Some(OpsTlsSpec {
            client_tls: Some(true),
            certificates: Some(vec![]),
            ..OpsTlsSpec::default()
        })
    }

    fn observed(now: i64) -> Observed {
        Observed {
            now: at(now),
            database_phase: Some(Some("Ready".to_owned())),
            ..Observed::default()
        }
    }

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

    fn synced_cert(alias: &str) -> CertificateState {
        CertificateState {
            alias: alias.to_owned(),
            exists: true,
            ready_at_generation: true,
            spec_is_target: true,
            revision: Some(2),
            revision_before_rotation: Some(1),
            ..CertificateState::default()
        }
    }

    fn pod(name: &str, restarted: bool) -> PodState {
        PodState {
            name: name.to_owned(),
            exists: true,
            ready: true,
            on_target_revision: restarted,
            created_since_start: restarted,
            ..PodState::default()
        }
    }

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
            database_phase: Some(Some("Provisioning".to_owned())),
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
            database_phase: None,
            ..observed(1)
        };
        assert!(matches!(
            next_step(&ops("Restart", None, "Pending", &[], 0), &gone),
            Step::Fail { .. }
        ));
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
            Step::EvictPod { pod: "db-1".into() }
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
            Step::EvictPod { pod: "db-0".into() }
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
            Step::EvictPod { pod: "db-0".into() },
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
            Step::EvictPod { pod: "db-0".into() }
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
}
