//! openraft's `RaftLogStorage` over the [`Storage`] seam.
//!
//! This adapter exists so the WAL never learns openraft's types: here log
//! entries, the vote and purge points become bytes, and the WAL's completion
//! callbacks become openraft's `LogFlushed` notifications, which is what lets
//! Raft keep many appends in flight while the WAL batches their fsyncs.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, RaftLogReader, StorageIOError, Vote};

use super::types::{
    decode_entry, decode_json, encode_entry, encode_json, Entry, HardState, TypeConfig,
};
use crate::storage::{completed_async, PurgeMark, Storage, StorageError};

type RaftStorageError = openraft::StorageError<u64>;

fn read_err(e: impl ToString) -> RaftStorageError {
    StorageIOError::read_logs(AnyError::error(e.to_string())).into()
}

fn write_err(e: impl ToString) -> RaftStorageError {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

fn vote_err(e: impl ToString) -> RaftStorageError {
    StorageIOError::write_vote(AnyError::error(e.to_string())).into()
}

/// The Raft log and hard state, kept in a [`Storage`].
#[derive(Clone)]
pub struct LogStore {
    storage: Arc<dyn Storage>,
    hard: Arc<Mutex<HardState>>,
}

impl LogStore {
    /// Wraps `storage`, decoding the hard state it recovered.
    pub fn new(storage: Arc<dyn Storage>) -> Result<Self, StorageError> {
        let hard = match storage.hard_state() {
            Some(b) => decode_json::<HardState>(&b).map_err(|e| {
                StorageError::Metadata(format!("cannot decode the saved hard state: {e}"))
            })?,
            None => HardState::default(),
        };
        Ok(LogStore {
            storage,
            hard: Arc::new(Mutex::new(hard)),
        })
    }

    fn hard(&self) -> std::sync::MutexGuard<'_, HardState> {
        self.hard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn encoded_hard_state(
        &self,
        update: impl FnOnce(&mut HardState),
    ) -> Result<bytes::Bytes, String> {
        let mut h = self.hard();
        update(&mut h);
        encode_json(&*h)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        self.storage
            .entries(start, end)
            .iter()
            .map(|(_, b)| decode_entry(b))
            .collect::<Result<Vec<_>, String>>()
            .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let last_purged_log_id = match self.storage.purged() {
            Some(p) => Some(decode_json::<LogId<u64>>(&p.meta).map_err(read_err)?),
            None => None,
        };
        let last = self
            .storage
            .last_index()
            .map(|i| self.storage.entries(i, i + 1))
            .and_then(|v| v.into_iter().next());
        let last_log_id = match last {
            Some((_, b)) => Some(decode_entry(&b).map_err(read_err)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), RaftStorageError> {
        let bytes = self
            .encoded_hard_state(|h| h.vote = Some(*vote))
            .map_err(vote_err)?;
        completed_async(|done| self.storage.save_hard_state(bytes, true, done))
            .await
            .map_err(vote_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, RaftStorageError> {
        Ok(self.hard().vote)
    }

    /// Written without its own fsync: it rides along with the next synced
    /// write. Losing it in a crash only means re-learning the commit point
    /// from the leader, never acknowledging something unreplicated.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), RaftStorageError> {
        let bytes = self
            .encoded_hard_state(|h| h.committed = committed)
            .map_err(write_err)?;
        self.storage.save_hard_state(
            bytes,
            false,
            Box::new(|r| {
                if let Err(e) = r {
                    tracing::error!(error = %e, "raft: saving the committed index failed");
                }
            }),
        );
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, RaftStorageError> {
        Ok(self.hard().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let encoded = entries
            .into_iter()
            .map(|e| encode_entry(&e).map(|b| (e.log_id.index, b)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(write_err)?;
        self.storage.append(
            encoded,
            Box::new(move |r| {
                callback.log_io_completed(r.map_err(|e| io::Error::other(e.to_string())));
            }),
        );
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        completed_async(|done| self.storage.truncate(log_id.index, done))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        let meta = encode_json(&log_id).map_err(write_err)?;
        let mark = PurgeMark {
            index: log_id.index,
            meta,
        };
        completed_async(|done| self.storage.purge(mark, done))
            .await
            .map_err(write_err)
    }
}
