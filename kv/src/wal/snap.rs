//! Snapshot files: the state machine at a log index, so the log behind it can
//! be thrown away.
//!
//! Once a snapshot replaces part of the log, the snapshot *is* the data, so a
//! crash while writing it must never leave a half-written file under a real
//! name: it is written to a temporary name, synced, renamed, and the
//! directory synced. Older snapshots are kept up to `--max-snapshots` (etcd
//! semantics, 0 = unlimited) as a fallback for operators, never consulted
//! automatically: loading an older snapshot than the log was purged to would
//! leave a hole.
//!
//! File: `{term:016x}-{index:016x}.snap` containing
//! `"KSNP" | version u8 | crc32c u32 LE | meta_len u32 LE | meta | data`,
//! the CRC covering everything after itself.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::storage::{StorageError, StoredSnapshot};

const MAGIC: &[u8; 4] = b"KSNP";
const VERSION: u8 = 1;
const SUFFIX: &str = ".snap";

/// A directory of snapshot files.
#[derive(Debug)]
pub struct SnapDir {
    dir: PathBuf,
    max_snapshots: usize,
}

/// Parses `{term:016x}-{index:016x}.snap`.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (t, i) = stem.split_once('-')?;
    if t.len() != 16 || i.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(t, 16).ok()?,
        u64::from_str_radix(i, 16).ok()?,
    ))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("sync directory", dir, e))
}

impl SnapDir {
    /// Opens (creating) the directory and removes leftover temporary files
    /// from a crash mid-write.
    pub fn open(dir: impl Into<PathBuf>, max_snapshots: usize) -> Result<Self, StorageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| StorageError::io("create directory", &dir, e))?;
        let d = SnapDir { dir, max_snapshots };
        for entry in d.read_dir()? {
            if entry.ends_with(".tmp") {
                let p = d.dir.join(&entry);
                fs::remove_file(&p).map_err(|e| StorageError::io("remove", &p, e))?;
            }
        }
        Ok(d)
    }

    /// A handle for reading a directory another process may be writing:
    /// nothing is created or cleaned up.
    pub fn open_read_only(dir: impl Into<PathBuf>) -> Self {
        SnapDir {
            dir: dir.into(),
            max_snapshots: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_dir(&self) -> Result<Vec<String>, StorageError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| StorageError::io("list", &self.dir, e))?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| StorageError::io("list", &self.dir, e))?;
            if let Some(n) = entry.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        Ok(names)
    }

    /// Snapshot files, oldest first.
    pub fn list(&self) -> Result<Vec<(u64, u64, PathBuf)>, StorageError> {
        let mut v: Vec<_> = self
            .read_dir()?
            .into_iter()
            .filter_map(|n| parse_name(&n).map(|(t, i)| (t, i, self.dir.join(n))))
            .collect();
        v.sort_by_key(|(t, i, _)| (*i, *t));
        Ok(v)
    }

    /// Writes a snapshot atomically, then applies the retention limit.
    /// Returns the file's size.
    pub fn save(&self, s: &StoredSnapshot) -> Result<u64, StorageError> {
        let name = format!("{:016x}-{:016x}{SUFFIX}", s.term, s.index);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut body = Vec::with_capacity(4 + s.meta.len() + s.data.len());
        body.extend_from_slice(&(s.meta.len() as u32).to_le_bytes());
        body.extend_from_slice(&s.meta);
        body.extend_from_slice(&s.data);
        let crc = crc32c::crc32c(&body);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&[VERSION])?;
            f.write_all(&crc.to_le_bytes())?;
            f.write_all(&body)?;
            f.sync_all()
        };
        write().map_err(|e| StorageError::io("write snapshot", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename snapshot", &tmp, e))?;
        sync_dir(&self.dir)?;
        self.retain()?;
        Ok((9 + body.len()) as u64)
    }

    fn retain(&self) -> Result<(), StorageError> {
        if self.max_snapshots == 0 {
            return Ok(());
        }
        let list = self.list()?;
        if list.len() <= self.max_snapshots {
            return Ok(());
        }
        let excess = list.len() - self.max_snapshots;
        for (_, _, p) in &list[..excess] {
            fs::remove_file(p).map_err(|e| StorageError::io("remove old snapshot", p, e))?;
        }
        sync_dir(&self.dir)
    }

    /// Reads and verifies one snapshot file.
    pub fn read(path: &Path, term: u64, index: u64) -> Result<StoredSnapshot, StorageError> {
        let buf = fs::read(path).map_err(|e| StorageError::io("read snapshot", path, e))?;
        let corrupt = |reason: &str| StorageError::CorruptSnapshot {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if buf.len() < 13 || &buf[..4] != MAGIC {
            return Err(corrupt("not a snapshot file (bad magic or too short)"));
        }
        if buf[4] != VERSION {
            return Err(corrupt(&format!("unsupported version {}", buf[4])));
        }
        let stored = u32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]);
        let body = &buf[9..];
        let actual = crc32c::crc32c(body);
        if stored != actual {
            return Err(corrupt(&format!(
                "crc mismatch (stored {stored:#010x}, computed {actual:#010x})"
            )));
        }
        let meta_len = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
        if body.len() - 4 < meta_len {
            return Err(corrupt("metadata length past end of file"));
        }
        Ok(StoredSnapshot {
            term,
            index,
            meta: Bytes::copy_from_slice(&body[4..4 + meta_len]),
            data: Bytes::copy_from_slice(&body[4 + meta_len..]),
        })
    }

    /// The newest snapshot and its file size. A corrupt newest snapshot is an
    /// error, not a reason to fall back silently.
    pub fn load_latest(&self) -> Result<Option<(StoredSnapshot, u64)>, StorageError> {
        let Some((t, i, p)) = self.list()?.pop() else {
            return Ok(None);
        };
        let s = Self::read(&p, t, i)?;
        let size = fs::metadata(&p)
            .map_err(|e| StorageError::io("stat", &p, e))?
            .len();
        Ok(Some((s, size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(i: u64) -> StoredSnapshot {
        StoredSnapshot {
            term: 1,
            index: i,
            meta: Bytes::from(format!("meta{i}")),
            data: Bytes::from(vec![i as u8; 100]),
        }
    }

    #[test]
    fn save_load_and_retain() {
        let d = tempfile::tempdir().unwrap();
        let s = SnapDir::open(d.path(), 2).unwrap();
        assert!(s.load_latest().unwrap().is_none());
        for i in 1..=4 {
            s.save(&snap(i * 10)).unwrap();
        }
        let list = s.list().unwrap();
        assert_eq!(list.iter().map(|x| x.1).collect::<Vec<_>>(), vec![30, 40]);
        assert_eq!(s.load_latest().unwrap().unwrap().0, snap(40));
    }

    #[test]
    fn corrupt_snapshot_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let s = SnapDir::open(d.path(), 0).unwrap();
        s.save(&snap(7)).unwrap();
        let p = s.list().unwrap()[0].2.clone();
        let mut b = fs::read(&p).unwrap();
        let n = b.len();
        b[n - 3] ^= 4;
        fs::write(&p, &b).unwrap();
        let e = s.load_latest().unwrap_err();
        assert!(matches!(e, StorageError::CorruptSnapshot { .. }), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()));
    }
}
