//! The ReconfigureTLS requests the `tls` commands create, and the checks made before creating
//! one (pure).

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use kube::api::ObjectMeta;
use mssql_api::MssqlServer;
use mssql_api::ops::{
    APPLY_ALWAYS, APPLY_IF_READY, DatabaseRef, OpsRequestSpec, OpsTlsSpec, TYPE_RECONFIGURE_TLS,
};
use mssql_api::{MssqlServerOpsRequest, duration, names};
use mssql_certs::cert_manager::{GROUP, KIND_CLUSTER_ISSUER, KIND_ISSUER};

use crate::Error;
use crate::status::{IssuerName, tls_enabled};

/// An Issuer or ClusterIssuer named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerChoice {
    pub name: String,
    pub cluster: bool,
}

impl IssuerChoice {
    pub fn kind(&self) -> &'static str {
        if self.cluster {
            KIND_CLUSTER_ISSUER
        } else {
            KIND_ISSUER
        }
    }

    /// `Issuer demo/ca` or `ClusterIssuer ca`, as users find them with kubectl.
    pub fn describe(&self, namespace: &str) -> String {
        match self.cluster {
            true => format!("ClusterIssuer {}", self.name),
            false => format!("Issuer {namespace}/{}", self.name),
        }
    }
}

/// What a `tls` command asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsOp {
    Add(IssuerChoice),
    Remove,
    Rotate,
    SetIssuer(IssuerChoice),
}

impl TlsOp {
    /// The word in generated names: `<db>-tls-<word>-<random>`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Add(_) => "add",
            Self::Remove => "remove",
            Self::Rotate => "rotate",
            Self::SetIssuer(_) => "set-issuer",
        }
    }

    pub fn issuer(&self) -> Option<&IssuerChoice> {
        match self {
            Self::Add(issuer) | Self::SetIssuer(issuer) => Some(issuer),
            Self::Remove | Self::Rotate => None,
        }
    }
}

/// Options every `tls` request takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// Exact name; `None`: the API server appends 5 random characters to `<db>-tls-<op>-`.
    pub name: Option<String>,
    pub timeout: Option<String>,
    pub apply: Option<String>,
}

/// The request, shaped like KubeDB's `msops-*.yaml` examples.
pub fn build(
    op: &TlsOp,
    namespace: &str,
    db: &str,
    options: &RequestOptions,
) -> Result<MssqlServerOpsRequest, Error> {
    if let Some(timeout) = &options.timeout
        && duration::parse(timeout).is_none()
    {
        return Err(Error::Refused(format!(
            "--timeout {timeout:?} is not a duration: use Go's form, e.g. 90s, 5m or 1h30m"
        )));
    }
    if let Some(apply) = &options.apply
        && ![APPLY_IF_READY, APPLY_ALWAYS].contains(&apply.as_str())
    {
        return Err(Error::Refused(format!(
            "--apply {apply:?} is not known: use {APPLY_IF_READY} (wait until the database is Ready) or {APPLY_ALWAYS}"
        )));
    }
    let issuer_ref = op.issuer().map(|issuer| TypedLocalObjectReference {
        api_group: Some(GROUP.to_owned()),
        kind: issuer.kind().to_owned(),
        name: issuer.name.clone(),
    });
    let tls = OpsTlsSpec {
        issuer_ref,
        client_tls: matches!(op, TlsOp::Add(_)).then_some(true),
        rotate_certificates: (*op == TlsOp::Rotate).then_some(true),
        remove: (*op == TlsOp::Remove).then_some(true),
        certificates: None,
    };
    let generate_name = options.name.is_none().then(|| {
        // `<db>-tls-<op>-` in 58 characters: room for the API server's 5 random ones within 63.
        let suffix = format!("tls-{}", op.word());
        let room = 57usize.saturating_sub(suffix.len() + 1);
        let head = db.get(..room.min(db.len())).unwrap_or(db);
        format!("{}-", names::with_suffix(head, &suffix))
    });
    Ok(MssqlServerOpsRequest {
        metadata: ObjectMeta {
            name: options.name.clone(),
            generate_name,
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: OpsRequestSpec {
            type_: TYPE_RECONFIGURE_TLS.to_owned(),
            database_ref: DatabaseRef {
                name: db.to_owned(),
            },
            tls: Some(tls),
            timeout: options.timeout.clone(),
            apply: Some(
                options
                    .apply
                    .clone()
                    .unwrap_or_else(|| APPLY_IF_READY.to_owned()),
            ),
            max_retries: Some(1),
            ..OpsRequestSpec::default()
        },
        status: None,
    })
}

/// What the cluster says about the issuer a request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuerState {
    Missing,
    /// `Ready` is not `True`; the message is cert-manager's.
    NotReady(String),
    Ready,
}

pub fn database_not_found(namespace: &str, name: &str) -> Error {
    Error::NotFound(format!(
        "MSSQLServer {namespace}/{name} not found: check the name and the namespace (kubectl get mssqlservers -n {namespace})"
    ))
}

/// Refuses requests that cannot do what they say; returns warnings for ones that may not.
pub fn preflight(
    op: &TlsOp,
    namespace: &str,
    db_name: &str,
    db: Option<&MssqlServer>,
    issuer: Option<&IssuerState>,
) -> Result<Vec<String>, Error> {
    let Some(db) = db else {
        return Err(database_not_found(namespace, db_name));
    };
    let mut warnings = Vec::new();
    if let (Some(choice), Some(state)) = (op.issuer(), issuer) {
        let what = choice.describe(namespace);
        match state {
            IssuerState::Missing => {
                let hint = match choice.cluster {
                    true => format!(
                        "create it first, or drop --cluster-issuer if {} is an Issuer in namespace {namespace}",
                        choice.name
                    ),
                    false => format!(
                        "create it first, or add --cluster-issuer if {} is a ClusterIssuer",
                        choice.name
                    ),
                };
                return Err(Error::NotFound(format!("{what} not found: {hint}")));
            }
            IssuerState::NotReady(message) => warnings.push(format!(
                "{what} is not Ready ({message}): cert-manager may not issue the certificates, and the request would then fail after its timeout"
            )),
            IssuerState::Ready => {}
        }
    }
    let enabled = tls_enabled(db);
    let current = db
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.issuer_ref.as_ref())
        .map(|i| IssuerName {
            kind: i.kind.clone(),
            name: i.name.clone(),
        });
    let refuse = |text: &str| {
        Err(Error::Refused(format!(
            "MSSQLServer {namespace}/{db_name} {text}"
        )))
    };
    match op {
        TlsOp::Add(_) if enabled => refuse(
            "already has TLS (spec.tls.clientTLS is true): use `tls set-issuer` to change its issuer or `tls rotate` to renew its certificates",
        ),
        TlsOp::Remove if !enabled => refuse(&format!(
            "has no TLS to remove (spec.tls.clientTLS is not true): `kubectl mssql tls status {db_name} -n {namespace}` shows its certificates"
        )),
        TlsOp::SetIssuer(choice)
            if current
                .as_ref()
                .is_some_and(|c| c.kind == choice.kind() && c.name == choice.name) =>
        {
            refuse(&format!(
                "already uses {}/{}: nothing to change; `tls rotate` re-issues its certificates",
                choice.kind(),
                choice.name
            ))
        }
        _ => Ok(warnings),
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};

    use super::*;

    const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/kubedb-docs");

    fn issuer(name: &str, cluster: bool) -> IssuerChoice {
        IssuerChoice {
            name: name.to_owned(),
            cluster,
        }
    }

    fn example(name: &str) -> Value {
        let text = std::fs::read_to_string(format!("{EXAMPLES}/{name}.yaml")).unwrap();
        serde_saphyr::from_str(&text).unwrap()
    }

    fn spec_of(op: &TlsOp, options: &RequestOptions) -> Value {
        let request = build(op, "demo", "ms-standalone", options).unwrap();
        serde_json::to_value(&request).unwrap()["spec"].clone()
    }

    #[test]
    fn requests_have_the_shapes_of_kubedbs_examples() {
        let five = RequestOptions {
            timeout: Some("5m".to_owned()),
            ..RequestOptions::default()
        };
        let mut rotate = example("msops-rotate")["spec"].clone();
        rotate["maxRetries"] = json!(1);
        assert_eq!(spec_of(&TlsOp::Rotate, &five), rotate);

        let mut remove = example("msops-remove")["spec"].clone();
        remove["apply"] = json!("IfReady");
        remove["maxRetries"] = json!(1);
        assert_eq!(spec_of(&TlsOp::Remove, &RequestOptions::default()), remove);

        let mut change = example("msops-change-issuer")["spec"].clone();
        change["apply"] = json!("IfReady");
        change["maxRetries"] = json!(1);
        let op = TlsOp::SetIssuer(issuer("mssqlserver-new-ca-issuer", false));
        assert_eq!(spec_of(&op, &RequestOptions::default()), change);

        // The add example also overrides the client subject; the plugin keeps KubeDB's default.
        let mut add = example("msops-add-tls")["spec"].clone();
        add["tls"].as_object_mut().unwrap().remove("certificates");
        add["maxRetries"] = json!(1);
        let op = TlsOp::Add(issuer("mssqlserver-ca-issuer", false));
        assert_eq!(spec_of(&op, &five), add);

        let op = TlsOp::Add(issuer("corp", true));
        let always = RequestOptions {
            apply: Some("Always".to_owned()),
            ..RequestOptions::default()
        };
        let spec = spec_of(&op, &always);
        assert_eq!(
            spec["tls"]["issuerRef"],
            json!({"apiGroup": "cert-manager.io", "kind": "ClusterIssuer", "name": "corp"})
        );
        assert_eq!(spec["apply"], "Always");
    }

    #[test]
    fn names_are_given_or_generated_by_the_api_server() {
        let named = RequestOptions {
            name: Some("mine".to_owned()),
            ..RequestOptions::default()
        };
        let request = build(&TlsOp::Rotate, "demo", "db", &named).unwrap();
        assert_eq!(
            (
                request.metadata.name.as_deref(),
                request.metadata.generate_name.as_deref(),
                request.metadata.namespace.as_deref()
            ),
            (Some("mine"), None, Some("demo"))
        );
        let op = TlsOp::SetIssuer(issuer("x", false));
        let request = build(&op, "demo", "db", &RequestOptions::default()).unwrap();
        assert_eq!(request.metadata.name, None);
        assert_eq!(
            request.metadata.generate_name.as_deref(),
            Some("db-tls-set-issuer-")
        );
        let long = "d".repeat(63);
        let request = build(&TlsOp::Remove, "demo", &long, &RequestOptions::default()).unwrap();
        let prefix = request.metadata.generate_name.unwrap();
        assert!(prefix.len() <= 58, "{prefix}");
        assert!(prefix.ends_with("-tls-remove-"), "{prefix}");
    }

    #[test]
    fn bad_options_are_refused_with_the_fix() {
        let bad = |options: RequestOptions| {
            build(&TlsOp::Rotate, "demo", "db", &options)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(RequestOptions {
                timeout: Some("5 minutes".to_owned()),
                ..RequestOptions::default()
            }),
            "--timeout \"5 minutes\" is not a duration: use Go's form, e.g. 90s, 5m or 1h30m"
        );
        assert!(
            bad(RequestOptions {
                apply: Some("Now".to_owned()),
                ..RequestOptions::default()
            })
            .contains("use IfReady")
        );
    }

    fn database(client_tls: Option<bool>) -> MssqlServer {
        let mut tls =
            json!({"issuerRef": {"name": "ca", "kind": "Issuer", "apiGroup": "cert-manager.io"}});
        if let Some(on) = client_tls {
            tls["clientTLS"] = json!(on);
        }
        serde_json::from_value(json!({
            "apiVersion": "kubedb.com/v1alpha2", "kind": "MSSQLServer",
            "metadata": {"name": "db", "namespace": "demo"},
            "spec": {"version": "2022-cu16", "tls": tls}
        }))
        .unwrap()
    }

    fn check(
        op: &TlsOp,
        db: Option<&MssqlServer>,
        state: Option<&IssuerState>,
    ) -> Result<Vec<String>, String> {
        preflight(op, "demo", "db", db, state).map_err(|e| e.to_string())
    }

    #[test]
    fn preflight_names_the_missing_object_and_the_fix() {
        assert_eq!(
            check(&TlsOp::Rotate, None, None).unwrap_err(),
            "MSSQLServer demo/db not found: check the name and the namespace (kubectl get mssqlservers -n demo)"
        );
        let off = database(Some(false));
        assert_eq!(
            check(
                &TlsOp::Add(issuer("nope", false)),
                Some(&off),
                Some(&IssuerState::Missing)
            )
            .unwrap_err(),
            "Issuer demo/nope not found: create it first, or add --cluster-issuer if nope is a ClusterIssuer"
        );
        assert_eq!(
            check(
                &TlsOp::SetIssuer(issuer("nope", true)),
                Some(&off),
                Some(&IssuerState::Missing)
            )
            .unwrap_err(),
            "ClusterIssuer nope not found: create it first, or drop --cluster-issuer if nope is an Issuer in namespace demo"
        );
    }

    #[test]
    fn preflight_refuses_what_would_change_nothing() {
        let on = database(Some(true));
        let off = database(None);
        let ready = Some(&IssuerState::Ready);
        let add = TlsOp::Add(issuer("ca", false));
        assert!(
            check(&add, Some(&on), ready)
                .unwrap_err()
                .starts_with("MSSQLServer demo/db already has TLS (spec.tls.clientTLS is true)")
        );
        assert_eq!(check(&add, Some(&off), ready), Ok(vec![]));
        assert!(
            check(&TlsOp::Remove, Some(&off), None)
                .unwrap_err()
                .starts_with("MSSQLServer demo/db has no TLS to remove")
        );
        assert_eq!(check(&TlsOp::Remove, Some(&on), None), Ok(vec![]));
        assert_eq!(check(&TlsOp::Rotate, Some(&off), None), Ok(vec![]));
        assert_eq!(
            check(&TlsOp::SetIssuer(issuer("ca", false)), Some(&on), ready).unwrap_err(),
            "MSSQLServer demo/db already uses Issuer/ca: nothing to change; `tls rotate` re-issues its certificates"
        );
        // The same name as a ClusterIssuer is a change.
        assert_eq!(
            check(&TlsOp::SetIssuer(issuer("ca", true)), Some(&on), ready),
            Ok(vec![])
        );
    }

    #[test]
    fn an_issuer_that_is_not_ready_is_a_warning() {
        let off = database(Some(false));
        let state = IssuerState::NotReady("secret \"ca\" not found".to_owned());
        let warnings = check(&TlsOp::Add(issuer("ca", false)), Some(&off), Some(&state)).unwrap();
        assert_eq!(
            warnings,
            [
                "Issuer demo/ca is not Ready (secret \"ca\" not found): cert-manager may not issue the certificates, and the request would then fail after its timeout"
            ]
        );
    }
}
