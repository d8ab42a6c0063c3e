//! The endpoint certificate as SQL Server 2022 takes it from a file: PKCS#12 (`CREATE CERTIFICATE
//! … FROM FILE … WITH FORMAT = 'PFX'`). cert-manager writes PEM with a PKCS#1, SEC1 or PKCS#8 key;
//! the key goes into the PFX as PKCS#8.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PfxError {
    #[error("the certificate file holds no PEM certificate")]
    NoCertificate,
    #[error("the key file holds no PEM private key")]
    NoKey,
    #[error("the private key is of a kind SQL Server does not take (RSA or ECDSA P-256/P-384)")]
    KeyKind,
    #[error("cannot write the PKCS#12 file: {0}")]
    Write(String),
}

/// The leaf (first) certificate of a PEM chain.
pub fn leaf(chain_pem: &[u8]) -> Result<CertificateDer<'static>, PfxError> {
    CertificateDer::pem_slice_iter(chain_pem)
        .next()
        .and_then(Result::ok)
        .ok_or(PfxError::NoCertificate)
}

/// A private key of any of cert-manager's encodings as PKCS#8.
fn pkcs8(key_pem: &[u8]) -> Result<Vec<u8>, PfxError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| PfxError::NoKey)?;
    let der: Pkcs8V1Der<'static> = match key {
        PrivateKeyDer::Pkcs8(key) => return Ok(key.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der())
            .map_err(|_| PfxError::KeyKind)?
            .as_der()
            .map_err(|_| PfxError::KeyKind)?,
        PrivateKeyDer::Sec1(key) => {
            let sec1 = key.secret_sec1_der();
            let pair = [
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            ]
            .into_iter()
            .find_map(|alg| EcdsaKeyPair::from_private_key_der(alg, sec1).ok())
            .ok_or(PfxError::KeyKind)?;
            return Ok(pair
                .to_pkcs8v1()
                .map_err(|_| PfxError::KeyKind)?
                .as_ref()
                .to_vec());
        }
        _ => return Err(PfxError::KeyKind),
    };
    Ok(der.as_ref().to_vec())
}

/// The PKCS#12 bytes of the leaf and its key, encrypted with `password`.
pub fn write(chain_pem: &[u8], key_pem: &[u8], password: &str) -> Result<Vec<u8>, PfxError> {
    let leaf = leaf(chain_pem)?;
    let key = PrivateKey::from_der(&pkcs8(key_pem)?).map_err(|_| PfxError::KeyKind)?;
    let certificate =
        Certificate::from_der(leaf.as_ref()).map_err(|e| PfxError::Write(e.to_string()))?;
    let chain = PrivateKeyChain::new(b"dbm".to_vec(), key, [certificate]);
    let mut store = KeyStore::new();
    store.add_entry("dbm", KeyStoreEntry::PrivateKeyChain(chain));
    store
        .writer(password)
        .write()
        .map_err(|e| PfxError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p12_keystore::Pkcs12ImportPolicy;

    fn key_and_cert(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["ag-0.ag-pods.demo.svc".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pkcs8_key_and_its_certificate_round_trip() {
        for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_RSA_SHA256] {
            let (cert, key) = key_and_cert(alg);
            let pfx = write(cert.as_bytes(), key.as_bytes(), "pw").unwrap();
            let store = KeyStore::from_pkcs12(&pfx, "pw", Pkcs12ImportPolicy::Strict).unwrap();
            let (_, chain) = store.private_key_chain().unwrap();
            assert_eq!(
                chain.certs()[0].as_der(),
                leaf(cert.as_bytes()).unwrap().as_ref()
            );
            assert!(KeyStore::from_pkcs12(&pfx, "other", Pkcs12ImportPolicy::Strict).is_err());
        }
    }

    #[test]
    fn a_key_file_without_a_key_is_named() {
        let (cert, _) = key_and_cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(matches!(
            write(cert.as_bytes(), b"", "pw"),
            Err(PfxError::NoKey)
        ));
        assert!(matches!(
            write(b"", cert.as_bytes(), "pw"),
            Err(PfxError::NoCertificate)
        ));
    }
}
