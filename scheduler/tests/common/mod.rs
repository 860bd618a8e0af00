#![allow(dead_code)]
//! A simulated cluster: N fleetds with real supervisors over one MemKv.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keelson_kv::client::KvClient;
use keelson_scheduler::memkv::{FaultyKv, MemKv};
use keelson_scheduler::model::parse_metadata;
use keelson_scheduler::{
    FleetClient, FleetConfig, Fleetd, InitSystem, Keys, Supervisor, SupervisorConfig,
};
use tokio::sync::oneshot;

pub const TTL: Duration = Duration::from_secs(2);

pub fn machine_id(i: usize) -> String {
    format!("{i}").repeat(32)
}

pub struct Node {
    pub id: String,
    pub sup: Supervisor,
    pub link: Arc<FaultyKv>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Graceful stop (SIGTERM): units unloaded, machine deregistered.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// The machine dies: fleetd gone and every unit process killed.
    pub async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        self.sup.stop_all(Duration::from_secs(10)).await;
    }

    pub fn running(&self) -> Vec<String> {
        self.sup
            .units()
            .into_iter()
            .filter(|u| u.state.active == "active")
            .map(|u| u.name)
            .collect()
    }
}

pub struct Cluster {
    pub kv: Arc<MemKv>,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub client: FleetClient,
}

pub fn config(i: usize, metadata: &str, disable_engine: bool) -> FleetConfig {
    FleetConfig {
        machine_id: machine_id(i),
        metadata: parse_metadata(metadata),
        public_ip: format!("127.0.0.1{i}"),
        agent_ttl: TTL,
        engine_reconcile_interval: Duration::from_millis(200),
        agent_reconcile_interval: Duration::from_secs(1),
        disable_engine,
        ..FleetConfig::default()
    }
}

impl Cluster {
    pub async fn new(metadata: &[&str]) -> Cluster {
        Cluster::with(metadata, false).await
    }

    pub async fn with(metadata: &[&str], disable_engine: bool) -> Cluster {
        let kv = Arc::new(MemKv::new());
        let dir = tempfile::tempdir().unwrap();
        let client = FleetClient::connect(kv.clone(), Keys::default())
            .await
            .unwrap();
        let mut c = Cluster {
            kv,
            dir,
            nodes: Vec::new(),
            client,
        };
        for (i, m) in metadata.iter().enumerate() {
            c.add_node(i + 1, m, disable_engine);
        }
        c
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("core-0{i}"))
    }

    pub fn add_node(&mut self, i: usize, metadata: &str, disable_engine: bool) {
        let dir = self.node_dir(i);
        let sup = Supervisor::new(SupervisorConfig {
            units_dir: dir.join("units"),
            state_dir: dir.join("state"),
            kvctl: None,
            machine_id: machine_id(i),
            host_name: Some(format!("core-0{i}")),
            root: "/".into(),
        })
        .unwrap();
        let link = Arc::new(FaultyKv::new(self.kv.clone()));
        let (tx, rx) = oneshot::channel();
        let kv: Arc<dyn KvClient> = link.clone();
        let init: Arc<dyn InitSystem> = Arc::new(sup.clone());
        let cfg = config(i, metadata, disable_engine);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = Fleetd::run(kv, init, cfg, shutdown).await {
                eprintln!("fleetd {i} failed: {e}");
            }
        });
        self.nodes.push(Node {
            id: machine_id(i),
            sup,
            link,
            stop: Some(tx),
            task: Some(task),
        });
    }

    /// Where each unit runs, from the supervisors (ground truth).
    pub fn where_running(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in &self.nodes {
            for u in n.running() {
                out.entry(u).or_default().push(n.id.clone());
            }
        }
        out
    }

    pub async fn shutdown(mut self) {
        for n in &mut self.nodes {
            n.stop().await;
        }
        for n in &self.nodes {
            n.sup.stop_all(Duration::from_secs(10)).await;
        }
    }
}

pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn sleeper(extra: &str) -> String {
    format!(
        "[Unit]\nDescription=test\n\n[Service]\nExecStart=/bin/sh -c 'exec sleep 1000'\n{extra}"
    )
}
