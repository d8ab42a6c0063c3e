//! When the operator may restart pods to roll out renewed TLS certificates.
//!
//! A database may carry its own policy as annotations; each one present overrides the operator's
//! default (set by command-line flags):
//!
//! - `mssql-operator.dev/renewal-rollout`: `Auto` (the operator restarts pods) or `Manual` (a person
//!   does). Default `Auto`.
//! - `mssql-operator.dev/maintenance-window`: when restarts may happen, see below. Default: none,
//!   any time is fine.
//! - `mssql-operator.dev/renewal-safety-margin`: a Go duration such as `24h` or `90m`. Outside the
//!   window, the operator restarts anyway when the certificate a pod serves would expire before the
//!   next window opens plus this margin. Default `24h`; `0` is allowed.
//!
//! # Maintenance window
//!
//! `<days> <HH:MM>-<HH:MM> [<time zone>]`, for example `Sat,Sun 22:00-02:00 Europe/Berlin`.
//!
//! - `<days>`: the days a window *starts* on, as comma-separated items without spaces. An item is
//!   a day (`Mon`, `Tue`, `Wed`, `Thu`, `Fri`, `Sat`, `Sun`, or the full English name such as
//!   `Monday`, in any case), a range such as `Mon-Fri` (a range may wrap the week: `Fri-Mon` is
//!   Friday, Saturday, Sunday and Monday), or `*` or `Daily` for every day.
//! - `<HH:MM>-<HH:MM>`: start and end, 24-hour wall-clock times. The end may be `24:00`. An end
//!   earlier than the start, or `00:00`, is on the next day: `Sat 22:00-02:00` runs from Saturday
//!   22:00 to Sunday 02:00, and `Sun 22:00-02:00` to Monday 02:00. A start equal to the end is an
//!   error; for a whole day write `00:00-24:00`.
//! - `<time zone>`: an IANA name such as `Europe/Berlin` or `America/New_York`, or `UTC`. Optional;
//!   the default is `UTC`.
//!
//! Times are wall-clock times in the zone. On a daylight-saving change, a time that does not exist
//! (clocks jump forward over it) means the instant the clocks jump, and a time that happens twice
//! (clocks go back) means its first occurrence. A window can therefore be one hour shorter or
//! longer than usual on those days. Windows that follow each other without a gap (such as
//! `Sat,Sun 00:00-24:00`) count as one.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use jiff::ToSpan;
use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::validate::FieldError;

use crate::annotations::{MAINTENANCE_WINDOW, RENEWAL_ROLLOUT, RENEWAL_SAFETY_MARGIN};

/// Who restarts pods after a renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollout {
    Auto,
    Manual,
}

impl FromStr for Rollout {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "Auto" => Ok(Rollout::Auto),
            "Manual" => Ok(Rollout::Manual),
            _ => Err(format!("{text:?}: not a rollout; use Auto or Manual")),
        }
    }
}

impl fmt::Display for Rollout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rollout::Auto => "Auto",
            Rollout::Manual => "Manual",
        })
    }
}

const FORMAT_HINT: &str =
    "expected \"<days> <HH:MM>-<HH:MM> [<time zone>]\", e.g. \"Sat,Sun 22:00-02:00 Europe/Berlin\"";
const DAY_HINT: &str =
    "not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like Mon-Fri, or *";
const TIME_HINT: &str = "not a time; use HH:MM from 00:00 to 24:00";
const ZONE_HINT: &str =
    "not a time zone; use an IANA name such as Europe/Berlin or America/New_York, or UTC";

/// Monday first, so that the index is jiff's Monday-zero offset.
const DAYS: [(Weekday, &str, &str); 7] = [
    (Weekday::Monday, "Mon", "Monday"),
    (Weekday::Tuesday, "Tue", "Tuesday"),
    (Weekday::Wednesday, "Wed", "Wednesday"),
    (Weekday::Thursday, "Thu", "Thursday"),
    (Weekday::Friday, "Fri", "Friday"),
    (Weekday::Saturday, "Sat", "Saturday"),
    (Weekday::Sunday, "Sun", "Sunday"),
];
const EVERY_DAY: u8 = 0b111_1111;

/// A weekly maintenance window; see the module documentation for its text form.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Bit `n` set: a window starts on the day with Monday-zero offset `n`.
    days: u8,
    start: Time,
    end: Time,
    /// The end is on the day after the start.
    wraps: bool,
    zone: TimeZone,
}

impl Window {
    /// Reads the text form described in the module documentation.
    pub fn parse(text: &str) -> Result<Window, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let (days, times, zone) = match parts[..] {
            [days, times] => (days, times, None),
            [days, times, zone] => (days, times, Some(zone)),
            _ => return Err(format!("{text:?}: {FORMAT_HINT}")),
        };
        let days = parse_days(days)?;
        let Some((start_text, end_text)) = times.split_once('-') else {
            return Err(format!(
                "{times:?}: not a time range; use <HH:MM>-<HH:MM>, e.g. 22:00-02:00"
            ));
        };
        let start = parse_minutes(start_text)?;
        let end = parse_minutes(end_text)?;
        if start == MINUTES_PER_DAY {
            return Err(format!(
                "{start_text:?}: a window cannot start at 24:00; start it at 00:00 of the next day"
            ));
        }
        if start == end {
            return Err(format!(
                "{times:?}: a window of zero length; for a whole day write 00:00-24:00"
            ));
        }
        let zone = match zone {
            None => TimeZone::UTC,
            Some(name) => match TimeZone::get(name) {
                // `Etc/Unknown` is jiff's placeholder, not a place.
                Ok(zone) if !zone.is_unknown() => zone,
                _ => return Err(format!("{name:?}: {ZONE_HINT}")),
            },
        };
        Ok(Window {
            days,
            start: civil_time(start),
            end: civil_time(end),
            wraps: end < start || end == MINUTES_PER_DAY,
            zone,
        })
    }

    /// Some(end) when `now` is inside a window (start <= now < end). Windows that follow each
    /// other without a gap count as one, so `end` is when the windows really close.
    pub fn open_until(&self, now: Timestamp) -> Option<Timestamp> {
        let windows = self.windows_around(now);
        let mut closes = windows
            .iter()
            .find(|(start, end)| *start <= now && now < *end)?
            .1;
        // Sorted by start: one pass extends through every adjoining window.
        for (start, end) in &windows {
            if *start <= closes && closes < *end {
                closes = *end;
            }
        }
        Some(closes)
    }

    /// The start of the first window that starts strictly after `now`.
    pub fn next_open(&self, now: Timestamp) -> Timestamp {
        self.windows_around(now)
            .into_iter()
            .map(|(start, _)| start)
            .find(|start| *start > now)
            // Only reachable at the end of jiff's range (year 9999): never.
            .unwrap_or(Timestamp::MAX)
    }

    /// The non-empty windows starting from the day before `now` (local) to eight days after,
    /// sorted by start: enough to contain `now` and the next start, as every day set repeats
    /// weekly and a window lasts at most 25 hours.
    fn windows_around(&self, now: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let today = self.zone.to_datetime(now).date();
        (-1..=8i64)
            .filter_map(|offset| {
                let date = today.checked_add(offset.days()).ok()?;
                if self.days & day_bit(date.weekday()) == 0 {
                    return None;
                }
                let end_date = if self.wraps {
                    date.tomorrow().ok()?
                } else {
                    date
                };
                let start = resolve(&self.zone, date.to_datetime(self.start))?;
                let end = resolve(&self.zone, end_date.to_datetime(self.end))?;
                // A window inside a spring-forward gap does not happen that day.
                (start < end).then_some((start, end))
            })
            .collect()
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_days(f, self.days)?;
        let end = if self.wraps && self.end == Time::midnight() {
            "24:00".to_string()
        } else {
            self.end.strftime("%H:%M").to_string()
        };
        // `parse` only builds named zones.
        let zone = self.zone.iana_name().unwrap_or("UTC");
        write!(f, " {}-{end} {zone}", self.start.strftime("%H:%M"))
    }
}

const MINUTES_PER_DAY: u16 = 24 * 60;

fn day_bit(day: Weekday) -> u8 {
    1 << day.to_monday_zero_offset()
}

fn parse_day(text: &str) -> Result<Weekday, String> {
    DAYS.iter()
        .find(|(_, short, long)| {
            text.eq_ignore_ascii_case(short) || text.eq_ignore_ascii_case(long)
        })
        .map(|(day, _, _)| *day)
        .ok_or_else(|| format!("{text:?}: {DAY_HINT}"))
}

fn parse_days(text: &str) -> Result<u8, String> {
    let mut days = 0;
    for item in text.split(',') {
        if item == "*" || item.eq_ignore_ascii_case("Daily") {
            days = EVERY_DAY;
        } else if let Some((first, last)) = item.split_once('-') {
            let (first, last) = (parse_day(first)?, parse_day(last)?);
            if first == last {
                return Err(format!(
                    "{item:?}: a range from a day to itself; write {} for one day, or * for every day",
                    DAYS[first.to_monday_zero_offset() as usize].1
                ));
            }
            let mut day = first;
            days |= day_bit(day);
            while day != last {
                day = day.next();
                days |= day_bit(day);
            }
        } else {
            days |= day_bit(parse_day(item)?);
        }
    }
    Ok(days)
}

/// Canonical day text: `*`, or runs of three or more days as ranges, starting with the run that
/// holds Monday (so `Fri-Mon` stays one range).
fn write_days(f: &mut fmt::Formatter<'_>, days: u8) -> fmt::Result {
    if days == EVERY_DAY {
        return f.write_str("*");
    }
    let has = |offset: i64| days & (1 << offset.rem_euclid(7)) != 0;
    let mut first = 0i64;
    while has(first - 1) {
        first -= 1;
    }
    let name = |offset: i64| DAYS[offset.rem_euclid(7) as usize].1;
    let mut items = Vec::new();
    let mut offset = first;
    while offset < first + 7 {
        if !has(offset) {
            offset += 1;
            continue;
        }
        let mut last = offset;
        while last + 1 < first + 7 && has(last + 1) {
            last += 1;
        }
        match last - offset {
            0 => items.push(name(offset).to_string()),
            1 => items.push(format!("{},{}", name(offset), name(last))),
            _ => items.push(format!("{}-{}", name(offset), name(last))),
        }
        offset = last + 1;
    }
    f.write_str(&items.join(","))
}

/// Minutes since midnight of `HH:MM`, up to 24:00.
fn parse_minutes(text: &str) -> Result<u16, String> {
    let error = || format!("{text:?}: {TIME_HINT}");
    let (hours, minutes) = text.split_once(':').ok_or_else(error)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return Err(error());
    }
    let (hours, minutes): (u16, u16) = (
        hours.parse().map_err(|_| error())?,
        minutes.parse().map_err(|_| error())?,
    );
    let total = hours * 60 + minutes;
    if minutes >= 60 || total > MINUTES_PER_DAY {
        return Err(error());
    }
    Ok(total)
}

/// 24:00 becomes 00:00; `Window::wraps` puts it on the next day.
fn civil_time(minutes: u16) -> Time {
    let minutes = minutes % MINUTES_PER_DAY;
    jiff::civil::time((minutes / 60) as i8, (minutes % 60) as i8, 0, 0)
}

/// The instant of a wall-clock time: in a spring-forward gap, the instant the gap ends (so a
/// window's start never passes its end); in a fall-back fold, the earlier instant.
fn resolve(zone: &TimeZone, local: DateTime) -> Option<Timestamp> {
    let ambiguous = zone.to_ambiguous_timestamp(local);
    let earlier = ambiguous.earlier().ok()?;
    match ambiguous.offset() {
        // `earlier` is then before the gap, so the next transition is the gap's end.
        AmbiguousOffset::Gap { .. } => zone.following(earlier).next().map(|t| t.timestamp()),
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => Some(earlier),
    }
}

/// The rollout policy of one database.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub rollout: Rollout,
    /// None: any time is fine.
    pub window: Option<Window>,
    pub margin: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rollout: Rollout::Auto,
            window: None,
            margin: Duration::from_secs(24 * 3600),
        }
    }
}

impl Policy {
    /// The policy of a database: each annotation present overrides the matching field of `defaults`.
    pub fn of(
        annotations: &BTreeMap<String, String>,
        defaults: &Policy,
    ) -> Result<Policy, Vec<FieldError>> {
        let mut policy = defaults.clone();
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| {
            errors.push(FieldError::new(
                format!("metadata.annotations[{key}]"),
                message,
            ));
        };
        if let Some(text) = annotations.get(RENEWAL_ROLLOUT) {
            match text.parse() {
                Ok(rollout) => policy.rollout = rollout,
                Err(message) => error(RENEWAL_ROLLOUT, message),
            }
        }
        if let Some(text) = annotations.get(MAINTENANCE_WINDOW) {
            match Window::parse(text) {
                Ok(window) => policy.window = Some(window),
                Err(message) => error(MAINTENANCE_WINDOW, message),
            }
        }
        if let Some(text) = annotations.get(RENEWAL_SAFETY_MARGIN) {
            match crate::duration::parse(text) {
                Some(margin) => policy.margin = margin,
                None => error(
                    RENEWAL_SAFETY_MARGIN,
                    format!("{text:?}: not a duration; use a Go duration such as 24h or 90m"),
                ),
            }
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }
}

/// Every problem with the three annotations (none present = no errors), as FieldErrors whose field
/// is `metadata.annotations[mssql-operator.dev/renewal-rollout]` etc.
pub fn check_annotations(annotations: &BTreeMap<String, String>) -> Vec<FieldError> {
    Policy::of(annotations, &Policy::default())
        .err()
        .unwrap_or_default()
}

/// What to do about pods that still serve an old certificate.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Restart now.
    Now(Why),
    /// Wait until the window opens at `opens` (the margin does not force it yet).
    Wait { opens: Timestamp },
    /// Rollout is Manual: a person restarts.
    Manual,
}

/// Why a restart may happen now.
#[derive(Clone, Debug, PartialEq)]
pub enum Why {
    /// No maintenance window: any time is fine.
    NoWindow,
    /// Inside the window, which closes at `closes`.
    WindowOpen { closes: Timestamp },
    /// Outside the window, but the served certificate expires at `expires`, before the next window
    /// (`opens`) plus the safety `margin`.
    Margin {
        expires: Timestamp,
        opens: Timestamp,
        margin: Duration,
    },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NoWindow => f.write_str("no maintenance window is set, so any time is fine"),
            Why::WindowOpen { closes } => {
                write!(f, "the maintenance window is open until {closes}")
            }
            Why::Margin {
                expires,
                opens,
                margin,
            } => write!(
                f,
                "the served certificate expires at {expires}, before the next maintenance window \
                 ({opens}) plus the safety margin {}",
                crate::duration::format(*margin)
            ),
        }
    }
}

/// What to do now. `earliest_expiry`: when the earliest certificate a stale pod still serves
/// expires. An expiry exactly at the next window's start plus the margin still waits: only strictly
/// earlier forces a restart.
pub fn decide(policy: &Policy, now: Timestamp, earliest_expiry: Timestamp) -> Decision {
    if policy.rollout == Rollout::Manual {
        return Decision::Manual;
    }
    let Some(window) = &policy.window else {
        return Decision::Now(Why::NoWindow);
    };
    if let Some(closes) = window.open_until(now) {
        return Decision::Now(Why::WindowOpen { closes });
    }
    let opens = window.next_open(now);
    // Past jiff's range the deadline is beyond any expiry.
    let forced = opens
        .checked_add(policy.margin)
        .ok()
        .is_none_or(|deadline| earliest_expiry < deadline);
    if forced {
        Decision::Now(Why::Margin {
            expires: earliest_expiry,
            opens,
            margin: policy.margin,
        })
    } else {
        Decision::Wait { opens }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    fn window(text: &str) -> Window {
        Window::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn error(text: &str) -> String {
        Window::parse(text).expect_err(text)
    }

    fn open_until(text: &str, now: &str) -> Option<Timestamp> {
        window(text).open_until(ts(now))
    }

    fn next_open(text: &str, now: &str) -> Timestamp {
        window(text).next_open(ts(now))
    }

    // ---- Rollout ----

    #[test]
    fn rollout_is_exactly_auto_or_manual() {
        assert_eq!("Auto".parse(), Ok(Rollout::Auto));
        assert_eq!("Manual".parse(), Ok(Rollout::Manual));
        assert_eq!(Rollout::Auto.to_string(), "Auto");
        assert_eq!(Rollout::Manual.to_string(), "Manual");
        for bad in ["auto", "MANUAL", "", " Auto", "Automatic"] {
            assert_eq!(
                bad.parse::<Rollout>(),
                Err(format!("{bad:?}: not a rollout; use Auto or Manual"))
            );
        }
    }

    // ---- Window parsing ----

    #[test]
    fn every_day_name_in_any_case() {
        for (short, long) in [
            ("Mon", "Monday"),
            ("Tue", "Tuesday"),
            ("Wed", "Wednesday"),
            ("Thu", "Thursday"),
            ("Fri", "Friday"),
            ("Sat", "Saturday"),
            ("Sun", "Sunday"),
        ] {
            let expected = format!("{short} 01:00-02:00 UTC");
            for text in [
                short.to_string(),
                long.to_string(),
                short.to_lowercase(),
                short.to_uppercase(),
                long.to_lowercase(),
                long.to_uppercase(),
            ] {
                assert_eq!(window(&format!("{text} 01:00-02:00")).to_string(), expected);
            }
        }
    }

    #[test]
    fn day_sets_print_canonically() {
        for (days, canonical) in [
            ("Mon-Fri", "Mon-Fri"),
            ("monday-FRIDAY", "Mon-Fri"),
            ("Fri-Mon", "Fri-Mon"),
            ("Thu-Tue", "Thu-Tue"),
            ("Sat-Sun", "Sat,Sun"),
            ("Sun-Mon", "Sun,Mon"),
            ("Sun,Sat", "Sat,Sun"),
            ("Mon,Wed,Fri", "Mon,Wed,Fri"),
            ("Wed,Mon-Tue", "Mon-Wed"),
            ("Sun,Mon,Wed", "Sun,Mon,Wed"),
            ("Tue,Thu", "Tue,Thu"),
            ("Mon,Mon", "Mon"),
            ("Mon-Sun", "*"),
            ("Tue-Mon", "*"),
            ("Mon,*", "*"),
            ("*", "*"),
            ("Daily", "*"),
            ("daily", "*"),
            ("DAILY", "*"),
        ] {
            assert_eq!(
                window(&format!("{days} 01:00-02:00")).to_string(),
                format!("{canonical} 01:00-02:00 UTC"),
                "{days}"
            );
        }
    }

    #[test]
    fn times_and_zones_print_canonically() {
        for (text, canonical) in [
            ("Sat 22:00-02:00", "Sat 22:00-02:00 UTC"),
            ("Sat 22:00-02:00 UTC", "Sat 22:00-02:00 UTC"),
            ("Sat 22:00-02:00 utc", "Sat 22:00-02:00 UTC"),
            ("  Sat\t22:00-02:00   UTC ", "Sat 22:00-02:00 UTC"),
            ("Mon 09:30-17:45", "Mon 09:30-17:45 UTC"),
            ("* 00:00-24:00", "* 00:00-24:00 UTC"),
            ("Sat 20:00-24:00", "Sat 20:00-24:00 UTC"),
            ("Sat 20:00-00:00", "Sat 20:00-24:00 UTC"),
            ("Sun 23:59-00:01", "Sun 23:59-00:01 UTC"),
            (
                "Mon-Fri 22:00-02:00 Europe/Berlin",
                "Mon-Fri 22:00-02:00 Europe/Berlin",
            ),
            (
                "Sat,Sun 03:00-05:00 america/new_york",
                "Sat,Sun 03:00-05:00 America/New_York",
            ),
        ] {
            assert_eq!(window(text).to_string(), canonical, "{text}");
        }
        assert_eq!(window("Sat 20:00-00:00"), window("Sat 20:00-24:00"));
        assert_eq!(window("Sat 20:00-24:00"), window("Sat 20:00-24:00 UTC"));
        assert_ne!(
            window("Sat 20:00-23:00"),
            window("Sat 20:00-23:00 Europe/Berlin")
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "Sat 22:00-02:00",
            "Fri-Mon 00:00-24:00 Europe/Berlin",
            "Sun,Mon,Wed 10:15-10:45 America/New_York",
            "Daily 23:00-01:00 Asia/Kolkata",
            "Tue,Thu-Sat 05:00-00:00",
            "Thu-Tue 12:00-11:59 UTC",
        ] {
            let parsed = window(text);
            assert_eq!(window(&parsed.to_string()), parsed, "{text}");
        }
    }

    #[test]
    fn missing_or_extra_parts_show_the_format() {
        for text in [
            "",
            "  ",
            "Sat",
            "22:00-02:00",
            "Sat 22:00-02:00 Europe/Berlin extra",
        ] {
            assert_eq!(
                error(text),
                format!(
                    "{text:?}: expected \"<days> <HH:MM>-<HH:MM> [<time zone>]\", \
                     e.g. \"Sat,Sun 22:00-02:00 Europe/Berlin\""
                )
            );
        }
    }

    #[test]
    fn bad_days_name_the_item() {
        for (text, item) in [
            ("Mo 22:00-02:00", "Mo"),
            ("Mon-Fx 22:00-02:00", "Fx"),
            ("Xyz-Fri 22:00-02:00", "Xyz"),
            ("Mon,,Tue 22:00-02:00", ""),
            ("Mon, 22:00-02:00", ""),
            ("Mon-Wed-Fri 22:00-02:00", "Wed-Fri"),
            ("Weekend 22:00-02:00", "Weekend"),
            ("** 22:00-02:00", "**"),
            ("Sat, Sun 22:00-02:00", ""),
        ] {
            assert_eq!(
                error(text),
                format!(
                    "{item:?}: not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like \
                     Mon-Fri, or *"
                ),
                "{text}"
            );
        }
        assert_eq!(
            error("Mo 22:00-02:00"),
            "\"Mo\": not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like Mon-Fri, or *"
        );
    }

    #[test]
    fn a_range_from_a_day_to_itself_is_refused() {
        assert_eq!(
            error("Mon-Mon 22:00-02:00"),
            "\"Mon-Mon\": a range from a day to itself; write Mon for one day, or * for every day"
        );
        assert_eq!(
            error("sunday-Sun 22:00-02:00"),
            "\"sunday-Sun\": a range from a day to itself; write Sun for one day, or * for every day"
        );
    }

    #[test]
    fn bad_times_name_the_time() {
        for (text, time) in [
            ("Sat 25:00-02:00", "25:00"),
            ("Sat 22:00-24:01", "24:01"),
            ("Sat 22:00-24:30", "24:30"),
            ("Sat 22:60-23:00", "22:60"),
            ("Sat 9:00-10:00", "9:00"),
            ("Sat 09:0-10:00", "09:0"),
            ("Sat 0900-10:00", "0900"),
            ("Sat +1:00-02:00", "+1:00"),
            ("Sat 22:00-", ""),
            ("Sat -02:00", ""),
            ("Sat 22:00-02:00-03:00", "02:00-03:00"),
            ("Sat 22:00:00-23:00", "22:00:00"),
            ("Sat ab:cd-23:00", "ab:cd"),
        ] {
            assert_eq!(
                error(text),
                format!("{time:?}: not a time; use HH:MM from 00:00 to 24:00"),
                "{text}"
            );
        }
        assert_eq!(
            error("Sat 25:00-02:00"),
            "\"25:00\": not a time; use HH:MM from 00:00 to 24:00"
        );
    }

    #[test]
    fn a_time_range_needs_a_dash() {
        assert_eq!(
            error("Sat 22:00"),
            "\"22:00\": not a time range; use <HH:MM>-<HH:MM>, e.g. 22:00-02:00"
        );
        assert_eq!(
            error("Sat 22:00to02:00 UTC"),
            "\"22:00to02:00\": not a time range; use <HH:MM>-<HH:MM>, e.g. 22:00-02:00"
        );
    }

    #[test]
    fn a_window_cannot_start_at_24_00() {
        assert_eq!(
            error("Sat 24:00-02:00"),
            "\"24:00\": a window cannot start at 24:00; start it at 00:00 of the next day"
        );
        assert_eq!(
            error("Sat 24:00-24:00"),
            "\"24:00\": a window cannot start at 24:00; start it at 00:00 of the next day"
        );
    }

    #[test]
    fn a_window_of_zero_length_is_refused() {
        for times in ["22:00-22:00", "00:00-00:00", "12:34-12:34"] {
            assert_eq!(
                error(&format!("Sat {times}")),
                format!("{times:?}: a window of zero length; for a whole day write 00:00-24:00")
            );
        }
    }

    #[test]
    fn unknown_time_zones_are_named() {
        for zone in [
            "Europe/Berln",
            "Mars/Olympus_Mons",
            "CEST",
            "+01:00",
            "Etc/Unknown",
        ] {
            assert_eq!(
                error(&format!("Sat 22:00-02:00 {zone}")),
                format!(
                    "{zone:?}: not a time zone; use an IANA name such as Europe/Berlin or \
                     America/New_York, or UTC"
                )
            );
        }
    }

    #[test]
    fn the_first_error_is_reported() {
        assert_eq!(
            error("Mo 25:00-02:00 Nowhere"),
            "\"Mo\": not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like Mon-Fri, or *"
        );
        assert_eq!(
            error("Mon 25:00-02:00 Nowhere"),
            "\"25:00\": not a time; use HH:MM from 00:00 to 24:00"
        );
    }

    // ---- Windows in UTC ----
    // 2026-06-01 is a Monday, 2026-12-05 a Saturday.

    #[test]
    fn open_from_start_inclusive_to_end_exclusive() {
        let w = "Mon-Fri 09:00-17:00";
        assert_eq!(open_until(w, "2026-06-01T08:59:59Z"), None);
        assert_eq!(
            next_open(w, "2026-06-01T08:59:59Z"),
            ts("2026-06-01T09:00:00Z")
        );
        assert_eq!(
            open_until(w, "2026-06-01T09:00:00Z"),
            Some(ts("2026-06-01T17:00:00Z"))
        );
        assert_eq!(
            open_until(w, "2026-06-03T16:59:59.999Z"),
            Some(ts("2026-06-03T17:00:00Z"))
        );
        assert_eq!(open_until(w, "2026-06-03T17:00:00Z"), None);
        assert_eq!(
            next_open(w, "2026-06-03T17:00:00Z"),
            ts("2026-06-04T09:00:00Z")
        );
        // Friday evening and the weekend wait for Monday.
        assert_eq!(
            next_open(w, "2026-06-05T17:00:00Z"),
            ts("2026-06-08T09:00:00Z")
        );
        assert_eq!(open_until(w, "2026-06-06T12:00:00Z"), None);
        assert_eq!(
            next_open(w, "2026-06-07T23:59:59Z"),
            ts("2026-06-08T09:00:00Z")
        );
    }

    #[test]
    fn next_open_from_inside_a_window_is_the_next_start() {
        let w = "Sat 22:00-02:00";
        assert_eq!(
            next_open(w, "2026-12-05T22:00:00Z"),
            ts("2026-12-12T22:00:00Z")
        );
        assert_eq!(
            next_open(w, "2026-12-05T23:00:00Z"),
            ts("2026-12-12T22:00:00Z")
        );
        assert_eq!(
            next_open(w, "2026-12-06T01:00:00Z"),
            ts("2026-12-12T22:00:00Z")
        );
        assert_eq!(
            next_open("* 09:00-17:00", "2026-06-01T10:00:00Z"),
            ts("2026-06-02T09:00:00Z")
        );
    }

    #[test]
    fn a_window_across_midnight_belongs_to_its_start_day() {
        let w = "Sat 22:00-02:00";
        assert_eq!(open_until(w, "2026-12-05T21:59:59Z"), None);
        assert_eq!(
            next_open(w, "2026-12-05T21:59:59Z"),
            ts("2026-12-05T22:00:00Z")
        );
        assert_eq!(
            open_until(w, "2026-12-05T22:00:00Z"),
            Some(ts("2026-12-06T02:00:00Z"))
        );
        // Sunday's early hours belong to Saturday's window.
        assert_eq!(
            open_until(w, "2026-12-06T01:00:00Z"),
            Some(ts("2026-12-06T02:00:00Z"))
        );
        assert_eq!(open_until(w, "2026-12-06T02:00:00Z"), None);
        assert_eq!(
            next_open(w, "2026-12-06T02:00:00Z"),
            ts("2026-12-12T22:00:00Z")
        );
        // Sunday is not a start day: nothing opens Sunday night or in Saturday's early hours.
        assert_eq!(open_until(w, "2026-12-06T23:00:00Z"), None);
        assert_eq!(open_until(w, "2026-12-05T01:00:00Z"), None);
    }

    #[test]
    fn a_window_across_the_week_end() {
        let w = "Sun 22:00-02:00";
        assert_eq!(
            open_until(w, "2026-06-07T23:00:00Z"),
            Some(ts("2026-06-08T02:00:00Z"))
        );
        assert_eq!(
            open_until(w, "2026-06-08T01:00:00Z"),
            Some(ts("2026-06-08T02:00:00Z"))
        );
        assert_eq!(open_until(w, "2026-06-08T02:00:00Z"), None);
        assert_eq!(open_until(w, "2026-06-01T23:00:00Z"), None);
        assert_eq!(
            next_open(w, "2026-06-08T01:00:00Z"),
            ts("2026-06-14T22:00:00Z")
        );
        assert_eq!(
            next_open(w, "2026-06-01T00:00:00Z"),
            ts("2026-06-07T22:00:00Z")
        );
    }

    #[test]
    fn an_end_of_00_00_or_24_00_is_midnight_after_the_start() {
        for w in ["Sat 20:00-24:00", "Sat 20:00-00:00"] {
            assert_eq!(
                open_until(w, "2026-12-05T23:59:59Z"),
                Some(ts("2026-12-06T00:00:00Z"))
            );
            assert_eq!(open_until(w, "2026-12-06T00:00:00Z"), None);
        }
        let w = "Sat 00:00-24:00";
        assert_eq!(open_until(w, "2026-12-04T23:59:59Z"), None);
        assert_eq!(
            open_until(w, "2026-12-05T00:00:00Z"),
            Some(ts("2026-12-06T00:00:00Z"))
        );
    }

    #[test]
    fn multi_day_sets() {
        let w = "Tue,Thu 01:00-03:00";
        assert_eq!(
            next_open(w, "2026-06-01T12:00:00Z"),
            ts("2026-06-02T01:00:00Z")
        );
        assert_eq!(
            next_open(w, "2026-06-02T01:00:00Z"),
            ts("2026-06-04T01:00:00Z")
        );
        assert_eq!(
            next_open(w, "2026-06-04T02:00:00Z"),
            ts("2026-06-09T01:00:00Z")
        );
        assert_eq!(
            open_until(w, "2026-06-04T02:00:00Z"),
            Some(ts("2026-06-04T03:00:00Z"))
        );
        assert_eq!(open_until(w, "2026-06-03T02:00:00Z"), None);
    }

    #[test]
    fn a_wrapping_day_range_covers_the_week_end() {
        let w = "Fri-Mon 10:00-11:00";
        // 2026-06-01 (Mon) .. 2026-06-07 (Sun): open on Mon, Fri, Sat, Sun only.
        for (day, open) in [
            ("01", true),
            ("02", false),
            ("03", false),
            ("04", false),
            ("05", true),
            ("06", true),
            ("07", true),
        ] {
            let now = format!("2026-06-{day}T10:30:00Z");
            let expected = open.then(|| ts(&format!("2026-06-{day}T11:00:00Z")));
            assert_eq!(open_until(w, &now), expected, "{now}");
        }
        assert_eq!(
            next_open(w, "2026-06-01T10:30:00Z"),
            ts("2026-06-05T10:00:00Z")
        );
    }

    #[test]
    fn adjoining_windows_close_together() {
        assert_eq!(
            open_until("Sat,Sun 00:00-24:00", "2026-12-05T10:00:00Z"),
            Some(ts("2026-12-07T00:00:00Z"))
        );
        assert_eq!(
            open_until("Fri-Sun 00:00-24:00", "2026-12-04T00:00:00Z"),
            Some(ts("2026-12-07T00:00:00Z"))
        );
        // Every day: open past the whole week looked at.
        let closes = open_until("* 00:00-24:00", "2026-06-01T12:00:00Z").expect("open");
        assert!(closes >= ts("2026-06-09T00:00:00Z"), "{closes}");
        // Windows with a gap between them do not join.
        assert_eq!(
            open_until("* 00:00-23:59", "2026-06-01T12:00:00Z"),
            Some(ts("2026-06-01T23:59:00Z"))
        );
    }

    // ---- Windows in time zones ----
    // Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    // America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.

    #[test]
    fn windows_follow_the_zone_wall_clock() {
        let w = "Mon-Fri 22:00-02:00 Europe/Berlin";
        // Summer: CEST, UTC+2.
        assert_eq!(
            next_open(w, "2026-06-01T12:00:00Z"),
            ts("2026-06-01T20:00:00Z")
        );
        assert_eq!(
            open_until(w, "2026-06-01T20:00:00Z"),
            Some(ts("2026-06-02T00:00:00Z"))
        );
        // Winter: CET, UTC+1.
        assert_eq!(
            next_open(w, "2026-12-07T12:00:00Z"),
            ts("2026-12-07T21:00:00Z")
        );
        // Local weekday counts: Saturday 00:30 in Berlin is still Friday 22:30 UTC.
        assert_eq!(
            open_until(w, "2026-12-04T23:30:00Z"),
            Some(ts("2026-12-05T01:00:00Z"))
        );
        let w = "Mon 01:00-02:00 America/New_York";
        // Monday 01:00 in New York is Monday 05:00 UTC in winter.
        assert_eq!(
            next_open(w, "2026-12-07T00:00:00Z"),
            ts("2026-12-07T06:00:00Z")
        );
    }

    #[test]
    fn a_start_in_the_spring_forward_gap_is_when_the_gap_ends() {
        let w = "Sun 02:30-04:00 Europe/Berlin";
        // 02:30 does not exist on 2026-03-29: the window starts at 03:00 CEST (01:00 UTC).
        assert_eq!(
            next_open(w, "2026-03-28T12:00:00Z"),
            ts("2026-03-29T01:00:00Z")
        );
        assert_eq!(open_until(w, "2026-03-29T00:59:59Z"), None);
        assert_eq!(
            open_until(w, "2026-03-29T01:00:00Z"),
            Some(ts("2026-03-29T02:00:00Z"))
        );
        // The Sundays before and after, at 02:30 CET and CEST.
        assert_eq!(
            next_open(w, "2026-03-21T12:00:00Z"),
            ts("2026-03-22T01:30:00Z")
        );
        assert_eq!(
            next_open(w, "2026-03-29T12:00:00Z"),
            ts("2026-04-05T00:30:00Z")
        );

        let w = "Sun 02:30-04:00 America/New_York";
        assert_eq!(
            next_open(w, "2026-03-07T12:00:00Z"),
            ts("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            open_until(w, "2026-03-08T07:00:00Z"),
            Some(ts("2026-03-08T08:00:00Z"))
        );
        assert_eq!(
            next_open(w, "2026-02-28T12:00:00Z"),
            ts("2026-03-01T07:30:00Z")
        );
    }

    #[test]
    fn an_end_in_the_spring_forward_gap_is_when_the_gap_ends() {
        let w = "Sat 22:00-02:30 Europe/Berlin";
        assert_eq!(
            open_until(w, "2026-03-28T21:00:00Z"),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert_eq!(open_until(w, "2026-03-29T01:00:00Z"), None);
    }

    #[test]
    fn a_window_inside_the_gap_does_not_happen_that_day() {
        let w = "Sun 02:00-02:45 Europe/Berlin";
        assert_eq!(
            next_open(w, "2026-03-28T12:00:00Z"),
            ts("2026-04-05T00:00:00Z")
        );
        for now in [
            "2026-03-29T00:59:59Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:30:00Z",
        ] {
            assert_eq!(open_until(w, now), None, "{now}");
        }
    }

    #[test]
    fn a_time_in_the_fall_back_fold_is_its_first_occurrence() {
        // 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET) on 2026-10-25: the end is the first.
        let w = "Sat 23:00-02:30 Europe/Berlin";
        assert_eq!(
            open_until(w, "2026-10-24T21:00:00Z"),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            open_until(w, "2026-10-25T00:29:59Z"),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        assert_eq!(open_until(w, "2026-10-25T00:30:00Z"), None);
        // 02:15 CET, the second 02:15: the window is already over.
        assert_eq!(open_until(w, "2026-10-25T01:15:00Z"), None);

        // A start in the fold is the first occurrence too: 01:30 EDT, not 01:30 EST.
        let w = "Sun 01:30-03:00 America/New_York";
        assert_eq!(
            next_open(w, "2026-10-31T12:00:00Z"),
            ts("2026-11-01T05:30:00Z")
        );
        assert_eq!(
            open_until(w, "2026-11-01T05:30:00Z"),
            Some(ts("2026-11-01T08:00:00Z"))
        );
    }

    #[test]
    fn a_window_is_an_hour_shorter_or_longer_across_a_change() {
        let length = |w: &str, now: &str| {
            let start = next_open(w, now);
            let end = window(w).open_until(start).expect("open at its start");
            start.duration_until(end).as_hours()
        };
        let w = "Sat 22:00-04:00 Europe/Berlin";
        assert_eq!(length(w, "2026-03-21T12:00:00Z"), 6);
        assert_eq!(length(w, "2026-03-28T12:00:00Z"), 5);
        assert_eq!(length(w, "2026-10-24T12:00:00Z"), 7);
        let w = "Sun 01:30-03:30 America/New_York";
        assert_eq!(length(w, "2026-03-07T12:00:00Z"), 1);
        assert_eq!(length(w, "2026-03-14T12:00:00Z"), 2);
        assert_eq!(length(w, "2026-10-31T12:00:00Z"), 3);
    }

    #[test]
    fn the_same_local_time_moves_in_utc_across_a_change() {
        let w = "Sat 22:00-02:00 Europe/Berlin";
        assert_eq!(
            next_open(w, "2026-03-20T12:00:00Z"),
            ts("2026-03-21T21:00:00Z")
        );
        // The last CET Saturday; its end (Sunday 02:00) falls in the gap, so 03:00 CEST.
        assert_eq!(
            next_open(w, "2026-03-22T12:00:00Z"),
            ts("2026-03-28T21:00:00Z")
        );
        assert_eq!(
            open_until(w, "2026-03-28T21:00:00Z"),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        // The first CEST Saturday.
        assert_eq!(
            next_open(w, "2026-03-29T12:00:00Z"),
            ts("2026-04-04T20:00:00Z")
        );
        assert_eq!(
            open_until(w, "2026-04-04T20:00:00Z"),
            Some(ts("2026-04-05T00:00:00Z"))
        );
        // An instant inside the window one week is outside it the next.
        assert_eq!(
            open_until(w, "2026-04-04T20:30:00Z"),
            Some(ts("2026-04-05T00:00:00Z"))
        );
        assert_eq!(open_until(w, "2026-03-28T20:30:00Z"), None);
    }

    // ---- decide ----

    fn saturday_nights(margin: Duration) -> Policy {
        Policy {
            rollout: Rollout::Auto,
            window: Some(window("Sat 22:00-02:00")),
            margin,
        }
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn manual_rollout_never_restarts() {
        let policy = Policy {
            rollout: Rollout::Manual,
            ..saturday_nights(DAY)
        };
        let now = ts("2026-12-01T12:00:00Z");
        assert_eq!(decide(&policy, now, now), Decision::Manual);
        let no_window = Policy {
            rollout: Rollout::Manual,
            ..Policy::default()
        };
        assert_eq!(decide(&no_window, now, now), Decision::Manual);
    }

    #[test]
    fn no_window_restarts_now() {
        let now = ts("2026-12-01T12:00:00Z");
        assert_eq!(
            decide(&Policy::default(), now, ts("2027-03-01T00:00:00Z")),
            Decision::Now(Why::NoWindow)
        );
    }

    #[test]
    fn an_open_window_restarts_now() {
        assert_eq!(
            decide(
                &saturday_nights(DAY),
                ts("2026-12-05T23:00:00Z"),
                ts("2027-03-01T00:00:00Z")
            ),
            Decision::Now(Why::WindowOpen {
                closes: ts("2026-12-06T02:00:00Z")
            })
        );
    }

    #[test]
    fn a_closed_window_waits_when_expiry_is_far() {
        assert_eq!(
            decide(
                &saturday_nights(DAY),
                ts("2026-11-30T12:00:00Z"),
                ts("2027-03-01T00:00:00Z")
            ),
            Decision::Wait {
                opens: ts("2026-12-05T22:00:00Z")
            }
        );
    }

    #[test]
    fn the_margin_forces_a_restart_before_the_window() {
        let now = ts("2026-11-30T12:00:00Z");
        let opens = ts("2026-12-05T22:00:00Z");
        for expires in [
            "2026-12-03T10:00:00Z",
            "2026-12-06T21:59:59Z",
            // Already expired.
            "2026-11-29T00:00:00Z",
        ] {
            assert_eq!(
                decide(&saturday_nights(DAY), now, ts(expires)),
                Decision::Now(Why::Margin {
                    expires: ts(expires),
                    opens,
                    margin: DAY
                }),
                "{expires}"
            );
        }
    }

    #[test]
    fn an_expiry_exactly_at_the_next_window_plus_the_margin_waits() {
        let now = ts("2026-11-30T12:00:00Z");
        let opens = ts("2026-12-05T22:00:00Z");
        assert_eq!(
            decide(&saturday_nights(DAY), now, ts("2026-12-06T22:00:00Z")),
            Decision::Wait { opens }
        );
        assert!(matches!(
            decide(
                &saturday_nights(DAY),
                now,
                ts("2026-12-06T21:59:59.999999999Z")
            ),
            Decision::Now(Why::Margin { .. })
        ));
    }

    #[test]
    fn a_zero_margin_forces_only_an_expiry_before_the_window() {
        let policy = saturday_nights(Duration::ZERO);
        let now = ts("2026-11-30T12:00:00Z");
        let opens = ts("2026-12-05T22:00:00Z");
        assert_eq!(decide(&policy, now, opens), Decision::Wait { opens });
        assert_eq!(
            decide(&policy, now, ts("2026-12-05T21:59:59Z")),
            Decision::Now(Why::Margin {
                expires: ts("2026-12-05T21:59:59Z"),
                opens,
                margin: Duration::ZERO
            })
        );
    }

    #[test]
    fn the_margin_is_measured_from_the_next_window_in_its_zone() {
        let policy = Policy {
            window: Some(window("Sat 22:00-02:00 America/New_York")),
            ..saturday_nights(Duration::from_secs(3600))
        };
        // Saturday 22:00 EST is Sunday 03:00 UTC.
        let opens = ts("2026-12-06T03:00:00Z");
        let now = ts("2026-12-05T12:00:00Z");
        assert_eq!(
            decide(&policy, now, ts("2026-12-06T04:00:00Z")),
            Decision::Wait { opens }
        );
        assert!(matches!(
            decide(&policy, now, ts("2026-12-06T03:59:00Z")),
            Decision::Now(Why::Margin { .. })
        ));
    }

    #[test]
    fn why_reads_as_one_sentence() {
        assert_eq!(
            Why::NoWindow.to_string(),
            "no maintenance window is set, so any time is fine"
        );
        assert_eq!(
            Why::WindowOpen {
                closes: ts("2026-12-06T02:00:00Z")
            }
            .to_string(),
            "the maintenance window is open until 2026-12-06T02:00:00Z"
        );
        assert_eq!(
            Why::Margin {
                expires: ts("2026-12-03T10:00:00Z"),
                opens: ts("2026-12-05T21:00:00Z"),
                margin: DAY
            }
            .to_string(),
            "the served certificate expires at 2026-12-03T10:00:00Z, before the next maintenance \
             window (2026-12-05T21:00:00Z) plus the safety margin 24h"
        );
    }

    // ---- Policy ----

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn custom_defaults() -> Policy {
        Policy {
            rollout: Rollout::Manual,
            window: Some(window("Mon-Fri 22:00-02:00 Europe/Berlin")),
            margin: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_default_policy_is_auto_always_open_24h() {
        assert_eq!(
            Policy::default(),
            Policy {
                rollout: Rollout::Auto,
                window: None,
                margin: DAY
            }
        );
    }

    #[test]
    fn defaults_apply_without_annotations() {
        let defaults = custom_defaults();
        assert_eq!(
            Policy::of(&BTreeMap::new(), &defaults),
            Ok(defaults.clone())
        );
        let unrelated = annotations(&[("mssql-operator.dev/other", "x"), ("team", "db")]);
        assert_eq!(Policy::of(&unrelated, &defaults), Ok(defaults));
        assert_eq!(
            Policy::of(&BTreeMap::new(), &Policy::default()),
            Ok(Policy::default())
        );
    }

    #[test]
    fn each_annotation_overrides_its_field() {
        let defaults = custom_defaults();
        assert_eq!(
            Policy::of(&annotations(&[(RENEWAL_ROLLOUT, "Auto")]), &defaults),
            Ok(Policy {
                rollout: Rollout::Auto,
                ..custom_defaults()
            })
        );
        assert_eq!(
            Policy::of(
                &annotations(&[(MAINTENANCE_WINDOW, "Sun 03:00-05:00")]),
                &defaults
            ),
            Ok(Policy {
                window: Some(window("Sun 03:00-05:00 UTC")),
                ..custom_defaults()
            })
        );
        assert_eq!(
            Policy::of(&annotations(&[(RENEWAL_SAFETY_MARGIN, "90m")]), &defaults),
            Ok(Policy {
                margin: Duration::from_secs(90 * 60),
                ..custom_defaults()
            })
        );
        assert_eq!(
            Policy::of(&annotations(&[(RENEWAL_SAFETY_MARGIN, "0")]), &defaults),
            Ok(Policy {
                margin: Duration::ZERO,
                ..custom_defaults()
            })
        );
        assert_eq!(
            Policy::of(
                &annotations(&[
                    (RENEWAL_ROLLOUT, "Manual"),
                    (MAINTENANCE_WINDOW, "Sat,Sun 22:00-02:00 America/New_York"),
                    (RENEWAL_SAFETY_MARGIN, "48h"),
                ]),
                &Policy::default()
            ),
            Ok(Policy {
                rollout: Rollout::Manual,
                window: Some(window("Sat,Sun 22:00-02:00 America/New_York")),
                margin: 2 * DAY,
            })
        );
    }

    #[test]
    fn every_bad_annotation_is_reported_on_its_field() {
        let bad = annotations(&[
            (RENEWAL_ROLLOUT, "auto"),
            (MAINTENANCE_WINDOW, "Mo 22:00-02:00"),
            (RENEWAL_SAFETY_MARGIN, "banana"),
        ]);
        let expected = vec![
            FieldError::new(
                "metadata.annotations[mssql-operator.dev/renewal-rollout]",
                "\"auto\": not a rollout; use Auto or Manual",
            ),
            FieldError::new(
                "metadata.annotations[mssql-operator.dev/maintenance-window]",
                "\"Mo\": not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like Mon-Fri, \
                 or *",
            ),
            FieldError::new(
                "metadata.annotations[mssql-operator.dev/renewal-safety-margin]",
                "\"banana\": not a duration; use a Go duration such as 24h or 90m",
            ),
        ];
        assert_eq!(Policy::of(&bad, &custom_defaults()), Err(expected.clone()));
        assert_eq!(check_annotations(&bad), expected);
        for margin in ["-1h", "24", "1d", ""] {
            assert_eq!(
                check_annotations(&annotations(&[(RENEWAL_SAFETY_MARGIN, margin)])),
                [FieldError::new(
                    "metadata.annotations[mssql-operator.dev/renewal-safety-margin]",
                    format!("{margin:?}: not a duration; use a Go duration such as 24h or 90m"),
                )]
            );
        }
    }

    #[test]
    fn good_or_absent_annotations_have_no_errors() {
        assert_eq!(check_annotations(&BTreeMap::new()), []);
        assert_eq!(
            check_annotations(&annotations(&[
                (RENEWAL_ROLLOUT, "Manual"),
                (MAINTENANCE_WINDOW, "* 00:00-24:00"),
                (RENEWAL_SAFETY_MARGIN, "0"),
            ])),
            []
        );
    }
}
