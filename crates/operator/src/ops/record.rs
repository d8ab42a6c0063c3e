//! Recording a step: the request's status as one step changes it, written once against the
//! resourceVersion read, and annotations written once.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use kube::{Api, Client, ResourceExt};
use mssql_api::MssqlServerOpsRequest;
use mssql_api::condition::{self, Condition};
use mssql_api::ops::OpsRequestStatus;
use mssql_api::steps::*;

use super::{Context, Error, acting};
use crate::controller::apply::post_params;
use crate::controller::now;

/// Writes annotation `key` on the request unless it is already there, written against the
/// resourceVersion of `ops` (the request as `step` read it): what was recorded first is never
/// overwritten, as a copy older than the record fails with a conflict and the step is retried.
/// Returns the request as stored.
pub(super) async fn record_once(
    client: &Client,
    ops: &MssqlServerOpsRequest,
    key: &str,
    value: String,
) -> Result<MssqlServerOpsRequest, Error> {
    if ops.annotations().contains_key(key) {
        return Ok(ops.clone());
    }
    let mut annotated = ops.clone();
    annotated.annotations_mut().insert(key.to_owned(), value);
    Api::<MssqlServerOpsRequest>::namespaced(client.clone(), &ops.namespace().unwrap_or_default())
        .replace(&ops.name_any(), &post_params(), &annotated)
        .await
        .map_err(acting(format!("recording {key}")))
}

/// The request's status as it is being changed by one step; written once, against the
/// resourceVersion read, so two operators can never both record a step.
pub(super) struct Record {
    ops: MssqlServerOpsRequest,
    /// The status as read: a record that changes nothing is not written.
    before: Option<OpsRequestStatus>,
    events: Vec<(String, String)>,
    /// Steps finished by this write, with how long each took, for the metrics once written.
    finished: Vec<(String, Duration)>,
}

impl Record {
    pub(super) fn new(ops: &MssqlServerOpsRequest) -> Self {
        let before = ops.status.clone();
        let mut ops = ops.clone();
        ops.status
            .get_or_insert_with(Default::default)
            .observed_generation = ops.metadata.generation;
        Self {
            ops,
            before,
            events: Vec::new(),
            finished: Vec::new(),
        }
    }

    fn conditions(&mut self) -> &mut Vec<Condition> {
        &mut self
            .ops
            .status
            .get_or_insert_with(Default::default)
            .conditions
    }

    pub(super) fn set(&mut self, condition: Condition) {
        condition::set(self.conditions(), condition);
    }

    pub(super) fn phase(&mut self, phase: &str) {
        self.ops.status.get_or_insert_with(Default::default).phase = Some(phase.to_owned());
    }

    /// A finished step: KubeDB's type, reason = type, and message.
    pub(super) fn done(&mut self, type_: &str, message: &str) {
        // Measured from the previous finished step (reason = type), so the sub-steps it retried
        // while waiting (for cert-manager, for each pod) count towards it.
        let finished: Vec<Condition> = self
            .conditions()
            .iter()
            .filter(|c| c.reason.as_deref() == Some(c.type_.as_str()))
            .cloned()
            .collect();
        let took = condition::since_latest_transition(&finished, Timestamp::now());
        self.finished.push((type_.to_owned(), took));
        let generation = self.ops.metadata.generation;
        self.set(Condition {
            severity: None,
            ..Condition::new(type_, true, type_, message, generation, now())
        });
    }

    /// A finished step that is also told in a Normal Event (reason: the step), once written.
    pub(super) fn done_and_tell(&mut self, type_: &str, message: &str) {
        self.done(type_, message);
        self.events.push((type_.to_owned(), message.to_owned()));
    }

    /// A retried sub-step (`GetPod--<pod>`…): no reason, KubeDB's message; each change of its
    /// status is also an Event. KubeDB makes those Warnings; here they are Normal, as a pod not
    /// back yet is progress: Warnings are kept for what needs a person (a failed request).
    pub(super) fn retry_step(&mut self, step: &str, status: bool, pod: Option<&str>) {
        let type_ = pod.map_or_else(|| step.to_owned(), |pod| pod_step(step, pod));
        self.retry(type_, status, step_message(step, status, pod));
    }

    /// A retried sub-step of this operator's own (not KubeDB's) of `pod`: its message also says
    /// why it is (not) done.
    pub(super) fn retry_step_saying(&mut self, step: &str, status: bool, pod: &str, why: &str) {
        let message = format!("{}; {why}", step_message(step, status, Some(pod)));
        self.retry(pod_step(step, pod), status, message);
    }

    /// A step of the whole request (no pod) that is not done yet: False, saying why.
    pub(super) fn waiting(&mut self, step: &str, why: &str) {
        self.retry(step.to_owned(), false, why.to_owned());
    }

    fn retry(&mut self, type_: String, status: bool, message: String) {
        let unchanged =
            condition::find(self.conditions(), &type_).is_some_and(|c| c.is_true() == status);
        let generation = self.ops.metadata.generation;
        self.set(Condition {
            reason: None,
            severity: None,
            ..Condition::new(&type_, status, "", message.clone(), generation, now())
        });
        if !unchanged {
            self.events.push((type_, message));
        }
    }

    /// Whether the record says anything the stored status does not (a step still waiting, say,
    /// records the same conditions again: conditions keep their time while their status holds).
    fn changed(&self) -> bool {
        self.ops.status != self.before
    }

    pub(super) async fn write(self, client: &Client, context: &Context) -> Result<(), Error> {
        if !self.changed() {
            return Ok(());
        }
        let api: Api<MssqlServerOpsRequest> =
            Api::namespaced(client.clone(), &self.ops.namespace().unwrap_or_default());
        let written = api
            .replace_status(&self.ops.name_any(), &post_params(), &self.ops)
            .await
            .map_err(Error::Status)?;
        context.written.wrote(&written);
        for (step, took) in &self.finished {
            context
                .metrics()
                .ops_step_done(&self.ops.spec.type_, step, *took);
        }
        for (reason, note) in self.events {
            context
                .event(&self.ops, EventType::Normal, &reason, note)
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use mssql_api::ops::OpsRequestSpec;

    use super::*;

    fn request(status: Option<OpsRequestStatus>) -> MssqlServerOpsRequest {
        let mut ops = MssqlServerOpsRequest::new("r", OpsRequestSpec::default());
        ops.metadata.generation = Some(1);
        ops.status = status;
        ops
    }

    #[test]
    fn a_step_that_records_what_the_status_already_says_writes_nothing() {
        // A request waiting for cert-manager, as the first wait recorded it.
        let mut first = Record::new(&request(None));
        first.retry_step(GET_CERTIFICATE, true, None);
        first.retry_step(CHECK_READY, false, None);
        assert!(first.changed());
        let stored = request(first.ops.status.clone());

        // The next poll finds the same: nothing to write, and no Event.
        let mut again = Record::new(&stored);
        again.retry_step(GET_CERTIFICATE, true, None);
        again.retry_step(CHECK_READY, false, None);
        assert!(!again.changed());
        assert!(again.events.is_empty());

        // Until something changes.
        let mut ready = Record::new(&stored);
        ready.retry_step(CHECK_READY, true, None);
        assert!(ready.changed());
        assert_eq!(ready.events.len(), 1);
    }
}
