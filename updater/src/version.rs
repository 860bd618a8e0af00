//! Release versions and channels.
//!
//! CoreOS versions are `MAJOR.MINOR.PATCH` where MAJOR counts days since the
//! CoreOS epoch (2013-07-13). They compare numerically component by component;
//! the engine never installs a version that is not strictly newer than the
//! running one, which is what makes a channel switch to an older channel wait
//! instead of downgrading.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A version failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {input:?}: expected numbers separated by dots, such as 766.3.0")]
pub struct VersionError {
    pub input: String,
}

/// A release version such as `766.3.0` (update_engine also uses `0.0.0.0`).
#[derive(Debug, Clone, Eq)]
pub struct Version {
    parts: Vec<u64>,
}

impl Version {
    /// `MAJOR.MINOR.PATCH`.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            parts: vec![major, minor, patch],
        }
    }

    /// `0.0.0`, the version that any release is newer than.
    pub fn zero() -> Self {
        Self::new(0, 0, 0)
    }

    /// The numeric components.
    pub fn parts(&self) -> &[u64] {
        &self.parts
    }

    /// The major number (days since 2013-07-13).
    pub fn major(&self) -> u64 {
        self.parts.first().copied().unwrap_or(0)
    }

    /// The day the release branch was cut: CoreOS epoch + MAJOR days.
    pub fn branch_date(&self) -> Option<chrono::NaiveDate> {
        let epoch = chrono::NaiveDate::from_ymd_opt(2013, 7, 13)?;
        epoch.checked_add_days(chrono::Days::new(self.major()))
    }

    fn part(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError {
            input: s.to_string(),
        };
        // Build metadata (`+nightly…`) does not take part in ordering.
        let core = s.split('+').next().unwrap_or("");
        if core.is_empty() {
            return Err(err());
        }
        let parts = core
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                p.parse::<u64>().map_err(|_| err())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parts.len() > 4 {
            return Err(err());
        }
        Ok(Self { parts })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        (0..n)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A release channel, sent to the server as the Omaha `track` (`GROUP=`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Channel {
    Alpha,
    Beta,
    #[default]
    Stable,
    /// Flatcar's experimental channel.
    Edge,
    /// A private server's group (any identifier, e.g. a CoreUpdate group UUID).
    Custom(String),
}

impl Channel {
    /// The track string.
    pub fn as_str(&self) -> &str {
        match self {
            Channel::Alpha => "alpha",
            Channel::Beta => "beta",
            Channel::Stable => "stable",
            Channel::Edge => "edge",
            Channel::Custom(s) => s,
        }
    }
}

impl From<&str> for Channel {
    fn from(s: &str) -> Self {
        match s {
            "alpha" => Channel::Alpha,
            "beta" => Channel::Beta,
            "stable" => Channel::Stable,
            "edge" => Channel::Edge,
            other => Channel::Custom(other.to_string()),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn book_versions_order() {
        assert!(v("723.3.0") < v("766.3.0"));
        assert!(v("766.3.0") < v("808.0.0"));
        assert!(v("808.0.0") > v("723.3.0"));
        assert!(v("9.0.0") < v("10.0.0"), "numeric, not lexical");
        assert_eq!(v("0.0.0.0"), Version::zero());
        assert_eq!(v("766.3.0+nightly-1"), v("766.3.0"));
    }

    #[test]
    fn branch_dates_match_the_book() {
        let d = |s: &str| v(s).branch_date().unwrap().to_string();
        assert_eq!(d("717.3.0"), "2015-06-30");
        assert_eq!(d("766.3.0"), "2015-08-18");
        assert_eq!(d("808.0.0"), "2015-09-29");
    }

    #[test]
    fn bad_versions() {
        for s in [
            "",
            "1..2",
            "a.b.c",
            "1.2.3.4.5",
            "-1.0.0",
            "1.2.x",
            " 1.2.3",
        ] {
            assert!(s.parse::<Version>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn channels() {
        assert_eq!(Channel::from("alpha"), Channel::Alpha);
        assert_eq!(Channel::from("lts-2024").as_str(), "lts-2024");
        assert_eq!(Channel::default().to_string(), "stable");
    }

    proptest::proptest! {
        #[test]
        fn display_parse_round_trip(a in 0u64..100000, b in 0u64..100, c in 0u64..100) {
            let x = Version::new(a, b, c);
            proptest::prop_assert_eq!(x.to_string().parse::<Version>().unwrap(), x.clone());
            proptest::prop_assert!(Version::new(a, b, c + 1) > x);
        }
    }
}
