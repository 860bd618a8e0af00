//! A one-member group on disk: durability across restarts, snapshots,
//! quota, shutdown.

mod raft_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use keelson_kv::raft::{InProcessRouter, KvNode, NodeError, RaftConfig};
use keelson_kv::storage::StorageError;
use raft_support::{eventually, ListSm};

const LONG: Duration = Duration::from_secs(20);

fn config(dir: &std::path::Path) -> RaftConfig {
    let mut c = RaftConfig::new(1, "default", dir);
    c.heartbeat_interval = Duration::from_millis(20);
    c.election_timeout = Duration::from_millis(200);
    c
}

async fn start(c: RaftConfig) -> Arc<KvNode<ListSm>> {
    let router = InProcessRouter::new();
    let node = KvNode::start(c, ListSm::default(), router.transport_for(1))
        .await
        .unwrap();
    router.register(1, node.raft().clone());
    node.wait_for_leader(LONG).await.unwrap();
    Arc::new(node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    assert_eq!(node.leader_id(), Some(1));
    assert_eq!(node.member_id(), 1);
    assert!(node.current_term() >= 1);

    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let node = node.clone();
            tokio::spawn(async move {
                let payload = format!("cmd {i}").into_bytes();
                node.propose(payload)
                    .await
                    .map(|(idx, reply)| (i, idx, reply))
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        let (i, idx, reply) = t.await.unwrap().unwrap();
        assert_eq!(reply, idx.to_string().into_bytes());
        acked.push((idx, format!("cmd {i}").into_bytes()));
    }
    let elapsed = started.elapsed();
    let stats = node.storage().stats();
    eprintln!(
        "1000 concurrent proposals on one member in {:?} ({:.0}/s), {} WAL fsyncs",
        elapsed,
        1000.0 / elapsed.as_secs_f64(),
        stats.fsyncs
    );
    assert!(
        stats.fsyncs < 1000,
        "proposals did not share fsyncs: {stats:?}"
    );
    // Concurrent proposals were batched: fewer entries than commands.
    let idxs: BTreeSet<u64> = acked.iter().map(|a| a.0).collect();
    eprintln!("1000 proposals carried by {} raft entries", idxs.len());
    assert!(!idxs.is_empty() && idxs.len() <= 1000);
    assert!(node.committed_index() >= *idxs.iter().last().unwrap());
    node.read(|sm| {
        let applied: Vec<u64> = sm.items.iter().map(|i| i.0).collect();
        let mut sorted = applied.clone();
        sorted.sort();
        assert_eq!(applied, sorted);
    });
    node.shutdown().await.unwrap();
    assert!(matches!(
        node.propose(b"late".to_vec()).await,
        Err(NodeError::Stopped)
    ));
    drop(node);

    // Restart from disk: everything acknowledged is there.
    let node = start(config(dir.path())).await;
    let read_at = node.linearizable_read().await.unwrap();
    assert!(read_at >= *idxs.iter().last().unwrap());
    node.read(|sm| {
        for (idx, payload) in &acked {
            assert!(
                sm.items.iter().any(|(i, p)| i == idx && p == payload),
                "entry {idx} lost"
            );
        }
        assert_eq!(sm.items.len(), 1000);
    });
    // And it keeps going.
    let (idx, _) = node.propose(b"after restart".to_vec()).await.unwrap();
    assert!(idx > *idxs.iter().last().unwrap());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_truncate_the_log_and_restart_restores_snapshot_plus_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.snapshot_count = 50;
    c.snapshot_catchup_entries = 0;
    c.segment_bytes = 4096;
    c.max_wals = 2;
    c.max_snapshots = 2;
    let node = start(c.clone()).await;
    for i in 0..333 {
        node.propose(format!("v{i}").into_bytes()).await.unwrap();
    }
    eventually("a snapshot past 250", LONG, || {
        node.snapshot_index().is_some_and(|i| i >= 250)
    })
    .await;
    eventually("log purged", LONG, || {
        node.storage().purged().is_some_and(|p| p.index >= 250)
    })
    .await;
    let snap_index = node.snapshot_index().unwrap();
    // The log behind the snapshot is gone from memory and from disk.
    assert!(node.storage().entries(0, snap_index + 1).is_empty());
    let snaps = std::fs::read_dir(dir.path().join("member/snap"))
        .unwrap()
        .count();
    assert!((1..=2).contains(&snaps), "{snaps} snapshot files");
    let wals = std::fs::read_dir(dir.path().join("member/wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count();
    // ~50 KB were written in 4 KB segments; only the files holding entries
    // after the snapshot (and at most --max-wals in all otherwise) remain.
    assert!(wals <= 4, "{wals} WAL files kept with --max-wals=2");
    node.shutdown().await.unwrap();
    drop(node);

    let node = start(c).await;
    node.linearizable_read().await.unwrap();
    node.read(|sm| {
        assert_eq!(sm.items.len(), 333);
        assert_eq!(sm.items[0].1, b"v0".to_vec());
        assert_eq!(sm.items[332].1, b"v332".to_vec());
    });
    assert!(node.snapshot_index().is_some());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_over_quota_are_refused_with_etcds_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.quota_backend_bytes = 4096;
    let node = start(c).await;
    let mut refused = None;
    for i in 0..200 {
        match node.propose(vec![b'x'; 100 + i % 3]).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("quota never enforced");
    assert!(
        matches!(e, NodeError::Storage(StorageError::QuotaExceeded { .. })),
        "{e}"
    );
    assert_eq!(e.to_string(), "etcdserver: mvcc: database space exceeded");
    // Reads still work.
    node.linearizable_read().await.unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_refuses_another_member_id() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path())).await;
    node.shutdown().await.unwrap();
    drop(node);
    let mut c = config(dir.path());
    c.member_id = 2;
    let router = InProcessRouter::new();
    let e = match KvNode::start(c, ListSm::default(), router.transport_for(2)).await {
        Ok(_) => panic!("started on another member's data"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("belongs to member 1"), "{e}");
}

#[test]
fn etcd_timeout_rules_are_enforced() {
    let mut c = RaftConfig::new(1, "x", "/nonexistent");
    c.heartbeat_interval = Duration::from_millis(300);
    let e = c.validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: --election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
    );
    assert!(RaftConfig::new(1, "x", "/d").validate().is_ok());
}
