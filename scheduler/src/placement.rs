//! Placement: where every non-global unit should run, as a pure function of
//! the cluster state ([`plan`]).
//!
//! The algorithm is fleet's (scheduler.md §5): an unschedule pass drops
//! placements that no longer hold, then a schedule pass puts each unplaced
//! unit on the least-loaded machine that can run it, ties broken by the
//! lowest machine ID, updating loads after every decision. What differs is
//! the cost and the explanations: machines are kept in a load-ordered set so
//! a decision stops at the first machine that passes instead of rebuilding
//! and sorting the candidates; `MachineID` and `MachineOf` jump straight to
//! their one candidate; leaders are placed before their followers, so a
//! `MachineOf` pair lands in one pass; every unit left unplaced gets a
//! reason. Global units are not placed here but counted, through
//! [`global_units_on`], the same function agents use to pick them up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use keelson_unitfile::fleet::units_conflict;
use keelson_unitfile::XFleet;

use crate::cluster::ClusterState;
use crate::model::DesiredState;

/// A live machine as placement sees it.
#[derive(Debug, Clone)]
pub struct MachineInput {
    pub id: String,
    /// Effective metadata (configured, overlaid by dynamic keys).
    pub metadata: HashMap<String, String>,
    /// Marked draining: its units move away and nothing new lands on it
    /// (global units are the agents' business and stay).
    pub draining: bool,
}

/// A unit in the registry as placement sees it.
#[derive(Debug, Clone)]
pub struct UnitInput {
    pub name: String,
    /// `[X-Fleet]` (specifiers expanded), or why the unit cannot be read.
    pub fleet: Result<Arc<XFleet>, String>,
    pub desired: DesiredState,
    /// The machine it is currently scheduled on (`job/<unit>/target`).
    pub target: Option<String>,
}

impl UnitInput {
    /// A unit with no requirements.
    pub fn plain(name: &str, desired: DesiredState) -> Self {
        UnitInput {
            name: name.to_owned(),
            fleet: Ok(Arc::new(XFleet::default())),
            desired,
            target: None,
        }
    }
}

/// The cluster state placement decides from.
#[derive(Debug, Clone, Default)]
pub struct PlacementInput {
    pub machines: Vec<MachineInput>,
    pub units: Vec<UnitInput>,
}

impl PlacementInput {
    /// The live machines and every unit of a registry view.
    pub fn from_cluster(state: &ClusterState) -> Self {
        let machines = state
            .live_machines()
            .map(|(id, m)| MachineInput {
                id: id.clone(),
                metadata: m.effective_metadata().into_iter().collect(),
                draining: state.draining.contains(id),
            })
            .collect();
        let units = state
            .units()
            .filter_map(|j| {
                let desired = j.desired?;
                let fleet = match &j.spec {
                    Some(spec) => spec.fleet.clone(),
                    None => Err("unit file not found in the registry".to_owned()),
                };
                Some(UnitInput {
                    name: j.name.clone(),
                    fleet,
                    desired,
                    target: j.target.clone(),
                })
            })
            .collect();
        PlacementInput { machines, units }
    }
}

/// One change to the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Delete `job/<unit>/target` (which must still be `machine`).
    Unschedule {
        unit: String,
        machine: String,
        reason: String,
    },
    /// Create `job/<unit>/target` = `machine`.
    Schedule { unit: String, machine: String },
}

/// The result of [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Unschedules first, then schedules, each in decision order.
    pub decisions: Vec<Decision>,
    /// Where every placed non-global unit ends up.
    pub placement: BTreeMap<String, String>,
    /// Non-global units that want to run but have no machine, and why.
    pub unplaceable: BTreeMap<String, String>,
    /// Global units per machine, as agents will run them.
    pub global: BTreeMap<String, Vec<String>>,
}

struct Mach<'a> {
    id: &'a str,
    meta: &'a HashMap<String, String>,
    draining: bool,
    units: Vec<usize>,
    /// How many of `units` carry conflict patterns.
    patterned: usize,
    load: u32,
}

struct Un<'a> {
    name: &'a str,
    fleet: Option<&'a XFleet>,
    desired: DesiredState,
    global: bool,
    patterned: bool,
}

/// The global units a machine with this metadata runs, from `globals`
/// (name, requirements) sorted by name: those whose metadata it has and that
/// do not conflict with a global unit accepted before them.
pub fn global_units_on<'a>(
    metadata: &HashMap<String, String>,
    globals: impl IntoIterator<Item = (&'a str, &'a XFleet)>,
) -> Vec<&'a str> {
    let mut accepted: Vec<(&str, &XFleet)> = Vec::new();
    for (name, fleet) in globals {
        if !fleet.metadata_matches(metadata) {
            continue;
        }
        if accepted
            .iter()
            .any(|(n, f)| units_conflict(name, fleet, n, f))
        {
            continue;
        }
        accepted.push((name, fleet));
    }
    accepted.into_iter().map(|(n, _)| n).collect()
}

enum Verdict {
    Ok,
    /// J may go there; these units (matched by J's `Replaces`) move away.
    Replace(Vec<usize>),
}

struct Planner<'a> {
    machines: Vec<Mach<'a>>,
    units: Vec<Un<'a>>,
    by_name: HashMap<&'a str, usize>,
    by_full_id: HashMap<&'a str, usize>,
    by_short_id: HashMap<&'a str, Vec<usize>>,
    assigned: Vec<Option<usize>>,
    order: BTreeSet<(u32, usize)>,
}

impl<'a> Planner<'a> {
    fn add(&mut self, m: usize, u: usize) {
        let mach = &mut self.machines[m];
        self.order.remove(&(mach.load, m));
        mach.load += 1;
        mach.units.push(u);
        if self.units[u].patterned {
            mach.patterned += 1;
        }
        self.order.insert((mach.load, m));
        if !self.units[u].global {
            self.assigned[u] = Some(m);
        }
    }

    fn remove(&mut self, m: usize, u: usize) {
        let mach = &mut self.machines[m];
        if let Some(pos) = mach.units.iter().position(|&x| x == u) {
            mach.units.swap_remove(pos);
            self.order.remove(&(mach.load, m));
            mach.load -= 1;
            if self.units[u].patterned {
                mach.patterned -= 1;
            }
            self.order.insert((mach.load, m));
        }
        self.assigned[u] = None;
    }

    /// fleet's AbleToRun (scheduler.md §5.4) for unit `j` on machine `m`.
    fn able_to_run(&self, m: usize, j: usize) -> Result<Verdict, String> {
        let mach = &self.machines[m];
        let unit = &self.units[j];
        let Some(fleet) = unit.fleet else {
            return Err("unit file is invalid".to_owned());
        };
        if mach.draining {
            return Err(format!("Machine({}) is draining", mach.id));
        }
        if let Some(want) = fleet.machine_id() {
            if !fleet.machine_id_matches(mach.id) {
                return Err(format!(
                    "agent ID \"{}\" does not match required \"{want}\"",
                    mach.id
                ));
            }
        }
        if !fleet.metadata().is_empty() && !fleet.metadata_matches(mach.meta) {
            let reqs: Vec<String> = fleet
                .metadata()
                .iter()
                .map(|l| l.value.to_string())
                .collect();
            return Err(format!(
                "local Machine metadata insufficient (requires {})",
                reqs.join(" ")
            ));
        }
        for peer in fleet.machine_of() {
            let here = self
                .by_name
                .get(peer.value.as_str())
                .is_some_and(|&p| mach.units.contains(&p));
            if !here {
                return Err(format!(
                    "required peer Unit({}) is not scheduled locally",
                    peer.value
                ));
            }
        }
        if unit.patterned || mach.patterned > 0 {
            for &e in &mach.units {
                if e == j {
                    continue;
                }
                let other = &self.units[e];
                if !unit.patterned && !other.patterned {
                    continue;
                }
                if let Some(of) = other.fleet {
                    if units_conflict(unit.name, fleet, other.name, of) {
                        return Err(format!(
                            "found conflict with locally-scheduled Unit({})",
                            other.name
                        ));
                    }
                }
            }
        }
        if !fleet.replaces().is_empty() {
            let moved: Vec<usize> = mach
                .units
                .iter()
                .copied()
                .filter(|&e| e != j && !self.units[e].global)
                .filter(|&e| {
                    let other = &self.units[e];
                    let of = other.fleet;
                    fleet.replaces_unit(other.name)
                        && !of.is_some_and(|f| f.replaces_unit(unit.name))
                })
                .collect();
            if !moved.is_empty() {
                return Ok(Verdict::Replace(moved));
            }
        }
        Ok(Verdict::Ok)
    }

    /// The machine for unit `j`, least-loaded first, skipping `exclude`.
    fn choose(&self, j: usize, exclude: Option<usize>) -> Result<(usize, Verdict), String> {
        if self.machines.is_empty() {
            return Err("zero agents available".to_owned());
        }
        let Some(fleet) = self.units[j].fleet else {
            return Err("unit file is invalid".to_owned());
        };
        let try_one = |m: usize| -> Result<(usize, Verdict), String> {
            if Some(m) == exclude {
                return Err(format!("replaced on Machine({})", self.machines[m].id));
            }
            self.able_to_run(m, j).map(|v| (m, v))
        };
        if let Some(want) = fleet.machine_id() {
            let mut cands: Vec<usize> = Vec::new();
            if let Some(&m) = self.by_full_id.get(want) {
                cands.push(m);
            }
            if let Some(ms) = self.by_short_id.get(want) {
                cands.extend(ms.iter().copied());
            }
            if cands.is_empty() {
                return Err(format!(
                    "required machine {want} (MachineID) is not in the cluster"
                ));
            }
            cands.sort_by_key(|&m| (self.machines[m].load, m));
            let mut last = String::new();
            for m in cands {
                match try_one(m) {
                    Ok(r) => return Ok(r),
                    Err(e) => last = e,
                }
            }
            return Err(format!("no agents able to run job: {last}"));
        }
        if let Some(peer) = fleet.machine_of().first() {
            match self.by_name.get(peer.value.as_str()) {
                None => {
                    return Err(format!(
                        "required peer Unit({}) is not in the registry",
                        peer.value
                    ))
                }
                Some(&p) if !self.units[p].global => {
                    let Some(m) = self.assigned[p] else {
                        return Err(format!(
                            "required peer Unit({}) is not scheduled",
                            peer.value
                        ));
                    };
                    return try_one(m).map_err(|e| {
                        format!(
                            "cannot join Unit({}) on Machine({}): {e}",
                            peer.value, self.machines[m].id
                        )
                    });
                }
                Some(_) => {}
            }
        }
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        for &(_, m) in &self.order {
            match try_one(m) {
                Ok(r) => return Ok(r),
                Err(e) => *failures.entry(e).or_default() += 1,
            }
        }
        let mut by_count: Vec<(usize, String)> =
            failures.into_iter().map(|(r, n)| (n, r)).collect();
        by_count.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let shown: Vec<String> = by_count
            .iter()
            .take(3)
            .map(|(n, r)| {
                if *n == 1 {
                    format!("1 machine: {r}")
                } else {
                    format!("{n} machines: {r}")
                }
            })
            .collect();
        let more = by_count.len().saturating_sub(3);
        let mut reason = format!("no agents able to run job: {}", shown.join("; "));
        if more > 0 {
            reason.push_str(&format!("; and {more} other reasons"));
        }
        Err(reason)
    }
}

/// Decide the schedule. Pure: same input, same plan.
pub fn plan(input: &PlacementInput) -> Plan {
    let mut machine_order: Vec<&MachineInput> = input.machines.iter().collect();
    machine_order.sort_by(|a, b| a.id.cmp(&b.id));
    machine_order.dedup_by(|a, b| a.id == b.id);
    let mut unit_order: Vec<&UnitInput> = input.units.iter().collect();
    unit_order.sort_by(|a, b| a.name.cmp(&b.name));
    unit_order.dedup_by(|a, b| a.name == b.name);

    let machines: Vec<Mach<'_>> = machine_order
        .iter()
        .map(|m| Mach {
            id: &m.id,
            meta: &m.metadata,
            draining: m.draining,
            units: Vec::new(),
            patterned: 0,
            load: 0,
        })
        .collect();
    let units: Vec<Un<'_>> = unit_order
        .iter()
        .map(|u| {
            let fleet = u.fleet.as_ref().ok().map(|f| &**f);
            Un {
                name: &u.name,
                fleet,
                desired: u.desired,
                global: fleet.is_some_and(|f| f.is_global()),
                patterned: fleet.is_some_and(|f| !f.conflicts().is_empty()),
            }
        })
        .collect();
    let mut by_short_id: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, m) in machines.iter().enumerate() {
        if let Some(short) = m.id.get(..8) {
            by_short_id.entry(short).or_default().push(i);
        }
    }
    let mut p = Planner {
        by_name: units.iter().enumerate().map(|(i, u)| (u.name, i)).collect(),
        by_full_id: machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, i))
            .collect(),
        by_short_id,
        assigned: vec![None; units.len()],
        order: (0..machines.len()).map(|m| (0, m)).collect(),
        machines,
        units,
    };
    let mut out = Plan::default();

    // Global units, exactly as agents will pick them.
    let globals: Vec<usize> = (0..p.units.len())
        .filter(|&u| p.units[u].global && p.units[u].desired != DesiredState::Inactive)
        .collect();
    for m in 0..p.machines.len() {
        let list = global_units_on(
            p.machines[m].meta,
            globals
                .iter()
                .filter_map(|&u| p.units[u].fleet.map(|f| (p.units[u].name, f))),
        );
        let mut names = Vec::with_capacity(list.len());
        for name in list {
            if let Some(&u) = p.by_name.get(name) {
                p.add(m, u);
            }
            names.push(name.to_owned());
        }
        out.global.insert(p.machines[m].id.to_owned(), names);
    }

    // Unschedule pass.
    let mut unschedules = Vec::new();
    let mut original: Vec<Option<usize>> = vec![None; p.units.len()];
    for (u, input) in unit_order.iter().enumerate() {
        let Some(target) = &input.target else {
            continue;
        };
        let unschedule = |reason: String| Decision::Unschedule {
            unit: input.name.clone(),
            machine: target.clone(),
            reason,
        };
        if p.units[u].desired == DesiredState::Inactive {
            unschedules.push(unschedule("target state inactive".to_owned()));
        } else if p.units[u].global {
            unschedules.push(unschedule("unit is global".to_owned()));
        } else if let Some(&m) = p.by_full_id.get(target.as_str()) {
            p.add(m, u);
            original[u] = Some(m);
        } else {
            unschedules.push(unschedule(format!("target Machine({target}) went away")));
        }
    }
    let mut queue_replaced: Vec<(usize, usize)> = Vec::new();
    loop {
        let mut changed = false;
        for u in 0..p.units.len() {
            let Some(m) = p.assigned[u] else { continue };
            match p.able_to_run(m, u) {
                Ok(Verdict::Ok) => {}
                Ok(Verdict::Replace(moved)) => {
                    for e in moved {
                        p.remove(m, e);
                        queue_replaced.push((e, m));
                        if original[e] == Some(m) {
                            unschedules.push(Decision::Unschedule {
                                unit: p.units[e].name.to_owned(),
                                machine: p.machines[m].id.to_owned(),
                                reason: format!("replaced by Unit({})", p.units[u].name),
                            });
                        }
                    }
                    changed = true;
                }
                Err(reason) => {
                    p.remove(m, u);
                    unschedules.push(Decision::Unschedule {
                        unit: p.units[u].name.to_owned(),
                        machine: p.machines[m].id.to_owned(),
                        reason: format!(
                            "target Machine({}) unable to run unit: {reason}",
                            p.machines[m].id
                        ),
                    });
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }

    // Schedule pass: leaders before followers, then by name.
    let mut todo: Vec<(usize, Option<usize>)> = (0..p.units.len())
        .filter(|&u| {
            let un = &p.units[u];
            !un.global && un.desired != DesiredState::Inactive && p.assigned[u].is_none()
        })
        .map(|u| (u, None))
        .collect();
    todo.sort_by_key(|&(u, _)| {
        (
            p.units[u].fleet.is_some_and(|f| !f.machine_of().is_empty()),
            u,
        )
    });
    let replaced_excl: HashMap<usize, usize> = queue_replaced.iter().copied().collect();
    for t in &mut todo {
        t.1 = replaced_excl.get(&t.0).copied();
    }
    let mut pending: Vec<(usize, Option<usize>, String)> = Vec::new();
    let mut rounds = 0;
    while !todo.is_empty() && rounds < 64 {
        rounds += 1;
        let mut progress = false;
        let mut next: Vec<(usize, Option<usize>)> = Vec::new();
        pending.clear();
        for (u, excl) in todo.drain(..) {
            if p.assigned[u].is_some() {
                continue;
            }
            match p.choose(u, excl) {
                Ok((m, verdict)) => {
                    p.add(m, u);
                    progress = true;
                    if let Verdict::Replace(moved) = verdict {
                        for e in moved {
                            p.remove(m, e);
                            if original[e] == Some(m) {
                                unschedules.push(Decision::Unschedule {
                                    unit: p.units[e].name.to_owned(),
                                    machine: p.machines[m].id.to_owned(),
                                    reason: format!("replaced by Unit({})", p.units[u].name),
                                });
                            }
                            next.push((e, Some(m)));
                        }
                    }
                }
                Err(reason) => {
                    next.push((u, excl));
                    pending.push((u, excl, reason));
                }
            }
        }
        if !progress {
            break;
        }
        todo = next;
    }
    for (u, _, reason) in pending {
        if p.assigned[u].is_none() {
            out.unplaceable.insert(p.units[u].name.to_owned(), reason);
        }
    }
    for (u, input) in unit_order.iter().enumerate() {
        if p.units[u].global || p.units[u].desired == DesiredState::Inactive {
            continue;
        }
        if let (Err(e), None) = (&input.fleet, p.assigned[u]) {
            out.unplaceable
                .insert(input.name.clone(), format!("unit cannot be scheduled: {e}"));
        }
    }

    out.decisions = unschedules;
    for (u, orig) in original.iter().enumerate() {
        if let Some(m) = p.assigned[u] {
            let machine = p.machines[m].id.to_owned();
            if *orig != Some(m) {
                out.decisions.push(Decision::Schedule {
                    unit: p.units[u].name.to_owned(),
                    machine: machine.clone(),
                });
            }
            out.placement.insert(p.units[u].name.to_owned(), machine);
        }
    }
    // A unit dropped from its machine and placed back on it needs nothing.
    let placed = &out.placement;
    out.decisions.retain(|d| match d {
        Decision::Unschedule { unit, machine, .. } => placed.get(unit) != Some(machine),
        Decision::Schedule { .. } => true,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_unitfile::name::UnitName;
    use keelson_unitfile::UnitOption;
    use proptest::prelude::*;

    fn unit(name: &str, desired: DesiredState, xfleet: &[(&str, &str)]) -> UnitInput {
        let opts: Vec<UnitOption> = xfleet
            .iter()
            .map(|(k, v)| UnitOption::new("X-Fleet", *k, *v))
            .collect();
        let n = UnitName::parse(name).unwrap();
        UnitInput {
            name: name.to_owned(),
            fleet: XFleet::for_unit(&opts, &n)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
            desired,
            target: None,
        }
    }

    fn machine(id: &str, meta: &[(&str, &str)]) -> MachineInput {
        MachineInput {
            id: id.to_owned(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            draining: false,
        }
    }

    fn id(n: u8) -> String {
        format!("{n}").repeat(32)
    }

    fn book_machines() -> Vec<MachineInput> {
        vec![
            machine(&id(1), &[("compute", "web"), ("rack", "rack1")]),
            machine(&id(2), &[("compute", "web"), ("rack", "rack2")]),
            machine(&id(3), &[("compute", "db"), ("rack", "rack3")]),
        ]
    }

    use DesiredState::*;

    #[test]
    fn metadata_placement_follows_the_book() {
        let input = PlacementInput {
            machines: book_machines(),
            units: vec![
                unit(
                    "nginxweb.service",
                    Launched,
                    &[("MachineMetadata", "compute=web")],
                ),
                unit(
                    "nginxdb.service",
                    Launched,
                    &[("MachineMetadata", "compute=db")],
                ),
                unit(
                    "cache.service",
                    Launched,
                    &[("MachineMetadata", "compute=cache")],
                ),
                unit(
                    "and.service",
                    Launched,
                    &[("MachineMetadata", "\"compute=web\" \"rack=rack2\"")],
                ),
            ],
        };
        let p = plan(&input);
        assert_eq!(p.placement["nginxweb.service"], id(1));
        assert_eq!(p.placement["nginxdb.service"], id(3));
        assert_eq!(p.placement["and.service"], id(2));
        assert!(
            p.unplaceable["cache.service"].contains("metadata insufficient"),
            "{:?}",
            p.unplaceable
        );
    }

    #[test]
    fn machine_of_pairs_and_conflicts_spread() {
        let mut units = Vec::new();
        for i in 1..=3 {
            units.push(unit(
                &format!("mysql@{i}.service"),
                Launched,
                &[("Conflicts", "mysql@*.service")],
            ));
            units.push(unit(
                &format!("wordpress@{i}.service"),
                Launched,
                &[("MachineOf", "mysql@%i.service")],
            ));
        }
        units.push(unit(
            "wordpress@4.service",
            Launched,
            &[("MachineOf", "mysql@%i.service")],
        ));
        for i in 1..=4 {
            units.push(unit(
                &format!("hc@{i}.service"),
                Launched,
                &[("X-Conflicts", "%p@*.service")],
            ));
        }
        let p = plan(&PlacementInput {
            machines: book_machines(),
            units,
        });
        let mut seen = BTreeSet::new();
        for i in 1..=3 {
            let m = &p.placement[&format!("mysql@{i}.service")];
            assert_eq!(m, &p.placement[&format!("wordpress@{i}.service")]);
            seen.insert(m.clone());
        }
        assert_eq!(seen.len(), 3);
        assert!(p.unplaceable["wordpress@4.service"].contains("mysql@4.service"));
        let hc: BTreeSet<_> = (1..=3)
            .map(|i| p.placement[&format!("hc@{i}.service")].clone())
            .collect();
        assert_eq!(hc.len(), 3);
        assert!(
            p.unplaceable["hc@4.service"].contains("conflict"),
            "{}",
            p.unplaceable["hc@4.service"]
        );
    }

    #[test]
    fn machine_id_short_and_full() {
        let p = plan(&PlacementInput {
            machines: book_machines(),
            units: vec![
                unit("a.service", Launched, &[("MachineID", &id(2)[..8])]),
                unit("b.service", Loaded, &[("MachineID", &id(3))]),
                unit("c.service", Launched, &[("MachineID", "44444444")]),
            ],
        });
        assert_eq!(p.placement["a.service"], id(2));
        assert_eq!(p.placement["b.service"], id(3));
        assert!(p.unplaceable["c.service"].contains("44444444"));
    }

    #[test]
    fn lost_machine_moves_units_only_to_eligible_machines() {
        let mut web = unit(
            "nginxweb.service",
            Launched,
            &[("MachineMetadata", "compute=web")],
        );
        web.target = Some(id(1));
        let mut plain = unit("plain.service", Launched, &[]);
        plain.target = Some(id(1));
        let machines: Vec<_> = book_machines().into_iter().skip(1).collect();
        let p = plan(&PlacementInput {
            machines,
            units: vec![web, plain],
        });
        assert_eq!(p.placement["nginxweb.service"], id(2));
        assert_eq!(p.placement["plain.service"], id(3));
        assert!(p.decisions.iter().any(
            |d| matches!(d, Decision::Unschedule { reason, .. } if reason.contains("went away"))
        ));
    }

    #[test]
    fn draining_machine_loses_its_units_and_gets_no_new_ones() {
        let mut web = unit(
            "nginxweb.service",
            Launched,
            &[("MachineMetadata", "compute=web")],
        );
        web.target = Some(id(1));
        let mut plain = unit("plain.service", Launched, &[]);
        plain.target = Some(id(1));
        let mut pinned = unit("pinned.service", Launched, &[("MachineID", &id(1))]);
        pinned.target = Some(id(1));
        let g = unit("g.service", Launched, &[("Global", "true")]);
        let mut machines = book_machines();
        machines[0].draining = true;
        let p = plan(&PlacementInput {
            machines: machines.clone(),
            units: vec![web, plain, pinned, g, unit("new.service", Launched, &[])],
        });
        // Moved to eligible machines; the pinned one waits, with a reason.
        assert_eq!(p.placement["nginxweb.service"], id(2));
        assert_ne!(p.placement["plain.service"], id(1));
        assert_ne!(p.placement["new.service"], id(1));
        assert!(!p.placement.contains_key("pinned.service"));
        assert!(
            p.unplaceable["pinned.service"].contains("is draining"),
            "{}",
            p.unplaceable["pinned.service"]
        );
        assert!(p.decisions.iter().any(|d| matches!(d,
            Decision::Unschedule { unit, reason, .. }
                if unit == "plain.service" && reason.contains("is draining"))));
        // Global units stay on every machine.
        assert_eq!(p.global[&id(1)], vec!["g.service".to_string()]);
        // Drain lifted: nothing moves back, but the machine takes work again.
        machines[0].draining = false;
        let mut placed: Vec<UnitInput> = ["nginxweb.service", "plain.service"]
            .iter()
            .map(|n| {
                let mut u = unit(n, Launched, &[]);
                u.target = Some(p.placement[*n].clone());
                u
            })
            .collect();
        placed.push(unit("later.service", Launched, &[]));
        let p2 = plan(&PlacementInput {
            machines,
            units: placed,
        });
        assert_eq!(p2.placement["plain.service"], p.placement["plain.service"]);
        assert_eq!(p2.placement["later.service"], id(1));
    }

    #[test]
    fn inactive_units_are_unscheduled_and_globals_counted() {
        let mut a = unit("a.service", Inactive, &[]);
        a.target = Some(id(1));
        let g = unit(
            "g.service",
            Launched,
            &[("Global", "true"), ("MachineMetadata", "compute=web")],
        );
        let p = plan(&PlacementInput {
            machines: book_machines(),
            units: vec![a, g, unit("b.service", Launched, &[])],
        });
        assert_eq!(
            p.decisions[0],
            Decision::Unschedule {
                unit: "a.service".into(),
                machine: id(1),
                reason: "target state inactive".into()
            }
        );
        assert_eq!(p.global[&id(1)], vec!["g.service".to_string()]);
        assert!(p.global[&id(3)].is_empty());
        // web machines carry the global unit, so the db machine is least loaded.
        assert_eq!(p.placement["b.service"], id(3));
    }

    #[test]
    fn replaces_moves_the_replaced_unit() {
        let mut old = unit("old.service", Launched, &[]);
        old.target = Some(id(1));
        let new = unit(
            "new.service",
            Launched,
            &[("Replaces", "old.service"), ("MachineID", &id(1))],
        );
        // MachineID cannot combine with Replaces: validation refuses it.
        assert!(new.fleet.is_err());
        let new = unit("new.service", Launched, &[("Replaces", "old.service")]);
        let p = plan(&PlacementInput {
            machines: vec![machine(&id(1), &[]), machine(&id(2), &[])],
            units: vec![old.clone(), new],
        });
        // new goes to the least-loaded machine (2); nothing to replace there.
        assert_eq!(p.placement["new.service"], id(2));
        assert_eq!(p.placement["old.service"], id(1));
        let mut new = unit("new.service", Launched, &[("Replaces", "old.service")]);
        new.target = Some(id(1));
        let p = plan(&PlacementInput {
            machines: vec![machine(&id(1), &[]), machine(&id(2), &[])],
            units: vec![old, new],
        });
        assert_eq!(p.placement["new.service"], id(1));
        assert_eq!(p.placement["old.service"], id(2));
    }

    // ---- property tests ----

    fn arb_unit() -> impl Strategy<Value = (u8, u8, u8, u8, u8)> {
        // (template, kind of constraint, arg, desired, target)
        (0u8..4, 0u8..7, 0u8..6, 0u8..3, 0u8..8)
    }

    fn build(machines: &[(u8, u8)], specs: &[(u8, u8, u8, u8, u8)]) -> PlacementInput {
        let roles = ["web", "db", "cache"];
        let ms: Vec<MachineInput> = machines
            .iter()
            .enumerate()
            .map(|(i, (role, rack))| {
                machine(
                    &format!("{:032x}", i + 1),
                    &[
                        ("role", roles[*role as usize % 3]),
                        ("rack", &rack.to_string()),
                    ],
                )
            })
            .collect();
        let mut units = Vec::new();
        for (i, (tpl, kind, arg, desired, target)) in specs.iter().enumerate() {
            let name = format!("t{tpl}@{i}.service");
            let desired = [Inactive, Loaded, Launched][*desired as usize % 3];
            let role = roles[*arg as usize % 3];
            let opts: Vec<(&str, String)> = match kind {
                0 => vec![],
                1 => vec![("MachineMetadata", format!("role={role}"))],
                2 => vec![("Conflicts", "%p@*.service".to_owned())],
                3 => vec![(
                    "MachineOf",
                    format!("t{tpl}@{}.service", i.saturating_sub(1 + *arg as usize)),
                )],
                4 => vec![
                    ("Global", "true".to_owned()),
                    ("MachineMetadata", format!("role={role}")),
                ],
                5 => vec![
                    ("MachineMetadata", format!("rack>={arg}")),
                    ("Conflicts", format!("t{arg}@*")),
                ],
                _ => {
                    let full = format!("{:032x}", *arg as usize + 1);
                    let v = if arg % 2 == 0 {
                        full
                    } else {
                        full[..8].to_owned()
                    };
                    vec![("MachineID", v)]
                }
            };
            let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut u = unit(&name, desired, &opts);
            if (*target as usize) < ms.len() {
                u.target = Some(ms[*target as usize].id.clone());
            }
            units.push(u);
        }
        PlacementInput {
            machines: ms,
            units,
        }
    }

    fn apply(input: &PlacementInput, p: &Plan) -> PlacementInput {
        let mut next = input.clone();
        for u in &mut next.units {
            u.target = p.placement.get(&u.name).cloned();
        }
        next
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn placement_invariants(
            machines in proptest::collection::vec((0u8..3, 0u8..6), 0..7),
            specs in proptest::collection::vec(arb_unit(), 0..40),
        ) {
            let input = build(&machines, &specs);
            let p = plan(&input);
            let by_name: HashMap<&str, &UnitInput> = input.units.iter().map(|u| (u.name.as_str(), u)).collect();
            let meta: HashMap<&str, &HashMap<String, String>> = input.machines.iter().map(|m| (m.id.as_str(), &m.metadata)).collect();
            // Every unit on a machine, globals included.
            let mut on: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (u, m) in &p.placement {
                on.entry(m.as_str()).or_default().push(u.as_str());
            }
            for (m, gs) in &p.global {
                for g in gs {
                    on.entry(m.as_str()).or_default().push(g.as_str());
                }
            }
            for (u, m) in &p.placement {
                let unit = by_name[u.as_str()];
                let f = unit.fleet.as_ref().unwrap();
                prop_assert!(unit.desired != Inactive);
                prop_assert!(!f.is_global());
                prop_assert!(f.machine_id_matches(m));
                prop_assert!(f.metadata_matches(meta[m.as_str()]));
                for peer in f.machine_of() {
                    let with_peer = p.placement.get(&peer.value) == Some(m) || p.global[m].contains(&peer.value);
                    prop_assert!(with_peer, "{} follows {}", u, peer.value);
                }
            }
            // Constraints of globals hold, and no two units on a machine conflict.
            for (m, units) in &on {
                for (i, a) in units.iter().enumerate() {
                    for b in &units[i + 1..] {
                        let fa = by_name[a].fleet.as_ref().unwrap();
                        let fb = by_name[b].fleet.as_ref().unwrap();
                        prop_assert!(!units_conflict(a, fa, b, fb), "{} and {} on {}", a, b, m);
                    }
                }
            }
            // Globals run on every eligible machine.
            for u in &input.units {
                let Ok(f) = &u.fleet else { continue };
                if !f.is_global() || u.desired == Inactive { continue }
                for mach in &input.machines {
                    let here = p.global[&mach.id].contains(&u.name);
                    let blocked = p.global[&mach.id].iter().any(|g| units_conflict(&u.name, f, g, by_name[g.as_str()].fleet.as_ref().unwrap()));
                    prop_assert_eq!(here, f.metadata_matches(&mach.metadata) && !blocked);
                }
            }
            // Every wanted, unplaced non-global unit says why.
            for u in &input.units {
                let global = u.fleet.as_ref().is_ok_and(|f| f.is_global());
                if !global && u.desired != Inactive && !p.placement.contains_key(&u.name) {
                    prop_assert!(p.unplaceable.contains_key(&u.name), "{} has no reason", u.name);
                }
            }
            // Decisions turn the input schedule into the placement.
            let mut sched: BTreeMap<String, String> = input.units.iter().filter_map(|u| Some((u.name.clone(), u.target.clone()?))).collect();
            for d in &p.decisions {
                match d {
                    Decision::Unschedule { unit, machine, .. } => { let removed = sched.remove(unit); prop_assert_eq!(removed.as_ref(), Some(machine)) }
                    Decision::Schedule { unit, machine } => prop_assert!(sched.insert(unit.clone(), machine.clone()).is_none()),
                }
            }
            prop_assert_eq!(&sched, &p.placement);
            // Stable: planning again from the result changes nothing.
            let again = plan(&apply(&input, &p));
            prop_assert!(again.decisions.is_empty(), "{:?}", again.decisions);
        }
    }
}
