//! Apply: server-side apply of what the builders made, skipped when the watch says the object is
//! what was last applied and nobody changed it since, so an idle database costs no request.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use mssql_api::annotations;

use super::owned::Owned;
use super::store::{Key, Store};
use crate::build::secrets::restart_hash;

/// A kind of namespaced object the operator writes.
pub trait Namespaced:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
{
}

/// The field manager of every write of this operator.
pub const FIELD_MANAGER: &str = "mssql-operator";

/// Parameters of a create or replace by this operator.
pub fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

/// Parameters of a (non-apply) patch by this operator.
pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// What applying did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Unchanged,
}

/// The hash `apply` records on an object: of the object exactly as built.
pub fn applied_hash<K: Serialize>(object: &K) -> String {
    restart_hash(&[&serde_json::to_vec(object).unwrap_or_default()])
}

/// Server-side applies `object` in `namespace` unless `known` says it is as last applied and
/// untouched since; what the API server answers is known at once.
pub async fn apply<K>(
    client: &Client,
    known: &Store<Owned>,
    namespace: &str,
    mut object: K,
) -> kube::Result<Applied>
where
    K: Namespaced,
{
    let hash = applied_hash(&object);
    object
        .annotations_mut()
        .insert(annotations::APPLIED_HASH.to_owned(), hash.clone());
    let name = object.name_any();
    let key = Key::of::<K>(namespace, &name);
    let existing = known.get(&key);
    if existing.as_ref().is_some_and(|e| e.is_current(&hash)) {
        return Ok(Applied::Unchanged);
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let written = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await?;
    known.insert(key, Owned::applied(written.meta()));
    Ok(if existing.is_some() {
        Applied::Updated
    } else {
        Applied::Created
    })
}

/// Creates `object` unless one of its name exists (by `known`, then by the API server's answer);
/// never overwrites: a generated password must not change under a running database.
pub async fn create_once<K>(
    client: &Client,
    known: &Store<Owned>,
    namespace: &str,
    object: &K,
) -> kube::Result<Applied>
where
    K: Namespaced,
{
    let key = Key::of::<K>(namespace, &object.name_any());
    if known.contains(&key) {
        return Ok(Applied::Unchanged);
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.create(&post_params(), object).await {
        Ok(created) => {
            known.insert(key, Owned::of(created.meta(), None));
            Ok(Applied::Created)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Applied::Unchanged),
        Err(error) => Err(error),
    }
}

/// Deletes the object `name` if it exists.
pub async fn delete_if_present<K: Namespaced>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> kube::Result<bool> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api
        .delete(name, &kube::api::DeleteParams::background())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}
