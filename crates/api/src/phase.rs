//! The database's conditions as KubeDB names them, and its phase, derived from them in KubeDB's
//! priority order (`PhaseFromCondition`).

use crate::condition::{Condition, find};

pub const PROVISIONING_STARTED: &str = "ProvisioningStarted";
pub const REPLICA_READY: &str = "ReplicaReady";
pub const ACCEPTING_CONNECTION: &str = "AcceptingConnection";
pub const READY: &str = "Ready";
pub const PROVISIONED: &str = "Provisioned";
pub const PAUSED: &str = "Paused";
pub const HALTED: &str = "Halted";
pub const HEALTH_CHECK_PAUSED: &str = "HealthCheckPaused";
pub const DATA_RESTORE_STARTED: &str = "DataRestoreStarted";
pub const DATA_RESTORED: &str = "DataRestored";
/// KubeDB's condition of an availability group whose primary is up.
pub const AG_PRIMARY_REPLICA_READY: &str = "AGPrimaryReplicaReady";
/// This operator's condition for input it cannot act on (KubeDB rejects such input in a webhook).
pub const SPEC_VALID: &str = "SpecValid";
/// This operator's condition while some pods run older certificates than their Secrets hold.
pub const CERTIFICATE_ROLLOUT_PENDING: &str = "CertificateRolloutPending";

pub const PHASE_PROVISIONING: &str = "Provisioning";
pub const PHASE_DATA_RESTORING: &str = "DataRestoring";
pub const PHASE_READY: &str = "Ready";
pub const PHASE_CRITICAL: &str = "Critical";
pub const PHASE_NOT_READY: &str = "NotReady";
pub const PHASE_HALTED: &str = "Halted";
pub const PHASE_UNKNOWN: &str = "Unknown";

fn status(conditions: &[Condition], type_: &str) -> Option<bool> {
    find(conditions, type_).map(Condition::is_true)
}

/// The phase KubeDB shows for these conditions; `None` before provisioning has started.
/// `Paused` does not change the phase.
pub fn phase(conditions: &[Condition]) -> Option<&'static str> {
    if status(conditions, HEALTH_CHECK_PAUSED) == Some(true) {
        return Some(PHASE_UNKNOWN);
    }
    let mut phase =
        (status(conditions, PROVISIONING_STARTED) == Some(true)).then_some(PHASE_PROVISIONING);
    if status(conditions, HALTED) == Some(true) {
        return Some(PHASE_HALTED);
    }
    if status(conditions, DATA_RESTORE_STARTED) == Some(true) {
        match status(conditions, DATA_RESTORED) {
            None => return Some(PHASE_DATA_RESTORING),
            Some(false) => return Some(PHASE_NOT_READY),
            Some(true) => {}
        }
    }
    if status(conditions, PROVISIONED) == Some(true) {
        if status(conditions, ACCEPTING_CONNECTION) == Some(false) {
            return Some(PHASE_NOT_READY);
        }
        if status(conditions, REPLICA_READY) == Some(false)
            || status(conditions, READY) == Some(false)
        {
            return Some(PHASE_CRITICAL);
        }
        if status(conditions, READY) == Some(true) {
            phase = Some(PHASE_READY);
        }
    }
    phase
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn conditions(list: &[(&str, bool)]) -> Vec<Condition> {
        list.iter()
            .map(|(type_, on)| Condition {
                type_: (*type_).to_owned(),
                status: if *on { "True" } else { "False" }.to_owned(),
                observed_generation: None,
                severity: None,
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
                reason: None,
                message: None,
            })
            .collect()
    }

    #[test]
    fn follows_kubedbs_priority_order() {
        type Case<'a> = (&'a [(&'a str, bool)], Option<&'a str>);
        let cases: &[Case] = &[
            (&[], None),
            (&[(PROVISIONING_STARTED, true)], Some("Provisioning")),
            (
                &[
                    (PROVISIONING_STARTED, true),
                    (HEALTH_CHECK_PAUSED, true),
                    (HALTED, true),
                ],
                Some("Unknown"),
            ),
            (
                &[
                    (PROVISIONING_STARTED, true),
                    (HALTED, true),
                    (PROVISIONED, true),
                    (READY, true),
                ],
                Some("Halted"),
            ),
            (
                &[(PROVISIONING_STARTED, true), (DATA_RESTORE_STARTED, true)],
                Some("DataRestoring"),
            ),
            (
                &[
                    (PROVISIONING_STARTED, true),
                    (DATA_RESTORE_STARTED, true),
                    (DATA_RESTORED, false),
                ],
                Some("NotReady"),
            ),
            (
                &[
                    (PROVISIONING_STARTED, true),
                    (PROVISIONED, true),
                    (ACCEPTING_CONNECTION, false),
                    (READY, false),
                ],
                Some("NotReady"),
            ),
            (
                &[
                    (PROVISIONING_STARTED, true),
                    (PROVISIONED, true),
                    (REPLICA_READY, false),
                    (READY, true),
                ],
                Some("Critical"),
            ),
            (
                &[
                    (PROVISIONING_STARTED, true),
                    (PROVISIONED, true),
                    (READY, false),
                ],
                Some("Critical"),
            ),
            (
                &[
                    (PROVISIONING_STARTED, true),
                    (PROVISIONED, true),
                    (REPLICA_READY, true),
                    (ACCEPTING_CONNECTION, true),
                    (READY, true),
                ],
                Some("Ready"),
            ),
            (
                &[(PROVISIONING_STARTED, true), (PROVISIONED, true)],
                Some("Provisioning"),
            ),
            (
                &[(PROVISIONING_STARTED, true), (READY, true)],
                Some("Provisioning"),
            ),
            (
                &[
                    (PROVISIONING_STARTED, true),
                    (PROVISIONED, true),
                    (READY, true),
                    (PAUSED, true),
                ],
                Some("Ready"),
            ),
        ];
        for (list, expected) in cases {
            assert_eq!(phase(&conditions(list)), *expected, "{list:?}");
        }
    }
}
