//! The storage seam: what Raft needs from a disk, and nothing else.
//!
//! Consensus is only as safe as the promise "acknowledged means on disk", and
//! that promise is the hardest part to test against a real filesystem. So the
//! Raft wiring talks to this trait, never to files: [`crate::wal::DiskStorage`]
//! keeps the promise with checksummed segments, group-committed `fdatasync` and
//! atomic snapshot files, while [`MemStorage`] keeps it trivially in memory so
//! that cluster tests are fast and deterministic. Everything the trait carries
//! is opaque bytes keyed by Raft index: the encoding of entries, votes and
//! snapshot metadata belongs to the Raft layer, so the log format cannot drift
//! with openraft's types.
//!
//! Mutations complete through a callback rather than by returning, because
//! that is what lets many writers share one `fsync` (group commit): the caller
//! gets its entries readable at once and its acknowledgement when they are
//! durable.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// Called exactly once when a mutation is durable (or has failed).
pub type Completion = Box<dyn FnOnce(Result<(), StorageError>) + Send + 'static>;

/// The default `--quota-backend-bytes` when the flag is 0, as in etcd: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Why storage refused or failed. Cloneable because one failed `fsync` has to
/// be reported to every writer that shared it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// An operating-system call failed. After a failed write or sync the log
    /// refuses all further writes: what reached the disk is unknown.
    #[error("wal: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// A record in the middle of the log failed its checksum or does not
    /// decode. Nothing was modified; the member must not start on this data.
    #[error(
        "wal: corrupt record in {} at byte offset {offset}: {reason}; nothing was modified. \
         Restore this member's data directory from a backup, or remove the member and re-add it empty",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A snapshot file failed its checksum or does not decode.
    #[error("snap: corrupt snapshot file {}: {reason}", path.display())]
    CorruptSnapshot { path: PathBuf, reason: String },
    /// The log is not contiguous (a file is missing, or a caller appended
    /// past the end).
    #[error("wal: log is not contiguous: {0}")]
    Gap(String),
    /// The write would take the stored data over `--quota-backend-bytes`.
    /// The text is etcd's, which clients and operators already recognise.
    #[error("etcdserver: mvcc: database space exceeded")]
    QuotaExceeded {
        quota: u64,
        used: u64,
        requested: u64,
    },
    /// Another process holds the directory lock.
    #[error("wal: {} is in use by another process (lock held)", path.display())]
    Locked { path: PathBuf },
    /// The data directory belongs to another member.
    #[error("wal: metadata mismatch: {0}")]
    Metadata(String),
    /// An earlier write or sync failed; the log accepts nothing more.
    #[error("wal: refusing writes after an earlier failure: {0}")]
    Poisoned(String),
    /// The storage was closed.
    #[error("wal: closed")]
    Closed,
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// The point up to which the log has been discarded (inclusive), with the
/// Raft layer's description of it (its log id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeMark {
    pub index: u64,
    pub meta: Bytes,
}

/// A snapshot as stored: the Raft layer's metadata and the state machine's
/// bytes, both opaque here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Term of the last entry the snapshot covers (used for file naming).
    pub term: u64,
    /// Index of the last entry the snapshot covers.
    pub index: u64,
    pub meta: Bytes,
    pub data: Bytes,
}

/// Counters exposed for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// `fdatasync` calls on log segments.
    pub fsyncs: u64,
    /// Batches written (one `write` each).
    pub batches: u64,
    /// Operations (appends, hard-state saves, ...) written.
    pub ops: u64,
    /// Bytes written to segments.
    pub bytes: u64,
    /// Live segment files.
    pub segments: u64,
}

/// Durable storage for a Raft log, its hard state and its snapshots.
///
/// Ordering: mutations take effect in memory, and reach the disk, in the
/// order the calls were made. Each mutation's [`Completion`] runs exactly once,
/// after the mutation (and everything before it) is durable.
pub trait Storage: Send + Sync + 'static {
    /// Metadata recorded when the log was created (the member identity).
    fn metadata(&self) -> Bytes;
    /// The last hard state saved (vote and committed, encoded by the caller).
    fn hard_state(&self) -> Option<Bytes>;
    /// How far the log has been purged.
    fn purged(&self) -> Option<PurgeMark>;
    /// Index of the last entry present, if any.
    fn last_index(&self) -> Option<u64>;
    /// The entries present in `[start, end)`, in order.
    fn entries(&self, start: u64, end: u64) -> Vec<(u64, Bytes)>;
    /// Append entries (consecutive indexes). An entry at an index already
    /// present replaces it and everything after it. Readable on return.
    fn append(&self, entries: Vec<(u64, Bytes)>, done: Completion);
    /// Replace the hard state. With `sync == false` the record is written
    /// but only made durable by the next synced operation (for hints such
    /// as the committed index, which Raft can recompute).
    fn save_hard_state(&self, state: Bytes, sync: bool, done: Completion);
    /// Remove entries with index `>= from`.
    fn truncate(&self, from: u64, done: Completion);
    /// Discard entries with index `<= mark.index`.
    fn purge(&self, mark: PurgeMark, done: Completion);
    /// Complete once everything submitted so far is durable.
    fn flush(&self, done: Completion);
    /// Durably store a snapshot (blocking); older ones beyond the retention
    /// limit are deleted.
    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError>;
    /// The newest snapshot, if any.
    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError>;
    /// Bytes of data held: live log entries plus the newest snapshot.
    fn data_bytes(&self) -> u64;
    /// The configured quota (`--quota-backend-bytes`).
    fn quota_bytes(&self) -> u64;
    /// Flush, stop background work and release the directory.
    fn close(&self) -> Result<(), StorageError>;

    /// WAL counters (fsyncs, batches, ...); zero for storage without a log
    /// file.
    fn stats(&self) -> WalStats {
        WalStats::default()
    }

    /// Refuse a write of `additional` bytes that would take the data over
    /// the quota. Checked before proposing, never on the replication path:
    /// a follower must accept what the leader committed.
    fn check_quota(&self, additional: u64) -> Result<(), StorageError> {
        let quota = self.quota_bytes();
        let used = self.data_bytes();
        if quota > 0 && used.saturating_add(additional) > quota {
            return Err(StorageError::QuotaExceeded {
                quota,
                used,
                requested: additional,
            });
        }
        Ok(())
    }
}

/// Submit a mutation and wait for its completion on an async task.
pub async fn completed_async(submit: impl FnOnce(Completion)) -> Result<(), StorageError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    submit(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.await.unwrap_or(Err(StorageError::Closed))
}

/// Submit a mutation and block the current (non-async) thread until it
/// completes.
pub fn completed_blocking(submit: impl FnOnce(Completion)) -> Result<(), StorageError> {
    let (tx, rx) = std::sync::mpsc::channel();
    submit(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv().unwrap_or(Err(StorageError::Closed))
}

/// The log's in-memory image, shared by both implementations so that they
/// agree on semantics (overwrite-on-append, purge, contiguity).
#[derive(Debug, Default, Clone)]
pub(crate) struct LogImage {
    pub(crate) entries: BTreeMap<u64, Bytes>,
    pub(crate) hard_state: Option<Bytes>,
    pub(crate) purged: Option<PurgeMark>,
    pub(crate) live_bytes: u64,
}

impl LogImage {
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.entries
            .last_key_value()
            .map(|(i, _)| *i)
            .or(self.purged.as_ref().map(|p| p.index))
    }

    /// Checks that `entries` can be appended without leaving a hole.
    pub(crate) fn check_append(&self, entries: &[(u64, Bytes)]) -> Result<(), StorageError> {
        let Some(first) = entries.first().map(|e| e.0) else {
            return Ok(());
        };
        for w in entries.windows(2) {
            if w[1].0 != w[0].0 + 1 {
                return Err(StorageError::Gap(format!(
                    "entries to append are not consecutive ({} then {})",
                    w[0].0, w[1].0
                )));
            }
        }
        if let Some(last) = self.last_index() {
            if first > last + 1 {
                return Err(StorageError::Gap(format!(
                    "append at {first} after last index {last}"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn insert(&mut self, index: u64, data: Bytes) {
        if self.purged.as_ref().is_some_and(|p| index <= p.index) {
            return;
        }
        if self.entries.range(index..).next().is_some() {
            self.truncate(index);
        }
        self.live_bytes += data.len() as u64;
        self.entries.insert(index, data);
    }

    pub(crate) fn truncate(&mut self, from: u64) {
        let removed = self.entries.split_off(&from);
        self.live_bytes -= removed.values().map(|d| d.len() as u64).sum::<u64>();
    }

    pub(crate) fn purge(&mut self, mark: PurgeMark) {
        if self.purged.as_ref().is_some_and(|p| p.index > mark.index) {
            return;
        }
        let keep = self.entries.split_off(&(mark.index + 1));
        self.live_bytes -= self.entries.values().map(|d| d.len() as u64).sum::<u64>();
        self.entries = keep;
        self.purged = Some(mark);
    }

    pub(crate) fn range(&self, start: u64, end: u64) -> Vec<(u64, Bytes)> {
        if start >= end {
            return Vec::new();
        }
        self.entries
            .range(start..end)
            .map(|(i, d)| (*i, d.clone()))
            .collect()
    }

    /// After recovery: entries must run without holes, starting right after
    /// the purge point when there is one.
    pub(crate) fn check_contiguous(&self) -> Result<(), StorageError> {
        let mut expect = self.purged.as_ref().map(|p| p.index + 1);
        for i in self.entries.keys() {
            if let Some(e) = expect {
                if *i != e {
                    return Err(StorageError::Gap(format!(
                        "expected entry {e}, found {i}: a WAL file is missing"
                    )));
                }
            }
            expect = Some(i + 1);
        }
        Ok(())
    }
}

/// In-memory [`Storage`] for deterministic tests: every mutation is durable
/// the moment it is made. Clones share state, so a test can "restart" a node
/// on the same storage after dropping the old one.
#[derive(Debug, Clone)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug)]
struct MemInner {
    image: LogImage,
    metadata: Bytes,
    snapshot: Option<StoredSnapshot>,
    quota: u64,
}

impl MemStorage {
    /// An empty storage with the given metadata and quota (0 = the default).
    pub fn new(metadata: impl Into<Bytes>, quota_bytes: u64) -> Self {
        MemStorage {
            inner: Arc::new(Mutex::new(MemInner {
                image: LogImage::default(),
                metadata: metadata.into(),
                snapshot: None,
                quota: if quota_bytes == 0 {
                    DEFAULT_QUOTA_BYTES
                } else {
                    quota_bytes
                },
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemInner> {
        // A panic while holding the lock cannot leave the image half-updated
        // in a way later readers could misinterpret, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemStorage {
    fn metadata(&self) -> Bytes {
        self.lock().metadata.clone()
    }
    fn hard_state(&self) -> Option<Bytes> {
        self.lock().image.hard_state.clone()
    }
    fn purged(&self) -> Option<PurgeMark> {
        self.lock().image.purged.clone()
    }
    fn last_index(&self) -> Option<u64> {
        self.lock().image.last_index()
    }
    fn entries(&self, start: u64, end: u64) -> Vec<(u64, Bytes)> {
        self.lock().image.range(start, end)
    }
    fn append(&self, entries: Vec<(u64, Bytes)>, done: Completion) {
        let r = {
            let mut g = self.lock();
            match g.image.check_append(&entries) {
                Ok(()) => {
                    for (i, d) in entries {
                        g.image.insert(i, d);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        done(r);
    }
    fn save_hard_state(&self, state: Bytes, _sync: bool, done: Completion) {
        self.lock().image.hard_state = Some(state);
        done(Ok(()));
    }
    fn truncate(&self, from: u64, done: Completion) {
        self.lock().image.truncate(from);
        done(Ok(()));
    }
    fn purge(&self, mark: PurgeMark, done: Completion) {
        self.lock().image.purge(mark);
        done(Ok(()));
    }
    fn flush(&self, done: Completion) {
        done(Ok(()));
    }
    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        self.lock().snapshot = Some(snapshot.clone());
        Ok(())
    }
    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        Ok(self.lock().snapshot.clone())
    }
    fn data_bytes(&self) -> u64 {
        let g = self.lock();
        g.image.live_bytes + g.snapshot.as_ref().map_or(0, |s| s.data.len() as u64)
    }
    fn quota_bytes(&self) -> u64 {
        self.lock().quota
    }
    fn close(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn mem_storage_overwrites_and_purges() {
        let s = MemStorage::new("m", 0);
        completed_blocking(|d| s.append(vec![(1, b("a")), (2, b("b")), (3, b("c"))], d)).unwrap();
        completed_blocking(|d| s.append(vec![(2, b("B"))], d)).unwrap();
        assert_eq!(s.entries(0, 10), vec![(1, b("a")), (2, b("B"))]);
        completed_blocking(|d| {
            s.purge(
                PurgeMark {
                    index: 1,
                    meta: b("x"),
                },
                d,
            )
        })
        .unwrap();
        assert_eq!(s.entries(0, 10), vec![(2, b("B"))]);
        assert_eq!(s.last_index(), Some(2));
        let gap = completed_blocking(|d| s.append(vec![(9, b("z"))], d));
        assert!(matches!(gap, Err(StorageError::Gap(_))));
    }

    #[test]
    fn quota_is_refused_with_etcds_words() {
        let s = MemStorage::new("m", 10);
        completed_blocking(|d| s.append(vec![(1, b("12345678"))], d)).unwrap();
        assert!(s.check_quota(2).is_ok());
        let e = s.check_quota(3).unwrap_err();
        assert_eq!(e.to_string(), "etcdserver: mvcc: database space exceeded");
    }
}
