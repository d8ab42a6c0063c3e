use mssql_api::catalog;
use serde_json::{Value, json};

use super::review::{Kind, Request, Verdict};
use super::*;

fn database() -> Value {
    json!({
        "apiVersion": "kubedb.com/v1alpha2", "kind": "MSSQLServer",
        "metadata": {"name": "sales", "namespace": "shop"},
        "spec": {
            "version": "2022-cu22",
            "tls": {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "ca"}},
            "storage": {"resources": {"requests": {"storage": "1Gi"}}},
            "podTemplate": {"spec": {"containers": [{"name": "mssql", "env": [
                {"name": "ACCEPT_EULA", "value": "Y"}, {"name": "MSSQL_PID", "value": "Developer"}]}]}}
        }
    })
}

fn ops_request() -> Value {
    json!({
        "apiVersion": "ops.kubedb.com/v1alpha1", "kind": "MSSQLServerOpsRequest",
        "metadata": {"name": "rotate", "namespace": "shop"},
        "spec": {"type": "ReconfigureTLS", "databaseRef": {"name": "sales"}, "tls": {"rotateCertificates": true}}
    })
}

fn request(kind: &str, operation: &str, object: Option<Value>, old: Option<Value>) -> Request {
    let group = if kind == "MSSQLServer" {
        "kubedb.com"
    } else {
        "ops.kubedb.com"
    };
    Request {
        uid: "u".into(),
        kind: Kind {
            group: group.into(),
            kind: kind.into(),
        },
        operation: operation.into(),
        namespace: Some("shop".into()),
        object,
        old_object: old,
    }
}

/// Judges a database as the webhook does, with the built-in catalog standing in for the cluster's.
fn judge(object: Value, operation: &str, old: Option<Value>) -> Verdict {
    match first_step(&request("MSSQLServer", operation, Some(object), old)) {
        Step::Judged(verdict) => verdict,
        Step::Database(db) => {
            let versions = catalog::default_catalog();
            let version = catalog::find(&versions, &db.spec.version).cloned();
            judge_database(*db, version.as_ref())
        }
        Step::OpsRequest(_) => panic!("a database is not an ops request"),
    }
}

#[test]
fn a_valid_database_is_allowed_and_an_invalid_one_refused_with_checks_words() {
    assert_eq!(judge(database(), "CREATE", None), Verdict::Allowed);
    let mut bad = database();
    bad["spec"]["version"] = json!("2019-cu1");
    bad["spec"]["podTemplate"]["spec"]["hostNetwork"] = json!("yes");
    assert_eq!(
        judge(bad, "CREATE", None),
        Verdict::Invalid(
            "spec.version: mssqlserverversions.catalog.kubedb.com \"2019-cu1\" not found; \
             spec.podTemplate.spec.hostNetwork: invalid type: string \"yes\", expected a boolean; see `kubectl explain pod.spec.hostNetwork`"
                .into()
        )
    );
}

#[test]
fn a_wrong_typed_object_names_the_field() {
    let mut bad = database();
    bad["spec"]["replicas"] = json!("three");
    let Verdict::Invalid(message) = judge(bad, "CREATE", None) else {
        panic!()
    };
    assert!(
        message.starts_with("spec.replicas: invalid type: string \"three\""),
        "{message}"
    );
}

#[test]
fn an_update_is_judged_only_when_it_changes_what_validation_reads() {
    let mut invalid = database();
    invalid["spec"]["version"] = json!("2019-cu1");
    // The operator adding its finalizer to a database admitted before a rule existed.
    let mut with_finalizer = invalid.clone();
    with_finalizer["metadata"]["finalizers"] = json!(["kubedb.com"]);
    assert_eq!(
        judge(with_finalizer, "UPDATE", Some(invalid.clone())),
        Verdict::Allowed
    );
    // A change of the spec, or of the annotations (the renewal policy), is judged.
    let mut edited = invalid.clone();
    edited["spec"]["halted"] = json!(true);
    assert!(matches!(
        judge(edited, "UPDATE", Some(invalid.clone())),
        Verdict::Invalid(_)
    ));
    let mut annotated = database();
    annotated["metadata"]["annotations"] =
        json!({"mssql-operator.dev/maintenance-window": "Sat 22:00-22:00"});
    let Verdict::Invalid(message) = judge(annotated, "UPDATE", Some(database())) else {
        panic!()
    };
    assert!(message.contains("a window of zero length"), "{message}");
    // Nothing holds up a database on its way out.
    let mut leaving = invalid.clone();
    leaving["metadata"]["deletionTimestamp"] = json!("2026-12-02T00:00:00Z");
    leaving["spec"]["halted"] = json!(true);
    assert_eq!(judge(leaving, "UPDATE", Some(invalid)), Verdict::Allowed);
}

#[test]
fn deleting_a_do_not_terminate_database_is_forbidden() {
    let request = |policy: &str| {
        let mut db = database();
        db["spec"]["deletionPolicy"] = json!(policy);
        first_step(&super::review::Request {
            object: None,
            ..request("MSSQLServer", "DELETE", None, Some(db))
        })
    };
    assert!(matches!(request("Delete"), Step::Judged(Verdict::Allowed)));
    let Step::Judged(Verdict::Forbidden(message)) = request("DoNotTerminate") else {
        panic!()
    };
    assert_eq!(
        message,
        "spec.terminationPolicy: Can not delete as terminationPolicy is set to \"DoNotTerminate\""
    );
}

#[test]
fn an_ops_request_is_judged_with_its_database_and_never_changed() {
    let Step::OpsRequest(ops) = first_step(&request(
        "MSSQLServerOpsRequest",
        "CREATE",
        Some(ops_request()),
        None,
    )) else {
        panic!()
    };
    assert_eq!(judge_ops_request(&ops, true), Verdict::Allowed);
    assert_eq!(
        judge_ops_request(&ops, false),
        Verdict::Invalid(
            "spec.databaseRef: spec.databaseRef shop/sales, is invalid or not found".into()
        )
    );
    let mut slow = ops_request();
    slow["spec"]["timeout"] = json!("banana");
    let Step::OpsRequest(slow) = first_step(&request(
        "MSSQLServerOpsRequest",
        "CREATE",
        Some(slow),
        None,
    )) else {
        panic!()
    };
    assert_eq!(
        judge_ops_request(&slow, true),
        Verdict::Invalid(
            "spec.timeout: timeout \"banana\" is not a duration; write it like 5m, 90s or 1h30m"
                .into()
        )
    );
    let mut changed = ops_request();
    changed["spec"]["tls"] = json!({"remove": true});
    let step = first_step(&request(
        "MSSQLServerOpsRequest",
        "UPDATE",
        Some(changed),
        Some(ops_request()),
    ));
    assert!(
        matches!(step, Step::Judged(Verdict::Invalid(_))),
        "{step:?}"
    );
    let mut labelled = ops_request();
    labelled["metadata"]["labels"] = json!({"a": "b"});
    let step = first_step(&request(
        "MSSQLServerOpsRequest",
        "UPDATE",
        Some(labelled),
        Some(ops_request()),
    ));
    assert!(matches!(step, Step::Judged(Verdict::Allowed)), "{step:?}");
}

#[test]
fn the_review_answers_the_request_uid() {
    assert_eq!(
        Verdict::Invalid("spec.x: bad".into()).into_review("abc"),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": "abc", "allowed": false,
            "status": {"status": "Failure", "code": 422, "reason": "Invalid", "message": "spec.x: bad"}}})
    );
    assert_eq!(
        Verdict::Allowed.into_review("abc")["response"],
        json!({"uid": "abc", "allowed": true})
    );
}

#[test]
fn other_kinds_are_not_ours() {
    let mut other = request("MSSQLServer", "CREATE", Some(json!({})), None);
    other.kind.group = "example.com".into();
    assert!(matches!(first_step(&other), Step::Judged(Verdict::Allowed)));
}
