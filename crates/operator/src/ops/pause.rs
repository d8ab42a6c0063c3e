//! Pausing and resuming the database: its `Paused` condition, which keeps the provisioner's hands
//! off while a request changes it (and lets a group's coordinators honour what it asks of them).

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
    // Withdrawn first: an ask left behind would be honoured by the next request's pause.
    if super::asks::ALL
        .iter()
        .any(|key| current.annotations().contains_key(*key))
    {
        super::asks::withdraw(context, ops, &super::asks::ALL).await?;
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mssql_api::OpsRequestSpec;

    use super::*;
    use crate::controller::mock;
    use crate::fixtures::{DATABASE, NAMESPACE, database};

    #[tokio::test]
    async fn pausing_reads_again_and_retries_when_the_provisioner_wrote_in_between() {
        let writes = AtomicUsize::new(0);
        let (client, calls) = mock::client(move |call| match call.method.as_str() {
            "GET" => (200, serde_json::to_value(database()).unwrap()),
            // The provisioner's status write came first: the first write is refused.
            _ if writes.fetch_add(1, Ordering::SeqCst) == 0 => (409, mock::status(409, "Conflict")),
            _ => (200, call.body.clone()),
        });
        let mut ops = MssqlServerOpsRequest::new("rotate", OpsRequestSpec::default());
        ops.metadata.namespace = Some(NAMESPACE.to_owned());
        set_paused(&client, NAMESPACE, DATABASE, Some(&ops))
            .await
            .unwrap();

        let status = format!("/apis/kubedb.com/v1alpha2/namespaces/demo/mssqlservers/{DATABASE}");
        assert_eq!(
            calls.lines(),
            [
                format!("GET {status}"),
                format!("PUT {status}/status"),
                format!("GET {status}"),
                format!("PUT {status}/status"),
            ]
        );
        let written: MssqlServer = serde_json::from_value(calls.all()[3].body.clone()).unwrap();
        let paused = condition::find(&written.status.unwrap().conditions, PAUSED).cloned();
        let paused = paused.expect("the Paused condition is written");
        assert!(paused.is_true());
        assert_eq!(
            paused.message.as_deref(),
            Some("Paused by MSSQLServerOpsRequest demo/rotate")
        );
    }
}
