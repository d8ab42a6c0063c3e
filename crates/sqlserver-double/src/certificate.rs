//! The certificate SQL Server serves: the configured `tlscert`/`tlskey` PEM files, checked the
//! way SQL Server checks them (readable, parseable, the key matching the certificate), or, when
//! none is configured, a self-signed certificate generated at start as SQL Server does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// The subject SQL Server gives the certificate it generates when none is configured.
pub const FALLBACK_SUBJECT: &str = "SSL_Self_Signed_Fallback";

/// A certificate chain with its private key, checked to belong together.
pub struct Loaded {
    pub chain: Vec<CertificateDer<'static>>,
    pub certified: Arc<CertifiedKey>,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Why a configured certificate or key cannot be served; names the file at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TLS certificate/key load failed: {}: {reason}", file.display())]
pub struct LoadError {
    pub file: PathBuf,
    pub reason: String,
}

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Reads `cert_file` and `key_file`; returns the checked pair and the two files' bytes.
pub fn load_files(
    cert_file: &Path,
    key_file: &Path,
) -> Result<(Loaded, Vec<u8>, Vec<u8>), LoadError> {
    let read = |file: &Path| {
        std::fs::read(file).map_err(|e| LoadError {
            file: file.to_owned(),
            reason: format!("cannot read the file: {e}"),
        })
    };
    let cert_pem = read(cert_file)?;
    let key_pem = read(key_file)?;
    let loaded = from_pem(&cert_pem, cert_file, &key_pem, key_file)?;
    Ok((loaded, cert_pem, key_pem))
}

/// Parses a PEM chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1) and checks that
/// the key is the leaf's. The paths only name the files in errors.
pub fn from_pem(
    cert_pem: &[u8],
    cert_file: &Path,
    key_pem: &[u8],
    key_file: &Path,
) -> Result<Loaded, LoadError> {
    let cert_error = |reason: String| LoadError {
        file: cert_file.to_owned(),
        reason,
    };
    let key_error = |reason: String| LoadError {
        file: key_file.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM CERTIFICATE block found".into()));
    }
    for (index, cert) in chain.iter().enumerate() {
        x509_parser::parse_x509_certificate(cert).map_err(|e| {
            cert_error(format!(
                "certificate {} of the chain is not valid X.509: {e}",
                index + 1
            ))
        })?;
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            key_error("no PEM PRIVATE KEY block found".into())
        }
        other => key_error(format!("not valid PEM: {other}")),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(format!("not a usable private key: {e}")))?;
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(key_error(format!(
                "the private key does not match the public key of the certificate in {}",
                cert_file.display()
            )));
        }
        Err(e) => {
            return Err(key_error(format!(
                "cannot check the key against the certificate: {e}"
            )));
        }
    }
    Ok(Loaded {
        chain,
        certified: Arc::new(certified),
    })
}

/// Generates SQL Server's fallback certificate: self-signed, ECDSA P-256, for `names`.
/// Returns it with its PEM encodings (certificate, key).
pub fn self_signed(names: Vec<String>) -> Result<(Loaded, String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FALLBACK_SUBJECT);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let loaded = from_pem(
        cert_pem.as_bytes(),
        Path::new("<generated certificate>"),
        key_pem.as_bytes(),
        Path::new("<generated key>"),
    )
    .map_err(|e| e.to_string())?;
    Ok((loaded, cert_pem, key_pem))
}

/// What start-up prints about the certificate (never anything about the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// SHA-1 of the DER, uppercase hex: SQL Server's "Cert Hash(sha1)".
    pub sha1: String,
    /// The serial number, uppercase hex.
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
    pub dns_names: Vec<String>,
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

pub fn summary(leaf: &CertificateDer<'_>) -> Result<Summary, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => (*dns).to_owned(),
                    x509_parser::extensions::GeneralName::IPAddress(ip) => format!("IP {ip:02X?}"),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Summary {
        sha1: hex_upper(sha1.as_ref()),
        serial: hex_upper(cert.tbs_certificate.raw_serial()),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: cert.validity().not_after.to_string(),
        dns_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads() {
        let (cert, key) = pair(&["localhost"]);
        let loaded = from_pem(
            cert.as_bytes(),
            Path::new("/c.crt"),
            key.as_bytes(),
            Path::new("/c.key"),
        )
        .unwrap();
        assert_eq!(loaded.chain.len(), 1);
        let summary = summary(&loaded.chain[0]).unwrap();
        assert_eq!(summary.sha1.len(), 40);
        assert_eq!(summary.dns_names, ["localhost"]);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_the_key_file() {
        let (cert, _) = pair(&["localhost"]);
        let (_, other_key) = pair(&["localhost"]);
        let error = from_pem(
            cert.as_bytes(),
            Path::new("/etc/tls.crt"),
            other_key.as_bytes(),
            Path::new("/etc/tls.key"),
        )
        .unwrap_err();
        assert_eq!(error.file, Path::new("/etc/tls.key"));
        assert_eq!(
            error.to_string(),
            "TLS certificate/key load failed: /etc/tls.key: the private key does not match the \
             public key of the certificate in /etc/tls.crt"
        );
    }

    #[test]
    fn non_pem_and_swapped_files_are_refused() {
        let (cert, key) = pair(&["localhost"]);
        let (c, k) = (Path::new("/c"), Path::new("/k"));
        let error = from_pem(b"hello", c, key.as_bytes(), k).unwrap_err();
        assert_eq!(
            (error.file.as_path(), error.reason.as_str()),
            (c, "no PEM CERTIFICATE block found")
        );
        let error = from_pem(cert.as_bytes(), c, cert.as_bytes(), k).unwrap_err();
        assert_eq!(
            (error.file.as_path(), error.reason.as_str()),
            (k, "no PEM PRIVATE KEY block found")
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = from_pem(garbage.as_bytes(), c, key.as_bytes(), k).unwrap_err();
        assert!(error.reason.contains("not valid X.509"), "{error}");
    }

    #[test]
    fn the_fallback_certificate_is_self_signed_with_sql_servers_subject() {
        let (loaded, cert_pem, key_pem) = self_signed(vec!["localhost".into()]).unwrap();
        let summary = summary(&loaded.chain[0]).unwrap();
        assert_eq!(summary.subject, format!("CN={FALLBACK_SUBJECT}"));
        assert_eq!(summary.issuer, summary.subject);
        assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key_pem.contains("PRIVATE KEY"));
    }
}
