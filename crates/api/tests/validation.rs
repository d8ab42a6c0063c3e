//! Every KubeDB error message (reference §1.6, §3.5) comes out of bad input, word for word, on
//! the field it concerns; the operator's own rules name the field and the fix.

mod common;

use common::{default_server, example, minimal_with, ops, yaml};
use mssql_api::catalog;
use mssql_api::validate::{
    FORBIDDEN_ENV, FieldError, RESERVED_MOUNT_PATHS, RESERVED_VOLUMES, validate_deletion,
    validate_mssqlserver, validate_ops_request, validate_ops_update,
};
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use serde_json::{Value, json};

/// Defaults `db` as the operator does, then validates it against the built-in catalog.
fn errors(db: MssqlServer) -> Vec<FieldError> {
    let db = default_server(db);
    let versions = catalog::default_catalog();
    validate_mssqlserver(&db, catalog::find(&versions, &db.spec.version))
}

fn errors_of(edit: impl FnOnce(&mut Value)) -> Vec<FieldError> {
    errors(minimal_with(edit))
}

#[track_caller]
fn assert_only(errors: &[FieldError], field: &str, message: &str) {
    assert_eq!(
        errors,
        [FieldError::new(field, message)],
        "expected exactly one error"
    );
}

#[test]
fn every_kubedb_doc_example_is_valid() {
    for name in common::DATABASE_EXAMPLES {
        assert_eq!(errors(example(name)), [], "{name}");
    }
    assert_eq!(errors_of(|_| {}), [], "the minimal fixture is valid");
}

#[test]
fn unknown_version_is_reported_like_the_api_server() {
    assert_only(
        &errors_of(|v| v["spec"]["version"] = json!("2019-cu1")),
        "spec.version",
        "mssqlserverversions.catalog.kubedb.com \"2019-cu1\" not found",
    );
}

#[test]
fn standalone_needs_exactly_one_replica() {
    for replicas in [0, 2, 3] {
        assert_only(
            &errors_of(|v| v["spec"]["replicas"] = json!(replicas)),
            "spec.replicas",
            "number of replicas for standalone must be one ",
        );
    }
}

#[test]
fn cluster_needs_a_mode_and_replicas() {
    let errs = errors_of(|v| {
        v["spec"]["topology"] = json!({});
        v["spec"]["replicas"] = json!(0);
    });
    assert_eq!(
        errs,
        [
            FieldError::new(
                "spec.topology.mode",
                ".spec.topology.mode can't be empty in cluster mode"
            ),
            FieldError::new(
                "spec.replicas",
                "number of replicas can not be nil and can not be less than or equal to 0"
            ),
        ]
    );
    assert_only(
        &errors_of(|v| v["spec"]["topology"] = json!({"mode": "AvailabilityGroup"})),
        "spec.replicas",
        "number of replicas can not be nil and can not be less than or equal to 0",
    );
    assert_only(
        &errors_of(|v| {
            v["spec"]["topology"] = json!({"mode": "RemoteReplica"});
            v["spec"]["replicas"] = json!(3);
        }),
        "spec.topology.mode",
        "topology mode \"RemoteReplica\" is not supported; use AvailabilityGroup or DistributedAG",
    );
}

#[test]
fn tls_and_its_issuer_are_required() {
    assert_only(
        &errors_of(|v| {
            v["spec"]
                .as_object_mut()
                .unwrap()
                .remove("tls")
                .map(drop)
                .unwrap()
        }),
        "spec.tls",
        "spec.tls is missing",
    );
    assert_only(
        &errors_of(|v| v["spec"]["tls"] = json!({"clientTLS": true})),
        "spec.tls.issuerRef",
        "spec.tls.issuerRef' is missing",
    );
}

#[test]
fn issuer_must_be_a_cert_manager_issuer() {
    let errs = errors_of(|v| v["spec"]["tls"]["issuerRef"] = json!({"kind": "Secret", "name": ""}));
    assert_eq!(
        errs,
        [
            FieldError::new(
                "spec.tls.issuerRef.apiGroup",
                "the issuer must be a cert-manager one: set apiGroup to \"cert-manager.io\""
            ),
            FieldError::new(
                "spec.tls.issuerRef.kind",
                "issuer kind \"Secret\" is not supported; use Issuer or ClusterIssuer"
            ),
            FieldError::new("spec.tls.issuerRef.name", "the issuer name is empty"),
        ]
    );
    assert_eq!(
        errors_of(|v| v["spec"]["tls"]["issuerRef"]["kind"] = json!("ClusterIssuer")),
        [],
        "a ClusterIssuer is fine"
    );
}

#[test]
fn certificate_entries_are_checked() {
    let errs = errors_of(|v| {
        v["spec"]["tls"]["certificates"] = json!([
            {"alias": "endpoint"},
            {"alias": "client", "duration": "90d"},
            {"alias": "client"}
        ]);
    });
    assert_eq!(
        errs,
        [
            FieldError::new(
                "spec.tls.certificates[0].alias",
                "certificate alias \"endpoint\" is not supported here; use one of: server, client"
            ),
            FieldError::new(
                "spec.tls.certificates[1].duration",
                "duration \"90d\" is not a duration; write it like 2160h or 720h30m"
            ),
            FieldError::new(
                "spec.tls.certificates[2].alias",
                "certificate alias \"client\" is listed twice; keep one entry per alias"
            ),
        ]
    );
}

/// cert-manager's webhook refuses a Certificate whose `duration` is under 1h, whose
/// `renewBefore` is under 5m, or whose `renewBefore` is not under its duration (90 days when
/// unset): the database is refused at once, in cert-manager's words, with the fix.
#[test]
fn certificate_lifetimes_follow_cert_manager_rules() {
    let lifetime = |duration: Option<&str>, renew_before: Option<&str>| {
        errors_of(|v| {
            let mut server = json!({"alias": "server"});
            if let Some(d) = duration {
                server["duration"] = json!(d);
            }
            if let Some(r) = renew_before {
                server["renewBefore"] = json!(r);
            }
            v["spec"]["tls"]["certificates"] = json!([server]);
        })
    };
    for (duration, renew_before) in [
        (Some("1h"), None),
        (Some("1h"), Some("5m")),
        (Some("2h"), Some("90m")),
        (None, Some("720h")),
        (None, None),
        (Some("8760h"), Some("2159h")),
    ] {
        assert_eq!(
            lifetime(duration, renew_before),
            [],
            "{duration:?} {renew_before:?}"
        );
    }
    let here = "spec.tls.certificates[0]";
    assert_only(
        &lifetime(Some("59m59s"), None),
        &format!("{here}.duration"),
        "certificate duration must be greater than 1h0m0s (cert-manager refuses 59m59s); set \
         duration to 1h or more",
    );
    assert_only(
        &lifetime(Some("24h"), Some("4m59s")),
        &format!("{here}.renewBefore"),
        "certificate renewBefore must be greater than 5m0s (cert-manager refuses 4m59s); set \
         renewBefore to 5m or more, or leave it out for a third of the duration",
    );
    assert_only(
        &lifetime(Some("2h"), Some("2h")),
        &format!("{here}.renewBefore"),
        "certificate duration 2h0m0s must be greater than renewBefore 2h0m0s; set renewBefore \
         below the duration, or leave it out for a third of it",
    );
    assert_only(
        &lifetime(None, Some("2160h")),
        &format!("{here}.renewBefore"),
        "certificate duration 2160h0m0s (cert-manager's default: duration is not set) must be \
         greater than renewBefore 2160h0m0s; set renewBefore below the duration, or leave it out \
         for a third of it",
    );
    // Both at once: too short a life, and a renewal before it even begins.
    assert_eq!(
        lifetime(Some("30m"), Some("1h")).len(),
        2,
        "duration and renewBefore each refused"
    );
}

#[test]
fn forbidden_env_vars_are_refused_one_by_one() {
    for name in FORBIDDEN_ENV {
        assert_only(
            &errors_of(|v| {
                v["spec"]["podTemplate"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": name, "value": "x"}));
            }),
            "spec.podTemplate.spec.containers[0].env[2]",
            &format!("environment variable {name} is forbidden to use in MSSQLServer spec"),
        );
    }
}

#[test]
fn mssql_pid_is_mandatory() {
    let message = "environment variable MSSQL_PID must be provided in MSSQLServer spec";
    assert_only(
        &errors_of(|v| {
            v["spec"]["podTemplate"]["spec"]["containers"][0]["env"] =
                json!([{"name": "ACCEPT_EULA", "value": "Y"}])
        }),
        "spec.podTemplate.spec.containers[0].env",
        message,
    );
    // Defaulting adds the mssql container, so a database without any podTemplate is caught too.
    let errs = errors_of(|v| drop(v["spec"].as_object_mut().unwrap().remove("podTemplate")));
    assert_only(&errs, "spec.podTemplate.spec.containers[0].env", message);
}

#[test]
fn reserved_volume_names_are_refused() {
    for name in RESERVED_VOLUMES {
        assert_only(
            &errors_of(|v| {
                v["spec"]["podTemplate"]["spec"]["volumes"] =
                    json!([{"name": name, "emptyDir": {}}])
            }),
            "spec.podTemplate.spec.volumes[0].name",
            &format!("Can't use a reserved volume name: {name}"),
        );
    }
}

#[test]
fn reserved_mount_paths_are_refused_in_containers_and_init_containers() {
    for path in RESERVED_MOUNT_PATHS {
        let message = format!("Can't use a reserve volume mount path name: {path}");
        let mount = json!([{"name": "extra", "mountPath": path}]);
        assert_only(
            &errors_of(|v| {
                v["spec"]["podTemplate"]["spec"]["containers"][0]["volumeMounts"] = mount.clone()
            }),
            "spec.podTemplate.spec.containers[0].volumeMounts[0].mountPath",
            &message,
        );
        assert_only(
            &errors_of(|v| {
                v["spec"]["podTemplate"]["spec"]["initContainers"] =
                    json!([{"name": "setup", "volumeMounts": mount}]);
            }),
            "spec.podTemplate.spec.initContainers[0].volumeMounts[0].mountPath",
            &message,
        );
    }
}

#[test]
fn storage_type_rules() {
    // Defaulting fills an empty storageType, so KubeDB's "empty" message needs an undefaulted object.
    let undefaulted = minimal_with(|v| v["spec"]["storageType"] = json!(""));
    let versions = catalog::default_catalog();
    let errs = validate_mssqlserver(&undefaulted, catalog::find(&versions, "2022-cu22"));
    assert!(
        errs.contains(&FieldError::new(
            "spec.storageType",
            "StorageType can not be empty"
        )),
        "{errs:?}"
    );

    assert_only(
        &errors_of(|v| v["spec"]["storageType"] = json!("durable")),
        "spec.storageType",
        "StorageType should be either durable or ephemeral",
    );
    assert_only(
        &errors_of(|v| drop(v["spec"].as_object_mut().unwrap().remove("storage"))),
        "spec.storage",
        "spec.storage is required when storageType is Durable: give a storageClassName and resources.requests.storage, or set storageType: Ephemeral",
    );
    assert_eq!(
        errors_of(|v| {
            v["spec"].as_object_mut().unwrap().remove("storage");
            v["spec"]["storageType"] = json!("Ephemeral");
        }),
        []
    );
}

#[test]
fn deletion_policy_and_inline_config_are_checked() {
    assert_only(
        &errors_of(|v| v["spec"]["deletionPolicy"] = json!("Pause")),
        "spec.deletionPolicy",
        "deletionPolicy \"Pause\" is not supported; use Halt, Delete, WipeOut or DoNotTerminate",
    );
    assert_only(
        &errors_of(|v| v["spec"]["configuration"] = json!({"inline": {"mssql.ini": "[x]"}})),
        "spec.configuration.inline[mssql.ini]",
        "inline configuration key \"mssql.ini\" is not supported; put the settings under the key \"mssql.conf\"",
    );
}

#[test]
fn renewal_annotations_are_checked() {
    let annotations = json!({
        "mssql-operator.dev/maintenance-window": "Mo 22:00-02:00",
        "mssql-operator.dev/renewal-rollout": "Manual",
    });
    assert_only(
        &errors_of(|v| v["metadata"]["annotations"] = annotations),
        "metadata.annotations[mssql-operator.dev/maintenance-window]",
        "\"Mo\": not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like Mon-Fri, or *",
    );
    let good =
        json!({"mssql-operator.dev/maintenance-window": "Sat,Sun 22:00-02:00 Europe/Berlin"});
    assert_eq!(errors_of(|v| v["metadata"]["annotations"] = good), []);
}

#[test]
fn do_not_terminate_refuses_deletion() {
    let db = default_server(minimal_with(|v| {
        v["spec"]["deletionPolicy"] = json!("DoNotTerminate")
    }));
    assert_eq!(
        validate_deletion(&db),
        Some(FieldError::new(
            "spec.terminationPolicy",
            "Can not delete as terminationPolicy is set to \"DoNotTerminate\""
        ))
    );
    assert_eq!(
        validate_deletion(&default_server(minimal_with(|_| {}))),
        None
    );
}

// --- Ops requests ---

const OPS: &str = r#"
apiVersion: ops.kubedb.com/v1alpha1
kind: MSSQLServerOpsRequest
metadata: {name: rotate-sales, namespace: shop}
spec:
  type: ReconfigureTLS
  databaseRef: {name: sales}
  tls: {rotateCertificates: true}
"#;

fn ops_with(edit: impl FnOnce(&mut Value)) -> MssqlServerOpsRequest {
    let mut value: Value = yaml(OPS);
    edit(&mut value);
    serde_json::from_value(value).unwrap()
}

fn ops_errors(edit: impl FnOnce(&mut Value)) -> Vec<FieldError> {
    validate_ops_request(&ops_with(edit), Some(true))
}

#[test]
fn every_kubedb_ops_example_is_valid() {
    for name in common::OPS_EXAMPLES {
        assert_eq!(validate_ops_request(&ops(name), Some(true)), [], "{name}");
    }
}

#[test]
fn unknown_type_lists_the_supported_ones() {
    assert_only(
        &ops_errors(|v| v["spec"]["type"] = json!("Upgrade")),
        "spec.type",
        "defined OpsRequestType Upgrade is not supported, supported types for MSSQLServer are UpdateVersion, HorizontalScaling, VerticalScaling, VolumeExpansion, Restart, Reconfigure, ReconfigureTLS, RotateAuth, StorageMigration",
    );
}

#[test]
fn every_kubedb_type_is_accepted() {
    for type_ in mssql_api::ops::OPS_TYPES {
        let errs = ops_errors(|v| v["spec"]["type"] = json!(type_));
        assert!(
            !errs.iter().any(|e| e.field == "spec.type"),
            "{type_}: {errs:?}"
        );
    }
}

#[test]
fn missing_database_is_reported() {
    assert_only(
        &validate_ops_request(&ops_with(|_| {}), Some(false)),
        "spec.databaseRef",
        "spec.databaseRef shop/sales, is invalid or not found",
    );
    assert_eq!(
        validate_ops_request(&ops_with(|_| {}), None),
        [],
        "unknown existence is not an error"
    );
}

#[test]
fn reconfigure_tls_needs_a_tls_block() {
    assert_only(
        &ops_errors(|v| drop(v["spec"].as_object_mut().unwrap().remove("tls"))),
        "spec.tls",
        "`spec.tls` nil not supported in ReconfigureTLS type",
    );
}

#[test]
fn reconfigure_tls_needs_exactly_one_operation() {
    let none = "no reconfiguration is provided in TLS Spec";
    let several = "more than 1 field have assigned to spec.reconfigureTLS but at a time one is allowed to run one operation";
    assert_only(
        &ops_errors(|v| v["spec"]["tls"] = json!({})),
        "spec.tls",
        none,
    );
    assert_only(
        &ops_errors(|v| v["spec"]["tls"] = json!({"rotateCertificates": false, "remove": false})),
        "spec.tls",
        none,
    );
    // clientTLS alone is not an operation.
    assert_only(
        &ops_errors(|v| v["spec"]["tls"] = json!({"clientTLS": true})),
        "spec.tls",
        none,
    );
    assert_only(
        &ops_errors(|v| v["spec"]["tls"] = json!({"rotateCertificates": true, "remove": true})),
        "spec.tls",
        several,
    );
    assert_only(
        &ops_errors(|v| v["spec"]["tls"] = json!({"remove": true, "certificates": []})),
        "spec.tls",
        several,
    );
    // An empty certificate list counts as present, as in KubeDB.
    assert_eq!(
        ops_errors(|v| v["spec"]["tls"] = json!({"certificates": []})),
        []
    );
    assert_eq!(
        ops_errors(|v| v["spec"]["tls"] = json!({"remove": true})),
        []
    );
}

#[test]
fn other_types_do_not_need_tls() {
    assert_eq!(
        ops_errors(|v| {
            v["spec"]["type"] = json!("Restart");
            v["spec"].as_object_mut().unwrap().remove("tls");
        }),
        []
    );
}

#[test]
fn apply_and_timeout_are_checked() {
    assert_only(
        &ops_errors(|v| v["spec"]["apply"] = json!("Sometimes")),
        "spec.apply",
        "apply \"Sometimes\" is not supported; use IfReady or Always",
    );
    assert_only(
        &ops_errors(|v| v["spec"]["timeout"] = json!("5 minutes")),
        "spec.timeout",
        "timeout \"5 minutes\" is not a duration; write it like 5m, 90s or 1h30m",
    );
}

#[test]
fn an_ops_spec_never_changes() {
    let old = ops_with(|_| {});
    let new = ops_with(|v| v["spec"]["timeout"] = json!("10m"));
    assert_eq!(
        validate_ops_update(&old, &new),
        Some(FieldError::new("spec", mssql_api::ops::MSG_SPEC_IMMUTABLE))
    );
    let mut relabelled = old.clone();
    relabelled.metadata.labels = Some([("team".to_owned(), "db".to_owned())].into());
    assert_eq!(
        validate_ops_update(&old, &relabelled),
        None,
        "metadata may change"
    );
}

#[test]
fn a_name_must_fit_the_statefulset_and_its_pod_labels() {
    let named = |name: &str, edit: fn(&mut Value)| {
        errors_of(|v| {
            v["metadata"]["name"] = json!(name);
            edit(v);
        })
    };
    let group = |v: &mut Value| {
        v["spec"]["replicas"] = json!(3);
        v["spec"]["topology"] =
            json!({"mode": "AvailabilityGroup", "availabilityGroup": {"databases": ["agdb"]}});
    };
    assert_eq!(named(&"a".repeat(52), |_| {}), []);
    assert_eq!(named(&"a".repeat(44), group), []);

    let standalone = named(&"a".repeat(53), |_| {});
    assert_eq!(standalone.len(), 1, "{standalone:?}");
    assert_eq!(standalone[0].field, "metadata.name");
    assert!(
        standalone[0].message.contains(
            "has 53 characters, at most 52 fit: the StatefulSet is named <name>, and Kubernetes labels its pods <statefulset>-<revision hash> in at most 63 characters; choose a shorter name"
        ),
        "{}",
        standalone[0].message
    );
    // The issue's examples: 63 characters standalone, 55 in a group.
    assert_eq!(named(&"a".repeat(63), |_| {}).len(), 1);
    let grouped = named(&"a".repeat(45), group);
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    assert!(grouped[0].message.contains(
        "at most 44 fit: an availability group's arbiter StatefulSet is named <name>-arbiter"
    ));
    assert_eq!(named(&"a".repeat(55), group).len(), 1);
}

#[test]
fn a_name_must_be_able_to_name_services() {
    for name in ["1db", "db.prod", "-db", "db-", "Db"] {
        assert_only(
            &errors_of(|v| v["metadata"]["name"] = json!(name)),
            "metadata.name",
            &format!(
                "{name:?} cannot name the database's Services and pods: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
            ),
        );
    }
    assert_eq!(errors_of(|v| v["metadata"]["name"] = json!("db-1")), []);
}

#[test]
fn inline_configuration_cannot_lower_tls_or_take_the_operators_keys() {
    let inline = |text: &str| {
        errors_of(|v| v["spec"]["configuration"] = json!({"inline": {"mssql.conf": text}}))
    };
    assert_eq!(inline("[memory]\nmemorylimitmb = 2048\n"), []);
    assert_only(
        &inline("[network]\ntlsprotocols = 1.0\n"),
        "spec.configuration.inline[mssql.conf]",
        "[network] tlsprotocols = 1.0: TLS 1.0 is refused, only 1.2 and 1.3 are allowed; remove the key to let the operator choose (1.2, and 1.3 too from SQL Server 2025)",
    );
    let errs = inline("[network]\nforceencryption = 1\ntlscert = /x\ntlskey = /y\n");
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.iter().all(|e| {
        e.field == "spec.configuration.inline[mssql.conf]"
            && e.message
                .contains("is set by the operator and cannot be overridden: remove it")
    }));
    assert_only(
        &inline("memorylimitmb = 1\n"),
        "spec.configuration.inline[mssql.conf]",
        "mssql.conf line 1: expected `[section]` or `key = value` inside a section, found \"memorylimitmb = 1\"",
    );
}

#[test]
fn pod_spec_fields_outside_the_typed_model_are_checked_not_dropped() {
    let pod =
        |field: &str, value: Value| errors_of(|v| v["spec"]["podTemplate"]["spec"][field] = value);
    assert_eq!(pod("dnsPolicy", json!("ClusterFirst")), []);
    assert_eq!(
        pod(
            "hostAliases",
            json!([{"ip": "10.0.0.9", "hostnames": ["a"]}])
        ),
        []
    );
    assert_eq!(pod("podPlacementPolicy", json!({"name": "default"})), []);

    let wrong = pod("hostNetwork", json!("yes"));
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert_eq!(wrong[0].field, "spec.podTemplate.spec.hostNetwork");
    assert!(
        wrong[0]
            .message
            .starts_with("invalid type: string \"yes\", expected a boolean"),
        "{}",
        wrong[0].message
    );

    let wrong = pod("dnsPolicy", json!(5));
    assert_eq!(wrong[0].field, "spec.podTemplate.spec.dnsPolicy");

    let nested = pod(
        "topologySpreadConstraints",
        json!([{"maxSkew": "one", "topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule"}]),
    );
    assert_eq!(
        nested[0].field, "spec.podTemplate.spec.topologySpreadConstraints[0].maxSkew",
        "{nested:?}"
    );

    assert_only(
        &pod("hostNetwrok", json!(true)),
        "spec.podTemplate.spec.hostNetwrok",
        "not a field of a Kubernetes PodSpec here; check its spelling and place with `kubectl explain pod.spec`",
    );
    assert_only(
        &pod(
            "hostAliases",
            json!([{"ip": "10.0.0.9", "hostname": ["a"]}]),
        ),
        "spec.podTemplate.spec.hostAliases[0].hostname",
        "not a field of a Kubernetes PodSpec here; check its spelling and place with `kubectl explain pod.spec`",
    );
    let placement = pod("podPlacementPolicy", json!({"name": "spread"}));
    assert_eq!(
        placement[0].field,
        "spec.podTemplate.spec.podPlacementPolicy"
    );
    // Several wrong fields: each is named, none hides the others.
    let errs = errors_of(|v| {
        v["spec"]["podTemplate"]["spec"]["hostNetwork"] = json!("yes");
        v["spec"]["podTemplate"]["spec"]["dnsPolicy"] = json!(5);
    });
    assert_eq!(errs.len(), 2, "{errs:?}");
}
