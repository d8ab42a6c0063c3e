//! The API server itself, with the operator's CRDs installed, accepts KubeDB's examples and
//! rejects bad input at once with KubeDB's messages (the CEL rules and schema of `deploy/`).

use mssql_e2e::{Namespace, example_in, get_json, install_crds_and_catalog, kubectl, kubectl_ok};

/// Server-side dry run: admission (schema, defaults, CEL) runs, nothing is stored.
fn dry_run(yaml: &str) -> mssql_e2e::Run {
    kubectl(
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        Some(yaml),
    )
}

#[track_caller]
fn assert_rejected(yaml: &str, expected: &str) {
    let run = dry_run(yaml);
    assert!(!run.ok, "accepted, expected {expected:?}:\n{yaml}");
    assert!(
        run.stderr.contains(expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
}

#[test]
fn kubedb_examples_are_accepted_and_bad_input_is_rejected_with_kubedb_messages() {
    install_crds_and_catalog();
    let ns = Namespace::new("admission");
    let ns = ns.0.as_str();

    for name in [
        "ms-standalone",
        "mssql-ag-cluster",
        "mssql-ag-tls",
        "mssql-standalone-tls",
    ] {
        let run = dry_run(&example_in(name, ns));
        assert!(run.ok, "{name} rejected:\n{}", run.stderr);
    }
    for name in [
        "msops-add-tls",
        "msops-rotate",
        "msops-change-issuer",
        "msops-remove",
        "msops-ag-rotate",
    ] {
        let run = dry_run(&example_in(name, ns));
        assert!(run.ok, "{name} rejected:\n{}", run.stderr);
    }

    let db = example_in("ms-standalone", ns);
    assert_rejected(
        &db.replace("replicas: 1", "replicas: 3"),
        "number of replicas for standalone must be one",
    );
    assert_rejected(
        &db.replace("  replicas: 1\n", "  replicas: 1\n  topology: {}\n"),
        ".spec.topology.mode can't be empty in cluster mode",
    );
    assert_rejected(
        &db.replace(
            "  replicas: 1\n",
            "  replicas: 0\n  topology: {mode: AvailabilityGroup}\n",
        ),
        "number of replicas can not be nil and can not be less than or equal to 0",
    );
    assert_rejected(
        &db.replace("    issuerRef:\n      name: mssqlserver-ca-issuer\n      kind: Issuer\n      apiGroup: \"cert-manager.io\"\n", ""),
        "spec.tls.issuerRef' is missing",
    );
    let without_tls: String = {
        let start = db.find("  tls:\n").unwrap();
        let end = db.find("  podTemplate:").unwrap();
        format!("{}{}", &db[..start], &db[end..])
    };
    assert_rejected(&without_tls, "spec.tls: Required value");
    assert_rejected(
        &db.replace("storageType: Durable", "storageType: durable"),
        "spec.storageType: Unsupported value",
    );
    assert_rejected(
        &db.replace("name: ms-standalone", "name: Bad_Name"),
        "metadata.name",
    );

    let ops = example_in("msops-rotate", ns);
    assert_rejected(
        &ops.replace("type: ReconfigureTLS", "type: Upgrade"),
        "spec.type: Unsupported value: \"Upgrade\"",
    );
    assert_rejected(
        &ops.replace("  tls:\n    rotateCertificates: true\n", ""),
        "`spec.tls` nil not supported in ReconfigureTLS type",
    );
    assert_rejected(
        &ops.replace("rotateCertificates: true", "clientTLS: true"),
        "no reconfiguration is provided in TLS Spec",
    );
    assert_rejected(
        &ops.replace(
            "rotateCertificates: true",
            "rotateCertificates: true\n    remove: true",
        ),
        "more than 1 field have assigned to spec.reconfigureTLS but at a time one is allowed to run one operation",
    );
}

#[test]
fn stored_objects_get_crd_defaults_columns_and_immutable_ops_specs() {
    install_crds_and_catalog();
    let ns = Namespace::new("stored");
    let ns = ns.0.as_str();

    kubectl_ok(
        &["create", "-f", "-"],
        Some(&example_in("msops-change-issuer", ns)),
    );
    let ops = get_json(&["msops", "-n", ns, "msops-change-issuer"]);
    assert_eq!(ops["spec"]["apply"], "IfReady");
    assert_eq!(ops["spec"]["maxRetries"], 1);

    let changed = kubectl(
        &[
            "patch",
            "msops",
            "-n",
            ns,
            "msops-change-issuer",
            "--type=merge",
            "-p",
            r#"{"spec":{"timeout":"10m"}}"#,
        ],
        None,
    );
    assert!(!changed.ok, "an ops spec changed");
    assert!(
        changed.stderr.contains(mssql_api::ops::MSG_SPEC_IMMUTABLE),
        "{}",
        changed.stderr
    );
    // Status is not the spec: the operator must still be able to write it.
    kubectl_ok(
        &[
            "patch",
            "msops",
            "-n",
            ns,
            "msops-change-issuer",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Pending"}}"#,
        ],
        None,
    );

    kubectl_ok(
        &["create", "-f", "-"],
        Some(&example_in("ms-standalone", ns)),
    );
    let table = kubectl_ok(&["get", "ms", "-n", ns], None);
    let header: Vec<_> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "VERSION", "STATUS", "AGE"]);
    assert!(
        table.contains("ms-standalone") && table.contains("2025-cu0"),
        "{table}"
    );
    let header = kubectl_ok(&["get", "msops", "-n", ns], None);
    assert!(
        header.starts_with("NAME") && header.contains("TYPE") && header.contains("ReconfigureTLS"),
        "{header}"
    );
    let versions = kubectl_ok(&["get", "msversion"], None);
    for name in [
        "2022-cu12",
        "2022-cu14",
        "2022-cu16",
        "2022-cu19",
        "2022-cu22",
        "2025-cu0",
    ] {
        assert!(versions.contains(name), "{name} missing from:\n{versions}");
    }
    assert!(
        versions.contains("mcr.microsoft.com/mssql/server:2025-RTM-ubuntu-22.04"),
        "{versions}"
    );
}
