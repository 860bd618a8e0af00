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

mod cluster;
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

pub use self::cluster::{fetch_cluster, member_id_at, Cluster, MemberOp, MemberOutcome};
pub use self::config::{
    cluster_id, member_id, parse_url, parse_url_list, random_id, ClusterState, ConfigError,
    HostPort, ServerConfig,
};
pub use self::core::{now, Identity, KvCore, Read, Watch, Written};
pub use self::http::{go_duration, router, serve_request, HttpMetrics, HttpState};
pub use self::machine::{ApplyReply, KvStateMachine, Proposal};
pub use self::params::{Form, KeyParams};
pub use self::watch::{WatchHub, WatchRegistration, WATCHER_BUFFER};

use crate::raft::{HttpTransport, KvNode, NodeError, PeerNode, PeerTimeouts, RaftConfig};

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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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

/// `<data-dir>/keelson-member.json`: who this data directory belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredIdentity {
    pub(crate) member_id: u64,
    pub(crate) cluster_id: u64,
    /// Written by `kvctl backup`: the IDs are fresh and the copy may only
    /// be started with `--force-new-cluster`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) from_backup: bool,
}

pub(crate) const IDENTITY_FILE: &str = "keelson-member.json";

/// Reads the identity file, `None` when there is none.
pub(crate) fn read_identity(data_dir: &Path) -> Result<Option<StoredIdentity>, ServerError> {
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ServerError::Identity {
                path: path.clone(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ServerError::Io { path, source }),
    }
}

/// Replaces the identity file atomically (temp file, sync, rename).
pub(crate) fn write_identity(data_dir: &Path, id: &StoredIdentity) -> Result<(), ServerError> {
    use std::io::Write;
    let path = data_dir.join(IDENTITY_FILE);
    let io = |path: &Path, source| ServerError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(id).unwrap_or_default();
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok(())
}

/// The IDs recorded in the data directory at first start win over the
/// flags afterwards, as in etcd (the WAL, not `--initial-cluster`, says who
/// a member is once it has data).
fn load_or_store_identity(
    data_dir: &Path,
    member_id: u64,
    cluster_id: u64,
    force_new_cluster: bool,
) -> Result<StoredIdentity, ServerError> {
    match read_identity(data_dir)? {
        // A backup already carries fresh IDs; any other data directory
        // forced into a new cluster gets new ones, so that it can never be
        // mistaken for (or rejoin) the cluster it came from.
        Some(s) if force_new_cluster && s.from_backup => Ok(s),
        _ if force_new_cluster => Ok(StoredIdentity {
            member_id: random_id(),
            cluster_id: random_id(),
            from_backup: false,
        }),
        Some(s) if s.from_backup => Err(ConfigError::Invalid(format!(
            "{} is a backup made by `etcdctl backup`: start it once with --force-new-cluster",
            data_dir.display()
        ))
        .into()),
        Some(s) => Ok(s),
        None => {
            let s = StoredIdentity {
                member_id,
                cluster_id,
                from_backup: false,
            };
            write_identity(data_dir, &s)?;
            Ok(s)
        }
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
        let (mut flag_member, mut flag_cluster) = config.validate()?;
        let joining = config.initial_cluster_state == ClusterState::Existing
            && !config.force_new_cluster
            && !config.data_dir.join(IDENTITY_FILE).exists();
        if joining {
            (flag_member, flag_cluster) = join_existing(&config).await?;
        }
        let ident = {
            let dir = config.data_dir.clone();
            let force = config.force_new_cluster;
            tokio::task::spawn_blocking(move || {
                load_or_store_identity(&dir, flag_member, flag_cluster, force)
            })
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))??
        };
        let (member, cluster) = (ident.member_id, ident.cluster_id);
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
        // A lone member binds its peer port on a best-effort basis (an
        // embedded store has no use for it); a cluster needs it.
        let alone = config.initial_members()?.len() <= 1
            && config.initial_cluster_state == ClusterState::New;
        let mut peer_listeners = Vec::new();
        for u in &config.listen_peer_urls {
            match bind(u).await {
                Ok(l) => peer_listeners.push((l, u.starts_with("https://"))),
                Err(e) if alone => {
                    tracing::warn!(error = %e, "cannot listen for peers; a one-member cluster runs without")
                }
                Err(e) => return Err(e),
            }
        }
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
        rc.snapshot_catchup_entries = config.snapshot_catchup_entries;
        rc.max_wals = config.max_wals;
        rc.max_snapshots = config.max_snapshots;
        rc.quota_backend_bytes = config.quota_backend_bytes;
        rc.heartbeat_interval = config.heartbeat_interval;
        rc.election_timeout = config.election_timeout;
        rc.force_new_cluster = config.force_new_cluster;
        if !config.force_new_cluster {
            rc.initial_members = config
                .initial_members()?
                .into_iter()
                .map(|(name, urls)| {
                    (
                        member_id(&urls, &config.initial_cluster_token),
                        PeerNode::new(name, urls),
                    )
                })
                .collect();
        }
        rc.join_existing = config.initial_cluster_state == ClusterState::Existing;
        // etcd's request timeout: 5 s plus two election timeouts.
        let request_timeout = Duration::from_secs(5) + config.election_timeout * 2;
        rc.request_timeout = request_timeout;

        let hub = WatchHub::new();
        let timeouts = PeerTimeouts::for_election_timeout(config.election_timeout);
        let transport = match &config.peer_tls {
            // Members present the peer certificate and verify each other
            // against the peer CA.
            Some(t) => {
                let tls = crate::tls::client_config(
                    t.trusted_ca_file.as_deref(),
                    Some((t.cert_file.as_path(), t.key_file.as_path())),
                )?;
                let client = reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .connect_timeout(timeouts.connect)
                    .pool_idle_timeout(Duration::from_secs(30))
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| crate::tls::TlsError::Config(format!("peer client: {e}")))?;
                HttpTransport::with_client(client, member, cluster, timeouts)
            }
            None => HttpTransport::new(member, cluster, timeouts),
        };
        let client_acceptor = config
            .client_tls
            .as_ref()
            .map(|t| crate::tls::server_config(t).map(tokio_rustls::TlsAcceptor::from))
            .transpose()?;
        let peer_acceptor = config
            .peer_tls
            .as_ref()
            .map(|t| crate::tls::server_config(t).map(tokio_rustls::TlsAcceptor::from))
            .transpose()?;
        let node = KvNode::start(
            rc,
            KvStateMachine::new(hub.clone(), config.watch_history),
            Arc::new(transport.clone()),
        )
        .await?;
        if config.force_new_cluster {
            // Only once the log carries the new identity.
            let dir = config.data_dir.clone();
            let fresh = StoredIdentity {
                from_backup: false,
                ..ident
            };
            tokio::task::spawn_blocking(move || write_identity(&dir, &fresh))
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))??;
            tracing::warn!(
                member_id = %format!("{member:x}"),
                cluster_id = %format!("{cluster:x}"),
                "forced a new one-member cluster from the existing data; remove --force-new-cluster for later starts"
            );
        }
        let identity = Identity {
            name: config.name.clone(),
            member_id: member,
            cluster_id: cluster,
            peer_urls,
            client_urls: advertised,
        };
        let core = Arc::new(KvCore::new(node, hub, identity, request_timeout));
        let peers = Arc::new(Cluster::new(
            transport.clone(),
            config.initial_cluster_token.clone(),
        ));
        core.set_cluster(peers.clone());
        let (stop, stop_rx) = signal::channel(false);
        let mut tasks = JoinSet::new();
        for (l, https) in peer_listeners {
            if let Ok(a) = l.local_addr() {
                tracing::info!(addr = %a, tls = https, "listening for peers");
            }
            let app = cluster::peer_router(core.clone(), peers.clone());
            let tls = if https { peer_acceptor.clone() } else { None };
            tasks.spawn(cluster::serve_peers(l, app, stop_rx.clone(), tls));
        }
        tasks.spawn(cluster::maintain_membership(
            core.clone(),
            peers.clone(),
            stop_rx.clone(),
        ));
        if let Err(e) = core
            .node()
            .wait_for_leader(config.election_timeout * 10)
            .await
        {
            tracing::warn!(error = %e, "no leader yet; serving anyway");
        } else {
            // As etcd, publish name and client URLs before serving, so
            // that a member answering /health is listed with them.
            let published = |c: &KvCore| {
                let id = c.identity();
                c.node()
                    .members()
                    .get(&id.member_id)
                    .is_none_or(|n| n.name == id.name && n.client_urls == id.client_urls)
            };
            let until = tokio::time::Instant::now() + config.election_timeout * 10;
            while !published(&core) && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        core.observe_leader();
        tracing::info!(
            name = %config.name,
            member_id = %format!("{member:x}"),
            cluster_id = %format!("{cluster:x}"),
            "member started"
        );

        let state = HttpState {
            core: core.clone(),
            cors: Arc::new(config.cors.clone()),
            metrics: Arc::new(HttpMetrics::default()),
        };
        for (listener, url) in listeners {
            tracing::info!(%url, "serving client requests");
            let tls = if url.starts_with("https://") {
                client_acceptor.clone()
            } else {
                None
            };
            tasks.spawn(accept_loop(listener, state.clone(), stop_rx.clone(), tls));
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

/// Serves one client connection (plain or TLS) until it ends or `stop`.
async fn serve_client_conn<IO>(
    io: IO,
    state: HttpState,
    app: axum::Router,
    mut stop: signal::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
        .serve_connection(TokioIo::new(io), svc);
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
}

async fn accept_loop(
    listener: TcpListener,
    state: HttpState,
    mut stop: signal::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
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
                let stop = stop.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    match tls {
                        None => serve_client_conn(sock, state, app, stop).await,
                        Some(acceptor) => {
                            // A handshake that stalls must not hold a slot forever.
                            let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await;
                            match hs {
                                Ok(Ok(tls_sock)) => serve_client_conn(tls_sock, state, app, stop).await,
                                Ok(Err(e)) => tracing::info!(error = %e, "rejected a client connection: TLS handshake failed"),
                                Err(_) => tracing::info!("rejected a client connection: TLS handshake timed out"),
                            }
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

/// `--initial-cluster-state existing` on a first start: asks the other
/// members listed in `--initial-cluster` for the member list and the
/// cluster ID, and finds this member in it by its peer URLs (it must have
/// been added with `member add` first). Returns member and cluster ID.
async fn join_existing(config: &ServerConfig) -> Result<(u64, u64), ServerError> {
    let mut mine = config.initial_advertise_peer_urls.clone();
    mine.sort();
    let listed = config.initial_members()?;
    let others: Vec<String> = listed
        .iter()
        .filter(|(name, _)| *name != config.name)
        .flat_map(|(_, urls)| urls.clone())
        .collect();
    if others.is_empty() {
        return Err(ConfigError::Invalid(
            "--initial-cluster-state existing needs the other members in --initial-cluster".into(),
        )
        .into());
    }
    let wait = config.election_timeout * 5 + Duration::from_secs(5);
    let (cluster, members) = fetch_cluster(&others, wait)
        .await
        .map_err(ConfigError::Invalid)?;
    let described = || {
        members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_urls.join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if members.len() != listed.len() {
        return Err(ConfigError::Invalid(format!(
            "error validating peerURLs {{ClusterID:{cluster:x} Members:[{}]}}: member count is unequal",
            described()
        ))
        .into());
    }
    let found = members.iter().find(|m| {
        let mut p = m.peer_urls.clone();
        p.sort();
        p == mine
    });
    let Some(me) = found else {
        return Err(ConfigError::Invalid(format!(
            "error validating peerURLs {{ClusterID:{cluster:x} Members:[{}]}}: this member's peer URLs {} are not in the cluster; add it first with `etcdctl member add {} {}`",
            described(),
            mine.join(","),
            config.name,
            mine.join(",")
        ))
        .into());
    };
    let id = u64::from_str_radix(&me.id, 16).map_err(|_| {
        ConfigError::Invalid(format!("the cluster lists a bad member ID {:?}", me.id))
    })?;
    tracing::info!(member_id = %me.id, cluster_id = %format!("{cluster:x}"), "joining the existing cluster");
    Ok((id, cluster))
}

impl KvServerHandle {
    /// Resolves when this member has been removed from its cluster (it
    /// stops serving as a member; the daemon exits).
    pub async fn removed(&self) {
        let mut rx = match self.core.cluster() {
            Some(c) => c.transport().removed(),
            None => return std::future::pending().await,
        };
        if rx.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

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
