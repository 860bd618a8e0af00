//! One fault-injection run, start to verdict: build the network, start the
//! cluster, run clients and a watcher while the seed's fault schedule
//! plays, heal, wait for convergence, restart every member (kill -9) and
//! read every key back, then check the history for linearizability, the
//! watcher's log against it, and that all members hold the same store.
//!
//! The final reads are part of the checked history: an acknowledged write
//! that did not survive the restarts makes the history non-linearizable, so
//! durability is checked by the same search.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::Cluster;
use crate::faults::{schedule, Fault, Scheduled};
use crate::history::{Input, Operation, Output, Recorder};
use crate::linearizability::{self, Verdict};
use crate::net::{Net, NetError};
use crate::watch::{self, WatchLog};
use crate::workload::{self, Shared, WatchState};

/// The prefix every key of a run lives under.
pub const PREFIX: &str = "/kr/";
/// The client id of the final reads.
pub const FINAL_READER: usize = 999;
/// Generous: several times what a healthy cluster needs.
const LONG: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub members: usize,
    pub duration: Duration,
    pub seed: u64,
    pub clients: usize,
    pub keys: usize,
    /// The `keelson` binary.
    pub binary: PathBuf,
    /// Where member data and logs go (kept when the run fails).
    pub work_dir: PathBuf,
    /// Distinguishes namespace, bridge and subnet names of concurrent runs.
    pub tag: u32,
    /// Replaces the seed's fault schedule (for targeted tests).
    pub schedule: Option<Vec<Scheduled>>,
    /// Harness self-test: local (non-quorum) reads from a random member per
    /// operation, which a partition makes stale; the run must then fail.
    pub stale_reads: bool,
}

impl RunConfig {
    /// A run with the default workload (4 clients on 5 keys).
    pub fn new(
        members: usize,
        duration: Duration,
        seed: u64,
        binary: PathBuf,
        work_dir: PathBuf,
    ) -> RunConfig {
        RunConfig {
            members,
            duration,
            seed,
            clients: 4,
            keys: 5,
            binary,
            work_dir,
            tag: std::process::id() % 100_000,
            schedule: None,
            stale_reads: false,
        }
    }
}

/// Why a run could not be carried out (as opposed to a violation found).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("network setup: {0} (the harness needs root and iproute2/iptables)")]
    Net(#[from] NetError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cluster did not come up: {0}")]
    Cluster(String),
}

/// Figures and findings of one run.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub seed: u64,
    pub members: usize,
    pub duration_s: u64,
    pub schedule: Vec<Scheduled>,
    /// What each fault hit, as it happened.
    pub applied: Vec<String>,
    pub operations: usize,
    pub indeterminate: usize,
    pub reads: usize,
    pub writes_acked: usize,
    pub compare_failed: usize,
    pub watch_events: usize,
    pub watch_resumes: usize,
    pub watch_writes_matched: usize,
    pub final_index: u64,
    pub check_time: Duration,
    pub violations: Vec<String>,
    pub work_dir: PathBuf,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this run.
    pub fn replay(&self) -> String {
        format!(
            "cargo run --release -p keelson-reliability --bin keelson-faults -- --members {} --duration {} --seed {}",
            self.members, self.duration_s, self.seed
        )
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} · {} members · {} s of faults",
            self.seed, self.members, self.duration_s
        )?;
        writeln!(f, "schedule:")?;
        for s in &self.schedule {
            writeln!(f, "  {s}")?;
        }
        writeln!(f, "applied:")?;
        for a in &self.applied {
            writeln!(f, "  {a}")?;
        }
        writeln!(
            f,
            "operations: {} checked ({} reads, {} acknowledged writes, {} compare failures, {} indeterminate); final index {}; check took {:.2?}",
            self.operations,
            self.reads,
            self.writes_acked,
            self.compare_failed,
            self.indeterminate,
            self.final_index,
            self.check_time
        )?;
        writeln!(
            f,
            "watch: {} events, {} resumes after losing a member, {} acknowledged writes matched",
            self.watch_events, self.watch_resumes, self.watch_writes_matched
        )?;
        if self.passed() {
            writeln!(
                f,
                "PASS: linearizable, watch guarantees held, durable, converged"
            )?;
        } else {
            writeln!(f, "FAIL: {} violation(s)", self.violations.len())?;
            for v in &self.violations {
                writeln!(f, "{v}")?;
            }
            writeln!(
                f,
                "member logs, history.json, watch.json: {}",
                self.work_dir.display()
            )?;
        }
        write!(f, "replay: {}", self.replay())
    }
}

struct StopOnDrop(Arc<Shared>, Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
        self.1.store(true, Ordering::SeqCst);
    }
}

/// A fault in force, and how to undo it.
enum Active {
    Killed(Vec<usize>),
    Network,
}

fn say(line: &str) {
    eprintln!("[keelson-faults] {line}");
}

/// Runs the whole thing. `Err` only for setup failures; violations are in
/// the report.
pub fn run(cfg: &RunConfig) -> Result<RunReport, RunError> {
    let duration_ms = u64::try_from(cfg.duration.as_millis()).unwrap_or(u64::MAX);
    let mut report = RunReport {
        seed: cfg.seed,
        members: cfg.members,
        duration_s: cfg.duration.as_secs(),
        schedule: cfg
            .schedule
            .clone()
            .unwrap_or_else(|| schedule(cfg.seed, cfg.members, duration_ms)),
        work_dir: cfg.work_dir.clone(),
        ..RunReport::default()
    };
    say(&format!(
        "seed {} · {} members · {} s · binary {}",
        cfg.seed,
        cfg.members,
        report.duration_s,
        cfg.binary.display()
    ));
    for s in &report.schedule {
        say(&format!("scheduled {s}"));
    }
    std::fs::create_dir_all(&cfg.work_dir)?;
    // Declared before the cluster: dropped after it, so members die first.
    let net = Net::create(cfg.members, cfg.tag)?;
    let hosts: Vec<(String, String)> = (0..cfg.members)
        .map(|i| (net.addr(i), net.namespaces[i].clone()))
        .collect();
    let mut cluster = Cluster::new(
        &cfg.binary,
        &cfg.work_dir,
        &hosts,
        &format!("kr-{}", cfg.seed),
    );
    for i in 0..cfg.members {
        cluster.start(i)?;
    }
    cluster.wait_healthy(LONG).map_err(RunError::Cluster)?;
    let start_index = cluster
        .wait_converged(PREFIX, LONG)
        .map_err(RunError::Cluster)?;

    let shared = Arc::new(Shared {
        recorder: Recorder::new(),
        addrs: cluster.addrs(),
        keys: workload::keys(PREFIX, cfg.keys),
        stop: AtomicBool::new(false),
        quorum_reads: !cfg.stale_reads,
        sticky: !cfg.stale_reads,
    });
    let watch_state = Arc::new(WatchState::default());
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (s, w, stop) = (shared.clone(), watch_state.clone(), watch_stop.clone());
        thread::spawn(move || workload::watcher(s, w, PREFIX.to_owned(), start_index + 1, stop))
    };
    // Stops the threads on every way out, early errors included.
    let _stop = StopOnDrop(shared.clone(), watch_stop.clone());
    let clients: Vec<_> = (0..cfg.clients)
        .map(|id| {
            let s = shared.clone();
            let seed = cfg.seed;
            thread::spawn(move || workload::client(s, id, seed))
        })
        .collect();

    // The schedule.
    let mut rng = StdRng::seed_from_u64(cfg.seed.rotate_left(17));
    let t0 = Instant::now();
    let sleep_until = |ms: u64| {
        let at = t0 + Duration::from_millis(ms);
        let now = Instant::now();
        if at > now {
            thread::sleep(at - now);
        }
    };
    for s in report.schedule.clone() {
        sleep_until(s.at_ms);
        let (active, what) = apply(&s.fault, &mut cluster, &net, &mut rng)?;
        let line = format!("t={:.1}s {} -> {what}", t0.elapsed().as_secs_f64(), s.fault);
        say(&line);
        report.applied.push(line);
        sleep_until(s.at_ms + s.hold_ms);
        undo(active, &mut cluster, &net)?;
    }
    sleep_until(duration_ms);
    net.heal()?;
    for i in 0..cfg.members {
        cluster.start(i)?;
    }
    shared.stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    say("workload stopped; healing and waiting for convergence");
    let mut violations = Vec::new();
    let settle = |cluster: &Cluster, what: &str, violations: &mut Vec<String>| -> Option<u64> {
        if let Err(e) = cluster.wait_healthy(LONG) {
            violations.push(format!("{what}: {e}"));
            return None;
        }
        match cluster.wait_converged(PREFIX, LONG) {
            Ok(i) => Some(i),
            Err(e) => {
                violations.push(format!("{what}: {e}"));
                None
            }
        }
    };
    settle(&cluster, "after healing", &mut violations);

    // Durability: every member killed at once, restarted, read back.
    say("kill -9 of every member, restart, read back");
    for i in 0..cfg.members {
        cluster.kill(i);
    }
    for i in 0..cfg.members {
        cluster.start(i)?;
    }
    report.final_index = settle(&cluster, "after the final restart", &mut violations).unwrap_or(0);
    for key in &shared.keys {
        final_read(&shared, &cluster, key, &mut violations);
    }

    // The watcher must reach the final index.
    let deadline = Instant::now() + LONG;
    while watch_state.next.load(Ordering::SeqCst) <= report.final_index && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(100));
    }
    let next = watch_state.next.load(Ordering::SeqCst);
    if next <= report.final_index {
        violations.push(format!(
            "watch: the watcher stalled at waitIndex {next}; the store is at {}",
            report.final_index
        ));
    }
    watch_stop.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    let log: WatchLog = watch_state
        .log
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();

    let ops = shared.recorder.operations();
    save(&cfg.work_dir.join("history.json"), &ops);
    save(&cfg.work_dir.join("watch.json"), &log);
    count(&mut report, &ops);
    say(&format!(
        "checking {} operations ({} indeterminate)",
        report.operations, report.indeterminate
    ));
    let t = Instant::now();
    match linearizability::check(&ops) {
        Ok(Verdict::Linearizable) => {}
        Ok(Verdict::Violation(c)) => violations.push(c.to_string()),
        Ok(Verdict::Inconclusive { key, steps }) => violations.push(format!(
            "linearizability check inconclusive on {key} after {steps} steps (search budget exhausted)"
        )),
        Err(e) => violations.push(format!("history could not be checked: {e}")),
    }
    report.check_time = t.elapsed();
    match watch::validate(&log, &ops, PREFIX, true) {
        Ok(s) => {
            report.watch_events = s.events;
            report.watch_resumes = s.resumes;
            report.watch_writes_matched = s.writes_matched;
        }
        Err(v) => {
            report.watch_events = log.events.len();
            report.watch_resumes = log.resumes.len();
            violations.extend(v.iter().take(20).map(|v| format!("watch: {v}")));
        }
    }
    report.violations = violations;
    drop(cluster);
    drop(net);
    Ok(report)
}

fn apply(
    fault: &Fault,
    cluster: &mut Cluster,
    net: &Net,
    rng: &mut StdRng,
) -> Result<(Active, String), RunError> {
    let n = cluster.members.len();
    let leader = || cluster.leader();
    let kill = |cluster: &mut Cluster, v: Vec<usize>| {
        for &i in &v {
            cluster.kill(i);
        }
        let names: Vec<String> = v.iter().map(|i| format!("kr{i}")).collect();
        (Active::Killed(v), format!("killed {}", names.join(",")))
    };
    Ok(match fault {
        Fault::KillLeader => {
            let l = leader().unwrap_or_else(|| rng.gen_range(0..n));
            kill(cluster, vec![l])
        }
        Fault::KillFollower(k) => {
            let l = leader().unwrap_or(0);
            kill(cluster, vec![(l + k) % n])
        }
        Fault::KillMember(i) => kill(cluster, vec![*i % n]),
        Fault::KillAll => kill(cluster, (0..n).collect()),
        Fault::IsolateLeader => {
            let l = leader().unwrap_or_else(|| rng.gen_range(0..n));
            for j in (0..n).filter(|j| *j != l) {
                net.cut(l, j)?;
            }
            (Active::Network, format!("isolated kr{l}"))
        }
        Fault::Split(minority) => {
            for &a in minority {
                for b in (0..n).filter(|b| !minority.contains(b)) {
                    net.cut(a, b)?;
                }
            }
            (Active::Network, "split".to_owned())
        }
        Fault::LinkDown(i) => {
            net.link(*i % n, false)?;
            (Active::Network, format!("kr{} offline", i % n))
        }
        Fault::Loss(p) => {
            for i in 0..n {
                net.loss(i, *p)?;
            }
            (Active::Network, "lossy".to_owned())
        }
    })
}

fn undo(active: Active, cluster: &mut Cluster, net: &Net) -> Result<(), RunError> {
    match active {
        Active::Killed(v) => {
            for i in v {
                cluster.start(i)?;
            }
        }
        Active::Network => net.heal()?,
    }
    Ok(())
}

/// A quorum read of `key`, retried until it is determinate, recorded.
fn final_read(shared: &Shared, cluster: &Cluster, key: &str, violations: &mut Vec<String>) {
    let deadline = Instant::now() + LONG;
    for addr in cluster.addrs().iter().cycle() {
        let pending = shared.recorder.invoke(FINAL_READER, key, Input::Get);
        match workload::perform(*addr, key, &Input::Get, workload::OP_TIMEOUT) {
            Some(o @ Output::Read(_)) => {
                shared.recorder.complete(pending, o);
                return;
            }
            _ if Instant::now() > deadline => break,
            _ => thread::sleep(Duration::from_millis(200)),
        }
    }
    violations.push(format!(
        "durability: no member answered a quorum read of {key} after the final restart"
    ));
}

fn count(report: &mut RunReport, ops: &[Operation]) {
    report.operations = ops.len();
    for op in ops {
        match (&op.input, &op.output) {
            (_, Output::Unknown) => report.indeterminate += 1,
            (Input::Get, _) => report.reads += 1,
            (_, Output::Written { .. } | Output::Swapped { .. }) => report.writes_acked += 1,
            (_, Output::CompareFailed) => report.compare_failed += 1,
            _ => {}
        }
    }
}

fn save<T: serde::Serialize>(path: &std::path::Path, v: &T) {
    if let Ok(text) = serde_json::to_string(v) {
        let _ = std::fs::write(path, text);
    }
}
