//! A running Keelson kv member: Raft node, v2 store, watchers and the
//! etcd-compatible HTTP API on the client URLs.
//!
//! [`KvServer::start`] takes a [`ServerConfig`] (etcd's flags), opens the
//! data directory, starts Raft, binds the listeners and starts the leader's
//! expiry ticker; the returned [`KvServerHandle`] reports the bound URLs,
//! gives in-process access to the service ([`KvServerHandle::core`], which
//! [`crate::embedded`] builds on) and shuts everything down gracefully.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keelson_kv::server::ServerError> {
//! use keelson_kv::server::{KvServer, ServerConfig};
//! let config = ServerConfig {
//!     data_dir: "/tmp/demo.etcd".into(),
//!     listen_client_urls: vec!["http://127.0.0.1:2379".into()],
//!     advertise_client_urls: vec!["http://127.0.0.1:2379".into()],
//!     ..ServerConfig::default()
//! };
//! let handle = KvServer::start(config).await?;
//! println!("serving on {:?}", handle.client_urls());
//! handle.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Compatibility notes (differences from etcd 3.4.23 that are deliberate):
//! a `stream=true` watch that starts in the history keeps delivering live
//! events afterwards (etcd goes silent); the history scan hides hidden nodes
//! from recursive watchers as live dispatch does; `/version` reports
//! Keelson's version; internal bookkeeping does not consume etcd indexes, so
//! a fresh member's first write is index 1, not 4.

mod config;
mod core;
mod http;
mod machine;
mod params;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinSet;

pub use self::config::{
    cluster_id, member_id, parse_url, parse_url_list, ClusterState, ConfigError, HostPort,
    ServerConfig,
};
pub use self::core::{now, Identity, KvCore, Read, Watch, Written};
pub use self::http::{go_duration, router, serve_request, HttpMetrics, HttpState};
pub use self::machine::{ApplyReply, KvStateMachine, Proposal};
pub use self::params::{Form, KeyParams};
pub use self::watch::{WatchHub, WatchRegistration, WATCHER_BUFFER};

use crate::raft::{InProcessRouter, KvNode, NodeError, PeerNode, RaftConfig};

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("listen tcp {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("member identity file {path} is corrupt: {reason}")]
    Identity { path: PathBuf, reason: String },
}

/// How long a graceful shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Entry point; see the module documentation.
pub struct KvServer;

/// A running member.
pub struct KvServerHandle {
    core: Arc<KvCore>,
    client_urls: Vec<String>,
    stop: signal::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredIdentity {
    member_id: u64,
    cluster_id: u64,
}

/// The IDs recorded in the data directory at first start win over the
/// flags afterwards, as in etcd (the WAL, not `--initial-cluster`, says who
/// a member is once it has data).
fn load_or_store_identity(
    data_dir: &Path,
    member_id: u64,
    cluster_id: u64,
) -> Result<(u64, u64), ServerError> {
    let path = data_dir.join("keelson-member.json");
    let io = |source| ServerError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(b) => {
            let s: StoredIdentity =
                serde_json::from_slice(&b).map_err(|e| ServerError::Identity {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            Ok((s.member_id, s.cluster_id))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| ServerError::Io {
                path: data_dir.to_owned(),
                source: e,
            })?;
            let s = StoredIdentity {
                member_id,
                cluster_id,
            };
            let tmp = path.with_extension("json.tmp");
            let bytes = serde_json::to_vec(&s).unwrap_or_default();
            std::fs::write(&tmp, bytes).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            Ok((member_id, cluster_id))
        }
        Err(e) => Err(io(e)),
    }
}

async fn bind(url: &str) -> Result<TcpListener, ServerError> {
    let hp = parse_url(url)?;
    let addr = format!("{}:{}", hp.host, hp.port);
    let err = |source| ServerError::Listen {
        addr: addr.clone(),
        source,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr.as_str())
        .await
        .map_err(err)?
        .collect();
    let mut last = None;
    for a in addrs {
        match TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address")
    })))
}

impl KvServer {
    /// Starts a member: see the module documentation.
    pub async fn start(config: ServerConfig) -> Result<KvServerHandle, ServerError> {
        let (flag_member, flag_cluster) = config.validate()?;
        if config.initial_cluster_state == ClusterState::Existing
            && !config.data_dir.join("keelson-member.json").exists()
        {
            return Err(ConfigError::Invalid(
                "joining an existing cluster is not supported by this Keelson version yet".into(),
            )
            .into());
        }
        let (member, cluster) = {
            let dir = config.data_dir.clone();
            tokio::task::spawn_blocking(move || {
                load_or_store_identity(&dir, flag_member, flag_cluster)
            })
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))??
        };
        // Bind first, so a port in use fails before touching Raft.
        let mut listeners = Vec::new();
        for u in &config.listen_client_urls {
            let l = bind(u).await?;
            let local = l.local_addr().map_err(|source| ServerError::Listen {
                addr: u.clone(),
                source,
            })?;
            let hp = parse_url(u)?;
            let url = format!("{}://{}:{}", hp.scheme, url_host(&hp.host), local.port());
            listeners.push((l, url));
        }
        let client_urls: Vec<String> = listeners.iter().map(|(_, u)| u.clone()).collect();
        // An advertised URL that names a port-0 listener advertises the
        // port actually bound.
        let advertised = if config.advertise_client_urls.is_empty() {
            client_urls.clone()
        } else {
            config
                .advertise_client_urls
                .iter()
                .map(|u| {
                    let i = config.listen_client_urls.iter().position(|l| l == u);
                    match i {
                        Some(i) if parse_url(u).is_ok_and(|hp| hp.port == 0) => {
                            client_urls.get(i).cloned().unwrap_or_else(|| u.clone())
                        }
                        _ => u.clone(),
                    }
                })
                .collect()
        };

        let mut peer_urls = config.initial_advertise_peer_urls.clone();
        peer_urls.sort();
        let mut rc = RaftConfig::new(member, config.name.clone(), config.data_dir.clone());
        rc.peer_urls = peer_urls.clone();
        rc.initial_members = [(
            member,
            PeerNode::new(config.name.clone(), peer_urls.clone()),
        )]
        .into();
        rc.wal_dir = config.wal_dir.clone();
        rc.snapshot_count = config.snapshot_count;
        rc.max_wals = config.max_wals;
        rc.max_snapshots = config.max_snapshots;
        rc.quota_backend_bytes = config.quota_backend_bytes;
        rc.heartbeat_interval = config.heartbeat_interval;
        rc.election_timeout = config.election_timeout;

        let hub = WatchHub::new();
        let router = InProcessRouter::new();
        let node = KvNode::start(
            rc,
            KvStateMachine::new(hub.clone(), config.watch_history),
            router.transport_for(member),
        )
        .await?;
        router.register(member, node.raft().clone());
        if let Err(e) = node.wait_for_leader(config.election_timeout * 10).await {
            tracing::warn!(error = %e, "no leader yet; serving anyway");
        }
        // etcd's request timeout: 5 s plus two election timeouts.
        let request_timeout = Duration::from_secs(5) + config.election_timeout * 2;
        let identity = Identity {
            name: config.name.clone(),
            member_id: member,
            cluster_id: cluster,
            peer_urls,
            client_urls: advertised,
        };
        let core = Arc::new(KvCore::new(node, hub, identity, request_timeout));
        core.observe_leader();
        tracing::info!(
            name = %config.name,
            member_id = %format!("{member:x}"),
            cluster_id = %format!("{cluster:x}"),
            "member started"
        );

        let (stop, stop_rx) = signal::channel(false);
        let mut tasks = JoinSet::new();
        let state = HttpState {
            core: core.clone(),
            cors: Arc::new(config.cors.clone()),
            metrics: Arc::new(HttpMetrics::default()),
        };
        for (listener, url) in listeners {
            tracing::info!(%url, "serving client requests");
            tasks.spawn(accept_loop(listener, state.clone(), stop_rx.clone()));
        }
        tasks.spawn(expiry_ticker(core.clone(), stop_rx.clone()));
        tasks.spawn(leader_observer(core.clone(), stop_rx));
        Ok(KvServerHandle {
            core,
            client_urls,
            stop,
            tasks: tokio::sync::Mutex::new(tasks),
        })
    }
}

/// Resolves when the stop signal is raised (or its sender is gone).
async fn stopped(rx: &mut signal::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

async fn accept_loop(listener: TcpListener, state: HttpState, mut stop: signal::Receiver<bool>) {
    let app = router(state.clone());
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let (sock, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = sock.set_nodelay(true);
                let state = state.clone();
                let app = app.clone();
                let mut stop = stop.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        let app = app.clone();
                        async move {
                            let req = req.map(axum::body::Body::new);
                            Ok::<_, std::convert::Infallible>(serve_request(state, app, req).await)
                        }
                    });
                    let conn = http1::Builder::new()
                        .title_case_headers(true)
                        .serve_connection(TokioIo::new(sock), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        _ = stopped(&mut stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // Finish in-flight requests, then cut whatever is left.
    let deadline = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = conns.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                conns.abort_all();
                break;
            }
        }
    }
}

async fn expiry_ticker(core: Arc<KvCore>, mut stop: signal::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tick.tick() => core.expire_due().await,
        }
    }
}

async fn leader_observer(core: Arc<KvCore>, mut stop: signal::Receiver<bool>) {
    let mut m = core.node().raft().metrics();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            changed = m.changed() => {
                if changed.is_err() {
                    return;
                }
                core.observe_leader();
            }
        }
    }
}

impl KvServerHandle {
    /// The client URLs actually bound (port 0 resolved).
    pub fn client_urls(&self) -> &[String] {
        &self.client_urls
    }

    /// The service, for in-process use.
    pub fn core(&self) -> &Arc<KvCore> {
        &self.core
    }

    /// Graceful stop: stop accepting, end watches, let in-flight requests
    /// finish, stop Raft and flush storage.
    pub async fn shutdown(&self) -> Result<(), ServerError> {
        self.core.begin_closing();
        let _ = self.stop.send(true);
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
        self.core.shutdown().await?;
        tracing::info!("member stopped");
        Ok(())
    }
}
