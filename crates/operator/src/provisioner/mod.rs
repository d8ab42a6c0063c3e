//! The provisioner: turns each `MSSQLServer` into a running database. Each pass is one chain:
//! dereference and validate (`dereference`, into a typed `Server`), build (pure, `crate::build`:
//! the database's typed set of objects), apply (`apply`: in a fixed order, skipped when unchanged,
//! leftovers of an earlier shape deleted), observe (`observe`: pods, roles, certificates they
//! run), status (`status`, pure: KubeDB's conditions and phase), written once.
//! A database whose `Paused` condition is True (an ops request owns it) is observed only.
//! Pods left on older certificates than their Secrets hold are rolled out by `renewal`.

pub mod apply;
pub mod cleanup;
pub mod dereference;
pub mod health;
pub mod observe;
pub mod renewal;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{self as runtime, Action};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use mssql_api::phase::{CERTIFICATE_ROLLOUT_PENDING, PAUSED};
use mssql_api::renewal::{Policy, Why};
use mssql_api::validate::FieldError;
use mssql_api::validated::{DeletionPolicy, Server};
use mssql_api::{MssqlServer, MssqlServerStatus, condition, labels};
use mssql_certs::cert_manager::Certificate;
use tracing::{Instrument, info, info_span, warn};

use self::cleanup::Target;
use self::dereference::{Material, Prepared, prepare};
use self::renewal::{Plan, Rollout, Stale};
use self::status::Observed;
use crate::build::resources::{self, Inputs};
use crate::build::secrets;
use crate::build::start::Start;
use crate::client::scoped;
use crate::controller::apply::post_params;
use crate::controller::events::Events;
use crate::controller::wake::Waker;
use crate::controller::{self, ReconcileError, finalizer_category, finalizer_conflict, key, now};
use crate::metrics::{self, Metrics};

/// KubeDB's finalizer on databases.
pub const FINALIZER: &str = "kubedb.com";

/// A failed reconcile is tried again this often.
const REQUEUE_PROGRESS: Duration = Duration::from_secs(10);
/// A database whose references cannot be resolved is looked at again this often: what it names
/// (an issuer, a user's secret, a catalog entry) may be created next, and none of those is
/// watched. A spec that breaks a rule waits for a change of the database instead.
const REQUEUE_UNRESOLVED: Duration = Duration::from_secs(30);
/// Any other database — Ready, waiting for cert-manager's secrets or its pods, or paused by an ops
/// request — is re-checked this often, plus its own offset within `REQUEUE_SPREAD`. Only a safety
/// net: every object it owns, its pods and its TLS secrets are watched, and each change wakes it;
/// the issuer and the catalog entry are not. Shorter re-checks while waiting made a database's
/// cost grow with cert-manager's pace (132 requests a database to Ready at 1,000 databases with
/// 30 s, against 94 at 100); a 5-minute one still re-read each database cert-manager had not got
/// to yet. The offset keeps databases created together from all being re-read in the same second
/// (a re-check is about 15 reads).
const REQUEUE_RECHECK: Duration = Duration::from_secs(30 * 60);
const REQUEUE_SPREAD: Duration = Duration::from_secs(5 * 60);

/// When database `key` (`namespace/name`) is re-checked: the same for the same key.
fn recheck(key: &str) -> Duration {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    REQUEUE_RECHECK + Duration::from_secs(u64::from_be_bytes(first) % REQUEUE_SPREAD.as_secs())
}

/// Why a pass failed, by the step of the chain that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    Dereference {
        what: &'static str,
        source: kube::Error,
    },
    #[error("{what}: {source}")]
    Apply { what: String, source: kube::Error },
    #[error("reading {what}: {source}")]
    Observe {
        what: &'static str,
        source: kube::Error,
    },
    #[error("updating the status: {0}")]
    Status(kube::Error),
    #[error("cleaning up: {0}")]
    Cleanup(kube::Error),
    /// A deletion the database's policy refuses; it waits for the policy to change.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Self::Dereference { .. } => "dereference",
            Self::Apply { .. } => "apply",
            Self::Observe { .. } => "observe",
            Self::Status(_) => "status",
            Self::Cleanup(_) => "cleanup",
            Self::Refused(_) => "refused",
            Self::Finalizer(error) => finalizer_category(error),
        }
    }

    fn is_conflict(&self) -> bool {
        match self {
            Self::Dereference { source, .. }
            | Self::Apply { source, .. }
            | Self::Observe { source, .. } => controller::is_conflict(source),
            Self::Status(source) | Self::Cleanup(source) => controller::is_conflict(source),
            Self::Refused(_) => false,
            Self::Finalizer(error) => finalizer_conflict(error, Self::is_conflict),
        }
    }
}

pub struct Context {
    pub client: Client,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// The renewal policy of databases whose annotations do not set one (`run`'s flags).
    pub renewal: Policy,
}

impl Context {
    /// A context whose Events are reported as `mssql-operator` (and this pod, when `POD_NAME` is set).
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        Self {
            events: Events::of_operator(client.clone()),
            client,
            metrics,
            renewal: Policy::default(),
        }
    }

    async fn event(&self, db: &MssqlServer, type_: EventType, reason: &str, note: String) {
        self.event_about(db, type_, reason, note, None).await;
    }

    /// An Event on the database, about `secondary` if given. Events are aggregated by reason and
    /// related object, so each created object gets an Event of its own.
    async fn event_about(
        &self,
        db: &MssqlServer,
        type_: EventType,
        reason: &str,
        note: String,
        secondary: Option<ObjectReference>,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(controller::event_note(note)),
            action: "Reconcile".to_owned(),
            secondary,
        };
        self.events.publish(&event, &db.object_ref(&())).await;
    }
}

/// Runs the provisioner until the process is asked to stop. Each change of a database's pods,
/// Certificates, TLS secrets and disruption budget also wakes its ops requests through `waker`.
/// `namespace`: the one it watches, or every one (`None`).
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    waker: Waker,
    renewal: Policy,
    namespace: Option<&str>,
) {
    let ours = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::MANAGED_BY_VALUE
    ));
    let context = Arc::new(Context {
        renewal,
        ..Context::new(client.clone(), metrics)
    });
    controller::cache::controller(scoped::<MssqlServer>(&client, namespace))
        .with_config(
            runtime::Config::default()
                .concurrency(controller::CONCURRENCY)
                // A new database sets off a burst of events (its objects, pods, secrets): one pass.
                .debounce(Duration::from_millis(500)),
        )
        .owns(scoped::<StatefulSet>(&client, namespace), ours.clone())
        .owns(scoped::<Service>(&client, namespace), ours.clone())
        // What an ops request waits for: a change also wakes the database's requests.
        .watches(
            scoped::<Certificate>(&client, namespace),
            ours.clone(),
            waking(&waker),
        )
        .watches(
            scoped::<PodDisruptionBudget>(&client, namespace),
            ours.clone(),
            waking(&waker),
        )
        // Pods belong to the StatefulSet; their readiness and role labels change the status.
        .watches(
            scoped::<Pod>(&client, namespace),
            ours.clone(),
            waking(&waker),
        )
        // cert-manager writes the TLS secrets with our labels (the Certificate's secret template).
        .watches(scoped::<Secret>(&client, namespace), ours, waking(&waker))
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move { controller::log_outcome(result) })
        .await;
}

/// The database an object of ours belongs to, by its instance label.
fn database_of<K: Resource>(object: &K) -> Option<ObjectRef<MssqlServer>> {
    let name = object.meta().labels.as_ref()?.get(labels::INSTANCE)?;
    Some(ObjectRef::new(name).within(object.meta().namespace.as_deref()?))
}

/// Maps an object to its database (by our labels) and wakes that database's ops requests.
fn waking<K: Resource>(waker: &Waker) -> impl Fn(K) -> Option<ObjectRef<MssqlServer>> + use<K> {
    let waker = waker.clone();
    move |object| {
        let database = database_of(&object)?;
        waker.wake(&database);
        Some(database)
    }
}

fn error_policy(db: Arc<MssqlServer>, error: &Error, context: Arc<Context>) -> Action {
    if error.is_conflict() {
        return Action::requeue(controller::REQUEUE_CONFLICT);
    }
    // A refused deletion was told in its own Event; it waits for the policy to change.
    if error.category() == "refused" {
        return Action::await_change();
    }
    let note = error.to_string();
    tokio::spawn(async move {
        context
            .event(&db, EventType::Warning, "ReconcileError", note)
            .await;
    });
    Action::requeue(REQUEUE_PROGRESS)
}

async fn reconcile(db: Arc<MssqlServer>, context: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(db.as_ref());
    let result = reconcile_database(db, &context)
        .instrument(info_span!("reconcile", database = %key))
        .await;
    controller::reconciled(
        &context.metrics,
        metrics::PROVISIONER,
        &key,
        started,
        result.as_ref(),
    );
    result
}

async fn reconcile_database(db: Arc<MssqlServer>, context: &Context) -> Result<Action, Error> {
    let namespace = db.namespace().unwrap_or_default();
    let api: Api<MssqlServer> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, FINALIZER, db, |event| async {
        match event {
            finalizer::Event::Apply(db) => provision(&db, context).await,
            finalizer::Event::Cleanup(db) => delete(&db, context).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

/// One pass over a database: the chain of the module's steps.
async fn provision(db: &MssqlServer, context: &Context) -> Result<Action, Error> {
    let client = &context.client;
    let (server, mssql_conf) = match prepare(db, client).await? {
        Prepared::Valid { server, mssql_conf } => (server, mssql_conf),
        Prepared::Invalid(errors) => {
            return invalid(db, context, &errors, Action::await_change()).await;
        }
        Prepared::Unresolved(errors) => {
            return invalid(db, context, &errors, Action::requeue(REQUEUE_UNRESOLVED)).await;
        }
    };
    let status = db.status.clone().unwrap_or_default();
    let paused =
        condition::find(&status.conditions, PAUSED).is_some_and(condition::Condition::is_true);
    context
        .metrics
        .database_paused(&server.namespace, &server.name, paused);
    if paused {
        return observe_paused(db, context, &server, &mssql_conf, &status).await;
    }
    if server.halted {
        return halt(db, context, &server, &status).await;
    }
    // Waiting or not, what comes next is a change of something watched; the re-check is a net.
    let mut requeue = recheck(&key(db));
    let mut why = None;
    let observed = match ensure_objects(db, context, &server, &mssql_conf).await? {
        Ensured::Waiting(what) => {
            info!(database = %key(db), "waiting for {what}");
            // Before anything runs: provisioning has started (once; later, the last status stays).
            if !status.conditions.is_empty() {
                return Ok(Action::requeue(requeue));
            }
            Observed::default()
        }
        Ensured::Started(start) => {
            let mut observed = observe::observe(context, &server, start.certificates).await?;
            if let Some(stale) = Stale::of(&observed) {
                // The annotations passed validation with the rest of the spec.
                let policy = Policy::of(db.annotations(), &context.renewal)
                    .unwrap_or_else(|_| context.renewal.clone());
                let (rollout, created) = renewal::roll_out(client, db, stale, &policy)
                    .await
                    .map_err(|source| Error::Apply {
                        what: "creating the renewal's Restart request".to_owned(),
                        source,
                    })?;
                if let Plan::Waiting { opens, .. } = &rollout.plan {
                    // Woken when the window opens, not at the next re-check.
                    let until = opens.duration_since(Timestamp::now()).unsigned_abs();
                    requeue = requeue.min(until + Duration::from_secs(1));
                }
                observed.rollout = Some(rollout);
                why = created;
            }
            observed
        }
    };
    write_observed(context, db, &server, &status, &observed, why.as_ref()).await?;
    Ok(Action::requeue(requeue))
}

/// An ops request owns the database: observe, change nothing.
async fn observe_paused(
    db: &MssqlServer,
    context: &Context,
    server: &Server,
    mssql_conf: &str,
    status: &MssqlServerStatus,
) -> Result<Action, Error> {
    let secrets = match dereference::material(&context.client, server, mssql_conf).await? {
        Material::Issued(start) => start.certificates,
        Material::Missing { .. } => BTreeMap::new(),
    };
    let mut observed = observe::observe(context, server, secrets).await?;
    observed.rollout = Stale::of(&observed).map(|stale| Rollout {
        stale,
        plan: Plan::Paused,
    });
    write_observed(context, db, server, status, &observed, None).await?;
    Ok(Action::requeue(recheck(&key(db))))
}

/// `halted: true`: the pods and services go, volumes and secrets stay.
async fn halt(
    db: &MssqlServer,
    context: &Context,
    server: &Server,
    status: &MssqlServerStatus,
) -> Result<Action, Error> {
    cleanup::halt(&context.client, &Target::of(db))
        .await
        .map_err(Error::Cleanup)?;
    let halted = status::halted(status, &key(db), db.metadata.generation, &now());
    write_status(&context.client, db, halted).await?;
    // Its pods are gone, and with them the certificates they ran, as the status says.
    context
        .metrics
        .certificates(&server.namespace, &server.name, &[]);
    Ok(Action::await_change())
}

/// What applying a database's objects came to.
enum Ensured {
    /// Every object is applied; its pods start with this.
    Started(Start),
    /// The pods' workload cannot be written yet: it waits for this (cert-manager's secrets).
    Waiting(String),
}

/// Build and apply: every object of the database, from what its TLS secrets hold now.
async fn ensure_objects(
    db: &MssqlServer,
    context: &Context,
    server: &Server,
    mssql_conf: &str,
) -> Result<Ensured, Error> {
    let client = &context.client;
    let material = dereference::material(client, server, mssql_conf).await?;
    let start = match &material {
        Material::Issued(start) => Some(start),
        Material::Missing { .. } => None,
    };
    let owner = db
        .controller_owner_ref(&())
        .expect("a stored MSSQLServer has a name and uid");
    let password = secrets::password(&random_bytes());
    let inputs = Inputs {
        owner: &owner,
        mssql_conf,
        start,
        password: &password,
    };
    let set = resources::resources(server, &inputs);
    let outcome =
        apply::apply_all(client, &server.namespace, set, &resources::orphans(server)).await?;
    for (what, reference) in outcome.created {
        context
            .event_about(
                db,
                EventType::Normal,
                "Created",
                format!("Created {what}"),
                Some(reference),
            )
            .await;
    }
    Ok(match material {
        Material::Issued(start) => Ensured::Started(start),
        Material::Missing { secret } => {
            Ensured::Waiting(format!("cert-manager to issue secret {secret}"))
        }
    })
}

/// What applying a database's target spec came to, for the ops-manager's `UpdatePetSets`.
pub enum Applied {
    Done,
    /// Not yet: what it waits for (cert-manager's secrets).
    Waiting(String),
    /// The target spec cannot be provisioned: every problem, joined.
    Invalid(String),
}

/// Applies every object of `db` as given, paused or not: the ops-manager's `UpdatePetSets`
/// passes its target copy of the database.
pub async fn apply_database(db: &MssqlServer, context: &Context) -> Result<Applied, Error> {
    Ok(match prepare(db, &context.client).await? {
        Prepared::Invalid(errors) | Prepared::Unresolved(errors) => Applied::Invalid(join(&errors)),
        Prepared::Valid { server, mssql_conf } => {
            match ensure_objects(db, context, &server, &mssql_conf).await? {
                Ensured::Started(_) => Applied::Done,
                Ensured::Waiting(what) => Applied::Waiting(what),
            }
        }
    })
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn random_bytes() -> [u8; 20] {
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes
}

/// Writes the status of what a pass observed. A rollout plan that changed the condition is
/// announced in an Event (`why`: a request was created now); the rollout metric follows the plan.
async fn write_observed(
    context: &Context,
    db: &MssqlServer,
    server: &Server,
    status: &MssqlServerStatus,
    observed: &Observed,
    why: Option<&Why>,
) -> Result<(), Error> {
    let new = status::provisioned(status, &key(db), observed, db.metadata.generation, &now());
    let rollout = observed.rollout.as_ref();
    context.metrics.rollout(
        &server.namespace,
        &server.name,
        rollout
            .filter(|r| !matches!(r.plan, Plan::Requested { .. } | Plan::Paused))
            .map(Rollout::reason),
    );
    let text = |status: &MssqlServerStatus| {
        condition::find(&status.conditions, CERTIFICATE_ROLLOUT_PENDING)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let replicas = |status: &MssqlServerStatus| {
        condition::find(&status.conditions, mssql_api::phase::REPLICA_READY)
            .and_then(|c| c.message.clone())
    };
    let stuck: Vec<&str> = observed
        .not_ready
        .iter()
        .filter(|p| p.needs_person)
        .map(|p| p.text.as_str())
        .collect();
    if !stuck.is_empty() && replicas(status) != replicas(&new) {
        let message = stuck.join("; ");
        warn!(database = %key(db), %message, "pods not ready");
        context
            .event(db, EventType::Warning, "PodsNotReady", message)
            .await;
    }
    if let Some(rollout) = rollout.filter(|_| text(status) != text(&new))
        && let Some((type_, reason, note)) = rollout.event(why)
    {
        let request = match &rollout.plan {
            Plan::Requested { request } => Some(renewal::reference(db, request)),
            _ => None,
        };
        info!(database = %key(db), "{note}");
        context.event_about(db, type_, reason, note, request).await;
    }
    write_status(&context.client, db, new).await
}

/// Records why a database cannot be provisioned; nothing is created. Then `next`: a spec that
/// breaks a rule waits for a change, a missing issuer or secret is looked for again.
async fn invalid(
    db: &MssqlServer,
    context: &Context,
    errors: &[FieldError],
    next: Action,
) -> Result<Action, Error> {
    let message = join(errors);
    let status = db.status.clone().unwrap_or_default();
    let new = status::invalid(&status, &message, db.metadata.generation, &now());
    if db.status.as_ref() != Some(&new) {
        warn!(database = %key(db), %message, "invalid");
        context
            .event(db, EventType::Warning, "InvalidSpec", message.clone())
            .await;
    }
    write_status(&context.client, db, new).await?;
    Ok(next)
}

/// Writes the status if it changed, against the resourceVersion that was read: a concurrent writer
/// (the ops-manager setting `Paused`) makes this fail and retry instead of being overwritten.
/// Each pass writes it at most once.
pub async fn write_status(
    client: &Client,
    db: &MssqlServer,
    status: MssqlServerStatus,
) -> Result<(), Error> {
    if db.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<MssqlServer> =
        Api::namespaced(client.clone(), &db.namespace().unwrap_or_default());
    let mut updated = db.clone();
    updated.status = Some(status);
    api.replace_status(&db.name_any(), &post_params(), &updated)
        .await
        .map_err(Error::Status)?;
    Ok(())
}

async fn delete(db: &MssqlServer, context: &Context) -> Result<Action, Error> {
    let target = Target::of(db);
    if target.policy == DeletionPolicy::DoNotTerminate {
        let message = cleanup::do_not_terminate_message(&target.namespace, &target.name);
        context
            .event(db, EventType::Warning, "DeletionRefused", message.clone())
            .await;
        // Kept by its finalizer until the policy changes; the Event above is the only report.
        return Err(Error::Refused(message));
    }
    cleanup::before_deletion(&context.client, &target)
        .await
        .map_err(Error::Cleanup)?;
    context
        .metrics
        .database_gone(&target.namespace, &target.name);
    context
        .event(
            db,
            EventType::Normal,
            "Deleted",
            format!("Deleting with deletionPolicy {:?}", target.policy),
        )
        .await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use serde_json::{Value, json};

    use super::*;
    use crate::controller::mock::{self, Call, Calls};
    use crate::fixtures::{self, database};

    /// What a pass reads (`fixtures::references`) exists; the objects it applies do not yet.
    fn cluster(call: &Call) -> (u16, Value) {
        if let Some(answer) = fixtures::references(call) {
            return answer;
        }
        let path = call.path.split('?').next().unwrap_or_default();
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []});
        match call.method.as_str() {
            "GET" if path.ends_with("/pods") || path.ends_with("/events") => (200, list),
            "GET" => (404, mock::status(404, "NotFound")),
            "POST" => (201, call.body.clone()),
            _ => (200, call.body.clone()),
        }
    }

    fn status_writes(calls: &Calls) -> Vec<Call> {
        calls
            .all()
            .into_iter()
            .filter(|c| {
                c.line()
                    .ends_with("/mssqlservers/mssql-standalone-tls/status")
            })
            .collect()
    }

    #[tokio::test]
    async fn a_pass_writes_the_status_once_and_an_unchanged_one_not_at_all() {
        let (client, calls) = mock::client(cluster);
        let context = Context::new(client, Arc::new(Metrics::new()));
        let new = database();
        provision(&new, &context).await.unwrap();
        // A first pass used to write ProvisioningStarted and then its observations, both against
        // the resourceVersion it read: the second write was refused (409) every time.
        let writes = status_writes(&calls);
        assert_eq!(writes.len(), 1, "{:#?}", calls.lines());
        // Every object in a fixed order, what the pods mount before their StatefulSet; nothing
        // deleted for a new database; then the Events of what was created, and the status.
        let changes: Vec<String> = calls
            .lines()
            .into_iter()
            .filter(|line| !line.starts_with("GET") && !line.contains("/events"))
            .map(|line| line.replace("/namespaces/demo", ""))
            .collect();
        assert_eq!(
            changes,
            [
                "POST /api/v1/secrets",
                "PATCH /apis/cert-manager.io/v1/certificates/mssql-standalone-tls-server-cert",
                "PATCH /apis/cert-manager.io/v1/certificates/mssql-standalone-tls-client-cert",
                "PATCH /api/v1/secrets/mssql-standalone-tls-config",
                "PATCH /api/v1/serviceaccounts/mssql-standalone-tls",
                "PATCH /api/v1/services/mssql-standalone-tls",
                "PATCH /api/v1/services/mssql-standalone-tls-pods",
                "PATCH /apis/policy/v1/poddisruptionbudgets/mssql-standalone-tls",
                "PATCH /apis/apps/v1/statefulsets/mssql-standalone-tls",
                "PUT /apis/kubedb.com/v1alpha2/mssqlservers/mssql-standalone-tls/status",
            ]
        );
        assert_eq!(writes[0].method, "PUT");
        let written: MssqlServerStatus =
            serde_json::from_value(writes[0].body["status"].clone()).unwrap();
        assert!(condition::find(&written.conditions, "ProvisioningStarted").is_some());

        // The next pass observes the same: nothing to write.
        let (client, calls) = mock::client(cluster);
        let context = Context::new(client, Arc::new(Metrics::new()));
        let mut stored = database();
        stored.status = Some(written);
        provision(&stored, &context).await.unwrap();
        assert_eq!(status_writes(&calls).len(), 0, "{:#?}", calls.lines());
    }

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
    }

    #[tokio::test]
    async fn an_updated_workload_deletes_what_the_databases_shape_no_longer_needs() {
        let (client, calls) = mock::client(|call| {
            let path = call.path.split('?').next().unwrap_or_default();
            match call.method.as_str() {
                // The StatefulSet exists, applied from another spec.
                "GET" if path.ends_with("/statefulsets/mssql-standalone-tls") => (
                    200,
                    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                           "metadata": {"name": "mssql-standalone-tls", "namespace": "demo",
                               "annotations": {"mssql-operator.dev/applied-hash": "before"}}}),
                ),
                "DELETE" => (200, mock::status(200, "Success")),
                _ => cluster(call),
            }
        });
        let context = Context::new(client, Arc::new(Metrics::new()));
        provision(&database(), &context).await.unwrap();
        let deleted: Vec<String> = calls
            .lines()
            .into_iter()
            .filter(|line| line.starts_with("DELETE"))
            .collect();
        assert_eq!(
            deleted,
            [
                "DELETE /apis/apps/v1/namespaces/demo/statefulsets/mssql-standalone-tls-arbiter",
                "DELETE /api/v1/namespaces/demo/services/mssql-standalone-tls-secondary",
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_deletion_is_told_once_by_its_own_event_and_waits_for_a_change() {
        let (client, calls) = mock::client(|call| (201, call.body.clone()));
        let context = Arc::new(Context::new(client, Arc::new(Metrics::new())));
        let db = Arc::new(database());
        let refused = Error::Finalizer(Box::new(finalizer::Error::CleanupFailed(Error::Refused(
            "deletionPolicy is DoNotTerminate".to_owned(),
        ))));
        assert_eq!(
            error_policy(db.clone(), &refused, context.clone()),
            Action::await_change()
        );
        // Any other failure is a Warning Event, and tried again.
        let failed = Error::Status(api(500));
        assert_eq!(
            error_policy(db, &failed, context),
            Action::requeue(REQUEUE_PROGRESS)
        );
        // Events are published by tasks of their own: the refusal's would have been spawned first.
        let events = || -> Vec<Call> {
            calls
                .all()
                .into_iter()
                .filter(|c| c.line().ends_with("/events"))
                .collect()
        };
        for _ in 0..500 {
            if !events().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let events = events();
        assert_eq!(events.len(), 1, "{:#?}", calls.lines());
        assert_eq!(events[0].body["reason"], "ReconcileError");
    }

    #[test]
    fn databases_are_rechecked_at_their_own_offset_within_the_spread() {
        let delays: Vec<Duration> = (0..200)
            .map(|i| recheck(&format!("bench/ms-{i:04}")))
            .collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= REQUEUE_RECHECK && *d < REQUEUE_RECHECK + REQUEUE_SPREAD)
        );
        assert_eq!(recheck("demo/a"), recheck("demo/a"));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        // 200 keys over 300 one-second slots fill about 146 of them.
        assert!(
            distinct.len() > 100,
            "spread over many seconds: {}",
            distinct.len()
        );
    }

    #[test]
    fn only_409s_are_conflicts_however_deeply_wrapped() {
        assert!(Error::Status(api(409)).is_conflict());
        assert!(!Error::Status(api(500)).is_conflict());
        assert!(!Error::Refused("no".to_owned()).is_conflict());
        let wrapped = |inner| Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(inner)));
        assert!(wrapped(Error::Status(api(409))).is_conflict());
        assert!(!wrapped(Error::Status(api(404))).is_conflict());
        assert!(Error::Finalizer(Box::new(finalizer::Error::AddFinalizer(api(409)))).is_conflict());
        assert!(
            !Error::Finalizer(Box::new(finalizer::Error::<Error>::UnnamedObject)).is_conflict()
        );
    }
}
