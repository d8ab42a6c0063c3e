//! Go duration strings (`5m`, `1h30m`, `300ms`, `1m0s`), the format KubeDB and cert-manager use
//! for timeouts, leader-election periods and certificate lifetimes.

use std::fmt::Write as _;
use std::time::Duration;

/// The duration `text` means, or `None` if Go's `time.ParseDuration` would reject it (negative
/// durations are rejected too: none of our fields can use one).
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let (number, tail) = rest.split_at(number_len);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Go-style text (`24h`, `1h30m`, `0s`), which `parse` reads back.
pub fn format(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if seconds == 0 && nanos == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        let _ = write!(text, "{hours}h");
    }
    if minutes > 0 {
        let _ = write!(text, "{minutes}m");
    }
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        let _ = write!(text, "{seconds}.{}s", fraction.trim_end_matches('0'));
    } else if seconds > 0 {
        let _ = write!(text, "{seconds}s");
    }
    text
}

/// Exactly as Go's `time.Duration.String` prints it (`1h0m0s`, `5m0s`, `1.5s`, `300ms`): how
/// cert-manager's messages show durations.
pub fn go_string(duration: Duration) -> String {
    let (seconds, nanos) = (duration.as_secs(), duration.subsec_nanos());
    // A whole number, then the fraction of `unit` in `rest` without its trailing zeros.
    let decimal = |whole: u64, rest: u32, digits: usize| {
        let fraction = format!("{rest:0digits$}");
        match fraction.trim_end_matches('0') {
            "" => whole.to_string(),
            fraction => format!("{whole}.{fraction}"),
        }
    };
    if seconds == 0 {
        return match nanos {
            0 => "0s".to_owned(),
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => format!("{}µs", decimal(u64::from(n / 1_000), n % 1_000, 3)),
            n => format!("{}ms", decimal(u64::from(n / 1_000_000), n % 1_000_000, 6)),
        };
    }
    let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
    let seconds = format!("{}s", decimal(seconds % 60, nanos, 9));
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(2160 * 3600), "2160h0m0s"),
            (Duration::from_secs(3600 + 30), "1h0m30s"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(2500), "2.5µs"),
            (Duration::from_nanos(5), "5ns"),
        ] {
            assert_eq!(go_string(duration), text, "{duration:?}");
        }
    }

    #[test]
    fn parses_what_go_parses() {
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("2160h"), Some(Duration::from_secs(2160 * 3600)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in ["", "5", "m", "5 m", "5d", "-5m", "1h-3m", "h5", "1..5s"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_print_as_go_durations() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(86400), "24h"),
            (Duration::from_secs(90 * 60), "1h30m"),
            (Duration::from_secs(45 * 60), "45m"),
            (Duration::from_secs(3600 + 30), "1h30s"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_secs(2160 * 3600), "2160h"),
        ] {
            assert_eq!(format(duration), text);
            assert_eq!(parse(text), Some(duration), "{text}");
        }
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(300)), "0.3s");
        assert_eq!(format(Duration::from_millis(60_001)), "1m0.001s");
    }
}
