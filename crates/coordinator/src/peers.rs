//! Coordinators ask each other directly, over mutual TLS with the group's endpoint certificate
//! (server and client auth, trusted through its CA): one JSON line asked, one answered.
//!
//! - `vote`: the answer's [`Vote`], collected every tick to choose a promotion target;
//! - `confirm`: the primary's coordinator, when the API server does not answer, asks every voter
//!   to promise not to take the Lease for its duration (Patroni's failsafe mode). A voter
//!   promises unless it holds the Lease itself or saw another holder than the one asking;
//! - `look`: a coordinator that handed the Lease to this one asks it to look again at once
//!   rather than at its next tick (a switchover's gap is made of such waits).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
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

/// The TLS of both sides, from the endpoint certificate's files.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

impl Tls {
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca: Vec<CertificateDer<'static>>,
    ) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca {
            roots.add(cert)?;
        }
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let server = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
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
