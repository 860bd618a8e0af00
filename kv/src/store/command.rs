//! What goes through the Raft log: one [`Command`] per entry, applied by
//! every member in the same order with the same result.
//!
//! Everything non-deterministic is resolved by the proposer before the
//! command is logged: a `ttl` becomes an absolute expiration (etcd computes
//! `now + ttl` on the member that receives the request), and an expiry sweep
//! carries the leader's clock. New kinds of entries (member attributes,
//! cluster version, v3 operations) are new variants; old logs stay readable
//! because existing variants never change shape. etcd keeps its bookkeeping
//! under a namespace users cannot see, but it still uses etcd indexes and
//! history slots; a bookkeeping variant should do the same (bump the index,
//! record an event no user watch can match) so indexes stay comparable.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::history::Event;
use super::time::Timestamp;

/// A change to the key space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Command {
    /// Create or replace (`PUT` without conditions): action `set`. With
    /// `dir` an empty directory replaces a key. With `refresh` the node must
    /// exist, keeps its value and only gets the new expiration (and, quirk,
    /// a new `createdIndex`); watchers are not woken.
    Set {
        path: String,
        value: String,
        dir: bool,
        expiration: Option<Timestamp>,
        refresh: bool,
    },
    /// Create only if absent (`PUT ?prevExist=false`): action `create`.
    Create {
        path: String,
        value: String,
        dir: bool,
        expiration: Option<Timestamp>,
    },
    /// `POST`: create a child of `parent` named after the new index,
    /// zero-padded to 20 digits: action `create`.
    CreateInOrder {
        parent: String,
        value: String,
        dir: bool,
        expiration: Option<Timestamp>,
    },
    /// Change an existing node (`PUT ?prevExist=true`): action `update`.
    /// The expiration is replaced (`None` makes the node permanent); a
    /// directory may only change its expiration.
    Update {
        path: String,
        value: String,
        expiration: Option<Timestamp>,
        refresh: bool,
    },
    /// Conditional write of a key: action `compareAndSwap`. Every given
    /// condition must hold.
    CompareAndSwap {
        path: String,
        value: String,
        prev_value: Option<String>,
        prev_index: Option<u64>,
        expiration: Option<Timestamp>,
        refresh: bool,
    },
    /// `DELETE`: a key, an empty directory (`dir`) or a subtree
    /// (`recursive`, which implies `dir`): action `delete`.
    Delete {
        path: String,
        dir: bool,
        recursive: bool,
    },
    /// Conditional delete of a key: action `compareAndDelete`.
    CompareAndDelete {
        path: String,
        prev_value: Option<String>,
        prev_index: Option<u64>,
    },
    /// The leader's expiry sweep: removes every node whose expiration is not
    /// after `now`, each with its own `expire` event and index.
    Sync { now: Timestamp },
}

/// The parameters of a `PUT /v2/keys/<path>`, already parsed and validated
/// by the HTTP layer (kv.md §3.1), with `ttl` resolved to an expiration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub value: String,
    pub dir: bool,
    pub expiration: Option<Timestamp>,
    pub refresh: bool,
    pub prev_exist: Option<bool>,
    /// `None` when absent (etcd rejects an empty `prevValue` before this).
    pub prev_value: Option<String>,
    /// `0` means no condition, as on the wire.
    pub prev_index: u64,
}

impl Command {
    /// etcd's dispatch of a `PUT` (kv.md §3.2): `prevExist=false` creates,
    /// `prevExist=true` updates (or compares and swaps when a condition is
    /// given), otherwise a condition means compare-and-swap and no condition
    /// means set.
    pub fn from_put(path: impl Into<String>, req: PutRequest) -> Command {
        let path = path.into();
        let prev_index = (req.prev_index != 0).then_some(req.prev_index);
        let conditional = prev_index.is_some() || req.prev_value.is_some();
        match req.prev_exist {
            Some(false) => Command::Create {
                path,
                value: req.value,
                dir: req.dir,
                expiration: req.expiration,
            },
            Some(true) if !conditional => Command::Update {
                path,
                value: req.value,
                expiration: req.expiration,
                refresh: req.refresh,
            },
            _ if conditional => Command::CompareAndSwap {
                path,
                value: req.value,
                prev_value: req.prev_value,
                prev_index,
                expiration: req.expiration,
                refresh: req.refresh,
            },
            _ => Command::Set {
                path,
                value: req.value,
                dir: req.dir,
                expiration: req.expiration,
                refresh: req.refresh,
            },
        }
    }

    /// etcd's dispatch of a `DELETE`: a condition means compare-and-delete.
    pub fn from_delete(
        path: impl Into<String>,
        dir: bool,
        recursive: bool,
        prev_value: Option<String>,
        prev_index: u64,
    ) -> Command {
        let path = path.into();
        if prev_value.is_some() || prev_index != 0 {
            Command::CompareAndDelete {
                path,
                prev_value,
                prev_index: (prev_index != 0).then_some(prev_index),
            }
        } else {
            Command::Delete {
                path,
                dir,
                recursive,
            }
        }
    }
}

/// What a successfully applied command produced. Events are shared (`Arc`)
/// because the same event goes to the history, the proposer and every
/// matching watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A key-space write: its event, whose index is the new etcd index.
    Event(Arc<Event>),
    /// An expiry sweep: one `expire` event per removed node, in index order
    /// (empty if nothing was due; then no index was used).
    Expired(Vec<Arc<Event>>),
}

impl Applied {
    /// The events, in index order, to dispatch to watchers.
    pub fn events(&self) -> &[Arc<Event>] {
        match self {
            Applied::Event(e) => std::slice::from_ref(e),
            Applied::Expired(es) => es,
        }
    }

    /// The single event of a key-space write.
    pub fn into_event(self) -> Option<Arc<Event>> {
        match self {
            Applied::Event(e) => Some(e),
            Applied::Expired(_) => None,
        }
    }
}
