//! What a request asks of an availability group's coordinators, through its database's
//! annotations: a planned switchover ([`SWITCHOVER`]: the replica it wants primary) and the
//! endpoint certificate every replica is to trust ([`ENDPOINT_CERTIFICATE`]). The coordinators
//! honour them only while the request holds the database paused; the request withdraws each once
//! it is done, and both before it resumes the database.

use kube::api::Patch;
use kube::{Api, ResourceExt};
use mssql_api::annotations::{ENDPOINT_CERTIFICATE, SWITCHOVER};
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use serde_json::{Map, Value, json};

use super::{Context, Error, acting};
use crate::controller::apply::patch_params;

/// Every annotation a request asks through.
pub(super) const ALL: [&str; 2] = [SWITCHOVER, ENDPOINT_CERTIFICATE];

/// Sets annotation `key` of the request's database to `value`, unless the provisioner's cache
/// says it already does.
pub(super) async fn ask(
    context: &Context,
    ops: &MssqlServerOpsRequest,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let current = context
        .known()
        .database(&namespace, &ops.spec.database_ref.name)
        .and_then(|db| db.annotations().get(key).cloned());
    if current.as_deref() == Some(value) {
        return Ok(());
    }
    write(context, ops, &[(key, Some(value))]).await
}

/// Removes annotations `keys`, whatever a cache says: one left behind would be honoured by the
/// next request's pause.
pub(super) async fn withdraw(
    context: &Context,
    ops: &MssqlServerOpsRequest,
    keys: &[&str],
) -> Result<(), Error> {
    let none: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (*k, None)).collect();
    write(context, ops, &none).await
}

async fn write(
    context: &Context,
    ops: &MssqlServerOpsRequest,
    values: &[(&str, Option<&str>)],
) -> Result<(), Error> {
    let annotations: Map<String, Value> = values
        .iter()
        .map(|(key, value)| ((*key).to_owned(), json!(value)))
        .collect();
    let patch = json!({"metadata": {"annotations": annotations}});
    Api::<MssqlServer>::namespaced(
        context.client().clone(),
        &ops.namespace().unwrap_or_default(),
    )
    .patch(
        &ops.spec.database_ref.name,
        &patch_params(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(acting(
        "writing the database's annotations for its coordinators",
    ))?;
    Ok(())
}
