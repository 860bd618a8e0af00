//! Events, the bounded event history behind `waitIndex`, and the rule that
//! decides which watcher an event wakes.
//!
//! etcd keeps the last 1000 events of the whole key space in one ring; a
//! watch that starts at an index still in the ring is answered from it, an
//! older one gets error 401. Watchers themselves live in the driver: it asks
//! [`event_matches_watch`] for each applied event, so the rule is pure and is
//! the same one the history scan uses.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::path::{hidden_below, is_below};
use crate::v2::{Action, ErrorCode, Node, Response, V2Error};

/// etcd's history window.
pub const DEFAULT_HISTORY_CAPACITY: usize = 1000;

/// Whether a history scan hides events on hidden nodes from recursive
/// watchers on an ancestor, as live dispatch does. The oracle's scan does not
/// (kv.md §2.2 quirk); Keelson applies one rule to both paths so a resumed
/// watch sees exactly what a live one would have.
const HISTORY_SCAN_FILTERS_HIDDEN: bool = true;

/// One change to the key space, as etcd reports it: serialises to the wire
/// form `{"action":…,"node":…,"prevNode":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub action: Action,
    pub node: Node,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<Node>,
    /// A TTL refresh: kept in the history (it used an index) but never
    /// delivered to watchers. Never on the wire, like the oracle.
    #[serde(skip)]
    pub refresh: bool,
}

impl Event {
    /// The etcd index of this event (its node's `modifiedIndex`; for a `get`,
    /// the node's own index, not the store's).
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }

    /// The event's key (`/` for the root).
    pub fn key(&self) -> &str {
        self.node.key.as_deref().unwrap_or("/")
    }

    /// The HTTP body (`noValueOnSuccess` is the HTTP layer's business).
    pub fn to_response(&self) -> Response {
        Response {
            action: self.action,
            node: Some(self.node.clone()),
            prev_node: self.prev_node.clone(),
        }
    }
}

impl From<Event> for Response {
    fn from(e: Event) -> Response {
        Response {
            action: e.action,
            node: Some(e.node),
            prev_node: e.prev_node,
        }
    }
}

/// Whether a live `event` wakes a watcher on the clean path `key`
/// (`recursive` as requested). etcd's rules (kv.md §6.1, §2.2):
///
/// - the event is on `key` itself;
/// - or the watcher is recursive, the event is below `key`, and no segment
///   between `key` and the event's node is hidden (`_…`);
/// - or the event deletes or expires a directory that contains `key`.
///
/// Refresh events never match. The driver also checks the watcher's start
/// index (`event.index() >= since`).
///
/// Deviation: etcd wakes a watcher below a deleted directory only if a node
/// existed at the watched path; Keelson wakes it either way (the oracle's own
/// history scan does the same), which can only make a client re-read sooner.
/// etcd's history scan also treats deleting `/foo` as containing `/foobar`
/// (a prefix test without the `/`); Keelson does not reproduce that bug.
pub fn event_matches_watch(event: &Event, key: &str, recursive: bool) -> bool {
    matches(event, key, recursive, true)
}

fn matches(event: &Event, key: &str, recursive: bool, filter_hidden: bool) -> bool {
    if event.refresh {
        return false;
    }
    let ek = event.key();
    if ek == key {
        return true;
    }
    if recursive && is_below(ek, key) && !(filter_hidden && hidden_below(ek, key)) {
        return true;
    }
    matches!(event.action, Action::Delete | Action::Expire) && event.node.dir && is_below(key, ek)
}

/// The ring of recent events, oldest first, indexes strictly increasing.
#[derive(Debug, Clone)]
pub(crate) struct History {
    capacity: usize,
    events: VecDeque<Arc<Event>>,
}

impl History {
    pub fn new(capacity: usize) -> History {
        let capacity = capacity.max(1);
        History {
            capacity,
            events: VecDeque::with_capacity(capacity.min(DEFAULT_HISTORY_CAPACITY)),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn push(&mut self, event: Arc<Event>) {
        if self.events.len() >= self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.events.iter()
    }

    /// The index of the oldest retained event (0 when empty).
    pub fn start_index(&self) -> u64 {
        self.events.front().map_or(0, |e| e.index())
    }

    /// etcd's `EventHistory.scan`: the first event at or after `since` that
    /// concerns the watch, `None` to wait for the future, 401 if `since` has
    /// left the window (`index` in the error is `current`).
    pub fn scan(
        &self,
        key: &str,
        recursive: bool,
        since: u64,
        current: u64,
    ) -> Result<Option<Arc<Event>>, V2Error> {
        let start = self.start_index();
        if since < start {
            return Err(V2Error::new(
                ErrorCode::EventIndexCleared,
                format!("the requested history has been cleared [{start}/{since}]"),
                current,
            ));
        }
        let first = self.events.partition_point(|e| e.index() < since);
        Ok(self
            .events
            .range(first..)
            .find(|e| matches(e, key, recursive, HISTORY_SCAN_FILTERS_HIDDEN))
            .cloned())
    }
}
