//! The provisioner: turns each `MSSQLServer` into a running database, in five steps —
//! dereference (read what it refers to), validate (into a typed `Server`), build (pure),
//! apply (server-side apply, skipped when unchanged), status (KubeDB's conditions and phase).
//! A database whose `Paused` condition is True (an ops request owns it) gets status updates only.
//! Pods left on older certificates than their Secrets hold are rolled out by `renewal`.

pub mod apply;
pub mod cleanup;
pub mod dereference;
pub mod health;
pub mod renewal;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use mssql_api::labels::{self, ROLE_PRIMARY, selector_string};
use mssql_api::phase::CERTIFICATE_ROLLOUT_PENDING;
use mssql_api::phase::PAUSED;
use mssql_api::pods::{StartedCertificate, is_ready, role, started_with};
use mssql_api::renewal::{Policy, Why};
use mssql_api::validate::CONFIG_KEY;
use mssql_api::validate::FieldError;
use mssql_api::validated::{DeletionPolicy, Server, Topology, validated};
use mssql_api::{MssqlServer, MssqlServerStatus};
use mssql_api::{condition, conf, names};
use mssql_certs::cert_manager::Certificate;
use tracing::{debug, info, warn};

use self::apply::{Applied, apply, create_once};
use self::cleanup::Target;
use self::renewal::{Plan, Rollout, Stale};
use self::status::Observed;
use crate::build::start::Start;
use crate::build::{certificates, config, secrets, services, workload};
use crate::client::scoped;
use crate::events::Events;
use crate::metrics::{self, Metrics};
use crate::ops::wake::Waker;

/// KubeDB's finalizer on databases.
pub const FINALIZER: &str = "kubedb.com";

/// The name Events and writes are reported under.
pub const CONTROLLER_NAME: &str = "mssql-operator";

/// Reconciles run at once, per controller. Unbounded, a thousand new databases meant a thousand
/// reconciles in flight, each holding its responses: memory grew with N while the API server, not
/// the operator, set the pace anyway.
pub const CONCURRENCY: u16 = 16;

/// A failed reconcile is tried again this often.
const REQUEUE_PROGRESS: Duration = Duration::from_secs(10);
/// A database that cannot be provisioned is looked at again this often: what it names (an issuer,
/// a user's secret, a catalog entry) may be created next, and none of those is watched.
const REQUEUE_INVALID: Duration = Duration::from_secs(30);
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error("applying {what}: {source}")]
    Apply { what: String, source: kube::Error },
    #[error("updating the status: {0}")]
    Status(kube::Error),
    #[error("cleaning up: {0}")]
    Cleanup(kube::Error),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A short label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Read { .. } => "dereference",
            Self::Apply { .. } => "apply",
            Self::Status(_) => "status",
            Self::Cleanup(_) => "cleanup",
            Self::Refused(_) => "refused",
            Self::Finalizer(_) => "finalizer",
        }
    }

    /// A write lost a race with another writer (409): the newer object is on its way through the
    /// watch, so this is retried at once, without a Warning Event, and not counted as an error.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Read { source, .. } | Self::Apply { source, .. } => is_conflict(source),
            Self::Status(source) | Self::Cleanup(source) => is_conflict(source),
            Self::Refused(_) => false,
            Self::Finalizer(error) => finalizer_conflict(error, Self::is_conflict),
        }
    }
}

pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether a finalizer error is a conflict, `inner` judging the reconciler's own errors.
pub(crate) fn finalizer_conflict<E: std::error::Error + 'static>(
    error: &finalizer::Error<E>,
    inner: impl Fn(&E) -> bool,
) -> bool {
    match error {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => inner(e),
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => is_conflict(e),
        _ => false,
    }
}

/// How soon a reconcile that lost a write race runs again (the newer object usually comes first).
pub(crate) const REQUEUE_CONFLICT: Duration = Duration::from_millis(500);

fn read(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Read { what, source }
}

fn applying(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Apply { what, source }
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
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            events: Events::new(client.clone(), reporter),
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
            note: Some(event_note(note)),
            action: "Reconcile".to_owned(),
            secondary,
        };
        self.events.publish(&event, &db.object_ref(&())).await;
    }
}

/// The API server refuses an Event whose note is over 1024 bytes (422), and the Event would be
/// lost: a long note (an API error quoting a whole object) is cut, on a character boundary.
pub(crate) fn event_note(mut note: String) -> String {
    const LIMIT: usize = 1024;
    const MORE: &str = " …";
    if note.len() > LIMIT {
        let mut end = LIMIT - MORE.len();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str(MORE);
    }
    note
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
    crate::cache::controller(scoped::<MssqlServer>(&client, namespace))
        .with_config(
            controller::Config::default()
                .concurrency(CONCURRENCY)
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
        .for_each(|result| async move { log_outcome(result) })
        .await;
}

/// Logs what a controller's stream yields. A failed reconcile was already logged by the error
/// policy; the controller's own problems (a watch the API server refuses, say) are warnings.
pub(crate) fn log_outcome<K, E>(
    result: Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>,
) where
    K: Resource<DynamicType = ()>,
    E: std::error::Error + 'static,
{
    match result {
        Ok((object, _)) => debug!(%object, "reconciled"),
        Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(error) => warn!(%error, "controller error"),
    }
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
        debug!(database = %key(&db), %error, "lost a write race; again at once");
        return Action::requeue(REQUEUE_CONFLICT);
    }
    warn!(database = %key(&db), category = error.category(), %error, "will retry");
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
    let result = reconcile_database(db, &context).await;
    context.metrics.reconciled(
        metrics::PROVISIONER,
        started.elapsed(),
        result.as_ref().map_or_else(Error::is_conflict, |_| true),
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

fn now() -> Time {
    Time(Timestamp::now())
}

fn key(db: &MssqlServer) -> String {
    format!("{}/{}", db.namespace().unwrap_or_default(), db.name_any())
}

/// A database read, validated and with everything it refers to checked.
enum Prepared {
    Invalid(Vec<FieldError>),
    Valid {
        server: Box<Server>,
        mssql_conf: String,
    },
}

/// Dereference and validate: everything the builders need, or every problem with the input.
async fn prepare(db: &MssqlServer, client: &Client) -> Result<Prepared, Error> {
    let references = dereference::version(client, db)
        .await
        .map_err(read("the MSSQLServerVersion"))?;
    let server = match validated(db, references.version.as_ref()) {
        Ok(server) => server,
        Err(errors) => return Ok(Prepared::Invalid(errors)),
    };
    let user_config = match dereference::check_references(client, &server)
        .await
        .map_err(read("references"))?
    {
        Ok(config) => config,
        Err(errors) => return Ok(Prepared::Invalid(errors)),
    };
    let version = references.version.as_ref().map(|v| v.spec.version.as_str());
    let user_config = match user_config
        .as_deref()
        .map(|text| conf::check_user(text, version))
    {
        None => None,
        Some(Ok(ini)) => Some(ini),
        Some(Err(problems)) => {
            // Inline text was checked by validation; what is left is a config Secret's.
            let field = match server.config.secret.as_deref() {
                Some(secret) => format!("spec.configuration.secretName ({secret})"),
                None => format!("spec.configuration.inline[{CONFIG_KEY}]"),
            };
            let errors = problems
                .into_iter()
                .map(|problem| FieldError::new(field.clone(), problem))
                .collect();
            return Ok(Prepared::Invalid(errors));
        }
    };
    let mssql_conf = config::mssql_conf(
        server.tls.client_tls,
        conf::tls_protocols(version.unwrap_or_default()),
        user_config.as_ref(),
    );
    Ok(Prepared::Valid {
        server: Box::new(server),
        mssql_conf,
    })
}

/// Applies every object of `db` as given, paused or not: the ops-manager's `UpdatePetSets`
/// passes its target copy of the database. `Ok(Err(_))` is a problem with the input;
/// `Ok(Ok(Some(_)))` what is still awaited (cert-manager's secrets).
pub async fn apply_database(
    db: &MssqlServer,
    context: &Context,
) -> Result<Result<Option<String>, String>, Error> {
    match prepare(db, &context.client).await? {
        Prepared::Invalid(errors) => Ok(Err(join(&errors))),
        Prepared::Valid { server, mssql_conf } => {
            let owner = db
                .controller_owner_ref(&())
                .expect("a stored MSSQLServer has a name and uid");
            ensure_objects(db, context, &server, &owner, &mssql_conf)
                .await
                .map(|ensured| Ok(ensured.err()))
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

async fn provision(db: &MssqlServer, context: &Context) -> Result<Action, Error> {
    let client = &context.client;
    let (server, mssql_conf) = match prepare(db, client).await? {
        Prepared::Invalid(errors) => return invalid(db, context, &errors).await,
        Prepared::Valid { server, mssql_conf } => (server, mssql_conf),
    };
    let status = db.status.clone().unwrap_or_default();
    let paused =
        condition::find(&status.conditions, PAUSED).is_some_and(condition::Condition::is_true);
    context
        .metrics
        .database_paused(&server.namespace, &server.name, paused);
    if paused {
        // An ops request owns the database: observe, change nothing.
        let secrets = match dereference::tls_secrets(client, &server)
            .await
            .map_err(read("the TLS secrets"))?
        {
            Ok(tls) => Start::of(&tls, &mssql_conf).certificates,
            Err(_) => BTreeMap::new(),
        };
        let mut observed = observe(context, &server, secrets).await?;
        observed.rollout = Stale::of(&observed).map(|stale| Rollout {
            stale,
            plan: Plan::Paused,
        });
        observed_status(context, db, &server, &status, &observed, None).await?;
        return Ok(Action::requeue(recheck(&key(db))));
    }
    if server.halted {
        cleanup::halt(client, &Target::of(db))
            .await
            .map_err(Error::Cleanup)?;
        write_status(
            client,
            db,
            status::halted(&status, &key(db), db.metadata.generation, &now()),
        )
        .await?;
        // Its pods are gone, and with them the certificates they ran, as the status says.
        context
            .metrics
            .certificates(&server.namespace, &server.name, &[]);
        return Ok(Action::await_change());
    }
    let owner = db
        .controller_owner_ref(&())
        .expect("a stored MSSQLServer has a name and uid");
    if status.conditions.is_empty() {
        let started = status::provisioned(
            &status,
            &key(db),
            &Observed::default(),
            db.metadata.generation,
            &now(),
        );
        write_status(client, db, started).await?;
    }
    // Waiting or not, what comes next is a change of something watched; the re-check is a net.
    let mut requeue = recheck(&key(db));
    match ensure_objects(db, context, &server, &owner, &mssql_conf).await? {
        Err(waiting) => info!(database = %key(db), "waiting for {waiting}"),
        Ok(start) => {
            let mut observed = observe(context, &server, start.certificates).await?;
            let mut why = None;
            if let Some(stale) = Stale::of(&observed) {
                // The annotations passed validation with the rest of the spec.
                let policy = Policy::of(db.annotations(), &context.renewal)
                    .unwrap_or_else(|_| context.renewal.clone());
                let (rollout, created) = renewal::roll_out(client, db, stale, &policy)
                    .await
                    .map_err(applying("the renewal's Restart request"))?;
                if let Plan::Waiting { opens, .. } = &rollout.plan {
                    // Woken when the window opens, not at the next re-check.
                    let until = opens.duration_since(Timestamp::now()).unsigned_abs();
                    requeue = requeue.min(until + Duration::from_secs(1));
                }
                observed.rollout = Some(rollout);
                why = created;
            }
            observed_status(context, db, &server, &status, &observed, why.as_ref()).await?;
        }
    }
    Ok(Action::requeue(requeue))
}

/// Writes the status of what a pass observed. A rollout plan that changed the condition is
/// announced in an Event (`why`: a request was created now); the rollout metric follows the plan.
async fn observed_status(
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

/// Applies every object of the database, in dependency order. Returns what its pods start with,
/// or what it waits for if the StatefulSet cannot be created yet (the TLS secrets are not issued).
async fn ensure_objects(
    db: &MssqlServer,
    context: &Context,
    server: &Server,
    owner: &OwnerReference,
    mssql_conf: &str,
) -> Result<Result<Start, String>, Error> {
    let client = &context.client;
    let ns = &server.namespace;
    let mut created = Created::default();

    if !server.auth_secret_given {
        let secret = secrets::auth_secret(server, owner, &secrets::password(&random_bytes()));
        let applied = create_once(client, ns, &secret)
            .await
            .map_err(applying("the auth secret"))?;
        created.note(&secret, applied);
    }
    for certificate in certificates::certificates(server, owner) {
        created.apply(client, ns, certificate).await?;
    }
    let config_secret = secrets::config_secret(server, owner, mssql_conf);
    let config_name = config_secret.name_any();
    created.apply(client, ns, config_secret).await?;
    if let Some(account) = workload::service_account(server, owner) {
        created.apply(client, ns, account).await?;
    }
    for service in services::services(server, owner) {
        created.apply(client, ns, service).await?;
    }
    created
        .apply(client, ns, workload::pod_disruption_budget(server, owner))
        .await?;

    let waiting = match dereference::tls_secrets(client, server)
        .await
        .map_err(read("the TLS secrets"))?
    {
        Ok(tls) => {
            let start = Start::of(&tls, mssql_conf);
            created
                .apply(
                    client,
                    ns,
                    workload::statefulset(server, owner, &config_name, &start),
                )
                .await?;
            if let Some(arbiter) = workload::arbiter(server, owner, &config_name, &start) {
                created.apply(client, ns, arbiter).await?;
            }
            Ok(start)
        }
        Err(missing) => Err(format!("cert-manager to issue secret {missing}")),
    };
    for (what, reference) in created.0 {
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
    Ok(waiting)
}

/// The objects a pass created, for their Events.
#[derive(Default)]
struct Created(Vec<(String, ObjectReference)>);

impl Created {
    fn note<K: Resource<DynamicType = ()>>(&mut self, object: &K, applied: Applied) {
        if applied == Applied::Created {
            let what = format!(
                "{} {}",
                K::kind(&()).to_lowercase(),
                object.meta().name.clone().unwrap_or_default()
            );
            self.0.push((what, object.object_ref(&())));
        }
    }

    async fn apply<K>(&mut self, client: &Client, namespace: &str, object: K) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let what = format!(
            "{} {}",
            K::kind(&()).to_lowercase(),
            object.meta().name.clone().unwrap_or_default()
        );
        let applied = apply(client, namespace, object.clone())
            .await
            .map_err(applying(what))?;
        self.note(&object, applied);
        Ok(())
    }
}

fn random_bytes() -> [u8; 20] {
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes
}

/// Reads the StatefulSet's and the pods' readiness, roles and the certificates they started with
/// (`secrets`: what each alias's Secret holds now); records the certificates' expiry as pods run
/// them in the metrics.
async fn observe(
    context: &Context,
    server: &Server,
    secrets: BTreeMap<String, StartedCertificate>,
) -> Result<Observed, Error> {
    let client = &context.client;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &server.namespace);
    let ready_replicas = statefulsets
        .get_opt(&server.name)
        .await
        .map_err(read("the statefulset"))?
        .and_then(|s| s.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let pods = Api::<Pod>::namespaced(client.clone(), &server.namespace)
        .list(&ListParams::default().labels(&selector_string(&labels::selector(&server.name))))
        .await
        .map_err(read("the pods"))?;
    let primary_ready = (server.topology != Topology::Standalone).then(|| {
        pods.items
            .iter()
            .any(|p| role(p) == Some(ROLE_PRIMARY) && is_ready(p))
    });
    let started = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), started_with(p)))
        .filter(|(_, started)| !started.is_empty())
        .collect();
    let mut not_ready = Vec::new();
    let arbiter = server
        .arbiter
        .as_ref()
        .map(|_| names::arbiter(&server.name));
    let workloads = [(server.name.clone(), server.replicas)]
        .into_iter()
        .chain(arbiter.map(|name| (name, 1)));
    for (statefulset, replicas) in workloads {
        let missing = (0..replicas).any(|ordinal| {
            let pod = format!("{statefulset}-{ordinal}");
            !pods.items.iter().any(|p| p.name_any() == pod)
        });
        // Only a missing pod costs a read: what the StatefulSet controller said when it failed.
        let cannot_create = match missing {
            true => creation_failure(client, &server.namespace, &statefulset).await?,
            false => None,
        };
        not_ready.extend(health::not_ready(
            &statefulset,
            replicas,
            &pods.items,
            cannot_create.as_deref(),
        ));
    }
    let observed = Observed {
        replicas: server.replicas,
        ready_replicas,
        primary_ready,
        started,
        secrets,
        rollout: None,
        not_ready,
    };
    context
        .metrics
        .certificates(&server.namespace, &server.name, &observed.running());
    Ok(observed)
}

/// How long a StatefulSet's `FailedCreate` Event tells why a pod is missing: the controller
/// retries with a back-off of up to about 16 minutes, repeating the Event each time.
const CREATION_FAILURE_FRESH: i64 = 20 * 60;

/// The message of the StatefulSet's latest recent `FailedCreate` Event, if any.
async fn creation_failure(
    client: &Client,
    namespace: &str,
    statefulset: &str,
) -> Result<Option<String>, Error> {
    let fields = format!(
        "involvedObject.kind=StatefulSet,involvedObject.name={statefulset},reason=FailedCreate"
    );
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(read("the StatefulSet's events"))?;
    let when = |e: &k8s_openapi::api::core::v1::Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
    };
    let now = Timestamp::now();
    Ok(events
        .items
        .iter()
        .filter(|e| {
            when(e).is_some_and(|t| now.as_second() - t.as_second() < CREATION_FAILURE_FRESH)
        })
        .max_by_key(|e| when(e))
        .and_then(|e| e.message.clone()))
}

/// Records why a database cannot be provisioned; nothing is created. A fixed spec resumes at once,
/// a missing issuer or secret once created (within `REQUEUE_INVALID`).
async fn invalid(
    db: &MssqlServer,
    context: &Context,
    errors: &[FieldError],
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
    Ok(Action::requeue(REQUEUE_INVALID))
}

/// Writes the status if it changed, against the resourceVersion that was read: a concurrent writer
/// (the ops-manager setting `Paused`) makes this fail and retry instead of being overwritten.
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
    api.replace_status(&db.name_any(), &apply::post_params(), &updated)
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

    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
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
    fn event_notes_fit_the_api_limit_without_splitting_a_character() {
        assert_eq!(event_note("short".to_owned()), "short");
        let exact = "x".repeat(1024);
        assert_eq!(event_note(exact.clone()), exact);
        let long = "é".repeat(600); // 1200 bytes
        let cut = event_note(long);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with(" …"));
        assert!(cut.trim_end_matches(" …").chars().all(|c| c == 'é'));
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
