//! The ops-manager: runs `MSSQLServerOpsRequest`s (ReconfigureTLS and Restart) one step per
//! reconcile. `observe` takes a snapshot, the pure `machine::next_step` decides, `execute` acts and
//! records the outcome in the request's status before anything else happens.

pub mod machine;
pub mod observe;
pub mod served;
pub mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{EvictParams, Patch};
use kube::runtime::controller::{self as runtime, Action};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use mssql_api::condition::{self, Condition};
use mssql_api::ops::TYPE_RESTART;
use mssql_api::phase::PAUSED;
use mssql_api::{MssqlServer, MssqlServerOpsRequest, OpsRequestStatus};
use mssql_certs::cert_manager::Certificate;
use serde_json::json;
use tracing::{Instrument, info, info_span};

use mssql_api::annotations::{PODS_BEFORE_RESTART, REVISIONS_BEFORE_ROTATION};
use mssql_api::ops::{
    PHASE_FAILED, PHASE_PENDING, PHASE_PROGRESSING, PHASE_SKIPPED, PHASE_SUCCESSFUL,
};
use mssql_api::steps::*;

use self::machine::{Step, next_step};
use crate::controller::apply::{patch_params, post_params};
use crate::controller::{self, ReconcileError, finalizer_category, finalizer_conflict, key, now};
use crate::metrics::{self, Metrics};
use crate::provisioner;

/// Keeps a request until the database it paused is resumed.
pub const FINALIZER: &str = "ops.kubedb.com/finalizer";

/// How often a running request looks again while it waits for pods, cert-manager or a disruption
/// budget. Each change of those wakes it at once (`wake`); this is only the backstop.
const POLL: Duration = Duration::from_secs(10);

/// Why a step failed: reading the snapshot, acting, or recording the outcome.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Observe { what: String, source: kube::Error },
    #[error("{what}: {source}")]
    Act { what: String, source: kube::Error },
    #[error("writing the request's status: {0}")]
    Status(kube::Error),
    #[error(transparent)]
    Provisioner(#[from] provisioner::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Self::Observe { .. } => "observe",
            Self::Act { .. } => "act",
            Self::Status(_) => "status",
            Self::Provisioner(error) => error.category(),
            Self::Finalizer(error) => finalizer_category(error),
        }
    }

    fn is_conflict(&self) -> bool {
        match self {
            Self::Observe { source, .. } | Self::Act { source, .. } | Self::Status(source) => {
                controller::is_conflict(source)
            }
            Self::Provisioner(error) => error.is_conflict(),
            Self::Finalizer(error) => finalizer_conflict(error, Self::is_conflict),
        }
    }
}

/// A failed read (`what`: "reading …").
pub(crate) fn reading(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Observe { what, source }
}

/// A step's failed write (`what`: "evicting …").
fn acting(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Act { what, source }
}

pub struct Context {
    pub provisioner: provisioner::Context,
    /// Whether each restarted pod must be seen serving its certificate (`run`'s flag).
    pub verify_served_certificates: bool,
}

impl Context {
    fn client(&self) -> &Client {
        &self.provisioner.client
    }

    fn metrics(&self) -> &Metrics {
        &self.provisioner.metrics
    }

    async fn event(
        &self,
        ops: &MssqlServerOpsRequest,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(controller::event_note(note.clone())),
            // Events are aggregated by reason and action: the note's first words keep "Successfully
            // paused" and "Successfully resumed" apart.
            action: note
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            secondary: None,
        };
        self.provisioner
            .events
            .publish(&event, &ops.object_ref(&()))
            .await;
    }
}

/// Runs the ops-manager until the process is asked to stop. A request is also reconciled when
/// `wakes` names its database. `verify_served_certificates`: see [`crate::Settings`];
/// `namespace`: the one it watches, or every one (`None`).
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    wakes: controller::wake::Wakes,
    verify_served_certificates: bool,
    namespace: Option<&str>,
) {
    let context = Arc::new(Context {
        provisioner: provisioner::Context::new(client.clone(), metrics),
        verify_served_certificates,
    });
    let requests = crate::client::scoped::<MssqlServerOpsRequest>(&client, namespace);
    let runtime = controller::cache::controller(requests);
    let requests = runtime.store();
    runtime
        .with_config(runtime::Config::default().concurrency(controller::CONCURRENCY))
        .reconcile_on(wakes.requests(requests))
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move { controller::log_outcome(result) })
        .await;
}

fn error_policy(_: Arc<MssqlServerOpsRequest>, error: &Error, _: Arc<Context>) -> Action {
    if error.is_conflict() {
        return Action::requeue(controller::REQUEUE_CONFLICT);
    }
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(
    ops: Arc<MssqlServerOpsRequest>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(ops.as_ref());
    let result = reconcile_request(ops, &context)
        .instrument(info_span!("reconcile", request = %key))
        .await;
    controller::reconciled(
        context.metrics(),
        metrics::OPS_MANAGER,
        &key,
        started,
        result.as_ref(),
    );
    result
}

async fn reconcile_request(
    ops: Arc<MssqlServerOpsRequest>,
    context: &Context,
) -> Result<Action, Error> {
    let key = key(ops.as_ref());
    let phase = ops.status.as_ref().and_then(|s| s.phase.clone());
    context
        .metrics()
        .ops_request(&key, &ops.spec.type_, phase.as_deref().unwrap_or_default());
    let api: Api<MssqlServerOpsRequest> = Api::namespaced(
        context.client().clone(),
        &ops.namespace().unwrap_or_default(),
    );
    finalizer(&api, FINALIZER, ops, |event| async {
        match event {
            finalizer::Event::Apply(ops) => step(&ops, context).await,
            finalizer::Event::Cleanup(ops) => {
                // Deleted while running: the database must not stay paused.
                if phase.as_deref() == Some(PHASE_PROGRESSING) {
                    resume_database(&ops, context).await?;
                }
                context.metrics().ops_request_gone(&key);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

/// One step: observe, decide, act, record.
async fn step(cached: &MssqlServerOpsRequest, context: &Context) -> Result<Action, Error> {
    // Decided on the request as stored, not as cached: the cache may not have this operator's
    // last status write yet, and a step decided on it would run twice (re-issuing certificates
    // twice, say) before its record is refused.
    let api: Api<MssqlServerOpsRequest> = Api::namespaced(
        context.client().clone(),
        &cached.namespace().unwrap_or_default(),
    );
    let Some(ops) = api
        .get_opt(&cached.name_any())
        .await
        .map_err(reading("reading the request"))?
    else {
        return Ok(Action::await_change());
    };
    let observed =
        observe::observe(context.client(), &ops, context.verify_served_certificates).await?;
    let next = next_step(&ops, &observed);
    info!(request = %ops.name_any(), step = ?next, "ops step");
    execute(&ops, context, next).await
}

async fn execute(
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
            let annotated = request_reissue(client, ops).await?;
            record = Record::new(&annotated);
            record.done(ISSUED, ISSUED_MESSAGE);
        }
        Step::UpdateCertificates => {
            let (_, certificates) = observe::target(client, ops).await?;
            for (_, certificate) in certificates {
                crate::controller::apply::apply(client, &namespace, certificate)
                    .await
                    .map_err(acting("applying a certificate"))?;
            }
            return Ok(Action::requeue(Duration::from_millis(500)));
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
            let (target, _) = observe::target(client, ops).await?;
            match provisioner::apply_database(&target, &context.provisioner).await? {
                provisioner::Applied::Done => {
                    let message = if ops.spec.type_ == TYPE_RESTART {
                        UPDATE_PETSETS_RESTART_MESSAGE
                    } else {
                        UPDATE_PETSETS_MESSAGE
                    };
                    record.done(UPDATE_PETSETS, message);
                    context
                        .event(ops, EventType::Normal, UPDATE_PETSETS, message.to_owned())
                        .await;
                }
                provisioner::Applied::Waiting(waiting) => {
                    info!(request = %ops.name_any(), %waiting, "waiting before updating the statefulset");
                    return Ok(Action::requeue(POLL));
                }
                provisioner::Applied::Invalid(problem) => {
                    return fail(
                        ops,
                        context,
                        UPDATE_PETSETS,
                        &format!("the database's target spec is not valid: {problem}"),
                    )
                    .await;
                }
            }
        }
        Step::RecordPods => {
            let pods = observe::running_pods(client, ops).await?;
            record_once(
                client,
                ops,
                PODS_BEFORE_RESTART,
                serde_json::to_string(&pods).unwrap_or_default(),
            )
            .await?;
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        Step::EvictPod { pod } => {
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
        Step::WaitForPod { pod, why } => {
            info!(request = %ops.name_any(), %pod, %why, "waiting for a pod");
            return Ok(Action::requeue(POLL));
        }
        Step::PodRunning { pod } => record.retry_step(CHECK_POD_RUNNING, true, Some(&pod)),
        Step::VerifyServed { pod } => {
            let (check, verified) = served::check(client, ops, &pod).await?;
            if let Some(line) = verified {
                context
                    .event(ops, EventType::Normal, CHECK_SERVED_CERTIFICATE, line)
                    .await;
            }
            // The finding is judged by the pure machine; its step is then carried out as any.
            let outcome = machine::served_outcome(ops, Timestamp::now(), &pod, check);
            return Box::pin(execute(ops, context, outcome)).await;
        }
        Step::WaitForServed { pod, why } => {
            info!(request = %ops.name_any(), %pod, %why, "waiting for the pod to serve its certificate");
            record.retry_step_because(CHECK_SERVED_CERTIFICATE, &pod, &why);
            record.write(client, context).await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        Step::ServedVerified { pod } => {
            record.retry_step(CHECK_SERVED_CERTIFICATE, true, Some(&pod))
        }
        Step::AllPodsRestarted => {
            let message = if restart {
                RESTART_NODES_MESSAGE
            } else {
                RESTART_NODES_TLS_MESSAGE
            };
            record.done(RESTART_NODES, message);
            context
                .event(ops, EventType::Normal, RESTART_NODES, message.to_owned())
                .await;
        }
        Step::UpdateDatabase => {
            let (target, _) = observe::target(client, ops).await?;
            let patch = json!({"spec": {"tls": target.spec.tls}});
            Api::<MssqlServer>::namespaced(client.clone(), &namespace)
                .patch(&db_name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map_err(acting("updating the database's TLS spec"))?;
            // No condition: the next look sees the database's spec is the target.
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        Step::Succeed => {
            resume_database(ops, context).await?;
            let message = if restart {
                SUCCESSFUL_RESTART_MESSAGE
            } else {
                SUCCESSFUL_TLS_MESSAGE
            };
            record.done(SUCCESSFUL, message);
            record.phase(PHASE_SUCCESSFUL);
        }
        Step::Fail { step, message } => return fail(ops, context, &step, &message).await,
    }
    record.write(client, context).await?;
    Ok(Action::requeue(Duration::from_millis(200)))
}

/// Ends the request as Failed, with the step and the reason, and resumes the database.
async fn fail(
    ops: &MssqlServerOpsRequest,
    context: &Context,
    step: &str,
    message: &str,
) -> Result<Action, Error> {
    resume_database(ops, context).await?;
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

/// Removes `Paused` from the database, if it is there.
async fn resume_database(ops: &MssqlServerOpsRequest, context: &Context) -> Result<(), Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let db = &ops.spec.database_ref.name;
    let api: Api<MssqlServer> = Api::namespaced(context.client().clone(), &namespace);
    let Some(current) = api
        .get_opt(db)
        .await
        .map_err(reading("reading the database"))?
    else {
        return Ok(());
    };
    if current
        .status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, PAUSED))
        .is_none()
    {
        return Ok(());
    }
    context
        .event(
            ops,
            EventType::Normal,
            "Starting",
            format!("Resuming MSSQLServer database: {namespace}/{db}"),
        )
        .await;
    set_paused(context.client(), &namespace, db, None).await?;
    context
        .event(
            ops,
            EventType::Normal,
            "Successful",
            format!("Successfully resumed MSSQLServer database: {namespace}/{db} for MSSQLServerOpsRequest: {}", ops.name_any()),
        )
        .await;
    Ok(())
}

/// Sets (`by` is the request) or removes (`None`) the database's `Paused` condition, against the
/// resourceVersion read, retried on conflicts with the provisioner's status writes.
async fn set_paused(
    client: &Client,
    namespace: &str,
    db: &str,
    by: Option<&MssqlServerOpsRequest>,
) -> Result<(), Error> {
    let api: Api<MssqlServer> = Api::namespaced(client.clone(), namespace);
    for _ in 0..10 {
        let mut current = api.get(db).await.map_err(reading("reading the database"))?;
        let status = current.status.get_or_insert_with(Default::default);
        match by {
            Some(ops) => condition::set(
                &mut status.conditions,
                Condition {
                    severity: None,
                    ..Condition::new(
                        PAUSED,
                        true,
                        "PausedByOpsRequest",
                        format!(
                            "Paused by MSSQLServerOpsRequest {}/{}",
                            namespace,
                            ops.name_any()
                        ),
                        current.metadata.generation,
                        now(),
                    )
                },
            ),
            None => condition::remove(&mut status.conditions, PAUSED),
        }
        match api.replace_status(db, &post_params(), &current).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(acting("writing the database's Paused condition")(error)),
        }
    }
    Err(Error::Act {
        what: "writing the database's Paused condition".to_owned(),
        source: kube::Error::Api(Box::new(kube::core::Status::failure(
            "too many conflicting writes",
            "Conflict",
        ))),
    })
}

/// Records each Certificate's revision, then asks cert-manager to re-issue it (`Issuing=True`,
/// reason `RotateCertificate`, as `cmctl renew` and KubeDB do). Returns the request as it is
/// stored with the revisions recorded.
async fn request_reissue(
    client: &Client,
    ops: &MssqlServerOpsRequest,
) -> Result<MssqlServerOpsRequest, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let (_, certificates) = observe::target(client, ops).await?;
    let api: Api<Certificate> = Api::namespaced(client.clone(), &namespace);
    let mut revisions = serde_json::Map::new();
    let mut existing = Vec::new();
    for (_, certificate) in &certificates {
        let name = certificate.name_any();
        let current = api
            .get(&name)
            .await
            .map_err(reading(format!("reading certificate {name}")))?;
        let revision = current
            .status
            .as_ref()
            .and_then(|s| s.revision)
            .unwrap_or(0);
        revisions.insert(name, revision.into());
        existing.push(current);
    }
    // The revisions are written first: after a crash between the two writes, the rotation is
    // asked for again and judged against the same revisions.
    let annotated = record_once(
        client,
        ops,
        REVISIONS_BEFORE_ROTATION,
        serde_json::Value::Object(revisions).to_string(),
    )
    .await?;
    for current in existing {
        let name = current.name_any();
        let conditions = current.conditions_to_reissue(
            "RotateCertificate",
            "Rotating Certificate for KubeDB",
            now(),
        );
        let patch = json!({"status": {"conditions": conditions}});
        api.patch_status(&name, &patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(acting(format!("asking cert-manager to re-issue {name}")))?;
    }
    Ok(annotated)
}

/// Writes annotation `key` on the request unless it is already there, written against the
/// resourceVersion of `ops` (the request as `step` read it): what was recorded first is never
/// overwritten, as a copy older than the record fails with a conflict and the step is retried.
/// Returns the request as stored.
async fn record_once(
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
struct Record {
    ops: MssqlServerOpsRequest,
    /// The status as read: a record that changes nothing is not written.
    before: Option<OpsRequestStatus>,
    events: Vec<(String, String)>,
    /// Steps finished by this write, with how long each took, for the metrics once written.
    finished: Vec<(String, Duration)>,
}

impl Record {
    fn new(ops: &MssqlServerOpsRequest) -> Self {
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

    fn set(&mut self, condition: Condition) {
        condition::set(self.conditions(), condition);
    }

    fn phase(&mut self, phase: &str) {
        self.ops.status.get_or_insert_with(Default::default).phase = Some(phase.to_owned());
    }

    /// A finished step: KubeDB's type, reason = type, and message.
    fn done(&mut self, type_: &str, message: &str) {
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

    /// A retried sub-step (`GetPod--<pod>`…): no reason, KubeDB's message; each change of its
    /// status is also an Event. KubeDB makes those Warnings; here they are Normal, as a pod not
    /// back yet is progress: Warnings are kept for what needs a person (a failed request).
    fn retry_step(&mut self, step: &str, status: bool, pod: Option<&str>) {
        let type_ = pod.map_or_else(|| step.to_owned(), |pod| pod_step(step, pod));
        self.retry(type_, status, step_message(step, status, pod));
    }

    /// A retried sub-step of this operator's own (not KubeDB's) that is not done yet: its message
    /// also says why.
    fn retry_step_because(&mut self, step: &str, pod: &str, why: &str) {
        let message = format!("{}; {why}", step_message(step, false, Some(pod)));
        self.retry(pod_step(step, pod), false, message);
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

    async fn write(self, client: &Client, context: &Context) -> Result<(), Error> {
        if !self.changed() {
            return Ok(());
        }
        let api: Api<MssqlServerOpsRequest> =
            Api::namespaced(client.clone(), &self.ops.namespace().unwrap_or_default());
        api.replace_status(&self.ops.name_any(), &post_params(), &self.ops)
            .await
            .map_err(Error::Status)?;
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
