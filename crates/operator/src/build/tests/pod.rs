//! The pod template: SQL Server's container, its TLS files, availability groups, the user's template, storage, and what a pod records it started with.

use super::*;

#[test]
fn statefulset_runs_sql_server_restarting_only_on_delete() {
    let server = server_from(example("ms-standalone"));
    let sts = statefulset(
        &server,
        &owner(),
        "ms-standalone-config",
        &start("abc123"),
        IMAGE,
    );
    assert_eq!(sts.metadata.name.as_deref(), Some("ms-standalone"));
    assert_eq!(sts.metadata.owner_references, Some(vec![owner()]));
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("ms-standalone-pods"));
    assert_eq!(
        spec.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    assert_eq!(
        spec.selector.match_labels,
        Some(labels::selector("ms-standalone"))
    );
    let claims = spec.volume_claim_templates.unwrap();
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    assert_eq!(
        to_json(&claims[0].spec)["resources"]["requests"]["storage"],
        "1Gi"
    );
    assert_eq!(to_json(&claims[0].spec)["storageClassName"], "standard");

    let template = spec.template;
    let meta = template.metadata.unwrap();
    assert_eq!(
        meta.annotations.unwrap()[annotations::RESTART_HASH],
        "abc123"
    );
    let pod_labels = meta.labels.unwrap();
    assert_eq!(
        pod_labels["app.kubernetes.io/name"],
        "mssqlservers.kubedb.com"
    );
    assert_eq!(pod_labels["app.kubernetes.io/instance"], "ms-standalone");
    assert_eq!(pod_labels["app.kubernetes.io/managed-by"], "kubedb.com");
    assert_eq!(pod_labels["app.kubernetes.io/component"], "database");

    let pod = template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("ms-standalone"));
    assert_eq!(pod.security_context.unwrap().fs_group, Some(10001));
    let mssql = container(&pod.containers, "mssql");
    assert_eq!(
        mssql.image.as_deref(),
        Some("mcr.microsoft.com/mssql/server:2025-RTM-ubuntu-22.04")
    );
    let env = to_json(&mssql.env);
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "ACCEPT_EULA", "value": "Y"}))
    );
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "MSSQL_PID", "value": "Evaluation"}))
    );
    assert!(env.as_array().unwrap().contains(
        &json!({"name": "MSSQL_SA_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "ms-standalone-auth", "key": "password"}}})
    ));
    assert!(
        !env.to_string().contains("MSSQL_ENABLE_HADR"),
        "no HADR for a standalone server"
    );
    let security = mssql.security_context.as_ref().unwrap();
    assert_eq!(
        (security.run_as_user, security.run_as_non_root),
        (Some(10001), Some(true))
    );
    assert_eq!(
        to_json(&mssql.volume_mounts),
        json!([{"name": "data", "mountPath": "/var/opt/mssql"}, {"name": "tls", "mountPath": "/var/opt/mssql/tls", "readOnly": true}])
    );
    assert_eq!(
        to_json(&mssql.ports),
        json!([{"name": "db", "containerPort": 1433, "protocol": "TCP"}])
    );
    assert!(mssql.readiness_probe.as_ref().unwrap().exec.is_some());
    assert_eq!(to_json(&mssql.resources)["limits"]["memory"], "4Gi");
}

#[test]
fn tls_files_are_copied_readable_by_the_sql_server_uid_only() {
    let pod = pod_spec(&server_from(example("ms-standalone")));
    let init = container(pod.init_containers.as_deref().unwrap(), "mssql-init");
    assert_eq!(
        init.image.as_deref(),
        Some("mcr.microsoft.com/mssql/server:2025-RTM-ubuntu-22.04")
    );
    assert_eq!(
        init.security_context.as_ref().unwrap().run_as_user,
        Some(10001)
    );
    let script = &init.command.as_ref().unwrap()[2];
    for line in [
        "install -m 0600 /var/opt/mssql-source/config/mssql.conf /var/opt/mssql/mssql.conf",
        "install -m 0400 /var/opt/mssql-source/tls/server/tls.crt /var/opt/mssql/tls/server.crt",
        "install -m 0400 /var/opt/mssql-source/tls/server/tls.key /var/opt/mssql/tls/server.key",
        "install -m 0400 /var/opt/mssql-source/tls/server/ca.crt /var/opt/mssql/tls/ca.crt",
        "install -m 0400 /var/opt/mssql-source/tls/client/tls.crt /var/opt/mssql/tls/client.crt",
        "install -m 0400 /var/opt/mssql-source/tls/client/tls.key /var/opt/mssql/tls/client.key",
    ] {
        assert!(
            script.lines().any(|l| l == line),
            "missing {line:?} in:\n{script}"
        );
    }
    assert!(
        !script.contains("endpoint"),
        "no endpoint certificate for a standalone server"
    );
    // The key files live in memory and the source secrets are group-readable for fsGroup only.
    assert_eq!(
        to_json(volume(&pod, "tls")),
        json!({"name": "tls", "emptyDir": {"medium": "Memory"}})
    );
    let source = to_json(volume(&pod, "server-cert-source"));
    assert_eq!(source["secret"]["secretName"], "ms-standalone-server-cert");
    assert_eq!(source["secret"]["defaultMode"], 0o440);
    assert_eq!(
        to_json(volume(&pod, "client-cert-source"))["secret"]["secretName"],
        "ms-standalone-client-cert"
    );
    assert_eq!(
        to_json(volume(&pod, "config"))["secret"]["secretName"],
        "cfg"
    );
}

#[test]
fn availability_group_pods_enable_hadr_and_mount_the_endpoint_certificate() {
    let server = server_from(example("mssql-ag-cluster"));
    let sts = statefulset(&server, &owner(), "cfg", &start("h"), IMAGE);
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(3));
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["mssql", "mssql-coordinator"]);
    let mssql = container(&pod.containers, "mssql");
    assert!(
        to_json(&mssql.env)
            .as_array()
            .unwrap()
            .contains(&json!({"name": "MSSQL_ENABLE_HADR", "value": "1"}))
    );
    assert_eq!(to_json(&mssql.ports).as_array().unwrap().len(), 2);
    assert!(
        mssql
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/var/opt/mssql/endpoint-cert")
    );
    // The guide's own resources are kept.
    assert_eq!(
        to_json(&mssql.resources),
        json!({"limits": {"memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "1.5Gi"}})
    );
    let init = container(pod.init_containers.as_deref().unwrap(), "mssql-init");
    assert!(init.command.as_ref().unwrap()[2].contains("/var/opt/mssql/endpoint-cert/tls.key"));
    assert_eq!(
        to_json(volume(&pod, "endpoint-cert-source"))["secret"]["secretName"],
        "mssql-ag-cluster-endpoint-cert"
    );
}

#[test]
fn availability_group_pods_run_the_coordinator_with_its_own_api_token() {
    let mut value = example("mssql-ag-cluster");
    value["spec"]["topology"]["availabilityGroup"]["secondaryAccessMode"] = json!("ReadOnly");
    value["spec"]["replicas"] = json!(2);
    let server = server_from(value);
    let sts = statefulset(&server, &owner(), "cfg", &start("h"), IMAGE);
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let coordinator = container(&pod.containers, "mssql-coordinator");
    assert_eq!(coordinator.image.as_deref(), Some(IMAGE));
    assert_eq!(
        to_json(&coordinator.args),
        json!([
            "coordinator",
            "--secondary-access-mode=ReadOnly",
            "--databases=agdb1,agdb2"
        ])
    );
    let env = to_json(&coordinator.env);
    let env = env.as_array().unwrap();
    assert!(env.contains(&json!({"name": "DB_NAME", "value": "mssql-ag-cluster"})));
    for (name, secret) in [
        ("MSSQL_SA_PASSWORD", "mssql-ag-cluster-auth"),
        ("DBM_LOGIN_PASSWORD", "mssql-ag-cluster-dbm-login"),
        ("MASTER_KEY_PASSWORD", "mssql-ag-cluster-master-key"),
    ] {
        assert!(
            env.contains(&json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}})),
            "{name} from {secret}"
        );
    }
    let mounts: Vec<(&str, &str)> = coordinator
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            (
                "endpoint-cert-source",
                "/var/run/mssql-coordinator/endpoint"
            ),
            ("endpoint-cert", "/var/opt/mssql/endpoint-cert"),
            (
                "coordinator-api",
                "/var/run/secrets/kubernetes.io/serviceaccount"
            ),
        ]
    );
    // KubeDB's defaults: its resources and the server's uid.
    assert_eq!(
        coordinator.security_context.as_ref().unwrap().run_as_user,
        Some(10001)
    );
    // A deleted primary's server outlives its coordinator's handover.
    assert_eq!(
        to_json(&container(&pod.containers, "mssql").lifecycle),
        json!({"preStop": {"sleep": {"seconds": 3}}})
    );
    // Only the coordinator holds an API token: the server's container has none.
    let mssql = container(&pod.containers, "mssql");
    assert!(
        mssql
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != "coordinator-api")
    );
    let token = to_json(volume(&pod, "coordinator-api"));
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["path"],
        "token"
    );
}

#[test]
fn the_users_pod_template_is_merged_in() {
    let mut value = example("ms-standalone");
    value["metadata"]["labels"] = json!({"team": "sales"});
    value["spec"]["podTemplate"]["metadata"] = json!({"labels": {"tier": "db", "app.kubernetes.io/instance": "spoof"}, "annotations": {"note": "x"}});
    value["spec"]["podTemplate"]["controller"] = json!({"labels": {"sts": "yes"}});
    let spec = &mut value["spec"]["podTemplate"]["spec"];
    spec["nodeSelector"] = json!({"disk": "ssd"});
    spec["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
    spec["priorityClassName"] = json!("high");
    spec["dnsPolicy"] = json!("ClusterFirst");
    spec["podPlacementPolicy"] = json!({"name": "default"});
    spec["volumes"] = json!([{"name": "extra", "emptyDir": {}}]);
    spec["containers"][0]["volumeMounts"] = json!([{"name": "extra", "mountPath": "/extra"}]);
    spec["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox"}));
    let server = server_from(value);
    let sts = statefulset(&server, &owner(), "cfg", &start("h"), IMAGE);
    assert_eq!(sts.metadata.labels.as_ref().unwrap()["sts"], "yes");
    assert_eq!(sts.metadata.labels.as_ref().unwrap()["team"], "sales");
    let template = sts.spec.unwrap().template;
    let meta = template.metadata.unwrap();
    assert_eq!(meta.labels.as_ref().unwrap()["tier"], "db");
    assert_eq!(
        meta.labels.as_ref().unwrap()["app.kubernetes.io/instance"],
        "ms-standalone",
        "our selector labels win"
    );
    assert_eq!(meta.annotations.unwrap()["note"], "x");
    let pod = to_json(template.spec.as_ref().unwrap());
    assert_eq!(pod["nodeSelector"], json!({"disk": "ssd"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["priorityClassName"], "high");
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert!(
        pod.get("podPlacementPolicy").is_none(),
        "KubeDB-only fields do not reach the pod"
    );
    let pod = template.spec.unwrap();
    assert_eq!(volume(&pod, "extra").name, "extra");
    assert!(
        container(&pod.containers, "mssql")
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/extra")
    );
    assert_eq!(
        container(&pod.containers, "sidecar").image.as_deref(),
        Some("busybox")
    );
}

#[test]
fn ephemeral_storage_uses_an_empty_dir() {
    let mut value = example("ms-standalone");
    value["spec"]["storageType"] = json!("Ephemeral");
    value["spec"].as_object_mut().unwrap().remove("storage");
    let sts = statefulset(&server_from(value), &owner(), "cfg", &start("h"), IMAGE);
    let spec = sts.spec.unwrap();
    assert!(spec.volume_claim_templates.is_none());
    assert_eq!(
        to_json(volume(spec.template.spec.as_ref().unwrap(), "data")),
        json!({"name": "data", "emptyDir": {}})
    );
}

#[test]
fn pods_record_the_certificates_they_start_with() {
    use k8s_openapi::api::core::v1::Pod;

    use crate::build::start::Issued;

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["db".to_owned()]).unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0A, 0x1B]));
    params.not_after = rcgen::date_time_ymd(2027, 1, 1);
    let crt = params.self_signed(&key).unwrap().pem();
    let issued = Issued::new(crt.into_bytes(), Default::default());
    let tls = [("server".to_owned(), issued)].into();
    let with_tls = Start::of(&tls, "[network]\n");
    assert_eq!(
        with_tls.certificates,
        [(
            "server".to_owned(),
            StartedCertificate {
                serial: "0A1B".to_owned(),
                not_after: 1_798_761_600,
            }
        )]
        .into()
    );
    assert_ne!(
        with_tls.restart_hash,
        Start::of(&Default::default(), "[network]\n").restart_hash
    );

    let server = server_from(example("mssql-standalone-tls"));
    let template = statefulset(&server, &owner(), "cfg", &with_tls, IMAGE)
        .spec
        .unwrap()
        .template;
    let meta = template.metadata.unwrap();
    assert_eq!(
        meta.annotations.as_ref().unwrap()[annotations::CERTIFICATES],
        r#"{"server":{"serial":"0A1B","notAfter":1798761600}}"#
    );
    let pod = Pod {
        metadata: meta,
        ..Pod::default()
    };
    assert_eq!(started_with(&pod), with_tls.certificates);

    let plain = statefulset(&server, &owner(), "cfg", &start("h"), IMAGE)
        .spec
        .unwrap()
        .template;
    let annotations = plain.metadata.unwrap().annotations.unwrap();
    assert!(
        !annotations.contains_key(annotations::CERTIFICATES),
        "nothing to record: no annotation"
    );
}

#[test]
fn a_secret_is_issued_once_it_holds_a_certificate_and_a_key_and_only_the_certificate_is_kept() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;

    use crate::build::start::Issued;

    let secret = |files: &[(&str, &str)]| Secret {
        data: Some(
            files
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    // cert-manager writes the secret before it has issued (empty files), then fills it.
    assert_eq!(Issued::of(&Secret::default()), None);
    assert_eq!(
        Issued::of(&secret(&[("tls.crt", ""), ("tls.key", "")])),
        None
    );
    assert_eq!(
        Issued::of(&secret(&[("tls.crt", "crt")])),
        None,
        "no key yet"
    );
    let issued = Issued::of(&secret(&[
        ("tls.crt", "crt"),
        ("tls.key", "key"),
        ("ca.crt", "ca"),
    ]));
    assert_eq!(
        issued,
        Some(Issued {
            certificate: b"crt".to_vec(),
            ca: b"ca".to_vec().into(),
            started: None,
        })
    );
}
