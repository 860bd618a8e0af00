//! Absolute times as the store sees them: Unix nanoseconds, chosen by the
//! caller. The store never reads a clock, so applying the same commands with
//! the same times gives the same state on every member and in every test.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// An instant in UTC with nanosecond precision (nanoseconds since the Unix
/// epoch; covers the years 1677 to 2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// etcd treats expiration times before 2000-01-01T00:00:00Z given to a
    /// create or set as "no TTL" (they come from zero-valued clients).
    pub(crate) const MIN_EXPIRE: Timestamp = Timestamp(946_684_800 * NANOS_PER_SEC);

    pub const fn from_unix_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos)
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds plus nanoseconds since the epoch, saturating.
    pub fn from_unix(secs: i64, nanos: u32) -> Timestamp {
        Timestamp(
            secs.saturating_mul(NANOS_PER_SEC)
                .saturating_add(i64::from(nanos)),
        )
    }

    /// Converts a chrono time, saturating outside the representable range.
    pub fn from_datetime(t: DateTime<Utc>) -> Timestamp {
        match t.timestamp_nanos_opt() {
            Some(n) => Timestamp(n),
            None if t.timestamp() < 0 => Timestamp(i64::MIN),
            None => Timestamp(i64::MAX),
        }
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }

    /// `self + ttl_secs`: how a proposer turns `ttl=<seconds>` into the
    /// absolute expiration carried by a command (saturating).
    pub fn plus_secs(self, ttl_secs: u64) -> Timestamp {
        let add = i64::try_from(ttl_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(NANOS_PER_SEC);
        Timestamp(self.0.saturating_add(add))
    }

    /// Seconds from `now` until `self`, rounded up (etcd's `ttl` field; zero
    /// or negative once expired but not yet swept).
    pub fn ttl_at(self, now: Timestamp) -> i64 {
        let diff = i128::from(self.0) - i128::from(now.0);
        let secs = diff.div_euclid(i128::from(NANOS_PER_SEC))
            + i128::from(diff.rem_euclid(i128::from(NANOS_PER_SEC)) != 0);
        // |diff| < 2^64 ns, so the seconds always fit.
        i64::try_from(secs).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX })
    }

    /// Go's `time.RFC3339Nano` in UTC, as etcd writes `expiration`:
    /// fractional seconds with trailing zeros removed (and no dot when zero).
    pub fn to_rfc3339_nano(self) -> String {
        let t = self.to_datetime();
        let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Timestamp {
        Timestamp::from_datetime(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        let t = Timestamp::from_unix(1_795_294_395, 29_553_333);
        assert_eq!(t.to_rfc3339_nano(), "2026-11-21T20:53:15.029553333Z");
        let t = Timestamp::from_unix(1_795_294_468, 362_156_740);
        assert_eq!(t.to_rfc3339_nano(), "2026-11-21T20:54:28.36215674Z");
        let t = Timestamp::from_unix(1_795_294_468, 0);
        assert_eq!(t.to_rfc3339_nano(), "2026-11-21T20:54:28Z");
        let t = Timestamp::from_unix(0, 500_000_000);
        assert_eq!(t.to_rfc3339_nano(), "1970-01-01T00:00:00.5Z");
    }

    #[test]
    fn ttl_rounds_up() {
        let now = Timestamp::from_unix(100, 0);
        assert_eq!(now.plus_secs(60).ttl_at(now), 60);
        assert_eq!(Timestamp::from_unix(101, 1).ttl_at(now), 2);
        assert_eq!(Timestamp::from_unix(100, 0).ttl_at(now), 0);
        assert_eq!(Timestamp::from_unix(99, 500_000_000).ttl_at(now), 0);
        assert_eq!(Timestamp::from_unix(98, 500_000_000).ttl_at(now), -1);
        assert_eq!(
            now.plus_secs(u64::MAX),
            Timestamp::from_unix_nanos(i64::MAX)
        );
        assert!(
            Timestamp::from_unix_nanos(i64::MAX).ttl_at(Timestamp::from_unix_nanos(i64::MIN)) > 0
        );
    }
}
