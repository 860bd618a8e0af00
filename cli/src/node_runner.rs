//! `keelson node`'s runner: several daemons (kv member or proxy, fleet,
//! overlay, update engine, locksmith) in one process under one root
//! directory.
//!
//! Each service runs its daemon's ordinary entry point (`kv_daemon::main`,
//! `fleet_daemon::main`, ...) on its own OS thread with its own tokio
//! runtime, so a service behaves exactly as it does alone. The daemons read
//! their `ETCD_*`/`FLEET_*`/... variables from the process environment, which
//! threads share; a [`ServiceSpec`]'s `env` is therefore turned into the
//! equivalent command-line flags (found through each daemon's clap
//! definition) rather than set in the environment. Log lines are labelled
//! `NODE/SERVICE` by a formatter that reads a per-thread label, which
//! [`label_threads`] copies onto the threads of a daemon's runtime.
//!
//! Stopping: alone, a daemon stops gracefully on SIGTERM/SIGINT; inside a
//! node it waits on [`shutdown_signal`] instead, which the runner trips
//! service by service after it receives a signal (or after one service
//! stopped on its own), last started first: fleet deregisters while its kv is
//! still up. The runner watches the signals from before any service starts,
//! so a signal never takes its default action and kills the node half-way.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use tokio::sync::watch;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::kv_daemon::rooted;

/// A daemon `keelson node` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// `keelson kv` (etcd's flags; `--proxy on` for a proxy).
    Kv,
    /// `keelson fleet` (fleetd).
    Fleet,
    /// `keelson overlay` (flanneld).
    Overlay,
    /// `keelson update-engine`.
    UpdateEngine,
    /// `keelson locksmith` (locksmithd).
    Locksmith,
    /// The node's own units (a cloud-config's `coreos.units`), run by the
    /// built-in supervisor.
    Units,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 6] = [
        ServiceKind::Kv,
        ServiceKind::Fleet,
        ServiceKind::Overlay,
        ServiceKind::UpdateEngine,
        ServiceKind::Locksmith,
        ServiceKind::Units,
    ];

    /// The name used in `--services` and in log labels.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Kv => "kv",
            ServiceKind::Fleet => "fleet",
            ServiceKind::Overlay => "overlay",
            ServiceKind::UpdateEngine => "update-engine",
            ServiceKind::Locksmith => "locksmith",
            ServiceKind::Units => "units",
        }
    }

    /// Parses a `--services` item; the original daemons' names are accepted.
    pub fn parse(s: &str) -> Option<ServiceKind> {
        match s.trim() {
            "kv" | "etcd" | "etcd2" => Some(ServiceKind::Kv),
            "fleet" | "fleetd" => Some(ServiceKind::Fleet),
            "overlay" | "flannel" | "flanneld" => Some(ServiceKind::Overlay),
            "update-engine" | "update_engine" => Some(ServiceKind::UpdateEngine),
            "locksmith" | "locksmithd" => Some(ServiceKind::Locksmith),
            "units" => Some(ServiceKind::Units),
            _ => None,
        }
    }

    /// The daemon's flag definitions, to map environment variables to flags.
    fn command(self) -> clap::Command {
        match self {
            ServiceKind::Kv => crate::kv_daemon::KvFlags::command(),
            ServiceKind::Fleet => crate::fleet_daemon::FleetFlags::command(),
            ServiceKind::Overlay => crate::overlay_daemon::OverlayFlags::command(),
            ServiceKind::UpdateEngine => crate::update::engine_daemon::EngineFlags::command(),
            ServiceKind::Locksmith => crate::locksmith::daemon::DaemonFlags::command(),
            ServiceKind::Units => crate::node_units::UnitsFlags::command(),
        }
    }

    fn entry(self) -> fn(Vec<OsString>) -> ExitCode {
        match self {
            ServiceKind::Kv => crate::kv_daemon::main,
            ServiceKind::Fleet => crate::fleet_daemon::main,
            ServiceKind::Overlay => crate::overlay_daemon::main,
            ServiceKind::UpdateEngine => crate::update::engine_daemon::main,
            ServiceKind::Locksmith => crate::locksmith::daemon::main,
            ServiceKind::Units => crate::node_units::main,
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One service of a node: which daemon, its command-line arguments (as
/// after `keelson <daemon>`), and environment variables in that daemon's own
/// names (`ETCD_NAME`, `FLEET_METADATA`, ...). A flag in `args` wins over the
/// same setting in `env`, as it does for the daemon alone.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub kind: ServiceKind,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

impl ServiceSpec {
    pub fn new(kind: ServiceKind) -> ServiceSpec {
        ServiceSpec {
            kind,
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// Why a node cannot start.
#[derive(Debug)]
pub struct NodeError(pub String);

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `args` sets the long flag `name` (`--name`, `-name`, with or
/// without `=value`).
pub fn has_flag(args: &[OsString], name: &str) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return false;
        };
        body == name || body.strip_prefix(name).is_some_and(|r| r.starts_with('='))
    })
}

/// The value of the long flag `name` in `args`, if given.
pub fn flag_value(args: &[OsString], name: &str) -> Option<String> {
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        if body == name {
            return it.next();
        }
        if let Some(v) = body.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_owned());
        }
    }
    None
}

/// The arguments a service's daemon is started with: its own `args`, then
/// each `env` variable as the flag it stands for (unless the flag is given),
/// then `--root ROOT` (unless given). Unknown variables are reported, as
/// etcd reports an unrecognized `ETCD_*` variable, and skipped.
pub fn effective_args(spec: &ServiceSpec, root: &Path) -> (Vec<OsString>, Vec<String>) {
    let mut args = spec.args.clone();
    let mut warnings = Vec::new();
    let cmd = spec.kind.command();
    for (k, v) in &spec.env {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == k.as_str()));
        match arg.and_then(|a| a.get_long()) {
            Some(long) if has_flag(&args, long) => warnings.push(format!(
                "environment variable {k} is shadowed by the flag --{long}"
            )),
            Some(long) => args.push(OsString::from(format!("--{long}={v}"))),
            None => warnings.push(format!(
                "unrecognized environment variable {k}={v} for {}",
                spec.kind
            )),
        }
    }
    if !has_flag(&args, "root") {
        args.push(OsString::from("--root"));
        args.push(root.as_os_str().to_owned());
    }
    (args, warnings)
}

thread_local! {
    /// `NODE/SERVICE` on a service's threads; unset elsewhere.
    static LABEL: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn current_label() -> Option<String> {
    LABEL.with(|l| l.borrow().clone())
}

fn set_label(label: &str) {
    LABEL.with(|l| *l.borrow_mut() = Some(label.to_owned()));
}

/// Called by each daemon on the runtime builder it is about to build: on a
/// service thread of `keelson node`, the runtime's threads carry the
/// service's label (in their names and for the log formatter); elsewhere
/// nothing changes.
pub fn label_threads(builder: &mut tokio::runtime::Builder) {
    if let Some(label) = current_label() {
        let l2 = label.clone();
        builder
            .thread_name(label)
            .on_thread_start(move || set_label(&l2));
    }
}

/// Prefixes every log line with the label of the thread that logged it.
struct Labelled<F> {
    inner: F,
    default: String,
}

impl<S, N, F> FormatEvent<S, N> for Labelled<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let label = current_label().unwrap_or_else(|| self.default.clone());
        write!(writer, "[{label}] ")?;
        self.inner.format_event(ctx, writer, event)
    }
}

fn init_logging(node: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::stderr().is_terminal();
    let format = Labelled {
        inner: tracing_subscriber::fmt::format().with_ansi(ansi),
        default: format!("{node}/node"),
    };
    // The daemons' own `try_init` calls then find this one and do nothing.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .event_format(format)
        .try_init();
}

/// Writes a machine ID under `root` when fleet will need one and there is
/// none, as systemd does on a machine's first boot.
fn ensure_machine_id(specs: &[ServiceSpec], root: &Path) -> Result<(), NodeError> {
    let Some(fleet) = specs.iter().find(|s| s.kind == ServiceKind::Fleet) else {
        return Ok(());
    };
    if has_flag(&fleet.args, "machine-id") || fleet.env.iter().any(|(k, _)| k == "FLEET_MACHINE_ID")
    {
        return Ok(());
    }
    let root = flag_value(&fleet.args, "root").map_or_else(|| root.to_path_buf(), PathBuf::from);
    let path = rooted(&root, Path::new("/etc/machine-id"));
    if path.exists() {
        return Ok(());
    }
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| NodeError(format!("cannot make a machine ID: {e}")))?;
    let id: String = uuid.trim().chars().filter(|c| *c != '-').collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| NodeError(format!("creating {}: {e}", dir.display())))?;
    }
    std::fs::write(&path, format!("{id}\n"))
        .map_err(|e| NodeError(format!("writing {}: {e}", path.display())))?;
    tracing::info!(machine_id = %id, path = %path.display(), "wrote a new machine ID");
    Ok(())
}

/// How long each service gets to stop before the runner moves on.
const STOP_EACH: Duration = Duration::from_secs(30);

/// The stop switches of the services running in this process, by label.
static STOPS: Mutex<BTreeMap<String, watch::Receiver<bool>>> = Mutex::new(BTreeMap::new());

fn stop_switch(label: &str) -> Option<watch::Receiver<bool>> {
    let map = STOPS.lock().unwrap_or_else(|e| e.into_inner());
    map.get(label).cloned()
}

/// What a daemon waits on before shutting down gracefully. Alone, that is
/// SIGTERM (`"terminated"`) or SIGINT (`"interrupt"`); inside `keelson
/// node`, the runner's word (`"stop"`), so that it can stop the services in
/// order (fleet before the kv it deregisters from). Call it from the
/// daemon's own threads.
pub fn shutdown_signal() -> impl Future<Output = &'static str> + Send + 'static {
    let switch = current_label().and_then(|l| stop_switch(&l));
    async move {
        if let Some(mut rx) = switch {
            let _ = rx.wait_for(|v| *v).await;
            return "stop";
        }
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "terminated",
                _ = tokio::signal::ctrl_c() => "interrupt",
            },
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM ({e}); stopping on SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
                "interrupt"
            }
        }
    }
}

/// Runs `specs` under `root` in this process until SIGTERM/SIGINT or until
/// one of them stops on its own; then stops the others in the reverse of
/// their order in `specs`. Exits 0 when every service stopped cleanly, 1
/// when one failed (the log says which).
pub fn run_services(node: &str, root: &Path, specs: Vec<ServiceSpec>) -> ExitCode {
    init_logging(node);
    match run_inner(node, root, specs) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("keelson node: {e}");
            ExitCode::from(1)
        }
    }
}

enum Event {
    Exited(usize, bool),
    Signal(&'static str),
}

fn run_inner(node: &str, root: &Path, specs: Vec<ServiceSpec>) -> Result<ExitCode, NodeError> {
    if specs.is_empty() {
        return Err(NodeError("no services to run".into()));
    }
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.kind == s.kind) {
            return Err(NodeError(format!("service {} is listed twice", s.kind)));
        }
    }
    ensure_machine_id(&specs, root)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NodeError(format!("cannot start the runtime: {e}")))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    // The runner alone watches the signals; the services wait on it.
    let signals = {
        let tx = tx.clone();
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())
                .map_err(|e| NodeError(format!("cannot watch SIGTERM: {e}")))?;
            let mut int = signal(SignalKind::interrupt())
                .map_err(|e| NodeError(format!("cannot watch SIGINT: {e}")))?;
            Ok::<_, NodeError>(tokio::spawn(async move {
                loop {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    if tx.send(Event::Signal(name)).is_err() {
                        return;
                    }
                }
            }))
        })?
    };
    let mut kinds = Vec::new();
    let mut switches = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let (args, warnings) = effective_args(&spec, root);
        for w in warnings {
            tracing::warn!(service = %spec.kind, "{w}");
        }
        let label = format!("{node}/{}", spec.kind);
        let (switch, switch_rx) = watch::channel(false);
        STOPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(label.clone(), switch_rx);
        kinds.push(spec.kind);
        switches.push(switch);
        let thread_tx = tx.clone();
        let entry = spec.kind.entry();
        tracing::info!(service = %spec.kind, "starting");
        let thread_label = label.clone();
        let spawned = std::thread::Builder::new()
            .name(label.clone())
            .spawn(move || {
                set_label(&thread_label);
                let ok = std::panic::catch_unwind(move || entry(args) == ExitCode::SUCCESS)
                    .unwrap_or(false);
                let _ = thread_tx.send(Event::Exited(i, ok));
            });
        if let Err(e) = spawned {
            tracing::error!(service = %label, "cannot start a thread: {e}");
            let _ = tx.send(Event::Exited(i, false));
        }
    }
    drop(tx);
    let code = rt.block_on(async {
        let mut exited = vec![false; kinds.len()];
        let mut failed: Vec<ServiceKind> = Vec::new();
        let record = |i: usize, ok: bool, exited: &mut Vec<bool>, failed: &mut Vec<ServiceKind>| {
            exited[i] = true;
            let kind = kinds[i];
            if ok {
                tracing::info!(service = %kind, "stopped");
            } else {
                tracing::error!(service = %kind, "service {kind} failed");
                failed.push(kind);
            }
        };
        // Run until a signal, or until a service stops on its own.
        match rx.recv().await {
            Some(Event::Signal(name)) => {
                tracing::info!("received {name}, stopping the node's services");
            }
            Some(Event::Exited(i, ok)) => {
                record(i, ok, &mut exited, &mut failed);
                if exited.iter().any(|e| !e) {
                    tracing::warn!(
                        "service {} stopped on its own; stopping the node's other services",
                        kinds[i]
                    );
                }
            }
            None => {}
        }
        // Stop the rest, last started first.
        for i in (0..kinds.len()).rev() {
            if exited[i] {
                continue;
            }
            let _ = switches[i].send(true);
            let deadline = tokio::time::Instant::now() + STOP_EACH;
            while !exited[i] {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Event::Exited(j, ok))) => record(j, ok, &mut exited, &mut failed),
                    Ok(Some(Event::Signal(_))) => {}
                    Ok(None) => break,
                    Err(_) => {
                        tracing::error!("service {} did not stop within {STOP_EACH:?}", kinds[i]);
                        failed.push(kinds[i]);
                        break;
                    }
                }
            }
        }
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            let list: Vec<&str> = failed.iter().map(|k| k.name()).collect();
            tracing::error!("node {node} stopped; failed: {}", list.join(", "));
            ExitCode::from(1)
        }
    });
    signals.abort();
    Ok(code)
}

/// `keelson node`'s flags when services are named by hand.
#[derive(Debug, Parser)]
#[command(
    name = "keelson node",
    about = "Run several of a machine's services (kv, fleet, overlay, update engine, locksmith) in one process",
    long_about = "Run several of a machine's services in one process under one root directory.\n\n\
Each service takes its daemon's own flags, passed one per --<service>-arg (write \
--kv-arg=--data-dir=/var/lib/etcd2; the '=' form is needed for values starting with '-'), \
and reads its daemon's variables (ETCD_*, FLEET_*, FLANNELD_*, KEELSON_UPDATE_*, \
LOCKSMITHD_*). --root is \
given to every service that does not set its own; the kv member is named --name unless \
--kv-arg sets one; fleet gets a new /etc/machine-id under --root if there is none. Log \
lines start with [NODE/SERVICE].\n\n\
Example: keelson node --name core-01 --root /tmp/core-01 --services kv,fleet \
--kv-arg=--data-dir=/var/lib/etcd2 --fleet-arg=--metadata=role=web\n\n\
SIGTERM or SIGINT stops the services gracefully, last listed first (fleet before its kv). \
When one service stops on its own the others are stopped too; the exit status is 1 if \
any failed."
)]
pub struct NodeFlags {
    /// Comma-separated services: kv, fleet, overlay, update-engine, locksmith.
    #[arg(long, value_delimiter = ',', default_value = "kv,fleet")]
    pub services: Vec<String>,
    /// The node's name, used in log lines (and as the kv member's --name
    /// when --kv-arg does not set one).
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Prefix for every absolute path the services read and write.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// One argument for the kv member (`keelson kv`'s flags); repeatable.
    #[arg(long = "kv-arg", allow_hyphen_values = true)]
    pub kv_args: Vec<OsString>,
    /// One argument for fleet (`keelson fleet`'s flags); repeatable.
    #[arg(long = "fleet-arg", allow_hyphen_values = true)]
    pub fleet_args: Vec<OsString>,
    /// One argument for the overlay (`keelson overlay`'s flags); repeatable.
    #[arg(long = "overlay-arg", allow_hyphen_values = true)]
    pub overlay_args: Vec<OsString>,
    /// One argument for the update engine; repeatable.
    #[arg(long = "update-engine-arg", allow_hyphen_values = true)]
    pub update_engine_args: Vec<OsString>,
    /// One argument for locksmithd (`keelson locksmith`'s flags); repeatable.
    #[arg(long = "locksmith-arg", allow_hyphen_values = true)]
    pub locksmith_args: Vec<OsString>,
    /// One argument for the node's units service (`--start UNIT`, read from
    /// the systemd directories under --root); repeatable.
    #[arg(long = "units-arg", allow_hyphen_values = true)]
    pub units_args: Vec<OsString>,
    /// Exit when the process with this PID (the parent) goes away; used by
    /// `keelson up` so that no node outlives it.
    #[arg(long = "exit-with-parent", hide = true)]
    pub exit_with_parent: Option<i32>,
}

impl NodeFlags {
    /// The services these flags name, each with its arguments.
    pub fn specs(&self) -> Result<Vec<ServiceSpec>, NodeError> {
        let mut out = Vec::new();
        for s in &self.services {
            let kind = ServiceKind::parse(s).ok_or_else(|| {
                NodeError(format!(
                    "unknown service {s:?}: expected one of {}",
                    ServiceKind::ALL.map(|k| k.name()).join(", ")
                ))
            })?;
            let mut spec = ServiceSpec::new(kind);
            spec.args = match kind {
                ServiceKind::Kv => {
                    let mut a = self.kv_args.clone();
                    if !has_flag(&a, "name") && std::env::var_os("ETCD_NAME").is_none() {
                        a.push(format!("--name={}", self.name).into());
                    }
                    a
                }
                ServiceKind::Fleet => self.fleet_args.clone(),
                ServiceKind::Overlay => self.overlay_args.clone(),
                ServiceKind::UpdateEngine => self.update_engine_args.clone(),
                ServiceKind::Locksmith => self.locksmith_args.clone(),
                ServiceKind::Units => self.units_args.clone(),
            };
            out.push(spec);
        }
        for (kind, given) in [
            (ServiceKind::Kv, &self.kv_args),
            (ServiceKind::Fleet, &self.fleet_args),
            (ServiceKind::Overlay, &self.overlay_args),
            (ServiceKind::UpdateEngine, &self.update_engine_args),
            (ServiceKind::Locksmith, &self.locksmith_args),
            (ServiceKind::Units, &self.units_args),
        ] {
            if !given.is_empty() && !out.iter().any(|s| s.kind == kind) {
                return Err(NodeError(format!(
                    "--{kind}-arg given but {kind} is not in --services"
                )));
            }
        }
        Ok(out)
    }
}

/// Arranges for this process to get SIGTERM when its parent `ppid` exits.
fn exit_with_parent(ppid: i32) -> Result<(), NodeError> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .map_err(|e| NodeError(format!("cannot follow the parent process: {e}")))?;
    // The parent may have gone before the request took effect.
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if parent != Some(ppid) {
        return Err(NodeError(format!(
            "the parent process {ppid} has already exited"
        )));
    }
    Ok(())
}

/// `keelson node ARGS` with services named by flags.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut argv = vec![OsString::from("keelson node")];
    argv.extend(args);
    let flags = match NodeFlags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Some(ppid) = flags.exit_with_parent {
        if let Err(e) = exit_with_parent(ppid) {
            eprintln!("keelson node: {e}");
            return ExitCode::from(1);
        }
    }
    let specs = match flags.specs() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keelson node: {e}");
            return ExitCode::from(2);
        }
    };
    run_services(&flags.name, &flags.root, specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_found_in_any_spelling() {
        let a = os(&["-name", "x", "--data-dir=/d", "--rootless"]);
        assert!(has_flag(&a, "name"));
        assert!(has_flag(&a, "data-dir"));
        assert!(!has_flag(&a, "root"));
        assert_eq!(flag_value(&a, "name").as_deref(), Some("x"));
        assert_eq!(flag_value(&a, "data-dir").as_deref(), Some("/d"));
        assert_eq!(flag_value(&a, "root"), None);
    }

    #[test]
    fn env_becomes_flags_and_flags_win() {
        let spec = ServiceSpec {
            kind: ServiceKind::Kv,
            args: os(&["--name", "core-01"]),
            env: vec![
                ("ETCD_NAME".into(), "other".into()),
                ("ETCD_DATA_DIR".into(), "/var/lib/etcd2".into()),
                ("ETCD_NO_SUCH_THING".into(), "1".into()),
            ],
        };
        let (args, warnings) = effective_args(&spec, Path::new("/r"));
        assert_eq!(
            args,
            os(&[
                "--name",
                "core-01",
                "--data-dir=/var/lib/etcd2",
                "--root",
                "/r"
            ])
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let fleet = ServiceSpec {
            kind: ServiceKind::Fleet,
            args: os(&["--root=/own"]),
            env: vec![("FLEET_METADATA".into(), "role=web".into())],
        };
        let (args, warnings) = effective_args(&fleet, Path::new("/r"));
        assert_eq!(args, os(&["--root=/own", "--metadata=role=web"]));
        assert!(warnings.is_empty());
    }

    #[test]
    fn node_flags_to_specs() {
        let f = NodeFlags::try_parse_from(os(&[
            "keelson node",
            "--services",
            "kv,fleetd",
            "--name",
            "core-02",
            "--kv-arg=--data-dir=/var/lib/etcd2",
            "--fleet-arg",
            "--metadata=a=b",
        ]))
        .unwrap();
        let specs = f.specs().unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].kind, ServiceKind::Kv);
        assert!(flag_value(&specs[0].args, "name").is_some());
        assert_eq!(specs[1].args, os(&["--metadata=a=b"]));
        let bad = NodeFlags::try_parse_from(os(&["keelson node", "--services", "kv,nope"]))
            .unwrap()
            .specs();
        assert!(bad.is_err());
        let stray = NodeFlags::try_parse_from(os(&[
            "keelson node",
            "--services",
            "kv",
            "--fleet-arg=--metadata=a=b",
        ]))
        .unwrap()
        .specs();
        assert!(stray.is_err());
    }

    #[test]
    fn machine_id_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let specs = vec![ServiceSpec::new(ServiceKind::Fleet)];
        ensure_machine_id(&specs, dir.path()).unwrap();
        let id = std::fs::read_to_string(dir.path().join("etc/machine-id")).unwrap();
        assert_eq!(id.trim().len(), 32);
        assert!(id.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        ensure_machine_id(&specs, dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/machine-id")).unwrap(),
            id
        );
    }
}
