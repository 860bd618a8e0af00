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

/// The machine's own reboot: through logind on the system bus (what
/// locksmithd asks for) when `busctl` and the bus are there, else
/// `systemctl reboot`.
#[derive(Debug, Clone)]
pub struct SystemRebooter {
    /// The system bus socket whose presence selects logind.
    pub bus_socket: std::path::PathBuf,
}

impl Default for SystemRebooter {
    fn default() -> Self {
        SystemRebooter {
            bus_socket: "/run/dbus/system_bus_socket".into(),
        }
    }
}

impl SystemRebooter {
    /// The command that will be run.
    pub fn command(&self) -> CommandRebooter {
        let busctl = ["/usr/bin/busctl", "/bin/busctl"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        match busctl {
            Some(b) if self.bus_socket.exists() => CommandRebooter {
                program: b.into(),
                args: [
                    "call",
                    "org.freedesktop.login1",
                    "/org/freedesktop/login1",
                    "org.freedesktop.login1.Manager",
                    "Reboot",
                    "b",
                    "false",
                ]
                .map(String::from)
                .to_vec(),
            },
            _ => CommandRebooter::default(),
        }
    }
}

impl Rebooter for SystemRebooter {
    fn reboot(&self) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let logind = self.command();
            match logind.reboot().await {
                Ok(()) => Ok(()),
                // logind refused or is absent: systemd's own client.
                Err(e) if logind != CommandRebooter::default() => {
                    tracing::warn!(
                        "rebooting through logind failed ({e}); trying systemctl reboot"
                    );
                    CommandRebooter::default().reboot().await
                }
                Err(e) => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_rebooter_asks_logind_only_when_the_bus_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let absent = SystemRebooter {
            bus_socket: dir.path().join("no-bus"),
        };
        assert_eq!(absent.command(), CommandRebooter::default());
        let bus = dir.path().join("system_bus_socket");
        std::fs::write(&bus, "").unwrap();
        let present = SystemRebooter { bus_socket: bus };
        let c = present.command();
        let has_busctl = ["/usr/bin/busctl", "/bin/busctl"]
            .iter()
            .any(|p| std::path::Path::new(p).exists());
        if has_busctl {
            assert!(c.program.ends_with("busctl"), "{c:?}");
            assert_eq!(c.args[4], "Reboot");
        } else {
            assert_eq!(c, CommandRebooter::default());
        }
    }

    #[tokio::test]
    async fn command_hook_failure_says_what_failed() {
        let e = CommandRebooter::hook("echo nope >&2; exit 3")
            .reboot()
            .await
            .unwrap_err();
        assert!(
            e.0.contains("exit status: 3") && e.0.contains("nope"),
            "{e}"
        );
        CommandRebooter::hook("true").reboot().await.unwrap();
    }
}
