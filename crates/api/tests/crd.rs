//! The CRDs as shipped: identity (names, scope, printer columns), structural schema, and the CEL
//! rules the API server runs, evaluated here with a client-side CEL engine on the real schema.

mod common;

use common::{example_text, yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::Validator;
use mssql_api::crd::crds;
use serde_json::{Value, json};

fn crd(name: &str) -> CustomResourceDefinition {
    crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CRD {name}"))
}

fn schema(name: &str) -> Value {
    let crd = crd(name);
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// The messages of the CEL rules that `object` (and `old`, for an update) breaks.
fn cel_errors(crd: &str, object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(crd), object, old) {
        Ok(()) => vec![],
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

const SERVERS: &str = "mssqlservers.kubedb.com";
const OPS: &str = "mssqlserveropsrequests.ops.kubedb.com";

#[test]
fn names_scope_and_columns_match_kubedb() {
    let server = crd(SERVERS);
    let names = &server.spec.names;
    assert_eq!(server.spec.group, "kubedb.com");
    assert_eq!(server.spec.scope, "Namespaced");
    assert_eq!(names.kind, "MSSQLServer");
    assert_eq!(names.short_names, Some(vec!["ms".to_owned()]));
    assert_eq!(
        names.categories,
        Some(vec![
            "datastore".into(),
            "kubedb".into(),
            "appscode".into(),
            "all".into()
        ])
    );
    let version = &server.spec.versions[0];
    assert_eq!(version.name, "v1alpha2");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Version", "Status", "Age"]);

    let ops = crd(OPS);
    assert_eq!(ops.spec.names.short_names, Some(vec!["msops".to_owned()]));
    let columns: Vec<_> = ops.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Type", "Status", "Age"]);

    let catalog = crd("mssqlserverversions.catalog.kubedb.com");
    assert_eq!(catalog.spec.scope, "Cluster");
    assert_eq!(
        catalog.spec.names.short_names,
        Some(vec!["msversion".to_owned()])
    );
}

#[test]
fn required_fields_match_kubedb() {
    let server = schema(SERVERS);
    assert_eq!(
        server.pointer("/properties/spec/required"),
        Some(&json!(["tls", "version"]))
    );
    let ops = schema(OPS);
    assert_eq!(
        ops.pointer("/properties/spec/required"),
        Some(&json!(["databaseRef", "type"]))
    );
    assert_eq!(
        ops.pointer("/properties/spec/properties/type/enum")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        9
    );
    assert_eq!(
        server.pointer("/properties/metadata/properties/name/maxLength"),
        Some(&json!(63))
    );
}

/// Kubernetes rejects a CRD whose schema is not structural: every node has a type (or preserves
/// unknown fields), no `$ref`, no combinators, never `properties` beside `additionalProperties`.
#[test]
fn schemas_are_structural() {
    fn walk(node: &Value, path: &str, problems: &mut Vec<String>) {
        let Some(map) = node.as_object() else { return };
        for forbidden in ["$ref", "oneOf", "anyOf", "allOf", "not"] {
            // int-or-string is the one combinator Kubernetes allows.
            if map.contains_key(forbidden) && !map.contains_key("x-kubernetes-int-or-string") {
                problems.push(format!("{path}: {forbidden}"));
            }
        }
        if map.contains_key("properties") && map.contains_key("additionalProperties") {
            problems.push(format!("{path}: properties beside additionalProperties"));
        }
        let typed = map.contains_key("type")
            || map.contains_key("x-kubernetes-int-or-string")
            || map.contains_key("x-kubernetes-preserve-unknown-fields");
        if !typed {
            problems.push(format!("{path}: no type"));
        }
        for (key, child) in map {
            match key.as_str() {
                "properties" => {
                    for (name, property) in child.as_object().into_iter().flatten() {
                        walk(property, &format!("{path}.{name}"), problems);
                    }
                }
                "items" | "additionalProperties" if child.is_object() => {
                    walk(child, &format!("{path}[]"), problems)
                }
                _ => {}
            }
        }
    }
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap();
        let mut problems = vec![];
        walk(&schema(&name), &name, &mut problems);
        assert_eq!(problems, Vec::<String>::new());
    }
}

#[test]
fn crds_fit_a_client_side_apply() {
    // `kubectl apply` (client side) stores the object in a 256 KiB annotation.
    for crd in crds() {
        let size = serde_json::to_string(&crd).unwrap().len();
        assert!(size < 256 * 1024, "{:?} is {size} bytes", crd.metadata.name);
    }
}

fn doc(name: &str) -> Value {
    yaml(&example_text(name))
}

#[test]
fn kubedb_examples_pass_the_cel_rules() {
    for name in common::DATABASE_EXAMPLES {
        assert_eq!(
            cel_errors(SERVERS, &doc(name), None),
            Vec::<String>::new(),
            "{name}"
        );
    }
    for name in [
        "msops-add-tls",
        "msops-rotate",
        "msops-change-issuer",
        "msops-remove",
    ] {
        assert_eq!(
            cel_errors(OPS, &doc(name), None),
            Vec::<String>::new(),
            "{name}"
        );
    }
}

#[test]
fn api_server_rejects_bad_databases_with_kubedb_messages() {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut db = doc("ms-standalone");
        edit(&mut db);
        cel_errors(SERVERS, &db, None)
    };
    assert_eq!(
        with(&|db| db["spec"]["replicas"] = json!(3)),
        ["number of replicas for standalone must be one "]
    );
    assert_eq!(
        with(&|db| db["spec"]["topology"] = json!({})),
        [".spec.topology.mode can't be empty in cluster mode"]
    );
    assert_eq!(
        with(&|db| {
            db["spec"]["topology"] = json!({"mode": "AvailabilityGroup"});
            db["spec"]["replicas"] = json!(0);
        }),
        ["number of replicas can not be nil and can not be less than or equal to 0"]
    );
    assert_eq!(
        with(&|db| db["spec"]["tls"] = json!({"clientTLS": true})),
        ["spec.tls.issuerRef' is missing"]
    );
}

#[test]
fn api_server_rejects_bad_ops_requests_with_kubedb_messages() {
    let with = |tls: Option<Value>| {
        let mut ops = doc("msops-rotate");
        match tls {
            Some(tls) => ops["spec"]["tls"] = tls,
            None => drop(ops["spec"].as_object_mut().unwrap().remove("tls")),
        }
        cel_errors(OPS, &ops, None)
    };
    assert_eq!(
        with(None),
        ["`spec.tls` nil not supported in ReconfigureTLS type"]
    );
    assert_eq!(
        with(Some(json!({}))),
        ["no reconfiguration is provided in TLS Spec"]
    );
    assert_eq!(
        with(Some(json!({"clientTLS": true}))),
        ["no reconfiguration is provided in TLS Spec"]
    );
    assert_eq!(
        with(Some(json!({"rotateCertificates": true, "remove": true}))),
        [
            "more than 1 field have assigned to spec.reconfigureTLS but at a time one is allowed to run one operation"
        ]
    );
    assert_eq!(with(Some(json!({"remove": true}))), Vec::<String>::new());

    let mut restart = doc("msops-remove");
    restart["spec"] = json!({"type": "Restart", "databaseRef": {"name": "ms-standalone"}});
    assert_eq!(
        cel_errors(OPS, &restart, None),
        Vec::<String>::new(),
        "Restart needs no tls"
    );
}

#[test]
fn api_server_keeps_ops_specs_immutable() {
    let old = doc("msops-rotate");
    let mut new = old.clone();
    new["spec"]["timeout"] = json!("10m");
    assert_eq!(
        cel_errors(OPS, &new, Some(&old)),
        [mssql_api::ops::MSG_SPEC_IMMUTABLE]
    );
    let mut status_only = old.clone();
    status_only["status"] = json!({"phase": "Progressing"});
    assert_eq!(
        cel_errors(OPS, &status_only, Some(&old)),
        Vec::<String>::new()
    );
}
