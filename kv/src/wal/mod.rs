//! The durable write-ahead log: segment files of checksummed records, written
//! by one thread that shares each `fdatasync` among everyone waiting.
//!
//! Why a dedicated writer: an `fsync` costs milliseconds on real disks, and
//! Raft cannot acknowledge a write before it. Paying one per proposal caps a
//! member at a few hundred writes a second (etcd issue #3466 and friends), so
//! every submitter puts its already-encoded records on a queue and the writer
//! drains whatever has accumulated into one `write` and one `fdatasync`, then
//! wakes all of them. Under load the batch grows by itself; idle, a lone write
//! pays no extra latency.
//!
//! Why segments with self-contained headers: after a snapshot the old log is
//! dead weight. Each segment begins with the hard state and purge point in
//! force when it was created, so whole old files can be deleted
//! (`--max-wals`) without rewriting anything.
//!
//! Why recovery is split into a pure scan and a separate repair: a torn tail
//! (crash mid-write) is cut off and startup continues, but a corrupt record
//! with data after it means acknowledged writes are damaged, so the member
//! refuses to start and modifies nothing, leaving the evidence intact for the
//! operator (see [`record`]).

pub mod record;
pub mod snap;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::storage::{
    Completion, LogImage, PurgeMark, Storage, StorageError, StoredSnapshot, WalStats,
    DEFAULT_QUOTA_BYTES,
};
use record::{Record, ScanEnd, SegmentHeader};
use snap::{sync_dir, SnapDir};

/// etcd's segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A batch stops growing at this many bytes so one slow write cannot hold
/// up the queue indefinitely.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".wal";

/// How to open a [`Wal`].
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// The WAL directory (`<data-dir>/member/wal` or `--wal-dir`).
    pub dir: PathBuf,
    /// Rotate to a new segment once the current one reaches this size.
    pub segment_bytes: u64,
    /// `--max-wals`: segment files kept once snapshots make them
    /// unnecessary; 0 keeps all.
    pub max_wals: usize,
    /// Recorded in every segment header when the log is created; an
    /// existing log keeps its own (compare with [`Wal::metadata`]).
    pub metadata: Bytes,
}

impl WalOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalOptions {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_wals: 5,
            metadata: Bytes::new(),
        }
    }
}

#[derive(Debug)]
struct SegmentInfo {
    seq: u64,
    path: PathBuf,
    size: u64,
    /// Highest entry index written into this segment.
    max_index: Option<u64>,
}

fn segment_name(seq: u64, next_index: u64) -> String {
    format!("{seq:016x}-{next_index:016x}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (seq, idx) = stem.split_once('-')?;
    if seq.len() != 16 || idx.len() != 16 {
        return None;
    }
    u64::from_str_radix(idx, 16).ok()?;
    u64::from_str_radix(seq, 16).ok()
}

#[derive(Default)]
struct Counters {
    fsyncs: AtomicU64,
    batches: AtomicU64,
    ops: AtomicU64,
    bytes: AtomicU64,
    segments: AtomicU64,
}

enum Effect {
    None,
    Entries { last: u64 },
    HardState(Bytes),
    Truncate { from: u64 },
    Purge(u64, Bytes),
}

struct Op {
    bytes: Vec<u8>,
    effect: Effect,
    sync: bool,
    done: Completion,
}

struct Submit {
    image: LogImage,
    tx: Option<mpsc::Sender<Op>>,
}

type Failure = Arc<Mutex<Option<StorageError>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent before anything
    // that can panic, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A write-ahead log directory. See the module documentation.
pub struct Wal {
    dir: PathBuf,
    metadata: Bytes,
    submit: Mutex<Submit>,
    failure: Failure,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held (and locked) until [`Wal::close`].
    dir_lock: Mutex<Option<File>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish()
    }
}

struct Recovered {
    image: LogImage,
    metadata: Bytes,
    segments: Vec<SegmentInfo>,
}

/// Reads every segment (read-only), replays it, and reports the torn tail to
/// cut, if any. Errors leave every file untouched.
fn recover(dir: &Path, names: &[(u64, String)]) -> Result<(Recovered, Option<u64>), StorageError> {
    let mut image = LogImage::default();
    let mut metadata = None;
    let mut segments = Vec::new();
    let mut torn_at = None;
    for (k, (seq, name)) in names.iter().enumerate() {
        let path = dir.join(name);
        let is_last = k + 1 == names.len();
        let buf = fs::read(&path).map_err(|e| StorageError::io("read", &path, e))?;
        let scan = record::scan(&buf, is_last);
        let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
            path: path.clone(),
            offset,
            reason,
        };
        let mut size = buf.len() as u64;
        match scan.end {
            ScanEnd::Clean => {}
            ScanEnd::Corrupt { offset, reason } => return Err(corrupt(offset, reason)),
            ScanEnd::Torn { offset, reason } => {
                tracing::warn!(
                    path = %path.display(), offset, %reason,
                    "wal: torn tail after a crash; truncating the unacknowledged bytes"
                );
                torn_at = Some(offset);
                size = offset;
            }
        }
        let mut max_index = None;
        for (i, (offset, rec)) in scan.records.into_iter().enumerate() {
            match rec {
                Record::Header(h) => {
                    if i != 0 {
                        return Err(corrupt(offset, "segment header in mid-segment".into()));
                    }
                    if h.seq != *seq {
                        return Err(corrupt(
                            offset,
                            format!("segment header says sequence {}, file name {seq}", h.seq),
                        ));
                    }
                    if metadata.is_none() {
                        metadata = Some(h.metadata.clone());
                    }
                    if let Some(hs) = h.hard_state {
                        image.hard_state = Some(hs);
                    }
                    if let Some((index, meta)) = h.purged {
                        image.purge(PurgeMark { index, meta });
                    }
                }
                _ if i == 0 => {
                    return Err(corrupt(
                        offset,
                        "segment does not start with a header".into(),
                    ))
                }
                Record::Entry { index, data } => {
                    max_index = max_index.max(Some(index));
                    image.insert(index, data);
                }
                Record::HardState(hs) => image.hard_state = Some(hs),
                Record::Truncate { from } => image.truncate(from),
                Record::Purge { index, meta } => image.purge(PurgeMark { index, meta }),
            }
        }
        if metadata.is_none() {
            return Err(corrupt(0, "segment has no header".into()));
        }
        segments.push(SegmentInfo {
            seq: *seq,
            path,
            size,
            max_index,
        });
    }
    image.check_contiguous()?;
    Ok((
        Recovered {
            image,
            metadata: metadata.unwrap_or_default(),
            segments,
        },
        torn_at,
    ))
}

/// What a log directory holds, read without locking or modifying it.
#[derive(Debug, Clone)]
pub struct LogContents {
    /// The metadata recorded when the log was created.
    pub metadata: Bytes,
    /// The last hard state saved.
    pub hard_state: Option<Bytes>,
    /// How far the log was purged.
    pub purged: Option<PurgeMark>,
    /// The live entries, in index order.
    pub entries: Vec<(u64, Bytes)>,
}

/// Reads a WAL directory that another process may be writing (`kvctl
/// backup` on a running member): no lock is taken and nothing is modified.
/// A torn tail on the newest segment is the writer's record in progress and
/// is left out; a segment deleted while reading surfaces as an I/O error
/// that the caller can retry.
pub fn read_log(dir: &Path) -> Result<LogContents, StorageError> {
    let mut names = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if let Some(seq) = parse_segment_name(name) {
                names.push((seq, name.to_string()));
            }
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(StorageError::Gap(format!(
            "no WAL segment files in {}",
            dir.display()
        )));
    }
    let (r, _) = recover(dir, &names)?;
    Ok(LogContents {
        metadata: r.metadata,
        hard_state: r.image.hard_state.clone(),
        purged: r.image.purged.clone(),
        entries: r.image.range(0, u64::MAX),
    })
}

/// Creates a segment atomically (temp file, header, sync, rename, sync dir).
fn create_segment(
    dir: &Path,
    seq: u64,
    next_index: u64,
    header: SegmentHeader,
) -> Result<(File, SegmentInfo), StorageError> {
    let name = segment_name(seq, next_index);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let bytes = Record::Header(header).encode();
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    };
    write().map_err(|e| StorageError::io("create segment", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename segment", &tmp, e))?;
    sync_dir(dir)?;
    let f = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    Ok((
        f,
        SegmentInfo {
            seq,
            path,
            size: bytes.len() as u64,
            max_index: None,
        },
    ))
}

impl Wal {
    /// Opens the log in `opts.dir`, creating it if empty, recovering it
    /// otherwise. A torn tail is truncated; corruption anywhere else is an
    /// error that names the file and byte offset and modifies nothing.
    pub fn open(opts: WalOptions) -> Result<Wal, StorageError> {
        let dir = opts.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| StorageError::io("create directory", &dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StorageError::io("open", &lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StorageError::Locked { path: dir }),
            Err(TryLockError::Error(e)) => return Err(StorageError::io("lock", &lock_path, e)),
        }

        let mut names = Vec::new();
        let rd = fs::read_dir(&dir).map_err(|e| StorageError::io("list", &dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| StorageError::io("list", &dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Some(seq) = parse_segment_name(&name) {
                names.push((seq, name));
            }
        }
        names.sort();
        for w in names.windows(2) {
            if w[1].0 != w[0].0 + 1 {
                return Err(StorageError::Gap(format!(
                    "segment files {} and {} are not consecutive in {}",
                    w[0].1,
                    w[1].1,
                    dir.display()
                )));
            }
        }

        let (recovered, active) = if names.is_empty() {
            let (f, info) = create_segment(
                &dir,
                0,
                0,
                SegmentHeader {
                    seq: 0,
                    metadata: opts.metadata.clone(),
                    hard_state: None,
                    purged: None,
                },
            )?;
            (
                Recovered {
                    image: LogImage::default(),
                    metadata: opts.metadata.clone(),
                    segments: vec![info],
                },
                f,
            )
        } else {
            let (recovered, torn_at) = recover(&dir, &names)?;
            // Everything is validated; only now may a file be modified.
            let last = recovered
                .segments
                .last()
                .map(|s| s.path.clone())
                .unwrap_or_default();
            let f = OpenOptions::new()
                .append(true)
                .open(&last)
                .map_err(|e| StorageError::io("open", &last, e))?;
            if let Some(offset) = torn_at {
                f.set_len(offset)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| StorageError::io("truncate torn tail of", &last, e))?;
            }
            (recovered, f)
        };
        // Leftover temporary segments from a crash during rotation hold
        // nothing acknowledged.
        for entry in fs::read_dir(&dir).map_err(|e| StorageError::io("list", &dir, e))? {
            let entry = entry.map_err(|e| StorageError::io("list", &dir, e))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(".wal.tmp")) {
                let p = entry.path();
                fs::remove_file(&p).map_err(|e| StorageError::io("remove", &p, e))?;
            }
        }

        let counters = Arc::new(Counters::default());
        counters
            .segments
            .store(recovered.segments.len() as u64, Ordering::Relaxed);
        let failure: Failure = Arc::new(Mutex::new(None));
        let (tx, rx) = mpsc::channel();
        let image = recovered.image;
        let writer = Writer {
            dir: dir.clone(),
            rx,
            active,
            segments: recovered.segments,
            segment_bytes: opts.segment_bytes.max(1),
            max_wals: opts.max_wals,
            metadata: recovered.metadata.clone(),
            hard_state: image.hard_state.clone(),
            purged: image.purged.as_ref().map(|p| (p.index, p.meta.clone())),
            last_index: image.last_index(),
            dirty: false,
            failure: failure.clone(),
            counters: counters.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("keelson-wal".into())
            .spawn(move || writer.run())
            .map_err(|e| StorageError::io("spawn writer thread for", &dir, e))?;
        Ok(Wal {
            dir,
            metadata: recovered.metadata,
            submit: Mutex::new(Submit {
                image,
                tx: Some(tx),
            }),
            failure,
            counters,
            writer: Mutex::new(Some(handle)),
            dir_lock: Mutex::new(Some(lock_file)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata recorded when this log was created.
    pub fn metadata(&self) -> Bytes {
        self.metadata.clone()
    }

    /// Counters: fsyncs, batches, ops, bytes, live segments.
    pub fn stats(&self) -> WalStats {
        let c = &self.counters;
        WalStats {
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            ops: c.ops.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            segments: c.segments.load(Ordering::Relaxed),
        }
    }

    /// Segment files currently on disk, oldest first.
    pub fn segment_files(&self) -> Result<Vec<PathBuf>, StorageError> {
        let mut v: Vec<(u64, PathBuf)> = fs::read_dir(&self.dir)
            .map_err(|e| StorageError::io("list", &self.dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let seq = parse_segment_name(e.file_name().to_str()?)?;
                Some((seq, e.path()))
            })
            .collect();
        v.sort();
        Ok(v.into_iter().map(|(_, p)| p).collect())
    }

    fn with_image<R>(&self, f: impl FnOnce(&LogImage) -> R) -> R {
        f(&lock(&self.submit).image)
    }

    /// Updates the in-memory image and queues the record, atomically, so that
    /// memory order and disk order agree.
    fn submit(
        &self,
        done: Completion,
        sync: bool,
        build: impl FnOnce(&mut LogImage) -> Result<(Vec<u8>, Effect), StorageError>,
    ) {
        if let Some(e) = lock(&self.failure).clone() {
            return done(Err(StorageError::Poisoned(e.to_string())));
        }
        let mut g = lock(&self.submit);
        let Some(tx) = g.tx.clone() else {
            drop(g);
            return done(Err(StorageError::Closed));
        };
        match build(&mut g.image) {
            Ok((bytes, effect)) => {
                let op = Op {
                    bytes,
                    effect,
                    sync,
                    done,
                };
                if let Err(mpsc::SendError(op)) = tx.send(op) {
                    drop(g);
                    (op.done)(Err(StorageError::Closed));
                }
            }
            Err(e) => {
                drop(g);
                done(Err(e));
            }
        }
    }

    /// Appends entries; they are readable on return, durable at `done`.
    pub fn append(&self, entries: Vec<(u64, Bytes)>, done: Completion) {
        let mut bytes = Vec::with_capacity(entries.iter().map(|e| e.1.len() + 17).sum());
        for (index, data) in &entries {
            Record::Entry {
                index: *index,
                data: data.clone(),
            }
            .encode_into(&mut bytes);
        }
        self.submit(done, true, move |image| {
            image.check_append(&entries)?;
            let last = entries.last().map(|e| e.0);
            for (i, d) in entries {
                image.insert(i, d);
            }
            let effect = match last {
                Some(last) => Effect::Entries { last },
                None => Effect::None,
            };
            Ok((bytes, effect))
        });
    }

    pub fn save_hard_state(&self, state: Bytes, sync: bool, done: Completion) {
        let bytes = Record::HardState(state.clone()).encode();
        self.submit(done, sync, move |image| {
            image.hard_state = Some(state.clone());
            Ok((bytes, Effect::HardState(state)))
        });
    }

    pub fn truncate(&self, from: u64, done: Completion) {
        self.submit(done, true, move |image| {
            image.truncate(from);
            Ok((
                Record::Truncate { from }.encode(),
                Effect::Truncate { from },
            ))
        });
    }

    pub fn purge(&self, mark: PurgeMark, done: Completion) {
        self.submit(done, true, move |image| {
            let bytes = Record::Purge {
                index: mark.index,
                meta: mark.meta.clone(),
            }
            .encode();
            let effect = Effect::Purge(mark.index, mark.meta.clone());
            image.purge(mark);
            Ok((bytes, effect))
        });
    }

    pub fn flush(&self, done: Completion) {
        self.submit(done, true, |_| Ok((Vec::new(), Effect::None)));
    }

    pub fn hard_state(&self) -> Option<Bytes> {
        self.with_image(|i| i.hard_state.clone())
    }
    pub fn purged(&self) -> Option<PurgeMark> {
        self.with_image(|i| i.purged.clone())
    }
    pub fn last_index(&self) -> Option<u64> {
        self.with_image(|i| i.last_index())
    }
    pub fn entries(&self, start: u64, end: u64) -> Vec<(u64, Bytes)> {
        self.with_image(|i| i.range(start, end))
    }
    /// Bytes of live (unpurged) entries.
    pub fn live_bytes(&self) -> u64 {
        self.with_image(|i| i.live_bytes)
    }

    /// Makes everything durable and stops the writer. Later submissions
    /// fail with [`StorageError::Closed`]. Idempotent.
    pub fn close(&self) -> Result<(), StorageError> {
        drop(lock(&self.submit).tx.take());
        if let Some(h) = lock(&self.writer).take() {
            if h.join().is_err() {
                return Err(StorageError::Poisoned("wal writer thread panicked".into()));
            }
        }
        // Dropping the file releases the directory lock.
        drop(lock(&self.dir_lock).take());
        match lock(&self.failure).clone() {
            Some(e) => Err(StorageError::Poisoned(e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "wal: close on drop failed");
        }
    }
}

struct Writer {
    dir: PathBuf,
    rx: mpsc::Receiver<Op>,
    active: File,
    segments: Vec<SegmentInfo>,
    segment_bytes: u64,
    max_wals: usize,
    metadata: Bytes,
    hard_state: Option<Bytes>,
    purged: Option<(u64, Bytes)>,
    last_index: Option<u64>,
    /// Bytes written since the last sync.
    dirty: bool,
    failure: Failure,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut size = first.bytes.len();
            let mut batch = vec![first];
            while size < MAX_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(op) => {
                        size += op.bytes.len();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&batch);
            for op in batch {
                (op.done)(result.clone());
            }
        }
        if self.dirty && lock(&self.failure).is_none() {
            if let Err(e) = self.sync() {
                tracing::error!(error = %e, "wal: final sync failed");
                *lock(&self.failure) = Some(e);
            }
        }
    }

    fn write_batch(&mut self, batch: &[Op]) -> Result<(), StorageError> {
        if let Some(e) = lock(&self.failure).clone() {
            return Err(StorageError::Poisoned(e.to_string()));
        }
        let r = self.write_batch_inner(batch);
        if let Err(e) = &r {
            tracing::error!(error = %e, "wal: write failed; refusing further writes");
            *lock(&self.failure) = Some(e.clone());
        }
        r
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default()
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.active
            .sync_data()
            .map_err(|e| StorageError::io("fdatasync", self.active_path(), e))?;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.dirty = false;
        Ok(())
    }

    fn write_batch_inner(&mut self, batch: &[Op]) -> Result<(), StorageError> {
        let total: usize = batch.iter().map(|o| o.bytes.len()).sum();
        if total > 0
            && self
                .segments
                .last()
                .is_some_and(|s| s.size >= self.segment_bytes)
        {
            self.rotate()?;
        }
        if total > 0 {
            let mut buf = Vec::with_capacity(total);
            for op in batch {
                buf.extend_from_slice(&op.bytes);
            }
            self.active
                .write_all(&buf)
                .map_err(|e| StorageError::io("write", self.active_path(), e))?;
            self.dirty = true;
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(total as u64, Ordering::Relaxed);
            if let Some(s) = self.segments.last_mut() {
                s.size += total as u64;
            }
        }
        self.counters
            .ops
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut purged_now = false;
        for op in batch {
            match &op.effect {
                Effect::None => {}
                Effect::Entries { last } => {
                    self.last_index = Some(*last);
                    if let Some(s) = self.segments.last_mut() {
                        s.max_index = s.max_index.max(Some(*last));
                    }
                }
                Effect::HardState(h) => self.hard_state = Some(h.clone()),
                Effect::Truncate { from } => {
                    self.last_index = self.last_index.map(|l| l.min(from.saturating_sub(1)));
                }
                Effect::Purge(index, meta) => {
                    if self.purged.as_ref().is_none_or(|p| p.0 <= *index) {
                        self.purged = Some((*index, meta.clone()));
                        self.last_index = self.last_index.max(Some(*index));
                        purged_now = true;
                    }
                }
            }
        }
        if self.dirty && batch.iter().any(|o| o.sync) {
            self.sync()?;
        }
        if purged_now && !self.dirty {
            self.release_segments()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            self.sync()?;
        }
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let next = self.last_index.map_or(0, |i| i + 1);
        let (f, info) = create_segment(
            &self.dir,
            seq,
            next,
            SegmentHeader {
                seq,
                metadata: self.metadata.clone(),
                hard_state: self.hard_state.clone(),
                purged: self.purged.clone(),
            },
        )?;
        self.active = f;
        self.segments.push(info);
        self.counters
            .segments
            .store(self.segments.len() as u64, Ordering::Relaxed);
        // The segment just closed may now be beyond --max-wals.
        self.release_segments()
    }

    /// Deletes the oldest segments whose entries are all behind the purge
    /// point, while more than `max_wals` remain (etcd's `--max-wals`).
    fn release_segments(&mut self) -> Result<(), StorageError> {
        let Some(purged) = self.purged.as_ref().map(|p| p.0) else {
            return Ok(());
        };
        if self.max_wals == 0 {
            return Ok(());
        }
        let mut removed = false;
        while self.segments.len() > self.max_wals.max(1) {
            let s = &self.segments[0];
            if s.max_index.is_some_and(|m| m > purged) {
                break;
            }
            fs::remove_file(&s.path).map_err(|e| StorageError::io("remove", &s.path, e))?;
            tracing::info!(path = %s.path.display(), "wal: removed segment behind snapshot");
            self.segments.remove(0);
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
            self.counters
                .segments
                .store(self.segments.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Where and how [`DiskStorage`] keeps its files.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    pub wal: WalOptions,
    /// `<data-dir>/member/snap`.
    pub snap_dir: PathBuf,
    /// `--max-snapshots` (0 = unlimited).
    pub max_snapshots: usize,
    /// `--quota-backend-bytes` (0 = 2 GiB).
    pub quota_bytes: u64,
}

impl DiskOptions {
    /// etcd's layout: `<data-dir>/member/{wal,snap}`, with `--wal-dir`
    /// moving the log elsewhere; etcd's defaults for the limits.
    pub fn new(data_dir: &Path, wal_dir: Option<&Path>) -> Self {
        let member = data_dir.join("member");
        let wal = wal_dir.map_or_else(|| member.join("wal"), Path::to_path_buf);
        DiskOptions {
            wal: WalOptions::new(wal),
            snap_dir: member.join("snap"),
            max_snapshots: 5,
            quota_bytes: 0,
        }
    }
}

/// The real [`Storage`]: a [`Wal`] plus a [`SnapDir`].
#[derive(Debug)]
pub struct DiskStorage {
    wal: Wal,
    snaps: SnapDir,
    snap_bytes: AtomicU64,
    quota: u64,
}

impl DiskStorage {
    /// Opens (or creates) both directories and checks that the log and the
    /// newest snapshot fit together.
    pub fn open(opts: DiskOptions) -> Result<Self, StorageError> {
        let wal = Wal::open(opts.wal)?;
        let snaps = SnapDir::open(opts.snap_dir, opts.max_snapshots)?;
        let latest = snaps.load_latest()?;
        if let Some(p) = wal.purged() {
            let snap_index = latest.as_ref().map(|(s, _)| s.index);
            if snap_index.is_none_or(|i| i < p.index) {
                return Err(StorageError::Gap(format!(
                    "the log was purged up to {} but the newest snapshot in {} covers only {}",
                    p.index,
                    snaps.dir().display(),
                    snap_index.map_or("nothing".to_string(), |i| i.to_string())
                )));
            }
        }
        Ok(DiskStorage {
            wal,
            snaps,
            snap_bytes: AtomicU64::new(latest.map_or(0, |(s, _)| s.data.len() as u64)),
            quota: if opts.quota_bytes == 0 {
                DEFAULT_QUOTA_BYTES
            } else {
                opts.quota_bytes
            },
        })
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    pub fn snap_dir(&self) -> &SnapDir {
        &self.snaps
    }
}

impl Storage for DiskStorage {
    fn metadata(&self) -> Bytes {
        self.wal.metadata()
    }
    fn hard_state(&self) -> Option<Bytes> {
        self.wal.hard_state()
    }
    fn purged(&self) -> Option<PurgeMark> {
        self.wal.purged()
    }
    fn last_index(&self) -> Option<u64> {
        self.wal.last_index()
    }
    fn entries(&self, start: u64, end: u64) -> Vec<(u64, Bytes)> {
        self.wal.entries(start, end)
    }
    fn append(&self, entries: Vec<(u64, Bytes)>, done: Completion) {
        self.wal.append(entries, done)
    }
    fn save_hard_state(&self, state: Bytes, sync: bool, done: Completion) {
        self.wal.save_hard_state(state, sync, done)
    }
    fn truncate(&self, from: u64, done: Completion) {
        self.wal.truncate(from, done)
    }
    fn purge(&self, mark: PurgeMark, done: Completion) {
        self.wal.purge(mark, done)
    }
    fn flush(&self, done: Completion) {
        self.wal.flush(done)
    }
    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        self.snaps.save(snapshot)?;
        self.snap_bytes
            .store(snapshot.data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        Ok(self.snaps.load_latest()?.map(|(s, _)| s))
    }
    fn data_bytes(&self) -> u64 {
        self.wal.live_bytes() + self.snap_bytes.load(Ordering::Relaxed)
    }
    fn quota_bytes(&self) -> u64 {
        self.quota
    }
    fn close(&self) -> Result<(), StorageError> {
        self.wal.close()
    }
    fn stats(&self) -> WalStats {
        self.wal.stats()
    }
}
