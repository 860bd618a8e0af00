//! `keelson locksmith` and `locksmithd`: the reboot coordinator of one node.
//!
//! It reads the strategy and window as locksmithd does (`REBOOT_STRATEGY`,
//! `LOCKSMITHD_REBOOT_WINDOW_*` or `REBOOT_WINDOW_*`, from the environment or
//! `update.conf` under `--root`), waits for the update engine's local API to
//! report `UPDATE_STATUS_UPDATED_NEED_REBOOT`, takes a slot in the kv
//! semaphore when the strategy says so, drains the machine through the fleet
//! API, and reboots (logind or `systemctl reboot`, or `--reboot-command`).
//! After the reboot it gives the slot back once the machine is healthy.
//! The state machine and seams are `keelson_updater::locksmith`'s; this
//! module implements the seams over the engine's socket and the fleet API.
//!
//! Keelson defaults to `best-effort` when no strategy is set, as the book-era
//! locksmith did (issue 8); reference §10.2 recommends `reboot` (locksmith
//! v0.6+). `best-effort` uses the lock when a kv member answers on this
//! machine (an endpoint on a local address), else reboots without one.

use std::ffi::OsString;
use std::future::Future;
use std::net::{IpAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use keelson_kv::client::HttpKvClient;
use keelson_scheduler::api::{ApiClient as FleetApi, RemoteFleet};
use keelson_scheduler::drain::DrainOutcome;
use keelson_updater::api::{ApiClient, Watch, DEFAULT_SOCKET};
use keelson_updater::config::{machine_id, rooted, Overrides, RebootStrategy, UpdateConfig};
use keelson_updater::engine::Status;
use keelson_updater::locksmith::host::{
    CommandRebooter, Drainer, HealthCheck, HostError, Rebooter, StatusSource, SystemClock,
    SystemRebooter,
};
use keelson_updater::locksmith::{DaemonConfig, Driver, DriverConfig, Host, Outcome};
use tracing::{info, warn};

use super::{non_empty, EtcdOptions};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The default fleet API socket, relative to `--root`.
const FLEET_SOCKET: &str = "/var/run/fleet.sock";

/// locksmithd's flags (each also `LOCKSMITHD_<NAME>`) and Keelson's.
#[derive(Debug, Parser)]
#[command(
    name = "locksmithd",
    disable_version_flag = true,
    about = "Reboot this machine when an update needs it, coordinated through the kv"
)]
pub struct DaemonFlags {
    /// Store endpoint; repeat or separate with commas (default
    /// http://127.0.0.1:2379 and http://127.0.0.1:4001).
    #[arg(long, env = "LOCKSMITHD_ENDPOINT", value_delimiter = ',')]
    pub endpoint: Vec<String>,
    #[arg(long = "etcd-cafile", env = "LOCKSMITHD_ETCD_CAFILE")]
    pub etcd_cafile: Option<String>,
    #[arg(long = "etcd-certfile", env = "LOCKSMITHD_ETCD_CERTFILE")]
    pub etcd_certfile: Option<String>,
    #[arg(long = "etcd-keyfile", env = "LOCKSMITHD_ETCD_KEYFILE")]
    pub etcd_keyfile: Option<String>,
    #[arg(long = "etcd-username", env = "LOCKSMITHD_ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    #[arg(long = "etcd-password", env = "LOCKSMITHD_ETCD_PASSWORD")]
    pub etcd_password: Option<String>,
    /// The locksmith group this machine belongs to (empty: the default group).
    #[arg(long, env = "LOCKSMITHD_GROUP", default_value = "")]
    pub group: String,
    /// Debug logging.
    #[arg(long, env = "LOCKSMITHD_DEBUG")]
    pub debug: bool,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// reboot, etcd-lock, best-effort or off; overrides REBOOT_STRATEGY in
    /// update.conf (default best-effort).
    #[arg(long, env = "REBOOT_STRATEGY")]
    pub strategy: Option<String>,
    /// Window start, `[Day ]HH:MM` (also REBOOT_WINDOW_START and update.conf).
    #[arg(long = "reboot-window-start", env = "LOCKSMITHD_REBOOT_WINDOW_START")]
    pub reboot_window_start: Option<String>,
    /// Window length, a Go duration such as `1h30m`.
    #[arg(long = "reboot-window-length", env = "LOCKSMITHD_REBOOT_WINDOW_LENGTH")]
    pub reboot_window_length: Option<String>,
    /// Keelson: root directory for every absolute path read.
    #[arg(long, env = "KEELSON_ROOT", default_value = "/")]
    pub root: PathBuf,
    /// Keelson: the update engine's socket (default
    /// /var/run/update-engine.sock under --root).
    #[arg(long = "update-engine-socket", env = "LOCKSMITHD_UPDATE_ENGINE_SOCKET")]
    pub update_engine_socket: Option<PathBuf>,
    /// Keelson: reboot by running this shell command instead of asking
    /// logind or systemd.
    #[arg(long = "reboot-command", env = "LOCKSMITHD_REBOOT_COMMAND")]
    pub reboot_command: Option<String>,
    /// Keelson: a shell command that must exit 0 before the slot held over
    /// a reboot is given back.
    #[arg(long = "health-command", env = "LOCKSMITHD_HEALTH_COMMAND")]
    pub health_command: Option<String>,
    /// Keelson: the fleet API to drain this machine through before it
    /// reboots (default unix:///var/run/fleet.sock under --root; empty: no
    /// drain). A missing unix socket means no scheduler runs here.
    #[arg(long = "fleet-endpoint", env = "LOCKSMITHD_FLEET_ENDPOINT")]
    pub fleet_endpoint: Option<String>,
    /// Keelson: seconds to wait for the units to run elsewhere before
    /// rebooting anyway.
    #[arg(
        long = "drain-timeout",
        env = "LOCKSMITHD_DRAIN_TIMEOUT",
        default_value_t = 300
    )]
    pub drain_timeout: u64,
    /// Keelson: seconds a slot survives if this machine stops renewing it
    /// (dies holding it). Must exceed the time a reboot takes.
    #[arg(long = "lock-ttl", env = "LOCKSMITHD_LOCK_TTL", default_value_t = 900)]
    pub lock_ttl: u64,
    /// Keelson: serve `/metrics` and `/health` over HTTP on this address.
    #[arg(long = "metrics-addr", env = "LOCKSMITHD_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Runs the daemon with `args` (after `locksmith`, or after `locksmithd`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("locksmithd")).chain(super::ctl::go_flags(args));
    let flags = match DaemonFlags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if flags.version {
        println!("locksmithd version {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    init_logging(flags.debug);
    let rt = match crate::update::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("locksmithd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("locksmithd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool) {
    use std::io::IsTerminal;
    let filter = if debug {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The settings from flags, environment and `update.conf`, validated.
fn daemon_config(f: &DaemonFlags, kv_member_local: bool) -> anyhow::Result<DaemonConfig> {
    let mut uc =
        UpdateConfig::load(&f.root, &Overrides::default()).context("reading update.conf")?;
    if let Some(s) = non_empty(&f.strategy) {
        uc.reboot_strategy = Some(s.parse().context("REBOOT_STRATEGY")?);
    }
    // LOCKSMITHD_* (or the flags) win; REBOOT_WINDOW_* from the environment
    // next (what cloud-config's drop-in sets); then the files.
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    uc.reboot_window_start = non_empty(&f.reboot_window_start)
        .or_else(|| env("REBOOT_WINDOW_START"))
        .or(uc.reboot_window_start);
    uc.reboot_window_length = non_empty(&f.reboot_window_length)
        .or_else(|| env("REBOOT_WINDOW_LENGTH"))
        .or(uc.reboot_window_length);
    let c = DaemonConfig::from_update_config(&uc, RebootStrategy::BestEffort, kv_member_local)?;
    Ok(c)
}

async fn run(f: DaemonFlags) -> anyhow::Result<()> {
    let etcd = EtcdOptions {
        endpoints: f.endpoint.clone(),
        cafile: non_empty(&f.etcd_cafile),
        certfile: non_empty(&f.etcd_certfile),
        keyfile: non_empty(&f.etcd_keyfile),
        username: non_empty(&f.etcd_username),
        password: f.etcd_password.clone(),
    };
    // Validated before anything is probed: a bad strategy or window is fatal.
    let mut config = daemon_config(&f, false)?;
    if config.strategy == RebootStrategy::Off {
        info!("Reboot strategy is \"off\" - locksmithd is exiting.");
        return Ok(());
    }
    if config.strategy == RebootStrategy::BestEffort {
        config.kv_member_local = kv_member_local(&etcd).await;
        info!(
            "best-effort: {}",
            if config.kv_member_local {
                "a kv member runs on this machine, so the reboot lock is used"
            } else {
                "no kv member runs on this machine, so it reboots without the lock"
            }
        );
    }
    let engine = ApiClient::new(
        f.update_engine_socket
            .clone()
            .unwrap_or_else(|| rooted(&f.root, DEFAULT_SOCKET)),
    );
    let id = machine_id(&f.root).context("reading /etc/machine-id")?;
    let fleet = match non_empty(&f.fleet_endpoint).or_else(|| {
        f.fleet_endpoint
            .is_none()
            .then(|| format!("unix://{}", rooted(&f.root, FLEET_SOCKET).display()))
    }) {
        Some(ep) => Some((
            FleetApi::new(&ep).with_context(|| format!("--fleet-endpoint {ep}"))?,
            api_socket(&ep),
        )),
        None => None,
    };
    let uses_lock = config.uses_lock();
    let (id, fleet) = match id {
        Some(id) => (id, fleet),
        None if uses_lock => bail!(
            "no machine ID in {}: the reboot lock needs one",
            rooted(&f.root, "/etc/machine-id").display()
        ),
        None => {
            if fleet
                .as_ref()
                .is_some_and(|(_, sock)| sock.as_deref().is_none_or(|p| p.exists()))
            {
                warn!("no /etc/machine-id: this machine will not be drained before it reboots");
            }
            (String::new(), None)
        }
    };
    let drainer = Arc::new(FleetDrainer::new(
        fleet,
        id.clone(),
        Duration::from_secs(f.drain_timeout),
    ));
    let health = Arc::new(NodeHealth {
        engine: engine.clone(),
        drainer: drainer.clone(),
        command: non_empty(&f.health_command),
    });
    drainer.clone().return_to_service(health.clone());
    let rebooter: Arc<dyn Rebooter> = match non_empty(&f.reboot_command) {
        Some(cmd) => Arc::new(CommandRebooter::hook(&cmd)),
        None => Arc::new(SystemRebooter::default()),
    };
    let host = Host {
        status: Arc::new(EngineStatus {
            api: engine,
            watch: tokio::sync::Mutex::new(None),
        }),
        health,
        drainer,
        rebooter,
        clock: Arc::new(SystemClock),
    };
    let kv = if uses_lock {
        Some(etcd.client()?)
    } else {
        None
    };
    let mut dc = DriverConfig::new(id);
    dc.group = f.group.clone();
    dc.lease_ttl = f.lock_ttl.max(1);
    info!(
        strategy = ?config.strategy,
        group = %f.group,
        window = ?config.window,
        "locksmithd starting"
    );
    let strategy = match config.strategy {
        RebootStrategy::Reboot => "reboot",
        RebootStrategy::EtcdLock => "etcd-lock",
        RebootStrategy::BestEffort => "best-effort",
        RebootStrategy::Off => "off",
    };
    let driver = Driver::new(config, dc, kv, host)?;
    if let Some(addr) = f.metrics_addr {
        let listener = crate::metrics_http::bind(addr).await?;
        let phases = driver.phases();
        let alive = driver.phases();
        let group = f.group.clone();
        let render: crate::metrics_http::Render =
            Arc::new(move || render_phase(*phases.borrow(), strategy, &group));
        let health: crate::metrics_http::Health = Arc::new(move || {
            alive
                .has_changed()
                .map(|_| ())
                .map_err(|_| "locksmithd's driver has stopped".to_owned())
        });
        crate::metrics_http::spawn(listener, render, health, shutdown());
    }
    tokio::select! {
        r = driver.run() => match r? {
            Outcome::Exited | Outcome::Idle => Ok(()),
            Outcome::RebootIssued => {
                info!("reboot issued; waiting to be stopped");
                shutdown().await;
                Ok(())
            }
        },
        _ = shutdown() => {
            info!("stopping");
            Ok(())
        }
    }
}

/// locksmithd's state as Prometheus gauges.
pub fn render_phase(
    phase: keelson_updater::locksmith::daemon::Phase,
    strategy: &str,
    group: &str,
) -> String {
    use keelson_kv::metrics::{Exposition, Kind};
    use keelson_updater::locksmith::daemon::Phase;
    let mut e = Exposition::new();
    e.family(
        "keelson_locksmith_phase",
        Kind::Gauge,
        "1 for the phase locksmithd is in (idle, locking, draining, rebooting, ...).",
    );
    for p in Phase::ALL {
        e.sample(
            "keelson_locksmith_phase",
            &[("phase", p.as_str())],
            f64::from(u8::from(p == phase)),
        );
    }
    e.family(
        "keelson_locksmith_info",
        Kind::Gauge,
        "The reboot strategy and lock group in use.",
    )
    .sample(
        "keelson_locksmith_info",
        &[("strategy", strategy), ("group", group)],
        1.0,
    );
    e.finish()
}

/// SIGTERM/SIGINT alone; inside `keelson node`, the runner's word.
async fn shutdown() {
    crate::node_runner::shutdown_signal().await;
}

/// Whether `host` names this machine: loopback, or an address a socket can
/// be bound to here.
fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (host, 0)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect())
            .unwrap_or_default(),
    };
    addrs
        .iter()
        .any(|ip| ip.is_loopback() || TcpListener::bind((*ip, 0)).is_ok())
}

/// best-effort's question, "does a kv member run on this machine?": one of
/// the endpoints is on a local address and answers.
async fn kv_member_local(etcd: &EtcdOptions) -> bool {
    let local: Vec<String> = etcd
        .endpoints()
        .into_iter()
        .filter(|e| {
            let rest = e.split_once("://").map(|(_, r)| r).unwrap_or(e);
            let hostport = rest.split('/').next().unwrap_or_default();
            let host = match hostport.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => hostport,
            };
            is_local_host(host)
        })
        .collect();
    if local.is_empty() {
        return false;
    }
    let mut b = HttpKvClient::builder()
        .endpoints(local)
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(2));
    if let Some(ca) = &etcd.cafile {
        b = b.ca_file(ca);
    }
    if let (Some(c), Some(k)) = (&etcd.certfile, &etcd.keyfile) {
        b = b.client_cert(c, k);
    }
    match b.build() {
        Ok(c) => c.version().await.is_ok(),
        Err(_) => false,
    }
}

/// The update engine's status over its local API: one `watch` connection,
/// reopened when the engine restarts.
struct EngineStatus {
    api: ApiClient,
    watch: tokio::sync::Mutex<Option<Watch>>,
}

impl StatusSource for EngineStatus {
    fn wait_status(&self, last: Option<Status>) -> BoxFuture<'_, Result<Status, HostError>> {
        Box::pin(async move {
            let mut watch = self.watch.lock().await;
            let mut warned = false;
            loop {
                let Some(w) = watch.as_mut() else {
                    match self.api.watch().await {
                        Ok(w) => {
                            if warned {
                                info!("connected to the update engine");
                            }
                            *watch = Some(w);
                        }
                        Err(e) => {
                            if !warned {
                                warn!("waiting for the update engine: {e}");
                                warned = true;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    continue;
                };
                match w.next().await {
                    Ok(Some(r)) if Some(r.current_operation) != last => {
                        info!(
                            status = r.current_operation.as_str(),
                            "update engine status"
                        );
                        return Ok(r.current_operation);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        info!("lost the update engine's status stream; reconnecting");
                        *watch = None;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        })
    }
}

/// Moves this machine's units elsewhere through the fleet API; lifts the
/// mark once the machine is back and healthy.
struct FleetDrainer {
    /// The API and, for a unix endpoint, its socket.
    fleet: Option<(FleetApi, Option<PathBuf>)>,
    machine: String,
    timeout: Duration,
    /// Set once a drain began: a pending lift must not undo it. The lock
    /// orders a lift in flight before the drain's mark.
    draining: tokio::sync::Mutex<bool>,
}

impl FleetDrainer {
    fn new(fleet: Option<(FleetApi, Option<PathBuf>)>, machine: String, timeout: Duration) -> Self {
        FleetDrainer {
            fleet,
            machine,
            timeout,
            draining: tokio::sync::Mutex::new(false),
        }
    }

    /// The fleet API, if one is configured and (for a unix socket) present.
    fn remote(&self) -> Option<RemoteFleet> {
        let (api, socket) = self.fleet.as_ref()?;
        if socket.as_deref().is_some_and(|p| !p.exists()) {
            return None;
        }
        Some(RemoteFleet::new(api.clone()))
    }

    /// In the background: once `health` passes, lift a drain left from
    /// before the reboot (unless a new drain began meanwhile).
    fn return_to_service(self: Arc<Self>, health: Arc<NodeHealth>) {
        if self.fleet.is_none() {
            return;
        }
        tokio::spawn(async move {
            loop {
                if *self.draining.lock().await {
                    return;
                }
                // No fleet API (yet): keep looking, it may start after us.
                if self.remote().is_some() && health.healthy_without_fleet().await {
                    let guard = self.draining.lock().await;
                    if *guard {
                        return;
                    }
                    let Some(fleet) = self.remote() else { continue };
                    match fleet.is_draining(&self.machine).await {
                        Ok(false) => return,
                        Ok(true) => match fleet.set_draining(&self.machine, false).await {
                            Ok(()) => {
                                info!("lifted the drain of this machine: it takes units again");
                                return;
                            }
                            Err(e) => warn!("lifting the drain: {e}"),
                        },
                        Err(e) => warn!("asking the scheduler whether this machine drains: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
}

/// The socket of a `unix://PATH` endpoint.
fn api_socket(endpoint: &str) -> Option<PathBuf> {
    endpoint.strip_prefix("unix://").map(PathBuf::from)
}

impl Drainer for FleetDrainer {
    fn drain(&self) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let mut guard = self.draining.lock().await;
            *guard = true;
            let Some(fleet) = self.remote() else {
                info!("no fleet API here: nothing to drain");
                return Ok(());
            };
            match fleet
                .drain(&self.machine, self.timeout, Duration::from_millis(500))
                .await
            {
                Ok(DrainOutcome::Drained { moved }) => {
                    info!(?moved, "drained: this machine's units run elsewhere");
                    Ok(())
                }
                Ok(DrainOutcome::TimedOut { pending }) => Err(HostError(format!(
                    "drain not finished after {:?}: {}",
                    self.timeout,
                    pending.join("; ")
                ))),
                Err(e) => Err(HostError(format!("draining through the fleet API: {e}"))),
            }
        })
    }
}

/// Healthy after a reboot: the update engine answers, this machine is back
/// in the scheduler (when one runs here), and `--health-command` passes.
struct NodeHealth {
    engine: ApiClient,
    drainer: Arc<FleetDrainer>,
    command: Option<String>,
}

impl NodeHealth {
    async fn healthy_without_fleet(&self) -> bool {
        if let Err(e) = self.engine.status().await {
            info!("not healthy yet: {e}");
            return false;
        }
        if let Some(cmd) = &self.command {
            let ok = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .status()
                .await
                .is_ok_and(|s| s.success());
            if !ok {
                info!("not healthy yet: health command {cmd:?} failed");
                return false;
            }
        }
        true
    }
}

impl HealthCheck for NodeHealth {
    fn healthy(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if !self.healthy_without_fleet().await {
                return false;
            }
            let Some(fleet) = self.drainer.remote() else {
                return true;
            };
            match fleet.list_machines().await {
                Ok(ms) if ms.iter().any(|m| m.id == self.drainer.machine) => true,
                Ok(_) => {
                    info!("not healthy yet: this machine is not back in the scheduler");
                    false
                }
                Err(e) => {
                    info!("not healthy yet: fleet API: {e}");
                    false
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        assert!(is_local_host("127.0.0.1"));
        assert!(is_local_host("localhost"));
        assert!(is_local_host("[::1]"));
        assert!(!is_local_host("192.0.2.1"));
    }

    #[test]
    fn unix_socket_of_a_fleet_endpoint() {
        assert_eq!(
            api_socket("unix:///run/x/fleet.sock"),
            Some(PathBuf::from("/run/x/fleet.sock"))
        );
        assert_eq!(api_socket("http://127.0.0.1:49153"), None);
    }

    #[test]
    fn strategy_and_window_precedence() {
        let root = tempfile::tempdir().unwrap();
        let conf = root.path().join("etc/coreos/update.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(
            &conf,
            "REBOOT_STRATEGY=etcd-lock\nREBOOT_WINDOW_START=\"Thu 04:00\"\nREBOOT_WINDOW_LENGTH=1h\n",
        )
        .unwrap();
        let parse = |args: &[&str]| {
            let mut a = vec!["locksmithd", "--root", root.path().to_str().unwrap()];
            a.extend_from_slice(args);
            DaemonFlags::try_parse_from(a).unwrap()
        };
        let c = daemon_config(&parse(&[]), false).unwrap();
        assert_eq!(c.strategy, RebootStrategy::EtcdLock);
        assert!(c.window.is_some());
        let c = daemon_config(&parse(&["--strategy", "off"]), false).unwrap();
        assert_eq!(c.strategy, RebootStrategy::Off);
        let e = daemon_config(&parse(&["--strategy", "sometimes"]), false).unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown REBOOT_STRATEGY"),
            "{e:#}"
        );
        let e = daemon_config(&parse(&["--reboot-window-start", "Xyz 04:00"]), false).unwrap_err();
        assert!(format!("{e:#}").contains("day"), "{e:#}");
        std::fs::write(&conf, "GROUP=alpha\n").unwrap();
        let c = daemon_config(&parse(&[]), false).unwrap();
        assert_eq!(c.strategy, RebootStrategy::BestEffort, "the book's default");
        assert!(!c.uses_lock());
    }
}
