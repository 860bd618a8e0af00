//! [`FleetClient`]: what `fleetctl` and the fleet HTTP API do, as library
//! calls: submit, load, start, stop, unload and destroy units, and list unit
//! files, unit states and machines (with the engine's reason for every unit
//! it could not place).

use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_kv::client::{DeleteOptions, KvClient};
use keelson_kv::v2::ErrorCode;
use keelson_unitfile::fleet::ParseOptions;
use keelson_unitfile::{Mode, Unit, UnitName, UnitOption, XFleet};

use crate::error::SchedulerError;
use crate::keys::Keys;
use crate::model::{DesiredState, JobObject, UnitBody};
use crate::registry::Registry;

/// A row of `list-unit-files` (and the fleet API's Unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFileInfo {
    pub name: String,
    /// 40 hex digits.
    pub hash: String,
    pub desired: Option<DesiredState>,
    /// Derived current state; `None` for global units (shown as `-`).
    pub current: Option<DesiredState>,
    /// Target machine; `None` when unscheduled or global.
    pub target: Option<String>,
    pub target_ip: Option<String>,
    pub global: bool,
    /// `[Unit] Description=`.
    pub description: Option<String>,
    /// Why the engine could not place it (Keelson's `reason` field).
    pub reason: Option<String>,
    /// The unit's options in file order (the API's `options`).
    pub options: Vec<UnitOption>,
}

/// A row of `list-units` (and the fleet API's UnitState).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStateInfo {
    pub name: String,
    pub machine_id: String,
    pub public_ip: String,
    pub load: String,
    pub active: String,
    pub sub: String,
    pub hash: String,
}

/// A row of `list-machines` (and the fleet API's Machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub id: String,
    pub public_ip: String,
    pub metadata: BTreeMap<String, String>,
}

/// How to submit.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubmitOptions {
    /// Replace a unit whose content differs (`--replace`).
    pub replace: bool,
    /// Accept unknown `[X-Fleet]` keys (`--allow-unknown-x-fleet`).
    pub allow_unknown_x_fleet: bool,
}

/// Client operations over a registry view.
pub struct FleetClient {
    registry: Arc<Registry>,
}

fn name_of(name: &str) -> Result<UnitName, SchedulerError> {
    UnitName::parse(name).map_err(|e| SchedulerError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

impl FleetClient {
    pub fn new(registry: Arc<Registry>) -> Self {
        FleetClient { registry }
    }

    /// Open a registry over `kv` and wrap it.
    pub async fn connect(kv: Arc<dyn KvClient>, keys: Keys) -> Result<Self, SchedulerError> {
        Ok(FleetClient::new(Arc::new(Registry::open(kv, keys).await?)))
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn kv(&self) -> &Arc<dyn KvClient> {
        self.registry.kv()
    }

    fn keys(&self) -> &Keys {
        self.registry.keys()
    }

    async fn sync(&self, index: u64) {
        self.registry
            .wait_for_index(index, std::time::Duration::from_secs(5))
            .await;
    }

    /// Validate a unit file for `name`: syntax (with line and column) and
    /// `[X-Fleet]`, including a `MachineOf` cycle with units in the registry.
    pub fn validate(
        &self,
        name: &str,
        text: &str,
        opts: SubmitOptions,
    ) -> Result<Unit, SchedulerError> {
        let n = name_of(name)?;
        let unit = Unit::parse(text, Mode::Fleet, Some(name))
            .map_err(|e| SchedulerError::InvalidUnit(e.to_string()))?;
        let fleet = XFleet::parse(
            unit.options(),
            &ParseOptions {
                unit: (!n.is_template()).then_some(&n),
                allow_unknown_keys: opts.allow_unknown_x_fleet,
            },
        )
        .map_err(|e| SchedulerError::InvalidUnit(format!("{name}: {e}")))?;
        for peer in fleet.machine_of() {
            let cycle = self.registry.with(|s| {
                s.jobs
                    .get(&peer.value)
                    .and_then(|j| j.spec.clone())
                    .is_some_and(|spec| {
                        spec.fleet
                            .as_ref()
                            .is_ok_and(|f| f.machine_of().iter().any(|p| p.value == name))
                    })
            });
            if cycle {
                return Err(SchedulerError::InvalidUnit(format!(
                    "{name}: line {}, column {}: MachineOf={} is circular: {} has MachineOf={name}; neither could ever be scheduled",
                    peer.line, peer.column, peer.value, peer.value
                )));
            }
        }
        Ok(unit)
    }

    /// `fleetctl submit`: store the unit with desired state `inactive`.
    /// Submitting identical content again is a no-op.
    pub async fn submit(
        &self,
        name: &str,
        text: &str,
        opts: SubmitOptions,
    ) -> Result<(), SchedulerError> {
        let unit = self.validate(name, text, opts)?;
        let hash = unit.hash();
        let keys = self.keys().clone();
        let kv = self.kv().clone();
        let body = serde_json::to_string(&UnitBody {
            raw: unit.normalized(),
        })
        .unwrap_or_default();
        if let Err(e) = kv
            .create(&keys.unit_body(&hash.to_string()), &body, None)
            .await
        {
            if !e.is_code(ErrorCode::NodeExist) {
                return Err(e.into());
            }
        }
        let object = serde_json::to_string(&JobObject {
            name: name.to_owned(),
            unit_hash: *hash.as_bytes(),
        })
        .unwrap_or_default();
        let existing = self
            .registry
            .with(|s| s.jobs.get(name).and_then(|j| j.hash));
        let existing = match existing {
            Some(h) => Some(h),
            None => match kv.get(&keys.job_object(name), Default::default()).await {
                Ok(r) => r
                    .node()
                    .and_then(|n| n.value.as_deref())
                    .and_then(|v| serde_json::from_str::<JobObject>(v).ok())
                    .map(|o| keelson_unitfile::UnitHash::from_bytes(o.unit_hash)),
                Err(_) => None,
            },
        };
        let mut last = 0;
        match existing {
            Some(h) if h == hash => {}
            Some(_) if !opts.replace => {
                return Err(SchedulerError::UnitDiffers {
                    name: name.to_owned(),
                })
            }
            Some(_) => {
                last = kv
                    .set(&keys.job_object(name), &object, Default::default())
                    .await?
                    .etcd_index;
            }
            None => match kv.create(&keys.job_object(name), &object, None).await {
                Ok(r) => last = r.etcd_index,
                Err(e) if e.is_code(ErrorCode::NodeExist) => {}
                Err(e) => return Err(e.into()),
            },
        }
        match kv
            .create(
                &keys.job_target_state(name),
                DesiredState::Inactive.as_str(),
                None,
            )
            .await
        {
            Ok(r) => last = last.max(r.etcd_index),
            Err(e) if e.is_code(ErrorCode::NodeExist) => {}
            Err(e) => return Err(e.into()),
        }
        self.sync(last).await;
        Ok(())
    }

    /// The unit file of an instance's template, from the registry.
    fn template_text(&self, name: &str) -> Option<String> {
        let n = UnitName::parse(name).ok()?;
        let t = n.template()?;
        self.registry.with(|s| {
            s.jobs
                .get(t.as_str())
                .and_then(|j| j.spec.as_ref())
                .map(|spec| spec.body.raw.clone())
        })
    }

    fn desired(&self, name: &str) -> Option<DesiredState> {
        self.registry
            .with(|s| s.jobs.get(name).and_then(|j| j.desired))
    }

    async fn ensure(
        &self,
        name: &str,
        text: Option<&str>,
        opts: SubmitOptions,
    ) -> Result<(), SchedulerError> {
        if let Some(t) = text {
            return self.submit(name, t, opts).await;
        }
        if self.desired(name).is_some() {
            return Ok(());
        }
        match self.template_text(name) {
            Some(t) => self.submit(name, &t, opts).await,
            None => Err(SchedulerError::UnitNotFound(name.to_owned())),
        }
    }

    /// Set a unit's desired state.
    pub async fn set_desired(&self, name: &str, state: DesiredState) -> Result<(), SchedulerError> {
        let n = name_of(name)?;
        if n.is_template() && state != DesiredState::Inactive {
            return Err(SchedulerError::TemplateActivation(name.to_owned()));
        }
        if self.desired(name).is_none() {
            return Err(SchedulerError::UnitNotFound(name.to_owned()));
        }
        let r = self
            .kv()
            .set(
                &self.keys().job_target_state(name),
                state.as_str(),
                Default::default(),
            )
            .await?;
        self.sync(r.etcd_index).await;
        Ok(())
    }

    /// `fleetctl load`: submit if needed (`text`, or the registry's template
    /// for an instance) and set `loaded`.
    pub async fn load(
        &self,
        name: &str,
        text: Option<&str>,
        opts: SubmitOptions,
    ) -> Result<(), SchedulerError> {
        if name_of(name)?.is_template() {
            return Err(SchedulerError::TemplateActivation(name.to_owned()));
        }
        self.ensure(name, text, opts).await?;
        self.set_desired(name, DesiredState::Loaded).await
    }

    /// `fleetctl start`: submit if needed and set `launched`.
    pub async fn start(
        &self,
        name: &str,
        text: Option<&str>,
        opts: SubmitOptions,
    ) -> Result<(), SchedulerError> {
        if name_of(name)?.is_template() {
            return Err(SchedulerError::TemplateActivation(name.to_owned()));
        }
        self.ensure(name, text, opts).await?;
        self.set_desired(name, DesiredState::Launched).await
    }

    /// `fleetctl stop`: `launched` → `loaded`.
    pub async fn stop(&self, name: &str) -> Result<(), SchedulerError> {
        match self.desired(name) {
            None => Err(SchedulerError::UnitNotFound(name.to_owned())),
            Some(DesiredState::Inactive) => Err(SchedulerError::InvalidTransition {
                verb: "stop",
                name: name.to_owned(),
                state: "inactive".to_owned(),
            }),
            Some(_) => self.set_desired(name, DesiredState::Loaded).await,
        }
    }

    /// `fleetctl unload`: → `inactive`.
    pub async fn unload(&self, name: &str) -> Result<(), SchedulerError> {
        self.set_desired(name, DesiredState::Inactive).await
    }

    /// `fleetctl destroy`: remove the unit from the registry (agents stop it).
    pub async fn destroy(&self, name: &str) -> Result<(), SchedulerError> {
        let opts = DeleteOptions {
            dir: true,
            recursive: true,
            ..Default::default()
        };
        match self.kv().delete(&self.keys().job_dir(name), opts).await {
            Ok(r) => {
                let _ = self
                    .kv()
                    .delete(&self.keys().reason(name), DeleteOptions::default())
                    .await;
                self.sync(r.etcd_index).await;
                Ok(())
            }
            Err(e) if e.is_code(ErrorCode::KeyNotFound) => {
                Err(SchedulerError::UnitNotFound(name.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Set (`Some`) or remove (`None`) a dynamic metadata key of a machine.
    pub async fn set_machine_metadata(
        &self,
        machine: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), SchedulerError> {
        let r = self
            .kv()
            .set(
                &self.keys().machine_metadata(machine, key),
                value.unwrap_or(""),
                Default::default(),
            )
            .await?;
        self.sync(r.etcd_index).await;
        Ok(())
    }

    /// Mark `machine` draining (its units move elsewhere, see
    /// [`crate::drain`]) or lift the mark.
    pub async fn set_draining(&self, machine: &str, draining: bool) -> Result<(), SchedulerError> {
        let key = self.keys().drain(machine);
        let r = if draining {
            self.kv().set(&key, "draining", Default::default()).await?
        } else {
            match self.kv().delete(&key, DeleteOptions::default()).await {
                Ok(r) => r,
                Err(e) if e.is_code(ErrorCode::KeyNotFound) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        };
        self.sync(r.etcd_index).await;
        Ok(())
    }

    /// Whether `machine` is marked draining.
    pub fn is_draining(&self, machine: &str) -> bool {
        self.registry.with(|s| s.draining.contains(machine))
    }

    /// `list-unit-files`, sorted by name.
    pub fn list_unit_files(&self) -> Vec<UnitFileInfo> {
        self.registry.with(|s| {
            s.units()
                .map(|j| {
                    let global = j.spec.as_ref().is_some_and(|x| x.is_global());
                    let options = j
                        .spec
                        .as_ref()
                        .and_then(|x| x.body.options.as_ref().ok().cloned())
                        .unwrap_or_default();
                    let description = options
                        .iter()
                        .rev()
                        .find(|o| o.section == "Unit" && o.name == "Description")
                        .map(|o| o.value.clone());
                    let target = if global { None } else { j.target.clone() };
                    UnitFileInfo {
                        name: j.name.clone(),
                        hash: j.hash.map(|h| h.to_string()).unwrap_or_default(),
                        desired: j.desired,
                        current: if global {
                            None
                        } else {
                            s.current_state(&j.name)
                        },
                        target_ip: target.as_ref().and_then(|t| {
                            s.machines
                                .get(t)
                                .and_then(|m| m.object.as_ref())
                                .map(|o| o.public_ip.clone())
                        }),
                        target,
                        global,
                        description,
                        reason: s.reasons.get(&j.name).cloned(),
                        options,
                    }
                })
                .collect()
        })
    }

    /// One unit file, or `None`.
    pub fn unit(&self, name: &str) -> Option<UnitFileInfo> {
        self.list_unit_files().into_iter().find(|u| u.name == name)
    }

    /// `list-units`: one row per (unit, live machine) state, sorted by unit
    /// then machine.
    pub fn list_units(&self) -> Vec<UnitStateInfo> {
        self.registry.with(|s| {
            let mut out = Vec::new();
            for (unit, per) in &s.states {
                for (m, rec) in per {
                    let Some(obj) = s.machines.get(m).and_then(|x| x.object.as_ref()) else {
                        continue;
                    };
                    out.push(UnitStateInfo {
                        name: unit.clone(),
                        machine_id: m.clone(),
                        public_ip: obj.public_ip.clone(),
                        load: rec.load_state.clone(),
                        active: rec.active_state.clone(),
                        sub: rec.sub_state.clone(),
                        hash: rec.unit_hash.clone(),
                    });
                }
            }
            out
        })
    }

    /// `list-machines`: live machines sorted by ID, with effective metadata.
    pub fn list_machines(&self) -> Vec<MachineInfo> {
        self.registry.with(|s| {
            s.live_machines()
                .map(|(id, m)| MachineInfo {
                    id: id.clone(),
                    public_ip: m
                        .object
                        .as_ref()
                        .map(|o| o.public_ip.clone())
                        .unwrap_or_default(),
                    metadata: m.effective_metadata(),
                })
                .collect()
        })
    }
}
