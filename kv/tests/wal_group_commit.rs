//! Group commit: concurrent appenders share fsyncs.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use keelson_kv::storage::completed_blocking;
use keelson_kv::wal::{Wal, WalOptions};

#[test]
fn concurrent_appends_share_fsyncs() {
    for writers in [4, 16, 64] {
        run(writers, 3200 / writers);
    }
}

fn run(writers: usize, per_writer: usize) {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(WalOptions::new(dir.path())).unwrap());
    // Index assignment and submission must be atomic with respect to each
    // other (as in Raft, where the leader orders proposals); waiting is not.
    let next = Arc::new(Mutex::new(1u64));
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let wal = wal.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                for k in 0..per_writer {
                    completed_blocking(|done| {
                        let mut n = next.lock().unwrap();
                        let data = Bytes::from(format!("writer {w} op {k} {}", "x".repeat(100)));
                        wal.append(vec![(*n, data)], done);
                        *n += 1;
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed();
    let total = (writers * per_writer) as u64;
    let stats = wal.stats();
    eprintln!(
        "group commit: {writers} writers, {total} appends, {} fsyncs ({:.1} appends/fsync), {:.0} appends/s",
        stats.fsyncs,
        total as f64 / stats.fsyncs as f64,
        total as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(stats.ops, total);
    assert!(
        stats.fsyncs < total,
        "expected shared fsyncs, got {} for {total} appends",
        stats.fsyncs
    );
    assert_eq!(wal.entries(0, u64::MAX).len() as u64, total);
    wal.close().unwrap();
    let wal = Wal::open(WalOptions::new(dir.path())).unwrap();
    assert_eq!(wal.last_index(), Some(total));
}

#[test]
fn a_single_writer_pays_one_fsync_per_append() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalOptions::new(dir.path())).unwrap();
    for i in 1..=20u64 {
        completed_blocking(|d| wal.append(vec![(i, Bytes::from_static(b"x"))], d)).unwrap();
    }
    assert_eq!(wal.stats().fsyncs, 20);
}
