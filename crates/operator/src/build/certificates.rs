//! cert-manager Certificates, one per alias, named and labelled as KubeDB names them. The server
//! certificate covers every name a client can use to reach the database or one of its pods.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mssql_api::validated::{Certificate as Planned, Server, Topology};
use mssql_api::{ALIAS_CLIENT, ALIAS_ENDPOINT, ALIAS_SERVER};
use mssql_certs::cert_manager::{
    self, Certificate, CertificateSpec, IssuerRef, PrivateKey, SecretTemplate,
};

use mssql_api::{labels, names};

use super::workload::owned_meta;

/// The cluster's DNS domain. Kubernetes' default; the `<svc>.<ns>.svc` names work on any cluster.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// KubeDB's common name of the client certificate.
pub const CLIENT_COMMON_NAME: &str = "mssql";

/// Every DNS name of the server: the services in all their forms, every pod (a wildcard under
/// the governing service), and localhost (for tools run inside a pod), then the user's own names.
/// Nothing depends on the replica count: scaling a group re-issues no certificate, so no pod
/// restarts and a new replica presents the endpoint certificate its peers already trust.
pub fn server_dns_names(server: &Server, user: &[String]) -> Vec<String> {
    let ns = &server.namespace;
    let forms = |service: &str| {
        vec![
            service.to_owned(),
            format!("{service}.{ns}"),
            format!("{service}.{ns}.svc"),
            format!("{service}.{ns}.svc.{CLUSTER_DOMAIN}"),
        ]
    };
    let mut names = forms(&server.name);
    if matches!(server.topology, Topology::AvailabilityGroup(_)) {
        names.extend(forms(&names::secondary_service(&server.name)));
    }
    let pods = names::governing_service(&server.name);
    names.extend(forms(&pods));
    names.push(format!("*.{pods}.{ns}.svc"));
    names.push(format!("*.{pods}.{ns}.svc.{CLUSTER_DOMAIN}"));
    names.push("localhost".to_owned());
    for name in user {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The server's IP addresses: loopback, then the user's.
pub fn server_ip_addresses(user: &[String]) -> Vec<String> {
    let mut ips = vec!["127.0.0.1".to_owned()];
    ips.extend(user.iter().filter(|ip| *ip != "127.0.0.1").cloned());
    ips
}

fn usages(alias: &str) -> Vec<String> {
    let extended: &[&str] = if alias == ALIAS_CLIENT {
        &["client auth"]
    } else {
        &["server auth", "client auth"]
    };
    ["digital signature", "key encipherment"]
        .iter()
        .chain(extended)
        .map(|u| (*u).to_owned())
        .collect()
}

fn non_empty(list: Vec<String>) -> Option<Vec<String>> {
    (!list.is_empty()).then_some(list)
}

/// The Certificate of one alias.
pub fn certificate(server: &Server, planned: &Planned, owner: &OwnerReference) -> Certificate {
    let (common_name, dns_names, ip_addresses) = match planned.alias.as_str() {
        ALIAS_SERVER => (
            server.name.clone(),
            server_dns_names(server, &planned.dns_names),
            server_ip_addresses(&planned.ip_addresses),
        ),
        ALIAS_ENDPOINT => (
            mssql_api::names::with_suffix(&server.name, ALIAS_ENDPOINT),
            server_dns_names(server, &planned.dns_names),
            server_ip_addresses(&planned.ip_addresses),
        ),
        _ => (
            CLIENT_COMMON_NAME.to_owned(),
            planned.dns_names.clone(),
            planned.ip_addresses.clone(),
        ),
    };
    let mut certificate = Certificate::new(
        &planned.name,
        CertificateSpec {
            secret_name: planned.secret_name.clone(),
            issuer_ref: IssuerRef {
                name: planned.issuer.name.clone(),
                kind: Some(planned.issuer.kind.clone()),
                group: Some(cert_manager::GROUP.to_owned()),
            },
            secret_template: Some(SecretTemplate {
                labels: Some(labels::offshoot(server)),
                annotations: None,
            }),
            common_name: Some(common_name),
            subject: Some(planned.subject.clone()),
            duration: planned.duration.clone(),
            renew_before: planned.renew_before.clone(),
            dns_names: non_empty(dns_names),
            ip_addresses: non_empty(ip_addresses),
            uris: non_empty(planned.uris.clone()),
            email_addresses: non_empty(planned.email_addresses.clone()),
            usages: Some(usages(&planned.alias)),
            // A new key with every certificate: a rotation never keeps a possibly leaked key.
            private_key: Some(PrivateKey {
                rotation_policy: Some("Always".to_owned()),
                encoding: planned.private_key_encoding.clone(),
                ..PrivateKey::default()
            }),
            ..CertificateSpec::default()
        },
    );
    certificate.metadata = owned_meta(server, &planned.name, owner);
    certificate
}

/// The Certificates of every alias of the database.
pub fn certificates(server: &Server, owner: &OwnerReference) -> Vec<Certificate> {
    server
        .tls
        .certificates
        .iter()
        .map(|c| certificate(server, c, owner))
        .collect()
}
