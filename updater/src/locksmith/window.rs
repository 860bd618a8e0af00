//! Reboot windows: locksmith's `REBOOT_WINDOW_START` (`04:00`, `Thu 23:00`)
//! plus `REBOOT_WINDOW_LENGTH` (a Go duration such as `1h30m`).
//!
//! A window repeats every day, or every week when START names a day, and may
//! run past midnight (or past Saturday into Sunday). Everything here is a pure
//! function of the local wall-clock time it is given; the daemon's driver
//! reads the clock (reference updater.md §10.6, locksmith `pkg/timeutil`).

use std::time::Duration;

use chrono::{Datelike, NaiveDateTime, NaiveTime, TimeDelta, Weekday};

/// Why a window setting was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("Either both or neither $REBOOT_WINDOW_START and $REBOOT_WINDOW_LENGTH must be set")]
    Incomplete,
    #[error(
        "reboot window start {0:?}: wrong number of fields (expected \"HH:MM\" or \"Day HH:MM\")"
    )]
    Fields(String),
    #[error("reboot window start {0:?}: invalid day of week (expected sun, mon, tue, wed, thu, fri or sat)")]
    Day(String),
    #[error("reboot window start {0:?}: invalid time of day (expected HH:MM, 0-23:0-59)")]
    Time(String),
    #[error("reboot window length {0:?}: invalid duration (expected a Go duration such as 1h30m)")]
    Duration(String),
    #[error("reboot window length {0:?}: duration cannot be negative")]
    Negative(String),
    #[error("reboot window length {length:?} must be shorter than the window's period ({period})")]
    TooLong {
        length: String,
        period: &'static str,
    },
}

/// A repeating reboot window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `None`: every day.
    pub day: Option<Weekday>,
    pub start: NaiveTime,
    pub length: Duration,
}

impl Window {
    /// Reads the two settings; both absent means no window.
    pub fn from_settings(
        start: Option<&str>,
        length: Option<&str>,
    ) -> Result<Option<Window>, WindowError> {
        match (start, length) {
            (None, None) => Ok(None),
            (Some(s), Some(l)) => Window::parse(s, l).map(Some),
            _ => Err(WindowError::Incomplete),
        }
    }

    /// Parses `START` and `LENGTH`.
    pub fn parse(start: &str, length: &str) -> Result<Window, WindowError> {
        let fields: Vec<&str> = start.split_whitespace().collect();
        let (day, time) = match fields.as_slice() {
            [t] => (None, *t),
            [d, t] => (
                Some(parse_day(d).ok_or_else(|| WindowError::Day(start.to_string()))?),
                *t,
            ),
            _ => return Err(WindowError::Fields(start.to_string())),
        };
        let start_time = parse_time(time).ok_or_else(|| WindowError::Time(start.to_string()))?;
        let nanos =
            parse_go_duration(length).ok_or_else(|| WindowError::Duration(length.to_string()))?;
        if nanos < 0 {
            return Err(WindowError::Negative(length.to_string()));
        }
        let length_d = Duration::from_nanos(nanos as u64);
        let w = Window {
            day,
            start: start_time,
            length: length_d,
        };
        if length_d >= w.period() {
            return Err(WindowError::TooLong {
                length: length.to_string(),
                period: if day.is_some() { "1 week" } else { "1 day" },
            });
        }
        Ok(w)
    }

    fn period(&self) -> Duration {
        let days = if self.day.is_some() { 7 } else { 1 };
        Duration::from_secs(days * 86_400)
    }

    /// The latest start at or before `now`.
    pub fn previous_start(&self, now: NaiveDateTime) -> NaiveDateTime {
        let mut s = now.date().and_time(self.start);
        if let Some(day) = self.day {
            let back = (now.weekday().num_days_from_sunday() + 7 - day.num_days_from_sunday()) % 7;
            s -= TimeDelta::days(back.into());
        }
        if s > now {
            s -= delta(self.period());
        }
        s
    }

    /// Whether `now` is inside the window.
    pub fn contains(&self, now: NaiveDateTime) -> bool {
        now < self.previous_start(now) + delta(self.length)
    }

    /// `now` when inside the window, else the next start.
    pub fn next_opening(&self, now: NaiveDateTime) -> NaiveDateTime {
        if self.contains(now) {
            now
        } else {
            self.previous_start(now) + delta(self.period())
        }
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn parse_day(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "sun" => Weekday::Sun,
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        _ => return None,
    })
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

/// Go's `time.ParseDuration`, in nanoseconds: an optional sign, then one or
/// more decimal numbers each followed by a unit (`ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`); a lone `0` is allowed.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let n = total.round() as i64;
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use proptest::prelude::*;

    // 2026-11-19 is a Thursday.
    fn at(day: u32, h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, day)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn parses_locksmith_forms() {
        let w = Window::parse("14:00", "1h").unwrap();
        assert_eq!(w.day, None);
        assert_eq!(w.length, Duration::from_secs(3600));
        let w = Window::parse("thu 4:5", "1h30m").unwrap();
        assert_eq!(w.day, Some(Weekday::Thu));
        assert_eq!(w.start, NaiveTime::from_hms_opt(4, 5, 0).unwrap());
        assert_eq!(w.length, Duration::from_secs(5400));
        assert!(Window::parse("  Sat   23:59 ", "90m").is_ok());
    }

    #[test]
    fn rejects_bad_settings_with_locksmith_reasons() {
        let e = |s: &str, l: &str| Window::parse(s, l).unwrap_err().to_string();
        assert!(e("Thu 04:00 x", "1h").contains("wrong number of fields"));
        assert!(e("", "1h").contains("wrong number of fields"));
        assert!(e("Thursday 04:00", "1h").contains("invalid day of week"));
        assert!(e("24:00", "1h").contains("invalid time of day"));
        assert!(e("4:60", "1h").contains("invalid time of day"));
        assert!(e("4", "1h").contains("invalid time of day"));
        assert!(e("04:00", "1x").contains("invalid duration"));
        assert!(e("04:00", "").contains("invalid duration"));
        assert!(e("04:00", "-1h").contains("negative"));
        assert!(e("04:00", "24h").contains("shorter"));
        assert!(e("Thu 04:00", "168h").contains("shorter"));
        assert!(Window::parse("Thu 04:00", "167h").is_ok());
        assert_eq!(
            Window::from_settings(Some("04:00"), None).unwrap_err(),
            WindowError::Incomplete
        );
        assert_eq!(Window::from_settings(None, None).unwrap(), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("90m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_go_duration("-2s"), Some(-2_000_000_000));
        for bad in ["", "1", "h", "1h1", "1.2.3s", "1d", "-", "1 h"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn daily_window_wrapping_midnight() {
        let w = Window::parse("23:00", "2h").unwrap();
        assert!(w.contains(at(19, 23, 0)));
        assert!(w.contains(at(20, 0, 59)));
        assert!(!w.contains(at(20, 1, 0)));
        assert!(!w.contains(at(19, 22, 59)));
        assert_eq!(w.next_opening(at(20, 12, 0)), at(20, 23, 0));
        assert_eq!(w.next_opening(at(20, 0, 30)), at(20, 0, 30));
    }

    #[test]
    fn weekly_window_wrapping_week() {
        // "Thu 23:00" + 1h30m: Thursday 23:00 to Friday 00:30.
        let w = Window::parse("Thu 23:00", "1h30m").unwrap();
        assert!(w.contains(at(19, 23, 30)));
        assert!(w.contains(at(20, 0, 29)));
        assert!(!w.contains(at(20, 0, 30)));
        assert!(!w.contains(at(19, 22, 0)));
        assert_eq!(w.next_opening(at(19, 22, 0)), at(19, 23, 0));
        assert_eq!(w.next_opening(at(20, 1, 0)), at(26, 23, 0));
        // Saturday into Sunday.
        let w = Window::parse("Sat 22:00", "4h").unwrap();
        assert!(w.contains(at(22, 1, 0))); // Sunday 01:00
        assert!(!w.contains(at(22, 2, 0)));
        assert_eq!(w.next_opening(at(22, 2, 0)), at(28, 22, 0));
    }

    proptest! {
        #[test]
        fn next_opening_is_inside_and_no_earlier_opening(
            day in proptest::option::of(0u32..7), h in 0u32..24, m in 0u32..60,
            len_min in 1u64..(24 * 60), now_min in 0i64..(14 * 24 * 60),
        ) {
            let day = day.map(|d| Weekday::try_from(d as u8).unwrap());
            let w = Window { day, start: NaiveTime::from_hms_opt(h, m, 0).unwrap(), length: Duration::from_secs(len_min * 60) };
            let now = at(15, 0, 0) + TimeDelta::minutes(now_min);
            let open = w.next_opening(now);
            prop_assert!(open >= now);
            prop_assert!(w.contains(open));
            // Every minute between now and the opening is outside the window.
            let mut t = now;
            while t < open {
                prop_assert!(!w.contains(t));
                t += TimeDelta::minutes(1);
            }
        }
    }
}
