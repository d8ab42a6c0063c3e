//! TDS packets: an 8-byte header (type, status, big-endian length including the header, SPID,
//! packet id, window) before each piece of a message; the last piece has status bit EOM.

use std::io::{self, Read, Write};

pub const HEADER_LEN: usize = 8;
/// The packet size every TDS peer must accept before LOGIN7 negotiates another.
pub const DEFAULT_PACKET_SIZE: usize = 4096;
const STATUS_EOM: u8 = 0x01;

/// Packet types ([MS-TDS] 2.2.3.1.1).
pub mod kind {
    pub const SQL_BATCH: u8 = 0x01;
    /// The server's reply to every request: a token stream (or the PRELOGIN reply).
    pub const TABULAR_RESULT: u8 = 0x04;
    pub const LOGIN7: u8 = 0x10;
    pub const PRELOGIN: u8 = 0x12;
}

/// One packet's header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub kind: u8,
    pub last: bool,
    pub payload: Vec<u8>,
}

/// Reads one packet. `Ok(None)` at a clean end of stream before its first byte.
pub fn read_packet(stream: &mut impl Read) -> io::Result<Option<Packet>> {
    let mut header = [0u8; HEADER_LEN];
    match stream.read(&mut header[..1])? {
        0 => return Ok(None),
        _ => stream.read_exact(&mut header[1..])?,
    }
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if length < HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TDS packet header gives length {length}, shorter than the header itself"),
        ));
    }
    let mut payload = vec![0u8; length - HEADER_LEN];
    stream.read_exact(&mut payload)?;
    Ok(Some(Packet {
        kind: header[0],
        last: header[1] & STATUS_EOM != 0,
        payload,
    }))
}

/// Reads the packets of one message and joins their payloads; `Ok(None)` at end of stream.
pub fn read_message(stream: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let Some(first) = read_packet(stream)? else {
        return Ok(None);
    };
    let (kind, mut last, mut payload) = (first.kind, first.last, first.payload);
    while !last {
        let next = read_packet(stream)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a TDS message",
            )
        })?;
        payload.extend_from_slice(&next.payload);
        last = next.last;
    }
    Ok(Some((kind, payload)))
}

/// Frames `payload` as one message of `kind` in packets of at most `packet_size` bytes.
pub fn frame(kind: u8, payload: &[u8], packet_size: usize) -> Vec<u8> {
    let room = packet_size.max(HEADER_LEN + 1) - HEADER_LEN;
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(room).collect()
    };
    let mut out = Vec::with_capacity(payload.len() + pieces.len() * HEADER_LEN);
    for (index, piece) in pieces.iter().enumerate() {
        let last = index + 1 == pieces.len();
        let length = u16::try_from(piece.len() + HEADER_LEN).unwrap_or(u16::MAX);
        out.push(kind);
        out.push(if last { STATUS_EOM } else { 0 });
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&[0, 0]); // SPID
        out.push((index + 1) as u8); // packet id, modulo 256
        out.push(0); // window
        out.extend_from_slice(piece);
    }
    out
}

/// Writes one message and flushes it.
pub fn write_message(stream: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    stream.write_all(&frame(kind, payload, DEFAULT_PACKET_SIZE))?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_message_is_one_packet_marked_last() {
        assert_eq!(
            frame(kind::PRELOGIN, &[0xAA, 0xBB], 4096),
            [0x12, 0x01, 0x00, 0x0A, 0, 0, 1, 0, 0xAA, 0xBB]
        );
    }

    #[test]
    fn a_large_message_is_split_and_read_back_whole() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let wire = frame(kind::SQL_BATCH, &payload, 4096);
        assert_eq!(wire.len(), 10_000 + 3 * HEADER_LEN, "three packets");
        assert_eq!(&wire[..2], [0x01, 0x00], "the first is not the last");
        let (kind, read) = read_message(&mut wire.as_slice()).unwrap().unwrap();
        assert_eq!((kind, read), (kind::SQL_BATCH, payload));
    }

    #[test]
    fn end_of_stream_before_a_packet_is_none_and_inside_one_is_an_error() {
        assert_eq!(read_message(&mut &[][..]).unwrap(), None);
        let wire = frame(kind::SQL_BATCH, &[1, 2, 3], 4096);
        assert!(read_message(&mut &wire[..wire.len() - 1]).is_err());
        let mut unfinished = frame(kind::SQL_BATCH, &[1], 4096);
        unfinished[1] = 0; // not the last packet, and nothing follows
        assert!(read_message(&mut unfinished.as_slice()).is_err());
    }

    #[test]
    fn a_length_shorter_than_the_header_is_refused() {
        let wire = [0x12, 0x01, 0x00, 0x04, 0, 0, 1, 0];
        let error = read_packet(&mut &wire[..]).unwrap_err();
        assert!(error.to_string().contains("length 4"), "{error}");
    }
}
