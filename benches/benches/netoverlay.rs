//! Lease acquisition at scale (issue 6 target: 1,000 hosts acquiring leases at
//! once, simulated, in under 5 s). Each host is a task running the real lease
//! state machine and kv driver against one in-memory store with etcd's v2
//! semantics (`MemKv`); all start together, so they race for the same
//! subnets exactly as a cluster booting at once would.
//!
//! `cargo bench -p keelson-benches --bench netoverlay`

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use keelson_kv::client::KvClient;
use keelson_netoverlay::daemon::acquire_lease;
use keelson_netoverlay::{LeaseAttrs, LeaseManager, ManagerOptions, MemKv, NetworkConfig};

const PREFIX: &str = "/coreos.com/network";

fn acquire_all(rt: &tokio::runtime::Runtime, hosts: u32, doc: &str) -> Duration {
    let config = NetworkConfig::parse(doc).expect("config");
    rt.block_on(async move {
        let kv = Arc::new(MemKv::new());
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..hosts {
            let kv = kv.clone();
            let config = config.clone();
            tasks.spawn(async move {
                let ip = Ipv4Addr::from(0x0a58_0000u32 + i + 1);
                let mgr = LeaseManager::new(
                    config,
                    LeaseAttrs::new(ip),
                    None,
                    ManagerOptions::default(),
                    u64::from(i),
                );
                acquire_lease(&*kv as &dyn KvClient, PREFIX, "", mgr).await
            });
        }
        let mut got = BTreeSet::new();
        while let Some(r) = tasks.join_next().await {
            let lease = r.expect("task").expect("every host acquires a lease");
            assert!(got.insert(lease.subnet), "duplicate {}", lease.subnet);
        }
        assert_eq!(got.len(), hosts as usize);
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // One headline figure against the target, printed once.
    let t = acquire_all(&rt, 1000, r#"{"Network":"10.0.0.0/8"}"#);
    println!(
        "netoverlay: 1000 hosts acquired distinct /24 leases of 10.0.0.0/8 in {t:?} (target < 5 s)"
    );
    let t = acquire_all(&rt, 1000, r#"{"Network":"10.0.0.0/14","SubnetLen":24}"#);
    println!("netoverlay: 1000 hosts in a 1023-lease network (10.0.0.0/14) in {t:?}");
    let mut g = c.benchmark_group("lease_acquisition");
    g.sample_size(10);
    g.bench_function("1000_hosts_at_once", |b| {
        b.iter(|| acquire_all(&rt, 1000, r#"{"Network":"10.0.0.0/8"}"#))
    });
    g.bench_function("100_hosts_at_once", |b| {
        b.iter(|| acquire_all(&rt, 100, r#"{"Network":"10.1.0.0/16"}"#))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
