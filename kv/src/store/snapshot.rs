//! The whole replicated state as bytes, for Raft snapshots.
//!
//! The format is JSON with the tree flattened to a list of nodes in key
//! order (parents first), so neither writing nor reading recurses however
//! deep the key space is, and a restore checks every structural invariant
//! instead of trusting the bytes. Read counters are local and not included;
//! the history is, so `waitIndex` keeps working after a snapshot install.

use std::sync::Arc;

use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use super::history::{Event, History};
use super::path::{is_clean, parent};
use super::stats::{ReadCounters, WriteCounters};
use super::time::Timestamp;
use super::tree::{Entry, Kind, Tree};
use super::Store;

/// Bumped when the layout changes; restore refuses other versions.
const FORMAT: u32 = 1;

/// Largest history a snapshot may ask for (guards allocations driven by
/// untrusted bytes).
const MAX_HISTORY_CAPACITY: usize = 1 << 24;

/// Why snapshot bytes could not be restored. The store is never partially
/// restored: fix or replace the snapshot (or rebuild from the log).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("store snapshot is not valid JSON in the expected layout: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("store snapshot format {found} is not supported (this build reads format {FORMAT})")]
    Format { found: u32 },
    #[error("store snapshot is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeRef<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    created_index: u64,
    modified_index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NodeOwned {
    key: String,
    /// Absent for directories.
    #[serde(default)]
    value: Option<String>,
    created_index: u64,
    modified_index: u64,
    #[serde(default)]
    expiration: Option<Timestamp>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HistoryEvent {
    refresh: bool,
    event: Event,
}

#[derive(Serialize)]
struct HistoryEventRef<'a> {
    refresh: bool,
    event: &'a Event,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SnapshotOwned {
    format: u32,
    index: u64,
    history_capacity: usize,
    counters: WriteCounters,
    nodes: Vec<NodeOwned>,
    history: Vec<HistoryEvent>,
}

/// Serialises straight from the live structures (no copy of the tree).
struct SnapshotRef<'a>(&'a Store);

impl Serialize for SnapshotRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let store = self.0;
        let mut st = s.serialize_struct("Snapshot", 6)?;
        st.serialize_field("format", &FORMAT)?;
        st.serialize_field("index", &store.index)?;
        st.serialize_field("historyCapacity", &store.history.capacity())?;
        st.serialize_field("counters", &store.writes)?;
        st.serialize_field("nodes", &Nodes(&store.tree))?;
        st.serialize_field("history", &Events(&store.history))?;
        st.end()
    }
}

struct Nodes<'a>(&'a Tree);

impl Serialize for Nodes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(k, e)| NodeRef {
            key: k,
            value: e.value(),
            created_index: e.created,
            modified_index: e.modified,
            expiration: e.expiration,
        }))
    }
}

struct Events<'a>(&'a History);

impl Serialize for Events<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|e| HistoryEventRef {
            refresh: e.refresh,
            event: e,
        }))
    }
}

impl Store {
    /// The replicated state (tree, index, history, write counters) as bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        // Serialising plain data to memory cannot fail; an empty snapshot
        // would be refused by `restore` rather than silently accepted.
        serde_json::to_vec(&SnapshotRef(self)).unwrap_or_default()
    }

    /// Rebuilds a store from [`Store::snapshot`] bytes, checking that they
    /// describe a consistent store.
    pub fn restore(bytes: &[u8]) -> Result<Store, SnapshotError> {
        let snap: SnapshotOwned = serde_json::from_slice(bytes)?;
        if snap.format != FORMAT {
            return Err(SnapshotError::Format { found: snap.format });
        }
        let invalid = |msg: String| Err(SnapshotError::Invalid(msg));
        if snap.history_capacity == 0 || snap.history_capacity > MAX_HISTORY_CAPACITY {
            return invalid(format!("history capacity {}", snap.history_capacity));
        }

        let mut tree = Tree::default();
        for n in snap.nodes {
            if n.key == "/" || !is_clean(&n.key) {
                return invalid(format!("bad key {:?}", n.key));
            }
            if n.created_index > snap.index || n.modified_index > snap.index {
                return invalid(format!("{} has an index after the store's", n.key));
            }
            if tree.get(&n.key).is_some() {
                return invalid(format!("{} appears twice", n.key));
            }
            let entry = Entry {
                created: n.created_index,
                modified: n.modified_index,
                expiration: n.expiration,
                kind: n.value.map_or(Kind::Dir, Kind::Key),
            };
            tree.insert(n.key, entry);
        }
        for (key, _) in tree.iter() {
            let p = parent(key);
            if p != "/" && !tree.get(p).is_some_and(Entry::is_dir) {
                return invalid(format!("{key} has no parent directory"));
            }
        }

        if snap.history.len() > snap.history_capacity {
            return invalid("more history than its capacity".into());
        }
        let mut history = History::new(snap.history_capacity);
        let mut last = 0;
        for HistoryEvent { refresh, mut event } in snap.history {
            let i = event.index();
            if i <= last || i > snap.index {
                return invalid(format!("history event index {i} out of order"));
            }
            last = i;
            event.refresh = refresh;
            history.push(Arc::new(event));
        }

        Ok(Store {
            index: snap.index,
            tree,
            history,
            writes: snap.counters,
            reads: ReadCounters::default(),
        })
    }
}
