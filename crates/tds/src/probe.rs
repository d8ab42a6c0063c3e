//! Asks a server which certificate it presents, as a TDS client would see it: connect, PRELOGIN
//! asking for encryption (or TLS first, for TDS 8.0 strict), complete the TLS handshake, close.
//!
//! The probe accepts any certificate during the handshake and hands the chain back: the caller
//! compares it with what it expects (the pod's Secret) and can then say exactly what differs,
//! which a failed TLS verification would not. The handshake signature IS verified, so a returned
//! chain is one whose private key the server holds.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion, SignatureScheme,
};

use crate::TDS8_ALPN;
use crate::packet::{self, kind};
use crate::prelogin::{Encryption, Prelogin};
use crate::tls::{Framing, handshake};

/// How the probe opens TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// TDS 7.x: PRELOGIN first, the handshake inside PRELOGIN packets. Every SQL Server version.
    Prelogin,
    /// TDS 8.0 strict: TLS first with ALPN `tds/8.0` (SQL Server 2022 and later).
    Strict,
}

/// What the server presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Leaf first, in the order the server sent them.
    pub chain: Vec<CertificateDer<'static>>,
    /// `TLSv1_2` or `TLSv1_3`: the probe offers nothing older.
    pub version: ProtocolVersion,
    /// What the server answered to PRELOGIN's ENCRYPTION (`None` in strict mode).
    pub encryption: Option<Encryption>,
    /// How long connect, PRELOGIN and the handshake took together.
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("{addr} did not answer PRELOGIN: {source}")]
    Prelogin { addr: SocketAddr, source: io::Error },
    #[error("{addr} answered PRELOGIN with {encryption}: it does not offer TLS")]
    NoEncryption {
        addr: SocketAddr,
        encryption: Encryption,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake { addr: SocketAddr, source: io::Error },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// Probes `addr`, sending `server_name` as SNI. `timeout` bounds connect and each read or write.
pub fn probe(
    addr: SocketAddr,
    server_name: &str,
    mode: Mode,
    timeout: Duration,
) -> Result<Served, ProbeError> {
    let started = Instant::now();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| ProbeError::ServerName(server_name.to_owned()))?;
    let connect = |source| ProbeError::Connect { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(connect)?;
    stream.set_read_timeout(Some(timeout)).map_err(connect)?;
    stream.set_write_timeout(Some(timeout)).map_err(connect)?;
    stream.set_nodelay(true).map_err(connect)?;

    let encryption = match mode {
        Mode::Prelogin => {
            let answer = prelogin(&mut stream, Encryption::On)
                .map_err(|source| ProbeError::Prelogin { addr, source })?;
            if !matches!(answer, Encryption::On | Encryption::Required) {
                return Err(ProbeError::NoEncryption {
                    addr,
                    encryption: answer,
                });
            }
            Some(answer)
        }
        Mode::Strict => None,
    };
    let framing = match mode {
        Mode::Prelogin => Framing::Prelogin,
        Mode::Strict => Framing::Bare,
    };
    let mut conn = ClientConnection::new(Arc::new(client_config(mode)), name).map_err(|e| {
        ProbeError::Handshake {
            addr,
            source: io::Error::other(e),
        }
    })?;
    handshake(&mut conn, &mut stream, framing)
        .map_err(|source| ProbeError::Handshake { addr, source })?;
    let chain = conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    let version = conn
        .protocol_version()
        .unwrap_or(ProtocolVersion::Unknown(0));
    // A polite goodbye; the server may already be gone, which changes nothing here.
    conn.send_close_notify();
    let mut goodbye = Vec::new();
    if conn.write_tls(&mut goodbye).is_ok() {
        let _ = stream.write_all(&goodbye);
    }
    Ok(Served {
        chain,
        version,
        encryption,
        took: started.elapsed(),
    })
}

/// Sends PRELOGIN with ENCRYPTION `ask`; returns the server's ENCRYPTION answer. Tests use it to
/// see what a server offers (`Off` from a client is answered `Required` under `forceencryption`).
pub fn prelogin(stream: &mut TcpStream, ask: Encryption) -> io::Result<Encryption> {
    // Version 0.0.0.0: this is a probe, not a driver.
    let request = Prelogin::new([0; 6], ask);
    packet::write_message(stream, kind::PRELOGIN, &request.encode())?;
    let (reply_kind, payload) = packet::read_message(stream)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection was closed instead",
        )
    })?;
    if reply_kind != kind::TABULAR_RESULT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the reply is a packet of type {reply_kind:#04x}, not a PRELOGIN reply (0x04)"),
        ));
    }
    Prelogin::decode(&payload)
        .map(|reply| reply.encryption)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn client_config(mode: Mode) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordAnyCertificate(provider)))
        .with_no_client_auth();
    if mode == Mode::Strict {
        config.alpn_protocols = vec![TDS8_ALPN.to_vec()];
    }
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// Takes whatever chain the server sends (the caller judges it), but checks the handshake
/// signatures, so the server must hold the private key of the leaf it presents.
#[derive(Debug)]
struct RecordAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for RecordAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
