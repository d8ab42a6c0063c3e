//! Defaulting matches what KubeDB's webhook writes (reference §1.4, §1.6) and what its docs show.

mod common;

use common::{default_server, defaulted, minimal_with, ops};
use mssql_api::mssql::{CertificateSpec, X509Subject};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn tls_json(db: &mssql_api::MssqlServer) -> Value {
    serde_json::to_value(db.spec.tls.as_ref().unwrap()).unwrap()
}

fn container<'a>(
    db: &'a mssql_api::MssqlServer,
    name: &str,
) -> &'a k8s_openapi::api::core::v1::Container {
    let pod = db
        .spec
        .pod_template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap();
    pod.containers
        .iter()
        .flatten()
        .chain(pod.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn resources(db: &mssql_api::MssqlServer, name: &str) -> Value {
    serde_json::to_value(container(db, name).resources.as_ref().unwrap()).unwrap()
}

#[test]
fn standalone_tls_block_is_the_one_kubedb_describes() {
    // `kubectl describe ms -n demo ms-standalone` in KubeDB's reconfigure-tls guide.
    let db = defaulted("ms-standalone");
    assert_eq!(
        tls_json(&db),
        json!({
            "certificates": [
                {"alias": "server", "secretName": "ms-standalone-server-cert",
                 "subject": {"organizationalUnits": ["server"], "organizations": ["kubedb"]}},
                {"alias": "client", "secretName": "ms-standalone-client-cert",
                 "subject": {"organizationalUnits": ["client"], "organizations": ["kubedb"]}}
            ],
            "clientTLS": false,
            "issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "mssqlserver-ca-issuer"}
        })
    );
}

#[test]
fn secret_names_match_the_docs() {
    let db = defaulted("mssql-standalone-tls");
    let names: Vec<_> = db
        .spec
        .tls
        .unwrap()
        .certificates
        .unwrap()
        .into_iter()
        .map(|c| c.secret_name.unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "mssql-standalone-tls-server-cert",
            "mssql-standalone-tls-client-cert"
        ]
    );
}

#[test]
fn availability_group_gets_an_endpoint_certificate() {
    let db = defaulted("mssql-ag-cluster");
    let certificates = db.spec.tls.unwrap().certificates.unwrap();
    let aliases: Vec<_> = certificates.iter().map(|c| c.alias.as_str()).collect();
    assert_eq!(aliases, ["server", "client", "endpoint"]);
    assert_eq!(
        certificates[2].secret_name.as_deref(),
        Some("mssql-ag-cluster-endpoint-cert")
    );
    assert_eq!(
        certificates[2]
            .subject
            .as_ref()
            .unwrap()
            .organizational_units,
        Some(vec!["endpoint".to_owned()])
    );
}

#[test]
fn distributed_ag_gets_no_endpoint_alias() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["replicas"] = json!(3);
        v["spec"]["topology"] = json!({"mode": "DistributedAG"});
    }));
    let aliases: Vec<_> = db
        .spec
        .tls
        .unwrap()
        .certificates
        .unwrap()
        .into_iter()
        .map(|c| c.alias)
        .collect();
    assert_eq!(aliases, ["server", "client"]);
}

#[test]
fn user_certificate_entries_keep_their_order_and_values() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["tls"]["certificates"] = json!([
            {"alias": "client", "subject": {"organizations": ["mssqlserver"]}, "duration": "720h"}
        ]);
    }));
    let certificates = db.spec.tls.unwrap().certificates.unwrap();
    assert_eq!(
        certificates[0],
        CertificateSpec {
            alias: "client".into(),
            secret_name: Some("sales-client-cert".into()),
            duration: Some("720h".into()),
            subject: Some(X509Subject {
                organizations: Some(vec!["mssqlserver".into()]),
                organizational_units: Some(vec!["client".into()]),
                ..X509Subject::default()
            }),
            ..CertificateSpec::default()
        }
    );
    assert_eq!(certificates[1].alias, "server");
}

#[test]
fn no_issuer_means_no_certificate_defaults() {
    let db = default_server(minimal_with(|v| v["spec"]["tls"] = json!({})));
    assert_eq!(db.spec.tls.unwrap(), Default::default());
}

#[test]
fn top_level_defaults() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["configSecret"] = json!({"name": "my-config"});
    }));
    let spec = &db.spec;
    assert_eq!(spec.storage_type.as_deref(), Some("Durable"));
    assert_eq!(spec.deletion_policy.as_deref(), Some("Delete"));
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        serde_json::to_value(&spec.auth_secret).unwrap(),
        json!({"kind": "Secret"})
    );
    assert_eq!(
        serde_json::to_value(&spec.health_checker).unwrap(),
        json!({"periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 1})
    );
    assert_eq!(spec.config_secret, None);
    assert_eq!(
        spec.configuration.as_ref().unwrap().secret_name.as_deref(),
        Some("my-config")
    );
    assert_eq!(spec.topology, None);
    assert_eq!(spec.arbiter, None);
}

#[test]
fn empty_strings_count_as_unset() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["storageType"] = json!("");
        v["spec"]["deletionPolicy"] = json!("");
    }));
    assert_eq!(db.spec.storage_type.as_deref(), Some("Durable"));
    assert_eq!(db.spec.deletion_policy.as_deref(), Some("Delete"));
}

#[test]
fn availability_group_leader_election_uses_webhook_values_when_absent() {
    let db = defaulted("mssql-ag-cluster");
    let group = db.spec.topology.unwrap().availability_group.unwrap();
    assert_eq!(group.secondary_access_mode.as_deref(), Some("Passive"));
    assert_eq!(group.databases, Some(vec!["agdb1".into(), "agdb2".into()]));
    assert_eq!(
        serde_json::to_value(group.leader_election).unwrap(),
        json!({"period": "300ms", "electionTick": 10, "heartbeatTick": 1,
               "transferLeadershipInterval": "1s", "transferLeadershipTimeout": "1m0s"})
    );
}

#[test]
fn partial_leader_election_gets_the_crd_field_defaults() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["replicas"] = json!(3);
        v["spec"]["topology"] = json!({"mode": "AvailabilityGroup",
            "availabilityGroup": {"leaderElection": {"electionTick": 20}}});
    }));
    let election = db
        .spec
        .topology
        .unwrap()
        .availability_group
        .unwrap()
        .leader_election
        .unwrap();
    assert_eq!(election.period.as_deref(), Some("100ms"));
    assert_eq!(election.election_tick, Some(20));
}

#[test]
fn even_availability_group_gets_an_arbiter() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["replicas"] = json!(2);
        v["spec"]["topology"] = json!({"mode": "AvailabilityGroup"});
    }));
    assert_eq!(
        serde_json::to_value(db.spec.arbiter.unwrap()).unwrap(),
        json!({"resources": {"requests": {"storage": "2Gi", "cpu": "200m", "memory": "256Mi"},
                             "limits": {"memory": "256Mi"}}})
    );
    assert_eq!(
        defaulted("mssql-ag-cluster").spec.arbiter,
        None,
        "3 replicas need no arbiter"
    );
}

#[test]
fn container_resources_follow_kubedb_rules() {
    // No resources given: KubeDB's defaults.
    let db = defaulted("ms-standalone");
    assert_eq!(
        resources(&db, "mssql"),
        json!({"requests": {"cpu": "1.5", "memory": "2Gi"}, "limits": {"memory": "4Gi"}})
    );
    assert_eq!(
        resources(&db, "mssql-init"),
        json!({"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}})
    );

    // The AG guide's own values win; the user's limit above the request is kept.
    let db = defaulted("mssql-ag-cluster");
    assert_eq!(
        resources(&db, "mssql"),
        json!({"requests": {"cpu": "500m", "memory": "1.5Gi"}, "limits": {"memory": "2Gi"}})
    );
    assert_eq!(
        resources(&db, "mssql-coordinator"),
        json!({"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}})
    );
}

#[test]
fn resource_limits_never_fall_below_requests() {
    let set = |resources: Value| {
        default_server(minimal_with(|v| {
            v["spec"]["podTemplate"]["spec"]["containers"][0]["resources"] = resources
        }))
    };
    // A request above the default limit raises the limit to it.
    let db = set(json!({"requests": {"memory": "8Gi"}}));
    assert_eq!(
        resources(&db, "mssql"),
        json!({"requests": {"cpu": "1.5", "memory": "8Gi"}, "limits": {"memory": "8Gi"}})
    );
    // A limit alone becomes the request too.
    let db = set(json!({"limits": {"memory": "3Gi"}}));
    assert_eq!(
        resources(&db, "mssql"),
        json!({"requests": {"cpu": "1.5", "memory": "3Gi"}, "limits": {"memory": "3Gi"}})
    );
    // A limit below the request is raised to it.
    let db = set(json!({"requests": {"memory": "3Gi"}, "limits": {"memory": "1Gi"}}));
    assert_eq!(
        resources(&db, "mssql"),
        json!({"requests": {"cpu": "1.5", "memory": "3Gi"}, "limits": {"memory": "3Gi"}})
    );
}

#[test]
fn side_containers_keep_any_resources_the_user_gave() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["podTemplate"]["spec"]["initContainers"] =
            json!([{"name": "mssql-init", "resources": {"requests": {"cpu": "50m"}}}]);
    }));
    assert_eq!(
        resources(&db, "mssql-init"),
        json!({"requests": {"cpu": "50m"}})
    );
}

#[test]
fn security_contexts_run_as_the_catalog_uid() {
    let db = defaulted("mssql-ag-cluster");
    let mssql = serde_json::to_value(container(&db, "mssql").security_context.as_ref()).unwrap();
    assert_eq!(
        mssql,
        json!({"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
               "runAsGroup": 10001, "runAsNonRoot": true, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    for side in ["mssql-init", "mssql-coordinator"] {
        let context = container(&db, side).security_context.as_ref().unwrap();
        assert_eq!(context.run_as_user, Some(10001));
        assert_eq!(
            context.capabilities.as_ref().unwrap().add,
            None,
            "{side} needs no capability"
        );
    }
    let pod = db.spec.pod_template.unwrap().spec.unwrap();
    assert_eq!(pod.security_context.unwrap().fs_group, Some(10001));
}

#[test]
fn user_security_settings_win() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["podTemplate"]["spec"]["containers"][0]["securityContext"] =
            json!({"runAsUser": 20000});
    }));
    let context = container(&db, "mssql").security_context.as_ref().unwrap();
    assert_eq!(context.run_as_user, Some(20000));
    assert_eq!(context.run_as_group, Some(10001));
}

#[test]
fn unknown_version_skips_uid_defaults_only() {
    let db = default_server(minimal_with(|v| v["spec"]["version"] = json!("2019-cu1")));
    assert!(container(&db, "mssql").security_context.is_none());
    assert_eq!(db.spec.tls.unwrap().certificates.unwrap().len(), 2);
}

#[test]
fn monitoring_gets_the_exporter_port() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["monitor"] = json!({"agent": "prometheus.io/operator"})
    }));
    assert_eq!(
        db.spec.monitor.unwrap(),
        json!({"agent": "prometheus.io/operator", "prometheus": {"exporter": {"port": 9399}}})
    );
}

#[test]
fn defaulting_twice_changes_nothing() {
    for name in common::DATABASE_EXAMPLES {
        let once = defaulted(name);
        assert_eq!(default_server(once.clone()), once, "{name}");
    }
}

#[test]
fn ops_requests_get_crd_defaults() {
    // msops-change-issuer gives neither apply nor timeout; KubeDB shows `Apply: IfReady`.
    let ops = ops("msops-change-issuer");
    assert_eq!(ops.spec.apply.as_deref(), Some("IfReady"));
    assert_eq!(ops.spec.max_retries, Some(1));
    assert_eq!(ops.spec.timeout, None);
    let ops = common::ops("msops-add-tls");
    assert_eq!(ops.spec.timeout.as_deref(), Some("5m"));
}
