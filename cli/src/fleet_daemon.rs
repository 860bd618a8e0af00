//! `keelson fleet`: fleetd. Options come, lowest precedence first, from
//! `fleet.conf` (`--config`, default `/etc/fleet/fleet.conf` under `--root`),
//! `FLEET_*` variables, then flags (`--etcd-servers` or fleetd's own
//! `-etcd_servers`, Go-style single dash accepted). The daemon wires
//! [`keelson_scheduler::Fleetd`], the built-in supervisor and the fleet API
//! (scheduler.md §11–12) together.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use keelson_kv::client::{HttpKvClient, KvClient};
use keelson_scheduler::api::{self, ApiState, LocalAgent};
use keelson_scheduler::model::parse_metadata;
use keelson_scheduler::{
    FleetClient, FleetConfig, Fleetd, InitSystem, Keys, Registry, Supervisor, SupervisorConfig,
};

use crate::kv_daemon::rooted;

/// fleetd's options.
#[derive(Debug, Parser)]
#[command(
    name = "fleetd",
    disable_help_subcommand = true,
    about = "Keelson's fleetd: agent, engine and fleet API of one machine"
)]
pub struct FleetFlags {
    /// INI file with fleetd's options (top level `key=value`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Comma-separated kv endpoints.
    #[arg(
        long = "etcd-servers",
        alias = "etcd_servers",
        env = "FLEET_ETCD_SERVERS"
    )]
    pub etcd_servers: Option<String>,
    #[arg(
        long = "etcd-key-prefix",
        alias = "etcd_key_prefix",
        env = "FLEET_ETCD_KEY_PREFIX"
    )]
    pub etcd_key_prefix: Option<String>,
    /// `k=v,k2=v2`.
    #[arg(long, env = "FLEET_METADATA")]
    pub metadata: Option<String>,
    #[arg(long = "public-ip", alias = "public_ip", env = "FLEET_PUBLIC_IP")]
    pub public_ip: Option<String>,
    /// Go duration (`30s`, `1m`).
    #[arg(long = "agent-ttl", alias = "agent_ttl", env = "FLEET_AGENT_TTL")]
    pub agent_ttl: Option<String>,
    /// Seconds.
    #[arg(
        long = "engine-reconcile-interval",
        alias = "engine_reconcile_interval",
        env = "FLEET_ENGINE_RECONCILE_INTERVAL"
    )]
    pub engine_reconcile_interval: Option<String>,
    #[arg(
        long = "units-directory",
        alias = "units_directory",
        env = "FLEET_UNITS_DIRECTORY"
    )]
    pub units_directory: Option<String>,
    #[arg(
        long = "disable-engine",
        alias = "disable_engine",
        env = "FLEET_DISABLE_ENGINE",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub disable_engine: Option<String>,
    /// The machine's ID (default: `/etc/machine-id` under `--root`).
    #[arg(long = "machine-id", env = "FLEET_MACHINE_ID")]
    pub machine_id: Option<String>,
    /// `supervisor` (built-in) or `systemd`.
    #[arg(
        long = "init-system",
        env = "FLEET_INIT_SYSTEM",
        default_value = "supervisor"
    )]
    pub init_system: String,
    /// `unix://PATH` or `tcp://ADDR`; repeatable (default
    /// `unix:///var/run/fleet.sock`).
    #[arg(long = "api-listen", env = "FLEET_API_LISTEN", value_delimiter = ',')]
    pub api_listen: Vec<String>,
    /// The host name units see as `%H` (default: this host's name); lets
    /// several simulated machines on one host have their own.
    #[arg(long = "host-name")]
    pub host_name: Option<String>,
    /// Prefix for every absolute path read or written.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    #[arg(long, env = "FLEET_VERBOSITY", default_value_t = 0)]
    pub verbosity: u32,
    #[arg(long)]
    pub version: bool,
}

/// Go's `time.ParseDuration` for the units fleet configs use.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

/// fleet.conf: `key=value` lines, `#`/`;` comments, values optionally quoted.
pub fn parse_conf(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') || l.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            out.insert(k.trim().to_owned(), v.to_owned());
        }
    }
    out
}

fn go_bool(s: &str) -> anyhow::Result<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => bail!("invalid boolean {s:?}"),
    }
}

/// Everything `keelson fleet` needs, resolved.
#[derive(Debug)]
pub struct Resolved {
    pub etcd_servers: Vec<String>,
    pub fleet: FleetConfig,
    pub api_listen: Vec<String>,
    pub root: PathBuf,
    pub host_name: Option<String>,
}

/// Merge flags/env over the config file and defaults.
pub fn resolve(f: &FleetFlags) -> anyhow::Result<Resolved> {
    let conf_path = match &f.config {
        Some(p) => Some(rooted(&f.root, p)),
        None => {
            let p = rooted(&f.root, Path::new("/etc/fleet/fleet.conf"));
            p.exists().then_some(p)
        }
    };
    let conf = match conf_path {
        Some(p) => parse_conf(
            &std::fs::read_to_string(&p)
                .with_context(|| format!("reading config file {}", p.display()))?,
        ),
        None => BTreeMap::new(),
    };
    let pick = |flag: &Option<String>, key: &str| -> Option<String> {
        flag.clone().or_else(|| conf.get(key).cloned())
    };
    let mut cfg = FleetConfig::default();
    let etcd_servers: Vec<String> = pick(&f.etcd_servers, "etcd_servers")
        .unwrap_or_else(|| "http://127.0.0.1:2379,http://127.0.0.1:4001".into())
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(p) = pick(&f.etcd_key_prefix, "etcd_key_prefix") {
        cfg.etcd_key_prefix = p;
    }
    if let Some(m) = pick(&f.metadata, "metadata") {
        cfg.metadata = parse_metadata(&m);
    }
    if let Some(ip) = pick(&f.public_ip, "public_ip") {
        cfg.public_ip = ip;
    }
    if let Some(t) = pick(&f.agent_ttl, "agent_ttl") {
        cfg.agent_ttl = parse_go_duration(&t)
            .ok_or_else(|| anyhow!("invalid agent_ttl {t:?}: expected a duration such as 30s"))?;
    }
    if let Some(t) = pick(&f.engine_reconcile_interval, "engine_reconcile_interval") {
        let secs: f64 = t
            .parse()
            .map_err(|_| anyhow!("invalid engine_reconcile_interval {t:?}: expected seconds"))?;
        if !(secs > 0.0 && secs.is_finite()) {
            bail!("invalid engine_reconcile_interval {t:?}: must be positive");
        }
        cfg.engine_reconcile_interval = Duration::from_secs_f64(secs);
    }
    if let Some(d) = pick(&f.units_directory, "units_directory") {
        cfg.units_directory = d;
    }
    if let Some(d) = pick(&f.disable_engine, "disable_engine") {
        cfg.disable_engine = go_bool(&d).context("disable_engine")?;
    }
    cfg.machine_id = match &f.machine_id {
        Some(id) => id.trim().to_owned(),
        None => {
            let p = rooted(&f.root, Path::new("/etc/machine-id"));
            std::fs::read_to_string(&p)
                .with_context(|| format!("reading {} (or pass --machine-id ID)", p.display()))?
                .trim()
                .to_owned()
        }
    };
    if cfg.machine_id.is_empty() || !cfg.machine_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("invalid machine ID {:?}", cfg.machine_id);
    }
    let api_listen = if f.api_listen.is_empty() {
        vec!["unix:///var/run/fleet.sock".to_owned()]
    } else {
        f.api_listen.clone()
    };
    Ok(Resolved {
        etcd_servers,
        fleet: cfg,
        api_listen,
        root: f.root.clone(),
        host_name: f.host_name.clone(),
    })
}

/// Go-style `-flag` → `--flag`.
pub fn go_style(args: Vec<OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if s.starts_with('-') && !s.starts_with("--") && s.len() > 2 {
                OsString::from(format!("-{s}"))
            } else {
                a
            }
        })
        .collect()
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut argv = vec![OsString::from("fleetd")];
    argv.extend(go_style(args));
    let flags = match FleetFlags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if flags.version {
        println!("fleetd version {}", api::FLEETD_VERSION);
        return ExitCode::SUCCESS;
    }
    let filter = if flags.verbosity > 0 { "debug" } else { "info" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if flags.init_system != "supervisor" {
        eprintln!(
            "keelson fleet: --init-system {} is not available yet; use --init-system supervisor (the built-in supervisor)",
            flags.init_system
        );
        return ExitCode::from(1);
    }
    let resolved = match resolve(&flags) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keelson fleet: {e:#}");
            return ExitCode::from(1);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    crate::node_runner::label_threads(&mut builder);
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keelson fleet: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(resolved)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keelson fleet: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Sleeps `d`; true if a stop was asked for first.
async fn pause_or_stop(stop: &tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    let mut rx = stop.clone();
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = rx.wait_for(|v| *v) => true,
    }
}

async fn run(r: Resolved) -> anyhow::Result<()> {
    // SIGTERM/SIGINT (or the node's word), watched from the start so that
    // none is missed while waiting for the kv.
    let (signal_tx, signalled) = tokio::sync::watch::channel(false);
    let stop = crate::node_runner::shutdown_signal();
    tokio::spawn(async move {
        stop.await;
        let _ = signal_tx.send(true);
    });
    let kv: Arc<dyn KvClient> = Arc::new(
        HttpKvClient::builder()
            .endpoints(r.etcd_servers.clone())
            .build()
            .context("kv client")?,
    );
    let machine = r.fleet.machine_id.clone();
    let kvctl = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("kvctl")))
        .filter(|p| p.exists());
    let supervisor = Supervisor::new(SupervisorConfig {
        units_dir: rooted(&r.root, Path::new(&r.fleet.units_directory)),
        state_dir: rooted(&r.root, Path::new("/var/lib/keelson/fleet")),
        kvctl,
        machine_id: machine.clone(),
        host_name: r.host_name.clone(),
        root: r.root.clone(),
    })
    .context("starting the supervisor")?;
    let init: Arc<dyn InitSystem> = Arc::new(supervisor);
    let keys = Keys::new(&r.fleet.etcd_key_prefix);
    // fleetd waits for its store: on a node started all at once the kv may
    // still be electing a leader.
    let servers = r.etcd_servers.join(",");
    let registry = loop {
        match Registry::open(kv.clone(), keys.clone()).await {
            Ok(reg) => break Arc::new(reg),
            Err(e) => tracing::warn!("waiting for the kv at {servers}: {e}"),
        }
        if pause_or_stop(&signalled, Duration::from_secs(2)).await {
            return Ok(());
        }
    };
    let client = Arc::new(FleetClient::new(registry));
    let app = api::router(ApiState::new(
        client,
        Some(LocalAgent {
            machine_id: machine.clone(),
            init: init.clone(),
        }),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let mut published = None;
    for l in &r.api_listen {
        if let Some(p) = l.strip_prefix("unix://") {
            let path = rooted(&r.root, Path::new(p));
            published.get_or_insert_with(|| format!("unix://{}", path.display()));
            let app = app.clone();
            let stop = stopped();
            let path2 = path.clone();
            // Bind before serving so that a bad path fails start-up.
            tokio::spawn(async move {
                if let Err(e) = api::serve_unix(&path2, app, stop).await {
                    tracing::error!("fleet API on {}: {e}", path2.display());
                }
            });
        } else if let Some(a) = l.strip_prefix("tcp://") {
            let listener = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("binding the fleet API to {a}"))?;
            let addr = listener.local_addr()?;
            published = Some(format!("http://{addr}"));
            tokio::spawn(api::serve_tcp(listener, app.clone(), stopped()));
        } else {
            bail!("invalid --api-listen {l:?}: expected unix://PATH or tcp://ADDR");
        }
    }
    if let Some(url) = &published {
        while let Err(e) = api::publish_endpoint(&kv, &keys, &machine, url).await {
            tracing::warn!("publishing the API endpoint (waiting for the kv at {servers}): {e}");
            if pause_or_stop(&signalled, Duration::from_secs(2)).await {
                let _ = stop_tx.send(true);
                return Ok(());
            }
        }
    }
    tracing::info!(machine = %machine, "fleet started");
    let shutdown = async move {
        let mut rx = signalled;
        let _ = rx.wait_for(|v| *v).await;
    };
    let res = Fleetd::run(kv, init, r.fleet, shutdown).await;
    let _ = stop_tx.send(true);
    res.map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_conf() {
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("30"), None);
        assert_eq!(parse_go_duration("x"), None);
        let c = parse_conf("# c\netcd_servers=http://a:2379\nmetadata=\"role=web\"\n");
        assert_eq!(c["etcd_servers"], "http://a:2379");
        assert_eq!(c["metadata"], "role=web");
    }

    #[test]
    fn precedence_flag_over_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/fleet")).unwrap();
        std::fs::write(
            dir.path().join("etc/fleet/fleet.conf"),
            "metadata=compute=db\npublic_ip=10.0.0.1\nagent_ttl=10s\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/machine-id"), "abc123\n").unwrap();
        let f = FleetFlags::try_parse_from([
            "fleetd",
            "--root",
            dir.path().to_str().unwrap(),
            "--metadata",
            "compute=web",
        ])
        .unwrap();
        let r = resolve(&f).unwrap();
        assert_eq!(r.fleet.metadata["compute"], "web");
        assert_eq!(r.fleet.public_ip, "10.0.0.1");
        assert_eq!(r.fleet.agent_ttl, Duration::from_secs(10));
        assert_eq!(r.fleet.machine_id, "abc123");
        assert_eq!(r.api_listen, vec!["unix:///var/run/fleet.sock"]);
    }
}
