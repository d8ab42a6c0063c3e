//! Asking cert-manager to re-issue the target Certificates (a rotation), after recording their
//! revisions so that a re-issued certificate is told apart.

use kube::api::Patch;
use kube::{Api, Client, ResourceExt};
use mssql_api::MssqlServerOpsRequest;
use mssql_api::annotations::REVISIONS_BEFORE_ROTATION;
use mssql_certs::cert_manager::Certificate;
use serde_json::json;

use super::record::record_once;
use super::{Error, acting, observe, reading};
use crate::controller::apply::patch_params;
use crate::controller::now;

/// Records each Certificate's revision, then asks cert-manager to re-issue it (`Issuing=True`,
/// reason `RotateCertificate`, as `cmctl renew` and KubeDB do). Returns the request as it is
/// stored with the revisions recorded.
pub(super) async fn request_reissue(
    client: &Client,
    ops: &MssqlServerOpsRequest,
) -> Result<MssqlServerOpsRequest, Error> {
    let namespace = ops.namespace().unwrap_or_default();
    let (_, certificates) = observe::target(client, ops).await?;
    let api: Api<Certificate> = Api::namespaced(client.clone(), &namespace);
    let mut revisions = serde_json::Map::new();
    let mut existing = Vec::new();
    for (_, certificate) in &certificates {
        let name = certificate.name_any();
        let current = api
            .get(&name)
            .await
            .map_err(reading(format!("reading certificate {name}")))?;
        let revision = current
            .status
            .as_ref()
            .and_then(|s| s.revision)
            .unwrap_or(0);
        revisions.insert(name, revision.into());
        existing.push(current);
    }
    // The revisions are written first: after a crash between the two writes, the rotation is
    // asked for again and judged against the same revisions.
    let annotated = record_once(
        client,
        ops,
        REVISIONS_BEFORE_ROTATION,
        serde_json::Value::Object(revisions).to_string(),
    )
    .await?;
    for current in existing {
        let name = current.name_any();
        let conditions = current.conditions_to_reissue(
            "RotateCertificate",
            "Rotating Certificate for KubeDB",
            now(),
        );
        let patch = json!({"status": {"conditions": conditions}});
        api.patch_status(&name, &patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(acting(format!("asking cert-manager to re-issue {name}")))?;
    }
    Ok(annotated)
}
