//! The ops-manager on the local control plane: KubeDB's ReconfigureTLS guide (add TLS, rotate,
//! change issuer, remove TLS) on a standalone server and a 3-replica availability group, Restart,
//! and the failures: an issuer that does not exist, a database that never becomes Ready, a type
//! this operator does not run, superseded and concurrent requests.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};
use mssql_api::condition;
use mssql_api::{MssqlServer, MssqlServerOpsRequest};
use mssql_certs::cert_manager::Certificate;
use mssql_e2e::cluster::{ca_issuer, eventually, wait_ready_replicas};
use mssql_e2e::fixture::{READY_TIMEOUT, SHORT, Setup, create_ops, summary, wait_ops};
use serde_json::{Value, json};

// Generous: on fake nodes a PodDisruptionBudget can be held for up to two minutes (docs/testing.md).
const OPS_TIMEOUT: Duration = Duration::from_secs(300);

fn types(ops: &MssqlServerOpsRequest) -> Vec<String> {
    ops.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .map(|c| c.type_.clone())
        .collect()
}

/// KubeDB's condition sequence of a ReconfigureTLS request over `pods` (in restart order).
fn expected_tls(rotate: bool, certificates: bool, pods: &[&str]) -> Vec<String> {
    let mut expected = vec!["ReconfigureTLS", "DatabasePauseSucceeded"];
    if rotate {
        expected.push("IssueCertificatesSucceeded");
    }
    if certificates {
        expected.extend([
            "GetCertificate",
            "CheckReadyCondition",
            "IssuingCondition",
            "CertificateSynced",
        ]);
    }
    expected.push("UpdatePetSets");
    let mut expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
    for pod in pods {
        for step in ["GetPod", "EvictPod", "CheckPodRunning"] {
            expected.push(format!("{step}--{pod}"));
        }
    }
    expected.extend(["RestartNodes".to_owned(), "Successful".to_owned()]);
    expected
}

async fn pod_uids(t: &Setup, db: &str) -> BTreeMap<String, String> {
    let pods = t
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={db}")))
        .await
        .unwrap();
    pods.items
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap()))
        .collect()
}

/// Every pod replaced exactly once: new uids, and one restart each recorded.
fn assert_each_pod_restarted_once(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    ops: &MssqlServerOpsRequest,
) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (pod, uid) in before {
        assert_ne!(&after[pod], uid, "{pod} was not restarted");
        let evictions = types(ops)
            .iter()
            .filter(|t| **t == format!("EvictPod--{pod}"))
            .count();
        assert_eq!(evictions, 1, "{pod}");
    }
}

async fn serial_and_ca(t: &Setup, secret: &str) -> (String, String) {
    let crt = t.secret_text(secret, "tls.crt").await;
    let ca = t.secret_text(secret, "ca.crt").await;
    let serial = mssql_certs::inspect::parse_certificate(crt.as_bytes())
        .unwrap()
        .serial;
    let ca_subject = mssql_certs::inspect::parse_certificate(ca.as_bytes())
        .unwrap()
        .subject;
    (serial, ca_subject)
}

async fn assert_resumed_and_ready(t: &Setup, db: &str) -> MssqlServer {
    let db = t.wait_phase(db, "Ready", SHORT).await;
    let conditions = &db.status.as_ref().unwrap().conditions;
    assert!(
        condition::find(conditions, "Paused").is_none(),
        "the database is resumed: {:?}",
        summary(conditions)
    );
    db
}

async fn label_roles(t: &Setup, db: &str, replicas: i32) {
    for i in 0..replicas {
        let pod = format!("{db}-{i}");
        t.set_role(&pod, if i == 0 { "primary" } else { "secondary" })
            .await;
    }
}

/// Runs `example` on the database and checks KubeDB's sequence, the restarts and the resume.
async fn run_tls(
    t: &Setup,
    db: &str,
    example: &str,
    pods: &[&str],
    rotate: bool,
    certificates: bool,
) -> MssqlServerOpsRequest {
    let before = pod_uids(t, db).await;
    let name = create_ops(t, example, |_| {}).await;
    let ops = wait_ops(t, &name, "Successful", OPS_TIMEOUT).await;
    assert_eq!(
        types(&ops),
        expected_tls(rotate, certificates, pods),
        "{example}"
    );
    let successful = ops.status.as_ref().unwrap().conditions.last().unwrap();
    assert_eq!(
        successful.message.as_deref(),
        Some("Successfully completed reconfigureTLS for mssqlserver.")
    );
    // Every step was recorded as an Event, and none of a request that succeeded is a Warning.
    let events: Vec<(String, String)> = t
        .typed_events_of(&name)
        .await
        .into_iter()
        .map(|(type_, reason, _)| (type_, reason))
        .collect();
    assert!(
        events
            .iter()
            .any(|(_, reason)| reason.starts_with("EvictPod--")),
        "{events:?}"
    );
    assert!(
        events.iter().all(|(type_, _)| type_ == "Normal"),
        "{events:?}"
    );
    assert_each_pod_restarted_once(&before, &pod_uids(t, db).await, &ops);
    ops
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_add_rotate_change_issuer_remove() {
    let t = Setup::new("tls-standalone").await;
    ca_issuer(
        &t.client,
        &t.ns.name,
        "mssqlserver-new-ca-issuer",
        "ca-updated",
    )
    .await;
    t.create_example("ms-standalone", |_| {}).await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    let pods = ["ms-standalone-0"];
    assert_eq!(
        t.secret_text("ms-standalone-config", "mssql.conf").await,
        "[language]\nlcid = 1033\n"
    );

    // Add TLS, with KubeDB's client subject override.
    run_tls(&t, "ms-standalone", "msops-add-tls", &pods, false, true).await;
    let conf = t.secret_text("ms-standalone-config", "mssql.conf").await;
    assert!(conf.contains("[network]\nforceencryption = 1\n"), "{conf}");
    let client = t.secret_text("ms-standalone-client-cert", "tls.crt").await;
    assert_eq!(
        mssql_certs::inspect::parse_certificate(client.as_bytes())
            .unwrap()
            .subject,
        "CN=mssql,OU=client,O=mssqlserver"
    );
    let db = assert_resumed_and_ready(&t, "ms-standalone").await;
    assert_eq!(
        db.spec.tls.as_ref().unwrap().client_tls,
        Some(true),
        "the new TLS spec is written into the database"
    );

    // Rotate: new serials, same CA.
    let (server_serial, ca) = serial_and_ca(&t, "ms-standalone-server-cert").await;
    let (client_serial, _) = serial_and_ca(&t, "ms-standalone-client-cert").await;
    run_tls(&t, "ms-standalone", "msops-rotate", &pods, true, true).await;
    let (new_server_serial, same_ca) = serial_and_ca(&t, "ms-standalone-server-cert").await;
    assert_ne!(new_server_serial, server_serial);
    assert_ne!(
        serial_and_ca(&t, "ms-standalone-client-cert").await.0,
        client_serial
    );
    assert_eq!(same_ca, ca);
    assert_resumed_and_ready(&t, "ms-standalone").await;

    // Change issuer: issued by the new CA.
    run_tls(
        &t,
        "ms-standalone",
        "msops-change-issuer",
        &pods,
        false,
        true,
    )
    .await;
    let (_, new_ca) = serial_and_ca(&t, "ms-standalone-server-cert").await;
    assert!(new_ca.contains("CN=ca-updated"), "{new_ca}");
    let db = assert_resumed_and_ready(&t, "ms-standalone").await;
    assert_eq!(
        db.spec
            .tls
            .as_ref()
            .unwrap()
            .issuer_ref
            .as_ref()
            .unwrap()
            .name,
        "mssqlserver-new-ca-issuer"
    );

    // Remove TLS: mssql.conf without [network]; the certificates stay.
    run_tls(&t, "ms-standalone", "msops-remove", &pods, false, false).await;
    assert_eq!(
        t.secret_text("ms-standalone-config", "mssql.conf").await,
        "[language]\nlcid = 1033\n"
    );
    let db = assert_resumed_and_ready(&t, "ms-standalone").await;
    assert_eq!(db.spec.tls.as_ref().unwrap().client_tls, Some(false));
    assert!(
        t.exists::<k8s_openapi::api::core::v1::Secret>("ms-standalone-server-cert")
            .await
    );

    let events = t.events_of("msops-add-tls").await;
    for (reason, message) in [
        (
            "Starting",
            format!("Pausing MSSQLServer database: {}/ms-standalone", t.ns.name),
        ),
        (
            "Successful",
            format!(
                "Successfully resumed MSSQLServer database: {}/ms-standalone for MSSQLServerOpsRequest: msops-add-tls",
                t.ns.name
            ),
        ),
        (
            "EvictPod--ms-standalone-0",
            "evict pod; ConditionStatus:True; PodName:ms-standalone-0".to_owned(),
        ),
    ] {
        assert!(
            events.iter().any(|(r, m)| *r == reason && *m == message),
            "{reason}: {message} not in {events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn availability_group_restarts_secondaries_first_and_the_primary_last() {
    let t = Setup::new("tls-ag").await;
    ca_issuer(
        &t.client,
        &t.ns.name,
        "mssqlserver-new-ca-issuer",
        "ca-updated",
    )
    .await;
    t.create_example("mssql-ag-cluster", |_| {}).await;
    wait_ready_replicas(&t.client, &t.ns.name, "mssql-ag-cluster", 3).await;
    // The primary is pod 1 here, so the order cannot be mistaken for ordinal order.
    let label = |primary: i32| {
        let t = &t;
        async move {
            for i in 0..3 {
                t.set_role(
                    &format!("mssql-ag-cluster-{i}"),
                    if i == primary { "primary" } else { "secondary" },
                )
                .await;
            }
            t.wait_phase("mssql-ag-cluster", "Ready", SHORT).await;
        }
    };
    label(1).await;
    let order = [
        "mssql-ag-cluster-0",
        "mssql-ag-cluster-2",
        "mssql-ag-cluster-1",
    ];

    for (example, rotate, certificates) in [
        ("msops-ag-add-tls", false, true),
        ("msops-ag-rotate", true, true),
        ("msops-ag-change-issuer", false, true),
        ("msops-ag-remove", false, false),
    ] {
        run_tls(
            &t,
            "mssql-ag-cluster",
            example,
            &order,
            rotate,
            certificates,
        )
        .await;
        // The recreated primary has no role until the coordinator (here: the test) gives it one.
        label(1).await;
    }
    let (_, ca) = serial_and_ca(&t, "mssql-ag-cluster-endpoint-cert").await;
    assert!(
        ca.contains("CN=ca-updated"),
        "the endpoint certificate follows the issuer too: {ca}"
    );
    assert_resumed_and_ready(&t, "mssql-ag-cluster").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_restarts_every_pod_once() {
    let t = Setup::new("restart").await;
    t.create_example("mssql-ag-cluster", |_| {}).await;
    wait_ready_replicas(&t.client, &t.ns.name, "mssql-ag-cluster", 3).await;
    label_roles(&t, "mssql-ag-cluster", 3).await;
    t.wait_phase("mssql-ag-cluster", "Ready", SHORT).await;
    let before = pod_uids(&t, "mssql-ag-cluster").await;
    let name = create_ops(&t, "msops-rotate", |ops| {
        ops["metadata"]["name"] = json!("restart-ag");
        ops["spec"] = json!({"type": "Restart", "databaseRef": {"name": "mssql-ag-cluster"}, "restart": {}, "timeout": "2m"});
    })
    .await;
    let ops = wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    // UpdatePetSets: the workload is applied from what the Secrets hold before the restarts.
    let mut expected = vec![
        "Restart".to_owned(),
        "DatabasePauseSucceeded".to_owned(),
        "UpdatePetSets".to_owned(),
    ];
    for pod in [
        "mssql-ag-cluster-1",
        "mssql-ag-cluster-2",
        "mssql-ag-cluster-0",
    ] {
        for step in ["GetPod", "EvictPod", "CheckPodRunning"] {
            expected.push(format!("{step}--{pod}"));
        }
    }
    expected.extend(["RestartNodes".to_owned(), "Successful".to_owned()]);
    assert_eq!(types(&ops), expected);
    let conditions = &ops.status.as_ref().unwrap().conditions;
    assert_eq!(
        conditions[0].message.as_deref(),
        Some("MSSQLServerOpsRequest has started to restart MSSQLServer nodes")
    );
    assert_eq!(
        conditions.last().unwrap().message.as_deref(),
        Some("Controller has successfully restart the MSSQLServer replicas")
    );
    assert_each_pod_restarted_once(&before, &pod_uids(&t, "mssql-ag-cluster").await, &ops);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_that_does_not_exist_fails_after_the_timeout_and_resumes_the_database() {
    let t = Setup::new("no-issuer").await;
    t.create_example("ms-standalone", |_| {}).await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    let before = pod_uids(&t, "ms-standalone").await;
    let name = create_ops(&t, "msops-change-issuer", |ops| {
        ops["spec"]["tls"]["issuerRef"]["name"] = json!("no-such-issuer");
        ops["spec"]["timeout"] = json!("15s");
    })
    .await;
    // While it waits, it says for what.
    let requests = t.api::<MssqlServerOpsRequest>();
    eventually(
        "the request to say it waits for the issuer",
        SHORT,
        || async {
            let ops = requests.get(&name).await.map_err(|e| e.to_string())?;
            let conditions = ops.status.map(|s| s.conditions).unwrap_or_default();
            let synced = condition::find(&conditions, "CertificateSynced").cloned();
            match synced {
                Some(c)
                    if !c.is_true()
                        && c.message.as_deref().is_some_and(|m| {
                            m.contains("Issuer")
                            && m.contains(
                                "no-such-issuer does not exist; no Certificate was switched to it",
                            )
                        }) =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let ops = wait_ops(&t, &name, "Failed", Duration::from_secs(60)).await;
    // No Certificate was switched to it, so none is re-issued when the request is over.
    let certificates = t
        .api::<Certificate>()
        .list(&ListParams::default())
        .await
        .unwrap();
    for certificate in &certificates.items {
        assert_eq!(
            certificate.spec.issuer_ref.name,
            "mssqlserver-ca-issuer",
            "{} was switched",
            certificate.name_any()
        );
    }
    let failed = condition::find(&ops.status.as_ref().unwrap().conditions, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("CertificateSynced"));
    let message = failed.message.clone().unwrap();
    assert!(
        message.starts_with("certificates were not synced within 15s: "),
        "{message}"
    );
    assert!(
        message.contains("no-such-issuer"),
        "the reason names the issuer: {message}"
    );
    assert_eq!(
        pod_uids(&t, "ms-standalone").await,
        before,
        "no pod was restarted"
    );
    let db = assert_resumed_and_ready(&t, "ms-standalone").await;
    assert_eq!(
        db.spec.tls.unwrap().issuer_ref.unwrap().name,
        "mssqlserver-ca-issuer",
        "the database keeps its issuer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn if_ready_on_a_database_that_never_becomes_ready_fails_after_the_timeout() {
    let t = Setup::new("never-ready").await;
    // No role labels: the group never gets a primary, so it never becomes Ready.
    t.create_example("mssql-ag-cluster", |_| {}).await;
    let name = create_ops(&t, "msops-ag-rotate", |ops| {
        ops["spec"]["timeout"] = json!("10s")
    })
    .await;
    let ops = wait_ops(&t, &name, "Failed", Duration::from_secs(60)).await;
    let failed = condition::find(&ops.status.as_ref().unwrap().conditions, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("Pending"));
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .contains("apply is IfReady: waiting for it to be Ready"),
        "{failed:?}"
    );
    let db = t
        .api::<MssqlServer>()
        .get("mssql-ag-cluster")
        .await
        .unwrap();
    assert!(
        condition::find(&db.status.unwrap().conditions, "Paused").is_none(),
        "never paused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_types_and_invalid_specs_fail_at_once_without_pausing() {
    let t = Setup::new("unsupported").await;
    t.create_example("ms-standalone", |_| {}).await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    let name = create_ops(&t, "msops-rotate", |ops| {
        ops["metadata"]["name"] = json!("scale");
        ops["spec"] = json!({"type": "HorizontalScaling", "databaseRef": {"name": "ms-standalone"}, "horizontalScaling": {"replicas": 3}});
    })
    .await;
    let ops = wait_ops(&t, &name, "Failed", SHORT).await;
    let conditions = &ops.status.as_ref().unwrap().conditions;
    assert_eq!(types(&ops), ["Failed"]);
    assert!(
        conditions[0]
            .message
            .as_deref()
            .unwrap()
            .contains("HorizontalScaling is not supported by this operator yet")
    );
    // What `check` refuses fails the same way, in `check`'s words, instead of running with a
    // default.
    let name = create_ops(&t, "msops-rotate", |ops| {
        ops["metadata"]["name"] = json!("banana");
        ops["spec"] =
            json!({"type": "Restart", "databaseRef": {"name": "ms-standalone"}, "timeout": "banana"});
    })
    .await;
    let ops = wait_ops(&t, &name, "Failed", SHORT).await;
    assert_eq!(types(&ops), ["Failed"]);
    let failed = &ops.status.as_ref().unwrap().conditions[0];
    assert_eq!(failed.reason.as_deref(), Some("InvalidSpec"));
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "spec.timeout: timeout \"banana\" is not a duration; write it like 5m, 90s or 1h30m. \
             The database was not touched"
        )
    );
    let events = t.events_of("ms-standalone").await;
    assert!(
        !events.iter().any(|(_, m)| m.contains("Paus")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn older_requests_of_the_same_type_are_skipped_and_others_wait_their_turn() {
    let t = Setup::new("serial").await;
    t.create_example("ms-standalone", |_| {}).await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    // A request that holds the database for a while (its issuer does not exist), so that the next
    // ones wait together.
    create_ops(&t, "msops-change-issuer", |ops| {
        ops["metadata"]["name"] = json!("blocker");
        ops["spec"]["tls"]["issuerRef"]["name"] = json!("no-such-issuer");
        ops["spec"]["timeout"] = json!("15s");
    })
    .await;
    wait_ops(&t, "blocker", "Progressing", SHORT).await;
    // Three rotations and a restart; creation order is rotate-1, restart, rotate-2, rotate-3.
    let make = |name: &'static str, spec: Value| {
        let t = &t;
        async move {
            create_ops(t, "msops-rotate", |ops| {
                ops["metadata"]["name"] = json!(name);
                ops["spec"] = spec;
            })
            .await;
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    };
    let rotate = json!({"type": "ReconfigureTLS", "databaseRef": {"name": "ms-standalone"}, "tls": {"rotateCertificates": true}});
    make("rotate-1", rotate.clone()).await;
    make(
        "restart",
        json!({"type": "Restart", "databaseRef": {"name": "ms-standalone"}}),
    )
    .await;
    make("rotate-2", rotate.clone()).await;
    make("rotate-3", rotate).await;

    let ns = t.ns.name.clone();
    for skipped in ["rotate-1", "rotate-2"] {
        let ops = wait_ops(&t, skipped, "Skipped", OPS_TIMEOUT).await;
        let condition =
            condition::find(&ops.status.as_ref().unwrap().conditions, "Skipped").unwrap();
        let message = condition.message.clone().unwrap();
        assert!(message.starts_with(&format!("skipped as {ns}/rotate-3 is the most updated MSSQLServerOpsRequest of type ReconfigureTLS at ")), "{message}");
    }
    let restart = wait_ops(&t, "restart", "Successful", OPS_TIMEOUT).await;
    let rotate = wait_ops(&t, "rotate-3", "Successful", OPS_TIMEOUT).await;
    // One at a time: the restart (older) finished before the rotation started.
    let at = |ops: &MssqlServerOpsRequest, type_: &str| {
        condition::find(&ops.status.as_ref().unwrap().conditions, type_)
            .unwrap()
            .last_transition_time
            .0
    };
    assert!(
        at(&restart, "Successful") <= at(&rotate, "ReconfigureTLS"),
        "serialized: {:?} {:?}",
        types(&restart),
        types(&rotate)
    );
    assert_resumed_and_ready(&t, "ms-standalone").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_running_request_resumes_the_database() {
    let t = Setup::new("delete-ops").await;
    t.create_example("ms-standalone", |_| {}).await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    let name = create_ops(&t, "msops-change-issuer", |ops| {
        ops["spec"]["tls"]["issuerRef"]["name"] = json!("no-such-issuer");
        ops["spec"]["timeout"] = json!("10m");
    })
    .await;
    let api = t.api::<MssqlServer>();
    eventually("the database to be paused", SHORT, || async {
        let db = api.get("ms-standalone").await.map_err(|e| e.to_string())?;
        if condition::find(&db.status.unwrap_or_default().conditions, "Paused").is_some() {
            Ok(())
        } else {
            Err("not paused".into())
        }
    })
    .await;
    t.api::<MssqlServerOpsRequest>()
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    t.wait_gone::<MssqlServerOpsRequest>(&name).await;
    assert_resumed_and_ready(&t, "ms-standalone").await;
}
