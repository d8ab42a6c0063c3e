//! The machine's decisions, by stage of a request; here: what the tests share.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mssql_api::condition::Condition;
use mssql_api::ops::{OpsRequestSpec, OpsRequestStatus, OpsTlsSpec, PHASE_PROGRESSING};

use super::*;

mod certificates;
mod ending;
mod group;
mod restarts;
mod starting;

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
        database: Database::Exists {
            phase: Some("Ready".to_owned()),
        },
        ..Observed::default()
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
        statefulset_caught_up: true,
        created_since_start: restarted,
        ..PodState::default()
    }
}
