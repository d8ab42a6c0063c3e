//! The chart's RBAC is enough and minimal. The operator binary runs as the chart's ServiceAccount
//! (a TokenRequest token, rendered ServiceAccount, ClusterRole(Binding) and Role(Binding) applied),
//! through every feature: provisioning with TLS from an Issuer, add TLS, rotate, change to a
//! ClusterIssuer, remove TLS, Restart, halt and resume, a refused deletion (`DoNotTerminate`)
//! reported as a repeated Warning event, deletion with `WipeOut`, and leader election on its Lease. Then the API server's
//! audit log (`mssql_e2e::audit`) proves that no request of that account was refused and that every granted (verb, resource) was
//! used.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use mssql_api::MssqlServer;
use mssql_certs::cert_manager::{CaIssuer, ClusterIssuer, ClusterIssuerSpec, IssuerConfig};
use mssql_e2e::audit::{Access, Audited, audited};
use mssql_e2e::chart::render;
use mssql_e2e::cluster::{
    TestNamespace, ca_issuer, eventually, make_ca, tls_secret, wait_ready_replicas,
};
use mssql_e2e::fixture::{
    READY_TIMEOUT, SHORT, Setup, create_ops, forbid_pods, wait_condition_says, wait_ops,
};
use mssql_e2e::operator::Operator;
use mssql_e2e::renewal::{renew_server_certificate, wait_renewal_request};
use mssql_e2e::{Scratch, example_in, kubectl, kubectl_ok};
use serde_json::{Value, json};

// Generous: on fake nodes a PodDisruptionBudget can be held for up to two minutes (docs/testing.md).
const OPS_TIMEOUT: Duration = Duration::from_secs(300);

/// Granted permissions, as (API group, resource[/subresource], verb), that the scenario does not
/// exercise, each with why it is still needed. Empty: the scenario uses every one.
const NOT_EXERCISED: &[(&str, &str, &str)] = &[
    // Held only to be granted, by name, to an availability group's coordinators (its Role):
    // RBAC lets the operator grant only what it holds. The coordinators use them.
    ("", "pods", "get"),
    ("", "pods", "patch"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "update"),
];

/// The chart's kinds that give the operator its identity and permissions, and the webhook's
/// configuration and Secret it keeps.
const RBAC_KINDS: [&str; 7] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingWebhookConfiguration",
    "Secret",
];

/// Cluster-scoped objects of the test, deleted when dropped (namespaces do not take them along).
struct ClusterScoped(Vec<(String, String)>);

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        for (kind, name) in &self.0 {
            let _ = kubectl(&["delete", kind, name, "--ignore-not-found"], None);
        }
    }
}

/// A kubeconfig for the plane in `KUBECONFIG` that authenticates with `token`.
fn kubeconfig_with_token(token: &str, namespace: &str) -> Value {
    let admin: Value = serde_json::from_str(&kubectl_ok(
        &["config", "view", "--raw", "--minify", "-o", "json"],
        None,
    ))
    .unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "plane", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "plane", "user": "operator", "namespace": namespace}}],
        "current-context": "operator",
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port`: the status code and body.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// Every permission the rules grant.
fn granted(rules: &[Value]) -> BTreeSet<Access> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut granted = BTreeSet::new();
    for rule in rules {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

/// Both modes, one after the other: an operator that watches every namespace would also
/// reconcile the databases of the one that watches a few.
#[tokio::test(flavor = "multi_thread")]
async fn the_charts_rbac_runs_every_feature_and_grants_nothing_unused() {
    runs_every_feature_and_uses_every_grant(false).await;
    runs_every_feature_and_uses_every_grant(true).await;
}

/// The scenario as the chart's ServiceAccount; `by_namespace`: with `watchNamespaces` (a Role in
/// each watched namespace, no cluster-wide Secret access).
async fn runs_every_feature_and_uses_every_grant(by_namespace: bool) {
    let mode = if by_namespace { "rbac-ns" } else { "rbac" };
    let t = Setup::without_operator(mode).await;
    let operator_ns = TestNamespace::new(&t.client, &format!("{mode}-operator")).await;
    let quota_ns = TestNamespace::new(&t.client, &format!("{mode}-quota")).await;
    let release = format!("{mode}-{}", std::process::id());
    let watched = format!("{},{}", t.ns.name, quota_ns.name);
    let watch = format!("watchNamespaces={{{watched}}}");

    // The chart's ServiceAccount and RBAC, rendered for a release in the operator's namespace;
    // its webhook configuration selects no namespace (the chart's Service has no pod behind it
    // here), but the operator keeps its CA bundle and Secret as in a cluster.
    let nowhere = "webhook.namespaceSelector.matchLabels.mssql-operator\\.test/rbac=nowhere";
    let sets: &[&str] = if by_namespace {
        &[nowhere, &watch]
    } else {
        &[nowhere]
    };
    let objects: Vec<Value> = render(&release, &operator_ns.name, sets)
        .into_iter()
        .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
        .collect();
    let name_of = |kind: &str| {
        let found: Vec<_> = objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind} in the chart");
        found[0]["metadata"]["name"].as_str().unwrap().to_owned()
    };
    let account = name_of("ServiceAccount");
    let mut cleanup = ClusterScoped(vec![
        (
            "clusterrolebinding".to_owned(),
            name_of("ClusterRoleBinding"),
        ),
        ("clusterrole".to_owned(), name_of("ClusterRole")),
        (
            "validatingwebhookconfiguration".to_owned(),
            name_of("ValidatingWebhookConfiguration"),
        ),
    ]);
    let (webhook_configuration, webhook_secret) =
        (name_of("ValidatingWebhookConfiguration"), name_of("Secret"));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    kubectl_ok(&["apply", "-f", "-"], Some(&list.to_string()));
    let rules: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .flat_map(|o| o["rules"].as_array().unwrap().clone())
        .collect();

    // The operator as that ServiceAccount, with a TokenRequest token.
    let token = kubectl_ok(
        &[
            "create",
            "token",
            &account,
            "-n",
            &operator_ns.name,
            "--duration=2h",
        ],
        None,
    );
    let scratch = Scratch::new(&format!("{release}-operator"));
    let dir = scratch.path();
    std::fs::create_dir_all(dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kubeconfig_with_token(token.trim(), &operator_ns.name).to_string(),
    )
    .unwrap();
    let log_path = dir.join("operator.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let webhook_port = free_port();
    let webhook_listen = format!("127.0.0.1:{webhook_port}");
    let mut args = vec![
        "run",
        "--listen",
        &listen,
        "--lease-namespace",
        &operator_ns.name,
        "--webhook-listen",
        &webhook_listen,
        "--webhook-host",
        "127.0.0.1",
        "--webhook-secret",
        &webhook_secret,
        "--webhook-configuration",
        &webhook_configuration,
    ];
    if by_namespace {
        args.extend(["--watch-namespaces", &watched]);
    }
    let operator = Operator::start(
        &args,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAME", "rbac-operator-0"),
        ],
        &log,
    );
    let operator_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // The probes answer on --listen; the Lease names this replica.
    eventually("the operator to be ready", SHORT, || async {
        match http_get(port, "/readyz") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", operator_log())),
        }
    })
    .await;
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Ok(200));
    // The webhook judges a database as the API server would ask it to (its configuration selects
    // no namespace here): it looks the version up with the chart's grants.
    let db: Value = serde_saphyr::from_str(&example_in("ms-standalone", &t.ns.name)).unwrap();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "rbac", "kind": {"group": "kubedb.com", "kind": "MSSQLServer"},
                    "operation": "CREATE", "namespace": t.ns.name, "object": db}});
    let url = format!(
        "https://127.0.0.1:{webhook_port}{}",
        mssql_operator::admission::PATH
    );
    eventually("the webhook to judge a database", SHORT, || async {
        let answer = std::process::Command::new("curl")
            .args([
                "-sSk",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ])
            .arg(&url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut curl| {
                curl.stdin
                    .take()
                    .unwrap()
                    .write_all(review.to_string().as_bytes())?;
                curl.wait_with_output()
            })
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&answer.stdout).into_owned();
        let verdict: Value = serde_json::from_str(&text)
            .map_err(|_| format!("{text}{}", String::from_utf8_lossy(&answer.stderr)))?;
        (verdict["response"]["allowed"] == true)
            .then_some(())
            .ok_or(text)
    })
    .await;
    assert_eq!(http_get(port, "/metrics").map(|r| r.0), Ok(200));
    let holder = kubectl_ok(
        &[
            "get",
            "lease",
            "mssql-operator",
            "-n",
            &operator_ns.name,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    assert_eq!(holder, "rbac-operator-0");

    // The webhook's CA bundle, set by the operator.
    eventually(
        "the operator to set the webhook's CA bundle",
        SHORT,
        || async {
            let bundle = kubectl_ok(
                &[
                    "get",
                    "validatingwebhookconfiguration",
                    &webhook_configuration,
                    "-o",
                    "jsonpath={.webhooks[*].clientConfig.caBundle}",
                ],
                None,
            );
            if bundle.split(' ').filter(|b| !b.is_empty()).count() == 2 {
                Ok(())
            } else {
                Err(format!("{bundle:?}; log:\n{}", operator_log()))
            }
        },
    )
    .await;

    // A pod the StatefulSet cannot create (a quota allows none): the operator reads why.
    forbid_pods(&quota_ns.name);
    ca_issuer(
        &t.client,
        &quota_ns.name,
        "mssqlserver-ca-issuer",
        "mssqlserver",
    )
    .await;
    let quota_db = example_in("ms-standalone", &quota_ns.name);
    kubectl_ok(&["create", "-f", "-"], Some(&quota_db));
    let databases = Api::<MssqlServer>::namespaced(t.client.clone(), &quota_ns.name);
    wait_condition_says(
        &databases,
        "ms-standalone",
        "ReplicaReady",
        "exceeded quota",
    )
    .await;
    databases
        .delete("ms-standalone", &Default::default())
        .await
        .unwrap();
    eventually("the quota's database to go", SHORT, || async {
        match databases.get_opt("ms-standalone").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A database that must not be deleted (deletionPolicy DoNotTerminate), provisioned beside:
    // an availability group, so that its coordinators' Lease, Secrets, Role and RoleBinding are
    // made with the chart's grants (its pods are kwok's: no coordinator runs).
    t.create_example("mssql-ag-cluster", |db| {
        db["metadata"]["name"] = json!("ms-keep");
        db["spec"]["deletionPolicy"] = json!("DoNotTerminate");
        db["spec"]["storageType"] = json!("Ephemeral");
        db["spec"].as_object_mut().unwrap().remove("storage");
    })
    .await;

    // Provision with TLS from an Issuer; add TLS; rotate.
    t.create_example("ms-standalone", |_| {}).await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;
    for example in ["msops-add-tls", "msops-rotate"] {
        let name = create_ops(&t, example, |_| {}).await;
        wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    }

    // Change to a ClusterIssuer (its CA secret lives in cert-manager's cluster resource namespace).
    let issuer_name = format!("{release}-ca");
    let (ca, key) = make_ca("rbac-cluster-ca", "kubedb");
    let ca_secret = tls_secret(&issuer_name, &ca, &key);
    Api::<Secret>::namespaced(t.client.clone(), "cert-manager")
        .create(&PostParams::default(), &ca_secret)
        .await
        .unwrap();
    cleanup
        .0
        .push(("clusterissuer".to_owned(), issuer_name.clone()));
    let issuer = ClusterIssuer::new(
        &issuer_name,
        ClusterIssuerSpec {
            config: IssuerConfig {
                ca: Some(CaIssuer {
                    secret_name: issuer_name.clone(),
                }),
                ..IssuerConfig::default()
            },
        },
    );
    Api::<ClusterIssuer>::all(t.client.clone())
        .create(&PostParams::default(), &issuer)
        .await
        .unwrap();
    let name = create_ops(&t, "msops-change-issuer", |ops| {
        ops["spec"]["tls"]["issuerRef"] =
            json!({"name": issuer_name, "kind": "ClusterIssuer", "apiGroup": "cert-manager.io"});
    })
    .await;
    wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    let ca = t.secret_text("ms-standalone-server-cert", "ca.crt").await;
    assert!(
        mssql_certs::inspect::parse_certificate(ca.as_bytes())
            .unwrap()
            .subject
            .contains("CN=rbac-cluster-ca"),
        "the server certificate is issued by the ClusterIssuer's CA"
    );

    // A renewal, as `cmctl renew` makes one: the operator creates the Restart that rolls it out.
    renew_server_certificate(&t, "ms-standalone").await;
    let renewal = wait_renewal_request(&t, "ms-standalone", &[], SHORT).await;
    wait_ops(&t, &renewal.name_any(), "Successful", OPS_TIMEOUT).await;

    // Remove TLS; restart.
    let name = create_ops(&t, "msops-remove", |_| {}).await;
    wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;
    let name = create_ops(&t, "msops-rotate", |ops| {
        ops["metadata"]["name"] = json!("msops-restart");
        ops["spec"] = json!({"type": "Restart", "databaseRef": {"name": "ms-standalone"}});
    })
    .await;
    wait_ops(&t, &name, "Successful", OPS_TIMEOUT).await;

    // Halt and resume.
    t.patch_database("ms-standalone", &json!({"spec": {"halted": true}}))
        .await;
    t.wait_phase("ms-standalone", "Halted", SHORT).await;
    t.patch_database("ms-standalone", &json!({"spec": {"halted": false}}))
        .await;
    t.wait_phase("ms-standalone", "Ready", READY_TIMEOUT).await;

    // Deleting the DoNotTerminate database is refused, told once per change of the database: a
    // change while it waits refuses it again, the same Warning event on the same object, which
    // kube's Recorder turns into a series (a patch).
    // Its pods are kwok's, where no coordinator runs: the roles are set as one would set them.
    wait_ready_replicas(&t.client, &t.ns.name, "ms-keep", 3).await;
    for (pod, role) in [
        ("ms-keep-0", "primary"),
        ("ms-keep-1", "secondary"),
        ("ms-keep-2", "secondary"),
    ] {
        t.set_role(pod, role).await;
    }
    t.wait_phase("ms-keep", "Ready", READY_TIMEOUT).await;
    t.api::<MssqlServer>()
        .delete("ms-keep", &DeleteParams::default())
        .await
        .unwrap();
    let events = t.api::<Event>();
    let refusals = || async {
        let list = events
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<Vec<i32>, String>(
            list.items
                .iter()
                .filter(|e| {
                    e.reason.as_deref() == Some("DeletionRefused")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ms-keep")
                })
                .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                .collect(),
        )
    };
    for (count, what) in [
        (1, "a DeletionRefused event of ms-keep"),
        (2, "a repeated one"),
    ] {
        eventually(what, Duration::from_secs(60), || async {
            let counts = refusals().await?;
            match counts.iter().any(|c| *c >= count) {
                true => Ok(()),
                false => Err(format!("DeletionRefused events with counts {counts:?}")),
            }
        })
        .await;
        if count == 1 {
            let touch = json!({"metadata": {"annotations": {"team": "keeps it"}}});
            t.patch_database("ms-keep", &touch).await;
        }
    }
    t.patch_database("ms-keep", &json!({"spec": {"deletionPolicy": "WipeOut"}}))
        .await;

    // Delete both databases (deletionPolicy WipeOut): volumes and TLS secrets go too.
    t.api::<MssqlServer>()
        .delete("ms-standalone", &DeleteParams::default())
        .await
        .unwrap();
    for db in ["ms-keep", "ms-standalone"] {
        t.wait_gone::<MssqlServer>(db).await;
    }
    t.wait_gone::<PersistentVolumeClaim>("data-ms-standalone-0")
        .await;
    t.wait_gone::<Secret>("ms-standalone-server-cert").await;

    // Let the last writes reach the log, then stop the operator.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(operator);

    let user = format!("system:serviceaccount:{}:{account}", operator_ns.name);
    let Audited { used, refused, .. } = audited(&user);
    let mut report = String::new();
    for ((group, resource, verb), count) in &used {
        report.push_str(&format!("{count:6} {verb:16} {resource} ({group:?})\n"));
    }
    println!("requests of {user}:\n{report}");
    assert!(!used.is_empty(), "no request of {user} in the audit log");
    assert!(
        refused.is_empty(),
        "refused requests of {user}:\n{}\noperator log:\n{}",
        refused.join("\n"),
        operator_log()
    );
    let exceptions: BTreeSet<_> = NOT_EXERCISED
        .iter()
        .map(|(g, r, v)| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        .collect();
    let unused: Vec<_> = granted(&rules)
        .into_iter()
        .filter(|access| !used.contains_key(access) && !exceptions.contains(access))
        .collect();
    assert!(
        unused.is_empty(),
        "granted but never used (remove them from the chart, or exercise them): {unused:?}\nused:\n{report}"
    );
    drop(cleanup);
    let _ = Api::<Secret>::namespaced(t.client.clone(), "cert-manager")
        .delete(&issuer_name, &DeleteParams::default())
        .await;
}
