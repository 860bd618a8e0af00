//! WAL round trips: what was acknowledged comes back after reopening.

use bytes::Bytes;
use keelson_kv::storage::{completed_blocking, PurgeMark, Storage, StorageError};
use keelson_kv::wal::{DiskOptions, DiskStorage, Wal, WalOptions};

fn b(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

fn append(w: &Wal, entries: Vec<(u64, Bytes)>) {
    completed_blocking(|d| w.append(entries, d)).unwrap();
}

#[test]
fn round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = WalOptions::new(dir.path().join("wal"));
    opts.metadata = b("member-1");
    opts.segment_bytes = 256; // force several rotations
    {
        let w = Wal::open(opts.clone()).unwrap();
        for i in 1..=50u64 {
            append(&w, vec![(i, b(format!("entry {i}")))]);
        }
        completed_blocking(|d| w.save_hard_state(b("vote=3"), true, d)).unwrap();
        // A conflicting suffix: replace 41.. with a new 41..45.
        completed_blocking(|d| w.truncate(41, d)).unwrap();
        append(&w, (41..=45).map(|i| (i, b(format!("new {i}")))).collect());
        // Overwrite without an explicit truncate also drops the tail.
        append(&w, vec![(45, b("newest 45"))]);
        completed_blocking(|d| {
            w.purge(
                PurgeMark {
                    index: 10,
                    meta: b("log id 10"),
                },
                d,
            )
        })
        .unwrap();
        assert!(w.stats().segments > 1, "{:?}", w.stats());
        w.close().unwrap();
    }
    let w = Wal::open(opts).unwrap();
    assert_eq!(w.metadata(), b("member-1"));
    assert_eq!(w.hard_state(), Some(b("vote=3")));
    assert_eq!(
        w.purged(),
        Some(PurgeMark {
            index: 10,
            meta: b("log id 10")
        })
    );
    assert_eq!(w.last_index(), Some(45));
    let got = w.entries(0, 100);
    assert_eq!(got.len(), 35);
    assert_eq!(got[0], (11, b("entry 11")));
    assert_eq!(got[29], (40, b("entry 40")));
    assert_eq!(got[30], (41, b("new 41")));
    assert_eq!(got[34], (45, b("newest 45")));
    // And appending continues where it left off.
    append(&w, vec![(46, b("after restart"))]);
    assert_eq!(w.last_index(), Some(46));
}

#[test]
fn lazy_hard_state_is_made_durable_by_close() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::new(dir.path());
    {
        let w = Wal::open(opts.clone()).unwrap();
        completed_blocking(|d| w.save_hard_state(b("committed=7"), false, d)).unwrap();
        w.close().unwrap();
        // Closed logs refuse, clearly.
        let e = completed_blocking(|d| w.append(vec![(1, b("x"))], d)).unwrap_err();
        assert!(matches!(e, StorageError::Closed), "{e}");
    }
    let w = Wal::open(opts).unwrap();
    assert_eq!(w.hard_state(), Some(b("committed=7")));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _w = Wal::open(WalOptions::new(dir.path())).unwrap();
    let e = Wal::open(WalOptions::new(dir.path())).unwrap_err();
    assert!(matches!(e, StorageError::Locked { .. }), "{e}");
}

#[test]
fn appending_past_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(WalOptions::new(dir.path())).unwrap();
    append(&w, vec![(1, b("a"))]);
    let e = completed_blocking(|d| w.append(vec![(3, b("c"))], d)).unwrap_err();
    assert!(matches!(e, StorageError::Gap(_)), "{e}");
    assert_eq!(w.last_index(), Some(1));
}

#[test]
fn wal_dir_is_separate_from_the_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let waldir = tempfile::tempdir().unwrap();
    let opts = DiskOptions::new(data.path(), Some(waldir.path()));
    let s = DiskStorage::open(opts).unwrap();
    completed_blocking(|d| s.append(vec![(1, b("x"))], d)).unwrap();
    assert!(!s.wal().segment_files().unwrap().is_empty());
    assert!(s.wal().segment_files().unwrap()[0].starts_with(waldir.path()));
    assert!(data.path().join("member/snap").is_dir());
    assert!(!data.path().join("member/wal").exists());
}
