//! The webhook's serving certificate: a CA of the operator's own and a leaf it signs for the names
//! the API server dials, kept in one Secret so that every replica serves the same leaf and the
//! API server trusts it through the CA bundle of the webhook configuration (`registration`).
//!
//! The leaf lives 90 days and is re-signed 30 days before it ends, or as soon as it no longer
//! covers the configured names; the CA bundle does not change then. The CA lives 10 years and is
//! replaced a year before it ends; the old CA stays in `ca.crt` beside the new one until it
//! expires, so a replica still serving the old leaf stays trusted while the others catch up.

use std::collections::BTreeMap;
use std::net::IpAddr;

use mssql_certs::inspect::{Expectations, TlsFiles, check_tls_secret, parse_chain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

const DAY: i64 = 24 * 3600;
const CA_LIFETIME: i64 = 3650 * DAY;
const CA_RENEW_BEFORE: i64 = 365 * DAY;
const LEAF_LIFETIME: i64 = 90 * DAY;
const LEAF_RENEW_BEFORE: i64 = 30 * DAY;
/// Certificates start an hour early: clocks of the API server and the operator may differ.
const BACKDATE: i64 = 3600;
const CA_COMMON_NAME: &str = "mssql-operator-webhook-ca";

pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// The Secret's data, PEM text by key.
pub type Files = BTreeMap<String, String>;

/// What the Secret needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// A new leaf from the same CA: the bundle stays.
    NewLeaf {
        why: String,
    },
    /// A new CA and leaf; the bundle gains the new CA.
    NewCa {
        why: String,
    },
}

/// Decides what `files` (the Secret's, if it exists) need for a leaf that serves `hosts` (DNS
/// names or IP addresses) at `now` (Unix seconds).
pub fn plan(files: Option<&Files>, hosts: &[String], now: i64) -> Plan {
    let get = |key: &str| files.and_then(|f| f.get(key)).map(String::as_bytes);
    let (Some(ca_crt), Some(_)) = (get(CA_CRT), get(CA_KEY)) else {
        return Plan::NewCa {
            why: "no CA yet".into(),
        };
    };
    let current_ca = match parse_chain(ca_crt) {
        Ok(chain) if !chain.is_empty() => chain[0].clone(),
        _ => {
            return Plan::NewCa {
                why: "ca.crt is not readable".into(),
            };
        }
    };
    if current_ca.not_after - now < CA_RENEW_BEFORE {
        return Plan::NewCa {
            why: "the CA ends within a year".into(),
        };
    }
    let (dns_names, ip_addresses) = split_hosts(hosts);
    let expect = Expectations {
        dns_names,
        ip_addresses: ip_addresses.iter().map(ToString::to_string).collect(),
        usages: vec!["server auth".into()],
        previous_serial: None,
    };
    let tls = TlsFiles {
        tls_crt: get(TLS_CRT).unwrap_or_default(),
        tls_key: get(TLS_KEY).unwrap_or_default(),
        ca_crt: Some(ca_crt),
    };
    // Checked as of the renewal date: a leaf that ends within 30 days fails as expired.
    match check_tls_secret(&tls, &expect, now + LEAF_RENEW_BEFORE) {
        Ok(_) => Plan::Keep,
        Err(problems) => Plan::NewLeaf {
            why: problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        },
    }
}

/// The Secret's data after `plan`: new material where it says so, the rest kept.
pub fn issue(
    plan: &Plan,
    files: Option<&Files>,
    hosts: &[String],
    now: i64,
) -> Result<Files, rcgen::Error> {
    let mut out = files.cloned().unwrap_or_default();
    let (ca_key, ca_params) = match plan {
        Plan::Keep => return Ok(out),
        Plan::NewCa { .. } => {
            let key = KeyPair::generate()?;
            let params = ca_params(now)?;
            let ca = params.self_signed(&key)?;
            // The old CA (if still valid) stays trusted until every replica serves the new leaf.
            let still_valid = files
                .and_then(|f| f.get(CA_CRT))
                .and_then(|pem| parse_chain(pem.as_bytes()).ok())
                .and_then(|chain| chain.first().cloned())
                .filter(|old| old.not_after > now);
            let mut bundle = ca.pem();
            if let (Some(_), Some(old)) = (still_valid, files.and_then(|f| f.get(CA_CRT))) {
                bundle.push_str(first_pem_block(old));
            }
            out.insert(CA_CRT.into(), bundle);
            out.insert(CA_KEY.into(), key.serialize_pem());
            (key, params)
        }
        Plan::NewLeaf { .. } => {
            let pem = files
                .and_then(|f| f.get(CA_KEY))
                .expect("plan: a new leaf only with a CA key");
            (KeyPair::from_pem(pem)?, ca_params(now)?)
        }
    };
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let leaf = leaf_params(hosts, now)?.signed_by(&key, &issuer)?;
    out.insert(TLS_CRT.into(), leaf.pem());
    out.insert(TLS_KEY.into(), key.serialize_pem());
    Ok(out)
}

/// The CA's name and constraints. A leaf's issuer is found by this name and its key, so the CA
/// read back from the Secret signs with parameters built anew.
fn ca_params(now: i64) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, now, CA_LIFETIME)?;
    Ok(params)
}

fn leaf_params(hosts: &[String], now: i64) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        hosts
            .first()
            .map_or("mssql-operator-webhook", String::as_str),
    );
    params.distinguished_name = name;
    let (dns_names, ips) = split_hosts(hosts);
    for dns in dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName(dns.try_into()?));
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, LEAF_LIFETIME)?;
    Ok(params)
}

fn validity(params: &mut CertificateParams, now: i64, lifetime: i64) -> Result<(), rcgen::Error> {
    let at = |unix| OffsetDateTime::from_unix_timestamp(unix).map_err(|_| rcgen::Error::Time);
    params.not_before = at(now - BACKDATE)?;
    params.not_after = at(now + lifetime)?;
    Ok(())
}

fn split_hosts(hosts: &[String]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for host in hosts {
        match host.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(host.clone()),
        }
    }
    (dns, ips)
}

fn first_pem_block(pem: &str) -> &str {
    const END: &str = "-----END CERTIFICATE-----\n";
    pem.find(END).map_or(pem, |i| &pem[..i + END.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn hosts() -> Vec<String> {
        vec![
            "mssql-operator-webhook.mssql-operator.svc".into(),
            "127.0.0.1".into(),
        ]
    }

    fn fresh() -> Files {
        let plan = plan(None, &hosts(), NOW);
        assert!(matches!(plan, Plan::NewCa { .. }), "{plan:?}");
        issue(&plan, None, &hosts(), NOW).unwrap()
    }

    #[test]
    fn a_new_secret_gets_a_ca_and_a_leaf_that_serves_every_host() {
        let files = fresh();
        assert_eq!(plan(Some(&files), &hosts(), NOW), Plan::Keep);
        let leaf = &parse_chain(files[TLS_CRT].as_bytes()).unwrap()[0];
        assert_eq!(
            leaf.dns_names,
            ["mssql-operator-webhook.mssql-operator.svc"]
        );
        assert_eq!(leaf.ip_addresses, ["127.0.0.1"]);
        assert_eq!(leaf.extended_key_usages, ["server auth"]);
        assert!(!leaf.is_ca);
        assert_eq!(leaf.not_after - NOW, LEAF_LIFETIME);
        let ca = &parse_chain(files[CA_CRT].as_bytes()).unwrap();
        assert_eq!(ca.len(), 1);
        assert!(ca[0].is_ca);
    }

    #[test]
    fn the_leaf_is_re_signed_30_days_before_its_end_by_the_same_ca() {
        let files = fresh();
        let later = NOW + LEAF_LIFETIME - LEAF_RENEW_BEFORE - 1;
        assert_eq!(plan(Some(&files), &hosts(), later), Plan::Keep);
        let due = later + 2;
        let plan = plan(Some(&files), &hosts(), due);
        let Plan::NewLeaf { why } = &plan else {
            panic!("{plan:?}")
        };
        assert!(why.contains("expired"), "{why}");
        let renewed = issue(&plan, Some(&files), &hosts(), due).unwrap();
        assert_eq!(renewed[CA_CRT], files[CA_CRT], "the bundle stays");
        assert_eq!(renewed[CA_KEY], files[CA_KEY]);
        assert_ne!(renewed[TLS_CRT], files[TLS_CRT]);
        // check_tls_secret verified the chain: the CA read back signs leaves it validates.
        assert_eq!(super::plan(Some(&renewed), &hosts(), due), Plan::Keep);
    }

    #[test]
    fn a_new_host_gets_a_new_leaf() {
        let files = fresh();
        let more = [hosts(), vec!["webhook.example".into()]].concat();
        let plan = plan(Some(&files), &more, NOW);
        assert!(
            matches!(&plan, Plan::NewLeaf { why } if why.contains("webhook.example")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_ca_near_its_end_is_replaced_and_the_old_one_kept_in_the_bundle() {
        let files = fresh();
        let late = NOW + CA_LIFETIME - CA_RENEW_BEFORE + 1;
        let plan = plan(Some(&files), &hosts(), late);
        assert!(matches!(plan, Plan::NewCa { .. }), "{plan:?}");
        let renewed = issue(&plan, Some(&files), &hosts(), late).unwrap();
        let bundle = parse_chain(renewed[CA_CRT].as_bytes()).unwrap();
        assert_eq!(bundle.len(), 2, "new CA first, the old one after");
        let old = &parse_chain(files[CA_CRT].as_bytes()).unwrap()[0];
        assert_eq!(bundle[1].serial, old.serial);
        assert_ne!(bundle[0].serial, old.serial);
        assert_eq!(super::plan(Some(&renewed), &hosts(), late), Plan::Keep);
    }

    #[test]
    fn broken_material_is_replaced() {
        let mut files = fresh();
        files.insert(TLS_KEY.into(), fresh()[TLS_KEY].clone());
        assert!(matches!(
            plan(Some(&files), &hosts(), NOW),
            Plan::NewLeaf { why } if why.contains("not the key of tls.crt")
        ));
        files.insert(CA_CRT.into(), "garbage".into());
        assert!(matches!(
            plan(Some(&files), &hosts(), NOW),
            Plan::NewCa { .. }
        ));
        files.remove(CA_KEY);
        assert!(matches!(
            plan(Some(&files), &hosts(), NOW),
            Plan::NewCa { .. }
        ));
    }
}
