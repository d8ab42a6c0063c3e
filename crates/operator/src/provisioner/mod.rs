//! The provisioner: turns each `MSSQLServer` into a running database. Each pass is one chain:
//! dereference and validate (`dereference`, into a typed `Server`), build (pure, `crate::build`:
//! the database's typed set of objects), apply (`apply`: in a fixed order, skipped when unchanged,
//! leftovers of an earlier shape deleted), observe (`observe`: pods, roles, certificates they
//! run, `replicas`: what each replica's SQL Server says), status (`status`, pure: KubeDB's conditions and phase), written once.
//! A database whose `Paused` condition is True (an ops request owns it) is observed only.
//! Pods left on older certificates than their Secrets hold are rolled out by `renewal`.

pub mod apply;
mod built;
pub mod cleanup;
pub mod dereference;
pub mod health;
pub mod observe;
pub mod renewal;
pub mod replicas;
pub mod scale;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::api::core::v1::{ObjectReference, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{self as runtime, Action};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use mssql_api::MssqlServerVersion;
use mssql_api::phase::{CERTIFICATE_ROLLOUT_PENDING, PAUSED, SPEC_VALID};
use mssql_api::renewal::{Policy, Why};
use mssql_api::validate::FieldError;
use mssql_api::validated::{DeletionPolicy, Server};
use mssql_api::{MssqlServer, MssqlServerStatus, condition, labels};
use mssql_certs::cert_manager::{ClusterIssuer, Issuer};
use tracing::{Instrument, info, info_span, warn};

use self::built::Built;
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
use crate::controller::known::Known;
use crate::controller::store::Key;
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
    /// What the watches say: a pass reads this, not the API server.
    pub known: Known,
    /// Wakes a database's ops requests (none where no ops-manager runs, as in unit tests).
    pub waker: Option<Waker>,
    /// The image of availability groups' `mssql-coordinator` containers (`run`'s flag).
    pub coordinator_image: String,
    /// What each database's objects were last built from.
    built: Built,
}

impl Context {
    /// A context whose Events are reported as `mssql-operator` (and this pod, when `POD_NAME` is
    /// set), knowing what `known` is fed.
    pub fn new(client: Client, metrics: Arc<Metrics>, known: Known) -> Self {
        Self {
            events: Events::of_operator(client.clone()),
            client,
            metrics,
            renewal: Policy::default(),
            known,
            waker: None,
            coordinator_image: crate::DEFAULT_COORDINATOR_IMAGE.to_owned(),
            built: Built::default(),
        }
    }

    /// This context, building availability groups' coordinators from `image`.
    pub fn with_coordinator_image(self, image: String) -> Self {
        Self {
            coordinator_image: image,
            ..self
        }
    }

    /// Wakes the open ops requests of database `name` in `namespace`: one waits for the database
    /// to be Ready.
    fn wake(&self, namespace: &str, name: &str) {
        if let Some(waker) = &self.waker {
            waker.wake(&ObjectRef::new(name).within(namespace));
        }
    }

    async fn event(&self, db: &MssqlServer, type_: EventType, reason: &str, note: String) {
        self.event_about(db, type_, reason, note, None).await;
    }

    /// An Event on the database, about `secondary` if given.
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

/// Runs the provisioner until the process is asked to stop, feeding `known` from its watches.
/// Each change of a database's StatefulSets, pods, Certificates, TLS secrets and disruption
/// budget also wakes its ops requests through `waker`. `namespace`: the one it watches, or every
/// one (`None`).
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    waker: Waker,
    renewal: Policy,
    coordinator_image: String,
    namespace: Option<&str>,
    known: Known,
) {
    let context = Arc::new(Context {
        renewal,
        waker: Some(waker.clone()),
        ..Context::new(client.clone(), metrics, known.clone())
            .with_coordinator_image(coordinator_image)
    });
    let runtime = controller::cache::controller(scoped::<MssqlServer>(&client, namespace), |_| {});
    let databases = runtime.store();
    // The ops-manager of this namespace scope decides on the same cache.
    let _ = known.databases.set(databases.clone());
    runtime
        .with_config(
            runtime::Config::default()
                .concurrency(controller::CONCURRENCY)
                // A new database sets off a burst of events (its objects, pods, secrets): one pass.
                .debounce(Duration::from_millis(500)),
        )
        // A restart waits for the StatefulSet controller to have seen the new template.
        .watches_stream(known.statefulsets(&client, namespace), waking(&waker))
        .owns_stream(known.applied::<Service>(&client, namespace))
        .owns_stream(known.applied::<ServiceAccount>(&client, namespace))
        // What an ops request waits for: a change also wakes the database's requests.
        // Their status is cert-manager's and the disruption controller's business: the database
        // is reconciled only when one is deleted or edited by someone else.
        .watches_stream(
            known.certificates(&client, namespace),
            waking_if_touched(&waker, &known),
        )
        .watches_stream(
            known.applied::<PodDisruptionBudget>(&client, namespace),
            waking_if_touched(&waker, &known),
        )
        // Pods belong to the StatefulSet; their readiness and role labels change the status.
        .watches_stream(known.pods(&client, namespace), waking(&waker))
        // cert-manager writes the TLS secrets with our labels (the Certificate's secret template).
        .watches_stream(known.secrets(&client, namespace), waking(&waker))
        // What a database may be waiting for: an issuer or catalog entry it names appearing.
        .watches_stream(
            known.issuers(scoped::<PartialObjectMeta<Issuer>>(&client, namespace)),
            unresolved(&databases, |db, issuer: &PartialObjectMeta<Issuer>| {
                names_issuer(db, &issuer.name_any())
            }),
        )
        .watches_stream(
            known.issuers(Api::<PartialObjectMeta<ClusterIssuer>>::all(client.clone())),
            unresolved(
                &databases,
                |db, issuer: &PartialObjectMeta<ClusterIssuer>| {
                    names_issuer(db, &issuer.name_any())
                },
            ),
        )
        .watches_stream(
            known.catalog(&client),
            unresolved(&databases, |db, version: &MssqlServerVersion| {
                db.spec.version == version.name_any()
            }),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move { controller::log_outcome(result) })
        .await;
}

/// Maps an object to the databases of its namespace (every one for a cluster-scoped object) that
/// `names` it and are held back by a reference (`SpecValid` False): it may be what they wait for.
fn unresolved<K: Resource, F: Fn(&MssqlServer, &K) -> bool>(
    databases: &Store<MssqlServer>,
    names: F,
) -> impl Fn(K) -> Vec<ObjectRef<MssqlServer>> + use<K, F> {
    let databases = databases.clone();
    move |object| {
        databases
            .state()
            .iter()
            .filter(|db| {
                object.meta().namespace.is_none() || db.namespace() == object.meta().namespace
            })
            .filter(|db| names(db, &object))
            .filter(|db| {
                db.status.as_ref().is_some_and(|s| {
                    condition::find(&s.conditions, SPEC_VALID).is_some_and(|c| !c.is_true())
                })
            })
            .map(|db| ObjectRef::from_obj(db.as_ref()))
            .collect()
    }
}

/// Whether `db` names an issuer (of either kind) called `name`.
fn names_issuer(db: &MssqlServer, name: &str) -> bool {
    let Some(tls) = db.spec.tls.as_ref() else {
        return false;
    };
    let named = |reference: &Option<TypedLocalObjectReference>| {
        reference.as_ref().is_some_and(|r| r.name == name)
    };
    named(&tls.issuer_ref)
        || tls
            .certificates
            .iter()
            .flatten()
            .any(|c| named(&c.issuer_ref))
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

/// As [`waking`], but the database itself is reconciled only when the object is gone or was
/// changed by another writer (`known` has seen the event already).
fn waking_if_touched<K: Resource<DynamicType = ()>>(
    waker: &Waker,
    known: &Known,
) -> impl Fn(K) -> Option<ObjectRef<MssqlServer>> + use<K> {
    let (wake, owned) = (waking(waker), known.owned.clone());
    move |object| {
        let key = Key::of::<K>(
            object.meta().namespace.as_deref().unwrap_or_default(),
            object.meta().name.as_deref()?,
        );
        let touched = owned.get(&key).is_none_or(|o| o.drifted());
        wake(object).filter(|_| touched)
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
    context.known.ready().await;
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
    let (server, mssql_conf) = match prepare(db, client, &context.known).await? {
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
    let ensured = ensure_objects(db, context, &server, &mssql_conf, Build::Remembered).await?;
    let observed = match ensured {
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
    let secrets = match dereference::material(&context.known, server, mssql_conf) {
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
    // Its pods are gone, and with them the certificates they ran and its replicas, as the
    // status says.
    context
        .metrics
        .certificates(&server.namespace, &server.name, &[]);
    context
        .metrics
        .replicas(&server.namespace, &server.name, &[], &[]);
    Ok(Action::await_change())
}

/// What applying a database's objects came to.
enum Ensured {
    /// Every object is applied; its pods start with this.
    Started(Start),
    /// The pods' workload cannot be written yet: it waits for this (cert-manager's secrets).
    Waiting(String),
}

/// Build and apply: every object of the database, from what its TLS secrets hold now. A pass of
/// the database's own (`Build::Remembered`) builds nothing when its inputs are those of the last
/// build and that build's objects are still as applied; the ops-manager's target copy is always
/// built.
async fn ensure_objects(
    db: &MssqlServer,
    context: &Context,
    server: &Server,
    mssql_conf: &str,
    build: Build,
) -> Result<Ensured, Error> {
    let client = &context.client;
    let material = dereference::material(&context.known, server, mssql_conf);
    let ensured = |material: Material| match material {
        Material::Issued(start) => Ensured::Started(start),
        Material::Missing { secret } => {
            Ensured::Waiting(format!("cert-manager to issue secret {secret}"))
        }
    };
    let scale = scale::scale(
        server,
        &context.known.pods_of(&server.namespace, &server.name),
    );
    if let Some(why) = &scale.holding {
        info!(database = %key(db), replicas = scale.replicas, "keeping pods the spec no longer wants: {why}");
    }
    let remembered = (build == Build::Remembered).then(|| {
        let db_key = (server.namespace.clone(), server.name.clone());
        let inputs = built::inputs(db, &context.known, &material, scale.replicas);
        (inputs, db_key)
    });
    if let Some((inputs, db_key)) = &remembered
        && context
            .built
            .unchanged(db_key, *inputs, &context.known.owned)
    {
        return Ok(ensured(material));
    }
    let start = match &material {
        Material::Issued(start) => Some(start),
        Material::Missing { .. } => None,
    };
    let owner = db
        .controller_owner_ref(&())
        .expect("a stored MSSQLServer has a name and uid");
    let passwords = [(); 3].map(|()| secrets::password(&random_bytes()));
    let inputs = Inputs {
        owner: &owner,
        mssql_conf,
        start,
        passwords: passwords.each_ref().map(String::as_str),
        coordinator_image: &context.coordinator_image,
    };
    // The pods it keeps while the group lets them go are still its own (the coordinators' Role
    // names them).
    let kept = Server {
        replicas: scale.replicas,
        ..server.clone()
    };
    let set = resources::resources(&kept, &inputs);
    let outcome = apply::apply_all(
        client,
        &context.known.owned,
        &server.namespace,
        set,
        &resources::orphans(server),
    )
    .await?;
    // One Event a pass for what it created, related to the first (Events are aggregated by
    // reason and related object: a later pass's Event must not be counted into this one's).
    if let Some((_, first)) = outcome.created.first() {
        let what: Vec<&str> = outcome
            .created
            .iter()
            .map(|(what, _)| what.as_str())
            .collect();
        let note = format!("Created {}", what.join(", "));
        context
            .event_about(db, EventType::Normal, "Created", note, Some(first.clone()))
            .await;
    }
    if let Some((inputs, db_key)) = remembered {
        let owned = &context.known.owned;
        context.built.record(db_key, inputs, outcome.objects, owned);
    }
    Ok(ensured(material))
}

/// Whose pass builds the database's objects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    /// The provisioner's, of the database as stored: its last build is remembered.
    Remembered,
    /// The ops-manager's, of its target copy of the database.
    Target,
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
    Ok(match prepare(db, &context.client, &context.known).await? {
        Prepared::Invalid(errors) | Prepared::Unresolved(errors) => Applied::Invalid(join(&errors)),
        Prepared::Valid { server, mssql_conf } => {
            match ensure_objects(db, context, &server, &mssql_conf, Build::Target).await? {
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
    context.metrics.replicas(
        &server.namespace,
        &server.name,
        &observed.group,
        &status.replicas,
    );
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
    let phase_changed = new.phase != status.phase;
    write_status(&context.client, db, new).await?;
    if phase_changed {
        // A pending request waits for the database to be Ready: it starts now, not at its poll.
        context.wake(&server.namespace, &server.name);
    }
    Ok(())
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
        .built
        .forget(&(target.namespace.clone(), target.name.clone()));
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

    use k8s_openapi::api::apps::v1::StatefulSet;

    use super::*;
    use crate::controller::mock::{self, Call, Calls};
    use crate::controller::owned::Owned;
    use crate::controller::store::Key;
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
    async fn a_pass_reads_nothing_writes_the_status_once_and_an_unchanged_one_costs_nothing() {
        let (client, calls) = mock::client(cluster);
        let context = Context::new(client, Arc::new(Metrics::new()), fixtures::known());
        let new = database();
        provision(&new, &context).await.unwrap();
        // A first pass used to write ProvisioningStarted and then its observations, both against
        // the resourceVersion it read: the second write was refused (409) every time.
        let writes = status_writes(&calls);
        assert_eq!(writes.len(), 1, "{:#?}", calls.lines());
        // Every object in a fixed order, what the pods mount before their StatefulSet; nothing
        // read (the watches know), nothing deleted for a new database; one Event of what was
        // created, and the status.
        let lines: Vec<String> = calls
            .lines()
            .into_iter()
            .map(|line| line.replace("/namespaces/demo", ""))
            .collect();
        assert_eq!(
            lines,
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
                "POST /apis/events.k8s.io/v1/events",
                "PUT /apis/kubedb.com/v1alpha2/mssqlservers/mssql-standalone-tls/status",
            ]
        );
        let event = &calls.all()[9].body;
        assert_eq!(
            event["note"],
            "Created secret mssql-standalone-tls-auth, certificate mssql-standalone-tls-server-cert, \
             certificate mssql-standalone-tls-client-cert, secret mssql-standalone-tls-config, \
             serviceaccount mssql-standalone-tls, service mssql-standalone-tls, \
             service mssql-standalone-tls-pods, poddisruptionbudget mssql-standalone-tls, \
             statefulset mssql-standalone-tls"
        );
        assert_eq!(event["related"]["name"], "mssql-standalone-tls-auth");
        assert_eq!(writes[0].method, "PUT");
        let written: MssqlServerStatus =
            serde_json::from_value(writes[0].body["status"].clone()).unwrap();
        assert!(condition::find(&written.conditions, "ProvisioningStarted").is_some());

        // The next pass knows what the first wrote, and observes the same: not one request.
        let (client, calls) = mock::client(cluster);
        let context = Context { client, ..context };
        let mut stored = database();
        stored.status = Some(written);
        provision(&stored, &context).await.unwrap();
        assert_eq!(calls.lines(), Vec::<String>::new());
    }

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
    }

    #[tokio::test]
    async fn a_new_phase_wakes_the_databases_requests_and_an_unchanged_one_does_not() {
        let (waker, mut wakes) = controller::wake::channel();
        let (client, calls) = mock::client(cluster);
        let context = Context {
            waker: Some(waker),
            ..Context::new(client, Arc::new(Metrics::new()), fixtures::known())
        };
        provision(&database(), &context).await.unwrap();
        let woken = wakes.try_next().expect("its requests are woken");
        assert_eq!(woken.name, "mssql-standalone-tls");
        assert_eq!(woken.namespace.as_deref(), Some("demo"));
        assert!(wakes.try_next().is_none(), "once");

        // The next pass finds the same phase: a request waiting for Ready is not woken for it.
        let mut stored = database();
        let written = status_writes(&calls)[0].body["status"].clone();
        stored.status = Some(serde_json::from_value(written).unwrap());
        provision(&stored, &context).await.unwrap();
        assert!(wakes.try_next().is_none());
    }

    /// What the fixtures know, and `objects` as applied from another spec.
    fn known_with(objects: &[Key]) -> Known {
        let known = fixtures::known();
        let before: StatefulSet = serde_json::from_value(json!({
            "metadata": {"annotations": {"mssql-operator.dev/applied-hash": "before"}}
        }))
        .unwrap();
        for key in objects {
            known
                .owned
                .insert(key.clone(), Owned::of(&before.metadata, None));
        }
        known
    }

    #[tokio::test]
    async fn an_updated_workload_deletes_what_the_databases_shape_no_longer_needs() {
        let (client, calls) = mock::client(|call| match call.method.as_str() {
            "DELETE" => (200, mock::status(200, "Success")),
            _ => cluster(call),
        });
        let known = known_with(&[
            Key::of::<StatefulSet>("demo", "mssql-standalone-tls"),
            // What an earlier shape left, as the watches know it.
            Key::of::<StatefulSet>("demo", "mssql-standalone-tls-arbiter"),
            Key::of::<Service>("demo", "mssql-standalone-tls-secondary"),
        ]);
        let context = Context::new(client, Arc::new(Metrics::new()), known);
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
    async fn leftovers_the_watches_do_not_know_cost_no_request() {
        let (client, calls) = mock::client(cluster);
        let known = known_with(&[Key::of::<StatefulSet>("demo", "mssql-standalone-tls")]);
        let context = Context::new(client, Arc::new(Metrics::new()), known);
        provision(&database(), &context).await.unwrap();
        let lines = calls.lines();
        assert!(
            lines
                .iter()
                .any(|l| l
                    == "PATCH /apis/apps/v1/namespaces/demo/statefulsets/mssql-standalone-tls"),
            "the workload was updated: {lines:?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("DELETE")), "{lines:?}");
    }

    #[tokio::test]
    async fn a_refused_deletion_is_told_once_by_its_own_event_and_waits_for_a_change() {
        let (client, calls) = mock::client(|call| (201, call.body.clone()));
        let context = Arc::new(Context::new(
            client,
            Arc::new(Metrics::new()),
            fixtures::known(),
        ));
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
