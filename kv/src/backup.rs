//! `etcdctl backup` (kv.md §10.6): copy a member's newest snapshot and its
//! log into a new data directory under a fresh member and cluster ID.
//!
//! The copy is meant for disaster recovery, so two things matter more than
//! speed. It must work on a running member: files are read without taking
//! the member's lock, a record being written is left out like a torn tail,
//! and a snapshot or segment that disappears while being read (the member
//! took a snapshot and released old files) makes the copy start over. And
//! the copy must never pass for the member it came from: it gets new IDs and
//! is marked so that `keelson kv` refuses to start it except with
//! `--force-new-cluster`, which turns it into a one-member cluster holding
//! every key.

use std::path::{Path, PathBuf};

use crate::raft::types::{encode_json, WalIdentity};
use crate::server::{random_id, write_identity, ServerError, StoredIdentity, IDENTITY_FILE};
use crate::storage::{completed_blocking, StorageError, StoredSnapshot};
use crate::wal::snap::SnapDir;
use crate::wal::{read_log, LogContents, Wal, WalOptions};

/// Where to read and where to write; names follow etcdctl's flags.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// `--data-dir`: the member's data directory.
    pub data_dir: PathBuf,
    /// `--wal-dir`: the member's WAL when it is not under the data dir.
    pub wal_dir: Option<PathBuf>,
    /// `--backup-dir`: the new data directory.
    pub backup_dir: PathBuf,
    /// `--backup-wal-dir`: where the copy's WAL goes, if not under
    /// `backup_dir`.
    pub backup_wal_dir: Option<PathBuf>,
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The index of the snapshot copied, if the member had one.
    pub snapshot_index: Option<u64>,
    /// Log entries copied after it.
    pub entries: usize,
    /// The copy's new member ID.
    pub member_id: u64,
    /// The copy's new cluster ID.
    pub cluster_id: u64,
}

/// Why a backup failed. Nothing in the source is ever modified.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Identity(#[from] ServerError),
    /// The source holds no member data.
    #[error("{} is not a member data directory (no WAL in {})", data_dir.display(), wal_dir.display())]
    NotADataDir { data_dir: PathBuf, wal_dir: PathBuf },
    /// The destination already holds a member.
    #[error("{} already holds member data; back up into an empty directory", .0.display())]
    NotEmpty(PathBuf),
    /// The member kept changing its files faster than they could be read.
    #[error("the member's snapshot and log kept changing while being read ({0}); try again")]
    Unstable(String),
}

/// How often a copy of a busy member is retried.
const ATTEMPTS: usize = 10;

fn has_wal_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
    })
}

/// One consistent read of the newest snapshot and the log after it.
fn read_member(
    snap_dir: &Path,
    wal_dir: &Path,
) -> Result<Option<(Option<StoredSnapshot>, LogContents)>, StorageError> {
    // Snapshot first: the member saves a snapshot before it purges the log
    // behind it, so a log read afterwards can only be purged further than
    // this snapshot if a newer snapshot appeared in between (checked below).
    let snap = if snap_dir.exists() {
        SnapDir::open_read_only(snap_dir)
            .load_latest()?
            .map(|(s, _)| s)
    } else {
        None
    };
    let log = read_log(wal_dir)?;
    let purged = log.purged.as_ref().map(|p| p.index);
    let covered = snap.as_ref().map(|s| s.index);
    if purged.is_some_and(|p| covered.is_none_or(|c| c < p)) {
        return Ok(None);
    }
    Ok(Some((snap, log)))
}

/// Copies the member in `opts.data_dir` into `opts.backup_dir` under fresh
/// IDs. See the module documentation.
pub fn backup(opts: &BackupOptions) -> Result<BackupReport, BackupError> {
    let member = opts.data_dir.join("member");
    let wal_dir = opts.wal_dir.clone().unwrap_or_else(|| member.join("wal"));
    if !has_wal_files(&wal_dir) {
        return Err(BackupError::NotADataDir {
            data_dir: opts.data_dir.clone(),
            wal_dir,
        });
    }
    let out_member = opts.backup_dir.join("member");
    let out_wal = opts
        .backup_wal_dir
        .clone()
        .unwrap_or_else(|| out_member.join("wal"));
    if has_wal_files(&out_wal) || opts.backup_dir.join(IDENTITY_FILE).exists() {
        return Err(BackupError::NotEmpty(opts.backup_dir.clone()));
    }

    let mut last_problem = String::new();
    let mut read = None;
    for _ in 0..ATTEMPTS {
        match read_member(&member.join("snap"), &wal_dir) {
            Ok(Some(r)) => {
                read = Some(r);
                break;
            }
            Ok(None) => last_problem = "the log was purged past the snapshot read".into(),
            // A file released by the member between listing and reading.
            Err(StorageError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                last_problem = source.to_string();
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let Some((snap, log)) = read else {
        return Err(BackupError::Unstable(last_problem));
    };

    let member_id = random_id();
    let cluster_id = random_id();
    let mut wal_opts = WalOptions::new(&out_wal);
    wal_opts.metadata = encode_json(&WalIdentity { member_id })
        .map_err(|e| StorageError::Metadata(format!("cannot encode the WAL identity: {e}")))?;
    let wal = Wal::open(wal_opts)?;
    if let Some(mark) = log.purged.clone() {
        completed_blocking(|d| wal.purge(mark, d))?;
    }
    if let Some(hs) = log.hard_state.clone() {
        completed_blocking(|d| wal.save_hard_state(hs, true, d))?;
    }
    let entries = log.entries.len();
    for chunk in log.entries.chunks(1024) {
        completed_blocking(|d| wal.append(chunk.to_vec(), d))?;
    }
    wal.close()?;
    if let Some(s) = &snap {
        SnapDir::open(out_member.join("snap"), 0)?.save(s)?;
    }
    // Last: an interrupted backup has no identity file and is not taken for
    // a finished one.
    write_identity(
        &opts.backup_dir,
        &StoredIdentity {
            member_id,
            cluster_id,
            from_backup: true,
        },
    )?;
    Ok(BackupReport {
        snapshot_index: snap.map(|s| s.index),
        entries,
        member_id,
        cluster_id,
    })
}
