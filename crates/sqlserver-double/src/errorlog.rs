//! Lines in the shape of SQL Server's errorlog, which SQL Server on Linux also writes to stdout:
//! `2024-06-01 12:00:00.00 Server      text`. Tests and `kubectl logs` read them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Who speaks, as the errorlog's second column: `Server` for start-up, `Logon` for logins,
/// `spidNN` for a connection.
pub fn line(source: &str, text: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{} {source:<11} {text}",
        timestamp(now.as_secs(), now.subsec_millis())
    )
}

/// Prints one errorlog line on stdout. Never give it key material.
pub fn log(source: &str, text: &str) {
    println!("{}", line(source, text));
}

/// `YYYY-MM-DD HH:MM:SS.cc` in UTC, as SQL Server on Linux prints it (centiseconds).
pub fn timestamp(unix_seconds: u64, millis: u32) -> String {
    let days = unix_seconds / 86_400;
    let rest = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        millis / 10
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (the usual era-based conversion).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0, 0), "1970-01-01 00:00:00.00");
        // 2000-02-29 (a leap day of a year divisible by 400) 23:59:59.999
        assert_eq!(timestamp(951_868_799, 999), "2000-02-29 23:59:59.99");
        assert_eq!(timestamp(1_717_243_200, 120), "2024-06-01 12:00:00.12");
    }

    #[test]
    fn a_line_has_the_source_column() {
        let text = line("Server", "SQL Server is now ready for client connections.");
        assert!(text.ends_with(" Server      SQL Server is now ready for client connections."));
    }
}
