//! [`ClusterState`]: the registry as one in-memory view, built once from a
//! recursive read and then kept current by applying watch events one key at
//! a time (scheduler.md §15.3 item 3). Unit files are parsed once per
//! content hash and their `[X-Fleet]` section once per unit name, never per
//! pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use keelson_kv::v2::{Action, Node};
use keelson_unitfile::{Mode, Unit, UnitHash, UnitName, UnitOption, XFleet};

use crate::keys::{KeyKind, Keys};
use crate::model::{DesiredState, JobObject, LeaseRecord, MachineState, UnitBody, UnitStateRecord};

/// A unit file stored under `unit/<hash>`, parsed once.
#[derive(Debug)]
pub struct StoredBody {
    /// The serialized unit file as stored (`Raw`).
    pub raw: String,
    /// Its options, or why it could not be parsed.
    pub options: Result<Vec<UnitOption>, String>,
}

/// What the scheduler needs of one unit: name, content and requirements.
#[derive(Debug)]
pub struct UnitSpec {
    pub name: String,
    pub hash: UnitHash,
    pub body: Arc<StoredBody>,
    /// `[X-Fleet]` with fleet's specifiers expanded for this name, or why it
    /// is invalid.
    pub fleet: Result<Arc<XFleet>, String>,
}

impl UnitSpec {
    pub fn is_global(&self) -> bool {
        self.fleet.as_ref().is_ok_and(|f| f.is_global())
    }
}

/// `job/<unit>/*`.
#[derive(Debug, Clone, Default)]
pub struct JobRecord {
    pub name: String,
    pub hash: Option<UnitHash>,
    pub desired: Option<DesiredState>,
    pub target: Option<String>,
    pub job_state: Option<String>,
    /// Present once both the job object and its body are known.
    pub spec: Option<Arc<UnitSpec>>,
}

/// `machines/<id>/*`.
#[derive(Debug, Clone, Default)]
pub struct MachineRecord {
    /// The heartbeat object; `None` when the machine is not live (only its
    /// dynamic metadata remains).
    pub object: Option<MachineState>,
    /// `metadata/<key>` (an empty value hides a configured key).
    pub dynamic: BTreeMap<String, String>,
}

impl MachineRecord {
    /// Configured metadata overlaid with the dynamic keys.
    pub fn effective_metadata(&self) -> BTreeMap<String, String> {
        let mut m = self
            .object
            .as_ref()
            .map(|o| o.metadata.clone())
            .unwrap_or_default();
        for (k, v) in &self.dynamic {
            if v.is_empty() {
                m.remove(k);
            } else {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }
}

/// The whole registry, as of [`ClusterState::index`].
#[derive(Debug, Clone)]
pub struct ClusterState {
    keys: Keys,
    /// The etcd index this view reflects.
    pub index: u64,
    pub jobs: BTreeMap<String, JobRecord>,
    pub bodies: HashMap<String, Arc<StoredBody>>,
    pub machines: BTreeMap<String, MachineRecord>,
    /// unit → machine → state.
    pub states: BTreeMap<String, BTreeMap<String, UnitStateRecord>>,
    pub lease: Option<(LeaseRecord, u64)>,
    /// unit → why the engine could not place it.
    pub reasons: BTreeMap<String, String>,
    /// Machines marked draining (`keelson/drain/<machine>`).
    pub draining: BTreeSet<String>,
}

fn parse_body(raw: &str) -> StoredBody {
    let options = Unit::parse(raw, Mode::Fleet, None)
        .map(|u| u.options().to_vec())
        .map_err(|e| e.to_string());
    StoredBody {
        raw: raw.to_owned(),
        options,
    }
}

fn make_spec(name: &str, hash: UnitHash, body: Arc<StoredBody>) -> UnitSpec {
    let fleet = match (&body.options, UnitName::parse(name)) {
        (Ok(opts), Ok(n)) => XFleet::for_unit(opts, &n)
            .map(Arc::new)
            .map_err(|e| e.to_string()),
        (Err(e), _) => Err(e.clone()),
        (_, Err(e)) => Err(e.to_string()),
    };
    UnitSpec {
        name: name.to_owned(),
        hash,
        body,
        fleet,
    }
}

impl ClusterState {
    pub fn new(keys: Keys) -> Self {
        ClusterState {
            keys,
            index: 0,
            jobs: BTreeMap::new(),
            bodies: HashMap::new(),
            machines: BTreeMap::new(),
            states: BTreeMap::new(),
            lease: None,
            reasons: BTreeMap::new(),
            draining: BTreeSet::new(),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Rebuild from a recursive read of the prefix (`None`: it does not exist).
    pub fn from_snapshot(keys: Keys, root: Option<&Node>, index: u64) -> Self {
        let mut s = ClusterState::new(keys);
        // Keep parsed bodies: they are content-addressed and never change.
        if let Some(node) = root {
            s.load_node(node);
        }
        s.index = index;
        s
    }

    /// Like [`from_snapshot`](Self::from_snapshot) but reusing this view's
    /// parsed unit bodies (after a 401 resync).
    pub fn resync(&mut self, root: Option<&Node>, index: u64) {
        let bodies = std::mem::take(&mut self.bodies);
        let mut fresh = ClusterState::new(self.keys.clone());
        fresh.bodies = bodies;
        if let Some(node) = root {
            fresh.load_node(node);
        }
        fresh.index = index;
        *self = fresh;
    }

    fn load_node(&mut self, node: &Node) {
        if node.dir {
            for child in node.nodes.iter().flatten() {
                self.load_node(child);
            }
        } else if let (Some(key), Some(value)) = (&node.key, &node.value) {
            self.put(key, value, node.modified_index);
        }
    }

    /// Apply one watch event (or the answer to one of our own writes).
    pub fn apply_event(&mut self, action: Action, node: Option<&Node>, index: u64) {
        if let Some(node) = node {
            if let Some(key) = &node.key {
                match action {
                    Action::Delete | Action::CompareAndDelete | Action::Expire => self.remove(key),
                    _ => {
                        if !node.dir {
                            if let Some(v) = &node.value {
                                self.put(key, v, node.modified_index);
                            }
                        }
                    }
                }
            }
        }
        self.index = self.index.max(index);
    }

    fn put(&mut self, key: &str, value: &str, modified: u64) {
        match self.keys.classify(key) {
            KeyKind::JobObject(unit) => {
                let hash = serde_json::from_str::<JobObject>(value)
                    .ok()
                    .map(|o| UnitHash::from_bytes(o.unit_hash));
                let job = self.job_mut(&unit);
                job.hash = hash;
                job.spec = None;
                self.refresh_spec(&unit);
            }
            KeyKind::JobTargetState(unit) => {
                self.job_mut(&unit).desired = value.parse().ok();
            }
            KeyKind::JobTarget(unit) => {
                self.job_mut(&unit).target = Some(value.to_owned());
            }
            KeyKind::JobState(unit) => {
                self.job_mut(&unit).job_state = Some(value.to_owned());
            }
            KeyKind::UnitBody(hash) if !self.bodies.contains_key(&hash) => {
                let raw = serde_json::from_str::<UnitBody>(value)
                    .map(|b| b.raw)
                    .unwrap_or_default();
                self.bodies.insert(hash.clone(), Arc::new(parse_body(&raw)));
                let waiting: Vec<String> = self
                    .jobs
                    .values()
                    .filter(|j| j.spec.is_none() && j.hash.is_some_and(|h| h.to_string() == hash))
                    .map(|j| j.name.clone())
                    .collect();
                for u in waiting {
                    self.refresh_spec(&u);
                }
            }
            KeyKind::UnitState { unit, machine } => {
                if let Ok(rec) = serde_json::from_str::<UnitStateRecord>(value) {
                    self.states.entry(unit).or_default().insert(machine, rec);
                }
            }
            KeyKind::MachineObject(id) => {
                let mut obj = serde_json::from_str::<MachineState>(value).unwrap_or_default();
                if obj.id.is_empty() {
                    obj.id = id.clone();
                }
                self.machines.entry(id).or_default().object = Some(obj);
            }
            KeyKind::MachineMetadata { machine, key } => {
                self.machines
                    .entry(machine)
                    .or_default()
                    .dynamic
                    .insert(key, value.to_owned());
            }
            KeyKind::EngineLease => {
                self.lease = Some((LeaseRecord::parse(value), modified));
            }
            KeyKind::Reason(unit) => {
                self.reasons.insert(unit, value.to_owned());
            }
            KeyKind::Drain(machine) => {
                self.draining.insert(machine);
            }
            _ => {}
        }
    }

    fn remove(&mut self, key: &str) {
        match self.keys.classify(key) {
            KeyKind::JobDir(unit) | KeyKind::JobObject(unit) => {
                self.jobs.remove(&unit);
            }
            KeyKind::JobTargetState(unit) => {
                if let Some(j) = self.jobs.get_mut(&unit) {
                    j.desired = None;
                }
            }
            KeyKind::JobTarget(unit) => {
                if let Some(j) = self.jobs.get_mut(&unit) {
                    j.target = None;
                }
            }
            KeyKind::JobState(unit) => {
                if let Some(j) = self.jobs.get_mut(&unit) {
                    j.job_state = None;
                }
            }
            KeyKind::UnitState { unit, machine } => {
                if let Some(m) = self.states.get_mut(&unit) {
                    m.remove(&machine);
                    if m.is_empty() {
                        self.states.remove(&unit);
                    }
                }
            }
            KeyKind::UnitStateDir(unit) => {
                self.states.remove(&unit);
            }
            KeyKind::MachineObject(id) => {
                if let Some(m) = self.machines.get_mut(&id) {
                    m.object = None;
                    if m.dynamic.is_empty() {
                        self.machines.remove(&id);
                    }
                }
            }
            KeyKind::MachineMetadata { machine, key } => {
                if let Some(m) = self.machines.get_mut(&machine) {
                    m.dynamic.remove(&key);
                }
            }
            KeyKind::MachineDir(id) => {
                self.machines.remove(&id);
            }
            KeyKind::EngineLease => self.lease = None,
            KeyKind::Reason(unit) => {
                self.reasons.remove(&unit);
            }
            KeyKind::Drain(machine) => {
                self.draining.remove(&machine);
            }
            KeyKind::Other => {
                // A whole subtree (e.g. `job/` or the prefix) was removed.
                let dir = format!("{}/", key.trim_end_matches('/'));
                if self.keys.prefix().starts_with(&dir) || dir == self.keys.prefix() {
                    let keys = self.keys.clone();
                    *self = ClusterState::new(keys);
                } else if dir == format!("{}job/", self.keys.prefix()) {
                    self.jobs.clear();
                } else if dir == format!("{}states/", self.keys.prefix()) {
                    self.states.clear();
                } else if dir == format!("{}machines/", self.keys.prefix()) {
                    self.machines.clear();
                }
            }
            _ => {}
        }
    }

    fn job_mut(&mut self, unit: &str) -> &mut JobRecord {
        self.jobs
            .entry(unit.to_owned())
            .or_insert_with(|| JobRecord {
                name: unit.to_owned(),
                ..JobRecord::default()
            })
    }

    fn refresh_spec(&mut self, unit: &str) {
        let Some(job) = self.jobs.get(unit) else {
            return;
        };
        let Some(hash) = job.hash else { return };
        let Some(body) = self.bodies.get(&hash.to_string()).cloned() else {
            return;
        };
        let spec = Arc::new(make_spec(unit, hash, body));
        if let Some(j) = self.jobs.get_mut(unit) {
            j.spec = Some(spec);
        }
    }

    /// Units in the registry (those with a job object).
    pub fn units(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values().filter(|j| j.hash.is_some())
    }

    /// Live machines (with a heartbeat object), by ID.
    pub fn live_machines(&self) -> impl Iterator<Item = (&String, &MachineRecord)> {
        self.machines.iter().filter(|(_, m)| m.object.is_some())
    }

    pub fn is_live(&self, machine: &str) -> bool {
        self.machines
            .get(machine)
            .is_some_and(|m| m.object.is_some())
    }

    /// fleet's derived current state of a unit (scheduler.md §4.3).
    pub fn current_state(&self, unit: &str) -> Option<DesiredState> {
        let job = self.jobs.get(unit)?;
        if job.spec.as_ref().is_some_and(|s| s.is_global()) {
            return job.desired;
        }
        let Some(target) = &job.target else {
            return Some(DesiredState::Inactive);
        };
        let reported = self
            .states
            .get(unit)
            .is_some_and(|m| m.contains_key(target));
        if !reported || !self.is_live(target) {
            return Some(DesiredState::Inactive);
        }
        if job.job_state.as_deref() == Some(target.as_str()) {
            Some(DesiredState::Launched)
        } else {
            Some(DesiredState::Loaded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(key: &str, value: &str, idx: u64) -> Node {
        Node {
            key: Some(key.into()),
            value: Some(value.into()),
            modified_index: idx,
            created_index: idx,
            ..Node::default()
        }
    }

    #[test]
    fn events_build_the_view() {
        let keys = Keys::default();
        let mut s = ClusterState::new(keys.clone());
        let raw = "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nConflicts=%p@*.service\n";
        let unit = Unit::parse(raw, Mode::Fleet, None).unwrap();
        let hash = unit.hash();
        let body = serde_json::to_string(&UnitBody {
            raw: unit.normalized(),
        })
        .unwrap();
        let obj = serde_json::to_string(&JobObject {
            name: "a@1.service".into(),
            unit_hash: *hash.as_bytes(),
        })
        .unwrap();
        s.apply_event(
            Action::Set,
            Some(&node(&keys.job_object("a@1.service"), &obj, 1)),
            1,
        );
        assert!(s.jobs["a@1.service"].spec.is_none());
        s.apply_event(
            Action::Create,
            Some(&node(&keys.unit_body(&hash.to_string()), &body, 2)),
            2,
        );
        let spec = s.jobs["a@1.service"].spec.clone().unwrap();
        assert!(spec.fleet.as_ref().unwrap().conflicts_with("a@2.service"));
        s.apply_event(
            Action::Set,
            Some(&node(&keys.job_target_state("a@1.service"), "launched", 3)),
            3,
        );
        s.apply_event(
            Action::Create,
            Some(&node(&keys.job_target("a@1.service"), "m1", 4)),
            4,
        );
        assert_eq!(s.current_state("a@1.service"), Some(DesiredState::Inactive));
        s.apply_event(
            Action::Delete,
            Some(&node(&keys.job_target("a@1.service"), "", 5)),
            5,
        );
        assert_eq!(s.jobs["a@1.service"].target, None);
        s.apply_event(
            Action::Set,
            Some(&node(&keys.machine_metadata("m1", "role"), "web", 6)),
            6,
        );
        assert!(!s.is_live("m1"));
        s.apply_event(
            Action::Delete,
            Some(&node(&keys.job_dir("a@1.service"), "", 7)),
            7,
        );
        assert!(s.jobs.is_empty());
        assert_eq!(s.index, 7);
    }
}
