//! Test PKI for the certs tests: a CA and the leaves cert-manager would issue, made by rcgen.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber, SignatureAlgorithm,
};

use crate::inspect::TlsFiles;

/// 2026-06-01T00:00:00Z; test leaves are valid during 2026.
pub(crate) const NOW: i64 = 1_780_272_000;
pub(crate) const POD_SANS: [&str; 5] =
    ["db", "localhost", "*.db-pods.demo.svc", "127.0.0.1", "::1"];

pub(crate) type Ca = CertifiedIssuer<'static, KeyPair>;

pub(crate) fn ca(common_name: &str) -> Ca {
    ca_with(common_name, KeyPair::generate().unwrap())
}

pub(crate) fn ca_with(common_name: &str, key: KeyPair) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, key).unwrap()
}

/// What cert-manager issues for the operator: subject, SANs, usages, a 2026 validity.
pub(crate) fn leaf_params(sans: &[&str]) -> CertificateParams {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "kubedb");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "server");
    params.distinguished_name.push(DnType::CommonName, "mssql");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.serial_number = Some(SerialNumber::from_slice(&[0x0A, 0x1B]));
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2027, 1, 1);
    params
}

/// A Secret's files: `tls.crt` (leaf), `tls.key` (PKCS#8) and `ca.crt`.
pub(crate) struct Secret {
    pub(crate) crt: String,
    pub(crate) key: String,
    pub(crate) ca: String,
}

impl Secret {
    pub(crate) fn files(&self) -> TlsFiles<'_> {
        TlsFiles {
            tls_crt: self.crt.as_bytes(),
            tls_key: self.key.as_bytes(),
            ca_crt: Some(self.ca.as_bytes()),
        }
    }
}

pub(crate) fn issue(
    params: &CertificateParams,
    alg: &'static SignatureAlgorithm,
    ca: &Ca,
) -> Secret {
    let key = KeyPair::generate_for(alg).unwrap();
    let crt = params.signed_by(&key, ca).unwrap().pem();
    Secret {
        crt,
        key: key.serialize_pem(),
        ca: ca.pem(),
    }
}

pub(crate) fn secret(ca: &Ca) -> Secret {
    issue(&leaf_params(&POD_SANS), &rcgen::PKCS_ECDSA_P256_SHA256, ca)
}
