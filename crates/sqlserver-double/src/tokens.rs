//! The server's token stream ([MS-TDS] 2.2.7): the few tokens the double sends. Each function
//! appends one token to a reply being built.

/// DONE status bits ([MS-TDS] 2.2.7.6).
pub mod done {
    pub const FINAL: u16 = 0x0000;
    /// More results follow in this batch.
    pub const MORE: u16 = 0x0001;
    pub const ERROR: u16 = 0x0002;
    pub const COUNT: u16 = 0x0010;
    pub const ATTN: u16 = 0x0020;
    /// CurCmd of a SELECT.
    pub const CMD_SELECT: u16 = 0xC1;
    /// CurCmd of an INSERT.
    pub const CMD_INSERT: u16 = 0xC3;
}

const LOGINACK: u8 = 0xAD;
const ENVCHANGE: u8 = 0xE3;
const ERROR: u8 = 0xAA;
const INFO: u8 = 0xAB;
const DONE: u8 = 0xFD;
const COLMETADATA: u8 = 0x81;
const ROW: u8 = 0xD1;

const INTNTYPE: u8 = 0x26;
const BITNTYPE: u8 = 0x68;
const NUMERICNTYPE: u8 = 0x6C;
const NVARCHARTYPE: u8 = 0xE7;
const BIGVARBINARYTYPE: u8 = 0xA5;
const SSVARIANTTYPE: u8 = 0x62;
const INT4TYPE: u8 = 0x38;
/// SQL_Latin1_General_CP1_CI_AS: LCID 0x0409 with flags 0xD0 (LE u32), sort id 52.
pub const DEFAULT_COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// TDS 7.4, as LOGINACK carries it (big-endian on the wire).
pub const TDS_7_4: u32 = 0x7400_0004;

fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// B_VARCHAR: a one-byte character count, then UCS-2. Longer text is cut at 255 characters.
pub fn b_varchar(out: &mut Vec<u8>, text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

/// US_VARCHAR: a two-byte character count, then UCS-2.
pub fn us_varchar(out: &mut Vec<u8>, text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(usize::from(u16::MAX)).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

/// Writes `body` behind its token byte and a u16 length.
fn with_length(out: &mut Vec<u8>, token: u8, body: &[u8]) {
    out.push(token);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
}

/// ENVCHANGE with B_VARCHAR new and old values: type 1 (database), 2 (language), 4 (packet size).
pub fn env_change(out: &mut Vec<u8>, kind: u8, new: &str, old: &str) {
    let mut body = vec![kind];
    b_varchar(&mut body, new);
    b_varchar(&mut body, old);
    with_length(out, ENVCHANGE, &body);
}

pub mod env {
    pub const DATABASE: u8 = 1;
    pub const LANGUAGE: u8 = 2;
    pub const PACKET_SIZE: u8 = 4;
}

/// An ERROR or INFO message as the client shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub number: i32,
    pub state: u8,
    pub class: u8,
    pub text: String,
    pub server: String,
    pub procedure: String,
    pub line: i32,
}

fn message(out: &mut Vec<u8>, token: u8, m: &Message) {
    let mut body = Vec::new();
    body.extend_from_slice(&m.number.to_le_bytes());
    body.push(m.state);
    body.push(m.class);
    us_varchar(&mut body, &m.text);
    b_varchar(&mut body, &m.server);
    b_varchar(&mut body, &m.procedure);
    body.extend_from_slice(&m.line.to_le_bytes());
    with_length(out, token, &body);
}

pub fn error(out: &mut Vec<u8>, m: &Message) {
    message(out, ERROR, m);
}

pub fn info(out: &mut Vec<u8>, m: &Message) {
    message(out, INFO, m);
}

/// LOGINACK: interface 1 (T-SQL), the TDS version, the program name and its version
/// (major, minor, build high byte, build low byte).
pub fn login_ack(out: &mut Vec<u8>, tds_version: u32, program: &str, version: [u8; 4]) {
    let mut body = vec![1];
    body.extend_from_slice(&tds_version.to_be_bytes());
    b_varchar(&mut body, program);
    body.extend_from_slice(&version);
    with_length(out, LOGINACK, &body);
}

/// DONE: status, the current command, and the row count (u64, TDS 7.2 and later).
pub fn done(out: &mut Vec<u8>, status: u16, cur_cmd: u16, row_count: u64) {
    out.push(DONE);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&cur_cmd.to_le_bytes());
    out.extend_from_slice(&row_count.to_le_bytes());
}

/// A column's type ([MS-TDS] 2.2.5.4): the nullable variable-length forms SQL Server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// INTN(4).
    Int,
    /// INTN(8).
    BigInt,
    /// BITN.
    Bit,
    /// NVARCHAR(n) in the default collation; n in characters.
    NVarChar(u16),
    /// VARBINARY(n): BIGVARBINARYTYPE, a USHORTLEN type without collation ([MS-TDS] 2.2.5.4.3);
    /// n in bytes.
    VarBinary(u16),
    /// NUMERICN(precision, 0).
    Numeric(u8),
    /// SQL_VARIANT, as SERVERPROPERTY returns.
    Variant,
}

/// A column of a result set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
}

impl Column {
    pub fn new(name: &str, ty: ColumnType) -> Self {
        Self {
            name: name.into(),
            ty,
            nullable: true,
        }
    }
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i32),
    BigInt(i64),
    Bit(bool),
    NVarChar(String),
    VarBinary(Vec<u8>),
    /// A non-negative NUMERIC with scale 0.
    Numeric(u128),
    /// An INT inside a SQL_VARIANT.
    VariantInt(i32),
}

/// Bytes a NUMERIC of this precision takes on the wire, sign byte included.
fn numeric_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// COLMETADATA, a ROW per row and the DONE of a SELECT (with DONE_MORE when `more` results follow
/// in the batch). Values must match their column's type or be NULL.
pub fn result_set(out: &mut Vec<u8>, columns: &[Column], rows: &[Vec<Value>], more: bool) {
    out.push(COLMETADATA);
    out.extend_from_slice(&(columns.len() as u16).to_le_bytes());
    for column in columns {
        out.extend_from_slice(&0u32.to_le_bytes()); // UserType
        out.extend_from_slice(&u16::from(column.nullable).to_le_bytes()); // Flags
        match column.ty {
            ColumnType::Int => out.extend_from_slice(&[INTNTYPE, 4]),
            ColumnType::BigInt => out.extend_from_slice(&[INTNTYPE, 8]),
            ColumnType::Bit => out.extend_from_slice(&[BITNTYPE, 1]),
            ColumnType::NVarChar(chars) => {
                out.push(NVARCHARTYPE);
                out.extend_from_slice(&(chars * 2).to_le_bytes());
                out.extend_from_slice(&DEFAULT_COLLATION);
            }
            ColumnType::VarBinary(bytes) => {
                out.push(BIGVARBINARYTYPE);
                out.extend_from_slice(&bytes.to_le_bytes());
            }
            ColumnType::Numeric(precision) => {
                out.extend_from_slice(&[NUMERICNTYPE, numeric_len(precision), precision, 0])
            }
            ColumnType::Variant => {
                out.push(SSVARIANTTYPE);
                out.extend_from_slice(&8016u32.to_le_bytes());
            }
        }
        b_varchar(out, &column.name);
    }
    for row in rows {
        out.push(ROW);
        for (column, value) in columns.iter().zip(row) {
            match (column.ty, value) {
                // USHORTLEN types: a length of 0xFFFF is NULL.
                (ColumnType::NVarChar(_) | ColumnType::VarBinary(_), Value::Null) => {
                    out.extend_from_slice(&[0xFF, 0xFF])
                }
                (ColumnType::Variant, Value::Null) => out.extend_from_slice(&0u32.to_le_bytes()),
                (_, Value::VariantInt(n)) => {
                    // Total length, base type, no property bytes, the value ([MS-TDS] 2.2.5.5.3).
                    out.extend_from_slice(&6u32.to_le_bytes());
                    out.extend_from_slice(&[INT4TYPE, 0]);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                (_, Value::Null) => out.push(0),
                (_, Value::Int(n)) => {
                    out.push(4);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                (_, Value::BigInt(n)) => {
                    out.push(8);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                (_, Value::Bit(b)) => out.extend_from_slice(&[1, u8::from(*b)]),
                (ColumnType::NVarChar(chars), Value::NVarChar(text)) => {
                    let bytes = ucs2(text);
                    let len = bytes.len().min(usize::from(chars) * 2);
                    out.extend_from_slice(&(len as u16).to_le_bytes());
                    out.extend_from_slice(&bytes[..len]);
                }
                (ColumnType::VarBinary(max), Value::VarBinary(bytes)) => {
                    let len = bytes.len().min(usize::from(max));
                    out.extend_from_slice(&(len as u16).to_le_bytes());
                    out.extend_from_slice(&bytes[..len]);
                }
                (ColumnType::Numeric(precision), Value::Numeric(n)) => {
                    let len = numeric_len(precision);
                    out.push(len);
                    out.push(1); // positive
                    out.extend_from_slice(&n.to_le_bytes()[..usize::from(len - 1)]);
                }
                (ty, value) => unreachable!("a {value:?} in a {ty:?} column"),
            }
        }
    }
    let status = done::COUNT | if more { done::MORE } else { 0 };
    done(out, status, done::CMD_SELECT, rows.len() as u64);
}

/// One row of named columns, typed after their values (INT NOT NULL, NVARCHAR(4000) NULL): what
/// `SELECT 1` and `SELECT @@VERSION` answer.
pub fn single_row(out: &mut Vec<u8>, columns: &[(&str, Value)]) {
    let meta: Vec<Column> = columns
        .iter()
        .map(|(name, value)| match value {
            Value::NVarChar(_) => Column::new(name, ColumnType::NVarChar(4000)),
            _ => Column {
                nullable: false,
                ..Column::new(name, ColumnType::Int)
            },
        })
        .collect();
    let row: Vec<Value> = columns.iter().map(|(_, v)| v.clone()).collect();
    result_set(out, &meta, &[row], false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b_varchar_and_us_varchar_count_characters() {
        let mut out = Vec::new();
        b_varchar(&mut out, "ab");
        us_varchar(&mut out, "é");
        assert_eq!(out, [2, b'a', 0, b'b', 0, 1, 0, 0xE9, 0x00]);
    }

    #[test]
    fn login_ack_layout() {
        let mut out = Vec::new();
        login_ack(&mut out, TDS_7_4, "SQL", [16, 0, 0x10, 0x27]);
        assert_eq!(
            out,
            [
                0xAD, 16, 0, // token, length
                1, 0x74, 0x00, 0x00, 0x04, // interface, TDS version
                3, b'S', 0, b'Q', 0, b'L', 0, // ProgName
                16, 0, 0x10, 0x27 // ProgVersion
            ]
        );
    }

    #[test]
    fn env_change_packet_size_layout() {
        let mut out = Vec::new();
        env_change(&mut out, env::PACKET_SIZE, "4096", "4096");
        let mut expected = vec![0xE3, 19, 0, 4, 4];
        expected.extend_from_slice(&ucs2("4096"));
        expected.push(4);
        expected.extend_from_slice(&ucs2("4096"));
        assert_eq!(out, expected);
    }

    #[test]
    fn error_layout() {
        let mut out = Vec::new();
        error(
            &mut out,
            &Message {
                number: 18456,
                state: 1,
                class: 14,
                text: "No".into(),
                server: "S".into(),
                procedure: String::new(),
                line: 1,
            },
        );
        assert_eq!(
            out,
            [
                0xAA, 20, 0, // token, length
                0x18, 0x48, 0, 0, // 18456
                1, 14, // state, class
                2, 0, b'N', 0, b'o', 0, // MsgText
                1, b'S', 0, // ServerName
                0, // ProcName
                1, 0, 0, 0 // LineNumber
            ]
        );
    }

    #[test]
    fn done_layout() {
        let mut out = Vec::new();
        done(&mut out, done::ERROR, 0, 0);
        assert_eq!(out, [0xFD, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn select_one_layout() {
        let mut out = Vec::new();
        single_row(&mut out, &[("", Value::Int(1))]);
        assert_eq!(
            out,
            [
                0x81, 1, 0, // COLMETADATA, one column
                0, 0, 0, 0, 0, 0, // UserType, Flags
                0x26, 4, // INTN(4)
                0, // empty name
                0xD1, 4, 1, 0, 0, 0, // ROW: length 4, value 1
                0xFD, 0x10, 0, 0xC1, 0, 1, 0, 0, 0, 0, 0, 0, 0 // DONE count, SELECT, 1 row
            ]
        );
    }

    #[test]
    fn typed_columns_and_nulls() {
        let mut out = Vec::new();
        let columns = [
            Column::new("b", ColumnType::BigInt),
            Column::new("f", ColumnType::Bit),
            Column::new("n", ColumnType::Numeric(25)),
            Column::new("s", ColumnType::NVarChar(60)),
        ];
        let rows = [
            vec![
                Value::BigInt(-2),
                Value::Bit(true),
                Value::Numeric(258),
                Value::Null,
            ],
            vec![
                Value::Null,
                Value::Null,
                Value::Null,
                Value::NVarChar("x".into()),
            ],
        ];
        result_set(&mut out, &columns, &rows, true);
        let meta = [
            0x81, 4, 0, //
            0, 0, 0, 0, 1, 0, 0x26, 8, 1, b'b', 0, //
            0, 0, 0, 0, 1, 0, 0x68, 1, 1, b'f', 0, //
            0, 0, 0, 0, 1, 0, 0x6C, 13, 25, 0, 1, b'n', 0, //
            0, 0, 0, 0, 1, 0, 0xE7, 120, 0, 0x09, 0x04, 0xD0, 0x00, 0x34, 1, b's', 0,
        ];
        assert_eq!(&out[..meta.len()], meta);
        let mut rest = vec![0xD1, 8];
        rest.extend_from_slice(&(-2i64).to_le_bytes());
        rest.extend_from_slice(&[1, 1, 13, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]);
        rest.extend_from_slice(&[0xD1, 0, 0, 0, 2, 0, b'x', 0]);
        rest.extend_from_slice(&[0xFD, 0x11, 0, 0xC1, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[meta.len()..], rest);
    }

    #[test]
    fn varbinary_column_has_a_byte_length_and_no_collation() {
        let mut out = Vec::new();
        let columns = [Column::new("", ColumnType::VarBinary(8000))];
        let rows = [vec![Value::VarBinary(vec![0x30, 0x82])], vec![Value::Null]];
        result_set(&mut out, &columns, &rows, false);
        assert_eq!(
            out,
            [
                0x81, 1, 0, // COLMETADATA, one column
                0, 0, 0, 0, 1, 0, // UserType, Flags (nullable)
                0xA5, 0x40, 0x1F, // BIGVARBINARYTYPE, max 8000 bytes
                0,    // empty name
                0xD1, 2, 0, 0x30, 0x82, // ROW: length 2, the bytes
                0xD1, 0xFF, 0xFF, // ROW: NULL
                0xFD, 0x10, 0, 0xC1, 0, 2, 0, 0, 0, 0, 0, 0, 0 // DONE count, SELECT, 2 rows
            ]
        );
    }

    #[test]
    fn nvarchar_column_carries_collation_and_byte_length() {
        let mut out = Vec::new();
        single_row(&mut out, &[("v", Value::NVarChar("hi".into()))]);
        let expected_meta = [
            0x81, 1, 0, 0, 0, 0, 0, 1, 0, 0xE7, 0x40, 0x1F, 0x09, 0x04, 0xD0, 0x00, 0x34, 1, b'v',
            0,
        ];
        assert_eq!(&out[..expected_meta.len()], expected_meta);
        assert_eq!(
            &out[expected_meta.len()..expected_meta.len() + 7],
            [0xD1, 4, 0, b'h', 0, b'i', 0]
        );
    }
}
