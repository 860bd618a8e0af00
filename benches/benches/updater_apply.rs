//! Applying a large payload: an update engine downloads a signed 512 MiB
//! payload from a loopback update server into the inactive slot (hashing as
//! it streams), reads it back to verify, and finalizes. Compared in the same
//! run with a plain sequential write of the same bytes to the same file
//! system, and with peak memory (VmHWM) reported.
//!
//! `cargo bench -p keelson-benches --bench updater_apply` (env
//! `UPDATER_BENCH_MIB` sets the size, `UPDATER_BENCH_DIR` the directory).

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use keelson_updater::driver::{Driver, KeySource};
use keelson_updater::engine::{Engine, Identity, Persisted, Status, Timing};
use keelson_updater::omaha::COREOS_APP_ID;
use keelson_updater::payload::{sign_payload_file, write_keypair, SigningKey};
use keelson_updater::server::UpdateServer;
use keelson_updater::slots::{BootSlots, DirSlots, Slot};

const CHUNK: usize = 1 << 20;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Writes `len` bytes of incompressible-ish data, 1 MiB at a time.
fn make_payload(path: &Path, len: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.into_inner().unwrap().sync_all().unwrap();
}

/// The baseline: copy the payload to a new file on the same file system,
/// 1 MiB at a time, then fsync (the engine syncs the slot too).
fn plain_write(src: &Path, dst: &Path) -> Duration {
    let start = Instant::now();
    let mut r = std::fs::File::open(src).unwrap();
    let mut w = std::fs::File::create(dst).unwrap();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).unwrap();
    }
    w.sync_all().unwrap();
    start.elapsed()
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1048576.0 / d.as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is ignored.
    let mib: u64 = std::env::var("UPDATER_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let len = mib << 20;
    let base = std::env::var_os("UPDATER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let d = dir.path();
    let payload = d.join("update.gz");
    make_payload(&payload, len);
    let hwm_after_setup = vm_hwm_kib();

    write_keypair(&d.join("keys"), "bench").unwrap();
    let key = SigningKey::load(&d.join("keys/bench.key")).unwrap();
    let manifest = sign_payload_file(&key, &"766.3.0".parse().unwrap(), &payload).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = 3;
    let mut plain = Vec::new();
    let mut download = Vec::new();
    let mut total = Vec::new();
    for round in 0..rounds {
        // Baseline, same file system, same run.
        let dst = d.join("plain.img");
        plain.push(plain_write(&payload, &dst));
        std::fs::remove_file(&dst).unwrap();

        // The engine: check → download+hash+write → read-back verify → finalize.
        let slots_dir = d.join(format!("slots{round}"));
        DirSlots::create(&slots_dir, len + (1 << 20)).unwrap();
        let root = d.join(format!("root{round}"));
        std::fs::create_dir_all(&root).unwrap();
        let (dl, all) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let server = UpdateServer::new(COREOS_APP_ID, &url);
            let v = server
                .add_package(payload.clone(), manifest.clone())
                .unwrap();
            server.set_group("stable", &v).unwrap();
            let srv = tokio::spawn(keelson_updater::server::serve(server, listener));
            let id = Identity {
                app_id: format!("{{{COREOS_APP_ID}}}"),
                version: "723.3.0".parse().unwrap(),
                track: "stable".into(),
                machine_id: format!("bench{round}"),
                boot_id: "{bench}".into(),
                board: "amd64-usr".into(),
                oem: None,
                machine_alias: None,
            };
            let engine = Engine::new(id, Timing::default(), Persisted::default(), 1000, 1);
            let mut driver = Driver::new(
                engine,
                DirSlots::open(&slots_dir, Slot::A),
                &format!("{url}/v1/update/"),
                &root,
            )
            .with_keys(KeySource::Dirs(vec![d.join("keys")]));
            let mut status = driver.subscribe();
            let phase = tokio::spawn(async move {
                let mut dl_start = None;
                loop {
                    if status.changed().await.is_err() {
                        return None;
                    }
                    let op = status.borrow().current_operation;
                    match op {
                        Status::Downloading if dl_start.is_none() => {
                            dl_start = Some(Instant::now())
                        }
                        Status::Verifying => return dl_start.map(|s| s.elapsed()),
                        _ => {}
                    }
                }
            });
            let start = Instant::now();
            driver.check_now(1000).await;
            let all = start.elapsed();
            assert_eq!(
                driver.status().current_operation,
                Status::UpdatedNeedReboot,
                "{:?}",
                driver.last_error()
            );
            assert!(driver.slots().table().unwrap().b.tries == 1);
            drop(driver);
            srv.abort();
            (phase.await.unwrap().unwrap_or_default(), all)
        });
        download.push(dl);
        total.push(all);
        std::fs::remove_dir_all(&slots_dir).unwrap();
        eprintln!(
            "round {round}: plain write {:.0} MiB/s, download+write {:.0} MiB/s, full apply {:.0} MiB/s",
            mib_s(len, plain[round]),
            mib_s(len, dl),
            mib_s(len, all)
        );
    }
    let best = |v: &[Duration]| *v.iter().min().unwrap();
    let median = |v: &[Duration]| {
        let mut s = v.to_vec();
        s.sort();
        s[s.len() / 2]
    };
    let hwm = vm_hwm_kib();
    println!("updater_apply: payload {mib} MiB, {rounds} rounds (median / best)");
    println!(
        "  plain sequential write+fsync : {:7.0} / {:7.0} MiB/s",
        mib_s(len, median(&plain)),
        mib_s(len, best(&plain))
    );
    println!(
        "  engine download+hash+write   : {:7.0} / {:7.0} MiB/s  ({:.0}% of plain, median)",
        mib_s(len, median(&download)),
        mib_s(len, best(&download)),
        100.0 * median(&plain).as_secs_f64() / median(&download).as_secs_f64()
    );
    println!(
        "  engine full apply (+verify)  : {:7.0} / {:7.0} MiB/s  ({:.0}% of plain, median)",
        mib_s(len, median(&total)),
        mib_s(len, best(&total)),
        100.0 * median(&plain).as_secs_f64() / median(&total).as_secs_f64()
    );
    println!(
        "  peak memory VmHWM            : {:7.1} MiB (after payload setup {:.1} MiB; target < 64 MiB)",
        hwm as f64 / 1024.0,
        hwm_after_setup as f64 / 1024.0
    );
}
