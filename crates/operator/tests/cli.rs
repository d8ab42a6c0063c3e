//! The command line as a user runs it: generated files in `deploy/` match the code, and `check`
//! prints defaulted objects or every error with its object and field, and the right exit code.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mssql-operator"))
        .args(args)
        .current_dir(ROOT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[track_caller]
fn assert_generated(command: &str, file: &str) {
    let output = run(&[command], None);
    assert!(output.status.success());
    let committed = std::fs::read_to_string(format!("{ROOT}/{file}")).unwrap();
    assert!(
        stdout(&output) == committed,
        "{file} is out of date: run `cargo run -p mssql-operator -- {command} > {file}` and commit it"
    );
}

#[test]
fn deploy_files_match_the_code() {
    assert_generated("crd", "deploy/crds.yaml");
    assert_generated("catalog", "deploy/catalog.yaml");
    // The Helm chart's copies: Helm installs crds/ as is, and templates/catalog.yaml includes
    // files/catalog.yaml.
    assert_generated("crd", "deploy/helm/mssql-operator/crds/crds.yaml");
    assert_generated("catalog", "deploy/helm/mssql-operator/files/catalog.yaml");
}

#[test]
fn generated_yaml_parses_back() {
    let crds: Vec<Value> = serde_saphyr::from_multiple(&stdout(&run(&["crd"], None))).unwrap();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "mssqlserverversions.catalog.kubedb.com",
            "mssqlservers.kubedb.com",
            "mssqlserveropsrequests.ops.kubedb.com"
        ]
    );
    let catalog: Vec<Value> =
        serde_saphyr::from_multiple(&stdout(&run(&["catalog"], None))).unwrap();
    assert_eq!(catalog.len(), 6);
    assert!(catalog.iter().all(|v| v["kind"] == "MSSQLServerVersion"));
}

#[test]
fn check_accepts_every_kubedb_doc_example_and_prints_them_defaulted() {
    let files: Vec<String> = std::fs::read_dir(format!("{ROOT}/examples/kubedb-docs"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let output = run(&args, None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let objects: Vec<Value> = serde_saphyr::from_multiple(&stdout(&output)).unwrap();
    assert_eq!(objects.len(), files.len());
    let standalone = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "ms-standalone")
        .unwrap();
    assert_eq!(
        standalone["spec"]["tls"]["certificates"][1]["secretName"],
        "ms-standalone-client-cert"
    );
    assert_eq!(standalone["spec"]["deletionPolicy"], "WipeOut");
    let change_issuer = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "msops-change-issuer")
        .unwrap();
    assert_eq!(change_issuer["spec"]["apply"], "IfReady");
}

const BAD: &str = r#"
apiVersion: kubedb.com/v1alpha2
kind: MSSQLServer
metadata: {name: two-standalone, namespace: demo}
spec:
  version: "2025-cu0"
  replicas: 2
  tls: {issuerRef: {apiGroup: cert-manager.io, kind: Issuer, name: ca}}
  storage: {resources: {requests: {storage: 1Gi}}}
  podTemplate: {spec: {containers: [{name: mssql, env: [{name: MSSQL_PID, value: Developer}, {name: MSSQL_SA_PASSWORD, value: x}]}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: demo}
data: {a: b}
---
apiVersion: ops.kubedb.com/v1alpha1
kind: MSSQLServerOpsRequest
metadata: {name: both, namespace: demo}
spec:
  type: ReconfigureTLS
  databaseRef: {name: two-standalone}
  tls: {remove: true, rotateCertificates: true}
"#;

#[test]
fn check_reports_every_error_of_every_bad_object_and_exits_1() {
    let output = run(&["check", "-"], Some(BAD));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "MSSQLServer demo/two-standalone: spec.replicas: number of replicas for standalone must be one \n\
         MSSQLServer demo/two-standalone: spec.podTemplate.spec.containers[0].env[1]: environment variable MSSQL_SA_PASSWORD is forbidden to use in MSSQLServer spec\n\
         MSSQLServerOpsRequest demo/both: spec.tls: more than 1 field have assigned to spec.reconfigureTLS but at a time one is allowed to run one operation\n"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("2 of 3 objects are invalid"));
}

/// cert-manager would refuse this Certificate: `check` says so first, in cert-manager's words.
#[test]
fn check_refuses_a_certificate_lifetime_cert_manager_refuses() {
    let text = r#"
apiVersion: kubedb.com/v1alpha2
kind: MSSQLServer
metadata: {name: db, namespace: demo}
spec:
  version: 2022-cu12
  replicas: 1
  storageType: Ephemeral
  podTemplate:
    spec:
      containers:
        - name: mssql
          env: [{name: ACCEPT_EULA, value: "Y"}, {name: MSSQL_PID, value: Evaluation}]
  tls:
    issuerRef: {name: ca, kind: Issuer, apiGroup: cert-manager.io}
    certificates:
      - {alias: server, duration: 2h, renewBefore: 3h}
"#;
    let output = run(&["check", "-"], Some(text));
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_eq!(
        stdout(&output),
        "MSSQLServer demo/db: spec.tls.certificates[0].renewBefore: certificate duration 2h0m0s \
         must be greater than renewBefore 3h0m0s; set renewBefore below the duration, or leave it \
         out for a third of it\n"
    );
}

#[test]
fn check_names_the_field_of_a_type_error() {
    let text = "apiVersion: kubedb.com/v1alpha2\nkind: MSSQLServer\nmetadata: {name: db}\nspec: {version: x, replicas: three}\n";
    let output = run(&["check", "-"], Some(text));
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    assert!(
        out.starts_with(
            "MSSQLServer db: spec.replicas: invalid type: string \"three\", expected i32"
        ),
        "{out}"
    );
}

#[test]
fn check_explains_structural_problems() {
    let cases = [
        ("{[", "not valid YAML"),
        ("- a\n- b\n", "a Kubernetes object must be a YAML mapping"),
        ("kind: MSSQLServer\n", "apiVersion and kind are required"),
        (
            "apiVersion: kubedb.com/v1alpha2\nkind: MSSQLServer\nmetadata: {}\n",
            "metadata.name: a name is required",
        ),
        (
            "apiVersion: kubedb.com/v1alpha1\nkind: MSSQLServer\nmetadata: {name: old}\n",
            "apiVersion: MSSQLServer is served as kubedb.com/v1alpha2; change apiVersion kubedb.com/v1alpha1 to kubedb.com/v1alpha2",
        ),
        (
            "apiVersion: kubedb.com/v1alpha2\nkind: MSSQLServer\nmetadata: {name: Bad_Name}\nspec: {version: x}\n",
            "metadata.name: \"Bad_Name\" cannot name the database's Services and pods",
        ),
    ];
    for (input, expected) in cases {
        let output = run(&["check", "-"], Some(input));
        assert_eq!(output.status.code(), Some(1), "{input:?}");
        assert!(
            stdout(&output).contains(expected),
            "{input:?}: {}",
            stdout(&output)
        );
    }
}

#[test]
fn check_uses_catalog_entries_from_the_files() {
    let text = r#"
apiVersion: catalog.kubedb.com/v1alpha1
kind: MSSQLServerVersion
metadata: {name: 2022-custom}
spec: {version: "2022", db: {image: registry.local/mssql:2022}, securityContext: {runAsUser: 20001}}
---
apiVersion: kubedb.com/v1alpha2
kind: MSSQLServer
metadata: {name: custom, namespace: demo}
spec:
  version: 2022-custom
  storageType: Ephemeral
  tls: {issuerRef: {apiGroup: cert-manager.io, kind: ClusterIssuer, name: ca}}
  podTemplate: {spec: {containers: [{name: mssql, env: [{name: MSSQL_PID, value: Express}]}]}}
"#;
    let output = run(&["check", "-"], Some(text));
    assert!(output.status.success(), "{}", stdout(&output));
    let objects: Vec<Value> = serde_saphyr::from_multiple(&stdout(&output)).unwrap();
    assert_eq!(
        objects[1]["spec"]["podTemplate"]["spec"]["securityContext"]["fsGroup"],
        20001
    );
}

#[test]
fn check_fails_loudly_on_a_missing_file() {
    let output = run(&["check", "does-not-exist.yaml"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does-not-exist.yaml: cannot read"));
}

#[test]
fn run_refuses_a_bad_renewal_policy_before_it_starts() {
    for (flag, value, says) in [
        ("--renewal-rollout", "Sometimes", "Auto"),
        (
            "--maintenance-window",
            "Mo 22:00-02:00",
            "\"Mo\": not a day",
        ),
        ("--renewal-safety-margin", "a day", "not a duration"),
    ] {
        let output = run(&["run", flag, value], None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}"))
                && stderr.contains(says),
            "{flag}: {stderr}"
        );
    }
}

#[test]
fn check_names_a_bad_renewal_annotation_and_the_fix() {
    let text = r#"
apiVersion: kubedb.com/v1alpha2
kind: MSSQLServer
metadata:
  name: ms
  namespace: demo
  annotations:
    mssql-operator.dev/maintenance-window: "Sat 22:00-22:00"
    mssql-operator.dev/renewal-safety-margin: "soon"
spec:
  version: 2022-cu12
  storageType: Ephemeral
  tls: {issuerRef: {apiGroup: cert-manager.io, kind: Issuer, name: ca}}
"#;
    let output = run(&["check", "-"], Some(text));
    assert_eq!(output.status.code(), Some(1));
    let report = stdout(&output);
    assert!(
        report.contains("metadata.annotations[mssql-operator.dev/maintenance-window]")
            && report.contains("00:00-24:00")
            && report.contains("metadata.annotations[mssql-operator.dev/renewal-safety-margin]")
            && report.contains("24h"),
        "{report}"
    );
}
