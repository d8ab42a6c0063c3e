//! Ops requests as `ops list` rows, `ops describe` reports and `--watch` progress (pure).

use std::collections::BTreeMap;

use kube::ResourceExt;
use mssql_api::MssqlServerOpsRequest;
use mssql_api::annotations;
use mssql_api::condition::Condition;
use mssql_api::ops::{TYPE_RECONFIGURE_TLS, TYPE_RESTART, TlsChange};
use mssql_api::progress::Progress;
use serde::Serialize;

use crate::text::age;

/// One `ops list` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpsRow {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub operation: String,
    pub database: String,
    /// Empty until the ops-manager has seen the request.
    pub phase: String,
    /// RFC 3339.
    pub created: Option<String>,
    pub age: String,
}

/// `ops describe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpsDetail {
    #[serde(flatten)]
    pub row: OpsRow,
    pub timeout: Option<String>,
    pub apply: Option<String>,
    pub restarts: Option<Restarts>,
    pub conditions: Vec<ConditionRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    /// RFC 3339.
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// The restart step: pods restarted (running again on the new revision) of the pods that ran
/// when the restarts began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restarts {
    pub done: usize,
    pub total: usize,
    /// The pod being restarted now, if any.
    pub current: Option<String>,
}

/// What a request does, in a few words: `add TLS (Issuer/ca)`, `rotate certificates`, ...
pub fn operation(ops: &MssqlServerOpsRequest) -> String {
    let spec = &ops.spec;
    match (spec.type_.as_str(), spec.tls.as_ref()) {
        // What the operator will do, decided by the same code.
        (TYPE_RECONFIGURE_TLS, Some(tls)) => match spec.tls_change() {
            TlsChange::Rotate => "rotate certificates".to_owned(),
            TlsChange::Remove => "remove TLS".to_owned(),
            TlsChange::Update => match (&tls.issuer_ref, tls.client_tls) {
                (Some(i), Some(true)) => format!("add TLS ({}/{})", i.kind, i.name),
                (Some(i), _) => format!("set issuer {}/{}", i.kind, i.name),
                (None, _) => "update certificates".to_owned(),
            },
        },
        (TYPE_RESTART, _) => "restart pods".to_owned(),
        (other, _) => other.to_owned(),
    }
}

pub fn row(ops: &MssqlServerOpsRequest, now_unix: i64) -> OpsRow {
    let created = ops.metadata.creation_timestamp.as_ref().map(|t| t.0);
    OpsRow {
        namespace: ops.namespace().unwrap_or_default(),
        name: ops.name_any(),
        type_: ops.spec.type_.clone(),
        operation: operation(ops),
        database: ops.spec.database_ref.name.clone(),
        phase: ops.phase().to_owned(),
        created: created.map(|t| t.to_string()),
        age: created.map_or_else(|| "-".to_owned(), |t| age(now_unix - t.as_second())),
    }
}

/// Rows of `list`, oldest first (by namespace, then creation, then name).
pub fn rows(list: &[MssqlServerOpsRequest], database: Option<&str>, now_unix: i64) -> Vec<OpsRow> {
    let mut selected: Vec<&MssqlServerOpsRequest> = list
        .iter()
        .filter(|o| database.is_none_or(|db| o.spec.database_ref.name == db))
        .collect();
    selected.sort_by_key(|o| {
        (
            o.namespace(),
            o.metadata.creation_timestamp.as_ref().map(|t| t.0),
            o.name_any(),
        )
    });
    selected.into_iter().map(|o| row(o, now_unix)).collect()
}

pub fn detail(ops: &MssqlServerOpsRequest, now_unix: i64) -> OpsDetail {
    OpsDetail {
        row: row(ops, now_unix),
        timeout: ops.spec.timeout.clone(),
        apply: ops.spec.apply.clone(),
        restarts: restarts(ops),
        conditions: ops.conditions().iter().map(condition_row).collect(),
    }
}

fn condition_row(c: &Condition) -> ConditionRow {
    ConditionRow {
        time: c.last_transition_time.0.to_string(),
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone().unwrap_or_default(),
        message: c.message.clone().unwrap_or_default(),
    }
}

/// Restart progress, once the ops-manager has recorded the pods it restarts.
pub fn restarts(ops: &MssqlServerOpsRequest) -> Option<Restarts> {
    let recorded: BTreeMap<String, String> =
        serde_json::from_str(ops.annotations().get(annotations::PODS_BEFORE_RESTART)?).ok()?;
    let progress = Progress::of(ops);
    let done = recorded
        .keys()
        .filter(|pod| progress.pod(pod).running)
        .count();
    Some(Restarts {
        done,
        total: recorded.len(),
        current: progress.restarting,
    })
}

/// Remembers what `--watch` has shown, so each condition change and phase is shown once.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: BTreeMap<String, (String, String)>,
    phase: Option<String>,
    restarts: Option<(usize, usize)>,
}

/// Something new to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Phase(String),
    /// A condition that appeared or changed status or message.
    Step(ConditionRow),
    /// Pods restarted of total changed.
    Restarts(Restarts),
}

impl Tracker {
    /// What is new in `ops` since the last call, in the order the ops-manager recorded it.
    pub fn update(&mut self, ops: &MssqlServerOpsRequest) -> Vec<Change> {
        let mut changes = Vec::new();
        for condition in ops.conditions() {
            let key = (
                condition.status.clone(),
                condition.message.clone().unwrap_or_default(),
            );
            if self.seen.get(&condition.type_) != Some(&key) {
                self.seen.insert(condition.type_.clone(), key);
                changes.push(Change::Step(condition_row(condition)));
            }
        }
        if let Some(restarts) = restarts(ops) {
            let counts = Some((restarts.done, restarts.total));
            if self.restarts != counts {
                self.restarts = counts;
                changes.push(Change::Restarts(restarts));
            }
        }
        let phase = ops.phase().to_owned();
        if !phase.is_empty() && self.phase.as_ref() != Some(&phase) {
            self.phase = Some(phase.clone());
            // A phase the request is in comes before its steps; the phase it ends in, after.
            match ops.is_finished() {
                true => changes.push(Change::Phase(phase)),
                false => changes.insert(0, Change::Phase(phase)),
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use mssql_api::ops::OpsRequestStatus;
    use mssql_api::progress::Ended;
    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};

    use super::*;
    use crate::testdata::NOW;

    fn request(name: &str, db: &str, created: i64, spec: Value) -> MssqlServerOpsRequest {
        let mut spec = spec;
        spec["databaseRef"] = json!({"name": db});
        serde_json::from_value(json!({
            "apiVersion": "ops.kubedb.com/v1alpha1", "kind": "MSSQLServerOpsRequest",
            "metadata": {"name": name, "namespace": "demo",
                         "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
            "spec": spec
        }))
        .unwrap()
    }

    fn tls(tls: Value) -> Value {
        json!({"type": "ReconfigureTLS", "tls": tls})
    }

    fn condition(type_: &str, status: bool, message: &str, at: i64) -> Condition {
        let mut c = Condition::new(
            type_,
            status,
            "",
            message,
            Some(1),
            Time(Timestamp::from_second(at).unwrap()),
        );
        c.reason = None;
        c
    }

    fn with_status(
        mut ops: MssqlServerOpsRequest,
        phase: &str,
        conditions: Vec<Condition>,
    ) -> MssqlServerOpsRequest {
        ops.status = Some(OpsRequestStatus {
            phase: Some(phase.to_owned()),
            conditions,
            ..OpsRequestStatus::default()
        });
        ops
    }

    fn recorded(ops: &mut MssqlServerOpsRequest, pods: &[&str]) {
        let map: BTreeMap<&str, &str> = pods.iter().map(|p| (*p, "uid")).collect();
        ops.annotations_mut().insert(
            annotations::PODS_BEFORE_RESTART.to_owned(),
            serde_json::to_string(&map).unwrap(),
        );
    }

    #[test]
    fn operations_are_named_from_the_spec() {
        let issuer = json!({"name": "ca", "kind": "Issuer", "apiGroup": "cert-manager.io"});
        let cases = [
            (
                tls(json!({"issuerRef": issuer, "clientTLS": true})),
                "add TLS (Issuer/ca)",
            ),
            (tls(json!({"issuerRef": issuer})), "set issuer Issuer/ca"),
            (tls(json!({"remove": true})), "remove TLS"),
            (
                tls(json!({"rotateCertificates": true})),
                "rotate certificates",
            ),
            (
                tls(json!({"certificates": [{"alias": "client"}]})),
                "update certificates",
            ),
            // Refused by validation today, but a request made before that rule is shown as what
            // the operator does with it (it rotates).
            (
                tls(json!({"rotateCertificates": true, "remove": true})),
                "rotate certificates",
            ),
            (json!({"type": "ReconfigureTLS"}), "ReconfigureTLS"),
            (json!({"type": "Restart", "restart": {}}), "restart pods"),
            (json!({"type": "UpdateVersion"}), "UpdateVersion"),
        ];
        for (spec, expected) in cases {
            assert_eq!(operation(&request("r", "db", NOW, spec)), expected);
        }
    }

    #[test]
    fn rows_filter_by_database_and_sort_oldest_first() {
        let list = [
            request("b", "db", NOW - 30, tls(json!({"remove": true}))),
            with_status(
                request(
                    "a",
                    "db",
                    NOW - 600,
                    tls(json!({"rotateCertificates": true})),
                ),
                "Successful",
                vec![],
            ),
            request("c", "other", NOW - 5, json!({"type": "Restart"})),
        ];
        let all = rows(&list, None, NOW);
        let names: Vec<_> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            all[0],
            OpsRow {
                namespace: "demo".to_owned(),
                name: "a".to_owned(),
                type_: "ReconfigureTLS".to_owned(),
                operation: "rotate certificates".to_owned(),
                database: "db".to_owned(),
                phase: "Successful".to_owned(),
                created: Some("2025-12-31T23:50:00Z".to_owned()),
                age: "10m".to_owned(),
            }
        );
        assert_eq!(all[1].phase, "");
        let only = rows(&list, Some("other"), NOW);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].age, "5s");
    }

    #[test]
    fn describe_lists_every_condition_and_the_restart_progress() {
        let mut ops = with_status(
            request(
                "r",
                "db",
                NOW - 60,
                json!({"type": "ReconfigureTLS", "tls": {"rotateCertificates": true}, "timeout": "5m"}),
            ),
            "Progressing",
            vec![
                Condition::new(
                    "ReconfigureTLS",
                    true,
                    "ReconfigureTLS",
                    "started",
                    Some(1),
                    Time(Timestamp::from_second(NOW - 50).unwrap()),
                ),
                condition("GetPod--db-1", true, "get pod", NOW - 10),
                condition("EvictPod--db-1", true, "evict pod", NOW - 9),
                condition("CheckPodRunning--db-1", true, "running", NOW - 5),
                condition("GetPod--db-0", true, "get pod", NOW - 4),
            ],
        );
        recorded(&mut ops, &["db-0", "db-1"]);
        let detail = detail(&ops, NOW);
        assert_eq!(detail.timeout.as_deref(), Some("5m"));
        assert_eq!(detail.apply.as_deref(), Some("IfReady"));
        assert_eq!(
            detail.restarts,
            Some(Restarts {
                done: 1,
                total: 2,
                current: Some("db-0".to_owned())
            })
        );
        assert_eq!(detail.conditions.len(), 5);
        assert_eq!(
            detail.conditions[0],
            ConditionRow {
                time: "2025-12-31T23:59:10Z".to_owned(),
                type_: "ReconfigureTLS".to_owned(),
                status: "True".to_owned(),
                reason: "ReconfigureTLS".to_owned(),
                message: "started".to_owned(),
            }
        );
        assert_eq!(detail.conditions[1].reason, "");
    }

    #[test]
    fn no_restart_progress_before_the_pods_are_recorded() {
        let mut ops = request("r", "db", NOW, json!({"type": "Restart"}));
        assert_eq!(restarts(&ops), None);
        ops.annotations_mut().insert(
            annotations::PODS_BEFORE_RESTART.to_owned(),
            "not json".to_owned(),
        );
        assert_eq!(restarts(&ops), None);
        recorded(&mut ops, &["db-0"]);
        assert_eq!(
            restarts(&ops),
            Some(Restarts {
                done: 0,
                total: 1,
                current: None
            })
        );
    }

    #[test]
    fn outcomes_carry_the_failure_message() {
        let outcome = |ops: &MssqlServerOpsRequest| Progress::of(ops).ended;
        let base = request("r", "db", NOW, tls(json!({"remove": true})));
        assert_eq!(outcome(&base), None);
        assert_eq!(
            outcome(&with_status(base.clone(), "Progressing", vec![])),
            None
        );
        assert_eq!(
            outcome(&with_status(base.clone(), "Successful", vec![])),
            Some(Ended::Successful)
        );
        let failed = with_status(
            base.clone(),
            "Failed",
            vec![condition(
                "Failed",
                false,
                "certificates were not synced",
                NOW,
            )],
        );
        match outcome(&failed) {
            Some(Ended::Failed { message, .. }) => {
                assert_eq!(message, "certificates were not synced")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            outcome(&with_status(base.clone(), "Skipped", vec![])),
            Some(Ended::Skipped {
                message: "no message recorded".to_owned()
            })
        );
    }

    #[test]
    fn the_tracker_reports_each_change_once() {
        let mut tracker = Tracker::default();
        let mut ops = request("r", "db", NOW, json!({"type": "Restart"}));
        assert_eq!(tracker.update(&ops), []);
        ops = with_status(ops, "Pending", vec![]);
        assert_eq!(tracker.update(&ops), [Change::Phase("Pending".to_owned())]);
        assert_eq!(tracker.update(&ops), []);

        // A phase that is not the end comes before the steps.
        ops = with_status(
            ops,
            "Progressing",
            vec![condition("Restart", true, "started", NOW)],
        );
        let changes = tracker.update(&ops);
        assert_eq!(changes[0], Change::Phase("Progressing".to_owned()));
        assert!(matches!(&changes[1], Change::Step(c) if c.type_ == "Restart"));

        let evict = |status: bool| condition("EvictPod--db-0", status, "evict pod", NOW);
        ops = with_status(ops, "Progressing", vec![evict(false)]);
        recorded(&mut ops, &["db-0"]);
        let changes = tracker.update(&ops);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(&changes[0], Change::Step(c) if c.status == "False"));
        assert_eq!(
            changes[1],
            Change::Restarts(Restarts {
                done: 0,
                total: 1,
                current: None
            })
        );
        assert_eq!(tracker.update(&ops), []);

        ops = with_status(
            ops,
            "Successful",
            vec![
                evict(true),
                condition("CheckPodRunning--db-0", true, "running", NOW),
            ],
        );
        let changes = tracker.update(&ops);
        let kinds: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Phase(p) => p.clone(),
                Change::Step(s) => format!("{}={}", s.type_, s.status),
                Change::Restarts(r) => format!("{}/{}", r.done, r.total),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "EvictPod--db-0=True",
                "CheckPodRunning--db-0=True",
                "1/1",
                "Successful"
            ]
        );
    }
}
