//! A store of what a watch says, kept as a summary per object (`V`: only what a pass reads, so
//! 1,000 databases' objects cost little memory), fed by passing the watch's events through
//! [`Store::remember`] on their way to the controller, and written through by the operator's own
//! writes so a pass right after one already knows its result.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

/// An object: its kind, namespace (empty when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    kind: Cow<'static, str>,
    namespace: String,
    name: String,
}

impl Key {
    /// The key of the object `name` of kind `K` in `namespace` ("" for a cluster-scoped one).
    pub fn of<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> Self {
        Self {
            kind: kind::<K>(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn of_object<K: Resource<DynamicType = ()>>(object: &K) -> Option<Self> {
        let meta = object.meta();
        Some(Self {
            kind: kind::<K>(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// The kind's name: borrowed from `K`'s constants for every type the operator watches, so a key
/// does not hold a copy of it.
fn kind<K: Resource<DynamicType = ()>>() -> Cow<'static, str> {
    static NO_DYNAMIC_TYPE: () = ();
    K::kind(&NO_DYNAMIC_TYPE)
}

/// Summaries of the objects of one or more kinds, by key.
pub struct Store<V> {
    map: Arc<RwLock<HashMap<Key, V>>>,
}

impl<V> Clone for Store<V> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
        }
    }
}

impl<V> Default for Store<V> {
    fn default() -> Self {
        Self {
            map: Arc::default(),
        }
    }
}

impl<V: Clone> Store<V> {
    pub fn get(&self, key: &Key) -> Option<V> {
        self.read().get(key).cloned()
    }

    /// `read` of the summary of `key`, without copying it.
    pub fn with<R>(&self, key: &Key, read: impl FnOnce(Option<&V>) -> R) -> R {
        read(self.read().get(key))
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.read().contains_key(key)
    }

    /// Every summary whose key passes `keep`.
    pub fn filter(&self, keep: impl Fn(&Key, &V) -> bool) -> Vec<V> {
        self.read()
            .iter()
            .filter(|(key, value)| keep(key, value))
            .map(|(_, value)| value.clone())
            .collect()
    }

    pub fn insert(&self, key: Key, value: V) {
        self.write().insert(key, value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.read().len()
    }

    /// Passes `events` on unchanged, keeping `summary(object, what was known of it)` of each
    /// object in the store (an object the summary returns `None` for is left out) until it is
    /// deleted. A relist replaces everything known of the kind. `ready` is told when the first
    /// list is complete.
    pub fn remember<K, S>(
        &self,
        events: S,
        summary: impl Fn(&K, Option<&V>) -> Option<V> + Send + 'static,
        ready: Ready,
    ) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Send + 'static,
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
        V: Send + Sync + 'static,
    {
        let store = self.clone();
        let mut listing: Option<HashSet<Key>> = None;
        events.map(move |event| {
            if let Ok(event) = &event {
                store.observe(event, &summary, &mut listing, &ready);
            }
            event
        })
    }

    fn observe<K: Resource<DynamicType = ()>>(
        &self,
        event: &Event<K>,
        summary: &impl Fn(&K, Option<&V>) -> Option<V>,
        listing: &mut Option<HashSet<Key>>,
        ready: &Ready,
    ) {
        let keep = |object: &K| -> Option<Key> {
            let key = Key::of_object(object)?;
            let mut map = self.write();
            match summary(object, map.get(&key)) {
                Some(value) => {
                    map.insert(key.clone(), value);
                }
                None => {
                    map.remove(&key);
                }
            }
            Some(key)
        };
        match event {
            Event::Apply(object) => {
                keep(object);
            }
            Event::Delete(object) => {
                if let Some(key) = Key::of_object(object) {
                    self.write().remove(&key);
                }
            }
            Event::Init => *listing = Some(HashSet::new()),
            Event::InitApply(object) => {
                if let (Some(key), Some(seen)) = (keep(object), listing.as_mut()) {
                    seen.insert(key);
                }
            }
            Event::InitDone => {
                let seen = listing.take().unwrap_or_default();
                let kind = kind::<K>();
                self.write()
                    .retain(|key, _| key.kind != kind || seen.contains(key));
                ready.done();
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, V>> {
        // A panic while holding the lock leaves a map that is still whole: keep using it.
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, V>> {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether every watch feeding a set of stores has listed once: until then a pass would take
/// an object that is not known yet for one that does not exist.
#[derive(Clone)]
pub struct Readiness {
    pending: Arc<watch::Sender<usize>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            pending: Arc::new(watch::channel(0).0),
        }
    }
}

impl Readiness {
    /// One more watch to wait for.
    pub fn feeder(&self) -> Ready {
        self.pending.send_modify(|n| *n += 1);
        Ready {
            pending: self.pending.clone(),
            told: Arc::default(),
        }
    }

    /// Until every feeder has listed once.
    pub async fn wait(&self) {
        let mut pending = self.pending.subscribe();
        // The sender lives as long as `self`: this cannot fail.
        let _ = pending.wait_for(|n| *n == 0).await;
    }
}

/// A watch's part of a [`Readiness`]: told once its first list is complete.
pub struct Ready {
    pending: Arc<watch::Sender<usize>>,
    told: Arc<std::sync::atomic::AtomicBool>,
}

impl Ready {
    fn done(&self) {
        if !self.told.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use kube::api::ObjectMeta;

    use super::*;

    fn config_map(name: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("demo".to_owned()),
                ..ObjectMeta::default()
            },
            data: Some([("v".to_owned(), value.to_owned())].into()),
            ..ConfigMap::default()
        }
    }

    fn value(object: &ConfigMap, _: Option<&String>) -> Option<String> {
        object.data.as_ref()?.get("v").cloned()
    }

    #[tokio::test]
    async fn a_store_follows_its_watch_and_a_relist_forgets_what_is_gone() {
        let store: Store<String> = Store::default();
        let readiness = Readiness::default();
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(config_map("a", "1"))),
            Ok(Event::InitApply(config_map("b", "2"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(config_map("a", "3"))),
            Ok(Event::Delete(config_map("b", "2"))),
            Ok(Event::Apply(config_map("c", "4"))),
            // A relist that no longer has `a`.
            Ok(Event::Init),
            Ok(Event::InitApply(config_map("c", "5"))),
            Ok(Event::InitDone),
        ];
        let mut passed = store.remember(stream::iter(events), value, readiness.feeder());
        let key = |name| Key::of::<ConfigMap>("demo", name);
        // Another kind shares the store and survives the relist of this one.
        store.insert(Key::of::<Service>("demo", "a"), "service".to_owned());

        for _ in 0..4 {
            passed.next().await.unwrap().unwrap();
        }
        readiness.wait().await;
        assert_eq!(store.get(&key("a")).as_deref(), Some("1"));
        assert_eq!(store.get(&key("b")).as_deref(), Some("2"));
        for _ in 0..3 {
            passed.next().await.unwrap().unwrap();
        }
        assert_eq!(store.get(&key("a")).as_deref(), Some("3"));
        assert!(!store.contains(&key("b")));
        while passed.next().await.is_some() {}
        assert!(!store.contains(&key("a")));
        assert_eq!(store.get(&key("c")).as_deref(), Some("5"));
        assert!(store.contains(&Key::of::<Service>("demo", "a")));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn readiness_waits_for_every_feeder_to_list_once() {
        let readiness = Readiness::default();
        let (first, second) = (readiness.feeder(), readiness.feeder());
        first.done();
        first.done(); // told twice: still one
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), readiness.wait());
        assert!(waiting.await.is_err(), "one feeder has not listed yet");
        second.done();
        readiness.wait().await;
    }
}
