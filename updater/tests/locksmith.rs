//! locksmith against an in-process Keelson kv, with simulated machines
//! (simulated reboots, a fast simulated clock).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use futures::future::BoxFuture;
use keelson_kv::client::{GetOptions, KvClient, SetOptions, Watcher, WatcherOptions};
use keelson_kv::embedded::EmbeddedKvClient;
use keelson_kv::server::{KvServer, KvServerHandle, ServerConfig};
use keelson_updater::config::RebootStrategy;
use keelson_updater::engine::Status;
use keelson_updater::locksmith::host::{
    AlwaysHealthy, Clock, Drainer, HealthCheck, HealthFlag, HostError, MemoryStatus, NoopDrainer,
    Rebooter, ScaledClock, SimulatedRebooter,
};
use keelson_updater::locksmith::{
    format_set_max, format_status, semaphore_key, DaemonConfig, Driver, DriverConfig, Host,
    LockClient, LockError, Outcome, Semaphore, Window,
};

const SCALE: u32 = 1000;

struct Kv {
    _dir: tempfile::TempDir,
    server: KvServerHandle,
    client: Arc<dyn KvClient>,
}

async fn start_kv() -> Kv {
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
    let client: Arc<dyn KvClient> = Arc::new(EmbeddedKvClient::from_handle(&server));
    Kv {
        _dir: dir,
        server,
        client,
    }
}

/// Thursday 2026-11-19 at the given time.
fn thu(h: u32, m: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 19)
        .unwrap()
        .and_hms_opt(h, m, 0)
        .unwrap()
}

async fn value(kv: &Arc<dyn KvClient>, key: &str) -> (String, u64) {
    let r = kv.get(key, GetOptions::default()).await.expect("get");
    let n = r.node().cloned().unwrap_or_default();
    (n.value.unwrap_or_default(), n.modified_index)
}

/// A rebooter that remembers the simulated time of each reboot.
#[derive(Clone)]
struct TimedRebooter {
    clock: Arc<dyn Clock>,
    at: Arc<Mutex<Vec<NaiveDateTime>>>,
}

impl Rebooter for TimedRebooter {
    fn reboot(&self) -> BoxFuture<'_, Result<(), HostError>> {
        let now = self.clock.now();
        if let Ok(mut at) = self.at.lock() {
            at.push(now);
        }
        Box::pin(async { Ok(()) })
    }
}

struct Machine {
    id: String,
    daemon: DaemonConfig,
    lease_ttl: u64,
    clock: Arc<dyn Clock>,
    health: Arc<dyn HealthCheck>,
}

impl Machine {
    fn new(id: String, daemon: DaemonConfig, clock: Arc<dyn Clock>) -> Self {
        Machine {
            id,
            daemon,
            lease_ttl: 30,
            clock,
            health: Arc::new(AlwaysHealthy),
        }
    }

    fn host(&self, status: Status, rebooter: Arc<dyn Rebooter>) -> Host {
        Host {
            status: Arc::new(MemoryStatus::new(status)),
            health: self.health.clone(),
            drainer: Arc::new(NoopDrainer),
            rebooter,
            clock: self.clock.clone(),
        }
    }

    fn driver_config(&self) -> DriverConfig {
        let mut c = DriverConfig::new(self.id.clone());
        c.lease_ttl = self.lease_ttl;
        c.reap_interval = Duration::from_millis(200);
        c.stop_when_idle = true;
        c
    }

    /// One boot that needs a reboot, then the boot after it (engine idle)
    /// until the slot is given back. Returns the number of reboots.
    async fn lifecycle(
        self,
        kv: Option<Arc<dyn KvClient>>,
        rebooter: Arc<dyn Rebooter>,
    ) -> Outcome {
        let d = Driver::new(
            self.daemon.clone(),
            self.driver_config(),
            kv.clone(),
            self.host(Status::UpdatedNeedReboot, rebooter.clone()),
        )
        .expect("driver");
        let first = d.run().await.expect("first boot");
        if first != Outcome::RebootIssued {
            return first;
        }
        // The machine is down for a moment, then boots the new version.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let d = Driver::new(
            self.daemon.clone(),
            self.driver_config(),
            kv,
            self.host(Status::Idle, rebooter),
        )
        .expect("driver");
        d.run().await.expect("second boot")
    }
}

/// Watches the semaphore key and records every value's holder count.
struct MaxChecker {
    peak: Arc<AtomicUsize>,
    violations: Arc<Mutex<Vec<String>>>,
    seen_index: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MaxChecker {
    fn start(kv: Arc<dyn KvClient>, key: String, after_index: u64) -> Self {
        let peak = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let seen_index = Arc::new(AtomicU64::new(after_index));
        let (p, v, s) = (peak.clone(), violations.clone(), seen_index.clone());
        let task = tokio::spawn(async move {
            let mut w = Watcher::new(
                kv,
                key,
                WatcherOptions {
                    after_index,
                    ..Default::default()
                },
            );
            loop {
                let ev = match w.next().await {
                    Ok(keelson_kv::client::WatchEvent::Event(r)) => r,
                    Ok(other) => {
                        v.lock().unwrap().push(format!("events lost: {other:?}"));
                        continue;
                    }
                    Err(e) => {
                        v.lock().unwrap().push(format!("watch failed: {e}"));
                        return;
                    }
                };
                let Some(n) = ev.node() else { continue };
                if let Some(val) = &n.value {
                    match Semaphore::parse(val) {
                        Ok(sem) => {
                            p.fetch_max(sem.holders().len(), Ordering::SeqCst);
                            if sem.holders().len() as i64 > sem.max
                                || sem.semaphore + sem.holders().len() as i64 != sem.max
                            {
                                v.lock().unwrap().push(val.clone());
                            }
                        }
                        Err(e) => v.lock().unwrap().push(format!("{val}: {e}")),
                    }
                }
                s.store(n.modified_index, Ordering::SeqCst);
            }
        });
        MaxChecker {
            peak,
            violations,
            seen_index,
            task,
        }
    }

    async fn finish(self, upto: u64) -> (usize, Vec<String>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.seen_index.load(Ordering::SeqCst) < upto
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.task.abort();
        let v = self.violations.lock().unwrap().clone();
        (self.peak.load(Ordering::SeqCst), v)
    }
}

async fn contend(machines: usize, max: i64) {
    let kv = start_kv().await;
    let lock = LockClient::new(kv.client.clone(), "");
    lock.set_max(max).await.expect("set-max");
    let (_, start_index) = value(&kv.client, lock.key()).await;
    let checker = MaxChecker::start(kv.client.clone(), lock.key().to_string(), start_index);
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(thu(12, 0), SCALE));
    let mut tasks = Vec::new();
    let mut rebooters = Vec::new();
    for i in 0..machines {
        let r = SimulatedRebooter::default();
        rebooters.push(r.clone());
        let m = Machine::new(
            format!("{i:032x}"),
            DaemonConfig::new(RebootStrategy::EtcdLock),
            clock.clone(),
        );
        let kv = kv.client.clone();
        tasks.push(tokio::spawn(m.lifecycle(Some(kv), Arc::new(r))));
    }
    for t in tasks {
        let out = tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("all machines finish")
            .expect("machine task");
        assert_eq!(out, Outcome::Idle);
    }
    for (i, r) in rebooters.iter().enumerate() {
        assert_eq!(r.reboots(), 1, "machine {i} rebooted {} times", r.reboots());
    }
    let (v, index) = value(&kv.client, lock.key()).await;
    let sem = Semaphore::parse(&v).unwrap();
    assert_eq!(sem.semaphore, max, "all slots returned: {v}");
    assert!(sem.holders().is_empty());
    let (peak, violations) = checker.finish(index).await;
    assert!(violations.is_empty(), "over max: {violations:?}");
    assert!(peak >= 1 && peak as i64 <= max, "peak {peak}");
    // Nothing of the expiring holds is left behind.
    for dir in ["semaphore-leases", "semaphore-holders"] {
        let r = kv
            .client
            .get(
                &format!("/coreos.com/updateengine/rebootlock/{dir}"),
                GetOptions::default(),
            )
            .await;
        if let Ok(r) = r {
            assert!(r
                .node()
                .and_then(|n| n.nodes.as_ref())
                .is_none_or(|n| n.is_empty()));
        }
    }
    kv.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_machines_max_one() {
    contend(5, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_machines_max_two() {
    contend(5, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_machines_max_one() {
    contend(20, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_machines_max_two() {
    contend(20, 2).await;
}

#[tokio::test]
async fn reboot_waits_for_the_window() {
    let kv = start_kv().await;
    // 11:59 now; the window opens at 12:00 (60 simulated seconds away).
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(thu(11, 59), SCALE));
    let at = Arc::new(Mutex::new(Vec::new()));
    for (strategy, client) in [
        (RebootStrategy::EtcdLock, Some(kv.client.clone())),
        (RebootStrategy::Reboot, None),
    ] {
        let mut cfg = DaemonConfig::new(strategy);
        cfg.window = Some(Window::parse("Thu 12:00", "1h").unwrap());
        let m = Machine::new("a".repeat(32), cfg, clock.clone());
        let r = TimedRebooter {
            clock: clock.clone(),
            at: at.clone(),
        };
        let out = tokio::time::timeout(Duration::from_secs(30), m.lifecycle(client, Arc::new(r)))
            .await
            .expect("reboots within the window");
        assert_eq!(out, Outcome::Idle);
    }
    let at = at.lock().unwrap().clone();
    assert_eq!(at.len(), 2);
    for t in at {
        assert!(t >= thu(12, 0) && t < thu(13, 0), "rebooted at {t}");
    }
}

/// Signals when the machine drains (it holds the lock), then never finishes:
/// the machine dies there.
struct DieWhileDraining(tokio::sync::mpsc::Sender<()>);

impl Drainer for DieWhileDraining {
    fn drain(&self) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let _ = self.0.send(()).await;
            futures::future::pending().await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_dies_holding_the_lock_is_released_after_expiry() {
    let kv = start_kv().await;
    let lock = LockClient::new(kv.client.clone(), "");
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(thu(12, 0), SCALE));
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let dead = Machine::new(
        "d".repeat(32),
        DaemonConfig::new(RebootStrategy::EtcdLock),
        clock.clone(),
    );
    let mut dc = dead.driver_config();
    dc.lease_ttl = 2;
    let mut host = dead.host(
        Status::UpdatedNeedReboot,
        Arc::new(SimulatedRebooter::default()),
    );
    host.drainer = Arc::new(DieWhileDraining(tx));
    let driver = Driver::new(dead.daemon.clone(), dc, Some(kv.client.clone()), host).unwrap();
    let task = tokio::spawn(driver.run());
    rx.recv().await.expect("the doomed machine takes the lock");
    task.abort(); // power lost
    let died = tokio::time::Instant::now();
    assert_eq!(lock.status().await.unwrap().holders(), ["d".repeat(32)]);

    let mut alive = Machine::new(
        "e".repeat(32),
        DaemonConfig::new(RebootStrategy::EtcdLock),
        clock,
    );
    alive.lease_ttl = 2;
    let r = SimulatedRebooter::default();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        alive.lifecycle(Some(kv.client.clone()), Arc::new(r.clone())),
    )
    .await
    .expect("the dead holder's slot is reclaimed");
    assert_eq!(out, Outcome::Idle);
    assert_eq!(r.reboots(), 1);
    // Not before the lease (2 s) ran out.
    assert!(
        died.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        died.elapsed()
    );
    let (v, _) = value(&kv.client, lock.key()).await;
    assert_eq!(v, r#"{"semaphore":1,"max":1,"holders":[]}"#);
    assert!(kv
        .client
        .get(&lock.record_key(&"d".repeat(32)), GetOptions::default())
        .await
        .is_err());
    kv.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn strategy_off_exits() {
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(thu(12, 0), SCALE));
    let r = SimulatedRebooter::default();
    let m = Machine::new(
        "a".repeat(32),
        DaemonConfig::new(RebootStrategy::Off),
        clock,
    );
    assert_eq!(
        m.lifecycle(None, Arc::new(r.clone())).await,
        Outcome::Exited
    );
    assert_eq!(r.reboots(), 0);
}

#[tokio::test]
async fn best_effort_without_a_kv_member_reboots_at_once() {
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(thu(12, 0), SCALE));
    let r = SimulatedRebooter::default();
    let m = Machine::new(
        "a".repeat(32),
        DaemonConfig::new(RebootStrategy::BestEffort),
        clock,
    );
    // No kv at all: the lock is not needed.
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        m.lifecycle(None, Arc::new(r.clone())),
    )
    .await
    .expect("at once");
    assert_eq!(out, Outcome::Idle);
    assert_eq!(r.reboots(), 1);
    // With a local member it needs the kv.
    let mut cfg = DaemonConfig::new(RebootStrategy::BestEffort);
    cfg.kv_member_local = true;
    let host = Machine::new(
        "a".repeat(32),
        cfg.clone(),
        Arc::new(ScaledClock::new(thu(12, 0), SCALE)),
    )
    .host(Status::Idle, Arc::new(r));
    let err = Driver::new(cfg, DriverConfig::new("a"), None, host)
        .err()
        .unwrap();
    assert!(err.to_string().contains("needs the kv"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_written_by_hand_in_locksmith_json_is_honoured() {
    let kv = start_kv().await;
    let key = semaphore_key("");
    let holder = "69d27b356a94476da859461d3a3bc6fd";
    // As an operator (or locksmithctl) would leave it: the only slot taken.
    kv.client
        .set(
            &key,
            &format!(r#"{{"semaphore":0,"max":1,"holders":["{holder}"]}}"#),
            SetOptions::default(),
        )
        .await
        .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(thu(12, 0), SCALE));
    let r = SimulatedRebooter::default();
    let m = Machine::new(
        "b".repeat(32),
        DaemonConfig::new(RebootStrategy::EtcdLock),
        clock,
    );
    let task = tokio::spawn(m.lifecycle(Some(kv.client.clone()), Arc::new(r.clone())));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        r.reboots(),
        0,
        "rebooted while the hand-written holder had the slot"
    );
    let lock = LockClient::new(kv.client.clone(), "");
    // A hand-written holder has no lease: it never expires.
    assert!(lock.reap_expired().await.unwrap().is_empty());
    // `locksmithctl unlock <id>`.
    lock.unlock(holder).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("reboots once the slot is free")
        .unwrap();
    assert_eq!(out, Outcome::Idle);
    assert_eq!(r.reboots(), 1);
    assert_eq!(
        value(&kv.client, &key).await.0,
        r#"{"semaphore":1,"max":1,"holders":[]}"#
    );
    kv.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_semaphores_are_reported_and_never_overwritten() {
    let kv = start_kv().await;
    let lock = LockClient::new(kv.client.clone(), "");
    for bad in [
        "not json",
        r#"{"semaphore":"one","max":1}"#,
        r#"{"semaphore":1,"max":1,"holders":[7]}"#,
        "[1,1]",
        "",
    ] {
        kv.client
            .set(lock.key(), bad, SetOptions::default())
            .await
            .unwrap();
        let before = value(&kv.client, lock.key()).await;
        let errs = [
            lock.status().await.err(),
            lock.lock("m1").await.err(),
            lock.unlock("m1").await.err(),
            lock.set_max(3).await.err(),
            lock.lock_expiring("m1", 10).await.err(),
            lock.release("m1").await.err(),
            lock.reap_expired().await.err(),
        ];
        for e in errs {
            let e = e.expect("refused");
            assert!(matches!(e, LockError::Malformed { .. }), "{e:?}");
            let text = e.to_string();
            assert!(
                text.contains("malformed") && text.contains(lock.key()),
                "{text}"
            );
        }
        assert_eq!(
            value(&kv.client, lock.key()).await,
            before,
            "{bad:?} was overwritten"
        );
    }
    // A daemon facing a malformed semaphore keeps trying and never writes.
    kv.client
        .set(lock.key(), "garbage", SetOptions::default())
        .await
        .unwrap();
    let before = value(&kv.client, lock.key()).await;
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(thu(12, 0), SCALE));
    let r = SimulatedRebooter::default();
    let m = Machine::new(
        "c".repeat(32),
        DaemonConfig::new(RebootStrategy::EtcdLock),
        clock,
    );
    let task = tokio::spawn(m.lifecycle(Some(kv.client.clone()), Arc::new(r.clone())));
    tokio::time::sleep(Duration::from_millis(500)).await;
    task.abort();
    assert_eq!(r.reboots(), 0);
    assert_eq!(value(&kv.client, lock.key()).await, before);
    // A directory where the semaphore should be.
    let g = LockClient::new(kv.client.clone(), "dir");
    kv.client.mkdir(g.key(), None).await.unwrap();
    let e = g.lock("m1").await.unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
    kv.server.shutdown().await.unwrap();
}

/// The values locksmithctl writes, per reference updater.md §10.4 and
/// §10.7, for the same sequence of commands.
#[tokio::test]
async fn json_and_output_match_what_locksmithctl_writes() {
    let kv = start_kv().await;
    let lock = LockClient::new(kv.client.clone(), "");
    let id = "69d27b356a94476da859461d3a3bc6fd";
    // Any command creates the semaphore first.
    let sem = lock.status().await.unwrap();
    assert_eq!(
        value(&kv.client, "/coreos.com/updateengine/rebootlock/semaphore")
            .await
            .0,
        r#"{"semaphore":1,"max":1,"holders":null}"#
    );
    assert_eq!(format_status(&sem), "Available: 1\nMax: 1\n");
    lock.lock(id).await.unwrap();
    assert_eq!(
        value(&kv.client, lock.key()).await.0,
        r#"{"semaphore":0,"max":1,"holders":["69d27b356a94476da859461d3a3bc6fd"]}"#
    );
    assert_eq!(
        format_status(&lock.status().await.unwrap()),
        "Available: 0\nMax: 1\n\nMACHINE ID\n69d27b356a94476da859461d3a3bc6fd\n"
    );
    // locksmith issue #58: the slot check comes first.
    assert_eq!(
        lock.lock(id).await.unwrap_err().to_string(),
        "semaphore is at 0"
    );
    lock.unlock(id).await.unwrap();
    assert_eq!(
        value(&kv.client, lock.key()).await.0,
        r#"{"semaphore":1,"max":1,"holders":[]}"#
    );
    let (old, new) = lock.set_max(4).await.unwrap();
    assert_eq!(format_set_max(old, new), "Old-Max: 1\nMax: 4\n");
    assert_eq!(
        value(&kv.client, lock.key()).await.0,
        r#"{"semaphore":4,"max":4,"holders":[]}"#
    );
    lock.lock("b").await.unwrap();
    lock.lock("a").await.unwrap();
    assert_eq!(
        lock.lock("a").await.unwrap_err().to_string(),
        "holder exists"
    );
    assert_eq!(
        lock.unlock("zz").await.unwrap_err().to_string(),
        "holder does not exist"
    );
    assert_eq!(
        value(&kv.client, lock.key()).await.0,
        r#"{"semaphore":2,"max":4,"holders":["a","b"]}"#
    );
    // Groups: query-escaped name, their own semaphore.
    let g = LockClient::new(kv.client.clone(), "my lb");
    g.lock(id).await.unwrap();
    assert_eq!(
        value(
            &kv.client,
            "/coreos.com/updateengine/rebootlock/groups/my+lb/semaphore"
        )
        .await
        .0,
        r#"{"semaphore":0,"max":1,"holders":["69d27b356a94476da859461d3a3bc6fd"]}"#
    );
    // A daemon's expiring hold leaves locksmith's JSON exactly as a plain one.
    let d = LockClient::new(kv.client.clone(), "d");
    d.lock_expiring(id, 30).await.unwrap();
    let (v, _) = value(&kv.client, d.key()).await;
    assert_eq!(
        v,
        r#"{"semaphore":0,"max":1,"holders":["69d27b356a94476da859461d3a3bc6fd"]}"#
    );
    assert!(
        kv.client
            .get(&d.lease_key(id), GetOptions::default())
            .await
            .unwrap()
            .node()
            .unwrap()
            .ttl
            > 0
    );
    kv.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_reboot_the_hold_is_renewed_and_released_only_when_healthy() {
    let kv = start_kv().await;
    let lock = LockClient::new(kv.client.clone(), "");
    let id = "f".repeat(32);
    // Held from before the reboot, with a lease about to lapse.
    lock.lock_expiring(&id, 1).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(thu(12, 0), SCALE));
    let health = HealthFlag::new(false);
    let mut m = Machine::new(
        id.clone(),
        DaemonConfig::new(RebootStrategy::EtcdLock),
        clock,
    );
    m.health = Arc::new(health.clone());
    m.lease_ttl = 3;
    let r: Arc<dyn Rebooter> = Arc::new(SimulatedRebooter::default());
    let host = m.host(Status::Idle, r);
    let task = tokio::spawn(
        Driver::new(
            m.daemon.clone(),
            m.driver_config(),
            Some(kv.client.clone()),
            host,
        )
        .unwrap()
        .run(),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Unhealthy: still held, and the lease was renewed (it would have lapsed).
    assert_eq!(
        lock.status().await.unwrap().holders(),
        std::slice::from_ref(&id)
    );
    let lease = kv
        .client
        .get(&lock.lease_key(&id), GetOptions::default())
        .await;
    assert!(lease.is_ok(), "lease lapsed: {lease:?}");
    assert!(lock.reap_expired().await.unwrap().is_empty());
    health.set(true);
    let out = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(out, Outcome::Idle);
    assert!(lock.status().await.unwrap().holders().is_empty());
    kv.server.shutdown().await.unwrap();
}
