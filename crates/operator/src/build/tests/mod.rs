//! The builders on KubeDB's documentation examples, one file per kind of object: each test asserts
//! the fields that make the object right for the real SQL Server image and for KubeDB's users.
//! Here: what they share.

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mssql_api::validated::{Server, validated};
use mssql_api::{MssqlServer, catalog};
use serde_json::{Value, json};

use mssql_api::annotations;
use mssql_api::labels;
use mssql_api::pods::{StartedCertificate, started_with};

use super::certificates::{certificates, server_dns_names};
use super::config::mssql_conf;
use super::secrets::{check_auth_secret, config_secret, password, restart_hash};
use super::services::services;
use super::start::Start;
use super::workload::{arbiter, pod_disruption_budget, service_account, statefulset};

mod certificates;
mod pod;
mod resources;
mod secrets;
mod services;
mod workload;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/kubedb-docs");

fn server_from(value: Value) -> Server {
    let db: MssqlServer = serde_json::from_value(value).unwrap();
    let versions = catalog::default_catalog();
    validated(&db, catalog::find(&versions, &db.spec.version)).expect("example is valid")
}

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{EXAMPLES}/{name}.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "kubedb.com/v1alpha2".into(),
        kind: "MSSQLServer".into(),
        name: "ms-standalone".into(),
        uid: "0b1c".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The coordinator image the tests build with.
const IMAGE: &str = "registry.example/mssql-operator:1";

fn start(restart_hash: &str) -> Start {
    Start {
        restart_hash: restart_hash.to_owned(),
        ..Start::default()
    }
}

fn pod_spec(server: &Server) -> PodSpec {
    statefulset(server, &owner(), "cfg", &start("hash1"), IMAGE)
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
}

fn container<'a>(list: &'a [Container], name: &str) -> &'a Container {
    list.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volume<'a>(spec: &'a PodSpec, name: &str) -> &'a Volume {
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// KubeDB's availability-group example as database `ag` of `replicas` replicas.
pub(crate) fn group_server(replicas: i32) -> Server {
    let mut value = example("mssql-ag-cluster");
    value["metadata"]["name"] = json!("ag");
    value["spec"]["replicas"] = json!(replicas);
    server_from(value)
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}
