//! Nebraska's rollout policy, as pure decisions with explicit time.
//!
//! A server that hands a new release to every machine that asks can brick a
//! fleet in an hour. Nebraska (Flatcar's update server) guards each group with
//! a small policy: updates can be switched off, limited to office hours in the
//! group's time zone, capped per period (which also caps updates in flight),
//! and given a timeout; in safe mode the first machine to get a new version is
//! a lone canary, and a failure or a timeout before any machine succeeded
//! switches the group's updates off. [`GroupRollout`] keeps the per-group
//! counters and answers "may this machine update now?" for a given time, so
//! every rule is tested without a clock (flatcar/nebraska
//! `backend/pkg/api/updates.go: enforceRolloutPolicy`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Timelike};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::version::Version;

/// A malformed policy value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("bad interval {0:?}: expected \"<n> <seconds|minutes|hours|days>\" such as \"1 hours\", or a number of seconds")]
    BadInterval(String),
    #[error("bad time zone {0:?}: expected \"UTC\" or an offset such as \"+02:00\" (named zones are not supported)")]
    BadTimezone(String),
    #[error("max_updates_per_period must be at least 1 (switch updates off with updates_enabled=false instead)")]
    ZeroMaxUpdates,
    #[error("{0} must be longer than zero")]
    ZeroInterval(&'static str),
}

/// A duration written as Nebraska stores it (`"1 hours"`, `"60 minutes"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval(pub u64);

impl Interval {
    /// Seconds.
    pub fn secs(self) -> u64 {
        self.0
    }
}

impl FromStr for Interval {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::BadInterval(s.to_string());
        let t = s.trim();
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Interval(n));
        }
        let (n, unit) = match t.split_once(char::is_whitespace) {
            Some((n, u)) => (n, u.trim()),
            None => {
                let i = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
                (&t[..i], &t[i..])
            }
        };
        let n: u64 = n.parse().map_err(|_| bad())?;
        let mult = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86400,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(Interval).ok_or_else(bad)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        match s {
            0 => write!(f, "0 seconds"),
            s if s % 86400 == 0 => write!(f, "{} days", s / 86400),
            s if s % 3600 == 0 => write!(f, "{} hours", s / 3600),
            s if s % 60 == 0 => write!(f, "{} minutes", s / 60),
            s => write!(f, "{s} seconds"),
        }
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Interval(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A group's time zone as a fixed UTC offset (seconds east of UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timezone(pub i32);

impl FromStr for Timezone {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::BadTimezone(s.to_string());
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" || t.eq_ignore_ascii_case("gmt") {
            return Ok(Timezone(0));
        }
        let t = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("utc"))
            .unwrap_or(t);
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 => (&rest[..2], &rest[2..]),
            None => (rest, "0"),
        };
        let h: i32 = h.parse().map_err(|_| bad())?;
        let m: i32 = m.parse().map_err(|_| bad())?;
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        Ok(Timezone(sign * (h * 3600 + m * 60)))
    }
}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.0 < 0 { '-' } else { '+' };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    }
}

impl Serialize for Timezone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timezone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A group's rollout settings (Nebraska's `policy_*` columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Off: every check is refused.
    pub updates_enabled: bool,
    /// Grant only Monday–Friday 09:00–17:00 in `timezone`.
    pub office_hours: bool,
    pub timezone: Timezone,
    /// At most this many grants per `period_interval`, and in flight at once.
    pub max_updates_per_period: u32,
    pub period_interval: Interval,
    /// An update not finished within this long after its grant has timed out.
    pub update_timeout: Interval,
    /// One canary per new version (no second grant until an attempt has
    /// finished); a failure or timeout before a success switches updates off.
    pub safe_mode: bool,
}

impl Default for Policy {
    /// Nebraska's seed values, with safe mode on (Keelson's default for new groups).
    fn default() -> Self {
        Self {
            updates_enabled: true,
            office_hours: false,
            timezone: Timezone(0),
            max_updates_per_period: 999_999,
            period_interval: Interval(60),
            update_timeout: Interval(3600),
            safe_mode: true,
        }
    }
}

impl Policy {
    /// Checks the values that would make the policy meaningless.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_updates_per_period == 0 {
            return Err(PolicyError::ZeroMaxUpdates);
        }
        if self.period_interval.0 == 0 {
            return Err(PolicyError::ZeroInterval("period_interval"));
        }
        if self.update_timeout.0 == 0 {
            return Err(PolicyError::ZeroInterval("update_timeout"));
        }
        Ok(())
    }

    /// Whether `now` (Unix seconds) falls in office hours in the group's zone.
    pub fn in_office_hours(&self, now: u64) -> bool {
        let local = i64::try_from(now).unwrap_or(i64::MAX) + i64::from(self.timezone.0);
        let Some(t) = chrono::DateTime::from_timestamp(local, 0) else {
            return false;
        };
        let weekday = t.weekday().num_days_from_monday(); // 0 = Monday
        weekday < 5 && (9..17).contains(&t.hour())
    }
}

/// Why an update was not granted (Nebraska's error names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    UpdatesDisabled,
    OutsideOfficeHours,
    MaxUpdatesPerPeriodLimitReached,
    MaxConcurrentUpdatesLimitReached,
    MaxTimedOutUpdatesLimitReached,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::UpdatesDisabled => "updates are disabled for the group",
            Refusal::OutsideOfficeHours => "outside office hours",
            Refusal::MaxUpdatesPerPeriodLimitReached => "max updates per period reached",
            Refusal::MaxConcurrentUpdatesLimitReached => "max concurrent updates reached",
            Refusal::MaxTimedOutUpdatesLimitReached => "max timed-out updates reached",
        })
    }
}

/// The answer to "may this machine update now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Grant,
    /// Not now: the instance is put on hold.
    Refuse(Refusal),
}

/// Where one machine's attempt at the current version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptState {
    /// Granted, downloading or installed but not yet rebooted into.
    InProgress,
    /// Installed (3/1): no longer times out, still counts as in flight until
    /// the machine reboots into it.
    Installed,
    /// Rebooted into the new version (3/2).
    Succeeded,
    /// Reported an error (3/0), including a rollback.
    Failed,
    /// Not finished within the update timeout.
    TimedOut,
}

/// One machine's attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub granted_at: u64,
    pub state: AttemptState,
}

/// What an instance reported about its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Installed,
    Succeeded,
    Failed,
}

/// A group's rollout of its current version: counters plus the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRollout {
    pub policy: Policy,
    /// The version being rolled out; attempts are reset when it changes.
    pub version: Option<Version>,
    /// Attempts at `version`, by instance id.
    pub attempts: BTreeMap<String, Attempt>,
    /// Grant times within the last period (pruned as time passes).
    pub recent_grants: VecDeque<u64>,
    /// Why safe mode switched updates off, if it did.
    pub paused_reason: Option<String>,
}

impl GroupRollout {
    /// A group with this policy.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            ..Default::default()
        }
    }

    /// Points the group at `version`; a different version starts a fresh
    /// rollout (new canary, no timed-out history).
    pub fn promote(&mut self, version: Version) {
        if self.version.as_ref() != Some(&version) {
            self.version = Some(version);
            self.attempts.clear();
            self.recent_grants.clear();
        }
    }

    /// Replaces the policy; re-enabling updates clears a safe-mode pause.
    pub fn set_policy(&mut self, policy: Policy) -> Result<(), PolicyError> {
        policy.validate()?;
        if policy.updates_enabled {
            self.paused_reason = None;
        }
        self.policy = policy;
        Ok(())
    }

    /// Switches updates off (an operator's one-command pause, or safe mode).
    pub fn pause(&mut self, reason: impl Into<String>) {
        self.policy.updates_enabled = false;
        self.paused_reason = Some(reason.into());
    }

    fn count(&self, st: &[AttemptState]) -> u32 {
        let n = self
            .attempts
            .values()
            .filter(|a| st.contains(&a.state))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Attempts currently in flight.
    pub fn in_progress(&self) -> u32 {
        self.count(&[AttemptState::InProgress, AttemptState::Installed])
    }

    /// Attempts that timed out.
    pub fn timed_out(&self) -> u32 {
        self.count(&[AttemptState::TimedOut])
    }

    fn any_succeeded(&self) -> bool {
        self.count(&[AttemptState::Succeeded]) > 0
    }

    /// Marks attempts past the update timeout; in safe mode a timeout before
    /// any success pauses the group.
    pub fn sweep(&mut self, now: u64) {
        let timeout = self.policy.update_timeout.0;
        let mut newly = Vec::new();
        for (id, a) in self.attempts.iter_mut() {
            if a.state == AttemptState::InProgress && now >= a.granted_at.saturating_add(timeout) {
                a.state = AttemptState::TimedOut;
                newly.push(id.clone());
            }
        }
        let period = self.policy.period_interval.0;
        while self
            .recent_grants
            .front()
            .is_some_and(|t| now >= t.saturating_add(period))
        {
            self.recent_grants.pop_front();
        }
        if let Some(id) = newly.first() {
            if self.policy.safe_mode && !self.any_succeeded() && self.policy.updates_enabled {
                let v = self.version_text();
                self.pause(format!(
                    "safe mode: the update of {id} to {v} timed out before any succeeded"
                ));
            }
        }
    }

    fn version_text(&self) -> String {
        self.version
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "?".into())
    }

    /// Decides whether `instance` may start updating at `now`, and records
    /// the grant if so. Follows Nebraska's order of checks.
    pub fn decide(&mut self, instance: &str, now: u64) -> Decision {
        self.sweep(now);
        if !self.policy.updates_enabled {
            return Decision::Refuse(Refusal::UpdatesDisabled);
        }
        // "Attempted" means finished: until one machine has come through the
        // new version (or failed, which pauses), the canary flies alone.
        let attempted = self.count(&[
            AttemptState::Succeeded,
            AttemptState::Failed,
            AttemptState::TimedOut,
        ]);
        let max = if self.policy.safe_mode && attempted == 0 {
            1
        } else {
            self.policy.max_updates_per_period
        };
        if self.policy.office_hours && !self.policy.in_office_hours(now) {
            return Decision::Refuse(Refusal::OutsideOfficeHours);
        }
        let granted_in_period = u32::try_from(self.recent_grants.len()).unwrap_or(u32::MAX);
        if granted_in_period >= max {
            return Decision::Refuse(Refusal::MaxUpdatesPerPeriodLimitReached);
        }
        if self.in_progress() >= max {
            return Decision::Refuse(Refusal::MaxConcurrentUpdatesLimitReached);
        }
        if self.policy.safe_mode && self.timed_out() >= max {
            let v = self.version_text();
            self.pause(format!(
                "safe mode: {} updates to {v} timed out",
                self.timed_out()
            ));
            return Decision::Refuse(Refusal::MaxTimedOutUpdatesLimitReached);
        }
        self.attempts.insert(
            instance.to_string(),
            Attempt {
                granted_at: now,
                state: AttemptState::InProgress,
            },
        );
        self.recent_grants.push_back(now);
        Decision::Grant
    }

    /// Records what an instance reported about its attempt. In safe mode a
    /// failure before any success pauses the group.
    pub fn report(&mut self, instance: &str, outcome: Outcome, now: u64) {
        let _ = now;
        let Some(a) = self.attempts.get_mut(instance) else {
            return;
        };
        a.state = match outcome {
            Outcome::Installed if a.state == AttemptState::InProgress => AttemptState::Installed,
            Outcome::Installed => a.state,
            Outcome::Succeeded => AttemptState::Succeeded,
            Outcome::Failed => AttemptState::Failed,
        };
        if outcome == Outcome::Failed
            && self.policy.safe_mode
            && self.policy.updates_enabled
            && !self.any_succeeded()
        {
            let v = self.version_text();
            self.pause(format!(
                "safe mode: the update of {instance} to {v} failed before any succeeded"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Monday 2024-01-01 00:00:00 UTC.
    const MONDAY: u64 = 1_704_067_200;
    const H: u64 = 3600;

    fn open(max: u32, period: u64, safe: bool) -> GroupRollout {
        let mut g = GroupRollout::new(Policy {
            max_updates_per_period: max,
            period_interval: Interval(period),
            safe_mode: safe,
            ..Policy::default()
        });
        g.promote("766.3.0".parse().unwrap());
        g
    }

    #[test]
    fn intervals_and_zones_parse() {
        for (s, n) in [
            ("1 hours", 3600),
            ("60 minutes", 3600),
            ("1 minute", 60),
            ("30s", 30),
            ("2 days", 172800),
            ("45", 45),
            (" 5 Minutes ", 300),
        ] {
            assert_eq!(s.parse::<Interval>().unwrap(), Interval(n), "{s}");
        }
        for bad in [
            "",
            "hours",
            "1 fortnight",
            "-1 hours",
            "1.5 hours",
            "99999999999999999999 days",
        ] {
            assert!(bad.parse::<Interval>().is_err(), "{bad}");
        }
        assert_eq!(Interval(3600).to_string(), "1 hours");
        assert_eq!(Interval(90).to_string(), "90 seconds");
        for (s, n) in [
            ("UTC", 0),
            ("+02:00", 7200),
            ("-05:30", -19800),
            ("+0100", 3600),
            ("UTC+3", 10800),
        ] {
            assert_eq!(s.parse::<Timezone>().unwrap(), Timezone(n), "{s}");
        }
        for bad in ["Europe/Berlin", "+25:00", "+01:75", "", "2"] {
            assert!(bad.parse::<Timezone>().is_err(), "{bad}");
        }
        assert_eq!(Timezone(-19800).to_string(), "-05:30");
    }

    #[test]
    fn policy_json_round_trip_and_errors() {
        let p = Policy::default();
        let j = serde_json::to_string(&p).unwrap();
        assert!(j.contains("\"period_interval\":\"1 minutes\""), "{j}");
        assert!(j.contains("\"update_timeout\":\"1 hours\""), "{j}");
        assert_eq!(serde_json::from_str::<Policy>(&j).unwrap(), p);
        let partial: Policy =
            serde_json::from_str(r#"{"max_updates_per_period":2,"period_interval":"1 hours"}"#)
                .unwrap();
        assert_eq!(partial.max_updates_per_period, 2);
        assert!(partial.safe_mode, "safe mode on by default");
        for bad in [
            r#"{"period_interval":"soon"}"#,
            r#"{"timezone":"Mars/Olympus"}"#,
            r#"{"no_such_field":1}"#,
            r#"{"max_updates_per_period":-1}"#,
        ] {
            assert!(serde_json::from_str::<Policy>(bad).is_err(), "{bad}");
        }
        let mut g = GroupRollout::default();
        let zero = Policy {
            max_updates_per_period: 0,
            ..Policy::default()
        };
        assert_eq!(g.set_policy(zero), Err(PolicyError::ZeroMaxUpdates));
    }

    #[test]
    fn disabled_group_refuses() {
        let mut g = open(10, 60, false);
        g.pause("operator");
        assert_eq!(
            g.decide("m1", MONDAY),
            Decision::Refuse(Refusal::UpdatesDisabled)
        );
        g.set_policy(Policy {
            safe_mode: false,
            ..Policy::default()
        })
        .unwrap();
        assert_eq!(g.paused_reason, None);
        assert_eq!(g.decide("m1", MONDAY), Decision::Grant);
    }

    #[test]
    fn office_hours_in_the_group_zone() {
        let mut p = Policy {
            office_hours: true,
            safe_mode: false,
            ..Policy::default()
        };
        assert!(!p.in_office_hours(MONDAY + 8 * H + 3599));
        assert!(p.in_office_hours(MONDAY + 9 * H));
        assert!(p.in_office_hours(MONDAY + 17 * H - 1));
        assert!(!p.in_office_hours(MONDAY + 17 * H));
        assert!(p.in_office_hours(MONDAY + 4 * 24 * H + 10 * H), "Friday");
        assert!(!p.in_office_hours(MONDAY + 5 * 24 * H + 10 * H), "Saturday");
        assert!(!p.in_office_hours(MONDAY + 6 * 24 * H + 10 * H), "Sunday");
        // 08:00 UTC is 10:00 in +02:00; Sunday 23:00 UTC is Monday 09:00 in +10:00.
        p.timezone = "+02:00".parse().unwrap();
        assert!(p.in_office_hours(MONDAY + 8 * H));
        p.timezone = "+10:00".parse().unwrap();
        assert!(p.in_office_hours(MONDAY - H));
        p.timezone = "-05:00".parse().unwrap();
        assert!(!p.in_office_hours(MONDAY + 10 * H), "05:00 in New York");

        let mut g = GroupRollout::new(Policy {
            office_hours: true,
            safe_mode: false,
            ..Policy::default()
        });
        assert_eq!(
            g.decide("m1", MONDAY + 2 * H),
            Decision::Refuse(Refusal::OutsideOfficeHours)
        );
        assert_eq!(g.decide("m1", MONDAY + 10 * H), Decision::Grant);
    }

    #[test]
    fn max_updates_per_period_and_concurrency() {
        // CoreUpdate's "2 updates per 60 s".
        let mut g = open(2, 60, false);
        let t = MONDAY;
        assert_eq!(g.decide("m1", t), Decision::Grant);
        assert_eq!(g.decide("m2", t + 1), Decision::Grant);
        assert_eq!(
            g.decide("m3", t + 2),
            Decision::Refuse(Refusal::MaxUpdatesPerPeriodLimitReached)
        );
        // The period passes, but both are still in flight.
        assert_eq!(
            g.decide("m3", t + 61),
            Decision::Refuse(Refusal::MaxConcurrentUpdatesLimitReached)
        );
        g.report("m1", Outcome::Installed, t + 70);
        assert_eq!(
            g.decide("m3", t + 71),
            Decision::Refuse(Refusal::MaxConcurrentUpdatesLimitReached),
            "installed but not rebooted still counts"
        );
        g.report("m1", Outcome::Succeeded, t + 80);
        assert_eq!(g.decide("m3", t + 81), Decision::Grant);
    }

    #[test]
    fn safe_mode_one_canary_then_the_limit() {
        let mut g = open(3, 3600, true);
        let t = MONDAY;
        assert_eq!(g.decide("canary", t), Decision::Grant);
        assert_eq!(
            g.decide("m2", t + 1),
            Decision::Refuse(Refusal::MaxUpdatesPerPeriodLimitReached),
            "the canary flies alone"
        );
        g.report("canary", Outcome::Installed, t + 50);
        assert!(matches!(g.decide("m2", t + 51), Decision::Refuse(_)));
        g.report("canary", Outcome::Succeeded, t + 100);
        assert_eq!(g.decide("m2", t + 101), Decision::Grant);
        assert_eq!(g.decide("m3", t + 102), Decision::Grant);
        assert_eq!(
            g.decide("m4", t + 3),
            Decision::Refuse(Refusal::MaxUpdatesPerPeriodLimitReached)
        );
        // A new version: a new canary.
        g.promote("808.0.0".parse().unwrap());
        assert_eq!(g.decide("m1", t + 4), Decision::Grant);
        assert_eq!(g.attempts.len(), 1);
    }

    #[test]
    fn safe_mode_pauses_on_failure_before_success() {
        let mut g = open(10, 60, true);
        let t = MONDAY;
        assert_eq!(g.decide("canary", t), Decision::Grant);
        g.report("canary", Outcome::Failed, t + 100);
        assert!(!g.policy.updates_enabled);
        assert!(g.paused_reason.as_deref().unwrap().contains("canary"));
        assert_eq!(
            g.decide("m2", t + 200),
            Decision::Refuse(Refusal::UpdatesDisabled)
        );

        // After a success, a later failure does not pause.
        let mut g = open(10, 60, true);
        g.decide("a", t);
        g.report("a", Outcome::Succeeded, t + 10);
        g.decide("b", t + 20);
        g.report("b", Outcome::Failed, t + 30);
        assert!(g.policy.updates_enabled);

        // Without safe mode nothing pauses.
        let mut g = open(10, 60, false);
        g.decide("a", t);
        g.report("a", Outcome::Failed, t + 10);
        assert!(g.policy.updates_enabled);
    }

    #[test]
    fn update_timeout_counts_and_pauses_in_safe_mode() {
        let mut g = open(10, 60, true);
        g.policy.update_timeout = Interval(600);
        let t = MONDAY;
        g.decide("slow", t);
        g.sweep(t + 599);
        assert_eq!(g.timed_out(), 0);
        g.sweep(t + 600);
        assert_eq!(g.timed_out(), 1);
        assert!(!g.policy.updates_enabled, "timed out before any success");
        assert_eq!(
            g.decide("m2", t + 700),
            Decision::Refuse(Refusal::UpdatesDisabled)
        );

        // Installed attempts do not time out.
        let mut g = open(10, 60, false);
        g.policy.update_timeout = Interval(600);
        g.decide("x", t);
        g.report("x", Outcome::Installed, t + 100);
        g.sweep(t + 10_000);
        assert_eq!(g.timed_out(), 0);
        assert_eq!(g.in_progress(), 1);
    }

    #[test]
    fn report_for_unknown_instance_is_ignored() {
        let mut g = open(1, 60, true);
        g.report("ghost", Outcome::Failed, MONDAY);
        assert!(g.policy.updates_enabled);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Ask(u8, u32),
        Report(u8, u8, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 0u32..400).prop_map(|(i, dt)| Op::Ask(i, dt)),
            (0u8..8, 0u8..3, 0u32..400).prop_map(|(i, o, dt)| Op::Report(i, o, dt)),
        ]
    }

    proptest! {
        /// Whatever happens: never more grants in a period than allowed, never
        /// more in flight than allowed, and the first grant of a version in
        /// safe mode is alone.
        #[test]
        fn limits_hold(max in 1u32..4, period in 1u64..300, safe: bool, ops in proptest::collection::vec(op(), 0..80)) {
            let mut g = open(max, period, safe);
            g.policy.update_timeout = Interval(500);
            let mut now = MONDAY;
            let mut grants: Vec<u64> = Vec::new();
            for o in ops {
                match o {
                    Op::Ask(i, dt) => {
                        now += u64::from(dt);
                        let before = g.attempts.len();
                        // A machine in flight, or already running the new
                        // version, is never offered it again: the server's
                        // version check comes before the policy.
                        let was_in_flight = g.attempts.get(&format!("m{i}")).is_some_and(|a| matches!(a.state, AttemptState::InProgress | AttemptState::Installed | AttemptState::Succeeded));
                        if was_in_flight { continue; }
                        if g.decide(&format!("m{i}"), now) == Decision::Grant {
                            grants.push(now);
                            let in_period = grants.iter().filter(|t| now < **t + period).count();
                            prop_assert!(in_period as u32 <= max);
                            prop_assert!(g.in_progress() <= max);
                            if safe && before == 0 {
                                prop_assert_eq!(g.in_progress(), 1);
                            }
                            let finished = g.attempts.values().any(|a| !matches!(a.state, AttemptState::InProgress | AttemptState::Installed));
                            if safe && !finished {
                                prop_assert_eq!(g.in_progress(), 1, "canary alone");
                            }
                        }
                    }
                    Op::Report(i, o, dt) => {
                        now += u64::from(dt);
                        let out = [Outcome::Installed, Outcome::Succeeded, Outcome::Failed][o as usize];
                        g.report(&format!("m{i}"), out, now);
                    }
                }
            }
        }
    }
}
