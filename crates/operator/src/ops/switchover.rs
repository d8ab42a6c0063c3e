//! Asking an availability group's coordinators for a planned switchover: the database's
//! switchover annotation names the replica the request wants primary. The coordinators honour it
//! only while the request holds the database paused, and the request withdraws it once the role
//! moved and when it resumes the database.

use kube::api::Patch;
use kube::{Api, ResourceExt};
use mssql_api::annotations::SWITCHOVER;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use serde_json::json;

use super::{Context, Error, acting};
use crate::controller::apply::patch_params;

/// Sets the switchover annotation of the request's database to `to` (removes it for `None`),
/// unless it already says so.
pub(super) async fn ask(
    context: &Context,
    ops: &MssqlServerOpsRequest,
    to: Option<&str>,
) -> Result<(), Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let name = &ops.spec.database_ref.name;
    let current = context
        .known()
        .database(&namespace, name)
        .and_then(|db| db.annotations().get(SWITCHOVER).cloned());
    if current.as_deref() == to {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": {SWITCHOVER: to}}});
    Api::<MssqlServer>::namespaced(context.client().clone(), &namespace)
        .patch(name, &patch_params(), &Patch::Merge(&patch))
        .await
        .map_err(acting("writing the database's switchover annotation"))?;
    Ok(())
}
