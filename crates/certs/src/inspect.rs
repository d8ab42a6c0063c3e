//! What cert-manager wrote into a `kubernetes.io/tls` Secret, read without any I/O, so the
//! ops-manager can check a certificate is really new and sound BEFORE it restarts a pod.
//!
//! Names follow the certificate (`tls.crt`, `tls.key`, `ca.crt`); usages are spelled as in
//! cert-manager's `spec.usages` (`server auth`, `digital signature`), and RFC 5280 spellings
//! (`serverAuth`) are accepted when matching. Messages never contain private key material.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING,
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _,
};
use k8s_openapi::jiff::Timestamp;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid_registry, oid2abbrev};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, SubjectPublicKeyInfo, X509Name};

/// The facts about one certificate the operator decides on and shows to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Hex, uppercase, no colons, no leading zero bytes: stable across re-reads, so it tells a
    /// re-issued certificate from the old one.
    pub serial: String,
    /// RFC 4514 order (most specific first), e.g. `CN=mssql,OU=client,O=kubedb`.
    pub subject: String,
    pub issuer: String,
    /// Unix seconds, so callers compare with plain integers.
    pub not_before: i64,
    pub not_after: i64,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// cert-manager's spelling: `digital signature`, `key encipherment`, `cert sign`, ...
    pub key_usages: Vec<String>,
    /// cert-manager's spelling: `server auth`, `client auth`, ...; unknown ones as dotted OIDs.
    pub extended_key_usages: Vec<String>,
    /// `RSA 2048`, `ECDSA P-256`, `Ed25519`, or the key's OID.
    pub public_key_algorithm: String,
    /// SHA-256 of the DER certificate, hex uppercase without colons.
    pub sha256_fingerprint: String,
}

/// Why a PEM certificate (bundle) could not be read. Certificates are public, so details are fine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    #[error("invalid PEM: {0}")]
    Pem(&'static str),
    #[error("certificate #{index} is not a valid X.509 certificate: {reason}")]
    X509 { index: usize, reason: String },
}

/// The files of a `kubernetes.io/tls` Secret, as cert-manager writes them.
#[derive(Clone, Copy, Debug)]
pub struct TlsFiles<'a> {
    /// The leaf certificate, possibly followed by intermediates.
    pub tls_crt: &'a [u8],
    pub tls_key: &'a [u8],
    /// The CA that must have issued `tls_crt`; normally the Secret's own `ca.crt`.
    pub ca_crt: Option<&'a [u8]>,
}

/// What the new certificate must satisfy; empty lists require nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The serial before re-issuing; the certificate must have a different one.
    pub previous_serial: Option<String>,
    /// Each must be covered by a DNS SAN; `*.a.b` covers exactly one label in front of `a.b`.
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    /// Key usages or extended key usages, in cert-manager's or RFC 5280's spelling.
    pub usages: Vec<String>,
}

/// One failed check of [`check_tls_secret`], saying what is wrong and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("tls.crt: {0}")]
    TlsCrt(InspectError),
    /// `reason` is a fixed text: nothing read from the key ever reaches a message.
    #[error("tls.key: {reason}")]
    TlsKey { reason: &'static str },
    #[error("tls.key holds a {key} key that is not the key of tls.crt (whose key is {cert})")]
    KeyMismatch { key: String, cert: String },
    #[error("tls.crt is not valid yet: valid from {}, now is {}", time(*.not_before), time(*.now))]
    NotYetValid { not_before: i64, now: i64 },
    #[error("tls.crt expired at {}, now is {}", time(*.not_after), time(*.now))]
    Expired { not_after: i64, now: i64 },
    #[error("tls.crt still has serial {serial}, the one from before: it was not re-issued yet")]
    SameSerial { serial: String },
    #[error("tls.crt does not cover DNS name {name} (it covers: {})", List(.covered))]
    MissingDnsName { name: String, covered: Vec<String> },
    #[error("tls.crt does not cover IP address {ip} (it covers: {})", List(.covered))]
    MissingIpAddress { ip: String, covered: Vec<String> },
    #[error("expected IP address {0:?} is not an IP address")]
    InvalidExpectedIp(String),
    #[error("tls.crt lacks usage {usage:?} (it has: {})", List(.present))]
    MissingUsage { usage: String, present: Vec<String> },
    #[error("ca.crt: {0}")]
    CaCrt(InspectError),
    #[error("tls.crt was issued by {issuer}, not by the CA in ca.crt ({})", List(.ca_subjects))]
    NotIssuedByCa {
        issuer: String,
        ca_subjects: Vec<String>,
    },
    #[error(
        "tls.crt names {issuer} as its issuer, but its signature does not verify with the key \
         of that CA in ca.crt (the CA was replaced by one with the same name)"
    )]
    BadSignature { issuer: String },
    #[error("ca.crt certificate {subject} is not a CA (basicConstraints CA:TRUE is missing)")]
    NotACa { subject: String },
}

/// Reads the first certificate of a PEM bundle; later blocks are not looked at.
pub fn parse_certificate(pem: &[u8]) -> Result<CertInfo, InspectError> {
    let der = decode_pem(pem)
        .next()
        .unwrap_or(Err(InspectError::NoCertificate))?;
    Ok(describe(&parse_x509(1, &der)?))
}

/// Reads one DER certificate, as a TLS handshake carries it.
pub fn parse_der(der: &[u8]) -> Result<CertInfo, InspectError> {
    Ok(describe(&parse_x509(1, der)?))
}

/// Reads every certificate of a PEM bundle (leaf first, as cert-manager writes `tls.crt`).
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertInfo>, InspectError> {
    let ders = decode_bundle(pem);
    Ok(parse_bundle(&ders)?.iter().map(describe).collect())
}

/// Checks a TLS Secret's files against what was asked for, at `now_unix`; returns the leaf's
/// facts, or every failed check (not just the first, so one message tells the whole story).
pub fn check_tls_secret(
    files: &TlsFiles<'_>,
    expect: &Expectations,
    now_unix: i64,
) -> Result<CertInfo, Vec<Problem>> {
    let mut problems = Vec::new();
    let ders = decode_bundle(files.tls_crt);
    let chain = parse_bundle(&ders).unwrap_or_else(|e| {
        problems.push(Problem::TlsCrt(e));
        Vec::new()
    });
    let leaf = chain.split_first();
    let info = leaf.map(|(leaf, _)| describe(leaf));

    match (public_key_of(files.tls_key), leaf) {
        (Err(reason), _) => problems.push(Problem::TlsKey { reason }),
        (Ok(key), Some((leaf, _))) if *key.bits != *leaf.public_key().subject_public_key.data => {
            problems.push(Problem::KeyMismatch {
                key: key.algorithm,
                cert: key_algorithm(leaf.public_key()),
            });
        }
        _ => {}
    }
    if let Some(info) = &info {
        problems.extend(check_leaf(info, expect, now_unix));
    }
    if let Some(ca_pem) = files.ca_crt {
        let ca_ders = decode_bundle(ca_pem);
        match parse_bundle(&ca_ders) {
            Err(e) => problems.push(Problem::CaCrt(e)),
            Ok(cas) => {
                if let Some((leaf, intermediates)) = leaf {
                    problems.extend(check_issuer(leaf, intermediates, &cas).err());
                }
            }
        }
    }
    match info {
        Some(info) if problems.is_empty() => Ok(info),
        _ => Err(problems),
    }
}

/// The checks that need only the leaf's facts: validity, serial, SANs, usages.
pub(crate) fn check_leaf(info: &CertInfo, expect: &Expectations, now: i64) -> Vec<Problem> {
    let mut problems = Vec::new();
    if now < info.not_before {
        problems.push(Problem::NotYetValid {
            not_before: info.not_before,
            now,
        });
    }
    if now > info.not_after {
        problems.push(Problem::Expired {
            not_after: info.not_after,
            now,
        });
    }
    if let Some(previous) = &expect.previous_serial
        && canonical_serial(previous) == canonical_serial(&info.serial)
    {
        problems.push(Problem::SameSerial {
            serial: info.serial.clone(),
        });
    }
    for name in &expect.dns_names {
        if !info.dns_names.iter().any(|san| dns_covers(san, name)) {
            problems.push(Problem::MissingDnsName {
                name: name.clone(),
                covered: info.dns_names.clone(),
            });
        }
    }
    for ip in &expect.ip_addresses {
        let Ok(wanted) = ip.parse::<IpAddr>() else {
            problems.push(Problem::InvalidExpectedIp(ip.clone()));
            continue;
        };
        if !info.ip_addresses.iter().any(|s| s.parse() == Ok(wanted)) {
            problems.push(Problem::MissingIpAddress {
                ip: ip.clone(),
                covered: info.ip_addresses.clone(),
            });
        }
    }
    let present: Vec<String> = info
        .key_usages
        .iter()
        .chain(&info.extended_key_usages)
        .cloned()
        .collect();
    for usage in &expect.usages {
        if !present.iter().any(|p| usage_key(p) == usage_key(usage)) {
            problems.push(Problem::MissingUsage {
                usage: usage.clone(),
                present: present.clone(),
            });
        }
    }
    problems
}

/// Walks from the leaf through the intermediates of `tls.crt` to a certificate of `ca.crt`,
/// checking names and signatures at each step; several CAs of the same name (a CA bundle during
/// a CA rotation) are all tried.
pub(crate) fn check_issuer(
    leaf: &X509Certificate<'_>,
    intermediates: &[X509Certificate<'_>],
    cas: &[X509Certificate<'_>],
) -> Result<(), Problem> {
    let signed = |child: &X509Certificate<'_>, parent: &X509Certificate<'_>| {
        child.issuer().as_raw() == parent.subject().as_raw()
            && child.verify_signature(Some(parent.public_key())).is_ok()
    };
    let mut current = leaf;
    // One step per intermediate at most: intermediates that sign each other cannot loop it.
    for _ in 0..=intermediates.len() {
        if let Some(ca) = cas.iter().find(|ca| signed(current, ca)) {
            return match ca.is_ca() {
                true => Ok(()),
                false => Err(Problem::NotACa {
                    subject: name(ca.subject()),
                }),
            };
        }
        match intermediates
            .iter()
            .find(|i| i.is_ca() && signed(current, i))
        {
            Some(next) => current = next,
            None => break,
        }
    }
    let issuer = name(current.issuer());
    if cas
        .iter()
        .any(|ca| ca.subject().as_raw() == current.issuer().as_raw())
    {
        return Err(Problem::BadSignature { issuer });
    }
    let ca_subjects = cas.iter().map(|ca| name(ca.subject())).collect();
    Err(Problem::NotIssuedByCa {
        issuer,
        ca_subjects,
    })
}

/// The CERTIFICATE blocks of a PEM text, other blocks (keys) skipped.
fn decode_pem(
    pem: &[u8],
) -> impl Iterator<Item = Result<CertificateDer<'static>, InspectError>> + '_ {
    CertificateDer::pem_slice_iter(pem).map(|r| r.map_err(pem_error))
}

/// All CERTIFICATE blocks; none at all is an error, so callers always get a leaf.
pub(crate) fn decode_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, InspectError> {
    let ders = decode_pem(pem).collect::<Result<Vec<_>, _>>()?;
    match ders.is_empty() {
        true => Err(InspectError::NoCertificate),
        false => Ok(ders),
    }
}

/// Parses what [`decode_bundle`] decoded; the certificates borrow the caller's DER.
pub(crate) fn parse_bundle<'a>(
    ders: &'a Result<Vec<CertificateDer<'static>>, InspectError>,
) -> Result<Vec<X509Certificate<'a>>, InspectError> {
    let ders = ders.as_ref().map_err(Clone::clone)?;
    ders.iter()
        .enumerate()
        .map(|(i, der)| parse_x509(i + 1, der))
        .collect()
}

/// `index` is 1-based, as a user counts the blocks of a file.
pub(crate) fn parse_x509(index: usize, der: &[u8]) -> Result<X509Certificate<'_>, InspectError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| InspectError::X509 {
            index,
            reason: e.to_string(),
        })
}

/// Fixed texts only: the PEM parser's own errors quote input lines, which for `tls.key` would
/// be key material.
fn pem_error(e: pem::Error) -> InspectError {
    InspectError::Pem(match e {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line (truncated?)",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "a block is not valid base64",
        pem::Error::SectionTooLarge => "a block is larger than 256 MB",
        _ => "unreadable PEM",
    })
}

/// The facts of one parsed certificate; malformed optional extensions read as absent.
pub(crate) fn describe(cert: &X509Certificate<'_>) -> CertInfo {
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general_name in &san.value.general_names {
            match general_name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    ip_addresses.extend(ip_from_bytes(bytes).map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    CertInfo {
        serial: hex(strip_leading_zeros(cert.raw_serial())),
        subject: name(cert.subject()),
        issuer: name(cert.issuer()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        ip_addresses,
        is_ca: cert.is_ca(),
        key_usages: key_usages(cert),
        extended_key_usages: extended_key_usages(cert),
        public_key_algorithm: key_algorithm(cert.public_key()),
        sha256_fingerprint: hex(digest(&SHA256, cert.as_raw()).as_ref()),
    }
}

/// The keyUsage bits, named as cert-manager's `spec.usages` names them.
fn key_usages(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ku)) = cert.key_usage() else {
        return Vec::new();
    };
    let ku = ku.value;
    [
        (ku.digital_signature(), "digital signature"),
        (ku.non_repudiation(), "content commitment"),
        (ku.key_encipherment(), "key encipherment"),
        (ku.data_encipherment(), "data encipherment"),
        (ku.key_agreement(), "key agreement"),
        (ku.key_cert_sign(), "cert sign"),
        (ku.crl_sign(), "crl sign"),
        (ku.encipher_only(), "encipher only"),
        (ku.decipher_only(), "decipher only"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, label)| label.to_owned())
    .collect()
}

/// The extendedKeyUsage purposes, named as cert-manager's `spec.usages` names them.
fn extended_key_usages(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(eku)) = cert.extended_key_usage() else {
        return Vec::new();
    };
    let eku = eku.value;
    let known = [
        (eku.any, "any"),
        (eku.server_auth, "server auth"),
        (eku.client_auth, "client auth"),
        (eku.code_signing, "code signing"),
        (eku.email_protection, "email protection"),
        (eku.time_stamping, "timestamping"),
        (eku.ocsp_signing, "ocsp signing"),
    ];
    let known = known
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, label)| label.to_owned());
    known
        .chain(eku.other.iter().map(|oid| oid.to_id_string()))
        .collect()
}

/// One spelling per usage: cert-manager's `server auth` and RFC 5280's `serverAuth` compare equal.
fn usage_key(usage: &str) -> String {
    let key: String = usage.chars().filter(|c| !c.is_whitespace()).collect();
    let key = key.to_ascii_lowercase();
    match key.as_str() {
        "signing" => "digitalsignature".to_owned(),
        "nonrepudiation" => "contentcommitment".to_owned(),
        "keycertsign" => "certsign".to_owned(),
        "anyextendedkeyusage" => "any".to_owned(),
        _ => key,
    }
}

/// Whether SAN `san` covers host `name`: equal ignoring case and a final dot, or a wildcard
/// `*.parent` and `name` is one non-empty label followed by `parent`.
fn dns_covers(san: &str, name: &str) -> bool {
    let san = san.trim_end_matches('.').to_ascii_lowercase();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if san == name {
        return true;
    }
    match (san.strip_prefix("*."), name.split_once('.')) {
        (Some(parent), Some((label, rest))) => !label.is_empty() && rest == parent,
        _ => false,
    }
}

/// An iPAddress SAN is 4 or 16 raw bytes; anything else is malformed and skipped.
fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Ipv4Addr::from(b).into()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Ipv6Addr::from(b).into()),
        _ => None,
    }
}

/// Accepts our own form and openssl's (`0A:1B`, lowercase, leading zeros).
fn canonical_serial(serial: &str) -> String {
    let hex: String = serial.chars().filter(|c| *c != ':').collect();
    hex.to_ascii_uppercase().trim_start_matches('0').to_owned()
}

/// DER may prefix a serial with 0x00 to keep it positive; the number is what identifies it.
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first..]
}

/// Uppercase hex without separators, the form of serials and fingerprints here.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// RFC 4514 form: RDNs most specific first, `+` inside a multi-valued RDN, specials escaped.
fn name(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+"))
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// `CN=value`; a value that is not a string is written as `#hex`, as RFC 4514 does.
fn attribute(attr: &AttributeTypeAndValue<'_>) -> String {
    let oid = attr.attr_type();
    let key = oid2abbrev(oid, oid_registry()).map_or_else(|_| oid.to_id_string(), str::to_owned);
    match attr.as_str() {
        Ok(value) => format!("{key}={}", escape_rdn_value(value)),
        Err(_) => format!("{key}=#{}", hex(attr.as_slice())),
    }
}

/// RFC 4514 escaping, so a `,` or `+` inside a value cannot be read as a separator.
fn escape_rdn_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || edge_space
            || (c == '#' && i == 0)
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A readable key type with its size or curve, as messages and `kubectl` output show it.
fn key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = spki.parsed().map(|key| key.key_size()).unwrap_or_default();
        format!("RSA {bits}")
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let curve = match curve {
            Some(c) if c == OID_EC_P256 => "P-256",
            Some(c) if c == OID_NIST_EC_P384 => "P-384",
            Some(c) if c == OID_NIST_EC_P521 => "P-521",
            _ => "(unknown curve)",
        };
        format!("ECDSA {curve}")
    } else if *algorithm == OID_SIG_ED25519 {
        "Ed25519".to_owned()
    } else {
        algorithm.to_id_string()
    }
}

/// The public half of `tls.key`, in the encoding of a certificate's subjectPublicKey bits
/// (RSAPublicKey DER, EC point, raw Ed25519 key), to compare byte for byte.
struct PublicKey {
    algorithm: String,
    bits: Vec<u8>,
}

/// The curves cert-manager can issue ECDSA keys for (its `size` 256, 384, 521).
const EC_CURVES: [(&EcdsaSigningAlgorithm, &str); 3] = [
    (&ECDSA_P256_SHA256_ASN1_SIGNING, "ECDSA P-256"),
    (&ECDSA_P384_SHA384_ASN1_SIGNING, "ECDSA P-384"),
    (&ECDSA_P521_SHA512_ASN1_SIGNING, "ECDSA P-521"),
];

/// Derives the public key of the first private key in `pem`: PKCS#1 RSA, SEC1 EC, or PKCS#8
/// RSA, EC or Ed25519. Errors are fixed texts.
fn public_key_of(pem: &[u8]) -> Result<PublicKey, &'static str> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            "no PEM private key block found (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
        }
        _ => "the private key PEM is malformed",
    })?;
    let public = match &key {
        PrivateKeyDer::Pkcs1(k) => rsa(RsaKeyPair::from_der(k.secret_pkcs1_der())),
        PrivateKeyDer::Sec1(k) => {
            ec(|alg| EcdsaKeyPair::from_private_key_der(alg, k.secret_sec1_der()))
        }
        PrivateKeyDer::Pkcs8(k) => {
            let der = k.secret_pkcs8_der();
            rsa(RsaKeyPair::from_pkcs8(der))
                .or_else(|| ec(|alg| EcdsaKeyPair::from_pkcs8(alg, der)))
                .or_else(|| {
                    let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).ok()?;
                    let bits = key.public_key().as_ref().to_vec();
                    Some(PublicKey {
                        algorithm: "Ed25519".to_owned(),
                        bits,
                    })
                })
        }
        _ => None,
    };
    public.ok_or("not a valid RSA (2048 to 8192 bits), ECDSA (P-256, P-384, P-521) or Ed25519 key")
}

/// The public half of an RSA key pair, with its size for messages.
fn rsa(key: Result<RsaKeyPair, KeyRejected>) -> Option<PublicKey> {
    let key = key.ok()?;
    let algorithm = format!("RSA {}", key.public_modulus_len() * 8);
    Some(PublicKey {
        algorithm,
        bits: key.public_key().as_ref().to_vec(),
    })
}

/// The first curve the key parses for: SEC1 and PKCS#8 keys name their curve inside.
fn ec(
    parse: impl Fn(&'static EcdsaSigningAlgorithm) -> Result<EcdsaKeyPair, KeyRejected>,
) -> Option<PublicKey> {
    EC_CURVES.iter().find_map(|(alg, label)| {
        let key = parse(alg).ok()?;
        let bits = key.public_key().as_ref().to_vec();
        Some(PublicKey {
            algorithm: (*label).to_owned(),
            bits,
        })
    })
}

/// RFC 3339 UTC, the way Kubernetes shows times.
pub(crate) fn time(unix: i64) -> String {
    Timestamp::from_second(unix).map_or_else(|_| format!("unix time {unix}"), |t| t.to_string())
}

/// A comma-separated list for messages; `nothing` when empty.
struct List<'a>(&'a [String]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.is_empty() {
            true => f.write_str("nothing"),
            false => f.write_str(&self.0.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use x509_parser::der_parser::parse_der;

    use super::*;
    use crate::test_pki::*;

    fn expect() -> Expectations {
        Expectations {
            previous_serial: Some("01".to_owned()),
            dns_names: vec!["db".to_owned(), "db-0.db-pods.demo.svc".to_owned()],
            ip_addresses: vec!["127.0.0.1".to_owned(), "0:0::1".to_owned()],
            usages: vec!["server auth".to_owned(), "clientAuth".to_owned()],
        }
    }

    fn problems(files: &TlsFiles<'_>, expect: &Expectations, now: i64) -> Vec<String> {
        let problems = check_tls_secret(files, expect, now).unwrap_err();
        problems.iter().map(ToString::to_string).collect()
    }

    /// Re-wraps a PKCS#8 key as the key-specific structure inside it (PKCS#1 or SEC1).
    fn inner_key_pem(pkcs8_pem: &str, label: &str) -> String {
        let pkcs8 = PrivateKeyDer::from_pem_slice(pkcs8_pem.as_bytes()).unwrap();
        let (_, info) = parse_der(pkcs8.secret_der()).unwrap();
        let inner = info.as_sequence().unwrap()[2].as_slice().unwrap();
        ::pem::encode(&::pem::Pem::new(label, inner))
    }

    #[test]
    fn a_sound_secret_passes_and_is_described() {
        let ca = ca("kubedb-ca");
        let secret = secret(&ca);
        let info = check_tls_secret(&secret.files(), &expect(), NOW).unwrap();
        assert_eq!(info.serial, "0A1B");
        assert_eq!(info.subject, "CN=mssql,OU=server,O=kubedb");
        assert_eq!(info.issuer, "CN=kubedb-ca");
        assert_eq!(info.dns_names, ["db", "localhost", "*.db-pods.demo.svc"]);
        assert_eq!(info.ip_addresses, ["127.0.0.1", "::1"]);
        assert_eq!(info.key_usages, ["digital signature", "key encipherment"]);
        assert_eq!(info.extended_key_usages, ["server auth", "client auth"]);
        assert_eq!(info.public_key_algorithm, "ECDSA P-256");
        assert!(!info.is_ca);
        assert_eq!(info.not_before, 1_767_225_600);
        assert_eq!(info.not_after, 1_798_761_600);
        assert_eq!(info.sha256_fingerprint.len(), 64);
        assert_eq!(parse_certificate(secret.crt.as_bytes()), Ok(info));
    }

    #[test]
    fn a_bundle_is_read_leaf_first() {
        let ca = ca("kubedb-ca");
        let bundle = format!("{}{}", secret(&ca).crt, ca.pem());
        let chain = parse_chain(bundle.as_bytes()).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!((chain[0].is_ca, chain[1].is_ca), (false, true));
        assert_eq!(chain[1].key_usages, ["cert sign", "crl sign"]);
        assert_eq!(parse_certificate(bundle.as_bytes()).unwrap(), chain[0]);
    }

    /// Every key type cert-manager issues, in PKCS#8 and in its key-specific PEM form.
    #[test]
    fn keys_of_every_type_and_encoding_match_their_certificate() {
        let ca = ca("kubedb-ca");
        let cases = [
            (&rcgen::PKCS_RSA_SHA256, "RSA 2048", Some("RSA PRIVATE KEY")),
            (
                &rcgen::PKCS_ECDSA_P256_SHA256,
                "ECDSA P-256",
                Some("EC PRIVATE KEY"),
            ),
            (
                &rcgen::PKCS_ECDSA_P384_SHA384,
                "ECDSA P-384",
                Some("EC PRIVATE KEY"),
            ),
            (&rcgen::PKCS_ED25519, "Ed25519", None),
        ];
        for (alg, algorithm, specific_label) in cases {
            let mut secret = issue(&leaf_params(&POD_SANS), alg, &ca);
            let info = check_tls_secret(&secret.files(), &expect(), NOW).unwrap();
            assert_eq!(info.public_key_algorithm, algorithm);
            if let Some(label) = specific_label {
                secret.key = inner_key_pem(&secret.key, label);
                let found = check_tls_secret(&secret.files(), &expect(), NOW);
                assert!(found.is_ok(), "{label}: {found:?}");
            }
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_reported() {
        let ca = ca("kubedb-ca");
        let mut secret = secret(&ca);
        secret.key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .unwrap()
            .serialize_pem();
        assert_eq!(
            problems(&secret.files(), &expect(), NOW),
            [
                "tls.key holds a RSA 2048 key that is not the key of tls.crt (whose key is ECDSA P-256)"
            ]
        );
        secret.key = KeyPair::generate().unwrap().serialize_pem();
        assert_eq!(
            check_tls_secret(&secret.files(), &expect(), NOW),
            Err(vec![Problem::KeyMismatch {
                key: "ECDSA P-256".to_owned(),
                cert: "ECDSA P-256".to_owned()
            }])
        );
    }

    #[test]
    fn a_certificate_of_another_ca_is_reported() {
        let (ca, other) = (ca("kubedb-ca"), ca("other-ca"));
        let mut secret = secret(&ca);
        secret.ca = other.pem();
        assert_eq!(
            problems(&secret.files(), &expect(), NOW),
            ["tls.crt was issued by CN=kubedb-ca, not by the CA in ca.crt (CN=other-ca)"]
        );
    }

    #[test]
    fn a_replaced_ca_with_the_same_name_is_reported() {
        let (old, new) = (ca("kubedb-ca"), ca("kubedb-ca"));
        let mut secret = secret(&old);
        secret.ca = new.pem();
        let found = check_tls_secret(&secret.files(), &expect(), NOW);
        assert_eq!(
            found,
            Err(vec![Problem::BadSignature {
                issuer: "CN=kubedb-ca".to_owned()
            }])
        );
        // During a CA rotation ca.crt may hold both; the old one still vouches for the leaf.
        secret.ca = format!("{}{}", new.pem(), old.pem());
        assert!(check_tls_secret(&secret.files(), &expect(), NOW).is_ok());
    }

    #[test]
    fn a_ca_certificate_without_ca_basic_constraints_is_reported() {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "not-a-ca");
        let fake = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let secret = secret(&fake);
        assert_eq!(
            problems(&secret.files(), &expect(), NOW),
            ["ca.crt certificate CN=not-a-ca is not a CA (basicConstraints CA:TRUE is missing)"]
        );
    }

    #[test]
    fn a_leaf_is_traced_through_intermediates_in_tls_crt() {
        let root = ca("root-ca");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "intermediate-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let intermediate = CertifiedIssuer::signed_by(params, key, &root).unwrap();
        let mut secret = secret(&intermediate);
        secret.crt = format!("{}{}", secret.crt, intermediate.pem());
        secret.ca = root.pem();
        let info = check_tls_secret(&secret.files(), &expect(), NOW).unwrap();
        assert_eq!(info.issuer, "CN=intermediate-ca");
    }

    #[test]
    fn a_certificate_outside_its_validity_is_reported() {
        let ca = ca("kubedb-ca");
        let secret = secret(&ca);
        assert_eq!(
            problems(&secret.files(), &expect(), 1_800_000_000),
            ["tls.crt expired at 2027-01-01T00:00:00Z, now is 2027-01-15T08:00:00Z"]
        );
        assert_eq!(
            problems(&secret.files(), &expect(), 1_767_225_599),
            [
                "tls.crt is not valid yet: valid from 2026-01-01T00:00:00Z, now is 2025-12-31T23:59:59Z"
            ]
        );
        let mut params = leaf_params(&POD_SANS);
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2025, 1, 1);
        let expired = issue(&params, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
        let found = check_tls_secret(&expired.files(), &expect(), NOW).unwrap_err();
        assert!(matches!(
            found[..],
            [Problem::Expired {
                not_after: 1_735_689_600,
                now: NOW
            }]
        ));
    }

    #[test]
    fn the_serial_from_before_is_reported_in_any_spelling() {
        let secret = secret(&ca("kubedb-ca"));
        for previous in ["0A1B", "0a:1b", "00:0A:1B"] {
            let expect = Expectations {
                previous_serial: Some(previous.to_owned()),
                ..expect()
            };
            assert_eq!(
                problems(&secret.files(), &expect, NOW),
                ["tls.crt still has serial 0A1B, the one from before: it was not re-issued yet"]
            );
        }
    }

    #[test]
    fn missing_names_addresses_and_usages_are_each_reported() {
        let ca = ca("kubedb-ca");
        let secret = issue(
            &leaf_params(&["db", "localhost"]),
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &ca,
        );
        let expect = Expectations {
            previous_serial: None,
            dns_names: vec!["db".to_owned(), "db.demo.svc".to_owned()],
            ip_addresses: vec!["10.0.0.1".to_owned(), "nope".to_owned()],
            usages: vec!["Digital Signature".to_owned(), "code signing".to_owned()],
        };
        assert_eq!(
            problems(&secret.files(), &expect, NOW),
            [
                "tls.crt does not cover DNS name db.demo.svc (it covers: db, localhost)",
                "tls.crt does not cover IP address 10.0.0.1 (it covers: nothing)",
                "expected IP address \"nope\" is not an IP address",
                "tls.crt lacks usage \"code signing\" (it has: digital signature, key encipherment, \
                 server auth, client auth)",
            ]
        );
    }

    #[test]
    fn a_wildcard_covers_exactly_one_label() {
        let wildcard = "*.db-pods.demo.svc";
        assert!(dns_covers(wildcard, "db-0.db-pods.demo.svc"));
        assert!(dns_covers(wildcard, "DB-1.db-pods.demo.svc."));
        assert!(dns_covers(wildcard, wildcard));
        assert!(!dns_covers(wildcard, "db-pods.demo.svc"));
        assert!(!dns_covers(wildcard, "a.db-0.db-pods.demo.svc"));
        assert!(!dns_covers(wildcard, ".db-pods.demo.svc"));
        assert!(!dns_covers("db-0.db-pods.demo.svc", "*.db-pods.demo.svc"));
        assert!(!dns_covers("*.demo.svc", "db-0.db-pods.demo.svc"));
    }

    #[test]
    fn usages_match_in_cert_manager_and_rfc_spelling() {
        for (a, b) in [
            ("server auth", "serverAuth"),
            ("signing", "digitalSignature"),
            ("cert sign", "keyCertSign"),
            ("content commitment", "nonRepudiation"),
            ("ocsp signing", "OCSPSigning"),
        ] {
            assert_eq!(usage_key(a), usage_key(b), "{a} vs {b}");
        }
        assert_ne!(usage_key("server auth"), usage_key("client auth"));
    }

    #[test]
    fn subjects_are_escaped_per_rfc_4514() {
        assert_eq!(escape_rdn_value("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rdn_value("#x "), "\\#x\\ ");
        assert_eq!(escape_rdn_value("plain"), "plain");
    }

    #[test]
    fn garbage_certificates_are_errors() {
        let truncated = "-----BEGIN CERTIFICATE-----\nMIIB\n";
        let not_x509 = ::pem::encode(&::pem::Pem::new("CERTIFICATE", b"hello".to_vec()));
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert_eq!(parse_certificate(b""), Err(InspectError::NoCertificate));
        assert_eq!(
            parse_chain(b"not pem at all"),
            Err(InspectError::NoCertificate)
        );
        assert!(matches!(
            parse_certificate(truncated.as_bytes()),
            Err(InspectError::Pem(_))
        ));
        assert!(matches!(
            parse_chain(bad_base64.as_bytes()),
            Err(InspectError::Pem(_))
        ));
        let found = parse_certificate(not_x509.as_bytes()).unwrap_err();
        assert!(
            matches!(found, InspectError::X509 { index: 1, .. }),
            "{found}"
        );
    }

    #[test]
    fn an_empty_secret_reports_every_file() {
        let files = TlsFiles {
            tls_crt: b"",
            tls_key: b"",
            ca_crt: Some(b"junk"),
        };
        assert_eq!(
            problems(&files, &Expectations::default(), NOW),
            [
                "tls.crt: no PEM CERTIFICATE block found",
                "tls.key: no PEM private key block found (PRIVATE KEY, RSA PRIVATE KEY or EC \
                 PRIVATE KEY)",
                "ca.crt: no PEM CERTIFICATE block found",
            ]
        );
    }

    #[test]
    fn messages_never_quote_the_private_key() {
        let ca = ca("kubedb-ca");
        let mut secret = secret(&ca);
        let key = secret.key.clone();
        let body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let broken_keys = [
            key.replace("-----END PRIVATE KEY-----", ""),
            key.replace("-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY"),
            key.replacen(body[0], &format!("{}!", body[0]), 1),
            key.replace("PRIVATE KEY", "RSA PRIVATE KEY"),
            key.replacen(body[0], &"A".repeat(body[0].len()), 1),
            format!("-----BEGIN {}-----\n", body[0]),
        ];
        for broken in broken_keys {
            secret.key = broken;
            let found = problems(&secret.files(), &expect(), NOW);
            assert!(
                found.iter().all(|m| m.starts_with("tls.key: ")),
                "{found:?}"
            );
            for message in &found {
                assert!(
                    body.iter().all(|line| !message.contains(&line[..16])),
                    "{message}"
                );
            }
        }
    }

    fn sound_crt() -> &'static Secret {
        static SECRET: std::sync::LazyLock<Secret> =
            std::sync::LazyLock::new(|| secret(&ca("kubedb-ca")));
        &SECRET
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_certificate(&bytes);
            let _ = parse_chain(&bytes);
            let files = TlsFiles { tls_crt: &bytes, tls_key: &bytes, ca_crt: Some(&bytes) };
            prop_assert!(check_tls_secret(&files, &expect(), NOW).is_err());
        }

        #[test]
        fn random_pem_blocks_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            label in prop::sample::select(
                &["CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"][..]
            ),
        ) {
            let block = ::pem::encode(&::pem::Pem::new(label, bytes));
            let _ = parse_chain(block.as_bytes());
            let files = TlsFiles { tls_crt: block.as_bytes(), tls_key: block.as_bytes(), ca_crt: None };
            prop_assert!(check_tls_secret(&files, &expect(), NOW).is_err());
        }

        #[test]
        fn corrupted_certificates_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let secret = sound_crt();
            let der = CertificateDer::from_pem_slice(secret.crt.as_bytes()).unwrap();
            let mut der = der.to_vec();
            for (at, byte) in flips {
                let i = at.index(der.len());
                der[i] ^= byte;
            }
            der.truncate(cut.index(der.len() + 1));
            let crt = ::pem::encode(&::pem::Pem::new("CERTIFICATE", der));
            let files = TlsFiles { tls_crt: crt.as_bytes(), ..secret.files() };
            let _ = check_tls_secret(&files, &expect(), NOW);
        }
    }
}
