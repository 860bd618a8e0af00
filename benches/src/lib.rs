//! Benchmarks live in `benches/benches/` (criterion) and run with
//! `cargo bench -p keelson-benches`; results are recorded in `BENCHMARKS.md`.
