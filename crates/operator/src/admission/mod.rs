//! The validating admission webhook: every rule `check` knows is enforced when an `MSSQLServer` or
//! `MSSQLServerOpsRequest` is written, by the very code `check` runs (`check::database`,
//! `check::ops_request`), so the three (`check`, admission, the operator's `SpecValid`) cannot
//! disagree. The CRDs' schema and CEL rules run first, in the API server; this adds what they
//! cannot know: the catalog, the database an ops request names, the rules written in Rust.
//!
//! Every replica serves it, leader or not (`server`), with a certificate the operator keeps in a
//! Secret (`certificate`) and the CA bundle it keeps current in the webhook configuration
//! (`registration`).

pub mod certificate;
pub mod registration;
pub mod review;
pub mod server;

use kube::{Api, Client};
use mssql_api::validate::{FieldError, validate_deletion, validate_ops_update};
use mssql_api::{MssqlServer, MssqlServerOpsRequest, MssqlServerVersion};
use serde_json::Value;

use self::review::{Request, Verdict};
use crate::check;

/// Where the API server sends reviews of both kinds.
pub const PATH: &str = "/validate";

/// What a request needs before it can be judged: nothing more, the database's catalog entry,
/// or whether the database an ops request names exists.
#[derive(Debug)]
pub enum Step {
    Judged(Verdict),
    Database(Box<MssqlServer>),
    OpsRequest(Box<MssqlServerOpsRequest>),
}

/// The part of judging a request that needs no API: what it is, and what is decided already.
pub fn first_step(request: &Request) -> Step {
    steps(request).unwrap_or_else(Step::Judged)
}

fn steps(request: &Request) -> Result<Step, Verdict> {
    let kind = (request.kind.group.as_str(), request.kind.kind.as_str());
    Ok(match (kind, request.operation.as_str()) {
        (("kubedb.com", "MSSQLServer"), "CREATE") => Step::Database(typed(&request.object)?),
        (("kubedb.com", "MSSQLServer"), "UPDATE") => {
            // Only a change of what validation reads is judged: the operator's own writes
            // (finalizers, its annotations) and a database being deleted are never held up by a
            // rule added after the database was admitted.
            if being_deleted(&request.object) || !changes_spec(request) {
                return Ok(Step::Judged(Verdict::Allowed));
            }
            Step::Database(typed(&request.object)?)
        }
        (("kubedb.com", "MSSQLServer"), "DELETE") => {
            let db: Box<MssqlServer> = typed(&request.old_object)?;
            Step::Judged(match validate_deletion(&db) {
                Some(error) => Verdict::Forbidden(error.to_string()),
                None => Verdict::Allowed,
            })
        }
        (("ops.kubedb.com", "MSSQLServerOpsRequest"), "CREATE") => {
            Step::OpsRequest(typed(&request.object)?)
        }
        (("ops.kubedb.com", "MSSQLServerOpsRequest"), "UPDATE") => {
            let old: Box<MssqlServerOpsRequest> = typed(&request.old_object)?;
            let new: Box<MssqlServerOpsRequest> = typed(&request.object)?;
            Step::Judged(match validate_ops_update(&old, &new) {
                Some(error) => Verdict::Invalid(error.to_string()),
                None => Verdict::Allowed,
            })
        }
        _ => Step::Judged(Verdict::Allowed),
    })
}

/// The verdict on a database, given its catalog entry (if one exists).
pub fn judge_database(db: MssqlServer, version: Option<&MssqlServerVersion>) -> Verdict {
    verdict(check::database(db, version).map(drop))
}

/// The verdict on a new ops request, given whether its database exists.
pub fn judge_ops_request(ops: &MssqlServerOpsRequest, database_exists: bool) -> Verdict {
    verdict(check::ops_request(ops, Some(database_exists)).map(drop))
}

/// Judges `request`, reading what it needs from the API. A read that fails refuses the request
/// (the webhook fails closed, as its `failurePolicy: Fail` does when it cannot be reached).
pub async fn admit(client: &Client, request: &Request) -> Verdict {
    let read_failed = |what: &str, error: kube::Error| {
        Verdict::Invalid(format!(
            "mssql-operator's admission webhook could not read {what}: {error}; try again"
        ))
    };
    match first_step(request) {
        Step::Judged(verdict) => verdict,
        Step::Database(db) => {
            let versions: Api<MssqlServerVersion> = Api::all(client.clone());
            match versions.get_opt(&db.spec.version).await {
                Ok(version) => judge_database(*db, version.as_ref()),
                Err(error) => read_failed("the MSSQLServerVersion", error),
            }
        }
        Step::OpsRequest(ops) => {
            let namespace = request.namespace.as_deref().unwrap_or("default");
            let databases: Api<MssqlServer> = Api::namespaced(client.clone(), namespace);
            match databases.get_opt(&ops.spec.database_ref.name).await {
                Ok(db) => judge_ops_request(&ops, db.is_some()),
                Err(error) => read_failed("the MSSQLServer", error),
            }
        }
    }
}

fn verdict(result: Result<(), Vec<FieldError>>) -> Verdict {
    match result {
        Ok(()) => Verdict::Allowed,
        Err(errors) => Verdict::Invalid(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// The object parsed as `T`, or the verdict that names the field that does not fit.
fn typed<T: serde::de::DeserializeOwned>(object: &Option<Value>) -> Result<Box<T>, Verdict> {
    let object = object
        .as_ref()
        .ok_or_else(|| Verdict::Invalid("the admission review holds no object".into()))?;
    check::typed(object.clone())
        .map(Box::new)
        .map_err(|errors| verdict(Err(errors)))
}

fn being_deleted(object: &Option<Value>) -> bool {
    object
        .as_ref()
        .and_then(|o| o.pointer("/metadata/deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
}

/// Whether an update changes the spec or the annotations (the renewal policy is annotations).
fn changes_spec(request: &Request) -> bool {
    let part = |object: &Option<Value>, pointer: &str| {
        object.as_ref().and_then(|o| o.pointer(pointer)).cloned()
    };
    ["/spec", "/metadata/annotations"]
        .iter()
        .any(|p| part(&request.object, p) != part(&request.old_object, p))
}

#[cfg(test)]
mod tests;
