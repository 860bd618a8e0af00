//! openraft's `RaftStateMachine` over any [`StateMachine`], with snapshots
//! persisted through the [`Storage`] seam.
//!
//! The state machine itself lives in memory and is rebuilt at start from the
//! newest snapshot plus the log after it, as etcd's v2 store is. That keeps
//! the store's apply step a pure function with no I/O, and makes the snapshot
//! the only durable copy of applied state, which is why a snapshot is synced
//! to disk before Raft is allowed to purge the log behind it.

use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, StorageIOError, StoredMembership,
};

use super::types::{
    decode_json, encode_batch, encode_json, Entry, Meta, PeerNode, Reply, TypeConfig,
};
use crate::storage::{Storage, StorageError, StoredSnapshot};

type RaftStorageError = openraft::StorageError<u64>;

/// The replicated application: a deterministic function of the entries
/// applied to it. The store module implements this for the v2 data model.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies one committed command, returning the answer for the
    /// proposer. `index` is the Raft index of the entry that carried it;
    /// commands proposed concurrently are batched into one entry and share
    /// its index, so the store keeps its own (etcd) index. Must be
    /// deterministic: every member applies the same commands in the same
    /// order and must reach the same state.
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8>;
    /// The whole state, serialized.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a serialized snapshot.
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
}

#[derive(Default)]
struct Applied {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, PeerNode>,
    snapshot_seq: u64,
}

struct Shared<M> {
    sm: RwLock<M>,
    applied: Mutex<Applied>,
    storage: Arc<dyn Storage>,
}

/// Adapts a [`StateMachine`] to openraft. Clones share the machine.
pub struct SmStore<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for SmStore<M> {
    fn clone(&self) -> Self {
        SmStore {
            shared: self.shared.clone(),
        }
    }
}

fn sm_err(e: impl ToString) -> RaftStorageError {
    StorageIOError::read_state_machine(AnyError::error(e.to_string())).into()
}

fn snap_write_err(e: impl ToString) -> RaftStorageError {
    StorageIOError::write_snapshot(None, AnyError::error(e.to_string())).into()
}

fn snap_read_err(e: impl ToString) -> RaftStorageError {
    StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into()
}

impl<M: StateMachine> SmStore<M> {
    /// Restores `sm` from the newest snapshot in `storage`, if any.
    pub fn open(storage: Arc<dyn Storage>, mut sm: M) -> Result<Self, StorageError> {
        let mut applied = Applied::default();
        if let Some(s) = storage.load_snapshot()? {
            let meta: Meta = decode_json(&s.meta).map_err(|e| {
                StorageError::Metadata(format!("cannot decode snapshot metadata: {e}"))
            })?;
            sm.restore(&s.data).map_err(|e| {
                StorageError::Metadata(format!(
                    "the state machine cannot restore snapshot {}: {e}",
                    s.index
                ))
            })?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership;
        }
        Ok(SmStore {
            shared: Arc::new(Shared {
                sm: RwLock::new(sm),
                applied: Mutex::new(applied),
                storage,
            }),
        })
    }

    /// Runs `f` on the current state (a local, possibly stale read).
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        let g = self.shared.sm.read().unwrap_or_else(|e| e.into_inner());
        f(&g)
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.shared
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    async fn persist(&self, snap: StoredSnapshot) -> Result<(), RaftStorageError> {
        let storage = self.shared.storage.clone();
        tokio::task::spawn_blocking(move || storage.save_snapshot(&snap))
            .await
            .map_err(snap_write_err)?
            .map_err(snap_write_err)
    }
}

impl<M: StateMachine> RaftSnapshotBuilder<TypeConfig> for SmStore<M> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        // Hold the machine while reading the applied position so both
        // describe the same instant.
        let (data, meta) = {
            let sm = self.shared.sm.read().unwrap_or_else(|e| e.into_inner());
            let mut a = self.applied();
            a.snapshot_seq += 1;
            let id = match a.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, a.snapshot_seq),
                None => format!("0-0-{}", a.snapshot_seq),
            };
            let meta = Meta {
                last_log_id: a.last_applied,
                last_membership: a.membership.clone(),
                snapshot_id: id,
            };
            (sm.snapshot(), meta)
        };
        let stored = StoredSnapshot {
            term: meta.last_log_id.map_or(0, |l| l.leader_id.term),
            index: meta.last_log_id.map_or(0, |l| l.index),
            meta: encode_json(&meta).map_err(snap_write_err)?,
            data: data.clone().into(),
        };
        self.persist(stored).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<M: StateMachine> RaftStateMachine<TypeConfig> for SmStore<M> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, PeerNode>), RaftStorageError> {
        let a = self.applied();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut sm = self.shared.sm.write().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for e in entries {
            let reply = match &e.payload {
                EntryPayload::Blank => Reply::default(),
                EntryPayload::Normal(p) => {
                    let commands = p.commands().map_err(|err| {
                        RaftStorageError::from(StorageIOError::apply(
                            e.log_id,
                            AnyError::error(format!("undecodable entry: {err}")),
                        ))
                    })?;
                    let replies: Vec<Vec<u8>> = commands
                        .into_iter()
                        .map(|c| sm.apply(e.log_id.index, c))
                        .collect();
                    Reply(encode_batch(&replies))
                }
                EntryPayload::Membership(m) => {
                    self.applied().membership = StoredMembership::new(Some(e.log_id), m.clone());
                    Reply::default()
                }
            };
            self.applied().last_applied = Some(e.log_id);
            out.push(reply);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        // Durable first: once installed, the log before it may be purged.
        let stored = StoredSnapshot {
            term: meta.last_log_id.map_or(0, |l| l.leader_id.term),
            index: meta.last_log_id.map_or(0, |l| l.index),
            meta: encode_json(meta).map_err(snap_write_err)?,
            data: data.clone().into(),
        };
        self.persist(stored).await?;
        let mut sm = self.shared.sm.write().unwrap_or_else(|e| e.into_inner());
        sm.restore(&data).map_err(sm_err)?;
        let mut a = self.applied();
        a.last_applied = meta.last_log_id;
        a.membership = meta.last_membership.clone();
        tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            bytes = data.len(),
            "applied incoming snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let storage = self.shared.storage.clone();
        let loaded = tokio::task::spawn_blocking(move || storage.load_snapshot())
            .await
            .map_err(snap_read_err)?
            .map_err(snap_read_err)?;
        let Some(s) = loaded else {
            return Ok(None);
        };
        let meta: Meta = decode_json(&s.meta).map_err(snap_read_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(s.data.to_vec())),
        }))
    }
}
