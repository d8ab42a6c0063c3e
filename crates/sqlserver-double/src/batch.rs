//! SQL_BATCH requests ([MS-TDS] 2.2.6.7): ALL_HEADERS, then the text in UCS-2. [`crate::tsql`]
//! parses the text and [`crate::exec`] runs it.

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
}
