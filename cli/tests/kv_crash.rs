//! Crash durability under concurrent load (issue 3): 16 writers doing sets
//! and compare-and-swaps against the `keelson kv` binary, `kill -9` in the
//! middle, restart: every acknowledged write is there with its value or a
//! later one. Three rounds on the same data directory, with a small
//! `--snapshot-count` so snapshots and log purges happen under load too.

mod proc_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proc_support::{http, spawn_keelson, wait_healthy, Server};

const WRITERS: usize = 16;
const OWN_KEYS: usize = 4;
const SHARED_KEYS: usize = 4;

/// What the writers were told succeeded.
#[derive(Default)]
struct Acked {
    /// Own keys: the highest sequence number acknowledged (values only grow).
    own: HashMap<String, u64>,
    /// Shared keys (CAS): the highest modifiedIndex acknowledged, and its value.
    shared: HashMap<String, (u64, String)>,
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn writer(
    addr: std::net::SocketAddr,
    w: usize,
    round: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
) {
    let mut seq: u64 = (round as u64) << 32;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        // A plain set on one of this writer's keys.
        let key = format!("/v2/keys/crash/w{w}/k{}", seq as usize % OWN_KEYS);
        match http(addr, "PUT", &key, &format!("value={seq}")) {
            Some(a) if matches!(a.status, 200 | 201) => {
                let mut g = acked.lock().unwrap_or_else(|e| e.into_inner());
                let e = g.own.entry(key).or_default();
                *e = (*e).max(seq);
            }
            Some(_) => {}
            None => continue,
        }
        // A compare-and-swap on a key every writer contends for.
        let shared = format!("/v2/keys/crash/shared/s{}", seq as usize % SHARED_KEYS);
        let Some(cur) = http(addr, "GET", &shared, "") else {
            continue;
        };
        let value = format!("w{w}-{seq}");
        let target = match cur.status {
            200 => {
                let idx = json(&cur.body)["node"]["modifiedIndex"]
                    .as_u64()
                    .unwrap_or(0);
                format!("{shared}?prevIndex={idx}")
            }
            _ => format!("{shared}?prevExist=false"),
        };
        if let Some(a) = http(addr, "PUT", &target, &format!("value={value}")) {
            if matches!(a.status, 200 | 201) {
                let idx = json(&a.body)["node"]["modifiedIndex"].as_u64().unwrap_or(0);
                let mut g = acked.lock().unwrap_or_else(|e| e.into_inner());
                let e = g.shared.entry(shared).or_default();
                if idx > e.0 {
                    *e = (idx, value);
                }
            }
        }
    }
}

fn verify(s: &Server, acked: &Acked) -> usize {
    let mut checked = 0;
    for (key, seq) in &acked.own {
        let a = http(s.addr, "GET", key, "").expect("answer");
        assert_eq!(a.status, 200, "acknowledged {key} lost: {}", a.body);
        let v: u64 = json(&a.body)["node"]["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(v >= *seq, "{key}: acknowledged {seq}, found older {v}");
        checked += 1;
    }
    for (key, (idx, value)) in &acked.shared {
        let a = http(s.addr, "GET", key, "").expect("answer");
        assert_eq!(a.status, 200, "acknowledged {key} lost: {}", a.body);
        let node = &json(&a.body)["node"];
        let found = node["modifiedIndex"].as_u64().unwrap_or(0);
        assert!(
            found >= *idx,
            "{key}: acknowledged index {idx}, found older {found}"
        );
        if found == *idx {
            assert_eq!(node["value"].as_str(), Some(value.as_str()), "{key}");
        }
        checked += 1;
    }
    checked
}

#[test]
fn acknowledged_concurrent_writes_survive_kill_9_three_times() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("crash.etcd");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut total_acked_writes = 0;
    for round in 0..3 {
        let mut s = spawn_keelson(&data, 0, &["--snapshot-count", "300"]);
        wait_healthy(&mut s);
        if round > 0 {
            verify(&s, &acked.lock().expect("lock"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (stop, acked, addr) = (stop.clone(), acked.clone(), s.addr);
                std::thread::spawn(move || writer(addr, w, round, stop, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(2000));
        // kill -9 while all 16 writers are mid-request.
        s.kill();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("writer thread");
        }
        let mut s = spawn_keelson(&data, 0, &["--snapshot-count", "300"]);
        wait_healthy(&mut s);
        let g = acked.lock().expect("lock");
        assert!(
            !g.own.is_empty(),
            "round {round}: no write was acknowledged"
        );
        total_acked_writes += verify(&s, &g);
        drop(g);
        s.kill();
    }
    assert!(total_acked_writes > 0);
    eprintln!(
        "3 rounds in {:?}, {total_acked_writes} keys checked",
        started.elapsed()
    );
}
