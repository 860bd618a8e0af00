//! Bounded disk use: --max-wals, --max-snapshots and the quota.

use bytes::Bytes;
use keelson_kv::storage::{completed_blocking, PurgeMark, Storage, StorageError, StoredSnapshot};
use keelson_kv::wal::{DiskOptions, DiskStorage};

fn open(dir: &std::path::Path, max_wals: usize, max_snaps: usize, quota: u64) -> DiskStorage {
    let mut o = DiskOptions::new(dir, None);
    o.wal.segment_bytes = 512;
    o.wal.max_wals = max_wals;
    o.max_snapshots = max_snaps;
    o.quota_bytes = quota;
    DiskStorage::open(o).unwrap()
}

fn fill(s: &DiskStorage, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        let d = Bytes::from(format!("{i:0>60}"));
        completed_blocking(|done| s.append(vec![(i, d)], done)).unwrap();
    }
}

fn snapshot_and_purge(s: &DiskStorage, index: u64) {
    s.save_snapshot(&StoredSnapshot {
        term: 1,
        index,
        meta: Bytes::from(format!("meta {index}")),
        data: Bytes::from(vec![7u8; 10]),
    })
    .unwrap();
    completed_blocking(|d| {
        s.purge(
            PurgeMark {
                index,
                meta: Bytes::from(format!("meta {index}")),
            },
            d,
        )
    })
    .unwrap();
}

#[test]
fn max_wals_deletes_only_segments_behind_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 2, 0, 0);
    fill(&s, 1..=100);
    let before = s.wal().segment_files().unwrap();
    assert!(before.len() > 4, "{}", before.len());
    // Without a snapshot nothing may go, whatever --max-wals says.
    assert_eq!(s.wal().segment_files().unwrap(), before);

    snapshot_and_purge(&s, 90);
    let after = s.wal().segment_files().unwrap();
    assert!(after.len() < before.len());
    assert!(after.len() >= 2);
    assert_eq!(after.last(), before.last());
    s.close().unwrap();
    drop(s);

    // Recovery from the remaining files alone.
    let s = open(dir.path(), 2, 0, 0);
    let e = s.entries(0, u64::MAX);
    assert_eq!(e.first().map(|x| x.0), Some(91));
    assert_eq!(e.last().map(|x| x.0), Some(100));
    assert_eq!(s.purged().map(|p| p.index), Some(90));
}

#[test]
fn max_wals_zero_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 0, 0, 0);
    fill(&s, 1..=100);
    let before = s.wal().segment_files().unwrap();
    snapshot_and_purge(&s, 100);
    assert_eq!(s.wal().segment_files().unwrap(), before);
}

#[test]
fn max_snapshots_bounds_snapshot_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 5, 3, 0);
    fill(&s, 1..=60);
    for i in 1..=6 {
        snapshot_and_purge(&s, i * 10);
    }
    let snaps = s.snap_dir().list().unwrap();
    assert_eq!(
        snaps.iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![40, 50, 60]
    );
    assert_eq!(s.load_snapshot().unwrap().unwrap().index, 60);
}

#[test]
fn quota_refuses_before_the_limit_and_recovers_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 5, 5, 2000);
    fill(&s, 1..=30); // 30 * 60 = 1800 bytes of live entries
    assert!(s.check_quota(100).is_ok());
    let e = s.check_quota(300).unwrap_err();
    assert_eq!(e.to_string(), "etcdserver: mvcc: database space exceeded");
    assert!(matches!(
        e,
        StorageError::QuotaExceeded {
            quota: 2000,
            used: 1800,
            requested: 300
        }
    ));
    // A snapshot (10 bytes of state) replaces the log: space comes back
    // without stopping anything.
    snapshot_and_purge(&s, 30);
    assert!(s.check_quota(300).is_ok());
}

#[test]
fn a_log_purged_past_the_newest_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), 5, 5, 0);
        fill(&s, 1..=10);
        completed_blocking(|d| {
            s.purge(
                PurgeMark {
                    index: 5,
                    meta: Bytes::new(),
                },
                d,
            )
        })
        .unwrap();
        s.close().unwrap();
    }
    let mut o = DiskOptions::new(dir.path(), None);
    o.wal.segment_bytes = 512;
    let e = DiskStorage::open(o).unwrap_err();
    assert!(matches!(e, StorageError::Gap(_)), "{e}");
}
