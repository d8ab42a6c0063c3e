//! The LOGIN7 message ([MS-TDS] 2.2.6.4): a 36-byte fixed part, then a table of (offset, length)
//! pairs pointing at UCS-2 strings in the rest of the message. Offsets count bytes from the start
//! of the message; lengths count UCS-2 characters (SSPI's counts bytes). The password is
//! obfuscated: each byte's nibbles swapped, then XORed with 0xA5.

use std::fmt;

/// The fixed part and the offset table up to and including `cbSSPILong`.
pub const MIN_LEN: usize = 94;

#[derive(Clone, PartialEq, Eq)]
pub struct Login7 {
    /// As sent, e.g. 0x74000004 for TDS 7.4 (read little-endian).
    pub tds_version: u32,
    pub packet_size: u32,
    pub client_prog_ver: u32,
    pub client_pid: u32,
    pub connection_id: u32,
    pub option_flags1: u8,
    pub option_flags2: u8,
    pub type_flags: u8,
    pub option_flags3: u8,
    pub client_time_zone: i32,
    pub client_lcid: u32,
    pub host_name: String,
    pub user_name: String,
    /// De-obfuscated. Never printed (see the `Debug` impl).
    pub password: String,
    pub app_name: String,
    pub server_name: String,
    /// CltIntName: the client library's name.
    pub library_name: String,
    pub language: String,
    pub database: String,
    pub client_id: [u8; 6],
    /// Length in bytes of the SSPI (integrated authentication) blob; 0 for SQL logins.
    pub sspi_len: u32,
}

impl fmt::Debug for Login7 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login7")
            .field("tds_version", &format_args!("{:#010x}", self.tds_version))
            .field("packet_size", &self.packet_size)
            .field("host_name", &self.host_name)
            .field("user_name", &self.user_name)
            .field("password", &"<redacted>")
            .field("app_name", &self.app_name)
            .field("server_name", &self.server_name)
            .field("library_name", &self.library_name)
            .field("database", &self.database)
            .field("sspi_len", &self.sspi_len)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed LOGIN7 message: {0}")]
pub struct Login7Error(String);

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Undoes the password obfuscation: XOR with 0xA5, then swap the nibbles.
pub fn deobfuscate(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect()
}

/// The obfuscation a client applies: swap the nibbles, then XOR with 0xA5.
pub fn obfuscate(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b.rotate_left(4) ^ 0xA5).collect()
}

fn ucs2(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

impl Login7 {
    pub fn parse(bytes: &[u8]) -> Result<Self, Login7Error> {
        if bytes.len() < MIN_LEN {
            return Err(Login7Error(format!(
                "{} bytes, shorter than the {MIN_LEN}-byte fixed part",
                bytes.len()
            )));
        }
        let declared = u32_at(bytes, 0) as usize;
        if declared > bytes.len() {
            return Err(Login7Error(format!(
                "Length says {declared} bytes but the message has {}",
                bytes.len()
            )));
        }
        // (offset, length in characters) at `at`, checked against the message.
        let field = |name: &str, at: usize, chars_are_bytes: bool| -> Result<&[u8], Login7Error> {
            let offset = usize::from(u16_at(bytes, at));
            let count = usize::from(u16_at(bytes, at + 2));
            let len = if chars_are_bytes { count } else { count * 2 };
            if len == 0 {
                return Ok(&[]);
            }
            bytes.get(offset..offset + len).ok_or_else(|| {
                Login7Error(format!(
                    "{name} points at bytes {offset}..{} of a {}-byte message",
                    offset + len,
                    bytes.len()
                ))
            })
        };
        let mut client_id = [0u8; 6];
        client_id.copy_from_slice(&bytes[72..78]);
        Ok(Self {
            tds_version: u32_at(bytes, 4),
            packet_size: u32_at(bytes, 8),
            client_prog_ver: u32_at(bytes, 12),
            client_pid: u32_at(bytes, 16),
            connection_id: u32_at(bytes, 20),
            option_flags1: bytes[24],
            option_flags2: bytes[25],
            type_flags: bytes[26],
            option_flags3: bytes[27],
            client_time_zone: u32_at(bytes, 28) as i32,
            client_lcid: u32_at(bytes, 32),
            host_name: ucs2(field("HostName", 36, false)?),
            user_name: ucs2(field("UserName", 40, false)?),
            password: ucs2(&deobfuscate(field("Password", 44, false)?)),
            app_name: ucs2(field("AppName", 48, false)?),
            server_name: ucs2(field("ServerName", 52, false)?),
            // 56: Extension (a feature-extension pointer when fExtension is set); not used.
            library_name: ucs2(field("CltIntName", 60, false)?),
            language: ucs2(field("Language", 64, false)?),
            database: ucs2(field("Database", 68, false)?),
            client_id,
            sspi_len: match u16_at(bytes, 80) {
                // cbSSPI = 0xFFFF: the real length is cbSSPILong.
                u16::MAX => u32_at(bytes, 90),
                short => {
                    field("SSPI", 78, true)?;
                    u32::from(short)
                }
            },
        })
    }

    /// Encodes the message as a client sends it (obfuscating the password); for tests and tools
    /// that talk to the double without a driver. The Extension, SSPI, AtchDBFile and
    /// ChangePassword fields are sent empty.
    pub fn encode(&self) -> Vec<u8> {
        fn utf16(text: &str) -> Vec<u8> {
            text.encode_utf16().flat_map(u16::to_le_bytes).collect()
        }
        let mut out = vec![0u8; MIN_LEN];
        out[4..8].copy_from_slice(&self.tds_version.to_le_bytes());
        out[8..12].copy_from_slice(&self.packet_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.client_prog_ver.to_le_bytes());
        out[16..20].copy_from_slice(&self.client_pid.to_le_bytes());
        out[20..24].copy_from_slice(&self.connection_id.to_le_bytes());
        out[24..28].copy_from_slice(&[
            self.option_flags1,
            self.option_flags2,
            self.type_flags,
            self.option_flags3,
        ]);
        out[28..32].copy_from_slice(&self.client_time_zone.to_le_bytes());
        out[32..36].copy_from_slice(&self.client_lcid.to_le_bytes());
        out[72..78].copy_from_slice(&self.client_id);
        let fields: [(usize, Vec<u8>); 12] = [
            (36, utf16(&self.host_name)),
            (40, utf16(&self.user_name)),
            (44, obfuscate(&utf16(&self.password))),
            (48, utf16(&self.app_name)),
            (52, utf16(&self.server_name)),
            (56, Vec::new()),
            (60, utf16(&self.library_name)),
            (64, utf16(&self.language)),
            (68, utf16(&self.database)),
            (78, Vec::new()),
            (82, Vec::new()),
            (86, Vec::new()),
        ];
        for (at, data) in fields {
            let offset = out.len() as u16;
            let count = (data.len() / 2) as u16;
            out[at..at + 2].copy_from_slice(&offset.to_le_bytes());
            out[at + 2..at + 4].copy_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&data);
        }
        let length = out.len() as u32;
        out[0..4].copy_from_slice(&length.to_le_bytes());
        out
    }

    /// A SQL Server login for `user` as a TDS 7.4 client would send it, everything else empty.
    pub fn sql_login(user: &str, password: &str) -> Self {
        Self {
            tds_version: 0x7400_0004,
            packet_size: 4096,
            client_prog_ver: 0,
            client_pid: std::process::id(),
            connection_id: 0,
            option_flags1: 0xE0,
            option_flags2: 0x03,
            type_flags: 0,
            option_flags3: 0,
            client_time_zone: 0,
            client_lcid: 0x0409,
            host_name: String::new(),
            user_name: user.to_owned(),
            password: password.to_owned(),
            app_name: String::new(),
            server_name: String::new(),
            library_name: String::new(),
            language: String::new(),
            database: String::new(),
            client_id: [0; 6],
            sspi_len: 0,
        }
    }

    /// Whether the client asked for integrated (Windows) authentication.
    pub fn integrated_security(&self) -> bool {
        self.option_flags2 & 0x80 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// A LOGIN7 assembled field by field from the specification's layout.
    fn hand_built(user: &str, password: &str, database: &str) -> Vec<u8> {
        let strings: [(usize, Vec<u8>, usize); 9] = [
            (36, utf16("client-host"), 11),
            (40, utf16(user), user.encode_utf16().count()),
            (
                44,
                obfuscate(&utf16(password)),
                password.encode_utf16().count(),
            ),
            (48, utf16("sqlcmd"), 6),
            (52, utf16("db.ns.svc"), 9),
            (56, Vec::new(), 0),
            (60, utf16("ODBC"), 4),
            (64, utf16("us_english"), 10),
            (68, utf16(database), database.encode_utf16().count()),
        ];
        let mut message = vec![0u8; MIN_LEN];
        message[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
        message[8..12].copy_from_slice(&4096u32.to_le_bytes());
        message[16..20].copy_from_slice(&4242u32.to_le_bytes());
        message[24] = 0xE0;
        message[25] = 0x03;
        message[28..32].copy_from_slice(&(-60i32 as u32).to_le_bytes());
        message[32..36].copy_from_slice(&0x0409u32.to_le_bytes());
        message[72..78].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        for (at, data, chars) in strings {
            let offset = message.len() as u16;
            message[at..at + 2].copy_from_slice(&offset.to_le_bytes());
            message[at + 2..at + 4].copy_from_slice(&(chars as u16).to_le_bytes());
            message.extend_from_slice(&data);
        }
        // SSPI, AtchDBFile, ChangePassword: empty, pointing at the end.
        let end = (message.len() as u16).to_le_bytes();
        for at in [78, 82, 86] {
            message[at..at + 2].copy_from_slice(&end);
        }
        let length = message.len() as u32;
        message[0..4].copy_from_slice(&length.to_le_bytes());
        message
    }

    #[test]
    fn password_obfuscation_matches_the_specification() {
        // [MS-TDS] 2.2.6.4: 'a' (0x61, 0x00 in UCS-2) goes on the wire as 0xB3, 0xA5.
        assert_eq!(obfuscate(&[0x61, 0x00]), [0xB3, 0xA5]);
        assert_eq!(deobfuscate(&[0xB3, 0xA5]), [0x61, 0x00]);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(deobfuscate(&obfuscate(&all)), all);
    }

    #[test]
    fn a_hand_built_login_parses() {
        let login = Login7::parse(&hand_built("sa", "Str0ng!Pässwörd", "master")).unwrap();
        assert_eq!(login.tds_version, 0x7400_0004);
        assert_eq!(login.packet_size, 4096);
        assert_eq!(login.client_pid, 4242);
        assert_eq!((login.option_flags1, login.option_flags2), (0xE0, 0x03));
        assert_eq!(login.client_time_zone, -60);
        assert_eq!(login.client_lcid, 0x0409);
        assert_eq!(login.host_name, "client-host");
        assert_eq!(login.user_name, "sa");
        assert_eq!(login.password, "Str0ng!Pässwörd");
        assert_eq!(login.app_name, "sqlcmd");
        assert_eq!(login.server_name, "db.ns.svc");
        assert_eq!(login.library_name, "ODBC");
        assert_eq!(login.language, "us_english");
        assert_eq!(login.database, "master");
        assert_eq!(login.client_id, [1, 2, 3, 4, 5, 6]);
        assert_eq!(login.sspi_len, 0);
        assert!(!login.integrated_security());
    }

    #[test]
    fn encode_and_parse_round_trip() {
        let mut login = Login7::sql_login("sa", "pässword");
        login.database = "tempdb".into();
        login.app_name = "raw test".into();
        let wire = login.encode();
        assert_eq!(Login7::parse(&wire).unwrap(), login);
        // The same layout as the hand-built message.
        let hand = Login7::parse(&hand_built("sa", "Str0ng!Pässwörd", "master")).unwrap();
        assert_eq!(Login7::parse(&hand.encode()).unwrap(), hand);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let login = Login7::parse(&hand_built("sa", "TopSecret1!", "")).unwrap();
        let shown = format!("{login:?}");
        assert!(!shown.contains("TopSecret1!"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn broken_messages_say_what_is_wrong() {
        let error = |bytes: &[u8]| Login7::parse(bytes).unwrap_err().to_string();
        assert!(error(&[0u8; 40]).contains("40 bytes, shorter than the 94-byte fixed part"));
        let mut too_long = hand_built("sa", "pw", "");
        too_long[0..4].copy_from_slice(&10_000u32.to_le_bytes());
        assert!(error(&too_long).contains("Length says 10000 bytes"));
        let mut bad_user = hand_built("sa", "pw", "");
        bad_user[42..44].copy_from_slice(&500u16.to_le_bytes());
        assert!(error(&bad_user).contains("UserName points at bytes"));
    }
}
