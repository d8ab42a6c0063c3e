//! SQL_BATCH requests ([MS-TDS] 2.2.6.7): ALL_HEADERS, then the text in UCS-2. The double has no
//! query engine: it recognises `SELECT 1` and `SELECT @@VERSION` and refuses everything else.

use crate::tokens::{self, Message, Value};

/// What `SELECT @@VERSION` answers.
pub const VERSION_TEXT: &str = "Microsoft SQL Server 2022 test double (mssql-operator)";

/// The message of the error every other statement gets.
pub const UNSUPPORTED: &str = "the SQL Server test double runs only SELECT 1 and SELECT @@VERSION";

/// The error number of that message: the first number of user-defined messages.
pub const UNSUPPORTED_NUMBER: i32 = 50000;

/// The statements the double knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    SelectOne,
    SelectVersion,
    /// Anything else, as sent.
    Other(String),
}

/// The SQL text of a batch payload. TDS 7.2+ clients send ALL_HEADERS first (a u32 total length
/// that counts itself); a payload whose first four bytes cannot be that is taken as bare text.
pub fn sql_text(payload: &[u8]) -> String {
    let headers = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .filter(|len| (4..=payload.len()).contains(len) && (len - 4) % 2 == 0)
        .unwrap_or(0);
    let units: Vec<u16> = payload[headers..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Recognises the statement: case, surrounding whitespace, runs of inner whitespace and trailing
/// semicolons do not matter.
pub fn classify(sql: &str) -> Statement {
    let normal = sql
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    match normal.as_str() {
        "select 1" => Statement::SelectOne,
        "select @@version" => Statement::SelectVersion,
        _ => Statement::Other(sql.to_owned()),
    }
}

/// The token stream answering `statement`, and whether it is an error.
pub fn answer(statement: &Statement, server_name: &str) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    match statement {
        Statement::SelectOne => {
            tokens::single_row(&mut out, &[("", Value::Int(1))]);
            (out, false)
        }
        Statement::SelectVersion => {
            tokens::single_row(&mut out, &[("", Value::NVarChar(VERSION_TEXT.into()))]);
            (out, false)
        }
        Statement::Other(_) => {
            tokens::error(
                &mut out,
                &Message {
                    number: UNSUPPORTED_NUMBER,
                    state: 1,
                    class: 16,
                    text: UNSUPPORTED.into(),
                    server: server_name.into(),
                    procedure: String::new(),
                    line: 1,
                },
            );
            tokens::done(&mut out, tokens::done::ERROR, 0, 0);
            (out, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(sql: &str) -> Vec<u8> {
        // ALL_HEADERS with one transaction-descriptor header, as tiberius and ODBC send it.
        let mut payload = 22u32.to_le_bytes().to_vec();
        payload.extend_from_slice(&18u32.to_le_bytes());
        payload.extend_from_slice(&2u16.to_le_bytes());
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend(sql.encode_utf16().flat_map(u16::to_le_bytes));
        payload
    }

    #[test]
    fn all_headers_are_skipped() {
        assert_eq!(sql_text(&batch("SELECT 1")), "SELECT 1");
        let bare: Vec<u8> = "SELECT 1"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(sql_text(&bare), "SELECT 1");
    }

    #[test]
    fn statements_are_recognised_loosely() {
        for sql in ["SELECT 1", "select 1;", "  Select\t1 ;; \n", "SELECT  1"] {
            assert_eq!(classify(sql), Statement::SelectOne, "{sql:?}");
        }
        for sql in ["SELECT @@VERSION", "select @@version;"] {
            assert_eq!(classify(sql), Statement::SelectVersion, "{sql:?}");
        }
        for sql in ["SELECT 2", "SELECT 1; SELECT 1", "DROP DATABASE x", ""] {
            assert_eq!(classify(sql), Statement::Other(sql.into()), "{sql:?}");
        }
    }

    #[test]
    fn other_statements_get_an_error_and_a_done_with_the_error_bit() {
        let (out, failed) = answer(&Statement::Other("SELECT 2".into()), "db-0");
        assert!(failed);
        assert_eq!(out[0], 0xAA);
        assert_eq!(&out[3..7], UNSUPPORTED_NUMBER.to_le_bytes());
        let done = &out[out.len() - 13..];
        assert_eq!(&done[..3], [0xFD, 0x02, 0x00]);
        let (ok, failed) = answer(&Statement::SelectOne, "db-0");
        assert!(!failed);
        assert_eq!(ok[0], 0x81);
    }
}
