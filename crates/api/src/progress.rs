//! An ops request's progress, read once from its status: which of its steps are done, how far
//! each pod's restart is, when the current step began, and how the request ended. The
//! ops-manager decides on it and `kubectl mssql` shows it, so neither scans condition strings.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::condition::{Condition, find};
use crate::ops::{MssqlServerOpsRequest, PHASE_FAILED, PHASE_SKIPPED, PHASE_SUCCESSFUL};
use crate::steps::{
    CHECK_POD_RUNNING, CHECK_PRIMARY_SWITCHED, CHECK_REPLICA_SYNCHRONIZED,
    CHECK_SERVED_CERTIFICATE, ENDPOINT_RETIRED, ENDPOINT_TRUSTED, EVICT_POD, FAILED, GET_POD,
    ISSUED, PAUSE_SUCCEEDED, RESTART_NODES, RESTART_PRIMARY_IN_PLACE, SKIPPED, SWITCHOVER_PRIMARY,
    SYNCED, UPDATE_PETSETS,
};

/// What the request's conditions say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// `DatabasePauseSucceeded`.
    pub paused: bool,
    /// `IssueCertificatesSucceeded`: cert-manager was asked to re-issue (a rotation).
    pub reissue_requested: bool,
    /// `CertificateSynced`.
    pub certificates_synced: bool,
    /// `UpdatePetSets`.
    pub workload_updated: bool,
    /// `RestartNodes`: every pod was restarted.
    pub pods_restarted: bool,
    /// `EndpointCertificateTrusted`: every replica of the group trusts the new endpoint
    /// certificate (its restarts present it).
    pub endpoint_trusted: bool,
    /// `EndpointCertificateRetired`: no replica trusts the old one any more.
    pub endpoint_retired: bool,
    /// Each pod whose restart has begun, by name.
    pub pods: BTreeMap<String, PodProgress>,
    /// The pod whose restart began last and has not ended.
    pub restarting: Option<String>,
    /// When the current step began: the moment the last finished step or sub-step finished.
    pub step_started: Option<Timestamp>,
    pub ended: Option<Ended>,
}

/// One pod's restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodProgress {
    /// `EvictPod--<pod>` is True.
    pub evicted: bool,
    /// `CheckPodRunning--<pod>`: back, Ready, on the new revision.
    pub running: bool,
    /// `CheckServedCertificate--<pod>`: seen serving its Secret's certificate.
    pub served: bool,
    /// `CheckReplicaSynchronized--<pod>`: back in its group, connected and synchronized.
    pub synchronized: bool,
    /// `SwitchoverPrimary--<pod>`: as primary, the coordinators were asked to hand its role over.
    pub switchover_asked: bool,
    /// `CheckPrimarySwitched--<pod>`: another replica took its role over.
    pub switched: bool,
    /// `RestartPrimaryInPlace--<pod>`: it restarts as primary (no secondary could take over).
    pub in_place: bool,
}

impl PodProgress {
    /// A primary that may restart now: its role went to another replica, or it restarts in
    /// place.
    pub fn primary_may_restart(&self) -> bool {
        self.switched || self.in_place
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    Successful,
    /// The step that failed (the `Failed` condition's reason) and why.
    Failed {
        step: String,
        message: String,
    },
    Skipped {
        message: String,
    },
}

impl Progress {
    pub fn of(ops: &MssqlServerOpsRequest) -> Self {
        let conditions = ops.conditions();
        let done = |type_: &str| find(conditions, type_).is_some_and(Condition::is_true);
        let mut pods: BTreeMap<String, PodProgress> = BTreeMap::new();
        let mut restarting = None;
        for condition in conditions {
            let Some((step, pod)) = condition.type_.split_once("--") else {
                continue;
            };
            let progress = pods.entry(pod.to_owned()).or_default();
            match step {
                EVICT_POD => progress.evicted = condition.is_true(),
                CHECK_POD_RUNNING => progress.running = condition.is_true(),
                CHECK_SERVED_CERTIFICATE => progress.served = condition.is_true(),
                CHECK_REPLICA_SYNCHRONIZED => progress.synchronized = condition.is_true(),
                SWITCHOVER_PRIMARY => progress.switchover_asked = condition.is_true(),
                CHECK_PRIMARY_SWITCHED => progress.switched = condition.is_true(),
                RESTART_PRIMARY_IN_PLACE => progress.in_place = condition.is_true(),
                _ => {}
            }
            if step == GET_POD {
                restarting = Some(pod.to_owned());
            }
        }
        // Conditions are kept in the order they were first recorded: the last pod whose restart
        // began is the one under way, unless it is back.
        let restarting = restarting.filter(|pod| !pods.get(pod).is_some_and(|p| p.running));
        let message = |type_: &str| {
            find(conditions, type_)
                .and_then(|c| c.message.clone())
                .unwrap_or_else(|| "no message recorded".to_owned())
        };
        let ended = match ops.phase() {
            PHASE_SUCCESSFUL => Some(Ended::Successful),
            PHASE_FAILED => Some(Ended::Failed {
                step: find(conditions, FAILED)
                    .and_then(|c| c.reason.clone())
                    .unwrap_or_default(),
                message: message(FAILED),
            }),
            PHASE_SKIPPED => Some(Ended::Skipped {
                message: message(SKIPPED),
            }),
            _ => None,
        };
        Self {
            paused: done(PAUSE_SUCCEEDED),
            reissue_requested: done(ISSUED),
            certificates_synced: done(SYNCED),
            workload_updated: done(UPDATE_PETSETS),
            pods_restarted: done(RESTART_NODES),
            endpoint_trusted: done(ENDPOINT_TRUSTED),
            endpoint_retired: done(ENDPOINT_RETIRED),
            pods,
            restarting,
            step_started: conditions
                .iter()
                .filter(|c| c.is_true())
                .map(|c| c.last_transition_time.0)
                .max(),
            ended,
        }
    }

    /// Pod `pod`'s restart, as far as recorded.
    pub fn pod(&self, pod: &str) -> PodProgress {
        self.pods.get(pod).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::ops::{OpsRequestSpec, OpsRequestStatus};
    use crate::steps::pod_step;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn request(phase: &str, conditions: Vec<Condition>) -> MssqlServerOpsRequest {
        let mut ops = MssqlServerOpsRequest::new("r", OpsRequestSpec::default());
        ops.status = Some(OpsRequestStatus {
            phase: Some(phase.to_owned()),
            conditions,
            ..OpsRequestStatus::default()
        });
        ops
    }

    fn step(type_: &str, status: bool, second: i64) -> Condition {
        Condition::new(type_, status, type_, "", Some(1), at(second))
    }

    #[test]
    fn steps_done_and_each_pods_restart_are_read_from_the_conditions() {
        let ops = request(
            "Progressing",
            vec![
                step("ReconfigureTLS", true, 10),
                step(PAUSE_SUCCEEDED, true, 11),
                step(SYNCED, true, 20),
                step(UPDATE_PETSETS, true, 21),
                step(&pod_step(GET_POD, "db-1"), true, 22),
                step(&pod_step(EVICT_POD, "db-1"), true, 22),
                step(&pod_step(CHECK_POD_RUNNING, "db-1"), true, 30),
                step(&pod_step(CHECK_SERVED_CERTIFICATE, "db-1"), true, 31),
                step(&pod_step(GET_POD, "db-0"), true, 32),
                step(&pod_step(EVICT_POD, "db-0"), false, 33),
            ],
        );
        let progress = Progress::of(&ops);
        assert!(progress.paused && progress.certificates_synced && progress.workload_updated);
        assert!(!progress.reissue_requested && !progress.pods_restarted);
        assert_eq!(
            progress.pod("db-1"),
            PodProgress {
                evicted: true,
                running: true,
                served: true,
                ..PodProgress::default()
            }
        );
        assert_eq!(progress.pod("db-0"), PodProgress::default());
        assert_eq!(progress.restarting.as_deref(), Some("db-0"));
        // A sub-step still False does not start a step; the last True one does.
        assert_eq!(progress.step_started, Some(at(32).0));
        assert_eq!(progress.ended, None);
    }

    #[test]
    fn a_primarys_switchover_and_each_replicas_synchronization_are_read_from_the_conditions() {
        let ops = request(
            "Progressing",
            vec![
                step(&pod_step(CHECK_REPLICA_SYNCHRONIZED, "db-1"), true, 1),
                step(&pod_step(CHECK_REPLICA_SYNCHRONIZED, "db-2"), false, 2),
                step(&pod_step(SWITCHOVER_PRIMARY, "db-0"), true, 3),
            ],
        );
        let progress = Progress::of(&ops);
        assert!(progress.pod("db-1").synchronized);
        assert!(!progress.pod("db-2").synchronized);
        let asked = progress.pod("db-0");
        assert!(asked.switchover_asked && !asked.primary_may_restart());

        for done in [CHECK_PRIMARY_SWITCHED, RESTART_PRIMARY_IN_PLACE] {
            let ops = request("Progressing", vec![step(&pod_step(done, "db-0"), true, 4)]);
            assert!(
                Progress::of(&ops).pod("db-0").primary_may_restart(),
                "{done}"
            );
        }
    }

    #[test]
    fn a_pod_that_is_back_is_not_the_one_restarting() {
        let ops = request(
            "Progressing",
            vec![
                step(&pod_step(GET_POD, "db-0"), true, 1),
                step(&pod_step(CHECK_POD_RUNNING, "db-0"), true, 2),
            ],
        );
        assert_eq!(Progress::of(&ops).restarting, None);
    }

    #[test]
    fn how_a_request_ended() {
        let failed = Condition::new(FAILED, false, "CheckPodsCurrent", "stale", Some(1), at(5));
        assert_eq!(
            Progress::of(&request("Failed", vec![failed])).ended,
            Some(Ended::Failed {
                step: "CheckPodsCurrent".to_owned(),
                message: "stale".to_owned()
            })
        );
        let skipped = Condition::new(SKIPPED, true, SKIPPED, "superseded", Some(1), at(5));
        assert_eq!(
            Progress::of(&request("Skipped", vec![skipped])).ended,
            Some(Ended::Skipped {
                message: "superseded".to_owned()
            })
        );
        assert_eq!(
            Progress::of(&request("Successful", vec![])).ended,
            Some(Ended::Successful)
        );
        assert_eq!(
            Progress::of(&request("Failed", vec![])).ended,
            Some(Ended::Failed {
                step: String::new(),
                message: "no message recorded".to_owned()
            })
        );
        assert_eq!(
            Progress::of(&request("Pending", vec![])),
            Progress::default()
        );
    }
}
