//! Dereference and validate: look up what a database refers to (its catalog entry and issuers in
//! what the watches know; a user's own secrets, which carry none of our labels, from the API
//! server), validate the spec with it (`mssql_api::validated`, the rules `check` and admission
//! run), and find what its pods need before they can start (the issued TLS secrets). Problems the
//! user must fix come back as field errors; API failures as errors to retry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use mssql_api::conf;
use mssql_api::validate::{CONFIG_KEY, FieldError};
use mssql_api::validated::{IssuerRef, Server, validated};
use mssql_api::{MssqlServer, MssqlServerVersion};
use mssql_certs::cert_manager::{ClusterIssuer, Issuer, KIND_CLUSTER_ISSUER};

use super::Error;
use crate::build::config;
use crate::build::secrets::check_auth_secret;
use crate::build::start::Start;
use crate::controller::known::Known;
use crate::controller::store::Key;

fn reading(what: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Dereference { what, source }
}

/// A database read, validated and with everything it refers to checked.
pub enum Prepared {
    Valid {
        server: Box<Server>,
        mssql_conf: String,
    },
    /// The spec breaks a rule: only a change of the database can fix it.
    Invalid(Vec<FieldError>),
    /// What it refers to (its catalog entry, an issuer, a user's Secret) is missing or wrong: it
    /// may be created or fixed at any moment, and none of those is watched.
    Unresolved(Vec<FieldError>),
}

/// Dereference and validate: everything the builders need, or every problem with the input.
pub async fn prepare(db: &MssqlServer, client: &Client, known: &Known) -> Result<Prepared, Error> {
    let catalog_entry = known
        .versions
        .get(&Key::of::<MssqlServerVersion>("", &db.spec.version));
    let server = match validated(db, catalog_entry.as_ref()) {
        Ok(server) => server,
        Err(errors) if catalog_entry.is_none() => return Ok(Prepared::Unresolved(errors)),
        Err(errors) => return Ok(Prepared::Invalid(errors)),
    };
    let References {
        user_config,
        problems,
    } = check_references(client, known, &server)
        .await
        .map_err(reading("what the database refers to"))?;
    if !problems.is_empty() {
        return Ok(Prepared::Unresolved(problems));
    }
    let version = catalog_entry.as_ref().map(|v| v.spec.version.as_str());
    let user_config = match user_config
        .as_deref()
        .map(|text| conf::check_user(text, version))
    {
        None => None,
        Some(Ok(ini)) => Some(ini),
        Some(Err(problems)) => {
            // Inline text was checked by validation; what is left is a config Secret's.
            let field = match server.config.secret.as_deref() {
                Some(secret) => format!("spec.configuration.secretName ({secret})"),
                None => format!("spec.configuration.inline[{CONFIG_KEY}]"),
            };
            let errors = problems
                .into_iter()
                .map(|problem| FieldError::new(field.clone(), problem))
                .collect();
            return Ok(Prepared::Unresolved(errors));
        }
    };
    let mssql_conf = config::mssql_conf(
        server.tls.client_tls,
        conf::tls_protocols(version.unwrap_or_default()),
        user_config.as_ref(),
    );
    Ok(Prepared::Valid {
        server: Box::new(server),
        mssql_conf,
    })
}

/// What the objects a valid spec points at came to.
struct References {
    /// The user's `mssql.conf`, if any: a config Secret's, else the inline one.
    user_config: Option<String>,
    /// What is missing or wrong: an issuer, a user's auth or config Secret.
    problems: Vec<FieldError>,
}

/// Checks the objects a valid spec points at: every issuer, a user's auth secret and config
/// secret.
async fn check_references(
    client: &Client,
    known: &Known,
    server: &Server,
) -> kube::Result<References> {
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
        let exists = if issuer.kind == KIND_CLUSTER_ISSUER {
            known.issuer_exists::<ClusterIssuer>("", &issuer.name)
        } else {
            known.issuer_exists::<Issuer>(&server.namespace, &issuer.name)
        };
        if !exists {
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
    Ok(References {
        user_config,
        problems: errors,
    })
}

/// What the pods start with, once cert-manager has issued every TLS secret.
pub enum Material {
    Issued(Start),
    /// The first TLS secret cert-manager has not written yet.
    Missing {
        secret: String,
    },
}

/// The issued TLS secrets of every alias: what the pods would start with (with `mssql_conf`).
pub fn material(known: &Known, server: &Server, mssql_conf: &str) -> Material {
    let mut found = BTreeMap::new();
    for certificate in &server.tls.certificates {
        let key = Key::of::<Secret>(&server.namespace, &certificate.secret_name);
        match known.issued.get(&key) {
            Some(issued) => {
                found.insert(certificate.alias.clone(), issued);
            }
            None => {
                return Material::Missing {
                    secret: certificate.secret_name.clone(),
                };
            }
        }
    }
    Material::Issued(Start::of(&found, mssql_conf))
}
