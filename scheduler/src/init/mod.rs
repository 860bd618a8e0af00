//! The `InitSystem` seam: what runs a unit on a machine.
//!
//! The agent decides (see [`crate::reconcile`]) and the init system acts. Its
//! operations are requests, like systemd jobs: `start` returns once the start
//! is under way, and the unit's LOAD/ACTIVE/SUB follow as it progresses.
//! Callers learn about progress by [`InitSystem::subscribe`], a counter bumped
//! on every state change, so states are published when they change rather
//! than polled (scheduler.md §15.3 item 6). Two implementations: the built-in
//! process [`supervisor`] (the default, no systemd needed) and [`MemInit`],
//! an in-memory one for deterministic tests.

pub mod supervisor;

use std::collections::BTreeMap;
use std::sync::Mutex;

use keelson_unitfile::name::UnitName;
use keelson_unitfile::{fleet_hash, UnitType};
use tokio::sync::watch;

use crate::model::SystemdState;
use crate::reconcile::LocalUnit;

pub use supervisor::{Supervisor, SupervisorConfig};

/// What can go wrong asking an init system to do something.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid unit name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error(
        "{name}: {kind} units are not supported by the built-in supervisor yet; only .service units can run (use the systemd init system for {kind} units)"
    )]
    Unsupported { name: String, kind: &'static str },
    #[error("{name}: invalid unit file: {reason}")]
    InvalidUnit { name: String, reason: String },
    #[error("unit {0} is not loaded")]
    NotLoaded(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs units on one machine.
pub trait InitSystem: Send + Sync {
    /// Write `raw` (a unit file) as unit `name` and load it, replacing a
    /// loaded unit of that name (which is stopped first).
    fn load(&self, name: &str, raw: &str) -> Result<(), InitError>;
    /// Stop the unit if it runs and forget it.
    fn unload(&self, name: &str) -> Result<(), InitError>;
    /// Request a start (`systemctl start`).
    fn start(&self, name: &str) -> Result<(), InitError>;
    /// Request a stop (`systemctl stop`).
    fn stop(&self, name: &str) -> Result<(), InitError>;
    /// Every loaded unit with its hash, launched flag and current state.
    fn units(&self) -> Vec<LocalUnit>;
    /// A counter bumped on every change of a unit's state.
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// The last `lines` lines of the unit's log.
    fn journal(&self, name: &str, lines: usize) -> Result<Vec<String>, InitError> {
        let _ = lines;
        Err(InitError::NotLoaded(name.to_owned()))
    }
}

/// Checks a unit name and that the built-in backends can run its type.
pub fn check_runnable(name: &str) -> Result<UnitName, InitError> {
    let n = UnitName::parse(name).map_err(|e| InitError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    match n.unit_type() {
        UnitType::Service => Ok(n),
        other => Err(InitError::Unsupported {
            name: name.to_owned(),
            kind: other.as_str(),
        }),
    }
}

#[derive(Debug, Clone)]
struct MemUnit {
    unit: LocalUnit,
}

/// An in-memory init system: starts succeed at once (`active`/`running`),
/// stops at once (`inactive`/`dead`); [`MemInit::fail`] simulates a crash.
pub struct MemInit {
    units: Mutex<BTreeMap<String, MemUnit>>,
    changed: watch::Sender<u64>,
}

impl Default for MemInit {
    fn default() -> Self {
        MemInit::new()
    }
}

impl MemInit {
    pub fn new() -> Self {
        MemInit {
            units: Mutex::new(BTreeMap::new()),
            changed: watch::channel(0).0,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, MemUnit>) -> R) -> R {
        let mut g = match self.units.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let r = f(&mut g);
        drop(g);
        self.changed.send_modify(|n| *n += 1);
        r
    }

    fn set(
        &self,
        name: &str,
        launched: Option<bool>,
        state: SystemdState,
    ) -> Result<(), InitError> {
        self.with(|units| match units.get_mut(name) {
            Some(u) => {
                if let Some(l) = launched {
                    u.unit.launched = l;
                }
                u.unit.state = state;
                Ok(())
            }
            None => Err(InitError::NotLoaded(name.to_owned())),
        })
    }

    /// Simulate the unit's process dying: `failed`/`failed`.
    pub fn fail(&self, name: &str) -> Result<(), InitError> {
        self.set(name, None, SystemdState::new("loaded", "failed", "failed"))
    }

    /// Names of units currently active.
    pub fn active(&self) -> Vec<String> {
        self.units()
            .into_iter()
            .filter(|u| u.state.is_active())
            .map(|u| u.name)
            .collect()
    }
}

impl InitSystem for MemInit {
    fn load(&self, name: &str, raw: &str) -> Result<(), InitError> {
        check_runnable(name)?;
        let hash = fleet_hash(raw).map_err(|e| InitError::InvalidUnit {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        self.with(|units| {
            units.insert(
                name.to_owned(),
                MemUnit {
                    unit: LocalUnit {
                        name: name.to_owned(),
                        hash,
                        launched: false,
                        state: SystemdState::loaded_inactive(),
                    },
                },
            );
        });
        Ok(())
    }
    fn unload(&self, name: &str) -> Result<(), InitError> {
        self.with(|units| units.remove(name));
        Ok(())
    }
    fn start(&self, name: &str) -> Result<(), InitError> {
        self.set(
            name,
            Some(true),
            SystemdState::new("loaded", "active", "running"),
        )
    }
    fn stop(&self, name: &str) -> Result<(), InitError> {
        self.set(name, Some(false), SystemdState::loaded_inactive())
    }
    fn units(&self) -> Vec<LocalUnit> {
        let g = match self.units.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.values().map(|u| u.unit.clone()).collect()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_init_and_refusals() {
        let init = MemInit::new();
        init.load("a.service", "[Service]\nExecStart=/bin/true\n")
            .unwrap();
        init.start("a.service").unwrap();
        assert_eq!(init.active(), vec!["a.service".to_string()]);
        let err = init
            .load("a.socket", "[Socket]\nListenStream=80\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("socket units are not supported"),
            "{err}"
        );
        assert!(matches!(
            init.load("a.timer", ""),
            Err(InitError::Unsupported { .. })
        ));
        assert!(matches!(
            init.load("a.mount", ""),
            Err(InitError::Unsupported { .. })
        ));
        assert!(init.start("b.service").is_err());
    }
}
