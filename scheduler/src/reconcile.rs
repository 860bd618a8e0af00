//! The agent's decision: which units this machine should have, and the
//! init-system tasks that get it there. Pure functions of the registry view
//! and the init system's state (scheduler.md §2.3).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use keelson_unitfile::UnitHash;

use crate::cluster::{ClusterState, StoredBody};
use crate::model::{DesiredState, SystemdState};
use crate::placement::global_units_on;

/// A unit this machine should have loaded (and maybe started).
#[derive(Debug, Clone)]
pub struct DesiredUnit {
    pub name: String,
    pub hash: UnitHash,
    /// `Loaded` or `Launched`.
    pub state: DesiredState,
    pub body: Arc<StoredBody>,
}

/// A unit the local init system has loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUnit {
    pub name: String,
    pub hash: UnitHash,
    /// Whether a start was requested and not followed by a stop (the
    /// agent's "launched" memory; a unit that failed stays launched).
    pub launched: bool,
    pub state: SystemdState,
}

/// One thing to ask of the init system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Stop if running, then forget the unit file.
    Unload {
        unit: String,
    },
    /// Write the unit file and load it.
    Load {
        unit: String,
    },
    Stop {
        unit: String,
    },
    Start {
        unit: String,
    },
}

/// The units `machine` should run according to `state`: non-global units
/// targeted at it, and global units whose metadata it has (scheduler.md §8).
/// Desired state `inactive` units and units whose file is missing are not
/// wanted.
pub fn desired_units(state: &ClusterState, machine: &str) -> BTreeMap<String, DesiredUnit> {
    let mut out = BTreeMap::new();
    let mut globals = Vec::new();
    for job in state.units() {
        let (Some(spec), Some(desired)) = (&job.spec, job.desired) else {
            continue;
        };
        if desired == DesiredState::Inactive {
            continue;
        }
        if spec.is_global() {
            if let Ok(f) = &spec.fleet {
                globals.push((job.name.as_str(), &**f));
            }
            continue;
        }
        if job.target.as_deref() == Some(machine) {
            out.insert(
                job.name.clone(),
                DesiredUnit {
                    name: job.name.clone(),
                    hash: spec.hash,
                    state: desired,
                    body: spec.body.clone(),
                },
            );
        }
    }
    if let Some(m) = state.machines.get(machine) {
        let meta: HashMap<String, String> = m.effective_metadata().into_iter().collect();
        for name in global_units_on(&meta, globals) {
            if let Some(job) = state.jobs.get(name) {
                if let (Some(spec), Some(desired)) = (&job.spec, job.desired) {
                    out.insert(
                        name.to_owned(),
                        DesiredUnit {
                            name: name.to_owned(),
                            hash: spec.hash,
                            state: desired,
                            body: spec.body.clone(),
                        },
                    );
                }
            }
        }
    }
    out
}

/// The tasks that turn `current` into `desired`, in fleet's order: all
/// unloads, all loads, all stops, all starts.
pub fn reconcile(
    desired: &BTreeMap<String, DesiredUnit>,
    current: &BTreeMap<String, LocalUnit>,
) -> Vec<Task> {
    let mut unloads = Vec::new();
    let mut loads = Vec::new();
    let mut stops = Vec::new();
    let mut starts = Vec::new();
    for (name, local) in current {
        match desired.get(name) {
            None => unloads.push(Task::Unload { unit: name.clone() }),
            Some(d) if d.hash != local.hash => unloads.push(Task::Unload { unit: name.clone() }),
            Some(d) => match (d.state, local.launched) {
                (DesiredState::Launched, false) => starts.push(Task::Start { unit: name.clone() }),
                (DesiredState::Loaded, true) => stops.push(Task::Stop { unit: name.clone() }),
                _ => {}
            },
        }
    }
    for (name, d) in desired {
        let fresh = current.get(name).is_none_or(|l| l.hash != d.hash);
        if fresh {
            loads.push(Task::Load { unit: name.clone() });
            if d.state == DesiredState::Launched {
                starts.push(Task::Start { unit: name.clone() });
            }
        }
    }
    unloads
        .into_iter()
        .chain(loads)
        .chain(stops)
        .chain(starts)
        .collect()
}

/// The tasks of an agent that lost its heartbeat: stop everything it
/// started, so a unit the engine moves elsewhere never runs twice.
pub fn reconcile_isolated(current: &BTreeMap<String, LocalUnit>) -> Vec<Task> {
    current
        .values()
        .filter(|l| l.launched || l.state.is_active())
        .map(|l| Task::Stop {
            unit: l.name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hash(n: u8) -> UnitHash {
        UnitHash::from_bytes([n; 20])
    }

    fn body() -> Arc<StoredBody> {
        Arc::new(StoredBody {
            raw: String::new(),
            options: Ok(vec![]),
        })
    }

    fn want(name: &str, h: u8, state: DesiredState) -> (String, DesiredUnit) {
        (
            name.into(),
            DesiredUnit {
                name: name.into(),
                hash: hash(h),
                state,
                body: body(),
            },
        )
    }

    fn have(name: &str, h: u8, launched: bool) -> (String, LocalUnit) {
        let state = if launched {
            SystemdState::new("loaded", "active", "running")
        } else {
            SystemdState::loaded_inactive()
        };
        (
            name.into(),
            LocalUnit {
                name: name.into(),
                hash: hash(h),
                launched,
                state,
            },
        )
    }

    #[test]
    fn tasks_in_fleet_order() {
        use DesiredState::*;
        let desired: BTreeMap<_, _> = [
            want("new.service", 1, Launched),
            want("changed.service", 2, Launched),
            want("stop.service", 3, Loaded),
            want("same.service", 4, Launched),
        ]
        .into();
        let current: BTreeMap<_, _> = [
            have("gone.service", 9, true),
            have("changed.service", 1, true),
            have("stop.service", 3, true),
            have("same.service", 4, true),
        ]
        .into();
        let t = reconcile(&desired, &current);
        let u = |s: &str| s.to_string();
        assert_eq!(
            t,
            vec![
                Task::Unload {
                    unit: u("changed.service")
                },
                Task::Unload {
                    unit: u("gone.service")
                },
                Task::Load {
                    unit: u("changed.service")
                },
                Task::Load {
                    unit: u("new.service")
                },
                Task::Stop {
                    unit: u("stop.service")
                },
                Task::Start {
                    unit: u("changed.service")
                },
                Task::Start {
                    unit: u("new.service")
                },
            ]
        );
        assert_eq!(reconcile_isolated(&current).len(), 4);
    }

    /// Apply tasks the way an init system would.
    fn run(
        current: &mut BTreeMap<String, LocalUnit>,
        desired: &BTreeMap<String, DesiredUnit>,
        tasks: &[Task],
    ) {
        for t in tasks {
            match t {
                Task::Unload { unit } => {
                    current.remove(unit);
                }
                Task::Load { unit } => {
                    current.insert(
                        unit.clone(),
                        have(unit, desired[unit].hash.as_bytes()[0], false).1,
                    );
                }
                Task::Stop { unit } => {
                    if let Some(l) = current.get_mut(unit) {
                        l.launched = false;
                    }
                }
                Task::Start { unit } => {
                    if let Some(l) = current.get_mut(unit) {
                        l.launched = true;
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn reconcile_converges_in_one_round(
            desired in proptest::collection::btree_map(0u8..8, (0u8..3, 1u8..3), 0..8),
            current in proptest::collection::btree_map(0u8..8, (0u8..3, any::<bool>()), 0..8),
        ) {
            let desired: BTreeMap<String, DesiredUnit> = desired.iter().map(|(n, (h, s))| want(&format!("u{n}.service"), *h, if *s == 1 { DesiredState::Loaded } else { DesiredState::Launched })).collect();
            let mut cur: BTreeMap<String, LocalUnit> = current.iter().map(|(n, (h, l))| have(&format!("u{n}.service"), *h, *l)).collect();
            let tasks = reconcile(&desired, &cur);
            // Order: unloads, loads, stops, starts.
            let rank = |t: &Task| match t { Task::Unload{..} => 0, Task::Load{..} => 1, Task::Stop{..} => 2, Task::Start{..} => 3 };
            prop_assert!(tasks.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])));
            run(&mut cur, &desired, &tasks);
            prop_assert!(reconcile(&desired, &cur).is_empty());
            prop_assert_eq!(cur.keys().collect::<Vec<_>>(), desired.keys().collect::<Vec<_>>());
            for (n, d) in &desired {
                prop_assert_eq!(cur[n].launched, d.state == DesiredState::Launched);
                prop_assert_eq!(cur[n].hash, d.hash);
            }
        }
    }
}
