//! What the operator knows from its watches, so that a pass reads memory instead of asking the
//! API server: the objects it applies (their applied hash, and whether someone else changed them
//! since), its StatefulSets' replica counts, the certificates in the TLS secrets, its pods (without
//! their spec), the issuers that exist and the catalog. Each watch also wakes the provisioner
//! (`crate::provisioner::run` passes the streams below to its controller); every pass first waits
//! until each watch has listed once.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource};
use mssql_api::{MssqlServer, MssqlServerVersion, labels};
use mssql_certs::cert_manager::{Certificate, ISSUING};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::owned::Owned;
use super::pods::PodFacts;
use super::store::{Key, Readiness, Store};
use crate::build::start::Issued;
use crate::client::scoped;

/// A StatefulSet's counts, as its controller reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    pub ready: i32,
    /// Pods created.
    pub created: i32,
    /// The controller has seen the StatefulSet's latest spec (so `created` is its answer to it,
    /// and a pod it makes now is made from that spec). `Known::statefulset` also counts the
    /// operator's own last write, which the apply's answer tells before the watch does.
    pub caught_up: bool,
    /// The generation the controller has seen.
    observed_generation: Option<i64>,
    /// The revision of the latest spec: a pod that runs it carries it as its
    /// `controller-revision-hash` label.
    pub update_revision: Option<String>,
}

impl Replicas {
    fn of(statefulset: &StatefulSet) -> Self {
        let status = statefulset.status.clone().unwrap_or_default();
        Self {
            ready: status.ready_replicas.unwrap_or(0),
            created: status.replicas,
            caught_up: status.observed_generation.is_some()
                && status.observed_generation == statefulset.metadata.generation,
            observed_generation: status.observed_generation,
            update_revision: status.update_revision,
        }
    }
}

/// A Certificate as cert-manager reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Issuance {
    /// The generation this was reported at: an apply that changed the spec makes it stale.
    pub generation: Option<i64>,
    /// Ready=True at the Certificate's current generation.
    pub ready_at_generation: bool,
    /// What the Ready condition says, when it is not True.
    pub not_ready_message: Option<String>,
    /// `Issuing=True`: cert-manager is issuing it (a failed issuance leaves `Issuing=False`
    /// until its retry, which nothing waits for).
    pub issuing: bool,
    pub revision: Option<i64>,
}

impl Issuance {
    fn of(certificate: &Certificate) -> Self {
        let ready = certificate.condition("Ready");
        Self {
            generation: certificate.metadata.generation,
            ready_at_generation: ready.is_some_and(|r| {
                r.status == "True" && r.observed_generation == certificate.metadata.generation
            }),
            not_ready_message: ready
                .filter(|r| r.status != "True")
                .and_then(|r| r.message.clone()),
            issuing: certificate
                .condition(ISSUING)
                .is_some_and(|c| c.status == "True"),
            revision: certificate.status.as_ref().and_then(|s| s.revision),
        }
    }
}

#[derive(Clone, Default)]
pub struct Known {
    /// Every object the operator applies, of every kind.
    pub owned: Store<Owned>,
    pub replicas: Store<Replicas>,
    pub certificates: Store<Issuance>,
    /// The TLS secrets cert-manager has issued (their certificates; never their keys).
    pub issued: Store<Issued>,
    /// The databases' pods, as what the controllers read of them.
    pub pods: Store<PodFacts>,
    /// The Issuers and ClusterIssuers that exist.
    pub issuers: Store<()>,
    pub versions: Store<MssqlServerVersion>,
    /// The provisioner's cache of databases, once it runs.
    pub databases: Arc<OnceLock<reflector::Store<MssqlServer>>>,
    readiness: Readiness,
}

type Touched<K> = Result<K, watcher::Error>;

impl Known {
    /// Until every watch has listed once.
    pub async fn ready(&self) {
        self.readiness.wait().await;
    }

    /// The objects the operator made, by their `managed-by` label.
    fn ours() -> watcher::Config {
        watcher::Config::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGED_BY_VALUE
        ))
    }

    /// Objects of a kind the operator applies and needs no more of than their metadata (Services,
    /// ServiceAccounts, disruption budgets).
    pub fn applied<K>(
        &self,
        client: &Client,
        namespace: Option<&str>,
    ) -> impl Stream<Item = Touched<PartialObjectMeta<K>>> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let events = watcher(
            scoped::<PartialObjectMeta<K>>(client, namespace),
            Self::ours(),
        )
        .backoff(watch_backoff());
        self.kept_in(&self.owned, events, owned::<PartialObjectMeta<K>>)
    }

    /// The StatefulSets, kept as their applied state and replica counts (their spec is not kept).
    pub fn statefulsets(
        &self,
        client: &Client,
        namespace: Option<&str>,
    ) -> impl Stream<Item = Touched<StatefulSet>> + Send + 'static {
        let events = watcher(scoped::<StatefulSet>(client, namespace), Self::ours())
            .backoff(watch_backoff())
            .modify(|statefulset: &mut StatefulSet| statefulset.spec = None);
        self.applied_keeping(events, &self.replicas, |statefulset: &StatefulSet| {
            Some(Replicas::of(statefulset))
        })
    }

    /// The Certificates, kept as their applied state and what cert-manager reports.
    pub fn certificates(
        &self,
        client: &Client,
        namespace: Option<&str>,
    ) -> impl Stream<Item = Touched<Certificate>> + Send + 'static {
        let events = watcher(scoped::<Certificate>(client, namespace), Self::ours())
            .backoff(watch_backoff());
        self.applied_keeping(events, &self.certificates, |certificate: &Certificate| {
            Some(Issuance::of(certificate))
        })
    }

    /// The operator's Secrets (the auth and config secrets it applies) and those cert-manager
    /// writes with its labels (the TLS secrets, whose certificates are kept).
    pub fn secrets(
        &self,
        client: &Client,
        namespace: Option<&str>,
    ) -> impl Stream<Item = Touched<Secret>> + Send + 'static {
        let events =
            watcher(scoped::<Secret>(client, namespace), Self::ours()).backoff(watch_backoff());
        let cas = Mutex::new(Vec::new());
        self.applied_keeping(events, &self.issued, move |secret: &Secret| {
            let mut issued = Issued::of(secret)?;
            issued.ca = shared(
                &mut cas.lock().unwrap_or_else(|e| e.into_inner()),
                issued.ca,
            );
            Some(issued)
        })
    }

    /// Objects of a kind the operator applies whose `summary` is kept in `store` too.
    fn applied_keeping<K, V>(
        &self,
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
        store: &Store<V>,
        summary: impl Fn(&K) -> Option<V> + Send + 'static,
    ) -> impl Stream<Item = Touched<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Send + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let events = store.remember(
            events,
            move |object, _| summary(object),
            self.readiness.feeder(),
        );
        self.kept_in(&self.owned, events, owned::<K>)
    }

    /// Passes `events`' objects on, keeping `summary` of each in `store`; one more watch that
    /// `ready` waits for.
    fn kept_in<K, V>(
        &self,
        store: &Store<V>,
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
        summary: impl Fn(&K, Option<&V>) -> Option<V> + Send + 'static,
    ) -> impl Stream<Item = Touched<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Send + 'static,
        V: Clone + Send + Sync + 'static,
    {
        store
            .remember(events, summary, self.readiness.feeder())
            .touched_objects()
            .filter_map(told)
    }

    /// The databases' pods, kept as their facts.
    pub fn pods(
        &self,
        client: &Client,
        namespace: Option<&str>,
    ) -> impl Stream<Item = Touched<Pod>> + Send + 'static {
        let events =
            watcher(scoped::<Pod>(client, namespace), Self::ours()).backoff(watch_backoff());
        self.kept_in(&self.pods, events, |pod: &Pod, _| Some(PodFacts::of(pod)))
    }

    /// The Issuers or ClusterIssuers of `api`: only whether each exists is kept.
    pub fn issuers<K>(
        &self,
        api: Api<PartialObjectMeta<K>>,
    ) -> impl Stream<Item = Touched<PartialObjectMeta<K>>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let events = watcher(api, watcher::Config::default()).backoff(watch_backoff());
        self.kept_in(&self.issuers, events, |_, _| Some(()))
    }

    pub fn catalog(
        &self,
        client: &Client,
    ) -> impl Stream<Item = Touched<MssqlServerVersion>> + Send + 'static {
        let events = watcher(
            Api::<MssqlServerVersion>::all(client.clone()),
            watcher::Config::default(),
        )
        .backoff(watch_backoff())
        .modify(|version: &mut MssqlServerVersion| version.metadata.managed_fields = None);
        self.kept_in(&self.versions, events, |version: &MssqlServerVersion, _| {
            Some(version.clone())
        })
    }

    /// StatefulSet `name`'s counts. Caught up only once its controller has seen the operator's
    /// own last write too: the apply's answer is known before the watch tells it, and a pod
    /// deleted before the controller saw a new template is made again from the old one.
    pub fn statefulset(&self, namespace: &str, name: &str) -> Option<Replicas> {
        let key = Key::of::<StatefulSet>(namespace, name);
        let mut counts = self.replicas.get(&key)?;
        let written = self.owned.get(&key).and_then(|owned| owned.generation);
        counts.caught_up &= written <= counts.observed_generation;
        Some(counts)
    }

    /// The pods of database `name` in `namespace` (its StatefulSets' and arbiter's).
    pub fn pods_of(&self, namespace: &str, name: &str) -> Vec<PodFacts> {
        self.pods.filter(|key, pod| {
            key.namespace() == namespace && pod.database.as_deref() == Some(name)
        })
    }

    /// Database `name` of `namespace` as the provisioner's cache has it (`None`: not there yet).
    pub fn database(&self, namespace: &str, name: &str) -> Option<Arc<MssqlServer>> {
        self.databases
            .get()?
            .get(&reflector::ObjectRef::new(name).within(namespace))
    }

    /// Whether the object `name` of kind `K` exists in `namespace` ("" for cluster-scoped kinds).
    pub fn issuer_exists<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
    ) -> bool {
        self.issuers.contains(&Key::of::<K>(namespace, name))
    }
}

/// `ca` as one copy shared by every secret that holds it (`cas`: the copies in use).
fn shared(cas: &mut Vec<Arc<[u8]>>, ca: Arc<[u8]>) -> Arc<[u8]> {
    // A CA no secret holds any more is only held here.
    cas.retain(|kept| Arc::strong_count(kept) > 1);
    if let Some(kept) = cas.iter().find(|kept| **kept == ca) {
        return kept.clone();
    }
    cas.push(ca.clone());
    ca
}

/// Passes a watch's objects on; its errors are told here, once each, and not passed on: the
/// watch retries by itself (`watch_backoff`), while an error passed to a controller would pause
/// all of its watches, one after another (each watch of the operator is refused once after the
/// API server restarted: a minute without news).
pub async fn told<K>(item: Result<K, watcher::Error>) -> Option<Result<K, watcher::Error>> {
    match item {
        Ok(object) => Some(Ok(object)),
        Err(error) => {
            warn!(%error, "a watch failed; it is retried");
            None
        }
    }
}

/// How a watch retries: 250 ms doubling to at most 4 s, from 250 ms again after 30 s without an
/// error. kube's default (up to 30 s and more with its jitter, reset only after 2 minutes without
/// an error) left what the operator knows up to minutes behind after the API server restarted:
/// each watch backed off through the outage, and then again on being told its resourceVersion
/// was gone (410), before it listed afresh.
pub fn watch_backoff() -> ResetTimerBackoff<WatchBackoff> {
    ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(30))
}

pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const LONGEST: Duration = Duration::from_secs(4);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(Self::LONGEST);
        Some(now)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

fn owned<K: Resource<DynamicType = ()>>(object: &K, known: Option<&Owned>) -> Option<Owned> {
    Some(Owned::of(object.meta(), known))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_retry_within_seconds_and_start_again_from_the_shortest_wait() {
        let mut backoff = WatchBackoff::default();
        let waits: Vec<u64> = (0..7)
            .map(|_| backoff.next().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_statefulset_is_caught_up_only_once_its_controller_saw_the_operators_last_write() {
        use k8s_openapi::api::apps::v1::StatefulSetStatus;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

        let known = Known::default();
        let key = Key::of::<StatefulSet>("demo", "db");
        let at = |generation, observed| StatefulSet {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(observed),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        };
        let written = |generation| ObjectMeta {
            generation: Some(generation),
            ..ObjectMeta::default()
        };
        known.replicas.insert(key.clone(), Replicas::of(&at(1, 1)));
        assert!(known.statefulset("demo", "db").unwrap().caught_up);
        // The apply's answer says generation 2; the watch has not told it yet.
        known
            .owned
            .insert(key.clone(), Owned::of(&written(2), None));
        assert!(!known.statefulset("demo", "db").unwrap().caught_up);
        known.replicas.insert(key.clone(), Replicas::of(&at(2, 1)));
        assert!(!known.statefulset("demo", "db").unwrap().caught_up);
        known.replicas.insert(key, Replicas::of(&at(2, 2)));
        assert!(known.statefulset("demo", "db").unwrap().caught_up);
        assert_eq!(known.statefulset("demo", "other"), None);
    }

    #[test]
    fn one_copy_of_a_ca_is_kept_while_a_secret_holds_it() {
        let mut cas = Vec::new();
        let first = shared(&mut cas, Arc::from(&b"ca-1"[..]));
        let second = shared(&mut cas, Arc::from(&b"ca-1"[..]));
        assert!(Arc::ptr_eq(&first, &second));
        let other = shared(&mut cas, Arc::from(&b"ca-2"[..]));
        assert_eq!(cas.len(), 2);
        drop((first, second));
        // Nobody holds ca-1 any more: it goes at the next secret.
        shared(&mut cas, other.clone());
        assert_eq!(cas.len(), 1);
    }
}
