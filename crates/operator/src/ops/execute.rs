//! Execute: carries out the step the machine decided, and records its outcome in the request's
//! status (`record`) before anything else happens.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{EvictParams, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use mssql_api::annotations::{ENDPOINT_CERTIFICATE, PODS_BEFORE_RESTART, SWITCHOVER};
use mssql_api::condition::Condition;
use mssql_api::ops::{
    PHASE_FAILED, PHASE_PENDING, PHASE_PROGRESSING, PHASE_SKIPPED, PHASE_SUCCESSFUL, TYPE_RESTART,
};
use mssql_api::steps::*;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use serde_json::json;
use tracing::{info, warn};

use super::machine::{self, Step};
use super::pause::{resume_database, set_paused};
use super::record::{Record, record_once};
use super::reissue::request_reissue;
use super::{Context, Error, POLL, acting, asks, observe, served};
use crate::controller::apply::patch_params;
use crate::controller::now;
use crate::provisioner;

pub(super) async fn execute(
    ops: &MssqlServerOpsRequest,
    context: &Context,
    next: Step,
) -> Result<Action, Error> {
    // The probe first, on its own: its TLS handshake is deep, and the step it leads to is carried
    // out by `carry_out` after it, not inside it.
    let next = match next {
        Step::VerifyServed { pod } => {
            let (check, verified) = served::check(context, ops, &pod).await?;
            if let Some(line) = verified {
                context
                    .event(ops, EventType::Normal, CHECK_SERVED_CERTIFICATE, line)
                    .await;
            }
            // The finding is judged by the pure machine; its step is then carried out as any.
            machine::served_outcome(ops, Timestamp::now(), &pod, check)
        }
        other => other,
    };
    Box::pin(carry_out(ops, context, next)).await
}

async fn carry_out(
    ops: &MssqlServerOpsRequest,
    context: &Context,
    next: Step,
) -> Result<Action, Error> {
    let client = context.client();
    let namespace = ops.namespace().unwrap_or_default();
    let db_name = ops.spec.database_ref.name.clone();
    let restart = ops.spec.type_ == TYPE_RESTART;
    let mut record = Record::new(ops);
    match next {
        Step::Done => return Ok(Action::await_change()),
        Step::MarkPending => {
            record.phase(PHASE_PENDING);
            context
                .event(
                    ops,
                    EventType::Normal,
                    "Starting",
                    format!(
                        "Start processing for MSSQLServerOpsRequest: {namespace}/{}",
                        ops.name_any()
                    ),
                )
                .await;
        }
        Step::Skip { message } => {
            record.phase(PHASE_SKIPPED);
            record.set(Condition::new(
                SKIPPED,
                true,
                SKIPPED,
                message,
                ops.metadata.generation,
                now(),
            ));
        }
        Step::WaitToStart { why, after } => {
            info!(request = %ops.name_any(), %why, "waiting to start");
            return Ok(Action::requeue(after));
        }
        Step::StartProgressing => {
            let (type_, message) = start_condition(&ops.spec.type_);
            record.phase(PHASE_PROGRESSING);
            record.set(Condition::new(
                type_,
                true,
                type_,
                message,
                ops.metadata.generation,
                now(),
            ));
        }
        Step::PauseDatabase => {
            context
                .event(
                    ops,
                    EventType::Normal,
                    "Starting",
                    format!("Pausing MSSQLServer database: {namespace}/{db_name}"),
                )
                .await;
            set_paused(client, &namespace, &db_name, Some(ops)).await?;
            context
                .event(
                    ops,
                    EventType::Normal,
                    "Successful",
                    format!("Successfully paused MSSQLServer database: {namespace}/{db_name} for MSSQLServerOpsRequest: {}", ops.name_any()),
                )
                .await;
            record.done(PAUSE_SUCCEEDED, PAUSED_MESSAGE);
        }
        Step::RequestReissue => {
            // Recorded on the request as annotation: its status is written against that version,
            // else the write conflicts and the step (and the re-issue) runs twice.
            let annotated = request_reissue(context, ops).await?;
            record = Record::new(&annotated);
            record.done(ISSUED, ISSUED_MESSAGE);
        }
        Step::UpdateCertificates => {
            let (_, certificates) = observe::target(context, ops).await?;
            for (_, certificate) in certificates {
                let known = &context.provisioner.known.owned;
                crate::controller::apply::apply(client, known, &namespace, certificate)
                    .await
                    .map_err(acting("applying a certificate"))?;
            }
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        Step::WaitForIssuer { why } => {
            info!(request = %ops.name_any(), %why, "waiting for the issuer");
            record.waiting(SYNCED, &why);
            record.write(client, context).await?;
            return Ok(Action::requeue(POLL));
        }
        Step::WaitForCertificates {
            ready,
            issued,
            problems,
        } => {
            record.retry_step(GET_CERTIFICATE, true, None);
            record.retry_step(CHECK_READY, ready, None);
            record.retry_step(ISSUING, issued, None);
            info!(request = %ops.name_any(), ?problems, "waiting for certificates");
            record.write(client, context).await?;
            return Ok(Action::requeue(POLL));
        }
        Step::CertificatesSynced => {
            for sub in [GET_CERTIFICATE, CHECK_READY, ISSUING] {
                record.retry_step(sub, true, None);
            }
            record.done(SYNCED, SYNCED_MESSAGE);
        }
        Step::UpdateStatefulSet => {
            let (target, _) = observe::target(context, ops).await?;
            match provisioner::apply_database(&target, &context.provisioner).await? {
                provisioner::Applied::Done => {
                    let message = if ops.spec.type_ == TYPE_RESTART {
                        UPDATE_PETSETS_RESTART_MESSAGE
                    } else {
                        UPDATE_PETSETS_MESSAGE
                    };
                    record.done_and_tell(UPDATE_PETSETS, message);
                }
                provisioner::Applied::Waiting(waiting) => {
                    info!(request = %ops.name_any(), %waiting, "waiting before updating the statefulset");
                    return Ok(Action::requeue(POLL));
                }
                provisioner::Applied::Invalid(problem) => {
                    return Box::pin(fail(
                        ops,
                        context,
                        UPDATE_PETSETS,
                        &format!("the database's target spec is not valid: {problem}"),
                    ))
                    .await;
                }
            }
        }
        Step::RecordPods => {
            let pods = observe::running_pods(context.known(), ops);
            let recorded = record_once(
                client,
                ops,
                PODS_BEFORE_RESTART,
                serde_json::to_string(&pods).unwrap_or_default(),
            )
            .await?;
            context.written.wrote(&recorded);
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        Step::EvictPod { pod, again } => {
            if again {
                let why = format!(
                    "pod {pod} was made again from the StatefulSet's spec before this request's (its controller had not caught up): evicting it again"
                );
                warn!(request = %ops.name_any(), %pod, "{why}");
                context.event(ops, EventType::Warning, EVICT_POD, why).await;
            }
            record.retry_step(GET_POD, true, Some(&pod));
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            match pods.evict(&pod, &EvictParams::default()).await {
                Ok(_) => record.retry_step(EVICT_POD, true, Some(&pod)),
                // The PodDisruptionBudget says not now, or the pod is already gone: look again.
                Err(kube::Error::Api(status)) if [404, 429].contains(&status.code) => {
                    record.retry_step(EVICT_POD, false, Some(&pod));
                    record.write(client, context).await?;
                    return Ok(Action::requeue(POLL));
                }
                Err(error) => return Err(acting(format!("evicting pod {pod}"))(error)),
            }
        }
        Step::WaitForIssuance { certificate } => {
            info!(request = %ops.name_any(), %certificate, "waiting for cert-manager to issue");
            let why = format!(
                "cert-manager is issuing the {certificate} certificate: the pods restart once it is issued"
            );
            record.waiting(UPDATE_PETSETS, &why);
            record.write(client, context).await?;
            return Ok(Action::requeue(POLL));
        }
        Step::WaitForPod { pod, why } => {
            info!(request = %ops.name_any(), %pod, %why, "waiting for a pod");
            return Ok(Action::requeue(POLL));
        }
        Step::PodRunning { pod } => {
            // The eviction too: an operator killed between evicting and recording it left the
            // pod replaced and no record of it. Both already True change nothing.
            for step in [GET_POD, EVICT_POD, CHECK_POD_RUNNING] {
                record.retry_step(step, true, Some(&pod));
            }
        }
        Step::VerifyServed { .. } => unreachable!("probed by `execute` first"),
        Step::WaitForServed { pod, why } => {
            info!(request = %ops.name_any(), %pod, %why, "waiting for the pod to serve its certificate");
            record.retry_step_saying(CHECK_SERVED_CERTIFICATE, false, &pod, &why);
            record.write(client, context).await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        Step::ServedVerified { pod } => {
            record.retry_step(CHECK_SERVED_CERTIFICATE, true, Some(&pod))
        }
        Step::ReplicaSynchronized { pod } => {
            record.retry_step(CHECK_REPLICA_SYNCHRONIZED, true, Some(&pod))
        }
        Step::WaitForReplica { pod, why } => {
            info!(request = %ops.name_any(), %pod, %why, "waiting for the replica to synchronize");
            record.retry_step_saying(CHECK_REPLICA_SYNCHRONIZED, false, &pod, &why);
            record.write(client, context).await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        Step::RequestSwitchover { from, to } => {
            asks::ask(context, ops, SWITCHOVER, &to).await?;
            let asked = format!(
                "asked the coordinators to hand the primary role from {from} to {to}, a synchronized secondary that runs the new material"
            );
            record.retry_step_saying(SWITCHOVER_PRIMARY, true, &from, &asked);
        }
        Step::WaitForSwitchover { from, to, why } => {
            if let Some(to) = to.as_deref() {
                asks::ask(context, ops, SWITCHOVER, to).await?;
            }
            info!(request = %ops.name_any(), %from, %why, "waiting for the switchover");
            let waiting = format!("waiting for the primary role to leave {from}: {why}");
            record.retry_step_saying(CHECK_PRIMARY_SWITCHED, false, &from, &waiting);
            record.write(client, context).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        Step::SwitchedOver { from, to } => {
            asks::withdraw(context, ops, &[SWITCHOVER]).await?;
            let done = format!("{to} is primary and labelled; {from} restarts as a secondary");
            record.retry_step_saying(CHECK_PRIMARY_SWITCHED, true, &from, &done);
        }
        Step::WaitForSwitchoverTarget { pod, why } => {
            info!(request = %ops.name_any(), %pod, %why, "waiting for a replica to take the primary role over");
            record.retry_step_saying(SWITCHOVER_PRIMARY, false, &pod, &why);
            record.write(client, context).await?;
            return Ok(Action::requeue(POLL));
        }
        Step::TrustEndpointCertificate { serial, why } => {
            asks::ask(context, ops, ENDPOINT_CERTIFICATE, &serial).await?;
            info!(request = %ops.name_any(), %serial, %why, "waiting for the replicas to trust the endpoint certificate");
            record.waiting(ENDPOINT_TRUSTED, &why);
            record.write(client, context).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        Step::EndpointCertificateTrusted { serial } => {
            let message = format!(
                "every replica trusts endpoint certificate serial {serial} beside the one it presents: each presents it once restarted"
            );
            record.done_and_tell(ENDPOINT_TRUSTED, &message);
        }
        Step::WaitForRetirement { why } => {
            info!(request = %ops.name_any(), %why, "waiting for the old endpoint certificate to be retired");
            record.waiting(ENDPOINT_RETIRED, &why);
            record.write(client, context).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        Step::EndpointCertificateRetired { serial } => {
            asks::withdraw(context, ops, &[ENDPOINT_CERTIFICATE]).await?;
            let message = format!(
                "every replica presents endpoint certificate serial {serial} and trusts no other"
            );
            record.done_and_tell(ENDPOINT_RETIRED, &message);
        }
        Step::RestartPrimaryInPlace { pod, why } => {
            let note = format!(
                "{why}: the primary {pod} restarts in place, as apply: Always allows; clients cannot write until it is back or the group fails over"
            );
            warn!(request = %ops.name_any(), %pod, "{note}");
            context
                .event(
                    ops,
                    EventType::Warning,
                    RESTART_PRIMARY_IN_PLACE,
                    note.clone(),
                )
                .await;
            record.retry_step_saying(RESTART_PRIMARY_IN_PLACE, true, &pod, &note);
        }
        Step::AllPodsRestarted => {
            let message = if restart {
                RESTART_NODES_MESSAGE
            } else {
                RESTART_NODES_TLS_MESSAGE
            };
            record.done_and_tell(RESTART_NODES, message);
        }
        Step::UpdateDatabase => {
            let (target, _) = observe::target(context, ops).await?;
            let patch = json!({"spec": {"tls": target.spec.tls}});
            Api::<MssqlServer>::namespaced(client.clone(), &namespace)
                .patch(&db_name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(acting("updating the database's TLS spec"))?;
            // No condition: the next look sees the database's spec is the target.
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        Step::Succeed => {
            Box::pin(resume_database(ops, context)).await?;
            let message = if restart {
                SUCCESSFUL_RESTART_MESSAGE
            } else {
                SUCCESSFUL_TLS_MESSAGE
            };
            record.done(SUCCESSFUL, message);
            record.phase(PHASE_SUCCESSFUL);
        }
        Step::Fail { step, message } => return Box::pin(fail(ops, context, &step, &message)).await,
    }
    record.write(client, context).await?;
    Ok(Action::requeue(Duration::from_millis(200)))
}

/// Ends the request as Failed, with the step and the reason, and resumes the database.
pub(super) async fn fail(
    ops: &MssqlServerOpsRequest,
    context: &Context,
    step: &str,
    message: &str,
) -> Result<Action, Error> {
    Box::pin(resume_database(ops, context)).await?;
    let mut record = Record::new(ops);
    record.set(Condition {
        severity: Some("Error".to_owned()),
        ..Condition::new(FAILED, false, step, message, ops.metadata.generation, now())
    });
    record.phase(PHASE_FAILED);
    context
        .event(
            ops,
            EventType::Warning,
            FAILED,
            format!("{step}: {message}"),
        )
        .await;
    record.write(context.client(), context).await?;
    Ok(Action::await_change())
}
