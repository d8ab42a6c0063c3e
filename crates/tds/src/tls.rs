//! Drives a rustls handshake over a blocking stream. TDS 7.x wraps every handshake record in
//! PRELOGIN packets ([MS-TDS] 2.2.6.5, "the TLS/SSL payload MUST be transported as data in the
//! PRELOGIN message"); once the handshake is done, TLS records flow bare on the stream. TDS 8.0
//! ("strict") runs an ordinary TLS handshake before any TDS packet.

use std::io::{self, Read, Write};
use std::ops::DerefMut;

use rustls::{ConnectionCommon, SideData};

use crate::packet::{self, kind};

/// How handshake records travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// TDS 7.x: inside PRELOGIN packets.
    Prelogin,
    /// TDS 8.0 strict: bare, as in any TLS connection.
    Bare,
}

/// Runs the handshake to its end. On a TLS error the alert rustls queued is sent (best effort), so
/// the peer learns why, and the error is returned.
///
/// In PRELOGIN framing a server must not send TLS 1.3 session tickets (`send_tls13_tickets = 0`):
/// rustls queues them as the handshake ends, so they would go out framed to a client that reads
/// bare records by then.
pub fn handshake<C, D>(
    conn: &mut C,
    stream: &mut (impl Read + Write),
    framing: Framing,
) -> io::Result<()>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    while conn.is_handshaking() {
        if conn.wants_write() {
            send_pending(conn, stream, framing)?;
            continue;
        }
        let incoming = match framing {
            Framing::Prelogin => packet::read_packet(stream)?.map(|p| p.payload),
            Framing::Bare => {
                let mut buffer = vec![0u8; 16 * 1024];
                let n = stream.read(&mut buffer)?;
                buffer.truncate(n);
                (n > 0).then_some(buffer)
            }
        };
        let incoming = incoming.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection during the TLS handshake",
            )
        })?;
        let mut rest = incoming.as_slice();
        while !rest.is_empty() {
            conn.read_tls(&mut rest)?;
            if let Err(error) = conn.process_new_packets() {
                let _ = send_pending(conn, stream, framing);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }
    // The last flight (the client's Finished in TLS 1.3, the server's in TLS 1.2) is still queued,
    // and still belongs to the handshake's framing.
    if conn.wants_write() {
        send_pending(conn, stream, framing)?;
    }
    Ok(())
}

fn send_pending<C, D>(conn: &mut C, stream: &mut impl Write, framing: Framing) -> io::Result<()>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    let mut records = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut records)?;
    }
    match framing {
        Framing::Prelogin => packet::write_message(stream, kind::PRELOGIN, &records),
        Framing::Bare => {
            stream.write_all(&records)?;
            stream.flush()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    use super::*;

    /// A server and a client on loopback, both driven by `handshake` in `framing`: the client
    /// verifies the server's certificate for `db.ns.svc`, and data flows both ways afterwards.
    fn round_trip(framing: Framing) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.ns.svc".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        server_config.send_tls13_tickets = 0;
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut conn = ServerConnection::new(Arc::new(server_config)).unwrap();
            handshake(&mut conn, &mut tcp, framing).unwrap();
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let mut word = [0u8; 4];
            tls.read_exact(&mut word).unwrap();
            tls.write_all(b"pong").unwrap();
            word
        });
        let mut tcp = TcpStream::connect(addr).unwrap();
        let name = ServerName::try_from("db.ns.svc").unwrap();
        let mut conn = ClientConnection::new(Arc::new(client_config), name).unwrap();
        handshake(&mut conn, &mut tcp, framing).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"ping").unwrap();
        let mut answer = [0u8; 4];
        tls.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"pong");
        assert_eq!(&server.join().unwrap(), b"ping");
    }

    #[test]
    fn a_handshake_inside_prelogin_packets_completes_and_carries_data() {
        round_trip(Framing::Prelogin);
    }

    #[test]
    fn a_strict_handshake_completes_and_carries_data() {
        round_trip(Framing::Bare);
    }

    #[test]
    fn handshake_records_travel_in_prelogin_packets() {
        // The client's first flight, as the server reads it: one PRELOGIN packet holding a TLS
        // handshake record (content type 22, version 3.x).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut tcp = TcpStream::connect(addr).unwrap();
            let config = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
            let name = ServerName::try_from("db").unwrap();
            let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
            // The server below never answers: the handshake ends with an error once it closes.
            handshake(&mut conn, &mut tcp, Framing::Prelogin).unwrap_err()
        });
        let (mut tcp, _) = listener.accept().unwrap();
        let packet = crate::packet::read_packet(&mut tcp).unwrap().unwrap();
        assert_eq!(packet.kind, kind::PRELOGIN);
        assert!(packet.last);
        assert_eq!(packet.payload[0], 22, "a TLS handshake record");
        assert_eq!(packet.payload[1], 3);
        assert_eq!(packet.payload[5], 1, "a ClientHello");
        drop(tcp);
        let error = client.join().unwrap();
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ),
            "{error}"
        );
    }
}
