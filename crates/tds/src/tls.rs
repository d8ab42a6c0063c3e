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
