//! The kubectl plugin (`target/debug/kubectl-mssql`, or `$KUBECTL_MSSQL_BIN`) against the local
//! control plane with the operator running: status without TLS, refusals before anything is
//! created, add TLS and rotate with `--watch`, the status after each, `ops list`/`describe`, and
//! a request that fails while watched; the API's own message and the fix when the operator's
//! webhook does not answer.

use std::process::{Command, Stdio};

use kube::api::PostParams;
use mssql_api::MssqlServerOpsRequest;
use mssql_certs::cert_manager::{CaIssuer, Issuer, IssuerConfig, IssuerSpec};
use mssql_certs::inspect::parse_certificate;
use mssql_e2e::fixture::{READY_TIMEOUT, Setup};
use mssql_e2e::operator::built_binary;
use mssql_e2e::{kubectl, kubectl_ok};
use serde_json::{Value, json};

const DB: &str = "ms-standalone";

/// What one run of the plugin printed.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit ok: {}\n--- stdout\n{}--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

fn plugin(args: &[&str]) -> Output {
    let binary = built_binary("kubectl-mssql", "kubectl-mssql", "KUBECTL_MSSQL_BIN");
    let output = Command::new(&binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", binary.display()));
    Output {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the plugin with its output a pipe that is closed before it writes.
fn closed_output(args: &[&str]) -> std::process::Output {
    let binary = built_binary("kubectl-mssql", "kubectl-mssql", "KUBECTL_MSSQL_BIN");
    let mut child = Command::new(&binary)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs: {e}", binary.display()));
    // It reads the request from the API server first: the pipe is closed long before it writes.
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// Runs the plugin in namespace `ns` and expects success.
#[track_caller]
fn ok(ns: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["-n", ns]);
    let out = plugin(&all);
    assert!(out.ok, "kubectl mssql {} failed:\n{out}", all.join(" "));
    out.stdout
}

/// Runs the plugin in namespace `ns`, expects failure and a stderr containing `message`.
#[track_caller]
fn refused(ns: &str, args: &[&str], message: &str) -> Output {
    let mut all = args.to_vec();
    all.extend(["-n", ns]);
    let out = plugin(&all);
    assert!(!out.ok, "kubectl mssql {} succeeded:\n{out}", all.join(" "));
    assert!(
        out.stderr.contains(message),
        "kubectl mssql {}: no {message:?} in:\n{out}",
        all.join(" ")
    );
    out
}

/// A ValidatingWebhookConfiguration removed when dropped.
struct Registered(String);

impl Drop for Registered {
    fn drop(&mut self) {
        let args = [
            "delete",
            "validatingwebhookconfiguration",
            &self.0,
            "--ignore-not-found",
        ];
        let _ = kubectl(&args, None);
    }
}

/// With mssql-operator's webhook registered for the namespace but nobody answering it (a closed
/// port on loopback), a request the plugin makes is refused by the API server: the plugin prints
/// the API's message, not a dump of its Status, and then what to do.
fn unreachable_webhook_is_explained(ns: &str) {
    let name = format!("plugin-unreachable-{ns}");
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "mssqlserveropsrequests.validate.mssql-operator.dev",
            "clientConfig": {"url": "https://127.0.0.1:1/validate"},
            "rules": [{"apiGroups": ["ops.kubedb.com"], "apiVersions": ["*"],
                       "operations": ["CREATE"], "resources": ["mssqlserveropsrequests"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 2,
        }],
    });
    kubectl_ok(&["create", "-f", "-"], Some(&configuration.to_string()));
    let _registered = Registered(name);
    let out = refused(
        ns,
        &["tls", "add", DB, "--issuer", "mssqlserver-ca-issuer"],
        "failed calling webhook \"mssqlserveropsrequests.validate.mssql-operator.dev\"",
    );
    assert!(
        out.stderr
            .contains("what to do: no replica of mssql-operator answers its admission webhook")
            && out.stderr.contains("docs/troubleshooting.md"),
        "{out}"
    );
    assert!(
        !out.stderr.contains("Status {") && !out.stderr.contains("ApiError"),
        "a Debug dump: {out}"
    );
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn server_certificate(status: &Value) -> &Value {
    status["certificates"]
        .as_array()
        .expect("certificates is a list")
        .iter()
        .find(|c| c["alias"] == "server")
        .unwrap_or_else(|| panic!("no server certificate in {status:#}"))
}

async fn secret_serial(t: &Setup) -> String {
    let crt = t.secret_text("ms-standalone-server-cert", "tls.crt").await;
    parse_certificate(crt.as_bytes()).unwrap().serial
}

async fn request_count(t: &Setup) -> usize {
    t.api::<MssqlServerOpsRequest>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .len()
}

/// Checks a `--watch` transcript: every step, the restart bar, the end. (Whether it saw the phase
/// Progressing depends on how far the request got before the watch began: an add on fake pods
/// can be done within a second.)
#[track_caller]
fn assert_watched(out: &str, steps: &[&str]) {
    for step in steps {
        assert!(
            out.contains(&format!("ok      {step}: ")),
            "no step {step} in:\n{out}"
        );
    }
    for line in [
        "ok      CheckPodRunning--ms-standalone-0: check pod running; ConditionStatus:True; PodName:ms-standalone-0",
        "restart [####################] 1/1 pods restarted",
        "phase Successful",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("is Successful"),
        "last line {last:?} of:\n{out}"
    );
    assert!(last.starts_with('['), "elapsed time first: {last:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_adds_rotates_and_reports_tls() {
    let t = Setup::new("plugin").await;
    let ns = t.ns.name.as_str();
    t.create_example(DB, |_| {}).await;
    t.wait_phase(DB, "Ready", READY_TIMEOUT).await;

    // A database without TLS says so, first thing.
    let status = ok(ns, &["tls", "status", DB]);
    assert!(
        status.starts_with(&format!(
            "MSSQLServer {ns}/{DB}: TLS is not enabled (spec.tls.clientTLS is not true)"
        )),
        "{status}"
    );
    assert_eq!(
        json(&ok(ns, &["tls", "status", DB, "-o", "json"]))["tlsEnabled"],
        false
    );

    // Refusals name the object and the fix, and create nothing.
    let missing_db = format!("MSSQLServer {ns}/nope not found");
    refused(ns, &["tls", "status", "nope"], &missing_db);
    refused(ns, &["tls", "rotate", "nope"], &missing_db);
    refused(
        ns,
        &["tls", "add", DB, "--issuer", "no-such-issuer"],
        &format!("Issuer {ns}/no-such-issuer not found: create it first, or add --cluster-issuer"),
    );
    refused(
        ns,
        &[
            "tls",
            "set-issuer",
            DB,
            "--issuer",
            "no-such-issuer",
            "--cluster-issuer",
        ],
        "ClusterIssuer no-such-issuer not found",
    );
    refused(
        ns,
        &["tls", "remove", DB],
        &format!("MSSQLServer {ns}/{DB} has no TLS to remove"),
    );
    refused(
        ns,
        &["tls", "rotate", DB, "--timeout", "soon"],
        "--timeout \"soon\" is not a duration",
    );
    unreachable_webhook_is_explained(ns);
    assert_eq!(request_count(&t).await, 0, "nothing was created");
    assert_eq!(
        ok(ns, &["ops", "list"]),
        "No MSSQLServerOpsRequests found.\n"
    );

    // Add TLS, watched to the end.
    let add = ok(
        ns,
        &[
            "tls",
            "add",
            DB,
            "--issuer",
            "mssqlserver-ca-issuer",
            "--name",
            "plugin-add",
            "--timeout",
            "5m",
            "--watch",
        ],
    );
    assert!(
        add.starts_with(&format!(
            "MSSQLServerOpsRequest {ns}/plugin-add created: add TLS (Issuer/mssqlserver-ca-issuer) on MSSQLServer {ns}/{DB}\n"
        )),
        "{add}"
    );
    assert_watched(
        &add,
        &[
            "ReconfigureTLS",
            "DatabasePauseSucceeded",
            "CertificateSynced",
            "UpdatePetSets",
            "RestartNodes",
            "Successful",
        ],
    );

    // The status now: the issuer, the serial of the secret, the SANs, every pod current.
    t.wait_phase(DB, "Ready", READY_TIMEOUT).await;
    let status = json(&ok(ns, &["tls", "status", DB, "-o", "json"]));
    assert_eq!(status["tlsEnabled"], true, "{status:#}");
    let server = server_certificate(&status);
    let serial = secret_serial(&t).await;
    assert_eq!(server["serial"], serial.as_str(), "{server:#}");
    assert_eq!(
        server["issuer"],
        serde_json::json!({"kind": "Issuer", "name": "mssqlserver-ca-issuer"})
    );
    assert_eq!(server["ready"], "True");
    assert!(server["daysLeft"].as_i64().unwrap() > 0, "{server:#}");
    assert!(server["revision"].as_i64().unwrap() >= 1, "{server:#}");
    let dns: Vec<&str> = server["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(dns.contains(&format!("{DB}.{ns}.svc").as_str()), "{dns:?}");
    assert_eq!(server["ipAddresses"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(status["pods"].as_array().unwrap().len(), 1, "{status:#}");
    assert_eq!(status["podsCurrent"], 1, "{status:#}");
    assert_eq!(status["pods"][0]["current"], true);
    assert!(status["pods"][0]["restartHash"].is_string(), "{status:#}");
    let table = ok(ns, &["tls", "status", DB]);
    for text in [
        format!("MSSQLServer {ns}/{DB}: TLS enabled (issuer Issuer/mssqlserver-ca-issuer)"),
        format!("  Serial:    {serial}"),
        "  Issuer:    Issuer/mssqlserver-ca-issuer".to_owned(),
        "1 of 1 pods run the current certificate material.".to_owned(),
    ] {
        assert!(table.contains(&text), "no {text:?} in:\n{table}");
    }
    let yaml: Value =
        serde_saphyr::from_str(&ok(ns, &["tls", "status", DB, "-o", "yaml"])).unwrap();
    assert_eq!(yaml, status, "YAML and JSON say the same");
    refused(
        ns,
        &["tls", "add", DB, "--issuer", "mssqlserver-ca-issuer"],
        &format!("MSSQLServer {ns}/{DB} already has TLS"),
    );

    // Rotate: a new serial, under a generated name.
    let rotate = ok(ns, &["tls", "rotate", DB, "--watch", "--timeout", "5m"]);
    assert_watched(
        &rotate,
        &[
            "IssueCertificatesSucceeded",
            "CertificateSynced",
            "UpdatePetSets",
        ],
    );
    let rotated = json(&ok(ns, &["tls", "status", DB, "-o", "json"]));
    let new_serial = secret_serial(&t).await;
    assert_ne!(new_serial, serial, "rotation re-issued the certificate");
    assert_eq!(server_certificate(&rotated)["serial"], new_serial.as_str());
    assert_eq!(rotated["podsCurrent"], 1, "{rotated:#}");

    // The requests: listed and described.
    let rows = json(&ok(ns, &["ops", "list", "-o", "json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["name"], "plugin-add");
    assert_eq!(
        rows[0]["operation"],
        "add TLS (Issuer/mssqlserver-ca-issuer)"
    );
    let rotate_name = rows[1]["name"].as_str().unwrap().to_owned();
    assert!(
        rotate_name.starts_with("ms-standalone-tls-rotate-"),
        "{rotate_name}"
    );
    for row in rows {
        assert_eq!(row["phase"], "Successful", "{row}");
        assert_eq!(row["database"], DB);
        assert_eq!(row["type"], "ReconfigureTLS");
    }
    let list = ok(ns, &["ops", "list", "--database", DB]);
    assert!(list.starts_with("NAME "), "{list}");
    // A reader that goes away (`| head -0`) ends the command quietly, without a panic.
    let closed = closed_output(&["ops", "describe", &rotate_name, "-n", ns]);
    assert_eq!(closed.status.code(), Some(141), "{closed:?}");
    assert!(closed.stderr.is_empty(), "{closed:?}");
    assert!(
        list.contains(&rotate_name) && list.contains("rotate certificates"),
        "{list}"
    );
    assert_eq!(
        ok(ns, &["ops", "list", "--database", "other"]),
        "No MSSQLServerOpsRequests found.\n"
    );
    let all = plugin(&["ops", "list", "-A"]);
    assert!(all.ok && all.stdout.starts_with("NAMESPACE "), "{all}");
    assert!(all.stdout.contains(ns), "{all}");
    let describe = ok(ns, &["ops", "describe", "plugin-add"]);
    for text in [
        "Name:      plugin-add",
        "Phase:     Successful",
        "Timeout:   5m",
        "Restarts:  [####################] 1/1 pods restarted",
        "ReconfigureTLS",
        "MSSQLServer ops-request has started to reconfigure tls for mssqlserver nodes",
        "EvictPod--ms-standalone-0",
        "Successfully completed reconfigureTLS for mssqlserver.",
    ] {
        assert!(describe.contains(text), "no {text:?} in:\n{describe}");
    }
    let described = json(&ok(ns, &["ops", "describe", &rotate_name, "-o", "json"]));
    let types: Vec<&str> = described["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"ReconfigureTLS"), "{types:?}");
    assert!(types.contains(&"IssueCertificatesSucceeded"), "{types:?}");
    assert_eq!(types.last(), Some(&"Successful"), "{types:?}");
    for condition in described["conditions"].as_array().unwrap() {
        assert!(
            condition["time"].as_str().unwrap().ends_with('Z'),
            "{condition}"
        );
    }
    refused(
        ns,
        &["ops", "describe", "nope"],
        &format!("MSSQLServerOpsRequest {ns}/nope not found"),
    );

    // A request that fails while watched: an issuer whose CA secret does not exist never issues.
    let broken = Issuer::new(
        "broken-issuer",
        IssuerSpec {
            config: IssuerConfig {
                ca: Some(CaIssuer {
                    secret_name: "no-such-secret".to_owned(),
                }),
                ..IssuerConfig::default()
            },
        },
    );
    t.api::<Issuer>()
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    let out = refused(
        ns,
        &[
            "tls",
            "set-issuer",
            DB,
            "--issuer",
            "broken-issuer",
            "--timeout",
            "15s",
            "--watch",
        ],
        "failed: certificates were not synced within 15s",
    );
    assert!(
        out.stderr
            .contains(&format!("warning: Issuer {ns}/broken-issuer is not Ready")),
        "{out}"
    );
    assert!(out.stdout.contains("phase Failed"), "{out}");
    assert!(
        out.stdout
            .contains("FAILED  Failed: certificates were not synced within 15s: "),
        "{out}"
    );
    assert!(
        !out.stdout.contains("restart ["),
        "no pod was restarted:\n{out}"
    );
    assert_eq!(request_count(&t).await, 3);
}
