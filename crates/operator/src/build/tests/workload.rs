//! The disruption budget, the ServiceAccount and the arbiter's StatefulSet.

use super::*;

#[test]
fn pdb_and_service_account() {
    let server = server_from(example("mssql-ag-cluster"));
    let pdb = to_json(&pod_disruption_budget(&server, &owner()).spec);
    assert_eq!(pdb["maxUnavailable"], 1);
    assert_eq!(
        pdb["selector"]["matchLabels"],
        to_json(&labels::selector("mssql-ag-cluster"))
    );
    let account = service_account(&server, &owner()).unwrap();
    assert_eq!(account.metadata.name.as_deref(), Some("mssql-ag-cluster"));
    let mut value = example("ms-standalone");
    value["spec"]["podTemplate"]["spec"]["serviceAccountName"] = json!("mine");
    let server = server_from(value);
    assert!(
        service_account(&server, &owner()).is_none(),
        "the user's own account is not created"
    );
    assert_eq!(
        pod_spec(&server).service_account_name.as_deref(),
        Some("mine")
    );
}

#[test]
fn scaling_a_group_changes_its_counts_not_its_pods() {
    let build = |replicas| {
        let server = group_server(replicas);
        let sts = statefulset(&server, &owner(), "cfg", &start("h"), IMAGE);
        let arbiter = arbiter(&server, &owner(), "cfg", &start("h"), IMAGE);
        (sts.spec.unwrap(), arbiter.map(|a| a.spec.unwrap().template))
    };
    let (three, _) = build(3);
    let (five, _) = build(5);
    assert_eq!((three.replicas, five.replicas), (Some(3), Some(5)));
    assert_eq!(three.template, five.template, "no pod restarts");
    let (two, two_arbiter) = build(2);
    let (four, four_arbiter) = build(4);
    assert_eq!(two.template, three.template);
    assert_eq!(four.template, three.template);
    assert_eq!(two_arbiter.unwrap(), four_arbiter.unwrap());
    let policy = five.persistent_volume_claim_retention_policy.unwrap();
    assert_eq!(
        (
            policy.when_scaled.as_deref(),
            policy.when_deleted.as_deref()
        ),
        (Some("Delete"), Some("Retain")),
        "a replica the group let go leaves no volume behind"
    );
    let standalone = statefulset(
        &server_from(example("ms-standalone")),
        &owner(),
        "cfg",
        &start("h"),
        IMAGE,
    );
    assert!(
        standalone
            .spec
            .unwrap()
            .persistent_volume_claim_retention_policy
            .is_none()
    );
}

#[test]
fn an_even_availability_group_gets_an_arbiter() {
    assert!(
        arbiter(
            &server_from(example("mssql-ag-cluster")),
            &owner(),
            "cfg",
            &start("h"),
            IMAGE
        )
        .is_none(),
        "3 replicas: no arbiter"
    );
    let mut value = example("mssql-ag-cluster");
    value["spec"]["replicas"] = json!(2);
    let server = server_from(value);
    let sts = arbiter(&server, &owner(), "cfg", &start("h"), IMAGE).unwrap();
    assert_eq!(
        sts.metadata.name.as_deref(),
        Some("mssql-ag-cluster-arbiter")
    );
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()["kubedb.com/role"],
        "arbiter"
    );
    assert_eq!(
        spec.template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()["kubedb.com/role"],
        "arbiter"
    );
    let claim = to_json(&spec.volume_claim_templates.unwrap()[0].spec);
    assert_eq!(claim["resources"]["requests"]["storage"], "2Gi");
    let pod = spec.template.spec.unwrap();
    // Its coordinator alone, with the arbiter's resources and only the volumes it mounts.
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["mssql-coordinator"]);
    assert!(pod.init_containers.is_none());
    // It knows it is the arbiter by its pod's name (the coordinator reads the group's size).
    assert_eq!(
        pod.containers[0].args.as_ref().unwrap()[0],
        "coordinator".to_owned()
    );
    assert_eq!(
        to_json(&pod.containers[0].resources),
        json!({"limits": {"memory": "256Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}})
    );
    let mounted: Vec<&str> = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.as_str())
        .collect();
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert!(!volumes.is_empty());
    assert!(
        volumes.iter().all(|v| mounted.contains(v)),
        "{volumes:?} {mounted:?}"
    );
    assert!(
        mounted.iter().all(|m| volumes.contains(m)),
        "{volumes:?} {mounted:?}"
    );
}
