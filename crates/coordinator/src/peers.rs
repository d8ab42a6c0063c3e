//! Coordinators ask each other directly, over mutual TLS with the group's endpoint certificate
//! (server and client auth; a peer is accepted only with a certificate this one pins, as SQL
//! Server accepts only the endpoint certificates master holds): one JSON line asked, one
//! answered.
//!
//! - `vote`: the answer's [`Vote`], collected every tick to choose a promotion target;
//! - `confirm`: the primary's coordinator, when the API server does not answer, asks every voter
//!   to promise not to take the Lease for its duration (Patroni's failsafe mode). A voter
//!   promises unless it holds the Lease itself or saw another holder than the one asking;
//! - `look`: a coordinator that handed the Lease to this one asks it to look again at once
//!   rather than at its next tick (a switchover's gap is made of such waits).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::decide::Vote;

/// KubeDB's `coordinator` port.
pub const PORT: u16 = 2380;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "ask")]
pub enum Ask {
    Vote,
    Confirm { primary: String },
    Look,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoteAnswer {
    pub member: String,
    pub ordinal: u32,
    pub arbiter: bool,
    pub sequence: Option<i64>,
    pub synchronized: bool,
    pub refused: bool,
    pub has_group: bool,
    /// The Lease holder this coordinator saw last (its pod, without the incarnation).
    pub holder: Option<String>,
    /// Its endpoint certificates (absent from a coordinator that predates them).
    #[serde(default)]
    pub endpoint: crate::endpoint::EndpointVote,
}

impl From<VoteAnswer> for Vote {
    fn from(a: VoteAnswer) -> Self {
        Vote {
            member: a.member,
            ordinal: a.ordinal,
            arbiter: a.arbiter,
            sequence: a.sequence,
            synchronized: a.synchronized,
            refused: a.refused,
            has_group: a.has_group,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    Vote(VoteAnswer),
    Confirmed(bool),
    Looking,
}

/// What this coordinator answers with, kept current by its loop.
#[derive(Debug, Default)]
pub struct Shared {
    pub vote: Option<VoteAnswer>,
    /// Whether this coordinator holds the Lease.
    pub holding: bool,
    /// Until when it promised a primary not to take the Lease.
    pub promised_until: Option<Instant>,
}

/// The answer to `ask`, given what this coordinator knows. Pure, apart from the promise it
/// records.
pub fn answer(shared: &mut Shared, ask: &Ask, now: Instant, lease: Duration) -> Option<Answer> {
    match ask {
        Ask::Vote => shared.vote.clone().map(Answer::Vote),
        Ask::Confirm { primary } => {
            let seen = shared.vote.as_ref().and_then(|v| v.holder.as_deref());
            let confirm = !shared.holding && seen.is_none_or(|holder| holder == primary);
            if confirm {
                shared.promised_until = Some(now + lease);
            }
            Some(Answer::Confirmed(confirm))
        }
        Ask::Look => Some(Answer::Looking),
    }
}

/// The peer certificates a coordinator accepts, exactly (as SQL Server trusts the endpoint
/// certificates master holds): kept current by its loop, so that an old and a new endpoint
/// certificate are both accepted while a rotation overlaps them.
pub type Pins = Arc<std::sync::RwLock<BTreeSet<Vec<u8>>>>;

/// Accepts a peer whose certificate is pinned; names and chains are not looked at.
#[derive(Debug)]
struct Pinned {
    pins: Pins,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let pins = self.pins.read().unwrap_or_else(|e| e.into_inner());
        if pins.contains(end_entity.as_ref()) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn signature(
        &self,
        tls13: bool,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        if tls13 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        } else {
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        }
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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
        self.signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
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
        self.signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The TLS of both sides: this coordinator's endpoint certificate (its Secret's at its start),
/// and the peers' it accepts.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
    pub pins: Pins,
}

impl Tls {
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        pins: Pins,
    ) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(Pinned {
            pins: pins.clone(),
            provider: provider.clone(),
        });
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(chain.clone(), key.clone_key())?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            pins,
        })
    }
}

/// Serves the other coordinators until the process ends; `look` wakes this coordinator's loop.
pub async fn serve(
    listener: TcpListener,
    tls: Tls,
    shared: Arc<Mutex<Shared>>,
    lease: Duration,
    look: Arc<Notify>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (tls, shared, look) = (tls.clone(), shared.clone(), look.clone());
        tokio::spawn(async move {
            let work = async {
                let stream = tls.acceptor.accept(tcp).await?;
                let (read, mut write) = tokio::io::split(stream);
                let mut line = String::new();
                BufReader::new(read).read_line(&mut line).await?;
                let ask: Ask = serde_json::from_str(&line)?;
                if ask == Ask::Look {
                    look.notify_one();
                }
                let reply = {
                    let mut shared = shared.lock().expect("not poisoned");
                    answer(&mut shared, &ask, Instant::now(), lease)
                };
                if let Some(reply) = reply {
                    let mut text = serde_json::to_string(&reply)?;
                    text.push('\n');
                    write.write_all(text.as_bytes()).await?;
                    write.shutdown().await?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), work).await;
        });
    }
}

/// Asks one coordinator at `host:port`, whose certificate must name `host`.
pub async fn ask(
    tls: &Tls,
    host: &str,
    port: u16,
    question: &Ask,
    timeout: Duration,
) -> Option<Answer> {
    let work = async {
        let name = ServerName::try_from(host.to_owned()).ok()?;
        let tcp = TcpStream::connect((host, port)).await.ok()?;
        let stream = tls.connector.connect(name, tcp).await.ok()?;
        let (read, mut write) = tokio::io::split(stream);
        let mut text = serde_json::to_string(question).ok()?;
        text.push('\n');
        write.write_all(text.as_bytes()).await.ok()?;
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await.ok()?;
        serde_json::from_str(&line).ok()
    };
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(holder: Option<&str>) -> VoteAnswer {
        VoteAnswer {
            member: "ag-1".into(),
            ordinal: 1,
            arbiter: false,
            sequence: Some(3),
            synchronized: true,
            refused: false,
            has_group: true,
            holder: holder.map(str::to_owned),
            endpoint: Default::default(),
        }
    }

    #[test]
    fn a_voter_promises_the_holder_it_saw() {
        let now = Instant::now();
        let lease = Duration::from_secs(10);
        let mut shared = Shared {
            vote: Some(vote(Some("ag-0"))),
            ..Shared::default()
        };
        let ask = Ask::Confirm {
            primary: "ag-0".into(),
        };
        assert_eq!(
            answer(&mut shared, &ask, now, lease),
            Some(Answer::Confirmed(true))
        );
        assert_eq!(shared.promised_until, Some(now + lease));
    }

    #[test]
    fn a_voter_refuses_a_stale_primary_and_a_holder_refuses_everyone() {
        let now = Instant::now();
        let lease = Duration::from_secs(10);
        let mut shared = Shared {
            vote: Some(vote(Some("ag-2"))),
            ..Shared::default()
        };
        let ask = Ask::Confirm {
            primary: "ag-0".into(),
        };
        assert_eq!(
            answer(&mut shared, &ask, now, lease),
            Some(Answer::Confirmed(false))
        );
        shared.vote = Some(vote(Some("ag-0")));
        shared.holding = true;
        assert_eq!(
            answer(&mut shared, &ask, now, lease),
            Some(Answer::Confirmed(false))
        );
        assert_eq!(shared.promised_until, None);
    }

    #[test]
    fn the_wire_format_is_one_tagged_json_object() {
        assert_eq!(
            serde_json::to_string(&Ask::Confirm {
                primary: "ag-0".into()
            })
            .unwrap(),
            r#"{"ask":"confirm","primary":"ag-0"}"#
        );
        assert_eq!(
            serde_json::to_string(&Ask::Vote).unwrap(),
            r#"{"ask":"vote"}"#
        );
        assert_eq!(
            serde_json::to_string(&Ask::Look).unwrap(),
            r#"{"ask":"look"}"#
        );
    }
}
