//! locksmithd's decisions as a state machine with no I/O.
//!
//! The driver ([`crate::locksmith::driver`]) feeds it one [`Input`] at a time
//! with the current local wall-clock time and performs the one [`Action`] it
//! returns; the result of that action is the next input. Keeping time and
//! results as inputs is what lets the tests walk through windows, backoff and
//! post-reboot release without sleeping.
//!
//! The flow follows locksmithd (reference updater.md §10.3) with the changes
//! §11 advises: the slot taken before the last reboot is released only once
//! the machine is healthy, the window is checked again after the lock is
//! acquired (a slot won outside the window is given back), and the machine is
//! drained before it reboots.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};

use super::window::Window;
use crate::config::RebootStrategy;
use crate::engine::Status;

/// What the daemon needs to know at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub strategy: RebootStrategy,
    /// For `best-effort`: whether a kv member runs on this machine (then the
    /// lock is used, else the machine reboots without one).
    pub kv_member_local: bool,
    pub window: Option<Window>,
    pub backoff: Backoff,
    /// How long to wait between health checks after a reboot.
    pub health_poll: Duration,
}

impl DaemonConfig {
    /// A configuration with locksmith's timings.
    pub fn new(strategy: RebootStrategy) -> Self {
        DaemonConfig {
            strategy,
            kv_member_local: false,
            window: None,
            backoff: Backoff::default(),
            health_poll: Duration::from_secs(5),
        }
    }

    /// The daemon's settings from `update.conf`: `REBOOT_STRATEGY` (or
    /// `default` when unset; the CLI chooses it, see reference §10.2) and the
    /// reboot window. A window with only one of its two settings, or a bad
    /// one, is an error: locksmithd refuses to start.
    pub fn from_update_config(
        config: &crate::config::UpdateConfig,
        default: RebootStrategy,
        kv_member_local: bool,
    ) -> Result<Self, super::window::WindowError> {
        let mut c = DaemonConfig::new(config.reboot_strategy.unwrap_or(default));
        c.kv_member_local = kv_member_local;
        c.window = Window::from_settings(
            config.reboot_window_start.as_deref(),
            config.reboot_window_length.as_deref(),
        )?;
        Ok(c)
    }

    /// Whether this configuration coordinates through the semaphore.
    pub fn uses_lock(&self) -> bool {
        match self.strategy {
            RebootStrategy::EtcdLock => true,
            RebootStrategy::BestEffort => self.kv_member_local,
            RebootStrategy::Reboot | RebootStrategy::Off => false,
        }
    }
}

/// locksmith's backoff: the interval doubles **before** each wait, from
/// `initial`, capped at `max` (waits of 10 s, 20 s, … 160 s, then 300 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(5), Duration::from_secs(300))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        self.current = (self.current * 2).min(self.max);
        self.current
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// Why taking the lock failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockFailure {
    /// No free slot ("semaphore is at N"): worth waking early when the
    /// semaphore changes. Otherwise the kv failed or was contended.
    pub exhausted: bool,
    pub message: String,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The daemon started (after boot or a restart).
    Start,
    /// The update engine's status.
    Status(Status),
    /// A [`Action::Sleep`] ended (its time came, or the semaphore changed).
    Tick,
    /// Result of [`Action::RenewHold`]: whether this machine holds a slot.
    HoldRenewed(Result<bool, String>),
    /// Result of [`Action::CheckHealth`].
    Health(bool),
    /// Result of [`Action::Release`].
    Released(Result<(), String>),
    /// Result of [`Action::TakeLock`].
    Locked(Result<(), LockFailure>),
    /// Result of [`Action::Drain`]; a failed drain is logged and the reboot
    /// goes ahead (the drainer owns its timeout, reference §11.2).
    Drained(Result<(), String>),
    /// Result of [`Action::Reboot`].
    RebootIssued(Result<(), String>),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Strategy `off`: exit 0.
    Exit,
    /// If this machine holds a slot, renew its lease; answer whether it does.
    RenewHold,
    /// Run the health check.
    CheckHealth,
    /// Give back this machine's slot.
    Release,
    /// Report the engine status once it differs from `last` (or at once when
    /// `last` is `None`).
    AwaitStatus { last: Option<Status> },
    /// Sleep until `until` (local wall-clock time); with
    /// `wake_on_semaphore`, also wake when the semaphore changes.
    Sleep {
        until: NaiveDateTime,
        wake_on_semaphore: bool,
    },
    /// Take a slot in the semaphore.
    TakeLock,
    /// Move this machine's work elsewhere.
    Drain,
    /// Reboot now.
    Reboot,
    /// The reboot is under way: wait to be killed.
    AwaitShutdown,
}

/// Where the daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    /// Finding out whether a slot from before the reboot is still held.
    Recovering,
    /// Holding a slot from before the reboot until the machine is healthy.
    AwaitingHealth,
    Releasing,
    /// Waiting for the engine to need a reboot.
    Idle,
    /// A reboot is needed; waiting for the window to open.
    WaitingWindow,
    Locking,
    /// A lock attempt failed; backing off.
    LockBackoff,
    Draining,
    Rebooting,
    /// Reboot issued, or strategy `off`.
    Done,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::Starting,
        Phase::Recovering,
        Phase::AwaitingHealth,
        Phase::Releasing,
        Phase::Idle,
        Phase::WaitingWindow,
        Phase::Locking,
        Phase::LockBackoff,
        Phase::Draining,
        Phase::Rebooting,
        Phase::Done,
    ];

    /// A stable lower-case name (for metrics and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Recovering => "recovering",
            Phase::AwaitingHealth => "awaiting-health",
            Phase::Releasing => "releasing",
            Phase::Idle => "idle",
            Phase::WaitingWindow => "waiting-window",
            Phase::Locking => "locking",
            Phase::LockBackoff => "lock-backoff",
            Phase::Draining => "draining",
            Phase::Rebooting => "rebooting",
            Phase::Done => "done",
        }
    }
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Daemon {
    config: DaemonConfig,
    phase: Phase,
    backoff: Backoff,
    /// The engine has asked for a reboot.
    need_reboot: bool,
    last_status: Option<Status>,
    /// A release failed; retry it after the sleep.
    retry_release: bool,
    /// The hold renewal failed; retry it after the sleep.
    retry_renew: bool,
}

impl Daemon {
    pub fn new(config: DaemonConfig) -> Self {
        let backoff = config.backoff;
        Daemon {
            config,
            phase: Phase::Starting,
            backoff,
            need_reboot: false,
            last_status: None,
            retry_release: false,
            retry_renew: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn config(&self) -> &DaemonConfig {
        &self.config
    }

    /// Feeds one input observed at `now` and returns what to do.
    pub fn step(&mut self, now: NaiveDateTime, input: Input) -> Action {
        match (self.phase, input) {
            (Phase::Starting, Input::Start) => {
                if self.config.strategy == RebootStrategy::Off {
                    self.phase = Phase::Done;
                    Action::Exit
                } else if self.config.uses_lock() {
                    self.phase = Phase::Recovering;
                    Action::RenewHold
                } else {
                    self.await_status()
                }
            }
            (Phase::Recovering, Input::HoldRenewed(Ok(true))) => {
                self.backoff.reset();
                self.phase = Phase::AwaitingHealth;
                Action::CheckHealth
            }
            (Phase::Recovering, Input::HoldRenewed(Ok(false))) => {
                self.backoff.reset();
                self.await_status()
            }
            (Phase::Recovering, Input::HoldRenewed(Err(_))) => {
                self.retry_renew = true;
                self.backoff_sleep(now, false)
            }
            (Phase::AwaitingHealth, Input::Health(true)) => {
                self.phase = Phase::Releasing;
                Action::Release
            }
            (Phase::AwaitingHealth, Input::Health(false)) => Action::Sleep {
                until: now + delta(self.config.health_poll),
                wake_on_semaphore: false,
            },
            (Phase::AwaitingHealth, Input::Tick) => Action::CheckHealth,
            (Phase::Releasing, Input::Released(Ok(()))) => {
                self.backoff.reset();
                if self.need_reboot {
                    self.toward_reboot(now)
                } else {
                    self.await_status()
                }
            }
            (Phase::Releasing, Input::Released(Err(_))) => {
                self.retry_release = true;
                self.backoff_sleep(now, false)
            }
            (Phase::Idle, Input::Status(s)) => {
                self.last_status = Some(s);
                if s == Status::UpdatedNeedReboot {
                    self.need_reboot = true;
                    self.toward_reboot(now)
                } else {
                    self.await_status()
                }
            }
            (Phase::WaitingWindow, Input::Tick) => self.toward_reboot(now),
            (Phase::Locking, Input::Locked(Ok(()))) => {
                self.backoff.reset();
                if self.outside_window(now) {
                    // Won outside the window (flatcar v0.7.0): give it back.
                    self.phase = Phase::Releasing;
                    Action::Release
                } else {
                    self.phase = Phase::Draining;
                    Action::Drain
                }
            }
            (Phase::Locking, Input::Locked(Err(f))) => {
                self.phase = Phase::LockBackoff;
                let wait = self.backoff.next_wait();
                Action::Sleep {
                    until: now + delta(wait),
                    wake_on_semaphore: f.exhausted,
                }
            }
            (Phase::LockBackoff, Input::Tick) => self.toward_reboot(now),
            (Phase::Draining, Input::Drained(_)) => {
                self.phase = Phase::Rebooting;
                Action::Reboot
            }
            (Phase::Rebooting, Input::RebootIssued(Ok(()))) => {
                self.phase = Phase::Done;
                Action::AwaitShutdown
            }
            (Phase::Rebooting, Input::RebootIssued(Err(_))) => self.backoff_sleep(now, false),
            (Phase::Rebooting, Input::Tick) => Action::Reboot,
            // Retries after a backoff sleep.
            (Phase::Recovering, Input::Tick) if self.retry_renew => {
                self.retry_renew = false;
                Action::RenewHold
            }
            (Phase::Releasing, Input::Tick) if self.retry_release => {
                self.retry_release = false;
                Action::Release
            }
            (Phase::Done, _) => Action::AwaitShutdown,
            // Anything unexpected: repeat what this phase waits on.
            (phase, _) => self.resume(phase, now),
        }
    }

    fn resume(&mut self, phase: Phase, now: NaiveDateTime) -> Action {
        match phase {
            Phase::Starting => self.step(now, Input::Start),
            Phase::Recovering => Action::RenewHold,
            Phase::AwaitingHealth => Action::CheckHealth,
            Phase::Releasing => Action::Release,
            Phase::Idle => Action::AwaitStatus {
                last: self.last_status,
            },
            Phase::WaitingWindow | Phase::LockBackoff => self.toward_reboot(now),
            Phase::Locking => Action::TakeLock,
            Phase::Draining => Action::Drain,
            Phase::Rebooting => Action::Reboot,
            Phase::Done => Action::AwaitShutdown,
        }
    }

    fn await_status(&mut self) -> Action {
        self.phase = Phase::Idle;
        Action::AwaitStatus {
            last: self.last_status,
        }
    }

    fn outside_window(&self, now: NaiveDateTime) -> bool {
        self.config.window.is_some_and(|w| !w.contains(now))
    }

    /// A reboot is needed: wait for the window, then lock or drain.
    fn toward_reboot(&mut self, now: NaiveDateTime) -> Action {
        if let Some(w) = self.config.window {
            if !w.contains(now) {
                self.phase = Phase::WaitingWindow;
                return Action::Sleep {
                    until: w.next_opening(now),
                    wake_on_semaphore: false,
                };
            }
        }
        if self.config.uses_lock() {
            self.phase = Phase::Locking;
            Action::TakeLock
        } else {
            self.phase = Phase::Draining;
            Action::Drain
        }
    }

    fn backoff_sleep(&mut self, now: NaiveDateTime, wake_on_semaphore: bool) -> Action {
        Action::Sleep {
            until: now + delta(self.backoff.next_wait()),
            wake_on_semaphore,
        }
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use proptest::prelude::*;

    fn t0() -> NaiveDateTime {
        // A Thursday.
        NaiveDate::from_ymd_opt(2026, 11, 19)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
    }

    fn secs(s: i64) -> TimeDelta {
        TimeDelta::seconds(s)
    }

    #[test]
    fn reads_update_conf() {
        use crate::config::{KeyValues, Overrides, UpdateConfig};
        let kv = KeyValues::merge([
            "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_REBOOT_WINDOW_START=\"Thu 04:00\"\nREBOOT_WINDOW_LENGTH=1h30m\n",
        ]);
        let uc = UpdateConfig::from_key_values(kv, &Overrides::default()).unwrap();
        let c = DaemonConfig::from_update_config(&uc, RebootStrategy::Reboot, false).unwrap();
        assert_eq!(c.strategy, RebootStrategy::EtcdLock);
        assert_eq!(c.window, Some(Window::parse("Thu 04:00", "1h30m").unwrap()));
        let kv = KeyValues::merge(["REBOOT_WINDOW_START=04:00\n"]);
        let uc = UpdateConfig::from_key_values(kv, &Overrides::default()).unwrap();
        let e = DaemonConfig::from_update_config(&uc, RebootStrategy::Reboot, false).unwrap_err();
        assert!(e.to_string().contains("Either both or neither"));
        let uc =
            UpdateConfig::from_key_values(KeyValues::merge([""]), &Overrides::default()).unwrap();
        let c = DaemonConfig::from_update_config(&uc, RebootStrategy::BestEffort, true).unwrap();
        assert!(c.uses_lock() && c.window.is_none());
    }

    #[test]
    fn off_exits() {
        let mut d = Daemon::new(DaemonConfig::new(RebootStrategy::Off));
        assert_eq!(d.step(t0(), Input::Start), Action::Exit);
        assert_eq!(d.phase(), Phase::Done);
    }

    #[test]
    fn reboot_strategy_drains_and_reboots_without_lock() {
        let mut d = Daemon::new(DaemonConfig::new(RebootStrategy::Reboot));
        assert_eq!(
            d.step(t0(), Input::Start),
            Action::AwaitStatus { last: None }
        );
        assert_eq!(
            d.step(t0(), Input::Status(Status::Downloading)),
            Action::AwaitStatus {
                last: Some(Status::Downloading)
            }
        );
        assert_eq!(
            d.step(t0(), Input::Status(Status::UpdatedNeedReboot)),
            Action::Drain
        );
        assert_eq!(
            d.step(t0(), Input::Drained(Err("timeout".into()))),
            Action::Reboot
        );
        assert_eq!(
            d.step(t0(), Input::RebootIssued(Ok(()))),
            Action::AwaitShutdown
        );
    }

    #[test]
    fn best_effort_uses_lock_only_with_a_local_member() {
        let mut c = DaemonConfig::new(RebootStrategy::BestEffort);
        let mut d = Daemon::new(c.clone());
        d.step(t0(), Input::Start);
        assert_eq!(
            d.step(t0(), Input::Status(Status::UpdatedNeedReboot)),
            Action::Drain
        );
        c.kv_member_local = true;
        let mut d = Daemon::new(c);
        assert_eq!(d.step(t0(), Input::Start), Action::RenewHold);
        d.step(t0(), Input::HoldRenewed(Ok(false)));
        assert_eq!(
            d.step(t0(), Input::Status(Status::UpdatedNeedReboot)),
            Action::TakeLock
        );
    }

    #[test]
    fn lock_backoff_doubles_before_each_wait_and_caps() {
        let mut d = Daemon::new(DaemonConfig::new(RebootStrategy::EtcdLock));
        d.step(t0(), Input::Start);
        d.step(t0(), Input::HoldRenewed(Ok(false)));
        assert_eq!(
            d.step(t0(), Input::Status(Status::UpdatedNeedReboot)),
            Action::TakeLock
        );
        let mut now = t0();
        let mut waits = Vec::new();
        for _ in 0..8 {
            let a = d.step(
                now,
                Input::Locked(Err(LockFailure {
                    exhausted: true,
                    message: "semaphore is at 0".into(),
                })),
            );
            let Action::Sleep {
                until,
                wake_on_semaphore,
            } = a
            else {
                panic!("{a:?}")
            };
            assert!(wake_on_semaphore);
            waits.push((until - now).num_seconds());
            now = until;
            assert_eq!(d.step(now, Input::Tick), Action::TakeLock);
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(d.step(now, Input::Locked(Ok(()))), Action::Drain);
        assert_eq!(d.step(now, Input::Drained(Ok(()))), Action::Reboot);
    }

    #[test]
    fn after_reboot_the_hold_is_released_only_when_healthy() {
        let mut d = Daemon::new(DaemonConfig::new(RebootStrategy::EtcdLock));
        assert_eq!(d.step(t0(), Input::Start), Action::RenewHold);
        let a = d.step(t0(), Input::HoldRenewed(Err("unreachable".into())));
        assert!(matches!(a, Action::Sleep { .. }));
        assert_eq!(d.step(t0() + secs(10), Input::Tick), Action::RenewHold);
        assert_eq!(
            d.step(t0(), Input::HoldRenewed(Ok(true))),
            Action::CheckHealth
        );
        assert_eq!(
            d.step(t0(), Input::Health(false)),
            Action::Sleep {
                until: t0() + secs(5),
                wake_on_semaphore: false
            }
        );
        assert_eq!(d.step(t0() + secs(5), Input::Tick), Action::CheckHealth);
        assert_eq!(d.step(t0(), Input::Health(true)), Action::Release);
        assert!(matches!(
            d.step(t0(), Input::Released(Err("x".into()))),
            Action::Sleep { .. }
        ));
        assert_eq!(d.step(t0(), Input::Tick), Action::Release);
        assert_eq!(
            d.step(t0(), Input::Released(Ok(()))),
            Action::AwaitStatus { last: None }
        );
    }

    #[test]
    fn window_is_waited_for_and_rechecked_after_the_lock() {
        let mut c = DaemonConfig::new(RebootStrategy::EtcdLock);
        // Thursdays 23:00 for 1h30m.
        c.window = Some(Window::parse("Thu 23:00", "1h30m").unwrap());
        let mut d = Daemon::new(c);
        d.step(t0(), Input::Start);
        d.step(t0(), Input::HoldRenewed(Ok(false)));
        let opening = t0() + TimeDelta::hours(11);
        assert_eq!(
            d.step(t0(), Input::Status(Status::UpdatedNeedReboot)),
            Action::Sleep {
                until: opening,
                wake_on_semaphore: false
            }
        );
        assert_eq!(d.step(opening, Input::Tick), Action::TakeLock);
        // Lock refused; by the next try the window has closed.
        let fail = LockFailure {
            exhausted: true,
            message: "semaphore is at 0".into(),
        };
        d.step(opening, Input::Locked(Err(fail)));
        let late = opening + TimeDelta::hours(2);
        assert_eq!(
            d.step(late, Input::Tick),
            Action::Sleep {
                until: opening + TimeDelta::days(7),
                wake_on_semaphore: false
            }
        );
        // Acquired just as the window closed: released, and wait again.
        let mut d2 = d.clone();
        assert_eq!(
            d2.step(opening + TimeDelta::days(7), Input::Tick),
            Action::TakeLock
        );
        let closed = opening + TimeDelta::days(7) + TimeDelta::minutes(90);
        assert_eq!(d2.step(closed, Input::Locked(Ok(()))), Action::Release);
        assert!(matches!(
            d2.step(closed, Input::Released(Ok(()))),
            Action::Sleep {
                wake_on_semaphore: false,
                ..
            }
        ));
    }

    proptest! {
        /// Whatever happens, the machine never drains or reboots outside its
        /// window, and never reboots without having been granted the lock.
        #[test]
        fn never_reboots_outside_window_or_without_lock(
            inputs in proptest::collection::vec((0u8..9, 0i64..7200), 1..80)
        ) {
            let mut c = DaemonConfig::new(RebootStrategy::EtcdLock);
            c.window = Some(Window::parse("13:00", "1h").unwrap());
            let w = c.window.unwrap();
            let mut d = Daemon::new(c);
            let mut now = t0();
            let mut holds = false;
            let mut action = d.step(now, Input::Start);
            for (kind, dt) in inputs {
                now += TimeDelta::seconds(dt);
                let input = match kind {
                    0 => Input::Tick,
                    1 => Input::Status(Status::UpdatedNeedReboot),
                    2 => Input::Status(Status::Idle),
                    3 => Input::HoldRenewed(Ok(dt % 2 == 0)),
                    4 => Input::Health(dt % 2 == 0),
                    5 => Input::Released(Ok(())),
                    6 => Input::Locked(if dt % 2 == 0 { Ok(()) } else { Err(LockFailure { exhausted: true, message: String::new() }) }),
                    7 => Input::Drained(Ok(())),
                    _ => Input::RebootIssued(Ok(())),
                };
                // Only feed results of the action actually asked for.
                let fits = matches!((&action, &input),
                    (Action::Sleep { .. }, Input::Tick)
                    | (Action::AwaitStatus { .. }, Input::Status(_))
                    | (Action::RenewHold, Input::HoldRenewed(_))
                    | (Action::CheckHealth, Input::Health(_))
                    | (Action::Release, Input::Released(_))
                    | (Action::TakeLock, Input::Locked(_))
                    | (Action::Drain, Input::Drained(_))
                    | (Action::Reboot, Input::RebootIssued(_)));
                if !fits { continue; }
                match &input {
                    Input::Locked(Ok(())) => holds = true,
                    Input::Released(Ok(())) => holds = false,
                    _ => {}
                }
                action = d.step(now, input);
                if matches!(action, Action::Drain | Action::Reboot) {
                    prop_assert!(holds);
                }
                if action == Action::Drain {
                    prop_assert!(w.contains(now));
                }
            }
        }
    }
}
