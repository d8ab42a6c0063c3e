//! Asking cert-manager to re-issue the target Certificates (a rotation), after recording their
//! revisions so that a re-issued certificate is told apart.

use kube::api::Patch;
use kube::{Api, ResourceExt};
use mssql_api::MssqlServerOpsRequest;
use mssql_api::annotations::REVISIONS_BEFORE_ROTATION;
use mssql_certs::cert_manager::Certificate;
use serde_json::json;

use super::record::record_once;
use super::{Context, Error, acting, observe, reading};
use crate::controller::apply::patch_params;
use crate::controller::now;

/// Records each Certificate's revision, then asks cert-manager to re-issue it (`Issuing=True`,
/// reason `RotateCertificate`, as `cmctl renew` and KubeDB do). Returns the request as it is
/// stored with the revisions recorded.
pub(super) async fn request_reissue(
    context: &Context,
    ops: &MssqlServerOpsRequest,
) -> Result<MssqlServerOpsRequest, Error> {
    let client = context.client();
    let namespace = ops.namespace().unwrap_or_default();
    let (_, certificates) = observe::target(context, ops).await?;
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

#[cfg(test)]
mod tests {
    use mssql_api::OpsRequestSpec;
    use serde_json::Value;

    use super::*;
    use crate::controller::mock;
    use crate::fixtures::{self, DATABASE, NAMESPACE, database};

    fn certificate(name: &str, revision: i64) -> Value {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
               "metadata": {"name": name, "namespace": NAMESPACE},
               "spec": {"secretName": name, "issuerRef": {"name": "mssqlserver-ca-issuer"}},
               "status": {"revision": revision, "conditions": [
                   {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok"}]}})
    }

    #[tokio::test]
    async fn the_revisions_are_recorded_before_cert_manager_is_asked_to_reissue() {
        let (client, calls) = mock::client(|call| {
            if let Some(answer) = fixtures::references(call) {
                return answer;
            }
            let path = call.path.split('?').next().unwrap_or_default();
            let name = path.rsplit('/').next().unwrap_or_default();
            match call.method.as_str() {
                "GET" if path.ends_with(&format!("/mssqlservers/{DATABASE}")) => {
                    (200, serde_json::to_value(database()).unwrap())
                }
                "GET" => (200, certificate(name, 3)),
                // A status patch answers with the Certificate.
                "PATCH" => (200, certificate(path.split('/').nth_back(1).unwrap(), 3)),
                _ => (200, call.body.clone()),
            }
        });
        let mut ops = MssqlServerOpsRequest::new("rotate", OpsRequestSpec::default());
        ops.metadata.namespace = Some(NAMESPACE.to_owned());
        ops.spec.database_ref.name = DATABASE.to_owned();
        let stored = request_reissue(&fixtures::ops_context(client), &ops)
            .await
            .unwrap();

        let certificates = "/apis/cert-manager.io/v1/namespaces/demo/certificates";
        let changes: Vec<String> = calls
            .lines()
            .into_iter()
            .filter(|line| !line.starts_with("GET"))
            .collect();
        // After a crash between the two, the rotation is asked for again and judged against the
        // same recorded revisions; the other way round, a re-issue could be counted as the old one.
        assert_eq!(
            changes,
            [
                "PUT /apis/ops.kubedb.com/v1alpha1/namespaces/demo/mssqlserveropsrequests/rotate"
                    .to_owned(),
                format!("PATCH {certificates}/mssql-standalone-tls-server-cert/status"),
                format!("PATCH {certificates}/mssql-standalone-tls-client-cert/status"),
            ]
        );
        let recorded: Value =
            serde_json::from_str(&stored.annotations()[REVISIONS_BEFORE_ROTATION]).unwrap();
        assert_eq!(
            recorded,
            json!({"mssql-standalone-tls-server-cert": 3, "mssql-standalone-tls-client-cert": 3})
        );
        let patch = calls.all().last().unwrap().body.clone();
        let issuing = patch["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Issuing")
            .cloned()
            .unwrap();
        assert_eq!(issuing["status"], "True");
        assert_eq!(issuing["reason"], "RotateCertificate");
    }
}
