//! The builders on KubeDB's documentation examples: each test asserts the fields that make the
//! object right for the real SQL Server image and for KubeDB's users.

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

fn start(restart_hash: &str) -> Start {
    Start {
        restart_hash: restart_hash.to_owned(),
        ..Start::default()
    }
}

fn pod_spec(server: &Server) -> PodSpec {
    statefulset(server, &owner(), "cfg", &start("hash1"))
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

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn statefulset_runs_sql_server_restarting_only_on_delete() {
    let server = server_from(example("ms-standalone"));
    let sts = statefulset(&server, &owner(), "ms-standalone-config", &start("abc123"));
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
    let sts = statefulset(&server, &owner(), "cfg", &start("h"));
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(3));
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["mssql"],
        "no coordinator container: the AG coordinator is not part of this operator yet"
    );
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
    let sts = statefulset(&server, &owner(), "cfg", &start("h"));
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
    let sts = statefulset(&server_from(value), &owner(), "cfg", &start("h"));
    let spec = sts.spec.unwrap();
    assert!(spec.volume_claim_templates.is_none());
    assert_eq!(
        to_json(volume(spec.template.spec.as_ref().unwrap(), "data")),
        json!({"name": "data", "emptyDir": {}})
    );
}

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

#[test]
fn certificates_carry_kubedb_names_subjects_and_every_server_name() {
    let server = server_from(example("mssql-ag-cluster"));
    let all = certificates(&server, &owner());
    let names: Vec<_> = all
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "mssql-ag-cluster-server-cert",
            "mssql-ag-cluster-client-cert",
            "mssql-ag-cluster-endpoint-cert"
        ]
    );
    let server_cert = to_json(&all[0].spec);
    assert_eq!(server_cert["secretName"], "mssql-ag-cluster-server-cert");
    assert_eq!(
        server_cert["issuerRef"],
        json!({"name": "mssqlserver-ca-issuer", "kind": "Issuer", "group": "cert-manager.io"})
    );
    assert_eq!(
        server_cert["subject"],
        json!({"organizations": ["kubedb"], "organizationalUnits": ["server"]})
    );
    assert_eq!(server_cert["privateKey"]["rotationPolicy"], "Always");
    assert_eq!(server_cert["ipAddresses"], json!(["127.0.0.1"]));
    let dns: Vec<String> = serde_json::from_value(server_cert["dnsNames"].clone()).unwrap();
    for name in [
        "mssql-ag-cluster",
        "mssql-ag-cluster.demo",
        "mssql-ag-cluster.demo.svc",
        "mssql-ag-cluster.demo.svc.cluster.local",
        "mssql-ag-cluster-secondary.demo.svc",
        "*.mssql-ag-cluster-pods.demo.svc",
        "mssql-ag-cluster-2.mssql-ag-cluster-pods.demo.svc",
        "mssql-ag-cluster-0",
        "localhost",
    ] {
        assert!(
            dns.contains(&name.to_owned()),
            "{name} missing from {dns:?}"
        );
    }
    let client = to_json(&all[1].spec);
    assert_eq!(client["commonName"], "mssql");
    assert!(
        client.get("dnsNames").is_none(),
        "the client certificate has no SANs, as in KubeDB"
    );
    assert_eq!(
        client["usages"],
        json!(["digital signature", "key encipherment", "client auth"])
    );
    assert_eq!(
        to_json(&all[1].spec)["secretTemplate"]["labels"]["app.kubernetes.io/instance"],
        "mssql-ag-cluster"
    );
}

#[test]
fn per_certificate_issuer_and_user_sans_are_used() {
    let mut value = example("ms-standalone");
    value["spec"]["tls"]["certificates"] = json!([{
        "alias": "server",
        "issuerRef": {"apiGroup": "cert-manager.io", "kind": "ClusterIssuer", "name": "corp-ca"},
        "dnsNames": ["sql.example.com"], "ipAddresses": ["10.0.0.5"], "duration": "2160h"
    }]);
    let server = server_from(value);
    let server_cert = to_json(&certificates(&server, &owner())[0].spec);
    assert_eq!(server_cert["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(server_cert["issuerRef"]["name"], "corp-ca");
    assert_eq!(server_cert["duration"], "2160h");
    assert_eq!(server_cert["ipAddresses"], json!(["127.0.0.1", "10.0.0.5"]));
    assert_eq!(
        server_dns_names(&server, &["sql.example.com".into()])
            .last()
            .unwrap(),
        "sql.example.com"
    );
    assert_eq!(
        to_json(&certificates(&server, &owner())[1].spec)["issuerRef"]["name"],
        "mssqlserver-ca-issuer"
    );
}

#[test]
fn config_secret_holds_mssql_conf() {
    let server = server_from(example("mssql-standalone-tls"));
    let conf = mssql_conf(server.tls.client_tls, "1.2,1.3", None);
    let secret = config_secret(&server, &owner(), &conf);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("mssql-standalone-tls-config")
    );
    let text = String::from_utf8(secret.data.unwrap()["mssql.conf"].0.clone()).unwrap();
    assert!(
        text.contains("forceencryption = 1\ntlscert = /var/opt/mssql/tls/server.crt\n"),
        "{text}"
    );
    assert!(text.ends_with("tlsprotocols = 1.2,1.3\n"));
}

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
fn generated_passwords_meet_sql_servers_policy() {
    for seed in [
        [0u8; 20],
        [255u8; 20],
        std::array::from_fn(|i| i as u8 * 13),
    ] {
        let password = password(&seed);
        assert_eq!(password.len(), 20);
        assert!(password.chars().any(|c| c.is_ascii_lowercase()));
        assert!(password.chars().any(|c| c.is_ascii_uppercase()));
        assert!(password.chars().any(|c| c.is_ascii_digit()));
        assert!(password.chars().any(|c| "-_.~".contains(c)));
    }
}

#[test]
fn auth_secrets_of_users_are_checked() {
    let server = server_from(example("ms-standalone"));
    let mut secret = super::secrets::auth_secret(&server, &owner(), "Str0ng-pass");
    assert_eq!(check_auth_secret(&secret), Ok(()));
    secret.data.as_mut().unwrap().insert(
        "username".into(),
        k8s_openapi::ByteString(b"admin".to_vec()),
    );
    assert_eq!(
        check_auth_secret(&secret).unwrap_err(),
        "auth secret ms-standalone-auth must have username \"sa\": SQL Server's administrator login"
    );
    secret
        .data
        .as_mut()
        .unwrap()
        .insert("username".into(), k8s_openapi::ByteString(b"sa".to_vec()));
    secret.data.as_mut().unwrap().remove("password");
    assert_eq!(
        check_auth_secret(&secret).unwrap_err(),
        "auth secret ms-standalone-auth has no password: add a non-empty key \"password\""
    );
}

#[test]
fn restart_hash_changes_with_any_part() {
    let a = restart_hash(&[b"cert", b"conf"]);
    assert_eq!(a, restart_hash(&[b"cert", b"conf"]));
    assert_eq!(a.len(), 24);
    assert_ne!(a, restart_hash(&[b"cert2", b"conf"]));
    assert_ne!(restart_hash(&[b"ab", b"c"]), restart_hash(&[b"a", b"bc"]));
}

#[test]
fn an_even_availability_group_gets_an_arbiter() {
    assert!(
        arbiter(
            &server_from(example("mssql-ag-cluster")),
            &owner(),
            "cfg",
            &start("h")
        )
        .is_none(),
        "3 replicas: no arbiter"
    );
    let mut value = example("mssql-ag-cluster");
    value["spec"]["replicas"] = json!(2);
    let server = server_from(value);
    let sts = arbiter(&server, &owner(), "cfg", &start("h")).unwrap();
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
    assert_eq!(
        to_json(&pod.containers[0].resources),
        json!({"limits": {"memory": "256Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}})
    );
}

#[test]
fn pods_record_the_certificates_they_start_with() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{Pod, Secret};

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["db".to_owned()]).unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0A, 0x1B]));
    params.not_after = rcgen::date_time_ymd(2027, 1, 1);
    let crt = params.self_signed(&key).unwrap().pem();
    let secret = Secret {
        data: Some([("tls.crt".to_owned(), ByteString(crt.into_bytes()))].into()),
        ..Secret::default()
    };
    let tls = [("server".to_owned(), secret)].into();
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
    let template = statefulset(&server, &owner(), "cfg", &with_tls)
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

    let plain = statefulset(&server, &owner(), "cfg", &start("h"))
        .spec
        .unwrap()
        .template;
    let annotations = plain.metadata.unwrap().annotations.unwrap();
    assert!(
        !annotations.contains_key(annotations::CERTIFICATES),
        "nothing to record: no annotation"
    );
}
