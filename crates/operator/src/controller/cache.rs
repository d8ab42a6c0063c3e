//! The controllers' caches of their own objects (databases, ops requests), kept without
//! `metadata.managedFields`: the operator never reads them, and as parsed JSON they were the
//! larger part of each cached object. A write of a cached copy leaves them out, and the API
//! server keeps what it has.

use std::fmt::Debug;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// A controller for every object of `api`, caching each without its managed fields. `seen` is
/// shown each object once it is in the cache.
pub fn controller<K>(api: Api<K>, seen: impl Fn(&K) + Send + 'static) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let objects = watcher(api, watcher::Config::default())
        .backoff(super::known::watch_backoff())
        .modify(|object: &mut K| object.meta_mut().managed_fields = None);
    let cached = reflector(writer, objects)
        .applied_objects()
        .filter_map(super::known::told)
        .inspect_ok(seen);
    // Errors are told by each watch (`told`) and never reach the controller; were one to, it
    // would pause all of the controller's watches for seconds, not kube's half minute and more.
    Controller::for_stream(cached, reader).trigger_backoff(super::known::watch_backoff())
}
