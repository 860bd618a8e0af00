//! The values stored in the registry, with fleet's exact JSON shapes
//! (scheduler.md §3), and the states they describe.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A unit's desired (or derived current) state in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Inactive,
    Loaded,
    Launched,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Inactive => "inactive",
            DesiredState::Loaded => "loaded",
            DesiredState::Launched => "launched",
        }
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state string that is not `inactive`, `loaded` or `launched`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid unit state {0:?}: expected inactive, loaded or launched")]
pub struct InvalidState(pub String);

impl FromStr for DesiredState {
    type Err = InvalidState;
    fn from_str(s: &str) -> Result<Self, InvalidState> {
        match s {
            "inactive" => Ok(DesiredState::Inactive),
            "loaded" => Ok(DesiredState::Loaded),
            "launched" => Ok(DesiredState::Launched),
            other => Err(InvalidState(other.to_owned())),
        }
    }
}

/// `job/<unit>/object`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobObject {
    #[serde(rename = "Name")]
    pub name: String,
    /// The 20 SHA-1 bytes as a JSON array of numbers, as fleet writes it.
    #[serde(rename = "UnitHash")]
    pub unit_hash: [u8; 20],
}

/// `unit/<hash>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitBody {
    #[serde(rename = "Raw")]
    pub raw: String,
}

/// `Capabilities` of a machine state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(rename = "DISABLE_ENGINE", default)]
    pub disable_engine: bool,
    #[serde(rename = "GRPC", default)]
    pub grpc: bool,
}

/// `machines/<id>/object` (and the `machineState` of a unit state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "PublicIP", default)]
    pub public_ip: String,
    #[serde(rename = "Metadata", default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(rename = "Capabilities", default)]
    pub capabilities: Capabilities,
    #[serde(rename = "Version", default)]
    pub version: String,
}

/// LOAD / ACTIVE / SUB of one unit on one machine, as systemd names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SystemdState {
    pub load: String,
    pub active: String,
    pub sub: String,
}

impl SystemdState {
    pub fn new(load: &str, active: &str, sub: &str) -> Self {
        SystemdState {
            load: load.to_owned(),
            active: active.to_owned(),
            sub: sub.to_owned(),
        }
    }

    /// `loaded`/`inactive`/`dead`.
    pub fn loaded_inactive() -> Self {
        SystemdState::new("loaded", "inactive", "dead")
    }

    /// Whether the unit is running or starting (`active`, `activating`,
    /// `reloading`, `deactivating`): processes may exist.
    pub fn is_active(&self) -> bool {
        matches!(
            self.active.as_str(),
            "active" | "activating" | "reloading" | "deactivating"
        )
    }
}

/// `states/<unit>/<machine>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStateRecord {
    #[serde(rename = "loadState")]
    pub load_state: String,
    #[serde(rename = "activeState")]
    pub active_state: String,
    #[serde(rename = "subState")]
    pub sub_state: String,
    #[serde(
        rename = "machineState",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub machine_state: Option<MachineState>,
    /// 40 hex digits.
    #[serde(rename = "unitHash", default)]
    pub unit_hash: String,
}

impl UnitStateRecord {
    pub fn systemd(&self) -> SystemdState {
        SystemdState::new(&self.load_state, &self.active_state, &self.sub_state)
    }
}

/// `lease/engine-leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    #[serde(rename = "MachineID")]
    pub machine_id: String,
    #[serde(rename = "Version")]
    pub version: u32,
}

impl LeaseRecord {
    /// A value that is not JSON is a bare machine ID with version 0
    /// (engines older than the versioning scheme).
    pub fn parse(value: &str) -> LeaseRecord {
        serde_json::from_str(value).unwrap_or_else(|_| LeaseRecord {
            machine_id: value.to_owned(),
            version: 0,
        })
    }
}

/// The engine version this crate implements (`engine/version`).
pub const ENGINE_VERSION: u32 = 1;

/// The fleet version machines report.
pub const FLEET_VERSION: &str = "1.0.0";

/// Parse fleetd's `metadata` option: `k=v,k2=v2`, optionally quoted; pairs
/// without `=` are ignored; keys and values trimmed; the last repeat wins.
pub fn parse_metadata(s: &str) -> BTreeMap<String, String> {
    let s = s.trim();
    let s = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(s);
    let mut out = BTreeMap::new();
    for pair in s.split(',') {
        if let Some((k, v)) = pair.split_once('=') {
            let k = k.trim_matches([' ', '\t']);
            if !k.is_empty() {
                out.insert(k.to_owned(), v.trim_matches([' ', '\t']).to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes_match_fleet() {
        let j = JobObject {
            name: "a.service".into(),
            unit_hash: [1; 20],
        };
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            r#"{"Name":"a.service","UnitHash":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}"#
        );
        let m = MachineState {
            id: "m".into(),
            public_ip: "1.2.3.4".into(),
            version: "1.0.0".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"ID":"m","PublicIP":"1.2.3.4","Metadata":{},"Capabilities":{"DISABLE_ENGINE":false,"GRPC":false},"Version":"1.0.0"}"#
        );
        assert_eq!(
            LeaseRecord::parse("abc"),
            LeaseRecord {
                machine_id: "abc".into(),
                version: 0
            }
        );
        assert_eq!(
            LeaseRecord::parse(r#"{"MachineID":"x","Version":1}"#),
            LeaseRecord {
                machine_id: "x".into(),
                version: 1
            }
        );
    }

    #[test]
    fn metadata_option() {
        let m = parse_metadata("\"compute=web, rack = rack1,bogus,rack=r2\"");
        assert_eq!(m.get("compute").map(String::as_str), Some("web"));
        assert_eq!(m.get("rack").map(String::as_str), Some("r2"));
        assert_eq!(m.len(), 2);
    }
}
