//! The typed set of a database's objects, and the objects an earlier shape left behind.

use super::*;
use crate::build::resources::{Inputs, Orphans, orphans, resources};

fn inputs<'a>(owner: &'a OwnerReference, start: Option<&'a Start>) -> Inputs<'a> {
    Inputs {
        owner,
        mssql_conf: "[network]\n",
        start,
        password: "generated",
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
