//! keelson-unitfile: parse + fleet hash of typical units (corpus C01, C18).
//! Target: 500,000 units/s on one core for the fleet-mode path.
//! `fleet_parse_hash` keeps the whole `Unit` (options, lines, source);
//! `fleet_hash` is the allocation-light path registries use.
//!
//! Run: `cargo bench -p keelson-benches --bench unitfile`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use keelson_unitfile::{fleet_hash, Mode, Unit};

const C01: &str = include_str!("../../unitfile/tests/corpus/C01-helloglobal.service");
const C18: &str = include_str!("../../unitfile/tests/corpus/C18-apachet@.service");

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("unitfile");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [("C01", C01), ("C18", C18)] {
        group.bench_function(format!("fleet_parse_hash/{name}"), |b| {
            b.iter(|| {
                let unit = Unit::parse(black_box(text), Mode::Fleet, None).expect("corpus parses");
                black_box(unit.hash())
            })
        });
        group.bench_function(format!("fleet_hash/{name}"), |b| {
            b.iter(|| fleet_hash(black_box(text)).expect("corpus parses"))
        });
        group.bench_function(format!("fleet_parse/{name}"), |b| {
            b.iter(|| Unit::parse(black_box(text), Mode::Fleet, None).expect("corpus parses"))
        });
        group.bench_function(format!("systemd_parse/{name}"), |b| {
            b.iter(|| Unit::parse(black_box(text), Mode::Systemd, None).expect("corpus parses"))
        });
        let unit = Unit::parse(text, Mode::Fleet, None).expect("corpus parses");
        group.bench_function(format!("hash/{name}"), |b| {
            b.iter(|| black_box(&unit).hash())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
