//! locksmith hand-off: 100 simulated machines that all need a reboot at once
//! contend for a semaphore of max 2 on a real in-process kv. Each takes a
//! slot, drains (no-op), reboots (simulated, 5 ms down), comes back and
//! releases. Reported: hand-off time from a release to the next holder (as
//! seen by a watcher on the semaphore key) at p50/p99/max, and the total time
//! for all machines to reboot once. Backoff runs on a simulated clock 1000×
//! faster than real time (locksmith's 10 s…5 min waits become 10…300 ms); a
//! waiting machine also wakes when the semaphore changes.
//!
//! `cargo bench -p keelson-benches --bench locksmith`

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keelson_kv::client::{KvClient, WatchEvent, Watcher, WatcherOptions};
use keelson_kv::embedded::EmbeddedKvClient;
use keelson_kv::server::{KvServer, ServerConfig};
use keelson_updater::config::RebootStrategy;
use keelson_updater::engine::Status;
use keelson_updater::locksmith::host::{
    AlwaysHealthy, Clock, MemoryStatus, NoopDrainer, Rebooter, ScaledClock, SimulatedRebooter,
};
use keelson_updater::locksmith::{
    DaemonConfig, Driver, DriverConfig, Host, LockClient, Outcome, Semaphore,
};

const MACHINES: usize = 100;
const MAX: i64 = 2;

fn host(status: Status, rebooter: Arc<dyn Rebooter>, clock: Arc<dyn Clock>) -> Host {
    Host {
        status: Arc::new(MemoryStatus::new(status)),
        health: Arc::new(AlwaysHealthy),
        drainer: Arc::new(NoopDrainer),
        rebooter,
        clock,
    }
}

async fn machine(id: String, kv: Arc<dyn KvClient>, clock: Arc<dyn Clock>, r: Arc<dyn Rebooter>) {
    let mut dc = DriverConfig::new(id);
    dc.stop_when_idle = true;
    dc.lease_ttl = 60;
    for status in [Status::UpdatedNeedReboot, Status::Idle] {
        let d = Driver::new(
            DaemonConfig::new(RebootStrategy::EtcdLock),
            dc.clone(),
            Some(kv.clone()),
            host(status, r.clone(), clock.clone()),
        )
        .expect("driver");
        let out = d.run().await.expect("run");
        if out == Outcome::RebootIssued {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = KvServer::start(ServerConfig {
        data_dir: dir.path().join("kv"),
        listen_client_urls: vec![],
        advertise_client_urls: vec![],
        listen_peer_urls: vec![],
        ..ServerConfig::default()
    })
    .await
    .expect("start kv");
    let kv: Arc<dyn KvClient> = Arc::new(EmbeddedKvClient::from_handle(&server));
    let lock = LockClient::new(kv.clone(), "");
    lock.set_max(MAX).await.expect("set-max");
    let start_index = kv
        .get(lock.key(), Default::default())
        .await
        .expect("read")
        .node()
        .map(|n| n.modified_index)
        .unwrap_or_default();

    // Hand-offs, measured from the watch stream.
    let handoffs = Arc::new(Mutex::new(Vec::new()));
    let peak = Arc::new(Mutex::new(0usize));
    let watch = {
        let (handoffs, peak, kv) = (handoffs.clone(), peak.clone(), kv.clone());
        let key = lock.key().to_string();
        tokio::spawn(async move {
            let mut w = Watcher::new(
                kv,
                key,
                WatcherOptions {
                    after_index: start_index,
                    ..Default::default()
                },
            );
            let mut prev: BTreeSet<String> = BTreeSet::new();
            let mut pending: VecDeque<Instant> = VecDeque::new();
            while let Ok(WatchEvent::Event(r)) = w.next().await {
                let now = Instant::now();
                let Some(sem) = r
                    .node()
                    .and_then(|n| n.value.as_deref())
                    .and_then(|v| Semaphore::parse(v).ok())
                else {
                    continue;
                };
                let cur: BTreeSet<String> = sem.holders().iter().cloned().collect();
                for _ in prev.difference(&cur) {
                    pending.push_back(now);
                }
                for _ in cur.difference(&prev) {
                    if let Some(t) = pending.pop_front() {
                        handoffs.lock().unwrap().push(now - t);
                    }
                }
                let mut p = peak.lock().unwrap();
                *p = (*p).max(cur.len());
                prev = cur;
            }
        })
    };

    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::from_local_now(1000));
    let started = Instant::now();
    let rebooters: Vec<SimulatedRebooter> = (0..MACHINES)
        .map(|_| SimulatedRebooter::default())
        .collect();
    let tasks: Vec<_> = rebooters
        .iter()
        .enumerate()
        .map(|(i, r)| {
            tokio::spawn(machine(
                format!("{i:032x}"),
                kv.clone(),
                clock.clone(),
                Arc::new(r.clone()),
            ))
        })
        .collect();
    for t in tasks {
        t.await.expect("machine");
    }
    let total = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    watch.abort();

    let reboots: usize = rebooters.iter().map(|r| r.reboots()).sum();
    let mut h = handoffs.lock().unwrap().clone();
    h.sort();
    let final_sem = lock.status().await.expect("status");
    println!("locksmith: {MACHINES} simulated machines, max {MAX}, in-process kv");
    println!(
        "  reboots: {reboots} (each machine once: {})",
        rebooters.iter().all(|r| r.reboots() == 1)
    );
    println!("  peak holders seen: {} (max {MAX})", peak.lock().unwrap());
    println!("  final semaphore: {}", final_sem.to_json());
    println!(
        "  hand-offs: {}  p50 {}  p99 {}  max {}",
        h.len(),
        ms(pct(&h, 0.5)),
        ms(pct(&h, 0.99)),
        ms(h.last().copied().unwrap_or_default())
    );
    println!("  total time for all to reboot once: {}", ms(total));
    server.shutdown().await.expect("shutdown");
}
