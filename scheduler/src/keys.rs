//! fleet's key layout under the registry prefix (scheduler.md §3), in one
//! place: every key the scheduler reads or writes is built here, and every
//! key a watch reports is classified here.

/// fleet's default `etcd_key_prefix`.
pub const DEFAULT_PREFIX: &str = "/_coreos.com/fleet/";

/// The keys of one registry, relative to a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Always absolute and ending in `/`.
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// `job/<unit>/object`
    JobObject(String),
    /// `job/<unit>/target-state`
    JobTargetState(String),
    /// `job/<unit>/target`
    JobTarget(String),
    /// `job/<unit>/job-state`
    JobState(String),
    /// `job/<unit>` itself (a directory, e.g. deleted recursively)
    JobDir(String),
    /// `unit/<hash>`
    UnitBody(String),
    /// `states/<unit>/<machine>`
    UnitState { unit: String, machine: String },
    /// `states/<unit>`
    UnitStateDir(String),
    /// `machines/<id>/object`
    MachineObject(String),
    /// `machines/<id>/metadata/<key>`
    MachineMetadata { machine: String, key: String },
    /// `machines/<id>` itself
    MachineDir(String),
    /// `lease/engine-leader`
    EngineLease,
    /// `keelson/reasons/<unit>`: why the engine could not place a unit
    /// (a Keelson addition; fleet never reads it).
    Reason(String),
    /// `keelson/drain/<machine>`: the machine is draining, so the engine
    /// moves its units elsewhere and places nothing new on it (a Keelson
    /// addition, set before a coordinated reboot; fleet never reads it).
    Drain(String),
    /// Anything else (legacy `state/<unit>`, `engine/version`, directories).
    Other,
}

impl Keys {
    /// Keys under `prefix` (a leading and trailing `/` are added if missing).
    pub fn new(prefix: &str) -> Self {
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            "/".to_owned()
        } else {
            format!("/{trimmed}/")
        };
        Keys { prefix }
    }

    /// The prefix, absolute, with a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix without its trailing `/` (what is watched and read).
    pub fn root(&self) -> &str {
        let p = self.prefix.trim_end_matches('/');
        if p.is_empty() {
            "/"
        } else {
            p
        }
    }

    pub fn job_dir(&self, unit: &str) -> String {
        format!("{}job/{unit}", self.prefix)
    }
    pub fn job_object(&self, unit: &str) -> String {
        format!("{}job/{unit}/object", self.prefix)
    }
    pub fn job_target_state(&self, unit: &str) -> String {
        format!("{}job/{unit}/target-state", self.prefix)
    }
    pub fn job_target(&self, unit: &str) -> String {
        format!("{}job/{unit}/target", self.prefix)
    }
    pub fn job_state(&self, unit: &str) -> String {
        format!("{}job/{unit}/job-state", self.prefix)
    }
    /// `unit/<40 hex>`
    pub fn unit_body(&self, hash: &str) -> String {
        format!("{}unit/{hash}", self.prefix)
    }
    pub fn unit_state(&self, unit: &str, machine: &str) -> String {
        format!("{}states/{unit}/{machine}", self.prefix)
    }
    /// The legacy single-machine location (coreos/fleet#638).
    pub fn legacy_state(&self, unit: &str) -> String {
        format!("{}state/{unit}", self.prefix)
    }
    pub fn machine_dir(&self, id: &str) -> String {
        format!("{}machines/{id}", self.prefix)
    }
    pub fn machine_object(&self, id: &str) -> String {
        format!("{}machines/{id}/object", self.prefix)
    }
    pub fn machine_metadata(&self, id: &str, key: &str) -> String {
        format!("{}machines/{id}/metadata/{key}", self.prefix)
    }
    pub fn engine_lease(&self) -> String {
        format!("{}lease/engine-leader", self.prefix)
    }
    pub fn engine_version(&self) -> String {
        format!("{}engine/version", self.prefix)
    }
    pub fn reason(&self, unit: &str) -> String {
        format!("{}keelson/reasons/{unit}", self.prefix)
    }
    /// Present while `machine` is draining.
    pub fn drain(&self, machine: &str) -> String {
        format!("{}keelson/drain/{machine}", self.prefix)
    }

    /// Classify an absolute key.
    pub fn classify(&self, key: &str) -> KeyKind {
        let Some(rel) = key.strip_prefix(&self.prefix) else {
            return KeyKind::Other;
        };
        let parts: Vec<&str> = rel.split('/').collect();
        match parts.as_slice() {
            ["job", u] => KeyKind::JobDir((*u).to_owned()),
            ["job", u, "object"] => KeyKind::JobObject((*u).to_owned()),
            ["job", u, "target-state"] => KeyKind::JobTargetState((*u).to_owned()),
            ["job", u, "target"] => KeyKind::JobTarget((*u).to_owned()),
            ["job", u, "job-state"] => KeyKind::JobState((*u).to_owned()),
            ["unit", h] => KeyKind::UnitBody((*h).to_owned()),
            ["states", u] => KeyKind::UnitStateDir((*u).to_owned()),
            ["states", u, m] => KeyKind::UnitState {
                unit: (*u).to_owned(),
                machine: (*m).to_owned(),
            },
            ["machines", m] => KeyKind::MachineDir((*m).to_owned()),
            ["machines", m, "object"] => KeyKind::MachineObject((*m).to_owned()),
            ["machines", m, "metadata", k] => KeyKind::MachineMetadata {
                machine: (*m).to_owned(),
                key: (*k).to_owned(),
            },
            ["lease", "engine-leader"] => KeyKind::EngineLease,
            ["keelson", "reasons", u] => KeyKind::Reason((*u).to_owned()),
            ["keelson", "drain", m] => KeyKind::Drain((*m).to_owned()),
            _ => KeyKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_fleet() {
        let k = Keys::default();
        assert_eq!(
            k.job_object("a.service"),
            "/_coreos.com/fleet/job/a.service/object"
        );
        assert_eq!(
            k.unit_state("a.service", "m1"),
            "/_coreos.com/fleet/states/a.service/m1"
        );
        assert_eq!(k.engine_lease(), "/_coreos.com/fleet/lease/engine-leader");
        assert_eq!(k.root(), "/_coreos.com/fleet");
        assert_eq!(Keys::new("custom").prefix(), "/custom/");
        assert_eq!(
            k.classify("/_coreos.com/fleet/machines/m1/metadata/role"),
            KeyKind::MachineMetadata {
                machine: "m1".into(),
                key: "role".into()
            }
        );
        assert_eq!(
            k.classify("/_coreos.com/fleet/job/x.service/target"),
            KeyKind::JobTarget("x.service".into())
        );
        assert_eq!(k.classify("/elsewhere/job/x/target"), KeyKind::Other);
        assert_eq!(k.drain("m1"), "/_coreos.com/fleet/keelson/drain/m1");
        assert_eq!(k.classify(&k.drain("m1")), KeyKind::Drain("m1".into()));
    }
}
