//! The certificate a server presents in its TLS handshake, judged against the Secret it should
//! have loaded at start-up. SQL Server reads its certificate only when it starts, so a pod can be
//! Ready and still serve an older certificate (or another one) than its Secret holds.

use x509_parser::certificate::X509Certificate;

use crate::inspect::{
    CertInfo, Expectations, InspectError, Problem, check_issuer, check_leaf, decode_bundle,
    describe, parse_bundle,
};

/// One way the served certificate is not the expected one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServedProblem {
    #[error("the server presented no certificate")]
    NothingServed,
    #[error("the served certificate #{index} is not a valid X.509 certificate: {reason}")]
    Unreadable { index: usize, reason: String },
    #[error("the secret's tls.crt: {0}")]
    Secret(InspectError),
    #[error(
        "serves certificate serial {served} (not after {served_not_after}), not serial {expected} \
         of its secret: it did not load the current certificate (SQL Server reads it only at start-up)"
    )]
    OtherCertificate {
        served: String,
        served_not_after: String,
        expected: String,
    },
    #[error("serves serial {serial} as its secret does, but with another public key")]
    OtherKey { serial: String },
    #[error("the served certificate: {0}")]
    Leaf(Problem),
    #[error("the served chain: {0}")]
    Chain(Problem),
}

/// Checks a served chain (leaf first, DER) against the Secret's `tls.crt` and `ca.crt`: the same
/// leaf (serial and public key), chained to the CA, covering the names clients use, valid now.
/// Returns the served leaf's facts, or every problem found.
pub fn check_served(
    served: &[impl AsRef<[u8]>],
    secret_tls_crt: &[u8],
    ca_crt: Option<&[u8]>,
    expect: &Expectations,
    now_unix: i64,
) -> Result<CertInfo, Vec<ServedProblem>> {
    let mut parsed: Vec<X509Certificate<'_>> = Vec::new();
    for (index, der) in served.iter().enumerate() {
        match crate::inspect::parse_x509(index + 1, der.as_ref()) {
            Ok(cert) => parsed.push(cert),
            Err(InspectError::X509 { index, reason }) => {
                return Err(vec![ServedProblem::Unreadable { index, reason }]);
            }
            Err(other) => return Err(vec![ServedProblem::Secret(other)]),
        }
    }
    let Some((leaf, intermediates)) = parsed.split_first() else {
        return Err(vec![ServedProblem::NothingServed]);
    };
    let served_info = describe(leaf);
    let secret_ders = decode_bundle(secret_tls_crt);
    let secret_chain = parse_bundle(&secret_ders).map_err(|e| vec![ServedProblem::Secret(e)])?;
    let Some(expected) = secret_chain.first() else {
        return Err(vec![ServedProblem::Secret(InspectError::NoCertificate)]);
    };
    let expected_info = describe(expected);
    if expected_info.serial != served_info.serial {
        return Err(vec![ServedProblem::OtherCertificate {
            served: served_info.serial.clone(),
            served_not_after: crate::inspect::time(served_info.not_after),
            expected: expected_info.serial,
        }]);
    }
    let mut problems = Vec::new();
    if leaf.public_key().raw != expected.public_key().raw {
        problems.push(ServedProblem::OtherKey {
            serial: served_info.serial.clone(),
        });
    }
    problems.extend(
        check_leaf(&served_info, expect, now_unix)
            .into_iter()
            .map(ServedProblem::Leaf),
    );
    if let Some(ca_pem) = ca_crt {
        let ca_ders = decode_bundle(ca_pem);
        match parse_bundle(&ca_ders) {
            Err(e) => problems.push(ServedProblem::Chain(Problem::CaCrt(e))),
            Ok(cas) => problems.extend(
                check_issuer(leaf, intermediates, &cas)
                    .err()
                    .map(ServedProblem::Chain),
            ),
        }
    }
    match problems.is_empty() {
        true => Ok(served_info),
        false => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::KeyPair;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::test_pki::*;

    fn der(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn names() -> Expectations {
        Expectations {
            dns_names: vec!["db".to_owned(), "db-0.db-pods.demo.svc".to_owned()],
            ..Expectations::default()
        }
    }

    fn judge(
        served: &Secret,
        secret: &Secret,
        expect: &Expectations,
    ) -> Result<CertInfo, Vec<String>> {
        check_served(
            &der(&served.crt),
            secret.crt.as_bytes(),
            Some(secret.ca.as_bytes()),
            expect,
            NOW,
        )
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_secrets_own_certificate_passes() {
        let ca = ca("kubedb-ca");
        let secret = secret(&ca);
        let info = judge(&secret, &secret, &names()).unwrap();
        assert_eq!(info.serial, "0A1B");
    }

    #[test]
    fn an_older_certificate_names_both_serials() {
        let ca = ca("kubedb-ca");
        let mut params = leaf_params(&POD_SANS);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x02]));
        let old = issue(&params, &rcgen::PKCS_ECDSA_P256_SHA256, &ca);
        assert_eq!(
            judge(&old, &secret(&ca), &names()).unwrap_err(),
            [
                "serves certificate serial 0102 (not after 2027-01-01T00:00:00Z), not serial 0A1B of \
              its secret: it did not load the current certificate (SQL Server reads it only at start-up)"
            ]
        );
    }

    #[test]
    fn the_same_serial_with_another_key_is_refused() {
        let ca = ca("kubedb-ca");
        let (served, expected) = (secret(&ca), secret(&ca));
        assert_eq!(
            judge(&served, &expected, &names()).unwrap_err(),
            ["serves serial 0A1B as its secret does, but with another public key"]
        );
    }

    #[test]
    fn a_chain_to_another_ca_and_a_missing_name_are_both_reported() {
        let (ours, theirs) = (ca("kubedb-ca"), ca("other-ca"));
        let key = KeyPair::generate().unwrap();
        let crt = leaf_params(&POD_SANS)
            .signed_by(&key, &theirs)
            .unwrap()
            .pem();
        let served = Secret {
            crt,
            key: key.serialize_pem(),
            ca: theirs.pem(),
        };
        let expected = Secret {
            crt: served.crt.clone(),
            key: served.key.clone(),
            ca: ours.pem(),
        };
        let mut expect = names();
        expect.dns_names.push("db.demo.svc".to_owned());
        assert_eq!(
            judge(&served, &expected, &expect).unwrap_err(),
            [
                "the served certificate: tls.crt does not cover DNS name db.demo.svc (it covers: db, localhost, *.db-pods.demo.svc)",
                "the served chain: tls.crt was issued by CN=other-ca, not by the CA in ca.crt (CN=kubedb-ca)",
            ]
        );
    }

    #[test]
    fn nothing_or_garbage_served_is_said_so() {
        let secret = secret(&ca("kubedb-ca"));
        let nothing: [&[u8]; 0] = [];
        let problems = check_served(&nothing, secret.crt.as_bytes(), None, &names(), NOW);
        assert_eq!(problems.unwrap_err(), [ServedProblem::NothingServed]);
        let garbage = check_served(&[b"not DER"], secret.crt.as_bytes(), None, &names(), NOW);
        assert!(matches!(
            garbage.unwrap_err().as_slice(),
            [ServedProblem::Unreadable { index: 1, .. }]
        ));
    }
}
