//! Shared helpers for the cluster tests: `keelson kv` members as processes
//! (on loopback addresses, or inside network namespaces), a tiny blocking
//! HTTP client, and polling with generous deadlines.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_keelson");
pub const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");

pub const HEARTBEAT_MS: u64 = 50;
pub const ELECTION_MS: u64 = 500;
/// Several times anything the cluster should need.
pub const LONG: Duration = Duration::from_secs(60);

/// The cluster tests start many processes each: run them one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A free TCP port on `ip` (bound and released).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An answer: status, lower-cased headers, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One blocking HTTP/1.1 request (form body); `None` if the member could
/// not be reached or did not answer in time.
pub fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> Option<Answer> {
    http_typed(
        addr,
        method,
        target,
        "application/x-www-form-urlencoded",
        body,
        Duration::from_secs(20),
    )
}

pub fn http_typed(
    addr: SocketAddr,
    method: &str,
    target: &str,
    content_type: &str,
    body: &str,
    timeout: Duration,
) -> Option<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Polls `f` until it returns `Some`, panicking after `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One member's addresses and process.
pub struct Member {
    pub name: String,
    pub ip: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// `ip netns exec <ns>` prefix, for T3.
    pub netns: Option<String>,
    pub child: Option<Child>,
    /// More `keelson kv` flags.
    pub extra: Vec<String>,
}

impl Member {
    pub fn new(name: &str, ip: &str, base: &Path, ports: (u16, u16)) -> Member {
        Member {
            name: name.into(),
            ip: ip.into(),
            client_port: ports.0,
            peer_port: ports.1,
            data_dir: base.join(format!("{name}.etcd")),
            log: base.join(format!("{name}.log")),
            netns: None,
            child: None,
            extra: Vec::new(),
        }
    }

    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.peer_port)
    }

    pub fn addr(&self) -> SocketAddr {
        format!("{}:{}", self.ip, self.client_port)
            .parse()
            .expect("socket address")
    }

    pub fn initial_cluster_entry(&self) -> String {
        format!("{}={}", self.name, self.peer_url())
    }

    /// Starts the member with the given `--initial-cluster` and state.
    pub fn start(&mut self, initial_cluster: &str, state: &str, token: &str) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("kv")
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.client_url()])
            .args(["--advertise-client-urls", &self.client_url()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", token])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_MS.to_string()])
            .args(&self.extra)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        self.child = Some(cmd.spawn().expect("keelson starts"));
    }

    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn get(&self, target: &str) -> Option<Answer> {
        http(self.addr(), "GET", target, "")
    }

    pub fn put(&self, key: &str, body: &str) -> Option<Answer> {
        http(self.addr(), "PUT", &format!("/v2/keys{key}"), body)
    }

    pub fn healthy(&self) -> bool {
        self.get("/health").is_some_and(|a| a.status == 200)
    }

    /// The member's own ID and its state (`StateLeader`, ...).
    pub fn self_stats(&self) -> Option<serde_json::Value> {
        self.get("/v2/stats/self")
            .filter(|a| a.status == 200)
            .map(|a| a.json())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `name=url,...` for these members.
pub fn initial_cluster(members: &[&Member]) -> String {
    members
        .iter()
        .map(|m| m.initial_cluster_entry())
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until every given member answers `/health` with 200.
pub fn wait_healthy(members: &[&Member]) {
    for m in members {
        eventually(&format!("{} to be healthy", m.name), LONG, || {
            m.healthy().then_some(())
        });
    }
}

/// The index of the member (in `members`) that all of them agree leads.
pub fn agreed_leader(members: &[&Member]) -> usize {
    eventually("an agreed leader", LONG, || {
        let ids: Vec<String> = members
            .iter()
            .map(|m| {
                m.self_stats()
                    .and_then(|s| s["leaderInfo"]["leader"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        if ids[0].is_empty() || ids.iter().any(|i| *i != ids[0]) {
            return None;
        }
        members.iter().position(|m| {
            m.self_stats()
                .is_some_and(|s| s["id"] == ids[0].as_str() && s["state"] == "StateLeader")
        })
    })
}

/// The full recursive listing of `/` with the index it reflects.
pub fn snapshot(m: &Member) -> Option<(u64, String)> {
    let a = m.get("/v2/keys/?recursive=true&sorted=true")?;
    if a.status != 200 {
        return None;
    }
    let index = a.header("x-etcd-index")?.parse().ok()?;
    Some((index, a.body))
}

/// Waits until all members report the same etcd index and the same store.
pub fn wait_converged(members: &[&Member]) -> (u64, String) {
    eventually("members to converge", LONG, || {
        let snaps: Vec<(u64, String)> =
            members.iter().map(|m| snapshot(m)).collect::<Option<_>>()?;
        snaps
            .iter()
            .all(|s| *s == snaps[0])
            .then(|| snaps[0].clone())
    })
}

/// Runs a CLI with arguments and environment; returns its output.
pub fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(program);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("command runs")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
