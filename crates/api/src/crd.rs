//! The CustomResourceDefinitions of the three KubeDB kinds, as installed by `mssql-operator crd`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::{MssqlServer, MssqlServerOpsRequest, MssqlServerVersion};

/// Subtrees of the MSSQLServer schema that embed Kubernetes core types. Their long upstream
/// descriptions are dropped: they would double the CRD's size and push it past the 256 KiB a
/// client-side `kubectl apply` can store, and `kubectl explain pod.spec` documents them anyway.
const CORE_TYPE_SUBTREES: [&str; 5] = [
    "/properties/spec/properties/podTemplate/properties/spec/properties",
    "/properties/spec/properties/storage",
    "/properties/spec/properties/serviceTemplates/items/properties/spec",
    "/properties/spec/properties/arbiter/properties",
    "/properties/spec/properties/configSecret",
];

/// KubeDB restricts database names to DNS labels: every object name derived from them must fit.
const DATABASE_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// All CRDs, in the order they can be applied.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut server = MssqlServer::crd();
    edit_schema(&mut server, |schema| {
        for path in CORE_TYPE_SUBTREES {
            if let Some(subtree) = schema.pointer_mut(path) {
                strip_descriptions(subtree);
            }
        }
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert(
                "metadata".into(),
                json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "maxLength": 63, "pattern": DATABASE_NAME_PATTERN }
                    }
                }),
            );
        }
    });
    vec![
        MssqlServerVersion::crd(),
        server,
        MssqlServerOpsRequest::crd(),
    ]
}

fn edit_schema(crd: &mut CustomResourceDefinition, edit: impl Fn(&mut Value)) {
    for version in &mut crd.spec.versions {
        let Some(validation) = version.schema.as_mut() else {
            continue;
        };
        let Some(schema) = validation.open_api_v3_schema.take() else {
            continue;
        };
        let mut value = serde_json::to_value(schema).expect("a JSON schema serializes");
        edit(&mut value);
        validation.open_api_v3_schema = Some(
            serde_json::from_value::<JSONSchemaProps>(value).expect("an edited JSON schema parses"),
        );
    }
}

fn strip_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            // A property may itself be called "description"; only drop documentation strings.
            if map.get("description").is_some_and(Value::is_string) {
                map.remove("description");
            }
            map.values_mut().for_each(strip_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}
