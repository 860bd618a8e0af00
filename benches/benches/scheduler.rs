//! Placement at scale: 100,000 units, a fifth of them constrained
//! (metadata, `Conflicts` spreading template instances, `MachineOf`
//! followers), on 10,000 machines, with the pure placement function.
//!
//! `cargo bench -p keelson-benches --bench scheduler`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use keelson_scheduler::placement::{plan, MachineInput, PlacementInput, UnitInput};
use keelson_scheduler::DesiredState;
use keelson_unitfile::name::UnitName;
use keelson_unitfile::{UnitOption, XFleet};

const MACHINES: usize = 10_000;
const UNITS: usize = 100_000;

fn unit(name: &str, opts: &[(&str, String)]) -> UnitInput {
    let options: Vec<UnitOption> = opts
        .iter()
        .map(|(k, v)| UnitOption::new("X-Fleet", *k, v.as_str()))
        .collect();
    let n = UnitName::parse(name).expect("valid name");
    UnitInput {
        name: name.to_owned(),
        fleet: XFleet::for_unit(&options, &n)
            .map(Arc::new)
            .map_err(|e| e.to_string()),
        desired: DesiredState::Launched,
        target: None,
    }
}

fn main() {
    let roles = ["web", "db", "cache", "batch"];
    let machines: Vec<MachineInput> = (0..MACHINES)
        .map(|i| MachineInput {
            id: format!("{:032x}", i * 7919 + 1),
            metadata: HashMap::from([
                ("role".to_owned(), roles[i % 4].to_owned()),
                ("rack".to_owned(), (i % 100).to_string()),
            ]),
            draining: false,
        })
        .collect();
    let t = Instant::now();
    let mut units = Vec::with_capacity(UNITS);
    let (mut meta, mut conflicts, mut followers) = (0, 0, 0);
    for i in 0..UNITS {
        let u = match i % 15 {
            // 1 in 15 (a third of the constrained fifth): metadata.
            0 => {
                meta += 1;
                unit(
                    &format!("m{i}.service"),
                    &[("MachineMetadata", format!("role={}", roles[i / 15 % 4]))],
                )
            }
            // Conflicts: 20 instances per template, spread one per machine.
            1 => {
                conflicts += 1;
                unit(
                    &format!("spread{}@{i}.service", i / 300),
                    &[("Conflicts", "%p@*.service".to_owned())],
                )
            }
            // MachineOf: follows the plain unit just after it.
            2 => {
                followers += 1;
                unit(
                    &format!("f{i}.service"),
                    &[("MachineOf", format!("p{}.service", i + 1))],
                )
            }
            _ => unit(&format!("p{i}.service"), &[]),
        };
        units.push(u);
    }
    let build = t.elapsed();
    let input = PlacementInput { machines, units };

    let t = Instant::now();
    let p = plan(&input);
    let first = t.elapsed();
    assert_eq!(p.placement.len() + p.unplaceable.len(), UNITS);

    let mut placed = input.clone();
    for u in &mut placed.units {
        u.target = p.placement.get(&u.name).cloned();
    }
    let t = Instant::now();
    let steady = plan(&placed);
    let second = t.elapsed();
    assert!(steady.decisions.is_empty());

    // One machine dies: its units move.
    let dead = placed.machines.remove(0).id;
    let t = Instant::now();
    let failover = plan(&placed);
    let third = t.elapsed();
    let moved = failover.decisions.len() / 2;
    assert!(failover.placement.values().all(|m| *m != dead));

    let mut load: HashMap<&String, usize> = HashMap::new();
    for m in p.placement.values() {
        *load.entry(m).or_default() += 1;
    }
    let max = load.values().max().copied().unwrap_or(0);
    let min = input
        .machines
        .iter()
        .map(|m| load.get(&m.id).copied().unwrap_or(0))
        .min()
        .unwrap_or(0);
    println!("scheduler placement: {UNITS} units ({meta} metadata, {conflicts} Conflicts, {followers} MachineOf) on {MACHINES} machines");
    println!("  build input (parse [X-Fleet])  {:>10.3?}", build);
    println!(
        "  first pass (place everything)  {:>10.3?}  ({:.0} units/s)",
        first,
        UNITS as f64 / first.as_secs_f64()
    );
    println!("  steady pass (nothing to do)    {:>10.3?}", second);
    println!("  failover pass ({moved} units moved) {:>10.3?}", third);
    println!(
        "  placed {} unplaceable {} load min {min} max {max}",
        p.placement.len(),
        p.unplaceable.len()
    );
}
