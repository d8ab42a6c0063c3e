//! The API calls (thin: every decision is in the pure modules).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mssql_api::labels::{selector, selector_string};
use mssql_api::names;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use mssql_certs::cert_manager::{Certificate, CertificateCondition, ClusterIssuer, Issuer};

use crate::Error;
use crate::api_error::explain;
use crate::request::{IssuerChoice, IssuerState};
use crate::status::{Observed, planned_certificates};

/// A client for the kubeconfig's current context, and the namespace to use.
pub async fn connect(namespace: Option<String>) -> Result<(Client, String), Error> {
    let client = Client::try_default().await.map_err(|e| {
        Error::Cluster(format!(
            "cannot reach the cluster of the current kubeconfig context ({e}): check KUBECONFIG and `kubectl cluster-info`"
        ))
    })?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    Ok((client, namespace))
}

fn failed(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |e| Error::Cluster(format!("{what}: {}", explain(&e)))
}

pub async fn database(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<MssqlServer>, Error> {
    Api::<MssqlServer>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(failed(format!("reading MSSQLServer {namespace}/{name}")))
}

pub async fn issuer(
    client: &Client,
    namespace: &str,
    choice: &IssuerChoice,
) -> Result<IssuerState, Error> {
    let what = || format!("reading {}", choice.describe(namespace));
    let conditions = if choice.cluster {
        Api::<ClusterIssuer>::all(client.clone())
            .get_opt(&choice.name)
            .await
            .map_err(failed(what()))?
            .map(|i| i.status.unwrap_or_default().conditions)
    } else {
        Api::<Issuer>::namespaced(client.clone(), namespace)
            .get_opt(&choice.name)
            .await
            .map_err(failed(what()))?
            .map(|i| i.status.unwrap_or_default().conditions)
    };
    Ok(match conditions {
        None => IssuerState::Missing,
        Some(conditions) => match conditions.iter().find(|c| c.type_ == "Ready") {
            Some(CertificateCondition { status, .. }) if status == "True" => IssuerState::Ready,
            Some(ready) => IssuerState::NotReady(
                ready
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("Ready is {}", ready.status)),
            ),
            None => IssuerState::NotReady("cert-manager has not checked it yet".to_owned()),
        },
    })
}

/// The Certificates, Secrets, StatefulSets and pods `tls status` reports on.
pub async fn observe(client: &Client, db: &MssqlServer) -> Result<Observed, Error> {
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let certificates: Api<Certificate> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let mut observed = Observed::default();
    for planned in planned_certificates(db) {
        let what = format!("reading Certificate {namespace}/{}", planned.certificate);
        if let Some(c) = certificates
            .get_opt(&planned.certificate)
            .await
            .map_err(failed(what))?
        {
            observed.certificates.insert(planned.certificate, c);
        }
        let what = format!("reading Secret {namespace}/{}", planned.secret);
        if let Some(s) = secrets
            .get_opt(&planned.secret)
            .await
            .map_err(failed(what))?
        {
            observed.secrets.insert(planned.secret, s);
        }
    }
    for sts in [name.clone(), names::arbiter(&name)] {
        let what = format!("reading StatefulSet {namespace}/{sts}");
        observed
            .statefulsets
            .extend(statefulsets.get_opt(&sts).await.map_err(failed(what))?);
    }
    observed.pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector_string(&selector(&name))))
        .await
        .map_err(failed(format!("listing the pods of {namespace}/{name}")))?
        .items;
    Ok(observed)
}

pub async fn create(
    client: &Client,
    request: &MssqlServerOpsRequest,
) -> Result<MssqlServerOpsRequest, Error> {
    let namespace = request.namespace().unwrap_or_default();
    Api::<MssqlServerOpsRequest>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), request)
        .await
        .map_err(failed(format!(
            "creating an MSSQLServerOpsRequest in {namespace}"
        )))
}

pub async fn request(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<MssqlServerOpsRequest, Error> {
    Api::<MssqlServerOpsRequest>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(failed(format!("reading MSSQLServerOpsRequest {namespace}/{name}")))?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "MSSQLServerOpsRequest {namespace}/{name} not found: `kubectl mssql ops list -n {namespace}` lists the requests"
            ))
        })
}

/// The requests of `namespace`, or of every namespace.
pub async fn requests(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Vec<MssqlServerOpsRequest>, Error> {
    let api = match namespace {
        Some(ns) => Api::<MssqlServerOpsRequest>::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let place = namespace.map_or_else(
        || "all namespaces".to_owned(),
        |ns| format!("namespace {ns}"),
    );
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(failed(format!("listing MSSQLServerOpsRequests in {place}")))?
        .items)
}
