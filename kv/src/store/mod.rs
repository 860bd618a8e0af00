//! The etcd v2 data model as a pure, deterministic state machine.
//!
//! A [`Store`] holds the key tree, the etcd index, the recent-event history
//! and the write counters. It changes only through [`Store::apply`], which
//! takes a [`Command`] (what the Raft log carries) and the current time, and
//! returns the resulting event or the etcd error. Nothing here reads a clock
//! or does I/O: the time passed to `apply` and [`Store::get`] is used only to
//! render the `ttl` field of answers, and expiry happens only when a
//! [`Command::Sync`] carrying the leader's clock is applied, so every member
//! that applies the same log reaches the same state, and tests control time
//! exactly. Watchers are the driver's: it scans the history with
//! [`Store::watch_scan`] when a watch starts and matches each applied event
//! against waiting watchers with [`event_matches_watch`].
//!
//! ```
//! use keelson_kv::store::{Command, PutRequest, Store, Timestamp};
//!
//! let now = Timestamp::from_unix(1_800_000_000, 0);
//! let mut store = Store::new();
//! let put = PutRequest { value: "Hello world".into(), ..PutRequest::default() };
//! let applied = store.apply(Command::from_put("/message", put), now).unwrap();
//! let event = applied.into_event().unwrap();
//! assert_eq!(
//!     serde_json::to_string(&*event).unwrap(),
//!     r#"{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":1,"createdIndex":1}}"#
//! );
//! assert_eq!(store.index(), 1);
//! let got = store.get("/message", false, false, now).unwrap();
//! assert_eq!(got.node.value.as_deref(), Some("Hello world"));
//! ```
//!
//! # Room for the v3 API
//!
//! The etcd index is already a single cluster-wide revision counter bumped
//! once per change, which is what v3 MVCC revisions are. A v3 key space
//! would live beside the v2 tree in this state machine (as it does in etcd,
//! where both are applied from one log): new [`Command`] variants for
//! put/range-delete/txn and lease grant/revoke, a revision-indexed map of key
//! versions with compaction instead of the 1000-event ring, and leases
//! expired through the same leader-timed `Sync`-style command, so nothing in
//! the v2 design (explicit time, one counter, tagged commands, versioned
//! snapshots) has to change.

mod command;
mod history;
mod path;
mod snapshot;
mod stats;
mod time;
mod tree;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use command::{Applied, Command, PutRequest};
pub use history::{event_matches_watch, Event, DEFAULT_HISTORY_CAPACITY};
pub use path::clean_path;
pub use snapshot::SnapshotError;
pub use stats::StoreStats;
pub use time::Timestamp;

use crate::v2::{Action, ErrorCode, Node, V2Error};
use history::History;
use stats::{Op, ReadCounters, WriteCounters};
use tree::{Entry, Kind, Missing, Tree};

/// The v2 key space: tree, etcd index, event history and counters.
#[derive(Debug)]
pub struct Store {
    index: u64,
    tree: Tree,
    history: History,
    writes: WriteCounters,
    reads: ReadCounters,
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

impl Store {
    /// An empty store at index 0 with etcd's 1000-event history.
    pub fn new() -> Store {
        Store::with_history_capacity(DEFAULT_HISTORY_CAPACITY)
    }

    /// An empty store keeping the last `capacity` events (at least 1).
    pub fn with_history_capacity(capacity: usize) -> Store {
        Store {
            index: 0,
            tree: Tree::default(),
            history: History::new(capacity),
            writes: WriteCounters::default(),
            reads: ReadCounters::default(),
        }
    }

    /// The etcd index: the index of the last change (`X-Etcd-Index`).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Number of nodes, directories included, root excluded.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether the key space holds nothing but the root.
    pub fn is_empty(&self) -> bool {
        self.tree.len() == 0
    }

    /// Whether any node has a TTL (the leader only proposes sweeps then).
    pub fn has_ttl_nodes(&self) -> bool {
        self.tree.has_ttl_nodes()
    }

    /// The earliest expiration in the store, if any.
    pub fn next_expiration(&self) -> Option<Timestamp> {
        self.tree.next_expiration()
    }

    /// `/v2/stats/store`; `watchers` is the driver's count of registered
    /// watchers.
    pub fn stats(&self, watchers: u64) -> StoreStats {
        stats::combine(&self.writes, &self.reads, watchers)
    }

    /// Applies one command. On success the store's index has advanced by
    /// one per event and the events are in the history; on failure nothing
    /// changed but the failure counters, and the error carries the current
    /// index. `now` only sets the `ttl` shown in the returned events.
    pub fn apply(&mut self, cmd: Command, now: Timestamp) -> Result<Applied, V2Error> {
        let (op, result) = match cmd {
            Command::Set {
                path,
                value,
                dir,
                expiration,
                refresh,
            } => (
                Op::Set,
                self.set(path, value, dir, expiration, refresh, now),
            ),
            Command::Create {
                path,
                value,
                dir,
                expiration,
            } => (
                Op::Create,
                self.create(clean_owned(path), value, dir, expiration, now),
            ),
            Command::CreateInOrder {
                parent,
                value,
                dir,
                expiration,
            } => {
                // etcd appends the name before cleaning (`POST /` → `/0…010`).
                let path = format!("{parent}/{:020}", self.index + 1);
                (
                    Op::Create,
                    self.create(clean_owned(path), value, dir, expiration, now),
                )
            }
            Command::Update {
                path,
                value,
                expiration,
                refresh,
            } => (
                Op::Update,
                self.update(path, value, expiration, refresh, now),
            ),
            Command::CompareAndSwap {
                path,
                value,
                prev_value,
                prev_index,
                expiration,
                refresh,
            } => (
                Op::CompareAndSwap,
                self.compare_and_swap(
                    path, value, prev_value, prev_index, expiration, refresh, now,
                ),
            ),
            Command::Delete {
                path,
                dir,
                recursive,
            } => (Op::Delete, self.delete(path, dir, recursive, now)),
            Command::CompareAndDelete {
                path,
                prev_value,
                prev_index,
            } => (
                Op::CompareAndDelete,
                self.compare_and_delete(path, prev_value, prev_index, now),
            ),
            Command::Sync { now: cutoff } => {
                return Ok(Applied::Expired(self.expire(cutoff, now)));
            }
        };
        self.writes.record(op, result.is_ok());
        let event = Arc::new(result?);
        self.history.push(Arc::clone(&event));
        Ok(Applied::Event(event))
    }

    /// Reads a node (`GET` without `wait`): a key, or a directory with its
    /// visible children (the whole visible subtree with `recursive`).
    /// Listings are always in key order, which satisfies `sorted=true` and
    /// is one of the orders etcd may answer without it. The answer's
    /// `X-Etcd-Index` is [`Store::index`].
    pub fn get(
        &self,
        path: &str,
        recursive: bool,
        sorted: bool,
        now: Timestamp,
    ) -> Result<Event, V2Error> {
        let _ = sorted;
        let key = clean_path(path);
        let result = self.read(&key, recursive, now);
        self.reads.record(result.is_ok());
        result
    }

    /// Starts a watch on `key` from `since_index` (0 = the next index): the
    /// first event in the history at or after it that concerns the watch, or
    /// `None` if the watcher must wait for a future event (index greater than
    /// [`Store::index`]), or error 401 if `since_index` is older than the
    /// history window. Refresh events are skipped.
    pub fn watch_scan(
        &self,
        key: &str,
        recursive: bool,
        since_index: u64,
    ) -> Result<Option<Arc<Event>>, V2Error> {
        let key = clean_path(key);
        let since = if since_index == 0 {
            self.index.saturating_add(1)
        } else {
            since_index
        };
        self.history.scan(&key, recursive, since, self.index)
    }

    /// The index of the oldest event still in the history (0 if none).
    pub fn history_start(&self) -> u64 {
        self.history.start_index()
    }

    fn error(&self, code: ErrorCode, cause: impl Into<String>) -> V2Error {
        V2Error::new(code, cause, self.index)
    }

    /// etcd's error for a missing clean `key`: 100 at the first missing
    /// path, or 104 at a key in the way.
    fn missing(&self, key: &str) -> V2Error {
        match self.tree.diagnose(key) {
            Missing::NotFound(p) => self.error(ErrorCode::KeyNotFound, p),
            Missing::NotDir(p) => self.error(ErrorCode::NotDir, p),
        }
    }

    fn root_read_only(&self) -> V2Error {
        self.error(ErrorCode::RootReadOnly, "/")
    }

    fn read(&self, key: &str, recursive: bool, now: Timestamp) -> Result<Event, V2Error> {
        let node = if key == "/" {
            self.tree.listing(key, None, recursive, now)
        } else {
            match self.tree.get(key) {
                Some(e) if e.is_dir() => self.tree.listing(key, Some(e), recursive, now),
                Some(e) => e.repr(key, now),
                None => return Err(self.missing(key)),
            }
        };
        Ok(Event {
            action: Action::Get,
            node,
            prev_node: None,
            refresh: false,
        })
    }

    /// Creates the missing ancestors of `key` (permanent, at `index`), or
    /// fails with 104 at a key in the way.
    fn make_parents(&mut self, key: &str, index: u64) -> Result<(), V2Error> {
        let missing = self
            .tree
            .missing_dirs(key)
            .map_err(|p| self.error(ErrorCode::NotDir, p))?;
        for dir in missing {
            self.tree.insert(
                dir.to_owned(),
                Entry {
                    created: index,
                    modified: index,
                    expiration: None,
                    kind: Kind::Dir,
                },
            );
        }
        Ok(())
    }

    /// Inserts a new node at `key` (parents already made) and returns its
    /// representation for the event.
    fn put_node(
        &mut self,
        key: String,
        value: String,
        dir: bool,
        expiration: Option<Timestamp>,
        index: u64,
        now: Timestamp,
    ) -> Node {
        // etcd: expiration times before 2000 come from zero-valued clients
        // and mean "permanent" for creates and sets.
        let expiration = expiration.filter(|e| *e >= Timestamp::MIN_EXPIRE);
        let entry = Entry {
            created: index,
            modified: index,
            expiration,
            kind: if dir { Kind::Dir } else { Kind::Key(value) },
        };
        let node = entry.repr(&key, now);
        self.tree.insert(key, entry);
        node
    }

    fn set(
        &mut self,
        path: String,
        value: String,
        dir: bool,
        expiration: Option<Timestamp>,
        refresh: bool,
        now: Timestamp,
    ) -> Result<Event, V2Error> {
        let key = clean_owned(path);
        if key == "/" {
            return Err(self.root_read_only());
        }
        let (value, prev_node) = match self.tree.get(&key) {
            Some(e) if e.is_dir() => return Err(self.error(ErrorCode::NotFile, key)),
            Some(e) => {
                let value = match (refresh, e.value()) {
                    (true, Some(v)) => v.to_owned(),
                    _ => value,
                };
                (value, Some(e.repr(&key, now)))
            }
            None => {
                let err = self.missing(&key);
                if refresh || err.code == ErrorCode::NotDir {
                    return Err(err);
                }
                (value, None)
            }
        };
        let index = self.index + 1;
        if prev_node.is_some() {
            self.tree.remove_subtree(&key);
        } else {
            self.make_parents(&key, index)?;
        }
        let node = self.put_node(key, value, dir, expiration, index, now);
        self.index = index;
        Ok(Event {
            action: Action::Set,
            node,
            prev_node,
            refresh,
        })
    }

    fn create(
        &mut self,
        key: String,
        value: String,
        dir: bool,
        expiration: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Event, V2Error> {
        if key == "/" {
            return Err(self.root_read_only());
        }
        let index = self.index + 1;
        if let Err(e) = self.make_parents(&key, index) {
            // etcd counts a blocked create as a failed set as well.
            self.writes.record(Op::Set, false);
            return Err(e);
        }
        if self.tree.get(&key).is_some() {
            return Err(self.error(ErrorCode::NodeExist, key));
        }
        let node = self.put_node(key, value, dir, expiration, index, now);
        self.index = index;
        Ok(Event {
            action: Action::Create,
            node,
            prev_node: None,
            refresh: false,
        })
    }

    fn update(
        &mut self,
        path: String,
        value: String,
        expiration: Option<Timestamp>,
        refresh: bool,
        now: Timestamp,
    ) -> Result<Event, V2Error> {
        let key = clean_owned(path);
        if key == "/" {
            return Err(self.root_read_only());
        }
        let index = self.index + 1;
        let Some(entry) = self.tree.get(&key) else {
            return Err(self.missing(&key));
        };
        if entry.is_dir() && !value.is_empty() {
            return Err(self.error(ErrorCode::NotFile, key));
        }
        let prev_node = entry.repr(&key, now);
        if let Some(e) = self.tree.get_mut(&key) {
            // Quirk (oracle): a directory keeps its modifiedIndex; only the
            // event reports the new one.
            if let Kind::Key(v) = &mut e.kind {
                if !refresh {
                    *v = value;
                }
                e.modified = index;
            }
        }
        self.tree.set_expiration(&key, expiration);
        let mut node = match self.tree.get(&key) {
            Some(e) => e.repr(&key, now),
            None => prev_node.clone(),
        };
        node.modified_index = index;
        self.index = index;
        Ok(Event {
            action: Action::Update,
            node,
            prev_node: Some(prev_node),
            refresh,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn compare_and_swap(
        &mut self,
        path: String,
        value: String,
        prev_value: Option<String>,
        prev_index: Option<u64>,
        expiration: Option<Timestamp>,
        refresh: bool,
        now: Timestamp,
    ) -> Result<Event, V2Error> {
        let key = clean_owned(path);
        if key == "/" {
            return Err(self.root_read_only());
        }
        let Some(entry) = self.tree.get(&key) else {
            return Err(self.missing(&key));
        };
        if entry.is_dir() {
            return Err(self.error(ErrorCode::NotFile, key));
        }
        self.compare(entry, prev_value.as_deref(), prev_index)?;
        let index = self.index + 1;
        let prev_node = entry.repr(&key, now);
        if let Some(e) = self.tree.get_mut(&key) {
            if let Kind::Key(v) = &mut e.kind {
                if !refresh {
                    *v = value;
                }
            }
            e.modified = index;
        }
        self.tree.set_expiration(&key, expiration);
        let node = match self.tree.get(&key) {
            Some(e) => e.repr(&key, now),
            None => prev_node.clone(),
        };
        self.index = index;
        Ok(Event {
            action: Action::CompareAndSwap,
            node,
            prev_node: Some(prev_node),
            refresh,
        })
    }

    /// etcd's compare: every given condition must hold; the cause lists the
    /// failing ones.
    fn compare(
        &self,
        entry: &Entry,
        prev_value: Option<&str>,
        prev_index: Option<u64>,
    ) -> Result<(), V2Error> {
        let current = entry.value().unwrap_or("");
        let value_fail = prev_value.filter(|v| *v != current);
        let index_fail = prev_index.filter(|i| *i != entry.modified);
        let cause = match (value_fail, index_fail) {
            (None, None) => return Ok(()),
            (Some(v), None) => format!("[{v} != {current}]"),
            (None, Some(i)) => format!("[{i} != {}]", entry.modified),
            (Some(v), Some(i)) => format!("[{v} != {current}] [{i} != {}]", entry.modified),
        };
        Err(self.error(ErrorCode::TestFailed, cause))
    }

    /// The `node` of a delete/expire event: key, `dir`, indexes, no value.
    fn removal_node(key: &str, entry: &Entry, index: u64) -> Node {
        Node {
            key: Some(key.to_owned()),
            dir: entry.is_dir(),
            modified_index: index,
            created_index: entry.created,
            ..Node::default()
        }
    }

    fn delete(
        &mut self,
        path: String,
        dir: bool,
        recursive: bool,
        now: Timestamp,
    ) -> Result<Event, V2Error> {
        let key = clean_owned(path);
        if key == "/" {
            return Err(self.root_read_only());
        }
        let dir = dir || recursive;
        let Some(entry) = self.tree.get(&key) else {
            return Err(self.missing(&key));
        };
        if entry.is_dir() {
            if !dir {
                return Err(self.error(ErrorCode::NotFile, key));
            }
            if !recursive && self.tree.has_children(&key) {
                return Err(self.error(ErrorCode::DirNotEmpty, key));
            }
        }
        let index = self.index + 1;
        let node = Self::removal_node(&key, entry, index);
        let prev_node = entry.repr(&key, now);
        self.tree.remove_subtree(&key);
        self.index = index;
        Ok(Event {
            action: Action::Delete,
            node,
            prev_node: Some(prev_node),
            refresh: false,
        })
    }

    fn compare_and_delete(
        &mut self,
        path: String,
        prev_value: Option<String>,
        prev_index: Option<u64>,
        now: Timestamp,
    ) -> Result<Event, V2Error> {
        let key = clean_owned(path);
        if key == "/" {
            // etcd has no root check here: the root is a directory, and
            // its internal path trims to an empty cause (oracle).
            return Err(self.error(ErrorCode::NotFile, ""));
        }
        let Some(entry) = self.tree.get(&key) else {
            return Err(self.missing(&key));
        };
        if entry.is_dir() {
            return Err(self.error(ErrorCode::NotFile, key));
        }
        self.compare(entry, prev_value.as_deref(), prev_index)?;
        let index = self.index + 1;
        let node = Self::removal_node(&key, entry, index);
        let prev_node = entry.repr(&key, now);
        self.tree.remove_subtree(&key);
        self.index = index;
        Ok(Event {
            action: Action::CompareAndDelete,
            node,
            prev_node: Some(prev_node),
            refresh: false,
        })
    }

    /// Removes every node due at `cutoff`, earliest first (ties by key),
    /// each with its own index and `expire` event; a directory takes its
    /// subtree with it.
    fn expire(&mut self, cutoff: Timestamp, now: Timestamp) -> Vec<Arc<Event>> {
        let mut events = Vec::new();
        while let Some(key) = self.tree.next_due(cutoff) {
            let Some(entry) = self.tree.remove_subtree(&key) else {
                break;
            };
            self.index += 1;
            let event = Arc::new(Event {
                action: Action::Expire,
                node: Self::removal_node(&key, &entry, self.index),
                prev_node: Some(entry.repr(&key, now)),
                refresh: false,
            });
            self.writes.expire_count += 1;
            self.history.push(Arc::clone(&event));
            events.push(event);
        }
        events
    }
}

/// `clean_path` for an owned path, reusing it when already clean.
fn clean_owned(path: String) -> String {
    if path::is_clean(&path) {
        path
    } else {
        clean_path(&path).into_owned()
    }
}
