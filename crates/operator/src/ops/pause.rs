//! Pausing and resuming the database: its `Paused` condition, which keeps the provisioner's hands
//! off while a request changes it.

use kube::runtime::events::EventType;
use kube::{Api, Client, ResourceExt};
use mssql_api::condition::{self, Condition};
use mssql_api::phase::PAUSED;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};

use super::{Context, Error, acting, reading};
use crate::controller::apply::post_params;
use crate::controller::now;

/// Removes `Paused` from the database, if it is there.
pub(super) async fn resume_database(
    ops: &MssqlServerOpsRequest,
    context: &Context,
) -> Result<(), Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let db = &ops.spec.database_ref.name;
    let api: Api<MssqlServer> = Api::namespaced(context.client().clone(), &namespace);
    let Some(current) = api
        .get_opt(db)
        .await
        .map_err(reading("reading the database"))?
    else {
        return Ok(());
    };
    if current
        .status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, PAUSED))
        .is_none()
    {
        return Ok(());
    }
    context
        .event(
            ops,
            EventType::Normal,
            "Starting",
            format!("Resuming MSSQLServer database: {namespace}/{db}"),
        )
        .await;
    set_paused(context.client(), &namespace, db, None).await?;
    context
        .event(
            ops,
            EventType::Normal,
            "Successful",
            format!("Successfully resumed MSSQLServer database: {namespace}/{db} for MSSQLServerOpsRequest: {}", ops.name_any()),
        )
        .await;
    Ok(())
}

/// Sets (`by` is the request) or removes (`None`) the database's `Paused` condition, against the
/// resourceVersion read, retried on conflicts with the provisioner's status writes.
pub(super) async fn set_paused(
    client: &Client,
    namespace: &str,
    db: &str,
    by: Option<&MssqlServerOpsRequest>,
) -> Result<(), Error> {
    let api: Api<MssqlServer> = Api::namespaced(client.clone(), namespace);
    for _ in 0..10 {
        let mut current = api.get(db).await.map_err(reading("reading the database"))?;
        let status = current.status.get_or_insert_with(Default::default);
        match by {
            Some(ops) => condition::set(
                &mut status.conditions,
                Condition {
                    severity: None,
                    ..Condition::new(
                        PAUSED,
                        true,
                        "PausedByOpsRequest",
                        format!(
                            "Paused by MSSQLServerOpsRequest {}/{}",
                            namespace,
                            ops.name_any()
                        ),
                        current.metadata.generation,
                        now(),
                    )
                },
            ),
            None => condition::remove(&mut status.conditions, PAUSED),
        }
        match api.replace_status(db, &post_params(), &current).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(acting("writing the database's Paused condition")(error)),
        }
    }
    Err(Error::Act {
        what: "writing the database's Paused condition".to_owned(),
        source: kube::Error::Api(Box::new(kube::core::Status::failure(
            "too many conflicting writes",
            "Conflict",
        ))),
    })
}
