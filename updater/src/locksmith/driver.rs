//! The daemon's driver: feeds the [`Daemon`] state machine and performs its
//! actions against the kv ([`LockClient`]) and the host seams.
//!
//! While this machine holds a slot, a background task refreshes its lease
//! every third of the lease TTL, in real time (the kv expires keys by its own
//! clock). A machine waiting for a slot sleeps until its backoff ends or the
//! semaphore changes, whichever comes first, and reaps expired holders at
//! most once per `reap_interval`.

use std::sync::Arc;
use std::time::Duration;

use keelson_kv::client::{KvClient, WatchOptions};
use tracing::{info, warn};

use super::daemon::{Action, Daemon, DaemonConfig, Input, LockFailure, Phase};
use super::host::{Clock, Drainer, HealthCheck, Rebooter, StatusSource};
use super::lock::{LockClient, LockError};
use crate::config::RebootStrategy;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("reboot strategy {0} needs the kv (give --endpoint), but no client was configured")]
    NoKv(&'static str),
    #[error("reading the update engine status: {0}")]
    Status(super::host::HostError),
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Strategy `off`: exit 0 ("Reboot strategy is \"off\" - locksmithd is exiting.").
    Exited,
    /// The reboot was asked for; a real daemon now waits to be killed.
    RebootIssued,
    /// With [`DriverConfig::stop_when_idle`]: nothing held, nothing to do.
    Idle,
}

/// The driver's settings beyond the state machine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// This machine's ID (`/etc/machine-id`).
    pub machine_id: String,
    /// `--group` / `LOCKSMITHD_GROUP` (`""`: the default group).
    pub group: String,
    /// Seconds a hold survives without refresh. Must exceed the time a
    /// reboot takes, or the slot may be reaped while the machine is down.
    pub lease_ttl: u64,
    /// How often a waiting machine looks for expired holders.
    pub reap_interval: Duration,
    /// Return [`Outcome::Idle`] once waiting for the engine with no slot held
    /// (tests, one-shot runs) instead of waiting forever.
    pub stop_when_idle: bool,
}

impl DriverConfig {
    pub fn new(machine_id: impl Into<String>) -> Self {
        DriverConfig {
            machine_id: machine_id.into(),
            group: String::new(),
            lease_ttl: 900,
            reap_interval: Duration::from_secs(30),
            stop_when_idle: false,
        }
    }
}

/// The seams a daemon runs on.
#[derive(Clone)]
pub struct Host {
    pub status: Arc<dyn StatusSource>,
    pub health: Arc<dyn HealthCheck>,
    pub drainer: Arc<dyn Drainer>,
    pub rebooter: Arc<dyn Rebooter>,
    pub clock: Arc<dyn Clock>,
}

/// Aborts the lease refresher when dropped (also when the driver's future is).
struct Refresher(Option<tokio::task::JoinHandle<()>>);

impl Drop for Refresher {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// `keelson locksmith`.
pub struct Driver {
    daemon: Daemon,
    lock: Option<LockClient>,
    host: Host,
    config: DriverConfig,
    phase: tokio::sync::watch::Sender<Phase>,
}

fn strategy_name(s: RebootStrategy) -> &'static str {
    match s {
        RebootStrategy::Reboot => "reboot",
        RebootStrategy::EtcdLock => "etcd-lock",
        RebootStrategy::Off => "off",
        RebootStrategy::BestEffort => "best-effort",
    }
}

impl Driver {
    /// `kv` may be `None` only when the configuration does not use the lock.
    pub fn new(
        daemon: DaemonConfig,
        config: DriverConfig,
        kv: Option<Arc<dyn KvClient>>,
        host: Host,
    ) -> Result<Self, DriverError> {
        if daemon.strategy == RebootStrategy::BestEffort {
            warn!("reboot strategy best-effort is deprecated (locksmith 0.6 removed it): use etcd-lock or reboot");
        }
        let lock = match (daemon.uses_lock(), kv) {
            (true, None) => return Err(DriverError::NoKv(strategy_name(daemon.strategy))),
            (true, Some(kv)) => Some(LockClient::new(kv, &config.group)),
            (false, _) => None,
        };
        Ok(Driver {
            daemon: Daemon::new(daemon),
            lock,
            host,
            config,
            phase: tokio::sync::watch::channel(Phase::Starting).0,
        })
    }

    /// The daemon's phase as it changes (for `/metrics`).
    pub fn phases(&self) -> tokio::sync::watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Runs until the strategy is `off`, the reboot is issued, or (with
    /// `stop_when_idle`) there is nothing left to do.
    pub async fn run(mut self) -> Result<Outcome, DriverError> {
        let id = self.config.machine_id.clone();
        let ttl = self.config.lease_ttl;
        let mut refresher = Refresher(None);
        let mut watch_from: Option<u64> = None;
        let mut last_reap: Option<tokio::time::Instant> = None;
        let mut input = Input::Start;
        loop {
            let now = self.host.clock.now();
            let action = self.daemon.step(now, input);
            self.phase.send_if_modified(|p| {
                let changed = *p != self.daemon.phase();
                *p = self.daemon.phase();
                changed
            });
            input = match action {
                Action::Exit => {
                    info!("Reboot strategy is \"off\" - locksmithd is exiting.");
                    return Ok(Outcome::Exited);
                }
                Action::AwaitShutdown => return Ok(Outcome::RebootIssued),
                Action::AwaitStatus { last } => {
                    if self.config.stop_when_idle && refresher.0.is_none() && last.is_some() {
                        return Ok(Outcome::Idle);
                    }
                    let s = self
                        .host
                        .status
                        .wait_status(last)
                        .await
                        .map_err(DriverError::Status)?;
                    Input::Status(s)
                }
                Action::RenewHold => match self.lock()?.renew(&id, ttl).await {
                    Ok(held) => {
                        if held {
                            info!(machine = %id, "holding the reboot lock from before the reboot");
                            refresher = self.spawn_refresher();
                        }
                        Input::HoldRenewed(Ok(held))
                    }
                    Err(e) => {
                        warn!("checking the reboot lock: {e}");
                        Input::HoldRenewed(Err(e.to_string()))
                    }
                },
                Action::CheckHealth => Input::Health(self.host.health.healthy().await),
                Action::Release => match self.lock()?.release(&id).await {
                    Ok(_) => {
                        info!(machine = %id, "released the reboot lock");
                        refresher = Refresher(None);
                        Input::Released(Ok(()))
                    }
                    Err(e) => {
                        warn!("releasing the reboot lock: {e}");
                        Input::Released(Err(e.to_string()))
                    }
                },
                Action::TakeLock => match self.lock()?.lock_expiring(&id, ttl).await {
                    Ok(_) => {
                        info!(machine = %id, "took the reboot lock");
                        refresher = self.spawn_refresher();
                        Input::Locked(Ok(()))
                    }
                    Err(e) => {
                        let exhausted = matches!(&e, LockError::Refused { .. });
                        watch_from = match &e {
                            LockError::Refused { index, .. } => Some(*index),
                            _ => None,
                        };
                        if exhausted {
                            self.maybe_reap(&mut last_reap).await;
                        } else {
                            warn!("taking the reboot lock: {e}");
                        }
                        Input::Locked(Err(LockFailure {
                            exhausted,
                            message: e.to_string(),
                        }))
                    }
                },
                Action::Sleep {
                    until,
                    wake_on_semaphore,
                } => {
                    let watch = match (wake_on_semaphore, &self.lock, watch_from.take()) {
                        (true, Some(lock), Some(index)) => Some((lock.clone(), index)),
                        _ => None,
                    };
                    let sleep = self.host.clock.sleep_until(until);
                    match watch {
                        Some((lock, index)) => {
                            let kv = lock.kv().clone();
                            let key = lock.key().to_string();
                            let opts = WatchOptions {
                                recursive: false,
                                wait_index: Some(index + 1),
                            };
                            tokio::select! {
                                _ = sleep => {}
                                _ = kv.watch_once(&key, opts) => {}
                            }
                        }
                        None => sleep.await,
                    }
                    Input::Tick
                }
                Action::Drain => {
                    info!("draining before reboot");
                    Input::Drained(self.host.drainer.drain().await.map_err(|e| {
                        warn!("drain failed, rebooting anyway: {e}");
                        e.to_string()
                    }))
                }
                Action::Reboot => {
                    info!("rebooting");
                    Input::RebootIssued(self.host.rebooter.reboot().await.map_err(|e| {
                        warn!("reboot failed: {e}");
                        e.to_string()
                    }))
                }
            };
        }
    }

    fn lock(&self) -> Result<&LockClient, DriverError> {
        self.lock.as_ref().ok_or(DriverError::NoKv(strategy_name(
            self.daemon.config().strategy,
        )))
    }

    fn spawn_refresher(&self) -> Refresher {
        let Some(lock) = self.lock.clone() else {
            return Refresher(None);
        };
        let id = self.config.machine_id.clone();
        let ttl = self.config.lease_ttl;
        let every = Duration::from_millis(ttl.max(1) * 1000 / 3);
        Refresher(Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = lock.refresh_lease(&id, ttl).await {
                    warn!("refreshing the reboot lock lease: {e}");
                }
            }
        })))
    }

    async fn maybe_reap(&self, last: &mut Option<tokio::time::Instant>) {
        let Some(lock) = &self.lock else { return };
        if last.is_some_and(|t| t.elapsed() < self.config.reap_interval) {
            return;
        }
        *last = Some(tokio::time::Instant::now());
        match lock.reap_expired().await {
            Ok(reaped) if !reaped.is_empty() => {
                info!(?reaped, "released expired reboot lock holders")
            }
            Ok(_) => {}
            Err(e) => warn!("looking for expired reboot lock holders: {e}"),
        }
    }
}
