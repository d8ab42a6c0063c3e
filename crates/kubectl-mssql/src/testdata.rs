//! Certificates for the unit tests.

use rcgen::{CertificateParams, DnType, KeyPair, SanType, date_time_ymd};

/// 2026-01-01T00:00:00Z: "now" in every test.
pub const NOW: i64 = 1_767_225_600;

pub struct Leaf {
    pub pem: String,
    pub serial: String,
}

/// A self-signed leaf `CN=db,O=kubedb` with these SANs, expiring `days` after [`NOW`]; `days` is
/// 90 or -2 (calendar dates, so rcgen needs no date arithmetic).
pub fn leaf(dns: &[&str], ips: &[&str], days: i64) -> Leaf {
    let mut params =
        CertificateParams::new(dns.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>())
            .expect("DNS names");
    for ip in ips {
        params
            .subject_alt_names
            .push(SanType::IpAddress(ip.parse().expect("an IP address")));
    }
    params.distinguished_name.push(DnType::CommonName, "db");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "kubedb");
    params.not_before = date_time_ymd(2025, 10, 1);
    params.not_after = match days {
        90 => date_time_ymd(2026, 4, 1),
        -2 => date_time_ymd(2025, 12, 30),
        other => panic!("no calendar date for {other} days"),
    };
    let key = KeyPair::generate().expect("a key");
    let pem = params.self_signed(&key).expect("a certificate").pem();
    let serial = mssql_certs::inspect::parse_certificate(pem.as_bytes())
        .expect("readable")
        .serial;
    Leaf { pem, serial }
}
