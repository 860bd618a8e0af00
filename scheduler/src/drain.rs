//! Draining a machine before it reboots (reference updater.md §11.2).
//!
//! fleet had no such notion: a machine that rebooted simply vanished and the
//! engine moved its units after the agent TTL, while they were already dead.
//! Keelson marks the machine draining (`keelson/drain/<machine>` under the
//! registry prefix): placement then treats it as unable to run any
//! non-global unit, so the engine moves its units to other machines and
//! places nothing new there, while global units stay (the agents run those
//! everywhere). Lifting the mark moves nothing back; the machine simply takes
//! work again. Whether a drain is done is a pure function of what the fleet
//! API reports ([`pending`]), so it can be checked from any client.

use std::collections::BTreeSet;

use crate::client::{UnitFileInfo, UnitStateInfo};
use crate::model::DesiredState;

/// Whether a reported state means the unit still runs (or is stopping).
fn still_active(active: &str) -> bool {
    !matches!(active, "inactive" | "failed" | "")
}

/// The non-global units `machine` runs or is scheduled to run: those a drain
/// moves. Taken before the drain starts.
pub fn units_on(
    machine: &str,
    files: &[UnitFileInfo],
    states: &[UnitStateInfo],
) -> BTreeSet<String> {
    let global: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.global)
        .map(|f| f.name.as_str())
        .collect();
    let mut out: BTreeSet<String> = files
        .iter()
        .filter(|f| !f.global && f.target.as_deref() == Some(machine))
        .map(|f| f.name.clone())
        .collect();
    out.extend(
        states
            .iter()
            .filter(|s| s.machine_id == machine && still_active(&s.active))
            .filter(|s| !global.contains(s.name.as_str()))
            .map(|s| s.name.clone()),
    );
    out
}

/// What still keeps `machine` from being drained, one line per unit, empty
/// when it is done. `moving` are the units it ran when the drain began
/// ([`units_on`]): each must be neither scheduled nor active on `machine`,
/// and if it should run (`launched`) and the engine found it another
/// machine, it must be active there. A unit no other machine can take (for
/// example one pinned with `MachineID`) is not waited for once it stopped.
pub fn pending(
    machine: &str,
    moving: &BTreeSet<String>,
    files: &[UnitFileInfo],
    states: &[UnitStateInfo],
) -> Vec<String> {
    let mut out = Vec::new();
    let active_on = |unit: &str, m: &str| {
        states
            .iter()
            .any(|s| s.name == unit && s.machine_id == m && s.active == "active")
    };
    for f in files.iter().filter(|f| !f.global) {
        if f.target.as_deref() == Some(machine) {
            out.push(format!("{}: still scheduled on this machine", f.name));
            continue;
        }
        if !moving.contains(&f.name) {
            continue;
        }
        if let Some(t) = &f.target {
            if f.desired == Some(DesiredState::Launched) && !active_on(&f.name, t) {
                out.push(format!("{}: not yet active on {t}", f.name));
            }
        }
    }
    let global: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.global)
        .map(|f| f.name.as_str())
        .collect();
    for s in states {
        if s.machine_id == machine
            && still_active(&s.active)
            && !global.contains(s.name.as_str())
            && !out.iter().any(|l| l.starts_with(&format!("{}:", s.name)))
        {
            out.push(format!("{}: still {} on this machine", s.name, s.active));
        }
    }
    out
}

/// How a drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every unit moved (or stopped, if nothing else can run it).
    Drained { moved: BTreeSet<String> },
    /// The deadline passed first; what was still pending.
    TimedOut { pending: Vec<String> },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, target: Option<&str>, desired: DesiredState, global: bool) -> UnitFileInfo {
        UnitFileInfo {
            name: name.into(),
            hash: String::new(),
            desired: Some(desired),
            current: None,
            target: target.map(str::to_string),
            target_ip: None,
            global,
            description: None,
            reason: None,
            options: Vec::new(),
        }
    }

    fn state(name: &str, machine: &str, active: &str) -> UnitStateInfo {
        UnitStateInfo {
            name: name.into(),
            machine_id: machine.into(),
            public_ip: String::new(),
            load: "loaded".into(),
            active: active.into(),
            sub: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_drain_is_done_when_units_run_elsewhere() {
        use DesiredState::*;
        let before = [
            file("a.service", Some("m1"), Launched, false),
            file("b.service", Some("m2"), Launched, false),
            file("g.service", None, Launched, true),
            file("pin.service", Some("m1"), Launched, false),
        ];
        let states = [
            state("a.service", "m1", "active"),
            state("b.service", "m2", "failed"),
            state("g.service", "m1", "active"),
            state("pin.service", "m1", "active"),
        ];
        let moving = units_on("m1", &before, &states);
        assert_eq!(
            moving.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a.service", "pin.service"]
        );
        assert_eq!(pending("m1", &moving, &before, &states).len(), 2);

        // Moved and starting: a is pending until active on m2; pin has no
        // other machine and is pending until it stopped here.
        let during = [
            file("a.service", Some("m2"), Launched, false),
            file("b.service", Some("m2"), Launched, false),
            file("g.service", None, Launched, true),
            file("pin.service", None, Launched, false),
        ];
        let states = [
            state("a.service", "m2", "activating"),
            state("b.service", "m2", "failed"),
            state("g.service", "m1", "active"),
            state("pin.service", "m1", "deactivating"),
        ];
        let p = pending("m1", &moving, &during, &states);
        assert_eq!(
            p,
            [
                "a.service: not yet active on m2",
                "pin.service: still deactivating on this machine"
            ]
        );
        // b.service failing elsewhere does not hold the drain up; the global
        // unit keeps running.
        let states = [
            state("a.service", "m2", "active"),
            state("b.service", "m2", "failed"),
            state("g.service", "m1", "active"),
        ];
        assert!(pending("m1", &moving, &during, &states).is_empty());
    }
}
