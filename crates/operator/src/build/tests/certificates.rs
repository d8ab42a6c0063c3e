//! The cert-manager Certificates: KubeDB's names and subjects, every name clients dial, per-alias issuers and SANs.

use super::*;

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
        "localhost",
    ] {
        assert!(
            dns.contains(&name.to_owned()),
            "{name} missing from {dns:?}"
        );
    }
    assert!(
        !dns.iter()
            .any(|name| name.starts_with("mssql-ag-cluster-0")),
        "no name depends on the replica count: {dns:?}"
    );
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
