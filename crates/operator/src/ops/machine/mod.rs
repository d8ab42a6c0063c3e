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
use mssql_api::pods::ReplicaReport;
use mssql_api::progress::Progress;
use mssql_api::steps::*;
use mssql_api::validate::{database_not_found, validate_ops_request};

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
    /// `Issuing=True`: cert-manager is issuing it.
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

    /// Everything the request waits for is in: the target spec, cert-manager's answer to it (and
    /// to a rotation's re-issue), an issuer, and a sound Secret.
    pub fn synced(&self, change: TlsChange) -> bool {
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
    /// Its StatefulSet's controller has seen the StatefulSet's latest spec: a pod deleted before
    /// then is made again from the spec before it.
    pub statefulset_caught_up: bool,
    /// Not the pod that ran when the restarts began (its uid differs from the recorded one).
    pub created_since_start: bool,
    /// The certificate serial it started with, by alias (its `mssql-operator.dev/certificates`).
    pub started: BTreeMap<String, String>,
    /// The arbiter of an even group: it runs no SQL Server.
    pub arbiter: bool,
    /// What its coordinator last reported of its server (a group's replica).
    pub replica: Option<ReplicaReport>,
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

/// The request's database, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Database {
    #[default]
    Missing,
    /// It exists, in this phase (none before the provisioner has written one).
    Exists { phase: Option<String> },
}

/// The snapshot `next_step` decides on.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub now: Timestamp,
    pub database: Database,
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
    /// An availability group with secondaries whose coordinators report: each restarted replica
    /// must be synchronized before the next pod goes, and the primary's role is handed over
    /// before it restarts.
    pub group: bool,
    /// The replica the database's switchover annotation names now.
    pub switchover_to: Option<String>,
    /// A group's endpoint certificate: the serial its Secret holds now.
    pub endpoint_serial: Option<String>,
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
    /// A Certificate would be switched to an issuer that does not exist: it is not, and the
    /// request says so (`CertificateSynced` False) while it waits for the issuer.
    WaitForIssuer {
        why: String,
    },
    /// Record the sub-step conditions and wait for cert-manager.
    WaitForCertificates {
        /// Every certificate is Ready at its generation (`CheckReadyCondition`).
        ready: bool,
        /// No certificate is being issued (`IssuingCondition`).
        issued: bool,
        problems: Vec<String>,
    },
    CertificatesSynced,
    /// cert-manager is issuing one of the database's certificates: the pods wait for the result.
    WaitForIssuance {
        certificate: String,
    },
    UpdateStatefulSet,
    /// Remember which pods run now, so that a replaced pod is told apart from them.
    RecordPods,
    EvictPod {
        pod: String,
        /// It was evicted before, and made again on an old revision.
        again: bool,
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
    /// A restarted replica is connected to its group and synchronized: record it.
    ReplicaSynchronized {
        pod: String,
    },
    /// A restarted replica is not synchronized yet: record why, and look again.
    WaitForReplica {
        pod: String,
        why: String,
    },
    /// Ask the coordinators to hand the primary role from `from` to `to` (the database's
    /// switchover annotation), and record it.
    RequestSwitchover {
        from: String,
        to: String,
    },
    /// The switchover is under way; `to`, the target as chosen now, is asked for again if the
    /// one asked before went away.
    WaitForSwitchover {
        from: String,
        to: Option<String>,
        why: String,
    },
    /// Another replica took the primary role over: record it, and withdraw the request.
    SwitchedOver {
        from: String,
        to: String,
    },
    /// No replica can take the primary role over: record why, and look again.
    WaitForSwitchoverTarget {
        pod: String,
        why: String,
    },
    /// No replica can take the primary role over, and `apply: Always` lets it restart in place.
    RestartPrimaryInPlace {
        pod: String,
        why: String,
    },
    /// Ask every replica to trust the endpoint certificate `serial` (the database's annotation),
    /// and record why the request waits.
    TrustEndpointCertificate {
        serial: String,
        why: String,
    },
    /// Every replica trusts it: record it.
    EndpointCertificateTrusted {
        serial: String,
    },
    /// Some replica still trusts an old endpoint certificate: record why, and look again.
    WaitForRetirement {
        why: String,
    },
    /// No replica trusts an old one: record it, and withdraw the ask.
    EndpointCertificateRetired {
        serial: String,
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
    let Database::Exists {
        phase: database_phase,
    } = &observed.database
    else {
        return Step::Fail {
            step: "DatabaseRef".to_owned(),
            message: database_not_found(ops),
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
        let to_apply: Vec<&CertificateState> = observed
            .certificates
            .iter()
            .filter(|c| !c.exists || !c.spec_is_target)
            .collect();
        // Nothing is switched to an issuer that does not exist (yet: KubeDB waits for it). A
        // Certificate switched to it would wait for ever, and one switched back would be
        // re-issued, and its pods rolled onto that, for nothing.
        let missing: Vec<String> = to_apply
            .iter()
            .filter_map(|c| {
                Some(format!(
                    "{} certificate: {}",
                    c.alias,
                    c.missing_issuer.as_ref()?
                ))
            })
            .collect();
        if !missing.is_empty() {
            let why = format!(
                "{}; no Certificate was switched to it: create it, or delete this request and name one that exists",
                missing.join("; ")
            );
            return if expired {
                Step::Fail {
                    step: SYNCED.to_owned(),
                    message: format!("certificates were not synced within {timeout:?}: {why}"),
                }
            } else {
                Step::WaitForIssuer { why }
            };
        }
        if !to_apply.is_empty() {
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
        // The database's Certificates first (a Restart after a request that failed half-way
        // left them on its target), then cert-manager's answer: pods restarted while it issues
        // would start on what is about to be replaced. Issuing with a missing issuer never ends:
        // not waited for.
        if observed
            .certificates
            .iter()
            .any(|c| !c.exists || !c.spec_is_target)
        {
            return Step::UpdateCertificates;
        }
        if let Some(issuing) = observed
            .certificates
            .iter()
            .find(|c| c.issuing && c.missing_issuer.is_none())
        {
            return if expired {
                Step::Fail {
                    step: UPDATE_PETSETS.to_owned(),
                    message: format!(
                        "cert-manager did not finish issuing the {} certificate within {timeout:?}",
                        issuing.alias
                    ),
                }
            } else {
                Step::WaitForIssuance {
                    certificate: issuing.alias.clone(),
                }
            };
        }
        return Step::UpdateStatefulSet;
    }
    if !progress.pods_restarted {
        if !observed.pods_recorded {
            return Step::RecordPods;
        }
        if let Some(step) = group::endpoint_trust(&progress, observed, expired, timeout) {
            return step;
        }
        if let Some(step) = group::switchover_under_way(&progress, observed, expired, timeout) {
            return step;
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
                if observed.group && !pod.arbiter && !recorded.synchronized {
                    let presenting = observed
                        .endpoint_serial
                        .as_deref()
                        .filter(|_| progress.endpoint_trusted);
                    return group::synchronized(pod, presenting, expired, timeout);
                }
                continue;
            }
            if observed.group
                && pod.labelled_primary()
                && !pod.created_since_start
                && !recorded.primary_may_restart()
            {
                return group::before_primary_restart(ops, observed, pod, expired, timeout);
            }
            // A pod the StatefulSet controller made again from a spec it had not caught up with
            // (its watch lagging, after an API server restart) never ran the target: it goes
            // again, once the controller has caught up.
            let recreated_stale = pod.created_since_start && !pod.on_target_revision;
            let running = pod.exists && !pod.terminating;
            if running && (!pod.created_since_start || recreated_stale) && pod.statefulset_caught_up
            {
                return Step::EvictPod {
                    pod: pod.name.clone(),
                    again: recreated_stale,
                };
            }
            let why = if !pod.exists {
                "waiting for the StatefulSet to recreate it"
            } else if pod.terminating {
                "waiting for it to terminate"
            } else if !pod.statefulset_caught_up {
                "waiting for the StatefulSet controller to see the new spec"
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
    if let Some(step) = group::endpoint_retirement(&progress, observed, expired, timeout) {
        return step;
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

mod group;

#[cfg(test)]
mod tests;
