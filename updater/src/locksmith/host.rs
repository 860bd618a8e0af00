//! The machine-side seams of the daemon: what tells it the engine status,
//! whether the machine is healthy, how to drain and reboot it, and what time
//! it is. Each has a real implementation and one for tests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use futures::future::BoxFuture;

use crate::engine::Status;

/// A seam failed; the text says how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// The update engine's status (its local API implements this).
pub trait StatusSource: Send + Sync {
    /// The current status once it differs from `last`; at once when `last`
    /// is `None` or the status already differs.
    fn wait_status(&self, last: Option<Status>) -> BoxFuture<'_, Result<Status, HostError>>;
}

/// A status set by hand (tests, `locksmithctl send-need-reboot`-like tools).
#[derive(Debug, Clone)]
pub struct MemoryStatus {
    tx: Arc<tokio::sync::watch::Sender<Status>>,
}

impl MemoryStatus {
    pub fn new(status: Status) -> Self {
        MemoryStatus {
            tx: Arc::new(tokio::sync::watch::channel(status).0),
        }
    }

    pub fn set(&self, status: Status) {
        self.tx.send_replace(status);
    }
}

impl StatusSource for MemoryStatus {
    fn wait_status(&self, last: Option<Status>) -> BoxFuture<'_, Result<Status, HostError>> {
        let mut rx = self.tx.subscribe();
        Box::pin(async move {
            loop {
                let now = *rx.borrow_and_update();
                if Some(now) != last {
                    return Ok(now);
                }
                if rx.changed().await.is_err() {
                    return Err(HostError("status source closed".into()));
                }
            }
        })
    }
}

/// Whether the machine is healthy enough to give its reboot slot back
/// (reference §11.3).
pub trait HealthCheck: Send + Sync {
    fn healthy(&self) -> BoxFuture<'_, bool>;
}

/// Always healthy: locksmith's behaviour (release as soon as it runs).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysHealthy;

impl HealthCheck for AlwaysHealthy {
    fn healthy(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// Health set by hand.
#[derive(Debug, Clone, Default)]
pub struct HealthFlag(pub Arc<AtomicBool>);

impl HealthFlag {
    pub fn new(healthy: bool) -> Self {
        HealthFlag(Arc::new(AtomicBool::new(healthy)))
    }
    pub fn set(&self, healthy: bool) {
        self.0.store(healthy, Ordering::SeqCst);
    }
}

impl HealthCheck for HealthFlag {
    fn healthy(&self) -> BoxFuture<'_, bool> {
        let v = self.0.load(Ordering::SeqCst);
        Box::pin(async move { v })
    }
}

/// Healthy when a command exits 0 (run through `sh -c`).
#[derive(Debug, Clone)]
pub struct CommandHealth(pub String);

impl HealthCheck for CommandHealth {
    fn healthy(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&self.0)
                .status()
                .await
                .is_ok_and(|s| s.success())
        })
    }
}

/// Moves this machine's work elsewhere before it reboots. The scheduler
/// implements it; it owns its timeout.
pub trait Drainer: Send + Sync {
    fn drain(&self) -> BoxFuture<'_, Result<(), HostError>>;
}

/// Drains nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopDrainer;

impl Drainer for NoopDrainer {
    fn drain(&self) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Reboots the machine. A real reboot does not return control for long: the
/// daemon waits to be killed after asking.
pub trait Rebooter: Send + Sync {
    fn reboot(&self) -> BoxFuture<'_, Result<(), HostError>>;
}

/// Reboots by running a command: `systemctl reboot` by default, or an
/// operator's hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRebooter {
    pub program: String,
    pub args: Vec<String>,
}

impl Default for CommandRebooter {
    fn default() -> Self {
        CommandRebooter {
            program: "systemctl".into(),
            args: vec!["reboot".into()],
        }
    }
}

impl CommandRebooter {
    /// A shell command line run with `sh -c`.
    pub fn hook(command: &str) -> Self {
        CommandRebooter {
            program: "sh".into(),
            args: vec!["-c".into(), command.into()],
        }
    }
}

impl Rebooter for CommandRebooter {
    fn reboot(&self) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let out = tokio::process::Command::new(&self.program)
                .args(&self.args)
                .output()
                .await
                .map_err(|e| HostError(format!("cannot run {}: {e}", self.program)))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(HostError(format!(
                    "{} {} failed ({}): {}",
                    self.program,
                    self.args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        })
    }
}

/// Counts reboots instead of doing them.
#[derive(Debug, Clone, Default)]
pub struct SimulatedRebooter {
    count: Arc<AtomicUsize>,
}

impl SimulatedRebooter {
    pub fn reboots(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Rebooter for SimulatedRebooter {
    fn reboot(&self) -> BoxFuture<'_, Result<(), HostError>> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

/// Local wall-clock time, and sleeping until a given time.
pub trait Clock: Send + Sync {
    fn now(&self) -> NaiveDateTime;
    fn sleep_until(&self, until: NaiveDateTime) -> BoxFuture<'_, ()>;
}

/// The machine's local time zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> NaiveDateTime {
        chrono::Local::now().naive_local()
    }
    fn sleep_until(&self, until: NaiveDateTime) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // In slices, so that a clock change (or suspend) is noticed.
            loop {
                let left = (until - self.now()).to_std().unwrap_or_default();
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(Duration::from_secs(60))).await;
            }
        })
    }
}

/// A simulated clock that starts at a chosen time and runs `scale` times
/// faster than real time: a 5-minute backoff at scale 1000 takes 300 ms.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    start: NaiveDateTime,
    origin: tokio::time::Instant,
    scale: u32,
}

impl ScaledClock {
    pub fn new(start: NaiveDateTime, scale: u32) -> Self {
        ScaledClock {
            start,
            origin: tokio::time::Instant::now(),
            scale: scale.max(1),
        }
    }

    /// Starts at the machine's local time.
    pub fn from_local_now(scale: u32) -> Self {
        Self::new(chrono::Local::now().naive_local(), scale)
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> NaiveDateTime {
        let real = self.origin.elapsed() * self.scale;
        self.start + chrono::TimeDelta::from_std(real).unwrap_or(chrono::TimeDelta::MAX)
    }
    fn sleep_until(&self, until: NaiveDateTime) -> BoxFuture<'_, ()> {
        let left = (until - self.now()).to_std().unwrap_or_default();
        let real = left / self.scale;
        Box::pin(tokio::time::sleep(real))
    }
}
