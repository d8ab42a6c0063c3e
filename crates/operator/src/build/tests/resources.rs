//! The typed set of a database's objects, and the objects an earlier shape left behind.

use super::*;
use crate::build::resources::{Inputs, Orphans, orphans, resources};

fn inputs<'a>(owner: &'a OwnerReference, start: Option<&'a Start>) -> Inputs<'a> {
    Inputs {
        owner,
        mssql_conf: "[network]\n",
        start,
        passwords: ["generated", "login", "master"],
        coordinator_image: "registry.example/mssql-operator:1",
    }
}

#[test]
fn the_workload_waits_for_the_start_up_material_and_the_rest_does_not() {
    let server = server_from(example("ms-standalone"));
    let owner = owner();
    let waiting = resources(&server, &inputs(&owner, None));
    assert!(waiting.workload.is_none());
    assert!(
        waiting.auth_secret.is_some(),
        "no authSecret named: one is generated"
    );
    assert_eq!(waiting.services.len(), 2, "primary and governing");
    assert_eq!(
        waiting.config_secret.metadata.name.as_deref(),
        Some("ms-standalone-config")
    );

    let start = start("h");
    let ready = resources(&server, &inputs(&owner, Some(&start)));
    let workload = ready
        .workload
        .expect("the pods' StatefulSet once TLS is issued");
    assert_eq!(
        workload.statefulset.metadata.name.as_deref(),
        Some("ms-standalone")
    );
    assert!(workload.arbiter.is_none());
}

#[test]
fn an_even_group_has_an_arbiter_and_a_shrunk_one_leaves_it_to_delete() {
    let owner = owner();
    let start = start("h");
    let mut value = example("mssql-ag-cluster");
    value["spec"]["replicas"] = json!(2);
    let even = server_from(value);
    let set = resources(&even, &inputs(&owner, Some(&start)));
    assert_eq!(set.services.len(), 3, "primary, governing and secondary");
    assert!(set.workload.unwrap().arbiter.is_some());
    assert_eq!(orphans(&even), Orphans::default(), "nothing to delete");

    let odd = server_from(example("mssql-ag-cluster"));
    assert_eq!(
        orphans(&odd),
        Orphans {
            statefulsets: vec!["mssql-ag-cluster-arbiter".to_owned()],
            services: vec![],
        }
    );
    let standalone = server_from(example("ms-standalone"));
    assert_eq!(
        orphans(&standalone),
        Orphans {
            statefulsets: vec!["ms-standalone-arbiter".to_owned()],
            services: vec!["ms-standalone-secondary".to_owned()],
        }
    );
}

#[test]
fn a_group_gets_its_coordinators_lease_secrets_and_a_role_by_name() {
    let server = server_from(example("mssql-ag-cluster"));
    let owner = owner();
    let set = resources(&server, &inputs(&owner, None));
    let coordination = set.coordination.expect("a group is coordinated");
    let secrets: Vec<(String, Value)> = coordination
        .secrets
        .iter()
        .map(|s| (s.metadata.name.clone().unwrap(), to_json(&s.data)))
        .collect();
    assert_eq!(
        secrets,
        [
            (
                "mssql-ag-cluster-dbm-login".to_owned(),
                json!({"password": "bG9naW4="}) // "login"
            ),
            (
                "mssql-ag-cluster-master-key".to_owned(),
                json!({"password": "bWFzdGVy"}) // "master"
            ),
        ]
    );
    assert_eq!(
        coordination.lease.metadata.name.as_deref(),
        Some("mssql-ag-cluster-coordinator")
    );
    assert!(
        coordination.lease.spec.is_none(),
        "the coordinators fill it"
    );
    assert_eq!(
        to_json(&coordination.role.rules),
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": ["get", "update"], "resourceNames": ["mssql-ag-cluster-coordinator"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"],
             "resourceNames": ["mssql-ag-cluster-0", "mssql-ag-cluster-1", "mssql-ag-cluster-2"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
             "resourceNames": ["mssql-ag-cluster-endpoint-cert"]},
            {"apiGroups": ["kubedb.com"], "resources": ["mssqlservers"], "verbs": ["get"],
             "resourceNames": ["mssql-ag-cluster"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ])
    );
    assert_eq!(
        to_json(&coordination.role_binding.subjects),
        json!([{"kind": "ServiceAccount", "name": "mssql-ag-cluster", "namespace": "demo"}])
    );

    // Secrets the user names are read, never written; a standalone server has no coordinator.
    let mut value = example("mssql-ag-cluster");
    value["spec"]["topology"]["availabilityGroup"]["loginSecretName"] = json!("my-login");
    let set = resources(&server_from(value), &inputs(&owner, None));
    let names: Vec<_> = set
        .coordination
        .unwrap()
        .secrets
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["mssql-ag-cluster-master-key"]);
    let standalone = resources(
        &server_from(example("ms-standalone")),
        &inputs(&owner, None),
    );
    assert!(standalone.coordination.is_none());
}
