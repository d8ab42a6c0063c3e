//! Small text helpers: times, ages, aligned tables.

use k8s_openapi::jiff::Timestamp;

/// RFC 3339 of a Unix time (UTC, seconds).
pub fn timestamp(unix: i64) -> String {
    Timestamp::from_second(unix).map_or_else(|_| format!("@{unix}"), |t| t.to_string())
}

/// A duration in kubectl's style: `42s`, `3m12s`, `4h5m`, `2d3h`, `12d`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{m}m{}s", s % 60),
        600..10_800 => format!("{m}m"),
        10_800..172_800 => format!("{h}h{}m", m % 60),
        172_800..691_200 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

/// Columns padded to their widest cell, separated by three spaces; no trailing blanks.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        format!("{}\n", padded.join("   ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `[#####-----] 1/2`: `done` of `total` in `width` cells.
pub fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done.min(total) * width).checked_div(total).unwrap_or(0);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        "-".repeat(width - filled)
    )
}

/// `-` for nothing, else the items joined by `, `.
pub fn list(items: &[String]) -> String {
    match items.is_empty() {
        true => "-".to_owned(),
        false => items.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (-5, "0s"),
            (42, "42s"),
            (119, "119s"),
            (192, "3m12s"),
            (900, "15m"),
            (14_700, "4h5m"),
            (183_600, "2d3h"),
            (1_036_800, "12d"),
        ];
        for (seconds, text) in cases {
            assert_eq!(age(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(timestamp(i64::MAX), format!("@{}", i64::MAX));
    }

    #[test]
    fn tables_align_columns_and_bars_fill() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), String::new()],
            vec!["bbbb".to_owned(), "x".to_owned(), "z".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "V", "LAST"], &rows),
            "NAME   V            LAST\na      long value\nbbbb   x            z\n"
        );
        assert_eq!(bar(1, 2, 10), "[#####-----] 1/2");
        assert_eq!(bar(3, 3, 4), "[####] 3/3");
        assert_eq!(bar(0, 0, 4), "[----] 0/0");
        assert_eq!(bar(5, 3, 3), "[###] 5/3");
        assert_eq!(list(&[]), "-");
        assert_eq!(list(&["a".to_owned(), "b".to_owned()]), "a, b");
    }
}
