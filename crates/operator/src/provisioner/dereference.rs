//! Dereference: read what a database refers to (its catalog entry, issuers, user secrets) and
//! what it needs before pods can start (the TLS secrets). Problems the user must fix come back as
//! field errors; API failures as errors to retry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use mssql_api::validate::FieldError;
use mssql_api::validated::{IssuerRef, Server};
use mssql_api::{MssqlServer, MssqlServerVersion};
use mssql_certs::cert_manager::{ClusterIssuer, Issuer, KIND_CLUSTER_ISSUER};

use mssql_api::validate::CONFIG_KEY;

use crate::build::secrets::check_auth_secret;

/// What the user referred to, read from the API.
pub struct References {
    pub version: Option<MssqlServerVersion>,
}

pub async fn version(client: &Client, db: &MssqlServer) -> kube::Result<References> {
    let api: Api<MssqlServerVersion> = Api::all(client.clone());
    Ok(References {
        version: api.get_opt(&db.spec.version).await?,
    })
}

/// Checks the objects a valid spec points at: every issuer, a user's auth secret and config
/// secret. Returns the user's `mssql.conf`, if any (a config secret's, else the inline one).
pub async fn check_references(
    client: &Client,
    server: &Server,
) -> kube::Result<Result<Option<String>, Vec<FieldError>>> {
    let mut errors = Vec::new();
    let mut issuers: Vec<(&str, &IssuerRef)> = vec![("spec.tls.issuerRef", &server.tls.issuer)];
    for certificate in &server.tls.certificates {
        issuers.push(("spec.tls.certificates.issuerRef", &certificate.issuer));
    }
    let mut checked: Vec<&IssuerRef> = Vec::new();
    for (field, issuer) in issuers {
        if checked.contains(&issuer) {
            continue;
        }
        checked.push(issuer);
        if !issuer_exists(client, &server.namespace, issuer).await? {
            let place = if issuer.kind == KIND_CLUSTER_ISSUER {
                format!("ClusterIssuer {}", issuer.name)
            } else {
                format!("Issuer {}/{}", server.namespace, issuer.name)
            };
            errors.push(FieldError::new(
                field,
                format!("{place} does not exist: create it, or point issuerRef at an existing cert-manager issuer"),
            ));
        }
    }

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &server.namespace);
    if server.auth_secret_given {
        match secrets.get_opt(&server.auth_secret).await? {
            None => errors.push(FieldError::new(
                "spec.authSecret.name",
                format!("auth secret {} does not exist: create it with username \"sa\" and a password, or remove authSecret.name to have one generated", server.auth_secret),
            )),
            Some(secret) => {
                if let Err(message) = check_auth_secret(&secret) {
                    errors.push(FieldError::new("spec.authSecret.name", message));
                }
            }
        }
    }

    let mut user_config = server.config.inline.clone();
    if let Some(name) = server.config.secret.as_deref() {
        let config = secrets.get_opt(name).await?;
        match config
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(CONFIG_KEY))
        {
            Some(value) => user_config = Some(String::from_utf8_lossy(&value.0).into_owned()),
            None => errors.push(FieldError::new(
                "spec.configuration.secretName",
                format!("config secret {name} does not exist or has no key \"{CONFIG_KEY}\""),
            )),
        }
    }
    Ok(if errors.is_empty() {
        Ok(user_config)
    } else {
        Err(errors)
    })
}

async fn issuer_exists(client: &Client, namespace: &str, issuer: &IssuerRef) -> kube::Result<bool> {
    Ok(if issuer.kind == KIND_CLUSTER_ISSUER {
        Api::<ClusterIssuer>::all(client.clone())
            .get_opt(&issuer.name)
            .await?
            .is_some()
    } else {
        Api::<Issuer>::namespaced(client.clone(), namespace)
            .get_opt(&issuer.name)
            .await?
            .is_some()
    })
}

/// The issued TLS secrets of every alias, by alias; `Err` names the first that cert-manager has
/// not written yet.
pub async fn tls_secrets(
    client: &Client,
    server: &Server,
) -> kube::Result<Result<BTreeMap<String, Secret>, String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &server.namespace);
    let mut found = BTreeMap::new();
    for certificate in &server.tls.certificates {
        let secret = api.get_opt(&certificate.secret_name).await?;
        let issued = secret
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .is_some_and(|d| {
                ["tls.crt", "tls.key"]
                    .iter()
                    .all(|k| d.get(*k).is_some_and(|v| !v.0.is_empty()))
            });
        match secret {
            Some(secret) if issued => {
                found.insert(certificate.alias.clone(), secret);
            }
            _ => return Ok(Err(certificate.secret_name.clone())),
        }
    }
    Ok(Ok(found))
}
