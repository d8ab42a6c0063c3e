//! The validating admission webhook, served by the operator as a host process and registered by
//! URL: one table of bad inputs goes through `mssql-operator check`, through `kubectl apply`
//! (refused by the webhook, in the namespace it guards) and through the operator's own
//! `SpecValid` (in a namespace it does not guard), and all three say the same words.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::Api;
use mssql_api::MssqlServer;
use mssql_e2e::cluster::{TestNamespace, eventually};
use mssql_e2e::fixture::Setup;
use mssql_e2e::operator::{Operator, binary};
use mssql_e2e::scrape::free_port;
use mssql_e2e::{command, example_in, kubectl, root};

const DB: &str = "mssql-standalone-tls";
const DENIED: &str =
    "admission webhook \"mssqlservers.validate.mssql-operator.dev\" denied the request";

/// Deletes the registration when the test ends, however it ends: a webhook that fails closed
/// must not outlive the process that answers it.
struct Registration(String);

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = kubectl(
            &[
                "delete",
                "validatingwebhookconfiguration",
                &self.0,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// The database example with `from` replaced by `to`, in `namespace`.
fn database(namespace: &str, from: &str, to: &str) -> String {
    let yaml = example_in(DB, namespace);
    assert!(yaml.contains(from), "the example holds {from:?}");
    yaml.replacen(from, to, 1)
}

/// Bad databases, each with the words `check`, the webhook and `SpecValid` must all say.
fn bad_databases(namespace: &str) -> Vec<(&'static str, String, &'static str)> {
    let issuer = "      name: mssqlserver-ca-issuer\n      kind: Issuer\n      apiGroup: \"cert-manager.io\"\n";
    vec![
        (
            "an unknown version",
            database(namespace, "\"2025-cu0\"", "\"2019-cu1\""),
            "spec.version: mssqlserverversions.catalog.kubedb.com \"2019-cu1\" not found",
        ),
        (
            "Durable without storage",
            {
                let yaml = database(namespace, "", "");
                let start = yaml.find("  storage:\n").unwrap();
                let end = yaml.find("  deletionPolicy").unwrap();
                format!("{}{}", &yaml[..start], &yaml[end..])
            },
            "spec.storage: spec.storage is required when storageType is Durable",
        ),
        (
            "a duplicated alias",
            database(
                namespace,
                "    clientTLS: true\n",
                "    clientTLS: true\n    certificates:\n    - alias: server\n    - alias: server\n",
            ),
            "spec.tls.certificates[1].alias: certificate alias \"server\" is listed twice",
        ),
        (
            "an issuer of another group",
            database(
                namespace,
                issuer,
                &issuer.replace("cert-manager.io", "example.com"),
            ),
            "spec.tls.issuerRef.apiGroup: the issuer must be a cert-manager one",
        ),
        (
            "a duration that is not one",
            database(
                namespace,
                "    clientTLS: true\n",
                "    clientTLS: true\n    certificates:\n    - alias: server\n      duration: 90days\n",
            ),
            "spec.tls.certificates[0].duration: duration \"90days\" is not a duration",
        ),
        (
            "a renewal before the certificate's life begins",
            database(
                namespace,
                "    clientTLS: true\n",
                "    clientTLS: true\n    certificates:\n    - alias: server\n      duration: 2h\n      renewBefore: 3h\n",
            ),
            "spec.tls.certificates[0].renewBefore: certificate duration 2h0m0s must be greater than renewBefore 3h0m0s",
        ),
        (
            "a forbidden env var",
            database(
                namespace,
                "            - name: ACCEPT_EULA\n",
                "            - name: MSSQL_SA_PASSWORD\n              value: x\n            - name: ACCEPT_EULA\n",
            ),
            "environment variable MSSQL_SA_PASSWORD is forbidden to use in MSSQLServer spec",
        ),
        (
            "TLS 1.0 in inline configuration",
            database(
                namespace,
                "  deletionPolicy",
                "  configuration:\n    inline:\n      mssql.conf: |\n        [network]\n        tlsprotocols = 1.0\n  deletionPolicy",
            ),
            "spec.configuration.inline[mssql.conf]: [network] tlsprotocols = 1.0: TLS 1.0 is refused",
        ),
        (
            "a key the operator owns",
            database(
                namespace,
                "  deletionPolicy",
                "  configuration:\n    inline:\n      mssql.conf: |\n        [network]\n        forceencryption = 0\n  deletionPolicy",
            ),
            "[network] forceencryption is set by the operator and cannot be overridden",
        ),
        (
            "a name too long for its pods' labels",
            example_in(DB, namespace).replace(DB, &"m".repeat(63)),
            "has 63 characters, at most 52 fit",
        ),
        (
            "a wrong-typed PodSpec field",
            database(
                namespace,
                "      containers:\n",
                "      hostNetwork: \"yes\"\n      containers:\n",
            ),
            "spec.podTemplate.spec.hostNetwork: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "an unknown PodSpec field",
            database(
                namespace,
                "      containers:\n",
                "      dnsPolcy: None\n      containers:\n",
            ),
            "spec.podTemplate.spec.dnsPolcy: not a field of a Kubernetes PodSpec here",
        ),
    ]
}

fn check(yaml: &str) -> String {
    let run = command(
        binary().to_str().unwrap(),
        &["check", "-"],
        Some(yaml),
        "check",
    );
    assert!(!run.ok, "check accepted:\n{yaml}");
    run.stdout
}

fn dry_run(yaml: &str) -> mssql_e2e::Run {
    kubectl(&["create", "--dry-run=server", "-f", "-"], Some(yaml))
}

#[tokio::test]
async fn the_webhook_refuses_what_check_refuses_and_spec_valid_reports_in_the_same_words() {
    let t = Setup::without_operator("webhook").await;
    let guarded = t.ns.name.clone();
    let unguarded = TestNamespace::new(&t.client, "webhook-unguarded").await;
    let configuration = format!("mssql-operator-{guarded}");
    let registration = Registration(configuration.clone());
    let metrics_port = free_port();
    let log_path = root().join(format!("target/webhook-operator-{guarded}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let operator = Operator::start(
        &[
            "run",
            "--listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--lease-namespace",
            &guarded,
            // Port 0: the operator picks one and registers it.
            "--webhook-listen",
            "127.0.0.1:0",
            "--webhook-url",
            "https://127.0.0.1:0",
            "--webhook-configuration",
            &configuration,
            "--webhook-namespace-selector",
            &format!("kubernetes.io/metadata.name={guarded}"),
        ],
        &[("POD_NAME", "webhook-test-operator")],
        &log,
    );

    // A valid database passes; once registered, an invalid one is refused by the webhook.
    let unknown = database(&guarded, "\"2025-cu0\"", "\"2019-cu1\"");
    eventually(
        "the webhook to refuse an unknown version",
        Duration::from_secs(60),
        || async {
            let run = dry_run(&unknown);
            if run.stderr.contains(DENIED) {
                Ok(())
            } else {
                Err(run.stderr)
            }
        },
    )
    .await;
    let valid = dry_run(&example_in(DB, &guarded));
    assert!(
        valid.ok,
        "the guide's database is refused:\n{}",
        valid.stderr
    );

    let databases: Api<MssqlServer> = Api::namespaced(t.client.clone(), &unguarded.name);
    let table = bad_databases(&guarded);
    for (i, (what, yaml, words)) in table.iter().enumerate() {
        let checked = check(yaml);
        assert!(checked.contains(words), "{what}: check says:\n{checked}");
        let refused = dry_run(yaml);
        assert!(!refused.ok, "{what}: accepted by the API server:\n{yaml}");
        assert!(
            refused.stderr.contains(DENIED) && refused.stderr.contains(words),
            "{what}: expected the webhook to say {words:?}:\n{}",
            refused.stderr
        );
        // The same object where the webhook does not look: the operator's SpecValid says it.
        let long = "m".repeat(63);
        let name = if yaml.contains(&long) {
            long
        } else {
            format!("bad-{i}")
        };
        let elsewhere = yaml
            .replace(
                &format!("namespace: {guarded}"),
                &format!("namespace: {}", unguarded.name),
            )
            .replacen(&format!("name: {DB}"), &format!("name: {name}"), 1);
        let created = kubectl(&["create", "-f", "-"], Some(&elsewhere));
        assert!(
            created.ok,
            "{what}: the API server itself refused it:\n{}",
            created.stderr
        );
        eventually(
            &format!("{what}: SpecValid=False"),
            Duration::from_secs(60),
            || async {
                let db = databases.get(&name).await.map_err(|e| e.to_string())?;
                let conditions = db.status.map(|s| s.conditions).unwrap_or_default();
                match conditions.iter().find(|c| c.type_ == "SpecValid") {
                    Some(c)
                        if c.status == "False"
                            && c.message.as_deref().is_some_and(|m| m.contains(words)) =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }

    // Ops requests: an unparseable timeout, and a database that does not exist.
    let ops =
        example_in("msops-rotate", &guarded).replace("name: ms-standalone", &format!("name: {DB}"));
    let created = kubectl(&["create", "-f", "-"], Some(&example_in(DB, &guarded)));
    assert!(created.ok, "{}", created.stderr);
    assert!(dry_run(&ops).ok, "a valid ops request is refused");
    for (yaml, words) in [
        (
            ops.replace("timeout: 5m", "timeout: banana"),
            "spec.timeout: timeout \"banana\" is not a duration",
        ),
        (
            ops.replace(&format!("name: {DB}"), "name: nowhere"),
            "spec.databaseRef: spec.databaseRef",
        ),
    ] {
        let refused = dry_run(&yaml);
        assert!(
            !refused.ok
                && refused
                    .stderr
                    .contains("mssqlserveropsrequests.validate.mssql-operator.dev")
        );
        assert!(
            refused.stderr.contains(words),
            "{words}: {}",
            refused.stderr
        );
        if words.starts_with("spec.timeout") {
            assert!(check(&yaml).contains(words));
        }
    }

    // A DoNotTerminate database cannot be deleted until its policy says otherwise.
    let patch = |policy: &str| {
        kubectl(
            &[
                "-n",
                &guarded,
                "patch",
                "mssqlserver",
                DB,
                "--type=merge",
                "-p",
                &format!("{{\"spec\":{{\"deletionPolicy\":\"{policy}\"}}}}"),
            ],
            None,
        )
    };
    assert!(patch("DoNotTerminate").ok);
    let delete = kubectl(
        &["-n", &guarded, "delete", "mssqlserver", DB, "--wait=false"],
        None,
    );
    assert!(!delete.ok, "a DoNotTerminate database was deleted");
    assert!(
        delete
            .stderr
            .contains("Can not delete as terminationPolicy is set to \"DoNotTerminate\""),
        "{}",
        delete.stderr
    );
    assert!(patch("WipeOut").ok);
    assert!(
        kubectl(
            &["-n", &guarded, "delete", "mssqlserver", DB, "--wait=false"],
            None
        )
        .ok
    );

    // Stopped as Kubernetes stops it, the host process removes its registration.
    let pid = operator.0.id().to_string();
    assert!(command("kill", &["-TERM", &pid], None, "kill").ok);
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(t.client.clone());
    eventually(
        "the registration to be removed",
        Duration::from_secs(30),
        || async {
            match configurations.get_opt(&registration.0).await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    drop(operator);
}
