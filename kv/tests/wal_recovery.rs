//! Crash recovery: torn tails are cut, corruption stops startup untouched.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use keelson_kv::storage::{completed_blocking, StorageError};
use keelson_kv::wal::record::Record;
use keelson_kv::wal::{Wal, WalOptions};

fn write_entries(
    dir: &Path,
    range: std::ops::RangeInclusive<u64>,
    segment_bytes: u64,
) -> Vec<PathBuf> {
    let mut opts = WalOptions::new(dir);
    opts.segment_bytes = segment_bytes;
    let w = Wal::open(opts).unwrap();
    for i in range {
        let data = Bytes::from(format!("value number {i}"));
        completed_blocking(|d| w.append(vec![(i, data)], d)).unwrap();
    }
    let files = w.segment_files().unwrap();
    w.close().unwrap();
    files
}

fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn indexes(w: &Wal) -> Vec<u64> {
    w.entries(0, u64::MAX).into_iter().map(|e| e.0).collect()
}

#[test]
fn incomplete_last_record_is_truncated_and_startup_continues() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_entries(dir.path(), 1..=10, u64::MAX);
    let last = files.last().unwrap();
    let good_len = fs::metadata(last).unwrap().len();
    let partial = Record::Entry {
        index: 11,
        data: Bytes::from_static(b"never acknowledged"),
    }
    .encode();
    append_bytes(last, &partial[..partial.len() / 2]);

    let w = Wal::open(WalOptions::new(dir.path())).unwrap();
    assert_eq!(indexes(&w), (1..=10).collect::<Vec<_>>());
    assert_eq!(fs::metadata(last).unwrap().len(), good_len);
    completed_blocking(|d| w.append(vec![(11, Bytes::from_static(b"after"))], d)).unwrap();
    w.close().unwrap();
    let w = Wal::open(WalOptions::new(dir.path())).unwrap();
    assert_eq!(w.last_index(), Some(11));
}

#[test]
fn zero_filled_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_entries(dir.path(), 1..=5, u64::MAX);
    let last = files.last().unwrap();
    let good_len = fs::metadata(last).unwrap().len();
    append_bytes(last, &[0u8; 4096]);
    let w = Wal::open(WalOptions::new(dir.path())).unwrap();
    assert_eq!(indexes(&w), vec![1, 2, 3, 4, 5]);
    assert_eq!(fs::metadata(last).unwrap().len(), good_len);
}

#[test]
fn bad_crc_in_the_final_record_followed_by_zeros_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_entries(dir.path(), 1..=5, u64::MAX);
    let last = files.last().unwrap();
    let mut bytes = fs::read(last).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x10; // inside entry 5's payload
    bytes.extend_from_slice(&[0u8; 100]);
    fs::write(last, &bytes).unwrap();
    let w = Wal::open(WalOptions::new(dir.path())).unwrap();
    assert_eq!(indexes(&w), vec![1, 2, 3, 4]);
}

#[test]
fn flipped_bit_mid_log_stops_startup_naming_file_and_offset_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_entries(dir.path(), 1..=20, u64::MAX);
    let last = files.last().unwrap().clone();
    let mut bytes = fs::read(&last).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    fs::write(&last, &bytes).unwrap();
    let before = snapshot_dir(dir.path());

    let err = Wal::open(WalOptions::new(dir.path())).unwrap_err();
    match &err {
        StorageError::Corrupt { path, offset, .. } => {
            assert_eq!(path, &last);
            assert!(
                *offset <= at as u64 && *offset > 0,
                "offset {offset}, flipped {at}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&last.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("byte offset {offset}")), "{msg}");
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert_eq!(snapshot_dir(dir.path()), before, "recovery modified files");
    // And it stays refused: nothing was "repaired" behind our back.
    assert!(matches!(
        Wal::open(WalOptions::new(dir.path())),
        Err(StorageError::Corrupt { .. })
    ));
    assert_eq!(snapshot_dir(dir.path()), before);
}

#[test]
fn damage_at_the_end_of_an_older_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_entries(dir.path(), 1..=40, 300);
    assert!(files.len() >= 3, "{files:?}");
    let older = &files[0];
    let mut bytes = fs::read(older).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x01;
    fs::write(older, &bytes).unwrap();
    let before = snapshot_dir(dir.path());
    let err = Wal::open(WalOptions::new(dir.path())).unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { path, .. } if path == older),
        "{err}"
    );
    assert_eq!(snapshot_dir(dir.path()), before);
}

#[test]
fn a_missing_middle_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_entries(dir.path(), 1..=40, 300);
    assert!(files.len() >= 3);
    fs::remove_file(&files[1]).unwrap();
    let err = Wal::open(WalOptions::new(dir.path())).unwrap_err();
    assert!(matches!(err, StorageError::Gap(_)), "{err}");
}
