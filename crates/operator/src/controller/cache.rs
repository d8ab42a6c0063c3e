//! The controllers' caches of their own objects (databases, ops requests), kept without
//! `metadata.managedFields`: the operator never reads them, and as parsed JSON they were the
//! larger part of each cached object. A write of a cached copy leaves them out, and the API
//! server keeps what it has.

use std::fmt::Debug;

use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// A controller for every object of `api`, caching each without its managed fields.
pub fn controller<K>(api: Api<K>) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let objects = watcher(api, watcher::Config::default())
        .modify(|object: &mut K| object.meta_mut().managed_fields = None);
    Controller::for_stream(reflector(writer, objects).applied_objects(), reader)
}
