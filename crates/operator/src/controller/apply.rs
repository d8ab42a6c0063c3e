//! Apply: server-side apply of what the builders made, skipped when the object already is what
//! was last applied, so an idle database costs reads only, never writes.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use mssql_api::annotations;

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

/// Server-side applies `object` in `namespace` unless it is already as last applied.
pub async fn apply<K>(client: &Client, namespace: &str, mut object: K) -> kube::Result<Applied>
where
    K: Namespaced,
{
    let hash = applied_hash(&object);
    object
        .annotations_mut()
        .insert(annotations::APPLIED_HASH.to_owned(), hash.clone());

    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.name_any();
    // Metadata only: the annotation is all that is compared, and a secret's data stays put.
    let existing = api.get_metadata_opt(&name).await?;
    if existing
        .as_ref()
        .is_some_and(|e| e.annotations().get(annotations::APPLIED_HASH) == Some(&hash))
    {
        return Ok(Applied::Unchanged);
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(if existing.is_some() {
        Applied::Updated
    } else {
        Applied::Created
    })
}

/// Creates `object` unless one of its name exists; never overwrites (a generated password must
/// not change under a running database). Looks first (metadata only), so a database that already
/// has it costs a read, not a refused write.
pub async fn create_once<K>(client: &Client, namespace: &str, object: &K) -> kube::Result<Applied>
where
    K: Namespaced,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    if api.get_metadata_opt(&object.name_any()).await?.is_some() {
        return Ok(Applied::Unchanged);
    }
    match api.create(&post_params(), object).await {
        Ok(_) => Ok(Applied::Created),
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
