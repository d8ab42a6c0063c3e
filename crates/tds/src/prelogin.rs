//! The PRELOGIN message ([MS-TDS] 2.2.6.5): a table of (token, offset, length) options ended by
//! 0xFF, then the options' data. Client and server send the same shape; the server's reply comes
//! in a TABULAR_RESULT packet.

use std::fmt;

const VERSION: u8 = 0x00;
const ENCRYPTION: u8 = 0x01;
const INSTOPT: u8 = 0x02;
const THREADID: u8 = 0x03;
const MARS: u8 = 0x04;
const TERMINATOR: u8 = 0xFF;

/// The ENCRYPTION option's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// Encrypt the login only.
    Off,
    On,
    NotSupported,
    /// From a server: everything is encrypted (`forceencryption`).
    Required,
}

impl Encryption {
    pub fn wire(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::On => 1,
            Self::NotSupported => 2,
            Self::Required => 3,
        }
    }

    fn from_wire(byte: u8) -> Result<Self, PreloginError> {
        // The high bits carry client-certificate authentication flags (TDS 7.x extensions).
        match byte & 0x0F {
            0 => Ok(Self::Off),
            1 => Ok(Self::On),
            2 => Ok(Self::NotSupported),
            3 => Ok(Self::Required),
            _ => Err(PreloginError(format!(
                "ENCRYPTION option has unknown value {byte:#04x}"
            ))),
        }
    }
}

/// A PRELOGIN message; options this crate does not use are skipped when read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prelogin {
    /// Major, minor, build (big-endian u16) and sub-build: SQL Server's version, or the client's.
    pub version: [u8; 6],
    pub encryption: Encryption,
    /// INSTOPT without its terminating zero; empty means the default instance.
    pub instance: Vec<u8>,
    pub thread_id: Option<[u8; 4]>,
    pub mars: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed PRELOGIN message: {0}")]
pub struct PreloginError(String);

impl Prelogin {
    pub fn new(version: [u8; 6], encryption: Encryption) -> Self {
        Self {
            version,
            encryption,
            instance: Vec::new(),
            thread_id: None,
            mars: false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut instance = self.instance.clone();
        instance.push(0);
        let mut options: Vec<(u8, Vec<u8>)> = vec![
            (VERSION, self.version.to_vec()),
            (ENCRYPTION, vec![self.encryption.wire()]),
            (INSTOPT, instance),
        ];
        if let Some(thread_id) = self.thread_id {
            options.push((THREADID, thread_id.to_vec()));
        }
        options.push((MARS, vec![u8::from(self.mars)]));

        let table_len = options.len() * 5 + 1;
        let mut table = Vec::with_capacity(table_len);
        let mut data = Vec::new();
        for (token, value) in &options {
            let offset = (table_len + data.len()) as u16;
            table.push(*token);
            table.extend_from_slice(&offset.to_be_bytes());
            table.extend_from_slice(&(value.len() as u16).to_be_bytes());
            data.extend_from_slice(value);
        }
        table.push(TERMINATOR);
        table.extend_from_slice(&data);
        table
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, PreloginError> {
        let mut message = Self::new([0; 6], Encryption::NotSupported);
        let (mut seen_version, mut seen_encryption) = (false, false);
        let mut at = 0;
        loop {
            let token = *bytes
                .get(at)
                .ok_or_else(|| PreloginError("the option table has no 0xFF terminator".into()))?;
            if token == TERMINATOR {
                break;
            }
            let entry = bytes
                .get(at + 1..at + 5)
                .ok_or_else(|| PreloginError(format!("option {token:#04x} is cut short")))?;
            let offset = usize::from(u16::from_be_bytes([entry[0], entry[1]]));
            let length = usize::from(u16::from_be_bytes([entry[2], entry[3]]));
            let value = bytes.get(offset..offset + length).ok_or_else(|| {
                PreloginError(format!(
                    "option {token:#04x} points at bytes {offset}..{} of a {}-byte message",
                    offset + length,
                    bytes.len()
                ))
            })?;
            match token {
                VERSION => {
                    message.version = value
                        .try_into()
                        .map_err(|_| PreloginError(format!("VERSION is {length} bytes, not 6")))?;
                    seen_version = true;
                }
                ENCRYPTION => {
                    let [byte] = value else {
                        return Err(PreloginError(format!(
                            "ENCRYPTION is {length} bytes, not 1"
                        )));
                    };
                    message.encryption = Encryption::from_wire(*byte)?;
                    seen_encryption = true;
                }
                INSTOPT => {
                    message.instance = value.split(|b| *b == 0).next().unwrap_or(&[]).to_vec();
                }
                THREADID => message.thread_id = value.try_into().ok(),
                MARS => message.mars = value.first().is_some_and(|b| *b == 1),
                _ => {}
            }
            at += 5;
        }
        match (seen_version, seen_encryption) {
            (false, _) => Err(PreloginError("the VERSION option is missing".into())),
            (_, false) => Err(PreloginError("the ENCRYPTION option is missing".into())),
            _ => Ok(message),
        }
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "ENCRYPT_OFF (login only)",
            Self::On => "ENCRYPT_ON",
            Self::NotSupported => "ENCRYPT_NOT_SUP",
            Self::Required => "ENCRYPT_REQ",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{HEADER_LEN, frame, kind};

    /// [MS-TDS] 4.1, "Pre-Login Request": the whole packet as the specification prints it.
    const SPEC_REQUEST: [u8; 47] = [
        0x12, 0x01, 0x00, 0x2F, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1A, 0x00, 0x06, 0x01, 0x00,
        0x20, 0x00, 0x01, 0x02, 0x00, 0x21, 0x00, 0x01, 0x03, 0x00, 0x22, 0x00, 0x04, 0x04, 0x00,
        0x26, 0x00, 0x01, 0xFF, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0xB8, 0x0D, 0x00,
        0x00, 0x01,
    ];

    fn spec_message() -> Prelogin {
        Prelogin {
            version: [9, 0, 0, 0, 0, 0],
            encryption: Encryption::On,
            instance: Vec::new(),
            thread_id: Some([0xB8, 0x0D, 0x00, 0x00]),
            mars: true,
        }
    }

    #[test]
    fn the_specification_example_decodes() {
        assert_eq!(
            Prelogin::decode(&SPEC_REQUEST[HEADER_LEN..]).unwrap(),
            spec_message()
        );
    }

    #[test]
    fn encoding_reproduces_the_specification_example_byte_for_byte() {
        assert_eq!(
            frame(kind::PRELOGIN, &spec_message().encode(), 4096),
            SPEC_REQUEST
        );
    }

    #[test]
    fn round_trip_without_optional_options() {
        for encryption in [
            Encryption::Off,
            Encryption::On,
            Encryption::NotSupported,
            Encryption::Required,
        ] {
            let mut message = Prelogin::new([16, 0, 0x10, 0x00, 0, 0], encryption);
            message.instance = b"MSSQLSERVER".to_vec();
            assert_eq!(Prelogin::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn broken_messages_say_what_is_wrong() {
        let error = |bytes: &[u8]| Prelogin::decode(bytes).unwrap_err().to_string();
        assert!(error(&[]).contains("no 0xFF terminator"));
        assert!(error(&[0x00, 0x00]).contains("cut short"));
        assert!(error(&[0x00, 0x00, 0x30, 0x00, 0x06, 0xFF]).contains("points at bytes 48..54"));
        assert!(error(&[0xFF]).contains("VERSION option is missing"));
        let no_encryption = [0x00, 0x00, 0x06, 0x00, 0x06, 0xFF, 1, 2, 3, 4, 5, 6];
        assert!(error(&no_encryption).contains("ENCRYPTION option is missing"));
        let mut bad_value = Prelogin::new([0; 6], Encryption::On).encode();
        let last = bad_value.len() - 1;
        bad_value[last - 2] = 0x07; // the ENCRYPTION byte (then INSTOPT's zero, then MARS)
        assert!(error(&bad_value).contains("unknown value 0x07"));
    }
}
