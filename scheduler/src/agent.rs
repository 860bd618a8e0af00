//! The agent: publishes its machine, runs the units placed on it through an
//! [`InitSystem`], and publishes their states when they change.
//!
//! Liveness is one TTL key per machine (`machines/<id>/object`), renewed
//! with a TTL refresh, which wakes no watcher. Unit states and `job-state`
//! are written only when they change and carry no TTL: they are valid while
//! the machine's key is, and the engine leader deletes those of machines
//! that are gone. An agent that cannot renew its key for 3/4 of the TTL
//! stops its own units before the key can expire, so by the time the engine
//! moves them elsewhere they no longer run here.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keelson_kv::client::{DeleteOptions, KvClient, Precondition};
use keelson_kv::v2::ErrorCode;
use tokio::time::Instant;

use crate::error::SchedulerError;
use crate::init::InitSystem;
use crate::model::{Capabilities, MachineState, UnitStateRecord, FLEET_VERSION};
use crate::reconcile::{desired_units, reconcile, reconcile_isolated, LocalUnit, Task};
use crate::registry::Registry;

/// The agent's part of fleetd's configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub machine_id: String,
    pub public_ip: String,
    pub metadata: BTreeMap<String, String>,
    /// `agent_ttl`: the TTL of the machine key (whole seconds, at least 1).
    pub agent_ttl: Duration,
    /// Periodic reconcile as a safety net (fleet: 5 s); changes in the
    /// registry or the init system trigger one at once.
    pub reconcile_interval: Duration,
    pub disable_engine: bool,
}

/// The agent role of one fleetd.
pub struct Agent {
    registry: Arc<Registry>,
    init: Arc<dyn InitSystem>,
    cfg: AgentConfig,
    published: HashMap<String, UnitStateRecord>,
    job_states: HashMap<String, bool>,
}

impl Agent {
    pub fn new(registry: Arc<Registry>, init: Arc<dyn InitSystem>, cfg: AgentConfig) -> Self {
        Agent {
            registry,
            init,
            cfg,
            published: HashMap::new(),
            job_states: HashMap::new(),
        }
    }

    fn kv(&self) -> Arc<dyn KvClient> {
        self.registry.kv().clone()
    }

    fn ttl_secs(&self) -> u64 {
        self.cfg.agent_ttl.as_secs().max(1)
    }

    fn machine_state(&self) -> MachineState {
        MachineState {
            id: self.cfg.machine_id.clone(),
            public_ip: self.cfg.public_ip.clone(),
            metadata: self.cfg.metadata.clone(),
            capabilities: Capabilities {
                disable_engine: self.cfg.disable_engine,
                grpc: false,
            },
            version: FLEET_VERSION.to_owned(),
        }
    }

    /// Write or renew the machine key. Returns whether it succeeded.
    async fn heartbeat(&self, first: bool) -> bool {
        let key = self.registry.keys().machine_object(&self.cfg.machine_id);
        let kv = self.kv();
        let ttl = self.ttl_secs();
        if !first {
            match kv.refresh(&key, ttl).await {
                Ok(_) => return true,
                Err(e) if e.is_code(ErrorCode::KeyNotFound) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat failed");
                    return false;
                }
            }
        }
        let value = serde_json::to_string(&self.machine_state()).unwrap_or_default();
        match kv
            .set(
                &key,
                &value,
                keelson_kv::client::SetOptions {
                    ttl: Some(ttl),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                false
            }
        }
    }

    /// Run until `shutdown` completes; then stop and unload every unit and
    /// deregister the machine.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), SchedulerError> {
        tokio::pin!(shutdown);
        let beat_every = (self.cfg.agent_ttl / 4).max(Duration::from_millis(100));
        let give_up = self.cfg.agent_ttl.mul_f64(0.75);
        let mut last_beat = Instant::now();
        if self.heartbeat(true).await {
            last_beat = Instant::now();
        }
        let mut isolated = false;
        let mut registry_changes = self.registry.subscribe();
        let mut init_changes = self.init.subscribe();
        let mut next_beat = Instant::now() + beat_every;
        let mut next_reconcile = Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(next_beat) => {
                    next_beat = Instant::now() + beat_every;
                    if self.heartbeat(false).await {
                        last_beat = Instant::now();
                        if isolated {
                            tracing::info!("heartbeat restored");
                            isolated = false;
                            next_reconcile = Instant::now();
                        }
                    } else if !isolated && last_beat.elapsed() >= give_up {
                        tracing::warn!("cannot renew the machine's heartbeat; stopping local units");
                        isolated = true;
                        next_reconcile = Instant::now();
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(next_reconcile) => {}
                r = registry_changes.changed() => {
                    if r.is_err() { break; }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    registry_changes.borrow_and_update();
                }
                r = init_changes.changed() => {
                    if r.is_err() { break; }
                    init_changes.borrow_and_update();
                    if !isolated {
                        self.publish().await;
                    }
                    continue;
                }
            }
            next_reconcile = Instant::now() + self.cfg.reconcile_interval;
            if isolated {
                let current = self.current();
                self.perform(&reconcile_isolated(&current), &BTreeMap::new());
            } else {
                self.reconcile_once();
                self.publish().await;
            }
        }
        self.shutdown().await;
        Ok(())
    }

    fn current(&self) -> BTreeMap<String, LocalUnit> {
        self.init
            .units()
            .into_iter()
            .map(|u| (u.name.clone(), u))
            .collect()
    }

    /// One reconcile: desired units from the registry view, tasks to the
    /// init system. Returns the tasks performed.
    pub fn reconcile_once(&self) -> Vec<Task> {
        let desired = self
            .registry
            .with(|s| desired_units(s, &self.cfg.machine_id));
        let current = self.current();
        let tasks = reconcile(&desired, &current);
        let raws: BTreeMap<String, String> = desired
            .iter()
            .map(|(n, d)| (n.clone(), d.body.raw.clone()))
            .collect();
        self.perform(&tasks, &raws);
        tasks
    }

    fn perform(&self, tasks: &[Task], raws: &BTreeMap<String, String>) {
        for t in tasks {
            let r = match t {
                Task::Unload { unit } => self.init.unload(unit),
                Task::Load { unit } => match raws.get(unit) {
                    Some(raw) => self.init.load(unit, raw),
                    None => Ok(()),
                },
                Task::Stop { unit } => self.init.stop(unit),
                Task::Start { unit } => self.init.start(unit),
            };
            match r {
                Ok(()) => tracing::debug!(task = ?t, "done"),
                Err(e) => tracing::warn!(task = ?t, error = %e, "init system refused"),
            }
        }
    }

    /// Publish the states that changed since the last publication.
    async fn publish(&mut self) {
        let keys = self.registry.keys().clone();
        let kv = self.kv();
        let me = self.cfg.machine_id.clone();
        let machine = self.machine_state();
        let current = self.current();
        for (name, u) in &current {
            let rec = UnitStateRecord {
                load_state: u.state.load.clone(),
                active_state: u.state.active.clone(),
                sub_state: u.state.sub.clone(),
                machine_state: Some(machine.clone()),
                unit_hash: u.hash.to_string(),
            };
            if self.published.get(name) != Some(&rec) {
                let value = serde_json::to_string(&rec).unwrap_or_default();
                if kv
                    .set(&keys.unit_state(name, &me), &value, Default::default())
                    .await
                    .is_ok()
                {
                    self.published.insert(name.clone(), rec);
                }
            }
            if self.job_states.get(name) != Some(&u.launched) {
                let key = keys.job_state(name);
                let ok = if u.launched {
                    // Only for units that are still in the registry.
                    let exists = self.registry.with(|s| s.jobs.contains_key(name));
                    !exists || kv.set(&key, &me, Default::default()).await.is_ok()
                } else {
                    let r = kv
                        .compare_and_delete(
                            &key,
                            Precondition {
                                value: Some(me.clone()),
                                index: None,
                            },
                        )
                        .await;
                    r.is_ok()
                        || r.is_err_and(|e| {
                            e.is_code(ErrorCode::KeyNotFound) || e.is_code(ErrorCode::TestFailed)
                        })
                };
                if ok {
                    self.job_states.insert(name.clone(), u.launched);
                }
            }
        }
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|n| !current.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            let _ = kv
                .delete(&keys.unit_state(&name, &me), DeleteOptions::default())
                .await;
            let _ = kv
                .compare_and_delete(
                    &keys.job_state(&name),
                    Precondition {
                        value: Some(me.clone()),
                        index: None,
                    },
                )
                .await;
            self.published.remove(&name);
            self.job_states.remove(&name);
        }
    }

    async fn shutdown(&mut self) {
        for u in self.init.units() {
            let _ = self.init.stop(&u.name);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && self.init.units().iter().any(|u| u.state.is_active()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for u in self.init.units() {
            let _ = self.init.unload(&u.name);
        }
        self.publish().await;
        let key = self.registry.keys().machine_object(&self.cfg.machine_id);
        let _ = self.kv().delete(&key, DeleteOptions::default()).await;
    }
}
