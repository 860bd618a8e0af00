//! The engine: one leader, elected through a TTL lease in the kv, turns the
//! registry view into schedule changes with [`crate::placement::plan`].
//!
//! The leader renews its lease by compare-and-swap on the lease's index, so
//! it can never renew a lease someone else took. Every pass reads the
//! watch-maintained view (no registry reads), writes only the changes
//! (create `target` with `prevExist=false`, delete it with `prevValue`), and
//! then waits for its own writes to come back through the watch so the next
//! pass never decides from a view older than its last decision.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keelson_kv::client::{DeleteOptions, KvClient, KvError, Precondition};
use keelson_kv::v2::ErrorCode;
use tokio::time::Instant;

use crate::error::SchedulerError;
use crate::model::{LeaseRecord, ENGINE_VERSION};
use crate::placement::{plan, Decision, PlacementInput};
use crate::registry::Registry;

/// The engine's part of fleetd's configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub machine_id: String,
    /// `engine_reconcile_interval`; the lease TTL is 5× this.
    pub reconcile_interval: Duration,
}

impl EngineConfig {
    /// Lease TTL in whole seconds (at least 1).
    pub fn lease_ttl(&self) -> u64 {
        (self.reconcile_interval.as_secs_f64() * 5.0)
            .ceil()
            .max(1.0) as u64
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub leader: bool,
    pub scheduled: usize,
    pub unscheduled: usize,
    pub unplaceable: usize,
}

/// The engine role of one fleetd.
pub struct Engine {
    registry: Arc<Registry>,
    cfg: EngineConfig,
    /// modifiedIndex of the lease we hold.
    lease_index: Option<u64>,
}

fn is_code(e: &KvError, code: ErrorCode) -> bool {
    e.is_code(code)
}

impl Engine {
    pub fn new(registry: Arc<Registry>, cfg: EngineConfig) -> Self {
        Engine {
            registry,
            cfg,
            lease_index: None,
        }
    }

    fn kv(&self) -> &Arc<dyn KvClient> {
        self.registry.kv()
    }

    /// Whether this engine holds the lease (as of its last pass).
    pub fn is_leader(&self) -> bool {
        self.lease_index.is_some()
    }

    /// Run until `shutdown` completes; then release the lease if held.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), SchedulerError> {
        tokio::pin!(shutdown);
        self.version_gate().await;
        let mut changes = self.registry.subscribe();
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(next) => {}
                r = changes.changed() => {
                    if r.is_err() { break; }
                    // Coalesce a burst of events into one pass.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    changes.borrow_and_update();
                }
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "engine pass failed");
            }
            next = Instant::now() + self.cfg.reconcile_interval;
        }
        self.release().await;
        Ok(())
    }

    async fn version_gate(&self) {
        let key = self.registry.keys().engine_version();
        let v = ENGINE_VERSION.to_string();
        if let Err(e) = self.kv().create(&key, &v, None).await {
            if !is_code(&e, ErrorCode::NodeExist) {
                tracing::debug!(error = %e, "engine version gate");
            }
        }
    }

    /// Release the lease (graceful shutdown): a follower takes over at once.
    pub async fn release(&mut self) {
        if let Some(idx) = self.lease_index.take() {
            let key = self.registry.keys().engine_lease();
            let _ = self
                .kv()
                .compare_and_delete(
                    &key,
                    Precondition {
                        value: None,
                        index: Some(idx),
                    },
                )
                .await;
        }
    }

    async fn acquire(&mut self) -> Result<bool, SchedulerError> {
        let key = self.registry.keys().engine_lease();
        let ttl = self.cfg.lease_ttl();
        let value = serde_json::to_string(&LeaseRecord {
            machine_id: self.cfg.machine_id.clone(),
            version: ENGINE_VERSION,
        })
        .unwrap_or_default();
        if let Some(idx) = self.lease_index {
            match self
                .kv()
                .compare_and_swap(
                    &key,
                    &value,
                    Precondition {
                        value: None,
                        index: Some(idx),
                    },
                    Some(ttl),
                )
                .await
            {
                Ok(r) => {
                    self.lease_index = r.node().map(|n| n.modified_index);
                    return Ok(true);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Engine leadership lost, renewal failed");
                    self.lease_index = None;
                    if !(is_code(&e, ErrorCode::TestFailed) || is_code(&e, ErrorCode::KeyNotFound))
                    {
                        return Err(e.into());
                    }
                }
            }
        }
        match self.kv().create(&key, &value, Some(ttl)).await {
            Ok(r) => {
                tracing::info!(machine = %self.cfg.machine_id, "Engine leadership acquired");
                self.lease_index = r.node().map(|n| n.modified_index);
                Ok(true)
            }
            Err(e) if is_code(&e, ErrorCode::NodeExist) => {
                // Steal from an engine of an older version.
                let current = self.kv().get(&key, Default::default()).await?;
                let Some(node) = current.node() else {
                    return Ok(false);
                };
                let rec = LeaseRecord::parse(node.value.as_deref().unwrap_or(""));
                if rec.version < ENGINE_VERSION {
                    let remaining = node.ttl.max(0) as u64;
                    let r = self
                        .kv()
                        .compare_and_swap(
                            &key,
                            &value,
                            Precondition {
                                value: None,
                                index: Some(node.modified_index),
                            },
                            Some(ttl + remaining),
                        )
                        .await?;
                    tracing::info!("Stole engine leadership from Machine({})", rec.machine_id);
                    self.lease_index = r.node().map(|n| n.modified_index);
                    tokio::time::sleep(Duration::from_secs(remaining)).await;
                    return Ok(true);
                }
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One reconcile pass: lease, then (if leader) placement and writes.
    pub async fn pass(&mut self) -> Result<PassReport, SchedulerError> {
        let started = Instant::now();
        if !self.acquire().await? {
            return Ok(PassReport::default());
        }
        let keys = self.registry.keys().clone();
        let (input, reasons, stale) = self.registry.with(|s| {
            let input = PlacementInput::from_cluster(s);
            let reasons = s.reasons.clone();
            // States and job-states of machines that are gone.
            let mut stale = Vec::new();
            for (unit, per) in &s.states {
                for m in per.keys() {
                    if !s.is_live(m) {
                        stale.push((keys.unit_state(unit, m), None));
                    }
                }
            }
            for j in s.jobs.values() {
                if let Some(m) = &j.job_state {
                    if !s.is_live(m) {
                        stale.push((keys.job_state(&j.name), Some(m.clone())));
                    }
                }
            }
            (input, reasons, stale)
        });
        let p = plan(&input);
        let mut report = PassReport {
            leader: true,
            unplaceable: p.unplaceable.len(),
            ..Default::default()
        };
        let mut last = 0u64;
        let kv = self.kv().clone();
        for d in &p.decisions {
            let r = match d {
                Decision::Unschedule {
                    unit,
                    machine,
                    reason,
                } => {
                    tracing::info!(unit = %unit, machine = %machine, "unscheduling: {reason}");
                    report.unscheduled += 1;
                    kv.compare_and_delete(
                        &keys.job_target(unit),
                        Precondition {
                            value: Some(machine.clone()),
                            index: None,
                        },
                    )
                    .await
                }
                Decision::Schedule { unit, machine } => {
                    tracing::info!(unit = %unit, machine = %machine, "scheduling");
                    report.scheduled += 1;
                    kv.create(&keys.job_target(unit), machine, None).await
                }
            };
            match r {
                Ok(r) => last = last.max(r.etcd_index),
                Err(e) => {
                    tracing::debug!(error = %e, "schedule change lost a race; next pass retries")
                }
            }
        }
        for (unit, reason) in &p.unplaceable {
            if reasons.get(unit) != Some(reason) {
                if let Ok(r) = kv.set(&keys.reason(unit), reason, Default::default()).await {
                    last = last.max(r.etcd_index);
                }
            }
        }
        let gone: BTreeSet<&String> = reasons
            .keys()
            .filter(|u| !p.unplaceable.contains_key(*u))
            .collect();
        for unit in gone {
            if let Ok(r) = kv
                .delete(&keys.reason(unit), DeleteOptions::default())
                .await
            {
                last = last.max(r.etcd_index);
            }
        }
        for (key, value) in stale {
            let prev = Precondition { value, index: None };
            let r = if prev.value.is_some() {
                kv.compare_and_delete(&key, prev).await
            } else {
                kv.delete(&key, DeleteOptions::default()).await
            };
            if let Ok(r) = r {
                last = last.max(r.etcd_index);
            }
        }
        if last > 0 {
            self.registry
                .wait_for_index(last, Duration::from_secs(5))
                .await;
        }
        let took = started.elapsed();
        if took > self.cfg.reconcile_interval {
            tracing::warn!("Engine completed reconciliation in {took:?}");
        }
        Ok(report)
    }
}
