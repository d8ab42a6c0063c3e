//! Halting and deleting a database, by its `deletionPolicy`:
//! - `DoNotTerminate`: the deletion waits (finalizer kept) until the policy is changed;
//! - `Halt`: pods and services go, volumes (PVCs) and secrets stay;
//! - `Delete`: volumes go too, secrets stay;
//! - `WipeOut`: everything goes, including the TLS secrets and a generated auth secret.
//!
//! What the database owns is garbage-collected by Kubernetes once the finalizer is removed; what
//! must survive has its owner reference removed first.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch};
use kube::{Api, Client};
use mssql_api::defaults::default_mssqlserver;
use mssql_api::validated::DeletionPolicy;
use mssql_api::{MssqlServer, names};
use mssql_certs::cert_manager::Certificate;
use serde_json::json;

use mssql_api::labels::{self, selector_string};

use crate::controller::apply::{delete_if_present, patch_params};

/// What halting or deleting a database touches. Taken from the defaulted spec, valid or not: a
/// database whose spec is broken must still be deletable.
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub policy: DeletionPolicy,
    pub auth_secret: String,
    pub own_service_account: bool,
    /// `(Certificate name, Secret name)` of each alias.
    pub certificates: Vec<(String, String)>,
}

impl Target {
    pub fn of(db: &MssqlServer) -> Self {
        let mut db = db.clone();
        default_mssqlserver(&mut db, None);
        let name = db.metadata.name.clone().unwrap_or_default();
        let spec = &db.spec;
        let certificates = spec
            .tls
            .iter()
            .flat_map(|t| t.certificates.iter().flatten())
            .map(|c| {
                (
                    names::certificate(&name, &c.alias),
                    c.secret_name
                        .clone()
                        .unwrap_or_else(|| names::certificate(&name, &c.alias)),
                )
            })
            .collect();
        Self {
            namespace: db
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            policy: DeletionPolicy::parse(spec.deletion_policy.as_deref()),
            auth_secret: spec
                .auth_secret
                .as_ref()
                .and_then(|s| s.name.clone())
                .unwrap_or_else(|| names::auth_secret(&name)),
            own_service_account: spec
                .pod_template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .is_none_or(|p| p.service_account_name.is_none()),
            certificates,
            name,
        }
    }
}

/// The message that keeps a `DoNotTerminate` database from being deleted.
pub fn do_not_terminate_message(namespace: &str, name: &str) -> String {
    format!(
        "MSSQLServer {namespace}/{name} is not deleted: deletionPolicy is DoNotTerminate. Set spec.deletionPolicy to Halt, Delete or WipeOut to let the deletion finish"
    )
}

/// Removes the pods' workload and services, keeping volumes, secrets and certificates' secrets.
pub async fn halt(client: &Client, target: &Target) -> kube::Result<()> {
    let (ns, name) = (&target.namespace, &target.name);
    delete_if_present::<StatefulSet>(client, ns, name).await?;
    delete_if_present::<StatefulSet>(client, ns, &names::arbiter(name)).await?;
    delete_if_present::<PodDisruptionBudget>(client, ns, name).await?;
    for service in [
        name.clone(),
        names::governing_service(name),
        names::secondary_service(name),
    ] {
        delete_if_present::<Service>(client, ns, &service).await?;
    }
    if target.own_service_account {
        delete_if_present::<ServiceAccount>(client, ns, name).await?;
    }
    for (certificate, _) in &target.certificates {
        delete_if_present::<Certificate>(client, ns, certificate).await?;
    }
    Ok(())
}

/// Prepares the deletion of a database by its policy; `Ok` lets the finalizer go.
pub async fn before_deletion(client: &Client, target: &Target) -> kube::Result<()> {
    let (ns, name) = (&target.namespace, &target.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let kept = [target.auth_secret.clone(), names::config_secret(name)];
    match target.policy {
        DeletionPolicy::DoNotTerminate => return Ok(()),
        DeletionPolicy::Halt | DeletionPolicy::Delete => {
            for name in &kept {
                disown(&secrets, name).await?;
            }
        }
        DeletionPolicy::WipeOut => {
            // The Certificates first: while one exists, cert-manager issues its deleted secret
            // again (garbage collection removes the Certificates only after the database).
            for (certificate, _) in &target.certificates {
                delete_if_present::<Certificate>(client, ns, certificate).await?;
            }
            for (_, secret_name) in &target.certificates {
                // Only secrets that cert-manager wrote for this database (labelled by its template).
                if let Some(secret) = secrets.get_opt(secret_name).await?
                    && secret
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(labels::INSTANCE))
                        == Some(name)
                {
                    delete_if_present::<Secret>(client, ns, secret_name).await?;
                }
            }
        }
    }
    if matches!(
        target.policy,
        DeletionPolicy::Delete | DeletionPolicy::WipeOut
    ) {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let selector = selector_string(&labels::selector(name));
        claims
            .delete_collection(
                &DeleteParams::background(),
                &ListParams::default().labels(&selector),
            )
            .await?;
    }
    Ok(())
}

/// Removes the owner references of a Secret so that garbage collection keeps it.
async fn disown(secrets: &Api<Secret>, name: &str) -> kube::Result<()> {
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(());
    };
    if secret
        .metadata
        .owner_references
        .as_ref()
        .is_none_or(Vec::is_empty)
    {
        return Ok(());
    }
    let patch = json!({"metadata": {"ownerReferences": null}});
    secrets
        .patch(name, &patch_params(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
