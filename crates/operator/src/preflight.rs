//! Checks at start-up that the APIs the operator needs are served, so a missing CRD is one clear
//! message instead of an endless retry loop.

use kube::api::ListParams;
use kube::{Api, Client, Resource};
use mssql_api::{MssqlServer, MssqlServerOpsRequest, MssqlServerVersion};
use mssql_certs::cert_manager::{Certificate, Issuer};
use serde::de::DeserializeOwned;

use crate::client::scoped;

async fn served<K>(api: Api<K>, fix: &str) -> Result<(), String>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(format!(
            "the API server does not serve {}.{}: {fix}",
            K::plural(&()),
            K::group(&())
        )),
        Err(error) => Err(format!("cannot list {}: {error}", K::plural(&()))),
    }
}

/// `Ok` when every needed API is served; else what is missing and how to install it. Namespaced
/// kinds are listed in `namespace` (one the operator watches), or in every namespace.
pub async fn check(client: &Client, namespace: Option<&str>) -> Result<(), String> {
    let ours = "install the CRDs with `mssql-operator crd | kubectl apply --server-side -f -` and the catalog with `mssql-operator catalog | kubectl apply -f -`";
    let cert_manager = "install cert-manager (https://cert-manager.io/docs/installation/) first";
    served(scoped::<MssqlServer>(client, namespace), ours).await?;
    served(Api::<MssqlServerVersion>::all(client.clone()), ours).await?;
    served(scoped::<MssqlServerOpsRequest>(client, namespace), ours).await?;
    served(scoped::<Certificate>(client, namespace), cert_manager).await?;
    served(scoped::<Issuer>(client, namespace), cert_manager).await
}
