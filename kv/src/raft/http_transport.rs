//! Peer messaging over HTTP: the [`Transport`] that real members use.
//!
//! Each Raft RPC is one `POST` to the target's peer URL (`/raft/append`,
//! `/raft/vote`, `/raft/snapshot`) with a serde (JSON) body, answered with
//! the JSON of openraft's `Result`, so remote Raft errors (a higher term, a
//! stopped peer) arrive intact. Every request names the sender, the target
//! and the cluster (`X-Server-From`, `X-Raft-To`, `X-Etcd-Cluster-Id`); the
//! receiver refuses a message for another cluster or another member with
//! 412 and a message for a removed member with 410, so a member started
//! with the wrong `--initial-cluster-token` or a stale data directory can
//! never join, and a removed member learns that it was removed.
//!
//! HTTP keeps the peer port debuggable with curl and lets TLS arrive as a
//! client configuration: [`HttpTransport::with_client`] takes any
//! `reqwest::Client`, e.g. one built with `use_preconfigured_tls` from a
//! rustls `ClientConfig`.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::network::{RpcResult, Transport};
use super::types::{PeerNode, TypeConfig};

/// Header naming the cluster a peer message belongs to (hex, as etcd).
pub const HEADER_CLUSTER_ID: &str = "x-etcd-cluster-id";
/// Header naming the sending member (hex).
pub const HEADER_FROM: &str = "x-server-from";
/// Header naming the member the message is meant for (hex).
pub const HEADER_TO: &str = "x-raft-to";

pub const PATH_APPEND: &str = "/raft/append";
pub const PATH_VOTE: &str = "/raft/vote";
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";

/// Why a peer request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No peer URL of the target answered (refused, timed out, reset).
    #[error("peer {target:x} unreachable: {reason}")]
    Unreachable { target: u64, reason: String },
    /// The request may have reached the target, but no answer came back
    /// (reset, timeout or death mid-request): whatever it asked for may
    /// or may not have happened, so it must not be sent again blindly.
    #[error("peer {target:x} did not answer: {reason}")]
    Lost { target: u64, reason: String },
    /// The target belongs to another cluster or is another member: this
    /// member must not talk to it.
    #[error("peer {target:x} refused the message: {reason}")]
    Rejected { target: u64, reason: String },
    /// The target says this member was removed from the cluster.
    #[error("this member has been permanently removed from the cluster (told by {target:x})")]
    Removed { target: u64 },
    /// The target answered something that is not what was asked.
    #[error("peer {target:x} answered badly: {reason}")]
    Protocol { target: u64, reason: String },
}

/// Round-trip statistics of one follower, for `/v2/stats/leader`.
#[derive(Debug, Clone, Default)]
struct Follower {
    success: u64,
    fail: u64,
    current: f64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

/// `/v2/stats/leader`'s view of one follower (milliseconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FollowerStats {
    pub latency: LatencyStats,
    pub counts: CountStats,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencyStats {
    pub current: f64,
    pub average: f64,
    pub standard_deviation: f64,
    pub minimum: f64,
    pub maximum: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CountStats {
    pub fail: u64,
    pub success: u64,
}

/// Counters shared by the transport (sending side) and the peer server
/// (receiving side).
#[derive(Default)]
pub struct PeerStats {
    followers: Mutex<HashMap<u64, Follower>>,
    sent_append: AtomicU64,
    recv_append: AtomicU64,
}

impl PeerStats {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Follower>> {
        self.followers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, target: u64, elapsed: Option<Duration>) {
        let mut g = self.lock();
        let f = g.entry(target).or_default();
        match elapsed {
            Some(d) => {
                let ms = d.as_secs_f64() * 1000.0;
                if f.success == 0 || ms < f.min {
                    f.min = ms;
                }
                if ms > f.max {
                    f.max = ms;
                }
                f.success += 1;
                f.current = ms;
                f.sum += ms;
                f.sum_sq += ms * ms;
            }
            None => f.fail += 1,
        }
    }

    /// A received `AppendEntries` (for `recvAppendRequestCnt`).
    pub fn note_received_append(&self) {
        self.recv_append.fetch_add(1, Ordering::Relaxed);
    }

    pub fn received_appends(&self) -> u64 {
        self.recv_append.load(Ordering::Relaxed)
    }

    pub fn sent_appends(&self) -> u64 {
        self.sent_append.load(Ordering::Relaxed)
    }

    /// The follower's statistics as this member has measured them.
    pub fn follower(&self, id: u64) -> FollowerStats {
        let f = self.lock().get(&id).cloned().unwrap_or_default();
        let n = f.success as f64;
        let (average, sd) = if f.success == 0 {
            (0.0, 0.0)
        } else {
            let avg = f.sum / n;
            (avg, (f.sum_sq / n - avg * avg).max(0.0).sqrt())
        };
        FollowerStats {
            latency: LatencyStats {
                current: f.current,
                average,
                standard_deviation: sd,
                minimum: f.min,
                maximum: f.max,
            },
            counts: CountStats {
                fail: f.fail,
                success: f.success,
            },
        }
    }
}

/// Timeouts of the peer channel.
#[derive(Debug, Clone, Copy)]
pub struct PeerTimeouts {
    /// Dialing one peer URL.
    pub connect: Duration,
    /// A vote or an append (heartbeats included).
    pub rpc: Duration,
    /// One snapshot chunk.
    pub snapshot: Duration,
}

impl PeerTimeouts {
    /// Derived from the election timeout: a peer that cannot answer a
    /// heartbeat within it is as good as gone for Raft anyway.
    pub fn for_election_timeout(et: Duration) -> Self {
        PeerTimeouts {
            connect: (et / 2).max(Duration::from_millis(200)),
            rpc: (et * 2).max(Duration::from_secs(1)),
            snapshot: Duration::from_secs(120),
        }
    }
}

struct Inner {
    client: reqwest::Client,
    member_id: u64,
    cluster_id: u64,
    timeouts: PeerTimeouts,
    stats: Arc<PeerStats>,
    removed: watch::Sender<bool>,
    /// When a refusal by each peer was last logged (they repeat at the
    /// heartbeat rate).
    logged: Mutex<HashMap<u64, Instant>>,
}

/// The HTTP [`Transport`]; cheap to clone.
#[derive(Clone)]
pub struct HttpTransport {
    inner: Arc<Inner>,
}

impl HttpTransport {
    /// A transport for member `member_id` of cluster `cluster_id`, plain
    /// HTTP.
    pub fn new(member_id: u64, cluster_id: u64, timeouts: PeerTimeouts) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Self::with_client(client, member_id, cluster_id, timeouts)
    }

    /// As [`HttpTransport::new`] over a caller-built client (TLS).
    pub fn with_client(
        client: reqwest::Client,
        member_id: u64,
        cluster_id: u64,
        timeouts: PeerTimeouts,
    ) -> Self {
        HttpTransport {
            inner: Arc::new(Inner {
                client,
                member_id,
                cluster_id,
                timeouts,
                stats: Arc::new(PeerStats::default()),
                removed: watch::channel(false).0,
                logged: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn member_id(&self) -> u64 {
        self.inner.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    pub fn stats(&self) -> &Arc<PeerStats> {
        &self.inner.stats
    }

    pub fn timeouts(&self) -> PeerTimeouts {
        self.inner.timeouts
    }

    /// Becomes `true` when a peer tells this member it was removed.
    pub fn removed(&self) -> watch::Receiver<bool> {
        self.inner.removed.subscribe()
    }

    /// Raises the removed signal (also used when this member sees itself
    /// leave the membership).
    pub fn mark_removed(&self) {
        self.inner.removed.send_replace(true);
    }

    /// One `POST` to `path` on the first of `node`'s peer URLs that
    /// answers, with the identity headers; returns status and body.
    pub async fn post(
        &self,
        target: u64,
        node: &PeerNode,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, bytes::Bytes), PeerError> {
        self.inner.post(target, node, path, body, timeout).await
    }

    fn rpc<Req, Resp, E>(
        &self,
        target: u64,
        node: &PeerNode,
        path: &'static str,
        req: Req,
    ) -> BoxFuture<'static, RpcResult<Resp, E>>
    where
        Req: Serialize + Send + 'static,
        Resp: DeserializeOwned + Send + 'static,
        E: std::error::Error + DeserializeOwned + Send + 'static,
    {
        let inner = self.inner.clone();
        let node = node.clone();
        async move {
            let timeout = if path == PATH_SNAPSHOT {
                inner.timeouts.snapshot
            } else {
                inner.timeouts.rpc
            };
            let body = serde_json::to_vec(&req).map_err(|e| {
                RPCError::Network(NetworkError::new(&io::Error::other(format!(
                    "cannot encode {path}: {e}"
                ))))
            })?;
            let is_append = path == PATH_APPEND;
            if is_append {
                inner.stats.sent_append.fetch_add(1, Ordering::Relaxed);
            }
            let start = Instant::now();
            let answer = inner.post(target, &node, path, body, timeout).await;
            let result = match answer {
                Ok((200, bytes)) => match serde_json::from_slice::<Result<Resp, E>>(&bytes) {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(target, e))),
                    Err(e) => Err(RPCError::Network(NetworkError::new(&io::Error::other(
                        format!("peer {target:x} sent an undecodable answer to {path}: {e}"),
                    )))),
                },
                Ok((status, bytes)) => Err(inner.refused(target, status, &bytes)),
                Err(e) => Err(RPCError::Unreachable(Unreachable::new(&io::Error::other(
                    e.to_string(),
                )))),
            };
            if is_append {
                inner
                    .stats
                    .record(target, result.is_ok().then(|| start.elapsed()));
            }
            result
        }
        .boxed()
    }
}

impl Inner {
    async fn post(
        &self,
        target: u64,
        node: &PeerNode,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, bytes::Bytes), PeerError> {
        let mut last = String::from("the member has no peer URLs");
        for base in &node.peer_urls {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let sent = self
                .client
                .post(&url)
                .timeout(timeout)
                .header(HEADER_CLUSTER_ID, format!("{:x}", self.cluster_id))
                .header(HEADER_FROM, format!("{:x}", self.member_id))
                .header(HEADER_TO, format!("{target:x}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    return match resp.bytes().await {
                        Ok(b) => {
                            if status == 410 {
                                self.removed.send_replace(true);
                                return Err(PeerError::Removed { target });
                            }
                            if status == 412 {
                                let reason = String::from_utf8_lossy(&b).trim().to_owned();
                                self.log_refusal(target, &reason);
                                return Err(PeerError::Rejected { target, reason });
                            }
                            Ok((status, b))
                        }
                        Err(e) => Err(PeerError::Lost {
                            target,
                            reason: format!("{url}: {e}"),
                        }),
                    };
                }
                // No connection: nothing was sent; the next URL may answer.
                Err(e) if e.is_connect() => last = format!("{url}: {e}"),
                // The request may have been delivered (a forwarded proposal
                // the leader committed before dying): not retryable here.
                Err(e) => {
                    return Err(PeerError::Lost {
                        target,
                        reason: format!("{url}: {e}"),
                    })
                }
            }
        }
        Err(PeerError::Unreachable {
            target,
            reason: last,
        })
    }

    fn log_refusal(&self, target: u64, reason: &str) {
        let mut g = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let due = g
            .get(&target)
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
        if due {
            g.insert(target, Instant::now());
            tracing::error!(
                peer = %format!("{target:x}"),
                "peer refused our messages: {reason}; check --initial-cluster and --initial-cluster-token (a member never joins another cluster)"
            );
        }
    }

    fn refused<E: std::error::Error>(
        &self,
        target: u64,
        status: u16,
        body: &[u8],
    ) -> RPCError<u64, PeerNode, E> {
        RPCError::Unreachable(Unreachable::new(&io::Error::other(format!(
            "peer {target:x} answered {status}: {}",
            String::from_utf8_lossy(body).trim()
        ))))
    }
}

impl Transport for HttpTransport {
    fn append_entries(
        &self,
        target: u64,
        node: &PeerNode,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<'static, RpcResult<AppendEntriesResponse<u64>>> {
        self.rpc(target, node, PATH_APPEND, req)
    }

    fn vote(
        &self,
        target: u64,
        node: &PeerNode,
        req: VoteRequest<u64>,
    ) -> BoxFuture<'static, RpcResult<VoteResponse<u64>>> {
        self.rpc(target, node, PATH_VOTE, req)
    }

    fn install_snapshot(
        &self,
        target: u64,
        node: &PeerNode,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> BoxFuture<
        'static,
        RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(target, node, PATH_SNAPSHOT, req)
    }
}

/// What a receiver concludes from a peer message's identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCheck {
    Accept {
        from: u64,
    },
    /// 412 with this text.
    WrongCluster(String),
    /// 410: the sender was removed.
    Removed,
}

/// Checks the identity headers of a peer message received by member `me`
/// of cluster `cluster`; `is_removed` says whether an id was removed.
pub fn check_peer_headers(
    headers: &reqwest::header::HeaderMap,
    me: u64,
    cluster: u64,
    is_removed: impl Fn(u64) -> bool,
) -> PeerCheck {
    let hex = |name: &str| -> Option<u64> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
    };
    let Some(theirs) = hex(HEADER_CLUSTER_ID) else {
        return PeerCheck::WrongCluster("missing or malformed X-Etcd-Cluster-Id".into());
    };
    if theirs != cluster {
        return PeerCheck::WrongCluster(format!(
            "cluster ID mismatch: this member belongs to cluster {cluster:x}, the message to cluster {theirs:x}"
        ));
    }
    if let Some(to) = hex(HEADER_TO) {
        if to != me {
            return PeerCheck::WrongCluster(format!(
                "member ID mismatch: this is member {me:x}, the message is for {to:x}"
            ));
        }
    }
    let Some(from) = hex(HEADER_FROM) else {
        return PeerCheck::WrongCluster("missing or malformed X-Server-From".into());
    };
    if is_removed(from) {
        return PeerCheck::Removed;
    }
    PeerCheck::Accept { from }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cluster: &str, from: &str, to: Option<&str>) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(HEADER_CLUSTER_ID, cluster.parse().unwrap());
        h.insert(HEADER_FROM, from.parse().unwrap());
        if let Some(t) = to {
            h.insert(HEADER_TO, t.parse().unwrap());
        }
        h
    }

    #[test]
    fn peer_identity_is_checked() {
        let ok = headers("abc", "1", Some("2"));
        assert_eq!(
            check_peer_headers(&ok, 2, 0xabc, |_| false),
            PeerCheck::Accept { from: 1 }
        );
        assert!(matches!(
            check_peer_headers(&ok, 2, 0xabd, |_| false),
            PeerCheck::WrongCluster(m) if m.contains("cluster ID mismatch")
        ));
        assert!(matches!(
            check_peer_headers(&ok, 3, 0xabc, |_| false),
            PeerCheck::WrongCluster(m) if m.contains("member ID mismatch")
        ));
        assert_eq!(
            check_peer_headers(&ok, 2, 0xabc, |id| id == 1),
            PeerCheck::Removed
        );
        let bad = headers("zz", "1", None);
        assert!(matches!(
            check_peer_headers(&bad, 2, 0xabc, |_| false),
            PeerCheck::WrongCluster(_)
        ));
        assert!(matches!(
            check_peer_headers(&reqwest::header::HeaderMap::new(), 2, 0xabc, |_| false),
            PeerCheck::WrongCluster(_)
        ));
    }

    /// A peer that reads the request and dies without answering: the
    /// request may have taken effect, so it is `Lost`, never `Unreachable`
    /// (which callers retry). Found by keelson-faults seed 6: a forwarded
    /// proposal committed by a leader killed before answering was proposed
    /// again and applied twice (RELIABILITY.md).
    #[tokio::test]
    async fn a_request_without_answer_is_lost_not_unreachable() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            // Nobody listens any more once the request is dropped unanswered.
            drop(listener);
            drop(s);
        });
        let t = HttpTransport::new(
            1,
            2,
            PeerTimeouts {
                connect: Duration::from_secs(1),
                rpc: Duration::from_secs(1),
                snapshot: Duration::from_secs(1),
            },
        );
        let node = PeerNode::new("x", vec![format!("http://{addr}")]);
        let r = t
            .post(3, &node, "/propose", b"{}".to_vec(), Duration::from_secs(5))
            .await;
        assert!(matches!(r, Err(PeerError::Lost { .. })), "{r:?}");

        // Nobody listening: nothing was sent, retrying is safe.
        let dead = PeerNode::new("y", vec![format!("http://{addr}")]);
        let r = t
            .post(3, &dead, "/propose", b"{}".to_vec(), Duration::from_secs(5))
            .await;
        assert!(matches!(r, Err(PeerError::Unreachable { .. })), "{r:?}");
    }

    #[test]
    fn follower_latency_statistics() {
        let s = PeerStats::default();
        s.record(7, Some(Duration::from_millis(2)));
        s.record(7, Some(Duration::from_millis(4)));
        s.record(7, None);
        let f = s.follower(7);
        assert_eq!(
            f.counts,
            CountStats {
                fail: 1,
                success: 2
            }
        );
        assert!((f.latency.average - 3.0).abs() < 1e-9);
        assert!((f.latency.standard_deviation - 1.0).abs() < 1e-9);
        assert!((f.latency.minimum - 2.0).abs() < 1e-9);
        assert!((f.latency.maximum - 4.0).abs() < 1e-9);
        assert!((f.latency.current - 4.0).abs() < 1e-9);
        assert_eq!(s.follower(8).counts.success, 0);
    }
}
