//! Certificate renewals as cert-manager users cause them, and the requests the operator creates to
//! roll them out.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use mssql_api::MssqlServerOpsRequest;
use mssql_certs::cert_manager::Certificate;
use mssql_certs::inspect::parse_certificate;
use serde_json::json;

use crate::cluster::eventually;
use crate::fixture::Setup;

/// What `cmctl renew` does: the Certificate's `Issuing` condition set True (reason
/// `ManuallyTriggered`), which cert-manager's trigger controller acts on.
pub async fn cmctl_renew(t: &Setup, certificate: &str) {
    let api = t.api::<Certificate>();
    let current = api.get(certificate).await.unwrap();
    let conditions = current.conditions_to_reissue(
        "ManuallyTriggered",
        "Certificate re-issuance manually triggered",
        Time(Timestamp::now()),
    );
    api.patch_status(
        certificate,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"conditions": conditions}})),
    )
    .await
    .unwrap_or_else(|e| panic!("renewing {certificate}: {e}"));
}

/// The serial of the certificate in TLS secret `secret`.
pub async fn serial(t: &Setup, secret: &str) -> String {
    let pem = t.secret_text(secret, "tls.crt").await;
    parse_certificate(pem.as_bytes()).unwrap().serial
}

/// Renews `<db>-server-cert` as `cmctl renew` does and waits for its new serial; returns it.
pub async fn renew_server_certificate(t: &Setup, db: &str) -> String {
    let name = format!("{db}-server-cert");
    let before = serial(t, &name).await;
    cmctl_renew(t, &name).await;
    wait_new_serial(t, &name, &before, Duration::from_secs(60)).await
}

/// Waits until secret `secret` holds a certificate other than serial `before`; returns its serial.
pub async fn wait_new_serial(t: &Setup, secret: &str, before: &str, timeout: Duration) -> String {
    eventually(
        &format!("cert-manager to renew {secret}"),
        timeout,
        || async {
            let now = serial(t, secret).await;
            if now == before {
                Err(format!("still serial {now}"))
            } else {
                Ok(now)
            }
        },
    )
    .await
}

/// The requests the operator created to roll out renewals of database `db`, oldest first.
pub async fn renewal_requests(t: &Setup, db: &str) -> Vec<MssqlServerOpsRequest> {
    let prefix = format!("{db}-renewal-");
    let mut requests: Vec<_> = t
        .api::<MssqlServerOpsRequest>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.name_any().starts_with(&prefix))
        .collect();
    requests.sort_by_key(|r| r.creation_timestamp().map(|t| t.0));
    requests
}

/// Waits until the operator has created a renewal request of `db` other than `known`; returns it.
pub async fn wait_renewal_request(
    t: &Setup,
    db: &str,
    known: &[String],
    timeout: Duration,
) -> MssqlServerOpsRequest {
    eventually(&format!("a renewal request of {db}"), timeout, || async {
        let all = renewal_requests(t, db).await;
        let names: Vec<String> = all.iter().map(|r| r.name_any()).collect();
        all.into_iter()
            .find(|r| !known.contains(&r.name_any()))
            .ok_or_else(|| format!("only {names:?}"))
    })
    .await
}
