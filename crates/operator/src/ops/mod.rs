//! The ops-manager: runs `MSSQLServerOpsRequest`s (ReconfigureTLS and Restart) one step per
//! reconcile. `observe` takes a snapshot, the pure `machine::next_step` decides on it and on the
//! request's `Progress`, `execute` acts (`pause`: the database's Paused condition; `reissue`:
//! cert-manager's re-issue; `served`: the probe of a restarted pod) and `record` writes the
//! outcome in the request's status before anything else happens. `target` is the database as the
//! request wants it.

pub mod machine;
pub mod observe;
pub mod served;
pub mod target;

mod asks;
mod execute;
mod pause;
mod record;
mod reissue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::controller::{self as runtime, Action};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use mssql_api::MssqlServerOpsRequest;
use mssql_api::ops::PHASE_PROGRESSING;
use tracing::{Instrument, info, info_span};

use self::machine::next_step;
use crate::controller::known::Known;
use crate::controller::{self, ReconcileError, finalizer_category, finalizer_conflict, key};
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
    /// Every request, as the ops-manager's watch has it.
    pub requests: Store<MssqlServerOpsRequest>,
    /// The resourceVersion of each request (by uid) as this operator last wrote it.
    pub written: Written,
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

    fn known(&self) -> &Known {
        &self.provisioner.known
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
/// `wakes` names its database; `waker` wakes the requests of a database whose request ended.
/// `verify_served_certificates`: see [`crate::Settings`]; `namespace`: the one it watches, or
/// every one (`None`); `known`: what the provisioner's watches say.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    (waker, wakes): (controller::wake::Waker, controller::wake::Wakes),
    verify_served_certificates: bool,
    coordinator_image: String,
    namespace: Option<&str>,
    known: Known,
) {
    // A request that has ended wakes the next of its database (which waits for it), once the
    // cache the next one decides on has it.
    let runtime = controller::cache::controller(
        crate::client::scoped::<MssqlServerOpsRequest>(&client, namespace),
        move |ops: &MssqlServerOpsRequest| {
            if ops.is_finished()
                && let Some(namespace) = ops.namespace()
            {
                waker.wake(&ObjectRef::new(&ops.spec.database_ref.name).within(&namespace));
            }
        },
    );
    let requests = runtime.store();
    let context = Arc::new(Context {
        provisioner: provisioner::Context::new(client.clone(), metrics, known)
            .with_coordinator_image(coordinator_image),
        requests: requests.clone(),
        written: Written::default(),
        verify_served_certificates,
    });
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
    // The target's objects are applied through what the provisioner's watches know.
    context.provisioner.known.ready().await;
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
    let phase = ops.phase().to_owned();
    context.metrics().ops_request(&key, &ops.spec.type_, &phase);
    let api: Api<MssqlServerOpsRequest> = Api::namespaced(
        context.client().clone(),
        &ops.namespace().unwrap_or_default(),
    );
    finalizer(&api, FINALIZER, ops, |event| async {
        match event {
            finalizer::Event::Apply(ops) => step(&ops, context).await,
            finalizer::Event::Cleanup(ops) => {
                // Deleted while running: the database must not stay paused.
                if phase == PHASE_PROGRESSING {
                    pause::resume_database(&ops, context).await?;
                }
                context.metrics().ops_request_gone(&key);
                context.written.forget(&ops);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

/// The resourceVersion of each request (by uid) as this operator last wrote it.
#[derive(Default)]
pub struct Written(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Written {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers `ops` as written (the API server's answer to a write of it).
    fn wrote(&self, ops: &MssqlServerOpsRequest) {
        if let (Some(uid), Some(version)) = (ops.uid(), ops.resource_version()) {
            self.lock().insert(uid, version);
        }
    }

    /// Whether `ops` is at the version this operator wrote last.
    fn is(&self, ops: &MssqlServerOpsRequest) -> bool {
        let written = ops.uid().and_then(|uid| self.lock().get(&uid).cloned());
        written.is_some() && written == ops.resource_version()
    }

    fn forget(&self, ops: &MssqlServerOpsRequest) {
        if let Some(uid) = ops.uid() {
            self.lock().remove(&uid);
        }
    }
}

/// One step: observe, decide, act, record.
async fn step(cached: &MssqlServerOpsRequest, context: &Context) -> Result<Action, Error> {
    // Decided on the request as stored, not as cached: the cache may not have this operator's
    // last status write yet, and a step decided on it would run twice (re-issuing certificates
    // twice, say) before its record is refused.
    // A cached copy at the version this operator wrote last is the stored one: no read.
    let ops = if context.written.is(cached) {
        cached.clone()
    } else {
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
        ops
    };
    let observed = observe::observe(context, &ops).await?;
    let next = next_step(&ops, &observed);
    info!(request = %ops.name_any(), step = ?next, "ops step");
    execute::execute(&ops, context, next).await
}
