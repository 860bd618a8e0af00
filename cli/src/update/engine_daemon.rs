//! `keelson update-engine`: the update engine daemon for one node.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use keelson_updater::api::{ApiServer, DEFAULT_SOCKET};
use keelson_updater::config::{rooted, Overrides, UpdateConfig};
use keelson_updater::driver::{load_identity, unix_now, Driver, KeySource, StateStore};
use keelson_updater::engine::{Engine, Status, StatusReport, Timing};
use keelson_updater::gpt::GptSlots;
use keelson_updater::slots::{BootSlots, DirSlots, Slot};

/// Flags of `keelson update-engine` (also accepted Go-style, `-root DIR`).
#[derive(Debug, Parser)]
#[command(
    name = "keelson update-engine",
    about = "Check for, download, verify and install OS updates into the inactive USR slot"
)]
pub struct EngineFlags {
    /// Root directory for every absolute path read or written.
    #[arg(long, env = "KEELSON_ROOT", default_value = "/")]
    pub root: PathBuf,
    /// Omaha endpoint, overriding SERVER= in update.conf.
    #[arg(long, env = "KEELSON_UPDATE_SERVER")]
    pub server: Option<String>,
    /// Channel or group, overriding GROUP= in update.conf.
    #[arg(long, env = "KEELSON_UPDATE_GROUP")]
    pub group: Option<String>,
    /// The A/B slots: `gpt:DISK` (USR-A = partition 3, USR-B = 4) or `dir:PATH`.
    #[arg(long, env = "KEELSON_UPDATE_SLOTS")]
    pub slots: String,
    /// Which slot is running (`a` or `b`); `boot` simulates the bootloader's
    /// choice first (spending a try), as after a reboot.
    #[arg(long, default_value = "a")]
    pub active: String,
    /// Directories of trusted `*.pub` keys (repeatable); default: the
    /// update-keys directories under --root.
    #[arg(long = "keys")]
    pub keys: Vec<PathBuf>,
    /// The local API socket; default /var/run/update-engine.sock under --root.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Seconds before the first check (default: 7 min ± 5, as update_engine).
    #[arg(long)]
    pub first_check_delay: Option<u64>,
    /// A command that must exit 0 before the running slot is marked good.
    #[arg(long)]
    pub health_check: Option<String>,
    /// Serve `/metrics` and `/health` over HTTP on this address (off by default).
    #[arg(long = "metrics-addr", env = "KEELSON_UPDATE_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

const STATUSES: [Status; 8] = [
    Status::Idle,
    Status::CheckingForUpdate,
    Status::UpdateAvailable,
    Status::Downloading,
    Status::Verifying,
    Status::Finalizing,
    Status::UpdatedNeedReboot,
    Status::ReportingErrorEvent,
];

/// The engine's status as Prometheus gauges.
pub fn render_status(s: &StatusReport) -> String {
    use keelson_kv::metrics::{Exposition, Kind};
    let mut e = Exposition::new();
    e.family(
        "keelson_update_engine_status",
        Kind::Gauge,
        "1 for the engine's current operation (update_engine_client's CURRENT_OP).",
    );
    for st in STATUSES {
        let v = f64::from(u8::from(s.current_operation == st));
        e.sample(
            "keelson_update_engine_status",
            &[("operation", st.as_str())],
            v,
        );
    }
    e.single(
        "keelson_update_engine_last_checked_time_seconds",
        Kind::Gauge,
        "Unix time of the last update check.",
        s.last_checked_time as f64,
    );
    e.single(
        "keelson_update_engine_progress",
        Kind::Gauge,
        "Download progress of the current update, 0 to 1.",
        s.progress,
    );
    e.single(
        "keelson_update_engine_new_size_bytes",
        Kind::Gauge,
        "Size of the update being applied.",
        s.new_size as f64,
    );
    e.family(
        "keelson_update_engine_new_version",
        Kind::Gauge,
        "The version being applied (0.0.0.0 when none).",
    )
    .sample(
        "keelson_update_engine_new_version",
        &[("version", &s.new_version)],
        1.0,
    );
    e.finish()
}

enum Slots {
    Gpt(PathBuf),
    Dir(PathBuf),
}

fn parse_slots(s: &str) -> anyhow::Result<Slots> {
    match s.split_once(':') {
        Some(("gpt", p)) if !p.is_empty() => Ok(Slots::Gpt(p.into())),
        Some(("dir", p)) if !p.is_empty() => Ok(Slots::Dir(p.into())),
        _ => bail!("bad --slots {s:?}: expected gpt:DISK or dir:PATH"),
    }
}

/// Runs the daemon with `args` (after `update-engine`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut full = vec![OsString::from("keelson update-engine")];
    full.extend(super::go_style(args));
    let flags = match EngineFlags::try_parse_from(full) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    super::init_logging();
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keelson update-engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keelson update-engine: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: EngineFlags) -> anyhow::Result<()> {
    let root = flags.root.clone();
    let overrides = Overrides {
        group: flags.group.clone(),
        server: flags.server.clone(),
    };
    let config = UpdateConfig::load(&root, &overrides).context("reading update.conf")?;
    let identity = load_identity(&root, &config).context("reading the release file")?;
    let store = StateStore::new(&root);
    let now = unix_now();
    let seed = now ^ u64::from(std::process::id()).rotate_left(32);
    let mut engine = Engine::new(identity, Timing::default(), store.load(), now, seed);
    if let Some(d) = flags.first_check_delay {
        engine.schedule_check_at(now + d);
    }
    tracing::info!(
        version = %engine.identity().version,
        group = %config.group,
        server = %config.server,
        first_check_in = engine.next_wakeup().saturating_sub(now),
        "update engine starting"
    );
    let boot = flags.active.eq_ignore_ascii_case("boot");
    let active = match flags.active.to_ascii_lowercase().as_str() {
        "a" | "boot" => Slot::A,
        "b" => Slot::B,
        other => bail!("bad --active {other:?}: expected a, b or boot"),
    };
    match parse_slots(&flags.slots)? {
        Slots::Gpt(p) => {
            let s = if boot {
                GptSlots::boot(&p)
            } else {
                GptSlots::open(&p, active)
            }
            .with_context(|| format!("opening the GPT slots on {}", p.display()))?;
            serve(flags, engine, s, &config.server).await
        }
        Slots::Dir(p) => {
            let s = if boot {
                DirSlots::boot(&p)
                    .with_context(|| format!("booting the slots in {}", p.display()))?
            } else {
                DirSlots::open(&p, active)
            };
            s.table()
                .with_context(|| format!("reading the slots in {}", p.display()))?;
            serve(flags, engine, s, &config.server).await
        }
    }
}

async fn serve<S: BootSlots + Send + 'static>(
    flags: EngineFlags,
    engine: Engine,
    slots: S,
    server: &str,
) -> anyhow::Result<()> {
    tracing::info!(active = ?slots.active(), "running from USR-{:?}", slots.active());
    let mut driver = Driver::new(engine, slots, server, &flags.root);
    if !flags.keys.is_empty() {
        driver = driver.with_keys(KeySource::Dirs(flags.keys.clone()));
    }
    if let Some(cmd) = flags.health_check.clone() {
        driver = driver.with_health_check(Box::new(move || {
            let st = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .status()
                .map_err(|e| format!("cannot run health check {cmd:?}: {e}"))?;
            if st.success() {
                Ok(())
            } else {
                Err(format!("health check {cmd:?} failed ({st})"))
            }
        }));
    }
    let socket = flags
        .socket
        .clone()
        .unwrap_or_else(|| rooted(&flags.root, DEFAULT_SOCKET));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let api = ApiServer::new(tx, driver.subscribe());
    let listener = ApiServer::bind(&socket).await?;
    if let Some(addr) = flags.metrics_addr {
        let status = driver.subscribe();
        let alive = driver.subscribe();
        let render: crate::metrics_http::Render =
            std::sync::Arc::new(move || render_status(&status.borrow()));
        let health: crate::metrics_http::Health = std::sync::Arc::new(move || {
            alive
                .has_changed()
                .map(|_| ())
                .map_err(|_| "the update engine has stopped".to_owned())
        });
        let listener = crate::metrics_http::bind(addr).await?;
        crate::metrics_http::spawn(listener, render, health, shutdown());
    }
    tracing::info!(socket = %socket.display(), "serving the local API");
    let api_task = tokio::spawn(api.serve(listener));
    tokio::select! {
        _ = driver.run(rx) => {}
        r = api_task => {
            let _ = std::fs::remove_file(&socket);
            bail!("the local API stopped: {r:?}");
        }
        _ = shutdown() => tracing::info!("stopping"),
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

async fn shutdown() {
    crate::node_runner::shutdown_signal().await;
}
