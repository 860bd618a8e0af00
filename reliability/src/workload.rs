//! The clients: each thread picks a member (and fails over to the next when
//! it stops answering), runs random get / set / compare-and-swap / delete /
//! compare-and-delete operations on a small key set, and records each one's
//! invocation and completion. Reads are `quorum=true` (linearizable); every
//! write stores a value unique to the run. A watcher thread follows the
//! whole prefix and resumes from its `waitIndex` whenever its member goes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{Compare, Input, Output, Recorder};
use crate::http::{encode, request, Answer, Outcome};
use crate::watch::{WatchEvent, WatchLog};

/// How long a client waits for an answer before calling it indeterminate.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// The keys of a run: `{prefix}k0`, `{prefix}k1`, ...
pub fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}k{i}")).collect()
}

/// Sends `input` on `key` and turns the answer into an [`Output`]; `None`
/// when the request was never sent (no effect, nothing to record).
pub fn perform(addr: SocketAddr, key: &str, input: &Input, timeout: Duration) -> Option<Output> {
    perform_with(addr, key, input, timeout, true)
}

/// As [`perform`]; `quorum: false` reads the member's local copy (not
/// linearizable: only for checking that the checker notices).
pub fn perform_with(
    addr: SocketAddr,
    key: &str,
    input: &Input,
    timeout: Duration,
    quorum: bool,
) -> Option<Output> {
    let path = format!("/v2/keys{key}");
    let cond = |c: &Compare| match c {
        Compare::Value(v) => format!("prevValue={}", encode(v)),
        Compare::Index { index, .. } => format!("prevIndex={index}"),
    };
    let (method, target, body) = match input {
        Input::Get if quorum => ("GET", format!("{path}?quorum=true"), String::new()),
        Input::Get => ("GET", path, String::new()),
        Input::Set { value } => ("PUT", path, format!("value={}", encode(value))),
        Input::Cas { compare, value } => (
            "PUT",
            format!("{path}?{}", cond(compare)),
            format!("value={}", encode(value)),
        ),
        Input::Delete => ("DELETE", path, String::new()),
        Input::Cad { compare } => ("DELETE", format!("{path}?{}", cond(compare)), String::new()),
    };
    match request(addr, method, &target, &body, timeout) {
        Outcome::NotSent => None,
        Outcome::NoAnswer => Some(Output::Unknown),
        Outcome::Answered(a) => Some(interpret(input, &a)),
    }
}

/// What an answer says about the operation; anything not clearly a success
/// or a definite refusal is indeterminate.
pub fn interpret(input: &Input, a: &Answer) -> Output {
    let j = a.json();
    let node_index = j["node"]["modifiedIndex"].as_u64();
    let prev = j["prevNode"]["value"].as_str().map(str::to_owned);
    match (input, a.status, a.error_code()) {
        (Input::Get, 200, _) => match (j["node"]["value"].as_str(), node_index) {
            (Some(v), Some(i)) => Output::Read(Some((v.to_owned(), i))),
            _ => Output::Unknown,
        },
        (Input::Get, 404, Some(100)) => Output::Read(None),
        (Input::Set { .. } | Input::Delete, 200 | 201, _) => match node_index {
            Some(index) => Output::Written { prev, index },
            None => Output::Unknown,
        },
        (Input::Cas { .. } | Input::Cad { .. }, 200 | 201, _) => match node_index {
            Some(index) => Output::Swapped { index },
            None => Output::Unknown,
        },
        (Input::Cas { .. } | Input::Cad { .. }, 412, Some(101)) => Output::CompareFailed,
        (Input::Cas { .. } | Input::Cad { .. } | Input::Delete, 404, Some(100)) => Output::NotFound,
        _ => Output::Unknown,
    }
}

/// Shared by the clients and the harness.
#[derive(Debug)]
pub struct Shared {
    pub recorder: Recorder,
    pub addrs: Vec<SocketAddr>,
    pub keys: Vec<String>,
    pub stop: AtomicBool,
    /// `false` only to prove the checker catches stale local reads.
    pub quorum_reads: bool,
    /// Stay on a member until it fails (`true`), or pick one per operation.
    pub sticky: bool,
}

/// One client's loop; returns when `stop` is set.
pub fn client(shared: Arc<Shared>, id: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut member = id % shared.addrs.len().max(1);
    // The last value (and its index) this client saw for each key.
    let mut known: HashMap<String, (String, u64)> = HashMap::new();
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(key) = shared
            .keys
            .get(rng.gen_range(0..shared.keys.len().max(1)))
            .cloned()
        else {
            return;
        };
        seq += 1;
        let value = format!("c{id}-{seq}");
        let seen = known.get(&key).cloned();
        let roll: u32 = rng.gen_range(0..100);
        let compare = seen.map(|(v, i)| {
            if rng.gen_bool(0.5) {
                Compare::Index { index: i, seen: v }
            } else {
                Compare::Value(v)
            }
        });
        let input = match (roll, compare) {
            (0..=34, _) => Input::Get,
            (35..=59, _) | (60..=79, None) => Input::Set { value },
            (60..=79, Some(compare)) => Input::Cas { compare, value },
            (80..=89, _) | (90.., None) => Input::Delete,
            (90.., Some(compare)) => Input::Cad { compare },
        };
        if !shared.sticky {
            member = rng.gen_range(0..shared.addrs.len().max(1));
        }
        let Some(addr) = shared.addrs.get(member).copied() else {
            return;
        };
        let pending = shared.recorder.invoke(id, &key, input.clone());
        let output = perform_with(addr, &key, &input, OP_TIMEOUT, shared.quorum_reads);
        match &output {
            Some(Output::Read(Some(v))) => {
                known.insert(key.clone(), v.clone());
            }
            Some(Output::Read(None)) | Some(Output::NotFound) => {
                known.remove(&key);
            }
            Some(Output::Written { index, .. } | Output::Swapped { index }) => match &input {
                Input::Set { value } | Input::Cas { value, .. } => {
                    known.insert(key.clone(), (value.clone(), *index));
                }
                _ => {
                    known.remove(&key);
                }
            },
            _ => {}
        }
        match output {
            // Not sent: nothing happened; nothing to record.
            None => member = (member + 1) % shared.addrs.len(),
            Some(o) => {
                if o.is_unknown() {
                    member = (member + 1) % shared.addrs.len();
                }
                shared.recorder.complete(pending, o);
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..10)));
    }
}

/// The watcher's progress, shared so the harness can wait for it.
#[derive(Debug, Default)]
pub struct WatchState {
    pub log: Mutex<WatchLog>,
    /// The next `waitIndex`.
    pub next: AtomicU64,
}

/// Follows `prefix` from `start` until `stop`; resumes on another member
/// when its member stops answering.
pub fn watcher(
    shared: Arc<Shared>,
    state: Arc<WatchState>,
    prefix: String,
    start: u64,
    stop: Arc<AtomicBool>,
) {
    state.next.store(start, Ordering::SeqCst);
    if let Ok(mut l) = state.log.lock() {
        l.start_index = start;
    }
    let mut member = 0usize;
    let n = shared.addrs.len().max(1);
    while !stop.load(Ordering::Relaxed) {
        let next = state.next.load(Ordering::SeqCst);
        let Some(addr) = shared.addrs.get(member).copied() else {
            return;
        };
        let target = format!(
            "/v2/keys{}?wait=true&recursive=true&waitIndex={next}",
            prefix.trim_end_matches('/')
        );
        match request(addr, "GET", &target, "", Duration::from_secs(2)) {
            Outcome::Answered(a) if a.status == 200 => {
                let j = a.json();
                let index = j["node"]["modifiedIndex"].as_u64();
                let key = j["node"]["key"].as_str();
                let action = j["action"].as_str();
                if let (Some(index), Some(key), Some(action)) = (index, key, action) {
                    let ev = WatchEvent {
                        index,
                        action: action.to_owned(),
                        key: key.to_owned(),
                        value: j["node"]["value"].as_str().map(str::to_owned),
                    };
                    if let Ok(mut l) = state.log.lock() {
                        l.events.push(ev);
                    }
                    state.next.store(index + 1, Ordering::SeqCst);
                }
            }
            Outcome::Answered(a) if a.error_code() == Some(401) => {
                // The index left the member's event window: jump, and say so.
                let now = a.json()["index"].as_u64().unwrap_or(next);
                let resumed = now + 1;
                if let Ok(mut l) = state.log.lock() {
                    l.cleared.push((next, resumed));
                }
                state.next.store(resumed, Ordering::SeqCst);
            }
            // A long poll with nothing new: ask again.
            Outcome::NoAnswer if a_live(addr) => {}
            _ => {
                member = (member + 1) % n;
                if let Ok(mut l) = state.log.lock() {
                    l.resumes.push(next);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Whether a member still answers at all (a quiet long poll vs a dead one).
fn a_live(addr: SocketAddr) -> bool {
    matches!(
        request(addr, "GET", "/health", "", Duration::from_secs(1)),
        Outcome::Answered(_)
    )
}
