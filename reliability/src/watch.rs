//! Watch validators.
//!
//! A v2 watcher long-polls `?wait=true&recursive=true&waitIndex=N` and moves
//! `N` past every event it receives; when its member dies it resumes from the
//! same `waitIndex` on another (or the restarted) member. What it received
//! must be the store's history itself: strictly ordered by index, each index
//! once, nothing skipped, and agreeing with what the writers were told
//! (every acknowledged write at its index, with its key, action and value)
//! and with what readers saw.
//!
//! "Nothing skipped" is checked two ways. When every store write in the run
//! is under the watched prefix, indexes must be contiguous. In any case,
//! every acknowledged write whose index falls inside the watched range must
//! be among the events. The one allowed gap is an explicit one: etcd answers
//! error 401 (event index cleared) when the requested index has left its
//! event window, and the watcher notes where it jumped.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{Input, Operation, Output};

/// One event as the watcher received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The node's `modifiedIndex`.
    pub index: u64,
    /// `set`, `create`, `compareAndSwap`, `delete`, `compareAndDelete`, ...
    pub action: String,
    pub key: String,
    /// The node's value (absent for deletes).
    pub value: Option<String>,
}

/// Everything a watcher saw, including where it had to resume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLog {
    /// The `waitIndex` of the first request.
    pub start_index: u64,
    pub events: Vec<WatchEvent>,
    /// `waitIndex` values the watcher resumed from after losing its member.
    pub resumes: Vec<u64>,
    /// `(requested, resumed)`: error 401 made the watcher jump from
    /// `requested` to `resumed`; indexes in between were not delivered.
    pub cleared: Vec<(u64, u64)>,
}

/// A watch guarantee that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchViolation {
    OutOfOrder {
        before: WatchEvent,
        after: WatchEvent,
    },
    Duplicate(WatchEvent),
    OutsidePrefix(WatchEvent),
    Gap {
        after: u64,
        next: u64,
    },
    MissingWrite {
        index: u64,
        op: String,
    },
    Mismatch {
        event: WatchEvent,
        op: String,
    },
    UnknownValue(WatchEvent),
    /// One client write (its unique value) applied at two indexes.
    AppliedTwice {
        first: WatchEvent,
        again: WatchEvent,
    },
}

impl fmt::Display for WatchViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchViolation::OutOfOrder { before, after } => {
                write!(f, "event out of order: {after:?} came after {before:?}")
            }
            WatchViolation::Duplicate(e) => write!(f, "event delivered twice: {e:?}"),
            WatchViolation::OutsidePrefix(e) => {
                write!(f, "event outside the watched prefix: {e:?}")
            }
            WatchViolation::Gap { after, next } => write!(
                f,
                "gap: no events between index {after} and {next} though every write is watched"
            ),
            WatchViolation::MissingWrite { index, op } => write!(
                f,
                "acknowledged write at index {index} never reached the watcher: {op}"
            ),
            WatchViolation::Mismatch { event, op } => write!(
                f,
                "event {event:?} disagrees with what a client was told: {op}"
            ),
            WatchViolation::UnknownValue(e) => {
                write!(f, "event carries a value no client ever wrote: {e:?}")
            }
            WatchViolation::AppliedTwice { first, again } => {
                write!(f, "one write applied twice: {first:?} and again {again:?}")
            }
        }
    }
}

/// Figures from a validation that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchSummary {
    pub events: usize,
    pub resumes: usize,
    /// Acknowledged writes matched to an event.
    pub writes_matched: usize,
}

/// What an acknowledged write or a read says happened at an index.
struct Claim<'a> {
    op: &'a Operation,
    /// Expected actions; empty for reads (any action that leaves the value).
    actions: &'static [&'static str],
    value: Option<&'a str>,
    write: bool,
}

fn claim(op: &Operation) -> Option<(u64, Claim<'_>)> {
    let c = |actions, value, write| Claim {
        op,
        actions,
        value,
        write,
    };
    match (&op.input, &op.output) {
        (Input::Get, Output::Read(Some((v, i)))) => Some((*i, c(&[], Some(v.as_str()), false))),
        (Input::Set { value }, Output::Written { index, .. }) => Some((
            *index,
            c(&["set", "create", "update"], Some(value.as_str()), true),
        )),
        (Input::Cas { value, .. }, Output::Swapped { index }) => {
            Some((*index, c(&["compareAndSwap"], Some(value.as_str()), true)))
        }
        (Input::Delete, Output::Written { index, .. }) => {
            Some((*index, c(&["delete"], None, true)))
        }
        (Input::Cad { .. }, Output::Swapped { index }) => {
            Some((*index, c(&["compareAndDelete"], None, true)))
        }
        _ => None,
    }
}

/// Validates a watcher's log against the final history. `contiguous`: every
/// store write of the run is under `prefix`, so indexes must not skip.
pub fn validate(
    log: &WatchLog,
    history: &[Operation],
    prefix: &str,
    contiguous: bool,
) -> Result<WatchSummary, Vec<WatchViolation>> {
    let mut bad = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut by_index: BTreeMap<u64, &WatchEvent> = BTreeMap::new();
    let mut prev: Option<&WatchEvent> = None;
    for e in &log.events {
        if !e.key.starts_with(prefix) {
            bad.push(WatchViolation::OutsidePrefix(e.clone()));
        }
        if !seen.insert(e.index) {
            bad.push(WatchViolation::Duplicate(e.clone()));
        } else {
            by_index.insert(e.index, e);
        }
        if let Some(p) = prev {
            if e.index < p.index {
                bad.push(WatchViolation::OutOfOrder {
                    before: p.clone(),
                    after: e.clone(),
                });
            } else if contiguous
                && e.index > p.index + 1
                && !log
                    .cleared
                    .iter()
                    .any(|(req, res)| *req <= p.index + 1 && *res >= e.index)
            {
                bad.push(WatchViolation::Gap {
                    after: p.index,
                    next: e.index,
                });
            }
        }
        prev = Some(e);
    }
    let (Some(first), Some(last)) = (log.events.first(), log.events.last()) else {
        return if bad.is_empty() {
            Ok(WatchSummary {
                resumes: log.resumes.len(),
                ..WatchSummary::default()
            })
        } else {
            Err(bad)
        };
    };
    let (lo, hi) = (first.index.min(log.start_index.max(1)), last.index);
    let in_cleared = |i: u64| log.cleared.iter().any(|(req, res)| i >= *req && i < *res);
    let written: HashSet<&str> = history
        .iter()
        .filter_map(|o| match &o.input {
            Input::Set { value } | Input::Cas { value, .. } => Some(value.as_str()),
            _ => None,
        })
        .collect();
    let mut matched = 0;
    for op in history {
        let Some((index, c)) = claim(op) else {
            continue;
        };
        if index < lo || index > hi || in_cleared(index) {
            continue;
        }
        match by_index.get(&index) {
            None if c.write => bad.push(WatchViolation::MissingWrite {
                index,
                op: op.to_string(),
            }),
            // A read names the write that produced its value; that write
            // must be the event at that index.
            None => bad.push(WatchViolation::MissingWrite {
                index,
                op: format!("(the write a read observed) {op}"),
            }),
            Some(e) => {
                let action_ok = c.actions.is_empty() || c.actions.contains(&e.action.as_str());
                let value_ok = if c.write || c.value.is_some() {
                    e.value.as_deref() == c.value
                } else {
                    true
                };
                if e.key != c.op.key || !action_ok || !value_ok {
                    bad.push(WatchViolation::Mismatch {
                        event: (*e).clone(),
                        op: op.to_string(),
                    });
                } else if c.write {
                    matched += 1;
                }
            }
        }
    }
    // Every write stores a unique value, so a value set by two events is
    // one request applied twice (a retried proposal, say).
    let mut applied: std::collections::HashMap<&str, &WatchEvent> = Default::default();
    for e in &log.events {
        if let Some(v) = &e.value {
            if !written.contains(v.as_str()) {
                bad.push(WatchViolation::UnknownValue(e.clone()));
            }
            if let Some(first) = applied.insert(v.as_str(), e) {
                bad.push(WatchViolation::AppliedTwice {
                    first: first.clone(),
                    again: e.clone(),
                });
            }
        }
    }
    if bad.is_empty() {
        Ok(WatchSummary {
            events: log.events.len(),
            resumes: log.resumes.len(),
            writes_matched: matched,
        })
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, action: &str, key: &str, value: Option<&str>) -> WatchEvent {
        WatchEvent {
            index,
            action: action.into(),
            key: key.into(),
            value: value.map(Into::into),
        }
    }
    fn set(key: &str, value: &str, index: u64, t: u64) -> Operation {
        Operation {
            client: 0,
            key: key.into(),
            input: Input::Set {
                value: value.into(),
            },
            output: Output::Written { prev: None, index },
            call: t,
            ret: Some(t + 1),
        }
    }

    fn good() -> (WatchLog, Vec<Operation>) {
        let h = vec![
            set("/r/a", "1", 5, 0),
            set("/r/b", "2", 6, 2),
            set("/r/a", "3", 7, 4),
        ];
        let log = WatchLog {
            start_index: 5,
            events: vec![
                ev(5, "set", "/r/a", Some("1")),
                ev(6, "set", "/r/b", Some("2")),
                ev(7, "set", "/r/a", Some("3")),
            ],
            resumes: vec![7],
            cleared: vec![],
        };
        (log, h)
    }

    #[test]
    fn a_faithful_log_passes() {
        let (log, h) = good();
        let s = validate(&log, &h, "/r/", true).expect("valid");
        assert_eq!(s.writes_matched, 3);
        assert_eq!(s.resumes, 1);
    }

    #[test]
    fn duplicates_gaps_order_and_missing_writes_are_caught() {
        let (mut log, h) = good();
        log.events.insert(2, ev(6, "set", "/r/b", Some("2")));
        let v = validate(&log, &h, "/r/", true).unwrap_err();
        assert!(v.iter().any(|x| matches!(x, WatchViolation::Duplicate(_))));

        let (mut log, h) = good();
        log.events.remove(1);
        let v = validate(&log, &h, "/r/", true).unwrap_err();
        assert!(v.iter().any(|x| matches!(x, WatchViolation::Gap { .. })));
        assert!(v
            .iter()
            .any(|x| matches!(x, WatchViolation::MissingWrite { index: 6, .. })));
        // Without contiguity the acknowledged write still catches it.
        let v = validate(&log, &h, "/r/", false).unwrap_err();
        assert!(v
            .iter()
            .any(|x| matches!(x, WatchViolation::MissingWrite { index: 6, .. })));

        let (mut log, h) = good();
        log.events.swap(0, 1);
        let v = validate(&log, &h, "/r/", true).unwrap_err();
        assert!(v
            .iter()
            .any(|x| matches!(x, WatchViolation::OutOfOrder { .. })));
    }

    #[test]
    fn wrong_values_and_foreign_keys_are_caught() {
        let (mut log, h) = good();
        log.events[2].value = Some("1".into());
        let v = validate(&log, &h, "/r/", true).unwrap_err();
        assert!(v
            .iter()
            .any(|x| matches!(x, WatchViolation::Mismatch { .. })));

        let (mut log, h) = good();
        log.events[2].value = Some("zzz".into());
        let v = validate(&log, &h, "/r/", true).unwrap_err();
        assert!(v
            .iter()
            .any(|x| matches!(x, WatchViolation::UnknownValue(_))));

        let (mut log, h) = good();
        log.events[0].key = "/elsewhere".into();
        let v = validate(&log, &h, "/r/", true).unwrap_err();
        assert!(v
            .iter()
            .any(|x| matches!(x, WatchViolation::OutsidePrefix(_))));
    }

    #[test]
    fn a_write_applied_twice_is_caught() {
        // keelson-faults seed 6 before the fix: "c2-192" set at 348 and 350.
        let h = vec![
            set("/r/a", "1", 5, 0),
            Operation {
                input: Input::Delete,
                output: Output::Written {
                    prev: Some("1".into()),
                    index: 6,
                },
                ..set("/r/a", "-", 6, 2)
            },
        ];
        let log = WatchLog {
            start_index: 5,
            events: vec![
                ev(5, "set", "/r/a", Some("1")),
                ev(6, "delete", "/r/a", None),
                ev(7, "set", "/r/a", Some("1")),
            ],
            ..WatchLog::default()
        };
        let v = validate(&log, &h, "/r/", true).unwrap_err();
        assert!(
            v.iter()
                .any(|x| matches!(x, WatchViolation::AppliedTwice { .. })),
            "{v:?}"
        );
    }

    #[test]
    fn an_explicit_index_cleared_jump_is_not_a_gap() {
        let (mut log, h) = good();
        log.events.remove(1);
        log.cleared.push((6, 7));
        assert!(validate(&log, &h, "/r/", true).is_ok());
    }
}
