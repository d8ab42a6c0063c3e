//! The Services: KubeDB's names, ports and role selectors, and the user's service templates.

use super::*;

#[test]
fn services_have_kubedb_names_ports_and_role_selectors() {
    let standalone = services(&server_from(example("ms-standalone")), &owner());
    let names: Vec<_> = standalone
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["ms-standalone", "ms-standalone-pods"]);
    let primary = to_json(&standalone[0].spec);
    assert_eq!(
        primary["ports"],
        json!([{"name": "primary", "port": 1433, "targetPort": "db", "protocol": "TCP"}])
    );
    assert!(
        primary["selector"].get("kubedb.com/role").is_none(),
        "a standalone pod has no role label"
    );
    let pods = to_json(&standalone[1].spec);
    assert_eq!(
        (
            pods["clusterIP"].as_str(),
            pods["publishNotReadyAddresses"].as_bool()
        ),
        (Some("None"), Some(true))
    );

    let group = services(&server_from(example("mssql-ag-cluster")), &owner());
    let names: Vec<_> = group
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "mssql-ag-cluster",
            "mssql-ag-cluster-pods",
            "mssql-ag-cluster-secondary"
        ]
    );
    assert_eq!(
        to_json(&group[0].spec)["selector"]["kubedb.com/role"],
        "primary"
    );
    assert_eq!(
        to_json(&group[2].spec)["selector"]["kubedb.com/role"],
        "secondary"
    );
    assert_eq!(
        to_json(&group[1].spec)["ports"][1],
        json!({"name": "mirror", "port": 5022, "targetPort": "mirror", "protocol": "TCP"})
    );
}

#[test]
fn service_templates_adjust_type_annotations_and_ports() {
    let mut value = example("ms-standalone");
    value["spec"]["serviceTemplates"] = json!([{
        "alias": "primary",
        "metadata": {"annotations": {"lb": "internal"}},
        "spec": {"type": "NodePort", "ports": [{"name": "primary", "port": 11433, "nodePort": 31433}], "selector": {"x": "y"}}
    }]);
    let primary = &services(&server_from(value), &owner())[0];
    assert_eq!(
        primary.metadata.annotations.as_ref().unwrap()["lb"],
        "internal"
    );
    let spec = to_json(&primary.spec);
    assert_eq!(spec["type"], "NodePort");
    assert_eq!(
        spec["ports"],
        json!([{"name": "primary", "port": 11433, "nodePort": 31433, "targetPort": "db", "protocol": "TCP"}])
    );
    assert_eq!(
        spec["selector"],
        to_json(&labels::selector("ms-standalone")),
        "a template cannot change what is selected"
    );
}
