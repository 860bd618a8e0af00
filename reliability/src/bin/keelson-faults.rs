//! `keelson-faults`: one fault-injection run against a `keelson kv`
//! cluster in network namespaces, then the linearizability, watch and
//! durability checks. Needs root. Exit status 1 on any violation.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use keelson_reliability::faults::schedule;
use keelson_reliability::run::{run, RunConfig};

#[derive(Parser, Debug)]
#[command(
    name = "keelson-faults",
    about = "Fault-injection run with linearizability checking"
)]
struct Args {
    /// Cluster size (3 or 5).
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Seconds of faults and load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// The seed of the fault schedule and the workload; random if absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Keys the clients share.
    #[arg(long, default_value_t = 5)]
    keys: usize,
    /// The `keelson` binary (default: target/release/keelson, else target/debug/keelson).
    #[arg(long, env = "KEELSON_BIN")]
    keelson: Option<PathBuf>,
    /// Self-test of the harness: read without `quorum=true` from a random
    /// member per operation. Partitions make such reads stale, so the run
    /// is expected to FAIL with a counterexample.
    #[arg(long)]
    stale_reads: bool,
    /// Print the seed's fault schedule and exit.
    #[arg(long)]
    dry_run: bool,
    /// Where member data, logs and the recorded history go.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn default_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let release = target.join("release/keelson");
    if release.exists() {
        release
    } else {
        target.join("debug/keelson")
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    if args.dry_run {
        println!("seed {seed}");
        for s in schedule(seed, args.members, args.duration * 1000) {
            println!("  {s}");
        }
        return Ok(());
    }
    let binary = args.keelson.unwrap_or_else(default_binary);
    anyhow::ensure!(
        binary.exists(),
        "no keelson binary at {} (build it with `cargo build -p keelson-cli --bin keelson`, or pass --keelson / KEELSON_BIN)",
        binary.display()
    );
    let work_dir = args.work_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("keelson-faults-{seed}-{}", std::process::id()))
    });
    let mut cfg = RunConfig::new(
        args.members,
        Duration::from_secs(args.duration),
        seed,
        binary,
        work_dir.clone(),
    );
    cfg.clients = args.clients;
    cfg.keys = args.keys;
    cfg.stale_reads = args.stale_reads;
    let report = run(&cfg).with_context(|| format!("run with seed {seed}"))?;
    println!("{report}");
    if report.passed() {
        let _ = std::fs::remove_dir_all(&work_dir);
        Ok(())
    } else {
        std::process::exit(1);
    }
}
