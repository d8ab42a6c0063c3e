//! What the database's status says, as a pure function of what was observed. KubeDB's condition
//! types, reasons and messages; the phase follows from them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use mssql_api::condition::{self, Condition};
use mssql_api::phase::{
    self, ACCEPTING_CONNECTION, AG_PRIMARY_REPLICA_READY, CERTIFICATE_ROLLOUT_PENDING, HALTED,
    PHASE_NOT_READY, PROVISIONED, PROVISIONING_STARTED, READY, REPLICA_READY, SPEC_VALID,
};
use mssql_api::{MssqlServerStatus, PodCertificate, ReplicaStatus};

use super::health::NotReady;
use super::renewal::{Plan, Rollout};
use mssql_api::pods::StartedCertificate;

use crate::build::start::RunningCertificate;

/// What the provisioner saw of the database's pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub replicas: i32,
    pub ready_replicas: i32,
    /// `None` for a standalone server (it has no roles); else whether a Ready pod is `primary`
    /// and its SQL Server says so too (`super::replicas::primary_ready`).
    pub primary_ready: Option<bool>,
    /// An availability group's replicas; empty for a standalone server.
    pub group: Vec<ReplicaStatus>,
    /// Per pod (by name), the certificates it started with, by alias.
    pub started: BTreeMap<String, BTreeMap<String, StartedCertificate>>,
    /// What each alias's Secret holds now.
    pub secrets: BTreeMap<String, StartedCertificate>,
    /// Pods that run older certificates than their Secrets, and what happens to them.
    pub rollout: Option<Rollout>,
    /// The pods that are not Ready, and why.
    pub not_ready: Vec<NotReady>,
}

impl Observed {
    /// Each pod's certificate per alias, and whether the alias's Secret has moved on from it.
    pub fn each(&self) -> impl Iterator<Item = (&String, &String, &StartedCertificate, bool)> {
        self.started.iter().flat_map(move |(pod, started)| {
            started.iter().map(move |(alias, running)| {
                let outdated = self
                    .secrets
                    .get(alias)
                    .is_some_and(|now| now.serial != running.serial);
                (pod, alias, running, outdated)
            })
        })
    }

    /// Per pod and alias, the certificate the pod runs, for the metrics.
    pub fn running(&self) -> Vec<RunningCertificate> {
        self.each()
            .map(|(pod, alias, running, outdated)| RunningCertificate {
                pod: pod.clone(),
                alias: alias.clone(),
                not_after: running.not_after,
                outdated,
            })
            .collect()
    }

    /// The same, as the database's status shows it.
    pub fn pod_certificates(&self) -> Vec<PodCertificate> {
        self.each()
            .map(|(pod, alias, running, outdated)| PodCertificate {
                pod: pod.clone(),
                alias: alias.clone(),
                serial: running.serial.clone(),
                not_after: Timestamp::from_second(running.not_after)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                outdated,
            })
            .collect()
    }
}

/// `: <why pod a is not Ready>; <why pod b…>`, or nothing when nothing is known.
fn why_not_ready(pods: &[NotReady]) -> String {
    if pods.is_empty() {
        return String::new();
    }
    let texts: Vec<&str> = pods.iter().map(|p| p.text.as_str()).collect();
    format!(": {}", texts.join("; "))
}

/// The status after a successful provisioning pass.
pub fn provisioned(
    status: &MssqlServerStatus,
    db: &str,
    observed: &Observed,
    generation: Option<i64>,
    now: &Time,
) -> MssqlServerStatus {
    let mut conditions = status.conditions.clone();
    let new = |type_: &str, on: bool, reason: &str, message: String| {
        Condition::new(type_, on, reason, message, generation, now.clone())
    };
    condition::remove(&mut conditions, SPEC_VALID);
    condition::remove(&mut conditions, HALTED);
    condition::set(
        &mut conditions,
        new(
            PROVISIONING_STARTED,
            true,
            "DatabaseProvisioningStartedSuccessfully",
            format!("The KubeDB operator has started the provisioning of MSSQLServer: {db}"),
        ),
    );

    let all_ready = observed.ready_replicas >= observed.replicas && observed.replicas > 0;
    condition::set(
        &mut conditions,
        if all_ready {
            new(
                REPLICA_READY,
                true,
                "AllReplicasReady",
                format!("All replicas are ready for MSSQLServer {db}"),
            )
        } else {
            new(
                REPLICA_READY,
                false,
                "SomeReplicasNotReady",
                format!(
                    "{} of {} replicas are ready for MSSQLServer {db}{}",
                    observed.ready_replicas,
                    observed.replicas,
                    why_not_ready(&observed.not_ready)
                ),
            )
        },
    );
    if let Some(primary) = observed.primary_ready {
        condition::set(
            &mut conditions,
            if primary {
                new(
                    AG_PRIMARY_REPLICA_READY,
                    true,
                    "AvailabilyGroupCreatedInPrimary",
                    format!("Primary replica is ready for MSSQL {db}"),
                )
            } else {
                new(
                    AG_PRIMARY_REPLICA_READY,
                    false,
                    "PrimaryReplicaNotReady",
                    format!("No ready primary replica for MSSQL {db}"),
                )
            },
        );
    }
    let accepting = observed
        .primary_ready
        .unwrap_or(observed.ready_replicas > 0);
    condition::set(
        &mut conditions,
        if accepting {
            new(
                ACCEPTING_CONNECTION,
                true,
                "AcceptingConnection",
                format!("database {db} is accepting connection"),
            )
        } else {
            new(
                ACCEPTING_CONNECTION,
                false,
                "NotAcceptingConnection",
                format!("database {db} is not accepting connection"),
            )
        },
    );
    let ready = all_ready && accepting;
    condition::set(
        &mut conditions,
        if ready {
            new(
                READY,
                true,
                "AllReplicasReady",
                format!("database {db} is ready"),
            )
        } else {
            new(
                READY,
                false,
                "ReadinessCheckFailed",
                format!("database {db} is not ready"),
            )
        },
    );
    // Provisioned once, then kept: later trouble shows as Critical or NotReady, not as a restart.
    if ready && condition::find(&conditions, PROVISIONED).is_none() {
        condition::set(
            &mut conditions,
            new(
                PROVISIONED,
                true,
                "DatabaseSuccessfullyProvisioned",
                format!("The MSSQLServer: {db} is successfully provisioned."),
            ),
        );
    }
    match &observed.rollout {
        Some(rollout) => {
            let person = matches!(rollout.plan, Plan::Manual | Plan::Ended { .. });
            condition::set(
                &mut conditions,
                Condition {
                    severity: person.then(|| "Warning".to_owned()),
                    ..new(
                        CERTIFICATE_ROLLOUT_PENDING,
                        true,
                        rollout.reason(),
                        rollout.message(),
                    )
                },
            );
        }
        None => condition::remove(&mut conditions, CERTIFICATE_ROLLOUT_PENDING),
    }
    finish(
        conditions,
        generation,
        observed.pod_certificates(),
        observed.group.clone(),
    )
}

/// The status of a database whose spec cannot be provisioned; `errors` say why.
pub fn invalid(
    status: &MssqlServerStatus,
    errors: &str,
    generation: Option<i64>,
    now: &Time,
) -> MssqlServerStatus {
    let mut conditions = status.conditions.clone();
    condition::set(
        &mut conditions,
        Condition {
            severity: Some("Error".to_owned()),
            ..Condition::new(
                SPEC_VALID,
                false,
                "InvalidSpec",
                errors,
                generation,
                now.clone(),
            )
        },
    );
    let mut status = finish(
        conditions,
        generation,
        status.certificates.clone(),
        status.replicas.clone(),
    );
    // A database that never got as far as provisioning has no phase of its own: the STATUS
    // column says NotReady rather than nothing (a running one keeps the phase its pods earn).
    status.phase = status.phase.or_else(|| Some(PHASE_NOT_READY.to_owned()));
    status
}

/// The status of a halted database.
pub fn halted(
    status: &MssqlServerStatus,
    db: &str,
    generation: Option<i64>,
    now: &Time,
) -> MssqlServerStatus {
    let mut conditions = status.conditions.clone();
    // Its pods are gone, and with them what they ran and their replicas.
    condition::remove(&mut conditions, CERTIFICATE_ROLLOUT_PENDING);
    condition::set(
        &mut conditions,
        Condition::new(
            HALTED,
            true,
            "DatabaseHalted",
            format!(
                "MSSQLServer {db} is halted: its pods are removed, its volumes and secrets kept"
            ),
            generation,
            now.clone(),
        ),
    );
    finish(conditions, generation, Vec::new(), Vec::new())
}

fn finish(
    conditions: Vec<Condition>,
    generation: Option<i64>,
    certificates: Vec<PodCertificate>,
    replicas: Vec<ReplicaStatus>,
) -> MssqlServerStatus {
    MssqlServerStatus {
        phase: phase::phase(&conditions).map(str::to_owned),
        observed_generation: generation,
        conditions,
        certificates,
        replicas,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn now() -> Time {
        Time(Timestamp::from_second(1_700_000_000).unwrap())
    }

    /// The status of a database observed for the first time.
    fn first(db: &str, observed: &Observed) -> MssqlServerStatus {
        provisioned(&MssqlServerStatus::default(), db, observed, Some(1), &now())
    }

    fn message<'a>(status: &'a MssqlServerStatus, type_: &str) -> Option<&'a str> {
        condition::find(&status.conditions, type_)?
            .message
            .as_deref()
    }

    fn types(status: &MssqlServerStatus) -> Vec<(&str, &str)> {
        status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect()
    }

    #[test]
    fn a_ready_standalone_server_is_provisioned_and_ready() {
        let observed = Observed {
            replicas: 1,
            ready_replicas: 1,
            primary_ready: None,
            ..Observed::default()
        };
        let status = provisioned(
            &MssqlServerStatus::default(),
            "demo/ms",
            &observed,
            Some(2),
            &now(),
        );
        assert_eq!(
            types(&status),
            [
                ("ProvisioningStarted", "True"),
                ("ReplicaReady", "True"),
                ("AcceptingConnection", "True"),
                ("Ready", "True"),
                ("Provisioned", "True")
            ]
        );
        assert_eq!(status.phase.as_deref(), Some("Ready"));
        assert_eq!(status.observed_generation, Some(2));
        let messages: Vec<_> = status
            .conditions
            .iter()
            .map(|c| c.message.clone().unwrap())
            .collect();
        assert_eq!(
            messages,
            [
                "The KubeDB operator has started the provisioning of MSSQLServer: demo/ms",
                "All replicas are ready for MSSQLServer demo/ms",
                "database demo/ms is accepting connection",
                "database demo/ms is ready",
                "The MSSQLServer: demo/ms is successfully provisioned.",
            ]
        );
    }

    #[test]
    fn starting_pods_keep_the_database_provisioning() {
        let observed = Observed {
            replicas: 3,
            ready_replicas: 1,
            primary_ready: Some(false),
            ..Observed::default()
        };
        let status = first("demo/ag", &observed);
        assert_eq!(status.phase.as_deref(), Some("Provisioning"));
        assert!(condition::find(&status.conditions, PROVISIONED).is_none());
        assert_eq!(
            message(&status, REPLICA_READY),
            Some("1 of 3 replicas are ready for MSSQLServer demo/ag")
        );
    }

    #[test]
    fn replica_ready_says_why_pods_are_not_ready() {
        let observed = Observed {
            replicas: 2,
            ready_replicas: 1,
            not_ready: vec![NotReady {
                text: "pod ag-1 cannot be scheduled: 0/3 nodes are available".into(),
                needs_person: true,
            }],
            ..Observed::default()
        };
        let status = first("demo/ag", &observed);
        assert_eq!(
            message(&status, REPLICA_READY),
            Some(
                "1 of 2 replicas are ready for MSSQLServer demo/ag: pod ag-1 cannot be scheduled: 0/3 nodes are available"
            )
        );
        assert_eq!(
            status.phase.as_deref(),
            Some("Provisioning"),
            "never an empty STATUS"
        );
    }

    #[test]
    fn an_availability_group_needs_its_primary() {
        let all_up = Observed {
            replicas: 3,
            ready_replicas: 3,
            primary_ready: Some(true),
            ..Observed::default()
        };
        let status = first("demo/ag", &all_up);
        assert_eq!(status.phase.as_deref(), Some("Ready"));
        assert!(
            condition::find(&status.conditions, AG_PRIMARY_REPLICA_READY)
                .unwrap()
                .is_true()
        );
        // Later the primary goes away: the database is no longer accepting connections.
        let no_primary = Observed {
            primary_ready: Some(false),
            ..all_up.clone()
        };
        let status = provisioned(&status, "demo/ag", &no_primary, Some(1), &now());
        assert_eq!(status.phase.as_deref(), Some("NotReady"));
        // A replica down with the primary up: Critical.
        let degraded = Observed {
            ready_replicas: 2,
            primary_ready: Some(true),
            ..all_up
        };
        assert_eq!(
            provisioned(&status, "demo/ag", &degraded, Some(1), &now())
                .phase
                .as_deref(),
            Some("Critical")
        );
    }

    #[test]
    fn invalid_and_halted_states_are_visible() {
        let status = invalid(
            &MssqlServerStatus::default(),
            "spec.replicas: bad",
            Some(3),
            &now(),
        );
        let condition = condition::find(&status.conditions, SPEC_VALID).unwrap();
        assert_eq!(
            (condition.status.as_str(), condition.severity.as_deref()),
            ("False", Some("Error"))
        );
        assert_eq!(
            status.phase.as_deref(),
            Some("NotReady"),
            "never provisioned: the STATUS column is not empty"
        );
        let observed = Observed {
            replicas: 1,
            ready_replicas: 1,
            primary_ready: None,
            ..Observed::default()
        };
        let fixed = provisioned(&status, "demo/ms", &observed, Some(4), &now());
        assert_eq!(
            super::invalid(&fixed, "spec.replicas: bad", Some(5), &now())
                .phase
                .as_deref(),
            Some("Ready"),
            "a running database broken by an edit keeps the phase its pods earn"
        );
        assert!(
            condition::find(&fixed.conditions, SPEC_VALID).is_none(),
            "fixing the spec clears the error"
        );
        let halted = halted(&fixed, "demo/ms", Some(5), &now());
        assert_eq!(halted.phase.as_deref(), Some("Halted"));
        let resumed = provisioned(&halted, "demo/ms", &observed, Some(6), &now());
        assert_eq!(resumed.phase.as_deref(), Some("Ready"));
    }

    #[test]
    fn a_groups_replicas_are_shown_kept_while_invalid_and_gone_when_halted() {
        let replica = ReplicaStatus {
            pod: "ag-0".to_owned(),
            role: Some("primary".to_owned()),
            sql_role: Some("PRIMARY".to_owned()),
            synchronized: true,
            connected: true,
            since: Some("2026-01-01T00:00:00Z".to_owned()),
        };
        let observed = Observed {
            replicas: 1,
            ready_replicas: 1,
            primary_ready: Some(true),
            group: vec![replica.clone()],
            ..Observed::default()
        };
        let status = first("demo/ag", &observed);
        assert_eq!(status.replicas, [replica]);
        let invalid = super::invalid(&status, "broken", Some(2), &now());
        assert_eq!(invalid.replicas, status.replicas, "kept while invalid");
        assert!(
            halted(&status, "demo/ag", Some(2), &now())
                .replicas
                .is_empty()
        );
    }

    #[test]
    fn pods_show_the_certificate_they_run_and_whether_the_secret_moved_on() {
        let cert = |serial: &str, not_after| StartedCertificate {
            serial: serial.to_owned(),
            not_after,
        };
        let observed = Observed {
            replicas: 2,
            ready_replicas: 2,
            started: [
                (
                    "db-0".to_owned(),
                    [("server".to_owned(), cert("0A", 1_800_000_000))].into(),
                ),
                (
                    "db-1".to_owned(),
                    [("server".to_owned(), cert("0B", 1_900_000_000))].into(),
                ),
            ]
            .into(),
            secrets: [("server".to_owned(), cert("0B", 1_900_000_000))].into(),
            ..Observed::default()
        };
        let status = first("demo/db", &observed);
        assert_eq!(
            status.certificates,
            [
                PodCertificate {
                    pod: "db-0".to_owned(),
                    alias: "server".to_owned(),
                    serial: "0A".to_owned(),
                    not_after: "2027-01-15T08:00:00Z".to_owned(),
                    outdated: true,
                },
                PodCertificate {
                    pod: "db-1".to_owned(),
                    alias: "server".to_owned(),
                    serial: "0B".to_owned(),
                    not_after: "2030-03-17T17:46:40Z".to_owned(),
                    outdated: false,
                },
            ]
        );
        assert_eq!(
            observed
                .running()
                .iter()
                .map(|r| (r.pod.as_str(), r.not_after, r.outdated))
                .collect::<Vec<_>>(),
            [
                ("db-0", 1_800_000_000, true),
                ("db-1", 1_900_000_000, false)
            ],
            "what each pod runs, and the one behind its Secret"
        );
        let invalid = super::invalid(&status, "broken", Some(2), &now());
        assert_eq!(
            invalid.certificates, status.certificates,
            "kept while invalid"
        );
    }
}
