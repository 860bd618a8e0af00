//! The reboot semaphore exactly as locksmith stores it.
//!
//! One JSON document per group, `{"semaphore":N,"max":M,"holders":[...]}`,
//! where `semaphore` counts free slots (negative after lowering `max` below
//! the number of holders), `max` the slots in total and `holders` the sorted
//! machine IDs holding one (reference updater.md §10.4). The operations here
//! are pure and reproduce locksmith's rules and error texts (`lock/semaphore.go`),
//! including the order of its checks; [`crate::locksmith::lock`] wraps them in
//! compare-and-swap.

use serde::{Deserialize, Serialize};

/// The key of the default group's semaphore.
pub const SEMAPHORE_KEY: &str = "/coreos.com/updateengine/rebootlock/semaphore";
/// The directory every locksmith key lives under.
pub const REBOOTLOCK_PREFIX: &str = "/coreos.com/updateengine/rebootlock";

/// The directory holding a group's keys: the rebootlock prefix for the
/// default group (`""`), `<prefix>/groups/<query-escaped name>` otherwise.
pub fn group_dir(group: &str) -> String {
    if group.is_empty() {
        REBOOTLOCK_PREFIX.to_string()
    } else {
        format!(
            "{REBOOTLOCK_PREFIX}/groups/{}",
            keelson_kv::client::go_query_escape(group)
        )
    }
}

/// The semaphore key of a group (locksmith's `lock/etcd.go` layout).
pub fn semaphore_key(group: &str) -> String {
    format!("{}/semaphore", group_dir(group))
}

/// What locksmith refuses, with its texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SemaphoreError {
    /// No free slot (locksmith checks this before the holder check).
    #[error("semaphore is at {0}")]
    Exhausted(i64),
    /// The machine already holds a slot.
    #[error("holder exists")]
    HolderExists,
    /// The machine holds no slot.
    #[error("holder does not exist")]
    HolderDoesNotExist,
}

/// The semaphore document.
///
/// `holders` keeps the difference between `null` (what locksmith's first
/// write contains, and what a missing field reads as) and `[]` (what it
/// writes after the last unlock), so a read-modify-write changes nothing but
/// what the operation changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Semaphore {
    pub semaphore: i64,
    pub max: i64,
    #[serde(default)]
    pub holders: Option<Vec<String>>,
}

impl Default for Semaphore {
    /// What locksmith creates when the key is absent: one slot, no holders.
    fn default() -> Self {
        Semaphore {
            semaphore: 1,
            max: 1,
            holders: None,
        }
    }
}

impl Semaphore {
    /// Parses a stored value: a JSON object with integer `semaphore` and
    /// `max` and a list of strings (or `null`, or nothing) as `holders`.
    /// Unknown fields are ignored, as Go's decoder ignores them. Stricter than
    /// locksmith in one way: a missing `semaphore` or `max` is an error, not 0.
    pub fn parse(value: &str) -> Result<Self, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_str(value)?;
        if !v.is_object() {
            return Err(serde::de::Error::custom("expected a JSON object"));
        }
        serde_json::from_value(v)
    }

    /// The value as locksmith (Go's `encoding/json`) writes it: fields in
    /// declaration order, no spaces, `<`, `>`, `&`, U+2028 and U+2029 escaped.
    pub fn to_json(&self) -> String {
        // Serializing integers and strings cannot fail.
        let s = serde_json::to_string(self).unwrap_or_default();
        go_html_escape(&s)
    }

    /// The holders, `null` and missing read as none.
    pub fn holders(&self) -> &[String] {
        self.holders.as_deref().unwrap_or(&[])
    }

    /// Whether `id` holds a slot.
    pub fn is_holder(&self, id: &str) -> bool {
        self.holders().iter().any(|h| h == id)
    }

    /// Takes a slot for `id`: refused when none is free, then when `id`
    /// already holds one; the holder is inserted in sorted position.
    pub fn lock(&mut self, id: &str) -> Result<(), SemaphoreError> {
        if self.semaphore <= 0 {
            return Err(SemaphoreError::Exhausted(self.semaphore));
        }
        if self.is_holder(id) {
            return Err(SemaphoreError::HolderExists);
        }
        self.semaphore -= 1;
        let holders = self.holders.get_or_insert_with(Vec::new);
        holders.push(id.to_string());
        holders.sort();
        Ok(())
    }

    /// Returns `id`'s slot.
    pub fn unlock(&mut self, id: &str) -> Result<(), SemaphoreError> {
        let holders = self.holders.get_or_insert_with(Vec::new);
        let Some(pos) = holders.iter().position(|h| h == id) else {
            return Err(SemaphoreError::HolderDoesNotExist);
        };
        holders.remove(pos);
        self.semaphore += 1;
        Ok(())
    }

    /// Changes the number of slots; free slots move by the same amount and
    /// holders are untouched. Returns the old maximum.
    pub fn set_max(&mut self, max: i64) -> i64 {
        let old = self.max;
        self.semaphore -= old - max;
        self.max = max;
        old
    }
}

/// `locksmithctl status`'s output.
pub fn format_status(sem: &Semaphore) -> String {
    let mut out = format!("Available: {}\nMax: {}\n", sem.semaphore, sem.max);
    if !sem.holders().is_empty() {
        out.push_str("\nMACHINE ID\n");
        for h in sem.holders() {
            out.push_str(h);
            out.push('\n');
        }
    }
    out
}

/// `locksmithctl set-max`'s output (every released version prints these
/// labels, not the README's `Old:`/`New:`).
pub fn format_set_max(old: i64, new: i64) -> String {
    format!("Old-Max: {old}\nMax: {new}\n")
}

fn go_html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_follow_locksmith_layout() {
        assert_eq!(semaphore_key(""), SEMAPHORE_KEY);
        assert_eq!(
            semaphore_key("my lb"),
            "/coreos.com/updateengine/rebootlock/groups/my+lb/semaphore"
        );
        assert_eq!(
            semaphore_key("lb"),
            "/coreos.com/updateengine/rebootlock/groups/lb/semaphore"
        );
    }

    #[test]
    fn json_matches_what_locksmith_writes() {
        // The document locksmith's init creates, byte for byte.
        assert_eq!(
            Semaphore::default().to_json(),
            r#"{"semaphore":1,"max":1,"holders":null}"#
        );
        // The README's example after one lock.
        let mut s = Semaphore::parse(r#"{"semaphore":1,"max":1,"holders":[]}"#).unwrap();
        s.lock("69d27b356a94476da859461d3a3bc6fd").unwrap();
        assert_eq!(
            s.to_json(),
            r#"{"semaphore":0,"max":1,"holders":["69d27b356a94476da859461d3a3bc6fd"]}"#
        );
        // Go's remove-from-slice leaves an empty, non-nil slice: `[]`.
        s.unlock("69d27b356a94476da859461d3a3bc6fd").unwrap();
        assert_eq!(s.to_json(), r#"{"semaphore":1,"max":1,"holders":[]}"#);
        // A missing holders field reads as none.
        let s = Semaphore::parse(r#"{"semaphore":2,"max":2}"#).unwrap();
        assert!(s.holders().is_empty());
        assert_eq!(
            Semaphore {
                holders: Some(vec!["a<b&c>".into()]),
                ..Semaphore::default()
            }
            .to_json(),
            r#"{"semaphore":1,"max":1,"holders":["a\u003cb\u0026c\u003e"]}"#
        );
    }

    #[test]
    fn operations_follow_locksmith_rules_and_texts() {
        let mut s = Semaphore::default();
        s.lock("b").unwrap();
        assert_eq!(s.lock("a").unwrap_err().to_string(), "semaphore is at 0");
        // Slot check before holder check (locksmith issue #58).
        assert_eq!(s.lock("b").unwrap_err().to_string(), "semaphore is at 0");
        assert_eq!(s.set_max(3), 1);
        assert_eq!(s.semaphore, 2);
        assert_eq!(s.lock("b").unwrap_err().to_string(), "holder exists");
        s.lock("a").unwrap();
        assert_eq!(s.holders(), ["a", "b"]);
        assert_eq!(
            s.unlock("c").unwrap_err().to_string(),
            "holder does not exist"
        );
        s.set_max(1);
        assert_eq!(s.semaphore, -1);
        assert_eq!(s.lock("c").unwrap_err().to_string(), "semaphore is at -1");
        assert_eq!(
            format_status(&s),
            "Available: -1\nMax: 1\n\nMACHINE ID\na\nb\n"
        );
        assert_eq!(
            format_status(&Semaphore::default()),
            "Available: 1\nMax: 1\n"
        );
        assert_eq!(format_set_max(1, 4), "Old-Max: 1\nMax: 4\n");
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            "",
            "garbage",
            "{}",
            r#"{"semaphore":"1","max":1}"#,
            r#"{"semaphore":1.5,"max":1}"#,
            r#"{"semaphore":1,"max":1,"holders":[1]}"#,
            r#"{"semaphore":1,"max":1,"holders":"x"}"#,
            "[1,2]",
        ] {
            assert!(Semaphore::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn invariant_free_plus_holders_is_max(ops in proptest::collection::vec((0u8..3, 0u8..6, 0i64..5), 0..60)) {
            let mut s = Semaphore::default();
            for (op, id, n) in ops {
                let id = format!("m{id}");
                match op {
                    0 => { let _ = s.lock(&id); }
                    1 => { let _ = s.unlock(&id); }
                    _ => { s.set_max(n); }
                }
                prop_assert_eq!(s.semaphore + s.holders().len() as i64, s.max);
                let mut sorted = s.holders().to_vec();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(sorted.as_slice(), s.holders());
                let back = Semaphore::parse(&s.to_json()).unwrap();
                prop_assert_eq!(back, s.clone());
            }
        }
    }
}
