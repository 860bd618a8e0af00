//! The built-in supervisor: runs `.service` units as process groups, with no
//! systemd.
//!
//! Each loaded unit gets one tokio task that owns its processes and walks
//! systemd's service state machine (`ExecStartPre` → `ExecStart` →
//! `ExecStartPost`, `ExecStop` → kill → `ExecStopPost`, `Restart=`), so every
//! decision about one unit is serialized without locks. Commands run in their
//! own process group with stdout and stderr appended straight to the unit's
//! log file, so they keep running and logging while the agent restarts. The
//! main process's PID and kernel start time are recorded in the state
//! directory; a new supervisor adopts a recorded process that is still the
//! same process (same start time) and kills the group of one whose unit is
//! gone, so an agent restart neither orphans nor duplicates anything.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_unitfile::exec::{
    parse_environment_file, parse_environment_with, parse_exec_with, ExecCommand,
};
use keelson_unitfile::specifier::SpecifierContext;
use keelson_unitfile::{fleet_hash, Mode, Unit, UnitHash};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{check_runnable, InitError, InitSystem};
use crate::model::SystemdState;
use crate::reconcile::LocalUnit;

/// Where a supervisor keeps its files and how units run.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Unit files as loaded (fleet's `units_directory`).
    pub units_dir: PathBuf,
    /// PID records, logs and the `bin/` directory put first in `PATH`.
    pub state_dir: PathBuf,
    /// Keelson's `kvctl`; when set, `bin/etcdctl` links to it.
    pub kvctl: Option<PathBuf>,
    /// `%m`.
    pub machine_id: String,
    /// `%H`; the host's name when `None`.
    pub host_name: Option<String>,
    /// The machine's root: absolute `EnvironmentFile=` paths (the book's
    /// `/etc/environment`) are read under it, so that several simulated
    /// machines on one host each have their own. `/` on a real machine.
    pub root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Simple,
    Oneshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestartPolicy {
    No,
    Always,
    OnFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillMode {
    ControlGroup,
    Mixed,
    Process,
    None,
}

/// A service unit as the supervisor runs it.
#[derive(Debug, Clone)]
struct ServiceSpec {
    ty: Type,
    remain_after_exit: bool,
    restart: RestartPolicy,
    restart_sec: Duration,
    timeout_start: Option<Duration>,
    timeout_stop: Duration,
    kill_mode: KillMode,
    /// `Exec*` values in order (specifiers already expanded).
    start_pre: Vec<ExecCommand>,
    start: Vec<ExecCommand>,
    start_post: Vec<ExecCommand>,
    stop: Vec<ExecCommand>,
    stop_post: Vec<ExecCommand>,
    environment: Vec<(String, String)>,
    /// (path, optional) in order.
    environment_files: Vec<(String, bool)>,
    binds_to: Vec<String>,
    working_dir: Option<String>,
}

/// systemd time span: `30`, `30s`, `5min`, `1min 30s`, `500ms`, `infinity`.
pub fn parse_timespan(s: &str) -> Option<Option<Duration>> {
    let s = s.trim();
    if s == "infinity" {
        return Some(None);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 0.001,
            "us" | "usec" => 0.000_001,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    if total == 0.0 {
        // `0` disables a timeout.
        return Some(None);
    }
    Some(Some(Duration::from_secs_f64(total)))
}

fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "yes" | "true" | "on" | "y" | "t"
    )
}

impl ServiceSpec {
    fn parse(name: &str, raw: &str, ctx: &SpecifierContext) -> Result<ServiceSpec, InitError> {
        let bad = |reason: String| InitError::InvalidUnit {
            name: name.to_owned(),
            reason,
        };
        let unit = Unit::parse(raw, Mode::Systemd, Some(name)).map_err(|e| bad(e.to_string()))?;
        let mut spec = ServiceSpec {
            ty: Type::Simple,
            remain_after_exit: false,
            restart: RestartPolicy::No,
            restart_sec: Duration::from_millis(100),
            timeout_start: Some(Duration::from_secs(90)),
            timeout_stop: Duration::from_secs(90),
            kill_mode: KillMode::ControlGroup,
            start_pre: vec![],
            start: vec![],
            start_post: vec![],
            stop: vec![],
            stop_post: vec![],
            environment: vec![],
            environment_files: vec![],
            binds_to: vec![],
            working_dir: None,
        };
        for opt in unit.effective_options() {
            let v = opt.value.as_str();
            let at = |e: String| bad(format!("line {}: {}={}: {e}", opt.line, opt.name, v));
            match (opt.section.as_str(), opt.name.as_str()) {
                ("Unit", "BindsTo") => {
                    let v = keelson_unitfile::specifier::expand(v, ctx)
                        .map_err(|e| at(e.to_string()))?;
                    spec.binds_to
                        .extend(v.split_whitespace().map(str::to_owned))
                }
                ("Service", "Type") => {
                    spec.ty = match v {
                        "simple" | "exec" | "notify" | "forking" | "idle" | "" => Type::Simple,
                        "oneshot" => Type::Oneshot,
                        other => return Err(at(format!("unknown type {other:?}"))),
                    }
                }
                ("Service", "RemainAfterExit") => spec.remain_after_exit = truthy(v),
                ("Service", "Restart") => {
                    spec.restart = match v {
                        "no" | "" => RestartPolicy::No,
                        "always" => RestartPolicy::Always,
                        "on-failure" | "on-abnormal" | "on-abort" | "on-watchdog" => {
                            RestartPolicy::OnFailure
                        }
                        "on-success" => RestartPolicy::No,
                        other => return Err(at(format!("unknown restart policy {other:?}"))),
                    }
                }
                ("Service", "RestartSec") => {
                    spec.restart_sec = parse_timespan(v)
                        .ok_or_else(|| at("not a time span".into()))?
                        .unwrap_or(Duration::ZERO)
                }
                ("Service", "TimeoutStartSec") => {
                    spec.timeout_start =
                        parse_timespan(v).ok_or_else(|| at("not a time span".into()))?
                }
                ("Service", "TimeoutStopSec") => {
                    spec.timeout_stop = parse_timespan(v)
                        .ok_or_else(|| at("not a time span".into()))?
                        .unwrap_or(Duration::from_secs(3600))
                }
                ("Service", "TimeoutSec") => {
                    let t = parse_timespan(v).ok_or_else(|| at("not a time span".into()))?;
                    spec.timeout_start = t;
                    spec.timeout_stop = t.unwrap_or(Duration::from_secs(3600));
                }
                ("Service", "KillMode") => {
                    spec.kill_mode = match v {
                        "control-group" => KillMode::ControlGroup,
                        "mixed" => KillMode::Mixed,
                        "process" => KillMode::Process,
                        "none" => KillMode::None,
                        other => return Err(at(format!("unknown kill mode {other:?}"))),
                    }
                }
                ("Service", "Environment") => {
                    let vars = parse_environment_with(v, ctx).map_err(|e| at(e.to_string()))?;
                    spec.environment.extend(vars);
                }
                ("Service", "EnvironmentFile") => {
                    let (path, optional) = match v.strip_prefix('-') {
                        Some(p) => (p, true),
                        None => (v, false),
                    };
                    spec.environment_files.push((path.to_owned(), optional));
                }
                ("Service", "WorkingDirectory") => {
                    spec.working_dir = Some(v.trim_start_matches('-').to_owned())
                }
                (
                    "Service",
                    key @ ("ExecStartPre" | "ExecStart" | "ExecStartPost" | "ExecStop"
                    | "ExecStopPost"),
                ) => {
                    let line = parse_exec_with(v, ctx).map_err(|e| at(e.to_string()))?;
                    let list = match key {
                        "ExecStartPre" => &mut spec.start_pre,
                        "ExecStart" => &mut spec.start,
                        "ExecStartPost" => &mut spec.start_post,
                        "ExecStop" => &mut spec.stop,
                        _ => &mut spec.stop_post,
                    };
                    if line.commands.is_empty() {
                        list.clear();
                    } else {
                        list.extend(line.commands);
                    }
                }
                _ => {}
            }
        }
        if spec.start.is_empty() && !(spec.ty == Type::Oneshot && spec.remain_after_exit) {
            return Err(bad("has no ExecStart= setting; refusing to run it".into()));
        }
        if spec.ty == Type::Simple && spec.start.len() > 1 {
            return Err(bad(
                "has more than one ExecStart= command, which only Type=oneshot allows".into(),
            ));
        }
        Ok(spec)
    }
}

/// What the state directory records about a unit's processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    launched: bool,
    main_pid: Option<i32>,
    main_start_time: Option<u64>,
    active: String,
    sub: String,
}

/// The kernel start time of a process (field 22 of `/proc/<pid>/stat`).
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after the command start at field 3 (state).
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process exists and is not a zombie.
fn process_alive(pid: i32, start_time: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next();
    if state == Some("Z") || state == Some("X") {
        return false;
    }
    fields.nth(18).and_then(|s| s.parse().ok()) == Some(start_time)
}

fn signal_group(pgid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, sig);
    }
}

fn signal_process(pid: i32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = kill_process(p, sig);
    }
}

fn group_alive(pgid: i32) -> bool {
    Pid::from_raw(pgid).is_some_and(|p| rustix::process::test_kill_process_group(p).is_ok())
}

enum Cmd {
    Start,
    /// `keep_launched`: a stop caused by `BindsTo=`, not by the agent.
    Stop {
        keep_launched: bool,
    },
    Unload,
}

struct Entry {
    hash: UnitHash,
    binds_to: Vec<String>,
    tx: mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<(bool, SystemdState)>>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    cfg: SupervisorConfig,
    path_env: String,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Tasks of units being unloaded, awaited before a reload of the name.
    finishing: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    changed: watch::Sender<u64>,
}

/// The built-in process supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let context = context.into();
    move |source| InitError::Io { context, source }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Supervisor {
    /// Start a supervisor; must be called inside a tokio runtime. Units
    /// found in `units_dir` are loaded again, and processes recorded by a
    /// previous supervisor are adopted (or killed if their unit is gone).
    pub fn new(cfg: SupervisorConfig) -> Result<Supervisor, InitError> {
        for d in [
            cfg.units_dir.clone(),
            cfg.state_dir.join("records"),
            cfg.state_dir.join("logs"),
            cfg.state_dir.join("bin"),
        ] {
            fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
        }
        let bin = cfg.state_dir.join("bin");
        if let Some(kvctl) = &cfg.kvctl {
            let link = bin.join("etcdctl");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(kvctl, &link).map_err(io(format!(
                "linking {} to {}",
                link.display(),
                kvctl.display()
            )))?;
        }
        let path_env = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            bin.display()
        );
        let sup = Supervisor {
            inner: Arc::new(Inner {
                cfg,
                path_env,
                entries: Mutex::new(BTreeMap::new()),
                finishing: Mutex::new(HashMap::new()),
                changed: watch::channel(0).0,
            }),
        };
        sup.recover()?;
        Ok(sup)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.inner
            .cfg
            .state_dir
            .join("records")
            .join(format!("{name}.json"))
    }

    /// The unit's log file.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.inner
            .cfg
            .state_dir
            .join("logs")
            .join(format!("{name}.log"))
    }

    fn recover(&self) -> Result<(), InitError> {
        let records_dir = self.inner.cfg.state_dir.join("records");
        let mut records: BTreeMap<String, Record> = BTreeMap::new();
        if let Ok(rd) = fs::read_dir(&records_dir) {
            for e in rd.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if let Some(name) = file.strip_suffix(".json") {
                    if let Ok(text) = fs::read_to_string(e.path()) {
                        if let Ok(r) = serde_json::from_str::<Record>(&text) {
                            records.insert(name.to_owned(), r);
                        }
                    }
                }
            }
        }
        let mut units: Vec<(String, String)> = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.inner.cfg.units_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Ok(raw) = fs::read_to_string(e.path()) {
                    units.push((name, raw));
                }
            }
        }
        units.sort();
        for (name, raw) in units {
            let record = records.remove(&name);
            if let Err(e) = self.load_with(&name, &raw, record.clone()) {
                tracing::warn!(unit = %name, error = %e, "dropping unit that cannot be reloaded");
                let _ = fs::remove_file(self.inner.cfg.units_dir.join(&name));
                if let Some(r) = record {
                    kill_recorded(&r);
                }
                let _ = fs::remove_file(self.record_path(&name));
            }
        }
        // Records whose unit file is gone: their processes must not linger.
        for (name, r) in records {
            kill_recorded(&r);
            let _ = fs::remove_file(self.record_path(&name));
        }
        Ok(())
    }

    fn load_with(&self, name: &str, raw: &str, record: Option<Record>) -> Result<(), InitError> {
        let unit_name = check_runnable(name)?;
        let hash = fleet_hash(raw).map_err(|e| InitError::InvalidUnit {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        let host = self.inner.cfg.host_name.clone().or_else(|| {
            fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        });
        let mut ctx =
            SpecifierContext::system(unit_name).with_machine_id(self.inner.cfg.machine_id.clone());
        if let Some(h) = host {
            ctx = ctx.with_host_name(h);
        }
        if let Ok(b) = fs::read_to_string("/proc/sys/kernel/random/boot_id") {
            ctx = ctx.with_boot_id(b.trim().to_owned());
        }
        let spec = ServiceSpec::parse(name, raw, &ctx)?;
        let path = self.inner.cfg.units_dir.join(name);
        if record.is_none() {
            fs::write(&path, raw).map_err(io(format!("writing {}", path.display())))?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .map_err(io(format!("opening the log of {name}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let initial = match &record {
            Some(r) if !r.active.is_empty() => SystemdState::new("loaded", &r.active, &r.sub),
            _ => SystemdState::loaded_inactive(),
        };
        let launched = record.as_ref().is_some_and(|r| r.launched);
        let status = Arc::new(Mutex::new((launched, initial)));
        let replaced = lock(&self.inner.entries).remove(name);
        let predecessor = match replaced {
            Some(old) => {
                let _ = old.tx.send(Cmd::Unload);
                Some(old.task)
            }
            None => lock(&self.inner.finishing).remove(name),
        };
        let runner = Runner {
            name: name.to_owned(),
            spec: spec.clone(),
            sup: self.clone(),
            log,
            status: status.clone(),
            main: None,
        };
        let task = tokio::spawn(runner.run(rx, record, predecessor));
        lock(&self.inner.entries).insert(
            name.to_owned(),
            Entry {
                hash,
                binds_to: spec.binds_to.clone(),
                tx,
                status,
                task,
            },
        );
        self.notify();
        Ok(())
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|n| *n += 1);
    }

    fn send(&self, name: &str, cmd: Cmd) -> Result<(), InitError> {
        let entries = lock(&self.inner.entries);
        let e = entries
            .get(name)
            .ok_or_else(|| InitError::NotLoaded(name.to_owned()))?;
        e.tx.send(cmd)
            .map_err(|_| InitError::NotLoaded(name.to_owned()))
    }

    /// Called by a unit's task on every state change.
    fn state_changed(&self, name: &str, state: &SystemdState) {
        self.notify();
        if state.is_active() {
            return;
        }
        // BindsTo=: units bound to this one stop with it.
        let entries = lock(&self.inner.entries);
        for (other, e) in entries.iter() {
            if e.binds_to.iter().any(|b| b == name) && lock(&e.status).1.is_active() {
                tracing::info!(unit = %other, bound_to = %name, "stopping bound unit");
                let _ = e.tx.send(Cmd::Stop {
                    keep_launched: true,
                });
            }
        }
    }

    /// Stop every unit and wait (up to `timeout`) until none is active.
    pub async fn stop_all(&self, timeout: Duration) {
        let names: Vec<String> = lock(&self.inner.entries).keys().cloned().collect();
        for n in &names {
            let _ = self.send(
                n,
                Cmd::Stop {
                    keep_launched: false,
                },
            );
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && self.units().iter().any(|u| u.state.is_active()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Main PIDs of running units (for tests and `status`).
    pub fn main_pids(&self) -> BTreeMap<String, i32> {
        let mut out = BTreeMap::new();
        for name in lock(&self.inner.entries).keys() {
            if let Ok(text) = fs::read_to_string(self.record_path(name)) {
                if let Ok(Record {
                    main_pid: Some(p), ..
                }) = serde_json::from_str(&text)
                {
                    out.insert(name.clone(), p);
                }
            }
        }
        out
    }

    /// Forget every unit without stopping anything (what a crashed agent
    /// leaves behind); for tests of adoption.
    pub fn abandon(&self) {
        let mut entries = lock(&self.inner.entries);
        entries.clear();
    }
}

fn kill_recorded(r: &Record) {
    if let (Some(pid), Some(st)) = (r.main_pid, r.main_start_time) {
        if process_alive(pid, st) {
            signal_group(pid, Signal::KILL);
        }
    }
}

impl InitSystem for Supervisor {
    fn load(&self, name: &str, raw: &str) -> Result<(), InitError> {
        self.load_with(name, raw, None)
    }

    fn unload(&self, name: &str) -> Result<(), InitError> {
        let removed = lock(&self.inner.entries).remove(name);
        if let Some(e) = removed {
            let _ = e.tx.send(Cmd::Unload);
            // A reload of this name waits for the old processes to be gone.
            lock(&self.inner.finishing).insert(name.to_owned(), e.task);
        }
        let path = self.inner.cfg.units_dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("removing {}", path.display()))(e)),
        }
        self.notify();
        Ok(())
    }

    fn start(&self, name: &str) -> Result<(), InitError> {
        self.send(name, Cmd::Start)
    }

    fn stop(&self, name: &str) -> Result<(), InitError> {
        self.send(
            name,
            Cmd::Stop {
                keep_launched: false,
            },
        )
    }

    fn units(&self) -> Vec<LocalUnit> {
        lock(&self.inner.entries)
            .iter()
            .map(|(name, e)| {
                let (launched, state) = lock(&e.status).clone();
                LocalUnit {
                    name: name.clone(),
                    hash: e.hash,
                    launched,
                    state,
                }
            })
            .collect()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    fn journal(&self, name: &str, lines: usize) -> Result<Vec<String>, InitError> {
        let path = self.log_path(name);
        let f = File::open(&path).map_err(io(format!("opening {}", path.display())))?;
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        Ok(all[all.len().saturating_sub(lines)..].to_vec())
    }
}

/// The main process: a child we spawned, or one adopted from a record.
enum Main {
    Child(tokio::process::Child, i32),
    Adopted(i32, u64),
}

impl Main {
    fn pid(&self) -> i32 {
        match self {
            Main::Child(_, p) | Main::Adopted(p, _) => *p,
        }
    }

    /// Wait for exit; `Some(true)` clean, `Some(false)` failed.
    async fn wait(&mut self) -> bool {
        match self {
            Main::Child(c, _) => match c.wait().await {
                Ok(st) => st.success() || clean_signal(&st),
                Err(_) => false,
            },
            Main::Adopted(pid, st) => {
                while process_alive(*pid, *st) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // The exit status of a process we did not spawn is unknown.
                false
            }
        }
    }
}

fn clean_signal(st: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(st.signal(), Some(1 | 2 | 13 | 15))
}

struct Runner {
    name: String,
    spec: ServiceSpec,
    sup: Supervisor,
    log: File,
    status: Arc<Mutex<(bool, SystemdState)>>,
    main: Option<Main>,
}

enum Outcome {
    Ok,
    Failed(String),
}

impl Runner {
    fn log_line(&mut self, msg: &str) {
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let _ = writeln!(self.log, "{ts} keelson[{}]: {msg}", self.name);
    }

    fn set(&mut self, active: &str, sub: &str) {
        let state = SystemdState::new("loaded", active, sub);
        {
            let mut s = lock(&self.status);
            if s.1 == state {
                return;
            }
            s.1 = state.clone();
        }
        self.persist();
        self.sup.state_changed(&self.name, &state);
    }

    fn set_launched(&mut self, launched: bool) {
        lock(&self.status).0 = launched;
        self.persist();
        self.sup.notify();
    }

    fn persist(&self) {
        let (launched, state) = lock(&self.status).clone();
        let main_pid = self.main.as_ref().map(Main::pid);
        let rec = Record {
            launched,
            main_pid,
            main_start_time: main_pid.and_then(process_start_time),
            active: state.active,
            sub: state.sub,
        };
        if let Ok(text) = serde_json::to_string(&rec) {
            let path = self.sup.record_path(&self.name);
            let tmp = path.with_extension("tmp");
            if fs::write(&tmp, text).is_ok() {
                let _ = fs::rename(&tmp, &path);
            }
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Cmd>,
        record: Option<Record>,
        predecessor: Option<tokio::task::JoinHandle<()>>,
    ) {
        if let Some(p) = predecessor {
            let _ = p.await;
        }
        let mut restart_at: Option<Instant> = None;
        if let Some(r) = record {
            match (r.main_pid, r.main_start_time) {
                (Some(pid), Some(st)) if process_alive(pid, st) => {
                    self.log_line(&format!("adopted main process {pid}"));
                    self.main = Some(Main::Adopted(pid, st));
                    self.set("active", "running");
                }
                _ if r.launched && r.active == "active" && r.sub == "exited" => {}
                _ if r.launched && self.spec.restart != RestartPolicy::No => {
                    restart_at = Some(Instant::now());
                }
                _ => self.set("inactive", "dead"),
            }
        }
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    // The supervisor was dropped (the agent died): leave the
                    // processes running for the next one to adopt.
                    None => return,
                    Some(Cmd::Unload) => {
                        self.stop_now().await;
                        let _ = fs::remove_file(self.sup.record_path(&self.name));
                        self.sup.notify();
                        return;
                    }
                    Some(Cmd::Start) => {
                        restart_at = None;
                        self.set_launched(true);
                        let active = lock(&self.status).1.is_active();
                        if !active || lock(&self.status).1.sub == "auto-restart" {
                            restart_at = self.start().await;
                        }
                    }
                    Some(Cmd::Stop { keep_launched }) => {
                        restart_at = None;
                        if !keep_launched {
                            self.set_launched(false);
                        }
                        self.stop_now().await;
                    }
                },
                clean = async { match self.main.as_mut() { Some(m) => m.wait().await, None => std::future::pending().await } } => {
                    restart_at = self.main_exited(clean).await;
                }
                _ = async { match restart_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                    self.log_line("scheduled restart");
                    restart_at = self.start().await;
                }
            }
        }
    }

    fn env(&mut self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("PATH".into(), self.sup.inner.path_env.clone());
        env.insert("LANG".into(), "C".into());
        env.insert("HOME".into(), "/root".into());
        for (path, optional) in self.spec.environment_files.clone() {
            let at = self.sup.inner.cfg.root.join(
                Path::new(&path)
                    .strip_prefix("/")
                    .unwrap_or(Path::new(&path)),
            );
            match fs::read_to_string(&at) {
                Ok(text) => env.extend(parse_environment_file(&text).to_map()),
                Err(e) if !optional => {
                    self.log_line(&format!("failed to read EnvironmentFile {path}: {e}"))
                }
                Err(_) => {}
            }
        }
        for (k, v) in &self.spec.environment {
            env.insert(k.clone(), v.clone());
        }
        env
    }

    fn command(
        &mut self,
        cmd: &ExecCommand,
        env: &HashMap<String, String>,
    ) -> Option<tokio::process::Command> {
        let argv = cmd.expand_env(env);
        let mut program = cmd.path.clone();
        if self.sup.inner.cfg.kvctl.is_some()
            && Path::new(&program)
                .file_name()
                .is_some_and(|f| f == "etcdctl")
            && !Path::new(&program).exists()
        {
            program = self
                .sup
                .inner
                .cfg
                .state_dir
                .join("bin/etcdctl")
                .display()
                .to_string();
        }
        let (Ok(out), Ok(err)) = (self.log.try_clone(), self.log.try_clone()) else {
            self.log_line("cannot duplicate the log file");
            return None;
        };
        let mut c = tokio::process::Command::new(program);
        if let Some(a0) = argv.first() {
            c.arg0(a0);
        }
        c.args(argv.iter().skip(1))
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &self.spec.working_dir {
            c.current_dir(dir);
        }
        Some(c)
    }

    /// Run one control command to completion (killing its group at the deadline).
    async fn run_control(
        &mut self,
        cmd: &ExecCommand,
        env: &HashMap<String, String>,
        deadline: Option<Instant>,
    ) -> Outcome {
        let Some(mut c) = self.command(cmd, env) else {
            return Outcome::Failed("resources".into());
        };
        let mut child = match c.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                self.log_line(&format!("failed to execute {}: {e}", cmd.path));
                return if cmd.ignore_failure {
                    Outcome::Ok
                } else {
                    Outcome::Failed("exit-code".into())
                };
            }
        };
        let pid = child.id().map(|p| p as i32);
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d, child.wait()).await {
                Ok(r) => r.ok(),
                Err(_) => {
                    if let Some(p) = pid {
                        signal_group(p, Signal::KILL);
                    }
                    let _ = child.wait().await;
                    self.log_line(&format!("{} timed out", cmd.path));
                    return Outcome::Failed("timeout".into());
                }
            },
            None => child.wait().await.ok(),
        };
        match result {
            Some(st) if st.success() => Outcome::Ok,
            Some(st) => {
                self.log_line(&format!("{} exited: {st}", cmd.path));
                if cmd.ignore_failure {
                    Outcome::Ok
                } else {
                    Outcome::Failed("exit-code".into())
                }
            }
            None => Outcome::Failed("exit-code".into()),
        }
    }

    async fn run_list(
        &mut self,
        list: Vec<ExecCommand>,
        env: &HashMap<String, String>,
        deadline: Option<Instant>,
    ) -> Outcome {
        for cmd in &list {
            if let Outcome::Failed(r) = self.run_control(cmd, env, deadline).await {
                return Outcome::Failed(r);
            }
        }
        Outcome::Ok
    }

    /// The start job. Returns when to restart, if the start failed and the
    /// policy says so.
    async fn start(&mut self) -> Option<Instant> {
        self.log_line("Starting");
        let deadline = self.spec.timeout_start.map(|t| Instant::now() + t);
        let env = self.env();
        self.set("activating", "start-pre");
        if let Outcome::Failed(r) = self
            .run_list(self.spec.start_pre.clone(), &env, deadline)
            .await
        {
            return self.fail(&r, &env).await;
        }
        match self.spec.ty {
            Type::Oneshot => {
                self.set("activating", "start");
                if let Outcome::Failed(r) =
                    self.run_list(self.spec.start.clone(), &env, deadline).await
                {
                    return self.fail(&r, &env).await;
                }
                self.set("activating", "start-post");
                if let Outcome::Failed(r) = self
                    .run_list(self.spec.start_post.clone(), &env, deadline)
                    .await
                {
                    return self.fail(&r, &env).await;
                }
                if self.spec.remain_after_exit {
                    self.set("active", "exited");
                } else {
                    self.set("deactivating", "stop-post");
                    let _ = self.run_list(self.spec.stop_post.clone(), &env, None).await;
                    self.set("inactive", "dead");
                }
                self.log_line("Started");
                None
            }
            Type::Simple => {
                let Some(cmd) = self.spec.start.first().cloned() else {
                    return self.fail("resources", &env).await;
                };
                let Some(mut c) = self.command(&cmd, &env) else {
                    return self.fail("resources", &env).await;
                };
                match c.spawn() {
                    Ok(child) => {
                        let pid = child.id().map(|p| p as i32).unwrap_or(0);
                        self.main = Some(Main::Child(child, pid));
                        self.log_line(&format!("main process {pid}"));
                    }
                    Err(e) => {
                        self.log_line(&format!("failed to execute {}: {e}", cmd.path));
                        return self.fail("exit-code", &env).await;
                    }
                }
                self.set("active", "running");
                let mut env_post = env.clone();
                if let Some(m) = &self.main {
                    env_post.insert("MAINPID".into(), m.pid().to_string());
                }
                if let Outcome::Failed(r) = self
                    .run_list(self.spec.start_post.clone(), &env_post, deadline)
                    .await
                {
                    self.kill_main().await;
                    return self.fail(&r, &env).await;
                }
                self.log_line("Started");
                None
            }
        }
    }

    /// A start or run failed: clean up, mark failed, maybe schedule a restart.
    async fn fail(&mut self, result: &str, env: &HashMap<String, String>) -> Option<Instant> {
        self.log_line(&format!("Failed with result '{result}'"));
        self.set("deactivating", "stop-post");
        let _ = self.run_list(self.spec.stop_post.clone(), env, None).await;
        self.restart_or(true)
    }

    fn restart_or(&mut self, failed: bool) -> Option<Instant> {
        let launched = lock(&self.status).0;
        let restart = launched
            && match self.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::No => false,
            };
        if restart {
            self.set("activating", "auto-restart");
            Some(Instant::now() + self.spec.restart_sec)
        } else if failed {
            self.set("failed", "failed");
            None
        } else {
            self.set("inactive", "dead");
            None
        }
    }

    async fn main_exited(&mut self, clean: bool) -> Option<Instant> {
        let pid = self.main.as_ref().map(Main::pid).unwrap_or(0);
        self.log_line(&format!(
            "main process {pid} exited ({})",
            if clean { "success" } else { "failure" }
        ));
        let env = self.stop_env(pid);
        if clean && self.spec.remain_after_exit {
            self.main = None;
            self.set("active", "exited");
            return None;
        }
        self.set("deactivating", "stop");
        let _ = self
            .run_list(
                self.spec.stop.clone(),
                &env,
                Some(Instant::now() + self.spec.timeout_stop),
            )
            .await;
        self.kill_main().await;
        self.set("deactivating", "stop-post");
        let _ = self
            .run_list(
                self.spec.stop_post.clone(),
                &env,
                Some(Instant::now() + self.spec.timeout_stop),
            )
            .await;
        self.restart_or(!clean)
    }

    fn stop_env(&mut self, pid: i32) -> HashMap<String, String> {
        let mut env = self.env();
        if pid > 0 {
            env.insert("MAINPID".into(), pid.to_string());
        }
        env
    }

    /// Signal the main process per `KillMode=` and wait; SIGKILL after
    /// `TimeoutStopSec=`. `KillMode=none` leaves the processes alone and
    /// does not wait for them, as systemd does: the book's Docker units set
    /// it so that their `ExecStop=docker stop` is what ends the container.
    async fn kill_main(&mut self) {
        let Some(mut main) = self.main.take() else {
            return;
        };
        let pid = main.pid();
        match self.spec.kill_mode {
            KillMode::ControlGroup => signal_group(pid, Signal::TERM),
            KillMode::Mixed | KillMode::Process => signal_process(pid, Signal::TERM),
            KillMode::None => {
                if let Main::Child(child, _) = main {
                    // Not killed on drop; tokio reaps it when it exits.
                    drop(child);
                }
                return;
            }
        }
        if tokio::time::timeout(self.spec.timeout_stop, main.wait())
            .await
            .is_err()
        {
            self.log_line(&format!("stop timed out; killing process group {pid}"));
            signal_group(pid, Signal::KILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), main.wait()).await;
        }
        if matches!(
            self.spec.kill_mode,
            KillMode::ControlGroup | KillMode::Mixed
        ) && group_alive(pid)
        {
            signal_group(pid, Signal::KILL);
        }
    }

    /// The stop job.
    async fn stop_now(&mut self) {
        let active = lock(&self.status).1.clone();
        if !active.is_active() {
            if active.active == "failed" {
                self.set("inactive", "dead");
            }
            return;
        }
        self.log_line("Stopping");
        let pid = self.main.as_ref().map(Main::pid).unwrap_or(0);
        let env = self.stop_env(pid);
        self.set("deactivating", "stop");
        if self.main.is_some() || active.sub == "exited" {
            let _ = self
                .run_list(
                    self.spec.stop.clone(),
                    &env,
                    Some(Instant::now() + self.spec.timeout_stop),
                )
                .await;
        }
        self.kill_main().await;
        self.set("deactivating", "stop-post");
        let _ = self
            .run_list(
                self.spec.stop_post.clone(),
                &env,
                Some(Instant::now() + self.spec.timeout_stop),
            )
            .await;
        self.set("inactive", "dead");
        self.log_line("Stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("30s"), Some(Some(Duration::from_secs(30))));
        assert_eq!(
            parse_timespan("1min 30s"),
            Some(Some(Duration::from_secs(90)))
        );
        assert_eq!(
            parse_timespan("500ms"),
            Some(Some(Duration::from_millis(500)))
        );
        assert_eq!(parse_timespan("10"), Some(Some(Duration::from_secs(10))));
        assert_eq!(parse_timespan("0"), Some(None));
        assert_eq!(parse_timespan("infinity"), Some(None));
        assert_eq!(parse_timespan("5 parsecs"), None);
    }

    async fn until(sup: &Supervisor, name: &str, active: &str, sub: &str) {
        let want = SystemdState::new("loaded", active, sub);
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while !sup
                .units()
                .iter()
                .any(|u| u.name == name && u.state == want)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "{name} never reached {active}/{sub}");
    }

    fn test_supervisor(dir: &Path) -> Supervisor {
        Supervisor::new(SupervisorConfig {
            units_dir: dir.join("units"),
            state_dir: dir.join("state"),
            kvctl: None,
            machine_id: "1".repeat(32),
            host_name: Some("core-01".into()),
            root: PathBuf::from("/"),
        })
        .unwrap()
    }

    /// `KillMode=none` (the book's Docker units): a stop neither signals the
    /// main process nor waits `TimeoutStopSec=` (90 s here) for it, while the
    /// default kills the whole group, SIGKILL after the timeout.
    #[tokio::test]
    async fn kill_mode_none_leaves_the_process_and_does_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let sup = test_supervisor(dir.path());
        // Like a `docker run` client whose container ignores the SIGTERM it
        // forwards: the whole group ignores it (SIG_IGN survives exec).
        let ignores_term = "ExecStart=/bin/sh -c 'trap \"\" TERM; while true; do sleep 1; done'";
        sup.load(
            "none.service",
            &format!("[Service]\nKillMode=none\n{ignores_term}\n"),
        )
        .unwrap();
        sup.load(
            "group.service",
            &format!("[Service]\nTimeoutStopSec=1\n{ignores_term}\n"),
        )
        .unwrap();
        for name in ["none.service", "group.service"] {
            sup.start(name).unwrap();
            until(&sup, name, "active", "running").await;
        }
        let pids = sup.main_pids();
        let (none, group) = (pids["none.service"], pids["group.service"]);
        // Whatever the outcome, no test process outlives the test.
        struct KillGroups([i32; 2]);
        impl Drop for KillGroups {
            fn drop(&mut self) {
                for g in self.0 {
                    signal_group(g, Signal::KILL);
                }
            }
        }
        let _cleanup = KillGroups([none, group]);

        sup.stop("none.service").unwrap();
        until(&sup, "none.service", "inactive", "dead").await;
        assert!(group_alive(none), "KillMode=none killed the process");
        assert!(!sup.main_pids().contains_key("none.service"));

        sup.stop("group.service").unwrap();
        until(&sup, "group.service", "inactive", "dead").await;
        assert!(
            process_start_time(group).is_none(),
            "the main process outlived its stop"
        );
    }
}
