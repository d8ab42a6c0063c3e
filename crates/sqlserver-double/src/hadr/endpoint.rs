//! The database mirroring endpoint ("CREATE ENDPOINT (Transact-SQL)", "Use certificates for a
//! database mirroring endpoint (Transact-SQL)"): a TCP listener on LISTENER_PORT, mutual TLS
//! (TLS 1.2 and 1.3, AES cipher suites only, for `ENCRYPTION = REQUIRED ALGORITHM AES`). Each side
//! presents the certificate named in AUTHENTICATION with its private key and accepts the other
//! only if the other's certificate, byte for byte, is one of its own master's certificates owned
//! by a user whose login has CONNECT on its endpoint ([`Master::trusted`]): no chain, name or
//! validity check, as SQL Server's certificate authentication trusts the certificates it holds.
//! What runs over that TLS is the double's own protocol ([`super::wire`]).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName,
    ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};

use crate::master::{Identity, Master};

/// How long a dial may take to connect and finish its handshake.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|suite| format!("{:?}", suite.suite()).contains("AES"));
    provider
}

/// Accepts a peer only if its certificate is one of `trusted`.
#[derive(Debug)]
struct TrustedCertificates {
    trusted: Vec<Vec<u8>>,
    provider: Arc<CryptoProvider>,
}

impl TrustedCertificates {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self
            .trusted
            .iter()
            .any(|t| t.as_slice() == end_entity.as_ref())
        {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for TrustedCertificates {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ServerCertVerifier for TrustedCertificates {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// What a handshake needs from master, read at the moment of the handshake so that a certificate
/// created or granted later counts from the next connection on.
struct Credentials {
    certified: Arc<CertifiedKey>,
    verifier: Arc<TrustedCertificates>,
}

fn credentials(master: &Master) -> Result<Credentials, String> {
    let Identity {
        certificate,
        private_key,
    } = master
        .identity()
        .ok_or("the endpoint's certificate or its private key is missing from master")?;
    let provider = Arc::new(provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private_key));
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the endpoint's private key is not usable: {e}"))?;
    Ok(Credentials {
        certified: Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(certificate)],
            signing,
        )),
        verifier: Arc::new(TrustedCertificates {
            trusted: master.trusted(),
            provider,
        }),
    })
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A TLS connection between two endpoints.
pub type Tls<C> = StreamOwned<C, TcpStream>;

/// Accepts one connection's TLS, as the listening side.
pub fn accept(master: &Master, mut tcp: TcpStream) -> Result<Tls<ServerConnection>, String> {
    let credentials = credentials(master)?;
    let config = ServerConfig::builder_with_provider(credentials.verifier.provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(credentials.verifier.clone())
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(credentials.certified)));
    let mut conn = ServerConnection::new(Arc::new(config)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(DIAL_TIMEOUT))
        .map_err(|e| e.to_string())?;
    // The whole handshake first, so that a refused peer is known before anything is read.
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| refusal(&e))?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Connects to `address` (`host:port` of an ENDPOINT_URL) as the dialling side.
pub fn dial(master: &Master, address: &str) -> Result<Tls<ClientConnection>, String> {
    let credentials = credentials(master)?;
    let config = ClientConfig::builder_with_provider(credentials.verifier.provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(credentials.verifier.clone())
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(credentials.certified)));
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let mut conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let target = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))?;
    let mut tcp = TcpStream::connect_timeout(&target, DIAL_TIMEOUT)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(DIAL_TIMEOUT))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| refusal(&e))?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Says why a handshake failed, naming certificate refusals as such.
fn refusal(error: &io::Error) -> String {
    let text = error.to_string();
    if text.contains("ApplicationVerificationFailure") {
        "the peer's certificate is not one this replica trusts (no certificate of master owned \
         by a user whose login has CONNECT on the endpoint)"
            .into()
    } else if text.contains("CertificateRequired") || text.contains("certificate") {
        format!("the peer refused this replica's certificate or sent none ({text})")
    } else {
        format!("TLS handshake failed: {text}")
    }
}

/// Binds the endpoint's listener on `ip:port`.
pub fn listen(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(ip, port))
}
