//! Serves the webhook over HTTPS on every replica, and keeps what it needs current: the serving
//! certificate in its Secret, the certificate this process serves, and the CA bundle (or, for a
//! host process, the whole registration).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::certificate::{self, CA_CRT, Files, Plan, TLS_CRT, TLS_KEY};
use super::review::AdmissionReview;
use super::{PATH, admit, registration};

/// How the webhook is served and registered (`mssql-operator run --webhook-…`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Secret holding the CA and the serving certificate.
    pub secret_namespace: String,
    pub secret_name: String,
    /// What the API server dials: DNS names or IP addresses the certificate must cover.
    pub hosts: Vec<String>,
    /// The ValidatingWebhookConfiguration's name.
    pub configuration: String,
    /// A host process registers the configuration itself, dialled at this `https://` URL.
    pub url: Option<String>,
    /// Only namespaces with these labels are validated (a host process's registration).
    pub namespace_selector: BTreeMap<String, String>,
}

/// How often the Secret is re-read: renewals (30 days ahead) and another replica's new
/// certificate are picked up well in time.
const RECHECK: Duration = Duration::from_secs(600);
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the webhook's Secret or configuration: {0}")]
    Kube(#[from] kube::Error),
    #[error("issuing the webhook's certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("loading the webhook's certificate: {0}")]
    Load(String),
}

/// Serves reviews on `listener` until the process ends, once the certificate is loaded.
pub async fn serve(client: Client, settings: Settings, listener: TcpListener) {
    let resolver = Arc::new(Resolver::default());
    tokio::spawn(keep(client.clone(), settings, resolver.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .expect("aws-lc-rs supports TLS 1.2 and 1.3")
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = Router::new().route(PATH, post(review)).with_state(client);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                warn!(%error, "the webhook could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            // A handshake that fails (no certificate loaded yet, a client refusing ours) ends
            // only this connection; the API server retries.
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            if let Err(error) = connection.await {
                warn!(%error, "a webhook connection ended with an error");
            }
        });
    }
}

async fn review(
    State(client): State<Client>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let request = match serde_json::from_slice::<AdmissionReview>(&body) {
        Ok(AdmissionReview {
            request: Some(request),
        }) => request,
        Ok(_) => {
            return (
                StatusCode::BAD_REQUEST,
                json,
                "an AdmissionReview without a request\n".into(),
            );
        }
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                json,
                format!("not an AdmissionReview: {error}\n"),
            );
        }
    };
    let verdict = admit(&client, &request).await;
    info!(
        kind = %request.kind.kind,
        operation = %request.operation,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        verdict = ?verdict,
        "admission review"
    );
    (
        StatusCode::OK,
        json,
        verdict.into_review(&request.uid).to_string(),
    )
}

/// Keeps the Secret, the served certificate and the registration current, forever.
async fn keep(client: Client, settings: Settings, resolver: Arc<Resolver>) {
    loop {
        let wait = match keep_once(&client, &settings, &resolver).await {
            Ok(()) => RECHECK,
            Err(error) => {
                warn!(%error, "the admission webhook is not ready; retrying");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn keep_once(client: &Client, settings: &Settings, resolver: &Resolver) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.secret_namespace);
    let secret = secrets.get_opt(&settings.secret_name).await?;
    let files = secret.as_ref().map(files_of);
    let now = Timestamp::now().as_second();
    let plan = certificate::plan(files.as_ref(), &settings.hosts, now);
    let files = match (&plan, files) {
        (Plan::Keep, Some(files)) => files,
        (Plan::NewLeaf { why } | Plan::NewCa { why }, files) => {
            info!(secret = %settings.secret_name, %why, "issuing the admission webhook's serving certificate");
            let issued = certificate::issue(&plan, files.as_ref(), &settings.hosts, now)?;
            write(&secrets, settings, secret, &issued).await?;
            issued
        }
        (Plan::Keep, None) => unreachable!("plan: no Secret means a new CA"),
    };
    resolver.load(&files[TLS_CRT], &files[TLS_KEY])?;
    let bundle = &files[CA_CRT];
    match &settings.url {
        Some(url) => {
            let configuration = registration::by_url(
                &settings.configuration,
                url,
                bundle,
                &settings.namespace_selector,
            );
            registration::register(client, &configuration).await?;
        }
        None => {
            if registration::keep_ca_bundle(client, &settings.configuration, bundle).await? {
                info!(configuration = %settings.configuration, "the admission webhook's CA bundle was updated");
            }
        }
    }
    Ok(())
}

/// Creates the Secret, or patches its data at the version read (keeping the labels a Helm
/// release put on it): when two replicas issue at once, one write wins and the other replica
/// loads it on its retry.
async fn write(
    secrets: &Api<Secret>,
    settings: &Settings,
    read: Option<Secret>,
    files: &Files,
) -> Result<(), Error> {
    let data: BTreeMap<String, ByteString> = files
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect();
    match read {
        None => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(settings.secret_name.clone()),
                    namespace: Some(settings.secret_namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".into(),
                        "mssql-operator".into(),
                    )])),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(data),
                ..Default::default()
            };
            secrets.create(&PostParams::default(), &secret).await?;
        }
        Some(read) => {
            let patch = json!({
                "metadata": {"resourceVersion": read.metadata.resource_version},
                "data": data,
            });
            secrets
                .patch(
                    &settings.secret_name,
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await?;
        }
    }
    Ok(())
}

fn files_of(secret: &Secret) -> Files {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// Removes a host process's registration as it stops, so that nothing refuses writes on the
/// cluster's behalf once nobody answers.
pub async fn deregister(client: &Client, settings: &Settings) {
    if settings.url.is_none() {
        return;
    }
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    match api
        .delete(&settings.configuration, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            info!(configuration = %settings.configuration, "the admission webhook is deregistered")
        }
        Err(error) => warn!(%error, "could not deregister the admission webhook"),
    }
}

/// The certificate this process serves; replaced when the Secret's changes.
#[derive(Debug, Default)]
struct Resolver {
    current: RwLock<Option<(String, Arc<CertifiedKey>)>>,
}

impl Resolver {
    fn load(&self, cert_pem: &str, key_pem: &str) -> Result<(), Error> {
        let loaded = self.current.read().expect("not poisoned");
        if loaded.as_ref().is_some_and(|(pem, _)| pem == cert_pem) {
            return Ok(());
        }
        drop(loaded);
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Load(format!("tls.crt: {e}")))?;
        // The key's content never reaches a message.
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| Error::Load("tls.key is not a PEM private key".into()))?;
        let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
            .map_err(|_| Error::Load("tls.key is of an unsupported type".into()))?;
        let certified = Arc::new(CertifiedKey::new(chain, key));
        *self.current.write().expect("not poisoned") = Some((cert_pem.to_owned(), certified));
        info!("the admission webhook serves its certificate");
        Ok(())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().expect("not poisoned");
        current.as_ref().map(|(_, key)| key.clone())
    }
}
