//! Proxy mode (`--proxy on|readonly`, kv.md §10.4): a process that takes
//! no part in consensus and forwards every client request, watches
//! included, to the members' advertised client URLs.
//!
//! The member list comes from the peers (`GET <peer>/members`), is
//! re-fetched every `refresh_interval` and stored in
//! `<data-dir>/proxy/cluster`; an endpoint that fails to answer is held out
//! for `failure_wait` and the request is retried on the next one, as
//! etcd's reverse proxy does. `readonly` answers every non-GET with `501`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, StatusCode};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::server::{fetch_cluster, parse_url, random_id};

/// A proxy's settings, named after etcd's flags.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// `--listen-client-urls`.
    pub listen_client_urls: Vec<String>,
    /// Peer URLs to ask for the member list (from `--initial-cluster` or
    /// discovery).
    pub peer_urls: Vec<String>,
    /// `--proxy readonly`.
    pub readonly: bool,
    /// `--proxy-refresh-interval`.
    pub refresh_interval: Duration,
    /// `--proxy-failure-wait`.
    pub failure_wait: Duration,
    /// `--proxy-dial-timeout` (zero: none).
    pub dial_timeout: Duration,
    /// `--proxy-write-timeout`: how long a non-GET may take (zero: none).
    pub write_timeout: Duration,
    /// `--data-dir`: `<data-dir>/proxy/cluster` keeps the peer list.
    pub data_dir: Option<PathBuf>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] crate::server::ConfigError),
    #[error("listen tcp {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("proxy: {0}")]
    Other(String),
}

/// `<data-dir>/proxy/cluster`, as etcd writes it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredPeers {
    #[serde(rename = "PeerURLs")]
    peer_urls: Vec<String>,
}

struct Endpoint {
    url: String,
    failed_until: Option<Instant>,
}

struct Shared {
    config: ProxyConfig,
    client: reqwest::Client,
    endpoints: Mutex<Vec<Endpoint>>,
    peers: Mutex<Vec<String>>,
}

impl Shared {
    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, Vec<Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Endpoints not held out, in their (shuffled) order.
    fn available(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock_endpoints()
            .iter()
            .filter(|e| e.failed_until.is_none_or(|t| t <= now))
            .map(|e| e.url.clone())
            .collect()
    }

    fn mark_failed(&self, url: &str) {
        let until = Instant::now() + self.config.failure_wait;
        if let Some(e) = self.lock_endpoints().iter_mut().find(|e| e.url == url) {
            e.failed_until = Some(until);
        }
        tracing::warn!(endpoint = %url, "proxy: endpoint failed, holding it out");
    }

    /// Fetches the member list and replaces the endpoints.
    async fn refresh(&self) {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let members = match fetch_cluster(&peers, Duration::ZERO).await {
            Ok((_, m)) => m,
            Err(e) => {
                tracing::warn!(error = %e, "proxy: could not refresh the member list");
                return;
            }
        };
        let mut clients: Vec<String> = members
            .iter()
            .flat_map(|m| m.client_urls.iter().cloned())
            .collect();
        let mut new_peers: Vec<String> = members
            .iter()
            .flat_map(|m| m.peer_urls.iter().cloned())
            .collect();
        new_peers.sort();
        new_peers.dedup();
        if clients.is_empty() {
            return;
        }
        // Spread the clients of many proxies over the members.
        let r = random_id() as usize;
        let n = clients.len();
        clients.rotate_left(r % n);
        {
            let mut eps = self.lock_endpoints();
            let old: Vec<(String, Option<Instant>)> = eps
                .iter()
                .map(|e| (e.url.clone(), e.failed_until))
                .collect();
            *eps = clients
                .into_iter()
                .map(|url| {
                    let failed_until = old.iter().find(|(u, _)| *u == url).and_then(|(_, f)| *f);
                    Endpoint { url, failed_until }
                })
                .collect();
        }
        if !new_peers.is_empty() {
            *self.peers.lock().unwrap_or_else(|e| e.into_inner()) = new_peers.clone();
            if let Some(dir) = &self.config.data_dir {
                store_peers(dir.clone(), new_peers).await;
            }
        }
    }
}

async fn store_peers(data_dir: PathBuf, peers: Vec<String>) {
    let _ = tokio::task::spawn_blocking(move || {
        let dir = data_dir.join("proxy");
        let body = serde_json::to_vec(&StoredPeers { peer_urls: peers }).unwrap_or_default();
        let tmp = dir.join("cluster.tmp");
        let r = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&tmp, body))
            .and_then(|()| std::fs::rename(&tmp, dir.join("cluster")));
        if let Err(e) = r {
            tracing::warn!(error = %e, "proxy: cannot store the peer list");
        }
    })
    .await;
}

/// The peer URLs stored by an earlier run, if any.
pub fn stored_peers(data_dir: &std::path::Path) -> Option<Vec<String>> {
    let b = std::fs::read(data_dir.join("proxy").join("cluster")).ok()?;
    serde_json::from_slice::<StoredPeers>(&b)
        .ok()
        .map(|s| s.peer_urls)
        .filter(|p| !p.is_empty())
}

/// A running proxy.
pub struct ProxyHandle {
    client_urls: Vec<String>,
    stop: signal::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

impl ProxyHandle {
    /// The client URLs actually bound.
    pub fn client_urls(&self) -> &[String] {
        &self.client_urls
    }

    /// Stops accepting and ends every forwarded request.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let mut t = self.tasks.lock().await;
        t.abort_all();
        while t.join_next().await.is_some() {}
    }
}

/// Starts a proxy: binds the client URLs, fetches the member list and
/// serves until [`ProxyHandle::shutdown`].
pub async fn start(mut config: ProxyConfig) -> Result<ProxyHandle, ProxyError> {
    if let Some(stored) = config.data_dir.as_deref().and_then(stored_peers) {
        for p in stored {
            if !config.peer_urls.contains(&p) {
                config.peer_urls.push(p);
            }
        }
    }
    if config.peer_urls.is_empty() {
        return Err(ProxyError::Other("no peer URLs to find the members".into()));
    }
    let mut listeners = Vec::new();
    for u in &config.listen_client_urls {
        let hp = parse_url(u)?;
        let addr = format!("{}:{}", hp.host, hp.port);
        let l = TcpListener::bind(addr.as_str())
            .await
            .map_err(|source| ProxyError::Listen {
                addr: addr.clone(),
                source,
            })?;
        let port = l.local_addr().map(|a| a.port()).unwrap_or(hp.port);
        let host = if hp.host.contains(':') {
            format!("[{}]", hp.host)
        } else {
            hp.host.clone()
        };
        listeners.push((l, format!("{}://{host}:{port}", hp.scheme)));
    }
    let mut b = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30));
    if !config.dial_timeout.is_zero() {
        b = b.connect_timeout(config.dial_timeout);
    }
    let client = b.build().map_err(|e| ProxyError::Other(e.to_string()))?;
    tracing::info!("proxy: this proxy supports v2 API only!");
    let shared = Arc::new(Shared {
        peers: Mutex::new(config.peer_urls.clone()),
        config,
        client,
        endpoints: Mutex::new(Vec::new()),
    });
    // A first member list before serving, if the cluster answers soon.
    for _ in 0..20 {
        shared.refresh().await;
        if !shared.available().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (stop, stop_rx) = signal::channel(false);
    let mut tasks = JoinSet::new();
    let client_urls = listeners.iter().map(|(_, u)| u.clone()).collect();
    for (l, url) in listeners {
        tracing::info!(%url, "proxy: listening for client requests");
        tasks.spawn(accept_loop(l, shared.clone(), stop_rx.clone()));
    }
    tasks.spawn(refresher(shared, stop_rx));
    Ok(ProxyHandle {
        client_urls,
        stop,
        tasks: tokio::sync::Mutex::new(tasks),
    })
}

/// Resolves when the stop signal is raised (or its sender is gone).
async fn stopped(rx: &mut signal::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn refresher(shared: Arc<Shared>, mut stop: signal::Receiver<bool>) {
    let every = shared
        .config
        .refresh_interval
        .max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(every) => shared.refresh().await,
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: signal::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(forward(&shared, req.map(Body::new)).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .title_case_headers(true)
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

fn plain(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r
}

/// Forwards one request to the first endpoint that answers.
async fn forward(shared: &Shared, req: axum::http::Request<Body>) -> Response<Body> {
    if shared.config.readonly && req.method() != Method::GET {
        return plain(StatusCode::NOT_IMPLEMENTED, String::new());
    }
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("proxy: {e}\n")),
    };
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let mut endpoints = shared.available();
    if endpoints.is_empty() {
        // Everything is held out: refresh and try all rather than refuse.
        shared.refresh().await;
        endpoints = shared
            .lock_endpoints()
            .iter()
            .map(|e| e.url.clone())
            .collect();
    }
    let tried = endpoints.len();
    for ep in endpoints {
        let url = format!("{}{target}", ep.trim_end_matches('/'));
        let mut rb = shared
            .client
            .request(parts.method.clone(), &url)
            .headers(forward_headers(&parts.headers))
            .body(body.clone());
        if parts.method != Method::GET && !shared.config.write_timeout.is_zero() {
            rb = rb.timeout(shared.config.write_timeout);
        }
        match rb.send().await {
            Ok(resp) => return relay(resp).await,
            Err(e) => {
                tracing::debug!(endpoint = %ep, error = %e, "proxy: request failed");
                shared.mark_failed(&ep);
            }
        }
    }
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("proxy: unable to get response from {tried} endpoint(s)\n"),
    )
}

fn forward_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = h.clone();
    for name in HOP_HEADERS {
        out.remove(*name);
    }
    out
}

/// Relays the member's answer: whole when its length is known (so the
/// client sees the same framing), streamed otherwise (watches are long
/// polls).
async fn relay(resp: reqwest::Response) -> Response<Body> {
    let status = resp.status();
    let mut headers = resp.headers().clone();
    let known_length = headers.contains_key("content-length");
    for name in HOP_HEADERS {
        headers.remove(*name);
    }
    if known_length {
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("proxy: {e}\n")),
        };
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        return out;
    }
    let stream = futures::stream::unfold(Some(resp), |r| async move {
        let mut r = r?;
        match r.chunk().await {
            Ok(Some(c)) => Some((Ok::<Bytes, std::io::Error>(c), Some(r))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    let mut out = Response::new(Body::from_stream(stream));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
