//! `keelson kv` members as processes inside the harness's namespaces.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{request, Outcome};

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
pub const HEARTBEAT_MS: u64 = 50;
pub const ELECTION_MS: u64 = 500;

/// One member: its address, namespace and (when running) process.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub ip: String,
    pub netns: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((
            self.ip
                .parse::<std::net::Ipv4Addr>()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
            CLIENT_PORT,
        ))
    }

    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn get_json(&self, target: &str) -> Option<serde_json::Value> {
        match request(self.addr(), "GET", target, "", Duration::from_secs(2)) {
            Outcome::Answered(a) if a.status == 200 => Some(a.json()),
            _ => None,
        }
    }

    pub fn healthy(&self) -> bool {
        self.get_json("/health").is_some()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of members started from one `--initial-cluster`.
#[derive(Debug)]
pub struct Cluster {
    pub members: Vec<Member>,
    binary: PathBuf,
    initial_cluster: String,
    token: String,
}

impl Cluster {
    /// Describes (does not start) one member per `(ip, netns)`.
    pub fn new(binary: &Path, dir: &Path, hosts: &[(String, String)], token: &str) -> Cluster {
        let members: Vec<Member> = hosts
            .iter()
            .enumerate()
            .map(|(i, (ip, ns))| Member {
                name: format!("kr{i}"),
                ip: ip.clone(),
                netns: ns.clone(),
                data_dir: dir.join(format!("kr{i}.etcd")),
                log: dir.join(format!("kr{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}:{PEER_PORT}", m.name, m.ip))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            members,
            binary: binary.to_owned(),
            initial_cluster,
            token: token.to_owned(),
        }
    }

    /// Starts member `i` (first start or restart on its data directory).
    pub fn start(&mut self, i: usize) -> std::io::Result<()> {
        let binary = self.binary.clone();
        let ic = self.initial_cluster.clone();
        let token = self.token.clone();
        let Some(m) = self.members.get_mut(i) else {
            return Err(std::io::Error::other(format!("no member {i}")));
        };
        if m.running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let client = format!("http://{}:{CLIENT_PORT}", m.ip);
        let peer = format!("http://{}:{PEER_PORT}", m.ip);
        let child = Command::new("ip")
            .args(["netns", "exec", &m.netns])
            .arg(&binary)
            .arg("kv")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &ic])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &token])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_MS.to_string()])
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?;
        m.child = Some(child);
        Ok(())
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i) {
            m.kill();
        }
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.members.iter().map(Member::addr).collect()
    }

    /// The member most members name as leader, if that member says so too.
    pub fn leader(&self) -> Option<usize> {
        let stats: Vec<Option<serde_json::Value>> = self
            .members
            .iter()
            .map(|m| m.get_json("/v2/stats/self"))
            .collect();
        let mut votes: Vec<(String, usize)> = Vec::new();
        for s in stats.iter().flatten() {
            if let Some(l) = s["leaderInfo"]["leader"].as_str().filter(|l| !l.is_empty()) {
                match votes.iter_mut().find(|(id, _)| id == l) {
                    Some(v) => v.1 += 1,
                    None => votes.push((l.to_owned(), 1)),
                }
            }
        }
        let (id, _) = votes.into_iter().max_by_key(|(_, n)| *n)?;
        stats.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| s["id"] == id.as_str() && s["state"] == "StateLeader")
        })
    }

    /// Waits until every member answers `/health`.
    pub fn wait_healthy(&self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        for m in &self.members {
            while !m.healthy() {
                if start.elapsed() > limit {
                    return Err(format!("{} not healthy after {limit:?}", m.name));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// One member's view of `prefix` (local read) and its index.
    pub fn listing(&self, i: usize, prefix: &str) -> Option<(u64, String)> {
        let m = self.members.get(i)?;
        let target = format!("/v2/keys{prefix}?recursive=true&sorted=true");
        match request(m.addr(), "GET", &target, "", Duration::from_secs(2)) {
            Outcome::Answered(a) if a.status == 200 || a.status == 404 => {
                let index = a.header("x-etcd-index")?.parse().ok()?;
                Some((index, a.body))
            }
            _ => None,
        }
    }

    /// Waits until all members report the same index and the same contents.
    pub fn wait_converged(&self, prefix: &str, limit: Duration) -> Result<u64, String> {
        let start = Instant::now();
        loop {
            let views: Vec<Option<(u64, String)>> = (0..self.members.len())
                .map(|i| self.listing(i, prefix))
                .collect();
            if let Some(Some(first)) = views.first() {
                if views.iter().all(|v| v.as_ref() == Some(first)) {
                    return Ok(first.0);
                }
            }
            if start.elapsed() > limit {
                let shown: Vec<String> = views
                    .iter()
                    .map(|v| match v {
                        Some((i, _)) => format!("index {i}"),
                        None => "no answer".into(),
                    })
                    .collect();
                return Err(format!(
                    "members did not converge within {limit:?}: {}",
                    shown.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
