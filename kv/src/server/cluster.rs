//! Everything a member does with its peers beyond Raft's own messages:
//! the peer port's routes, forwarding to the leader, runtime membership
//! changes, and the background tasks that keep the membership current.
//!
//! **Writes on a follower** are forwarded over the peer channel: the
//! follower sends the already-encoded proposal to the leader
//! (`POST /keelson/propose`), the leader proposes it like its own, and the
//! follower answers its client only once it has applied that index itself,
//! so a client that writes to one member and reads from it sees its write
//! (etcd's behaviour). Forwarding the proposal rather than the client
//! request keeps one code path for HTTP and embedded clients and keeps
//! client URLs out of the data path. **Linearizable reads** on a follower
//! ask the leader for a read index (`POST /keelson/readindex`, the leader
//! runs openraft's `ensure_linearizable`) and wait to apply up to it.
//!
//! **Membership** follows etcd's API on top of openraft's joint consensus:
//! `member add` adds a *learner* (it does not count towards the quorum
//! until it has caught up, which is safer than etcd, where an unstarted
//! member immediately weighs on the quorum); the leader promotes a learner
//! to voter once its log matches. `member remove` removes the voter (or
//! learner) outright. A starting member publishes its name and client URLs
//! into the membership (etcd's "published local member"), which is how
//! every member lists every member's client URLs.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use axum::routing::any;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::core::KvCore;
use super::machine::KvStateMachine;
use crate::client::Member;
use crate::raft::http_transport::{
    check_peer_headers, PeerCheck, HEADER_CLUSTER_ID, PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE,
};
use crate::raft::{HttpTransport, KvNode, NodeError, PeerError, PeerNode};

const PATH_PROPOSE: &str = "/keelson/propose";
const PATH_READ_INDEX: &str = "/keelson/readindex";
const PATH_MEMBERS_OP: &str = "/keelson/members";
/// The largest peer message accepted (a snapshot chunk is 3 MiB before
/// JSON encoding).
const MAX_PEER_BODY: usize = 64 << 20;

type Node = KvNode<KvStateMachine>;

/// etcd's ID for a member added at runtime: SHA-1 over the sorted peer
/// URLs, the cluster token and the Unix time in seconds (etcd's
/// `NewMember` with a time), first 8 bytes big-endian.
pub fn member_id_at(peer_urls: &[String], token: &str, unix_secs: i64) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(token.as_bytes());
    h.update(unix_secs.to_string().as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b).max(1)
}

/// A membership change, as the leader executes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberOp {
    Add {
        peer_urls: Vec<String>,
    },
    Remove {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    /// A started member's name and client URLs.
    Publish {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
}

/// The result of a [`MemberOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberOutcome {
    Added {
        id: u64,
        node: PeerNode,
    },
    Done,
    /// Refused with this HTTP status and etcd's message.
    Refused {
        status: u16,
        message: String,
    },
    /// Ask the leader (internal: retried).
    NotLeader,
    /// Another membership change is in progress (internal: retried).
    Busy,
}

fn internal_error() -> MemberOutcome {
    MemberOutcome::Refused {
        status: 500,
        message: "Internal Server Error".into(),
    }
}

/// A forwarded proposal's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum ForwardReply {
    Ok { index: u64, reply: Vec<u8> },
    NotLeader,
    Timeout,
    Failed(String),
}

impl From<NodeError> for ForwardReply {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::NotLeader { .. } | NodeError::NoQuorum(_) => ForwardReply::NotLeader,
            NodeError::Timeout => ForwardReply::Timeout,
            other => ForwardReply::Failed(other.to_string()),
        }
    }
}

fn reply_error(r: ForwardReply) -> NodeError {
    match r {
        ForwardReply::NotLeader => NodeError::NotLeader { leader: None },
        ForwardReply::Timeout => NodeError::Timeout,
        ForwardReply::Failed(m) => NodeError::Raft(m),
        ForwardReply::Ok { .. } => NodeError::Raft("unexpected answer".into()),
    }
}

/// A member's link to its peers. See the module documentation.
pub struct Cluster {
    transport: HttpTransport,
    token: String,
    seen: Mutex<BTreeSet<u64>>,
    removed: Mutex<BTreeSet<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    pub fn new(transport: HttpTransport, token: impl Into<String>) -> Self {
        Cluster {
            transport,
            token: token.into(),
            seen: Mutex::new(BTreeSet::new()),
            removed: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn transport(&self) -> &HttpTransport {
        &self.transport
    }

    /// Whether `id` was a member and has been removed (as far as this
    /// member has seen).
    pub fn is_removed(&self, id: u64) -> bool {
        lock(&self.removed).contains(&id)
    }

    /// Notes the current membership; raises the removed signal when this
    /// member has left it.
    fn observe_membership(&self, node: &Node) {
        let ids: BTreeSet<u64> = node.members().into_keys().collect();
        let gone: Vec<u64> = {
            let mut seen = lock(&self.seen);
            seen.extend(ids.iter().copied());
            seen.difference(&ids).copied().collect()
        };
        if gone.is_empty() {
            return;
        }
        lock(&self.removed).extend(gone.iter().copied());
        if gone.contains(&node.member_id()) {
            self.transport.mark_removed();
        }
    }

    fn peer_of(node: &Node, id: u64) -> Option<PeerNode> {
        node.members().get(&id).cloned()
    }

    async fn call<T: for<'a> Deserialize<'a>>(
        &self,
        node: &Node,
        target: u64,
        path: &str,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<T, NodeError> {
        let Some(peer) = Self::peer_of(node, target) else {
            return Err(NodeError::NotLeader { leader: None });
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NodeError::Timeout);
        }
        match self.transport.post(target, &peer, path, body, left).await {
            Ok((200, b)) => serde_json::from_slice(&b)
                .map_err(|e| NodeError::Raft(format!("peer {target:x} answered badly: {e}"))),
            Ok((status, b)) => Err(NodeError::Raft(format!(
                "peer {target:x} answered {status}: {}",
                String::from_utf8_lossy(&b).trim()
            ))),
            // Nothing reached the leader: ask again once a leader is known.
            Err(PeerError::Unreachable { .. }) if Instant::now() < deadline => {
                Err(NodeError::NotLeader { leader: None })
            }
            Err(PeerError::Unreachable { .. }) => Err(NodeError::Timeout),
            // The leader may have applied it before it died or the link
            // broke: asking again could apply a proposal twice, so the
            // outcome is unknown, as etcd reports it ("request timed out").
            Err(PeerError::Lost { .. }) => Err(NodeError::Timeout),
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// Proposes `payload` through `leader` and waits until this member has
    /// applied the entry that carried it (or the deadline passes).
    pub(crate) async fn forward_propose(
        &self,
        node: &Node,
        leader: u64,
        payload: Vec<u8>,
        deadline: Instant,
    ) -> Result<(u64, Vec<u8>), NodeError> {
        match self
            .call(node, leader, PATH_PROPOSE, payload, deadline)
            .await?
        {
            ForwardReply::Ok { index, reply } => {
                wait_applied(node, index, deadline).await;
                Ok((index, reply))
            }
            other => Err(reply_error(other)),
        }
    }

    /// The leader's read index, once this member has applied up to it.
    pub(crate) async fn forward_read_index(
        &self,
        node: &Node,
        leader: u64,
        deadline: Instant,
    ) -> Result<u64, NodeError> {
        match self
            .call(node, leader, PATH_READ_INDEX, Vec::new(), deadline)
            .await?
        {
            ForwardReply::Ok { index, .. } => {
                if wait_applied(node, index, deadline).await {
                    Ok(index)
                } else {
                    Err(NodeError::Timeout)
                }
            }
            other => Err(reply_error(other)),
        }
    }

    /// Runs a membership change on the leader (forwarding it there when
    /// this member is not the leader), retrying through elections and
    /// concurrent changes until `deadline`.
    pub async fn member_op(&self, node: &Node, op: MemberOp, deadline: Instant) -> MemberOutcome {
        let body = serde_json::to_vec(&op).unwrap_or_default();
        loop {
            if Instant::now() >= deadline {
                tracing::warn!(?op, "membership change timed out");
                return internal_error();
            }
            let outcome = match node.leader_id() {
                Some(l) if l == node.member_id() => self.execute_local(node, &op).await,
                Some(l) => match self
                    .call::<MemberOutcome>(node, l, PATH_MEMBERS_OP, body.clone(), deadline)
                    .await
                {
                    Ok(o) => o,
                    Err(NodeError::NotLeader { .. }) => MemberOutcome::NotLeader,
                    Err(e) => {
                        tracing::warn!(error = %e, "forwarding a membership change failed");
                        MemberOutcome::NotLeader
                    }
                },
                None => MemberOutcome::NotLeader,
            };
            match outcome {
                MemberOutcome::NotLeader | MemberOutcome::Busy => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                done @ (MemberOutcome::Added { .. } | MemberOutcome::Done) => {
                    // Read-your-writes: the change is in this member's
                    // list before the client hears of it.
                    if let Some(l) = node.leader_id().filter(|l| *l != node.member_id()) {
                        let _ = self.forward_read_index(node, l, deadline).await;
                    }
                    return done;
                }
                other => return other,
            }
        }
    }

    /// Executes `op` if this member leads.
    async fn execute_local(&self, node: &Node, op: &MemberOp) -> MemberOutcome {
        if !node.is_leader() {
            return MemberOutcome::NotLeader;
        }
        let raft = node.raft();
        let members = node.members();
        let url_taken = |urls: &[String], except: Option<u64>| {
            members
                .iter()
                .filter(|(id, _)| Some(**id) != except)
                .any(|(_, n)| n.peer_urls.iter().any(|p| urls.contains(p)))
        };
        let refused = |status: u16, message: String| MemberOutcome::Refused { status, message };
        let result = match op {
            MemberOp::Add { peer_urls } => {
                let mut urls = peer_urls.clone();
                urls.sort();
                if url_taken(&urls, None) {
                    return refused(409, "membership: peerURL exists".into());
                }
                let id = member_id_at(&urls, &self.token, chrono::Utc::now().timestamp());
                if members.contains_key(&id) || self.is_removed(id) {
                    return refused(409, "membership: ID exists".into());
                }
                let peer = PeerNode::new("", urls);
                match raft.add_learner(id, peer.clone(), false).await {
                    Ok(_) => {
                        tracing::info!(member = %format!("{id:x}"), peer_urls = ?peer.peer_urls, "added member (as a learner until it catches up)");
                        return MemberOutcome::Added { id, node: peer };
                    }
                    Err(e) => Err(e),
                }
            }
            MemberOp::Remove { id } => {
                if self.is_removed(*id) {
                    return refused(410, format!("Member permanently removed: {id:x}"));
                }
                if !members.contains_key(id) {
                    return refused(404, format!("No such member: {id:x}"));
                }
                let voter = {
                    let m = raft.metrics();
                    let m = m.borrow();
                    let is_voter = m
                        .membership_config
                        .membership()
                        .voter_ids()
                        .any(|v| v == *id);
                    is_voter
                };
                let change = if voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([*id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([*id]))
                };
                let r = raft.change_membership(change, false).await;
                if r.is_ok() {
                    lock(&self.removed).insert(*id);
                    tracing::info!(member = %format!("{id:x}"), "removed member");
                }
                r.map(|_| ())
            }
            MemberOp::Update { id, peer_urls } => {
                let Some(old) = members.get(id) else {
                    return refused(404, format!("No such member: {id:x}"));
                };
                let mut urls = peer_urls.clone();
                urls.sort();
                if url_taken(&urls, Some(*id)) {
                    return refused(409, "membership: peerURL exists".into());
                }
                let new = PeerNode {
                    peer_urls: urls,
                    ..old.clone()
                };
                raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(*id, new)])), false)
                    .await
                    .map(|_| ())
            }
            MemberOp::Publish {
                id,
                name,
                client_urls,
            } => {
                let Some(old) = members.get(id) else {
                    return refused(404, format!("No such member: {id:x}"));
                };
                let new = PeerNode {
                    name: name.clone(),
                    client_urls: client_urls.clone(),
                    ..old.clone()
                };
                raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(*id, new)])), false)
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => MemberOutcome::Done,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                MemberOutcome::NotLeader
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) => MemberOutcome::Busy,
            Err(e) => {
                tracing::warn!(error = %e, ?op, "membership change refused");
                internal_error()
            }
        }
    }
}

/// Waits until `node` has applied `index`; false on the deadline.
pub(crate) async fn wait_applied(node: &Node, index: u64, deadline: Instant) -> bool {
    let mut rx = node.raft().metrics();
    loop {
        let applied = rx.borrow().last_applied.map_or(0, |l| l.index);
        if applied >= index {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return false,
        }
    }
}

/// The member list as etcd's `/members` peer endpoint and `/v2/members`
/// show it (ascending IDs; this member's client URLs from its identity).
pub(crate) fn member_list(core: &KvCore) -> Vec<Member> {
    let me = core.identity();
    core.node()
        .members()
        .into_iter()
        .map(|(id, n)| Member {
            id: format!("{id:x}"),
            client_urls: if id == me.member_id {
                me.client_urls.clone()
            } else {
                n.client_urls
            },
            name: n.name,
            peer_urls: n.peer_urls,
        })
        .collect()
}

// ---------------------------------------------------------------- peer port

#[derive(Clone)]
struct PeerState {
    core: Arc<KvCore>,
    cluster: Arc<Cluster>,
}

type Resp = Response<Body>;

fn plain(status: StatusCode, text: impl Into<String>) -> Resp {
    let mut r = Response::new(Body::from(format!("{}\n", text.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json<T: Serialize>(v: &T) -> Resp {
    match serde_json::to_vec(v) {
        Ok(b) => {
            let mut r = Response::new(Body::from(b));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The peer port's routes.
pub(crate) fn peer_router(core: Arc<KvCore>, cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route(PATH_APPEND, any(raft_append))
        .route(PATH_VOTE, any(raft_vote))
        .route(PATH_SNAPSHOT, any(raft_snapshot))
        .route(PATH_PROPOSE, any(forwarded_propose))
        .route(PATH_READ_INDEX, any(forwarded_read_index))
        .route(PATH_MEMBERS_OP, any(forwarded_member_op))
        .route("/members", any(peer_members))
        .route("/version", any(peer_version))
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "404 page not found") })
        .with_state(PeerState { core, cluster })
}

/// Checks method and identity and reads the body; `Err` is the answer.
async fn admit(st: &PeerState, req: Request) -> Result<Bytes, Box<Resp>> {
    if req.method() != Method::POST {
        return Err(Box::new(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
        )));
    }
    let id = st.core.identity();
    match check_peer_headers(req.headers(), id.member_id, id.cluster_id, |f| {
        st.cluster.is_removed(f)
    }) {
        PeerCheck::Accept { .. } => {}
        PeerCheck::WrongCluster(m) => {
            tracing::warn!("refused a peer message: {m}");
            return Err(Box::new(plain(StatusCode::PRECONDITION_FAILED, m)));
        }
        PeerCheck::Removed => {
            return Err(Box::new(plain(
                StatusCode::GONE,
                "the member has been permanently removed from the cluster",
            )))
        }
    }
    axum::body::to_bytes(req.into_body(), MAX_PEER_BODY)
        .await
        .map_err(|e| {
            Box::new(plain(
                StatusCode::BAD_REQUEST,
                format!("cannot read body: {e}"),
            ))
        })
}

fn decode<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("bad message: {e}"))
}

async fn raft_append(State(st): State<PeerState>, req: Request) -> Resp {
    let body = match admit(&st, req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    st.cluster.transport.stats().note_received_append();
    match decode(&body) {
        Ok(rpc) => json(&st.core.node().raft().append_entries(rpc).await),
        Err(m) => plain(StatusCode::BAD_REQUEST, m),
    }
}

async fn raft_vote(State(st): State<PeerState>, req: Request) -> Resp {
    let body = match admit(&st, req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match decode(&body) {
        Ok(rpc) => json(&st.core.node().raft().vote(rpc).await),
        Err(m) => plain(StatusCode::BAD_REQUEST, m),
    }
}

async fn raft_snapshot(State(st): State<PeerState>, req: Request) -> Resp {
    let body = match admit(&st, req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match decode(&body) {
        Ok(rpc) => json(&st.core.node().raft().install_snapshot(rpc).await),
        Err(m) => plain(StatusCode::BAD_REQUEST, m),
    }
}

async fn forwarded_propose(State(st): State<PeerState>, req: Request) -> Resp {
    let body = match admit(&st, req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let node = st.core.node();
    if !node.is_leader() {
        return json(&ForwardReply::NotLeader);
    }
    json(&match node.propose(body.to_vec()).await {
        Ok((index, reply)) => ForwardReply::Ok { index, reply },
        Err(e) => ForwardReply::from(e),
    })
}

async fn forwarded_read_index(State(st): State<PeerState>, req: Request) -> Resp {
    if let Err(r) = admit(&st, req).await {
        return *r;
    }
    json(&match st.core.node().linearizable_read().await {
        Ok(index) => ForwardReply::Ok {
            index,
            reply: Vec::new(),
        },
        Err(e) => ForwardReply::from(e),
    })
}

async fn forwarded_member_op(State(st): State<PeerState>, req: Request) -> Resp {
    let body = match admit(&st, req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match decode::<MemberOp>(&body) {
        Ok(op) => json(&st.cluster.execute_local(st.core.node(), &op).await),
        Err(m) => plain(StatusCode::BAD_REQUEST, m),
    }
}

/// etcd's peer `GET /members`: the member list with the cluster ID, which
/// a member joining with `--initial-cluster-state existing` reads.
async fn peer_members(State(st): State<PeerState>, req: Request) -> Resp {
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let mut r = json(&member_list(&st.core));
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", st.core.identity().cluster_id)) {
        r.headers_mut().insert(HEADER_CLUSTER_ID, v);
    }
    r
}

async fn peer_version() -> Resp {
    json(&serde_json::json!({"etcdserver": env!("CARGO_PKG_VERSION"), "etcdcluster": "3.4.0"}))
}

async fn stopped(rx: &mut signal::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Serves one peer connection (plain or TLS).
async fn serve_peer_conn<IO>(io: IO, app: Router, mut stop: signal::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            let resp = match app.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut stop) => {}
    }
}

/// Serves `app` on `listener` until `stop` is raised.
pub(crate) async fn serve_peers(
    listener: TcpListener,
    app: Router,
    mut stop: signal::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = JoinSet::new();
    loop {
        let conn_stop = stop.clone();
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let app = app.clone();
                let stop = conn_stop;
                let tls = tls.clone();
                conns.spawn(async move {
                    match tls {
                        None => serve_peer_conn(sock, app, stop).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await {
                                Ok(Ok(s)) => serve_peer_conn(s, app, stop).await,
                                Ok(Err(e)) => tracing::warn!(error = %e, "rejected a peer connection: TLS handshake failed"),
                                Err(_) => tracing::warn!("rejected a peer connection: TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

// ---------------------------------------------------------- background tasks

/// Publishes this member's name and client URLs into the membership until
/// they are there, and keeps the removed-member bookkeeping current.
pub(crate) async fn maintain_membership(
    core: Arc<KvCore>,
    cluster: Arc<Cluster>,
    mut stop: signal::Receiver<bool>,
) {
    let node = core.node();
    let me = core.identity().clone();
    let mut metrics = node.raft().metrics();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            changed = metrics.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        cluster.observe_membership(node);
        let stale = node
            .members()
            .get(&me.member_id)
            .is_some_and(|n| n.name != me.name || n.client_urls != me.client_urls);
        if stale && node.leader_id().is_some() {
            let op = MemberOp::Publish {
                id: me.member_id,
                name: me.name.clone(),
                client_urls: me.client_urls.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(3);
            match cluster.member_op(node, op, deadline).await {
                MemberOutcome::Done => tracing::info!(
                    name = %me.name,
                    client_urls = ?me.client_urls,
                    "published local member to cluster"
                ),
                other => tracing::debug!(?other, "publishing the local member failed; will retry"),
            }
        }
        // The leader promotes learners whose log has caught up.
        let promote: Vec<u64> = {
            let m = node.raft().metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                Vec::new()
            } else {
                let membership = m.membership_config.membership();
                if membership.get_joint_config().len() != 1 {
                    Vec::new()
                } else {
                    let voters: BTreeSet<u64> = membership.voter_ids().collect();
                    let last = m.last_log_index.unwrap_or(0);
                    let replication = m.replication.clone().unwrap_or_default();
                    membership
                        .nodes()
                        .map(|(id, _)| *id)
                        .filter(|id| !voters.contains(id))
                        .filter(|id| {
                            replication
                                .get(id)
                                .and_then(|l| l.as_ref())
                                .is_some_and(|l| l.index + 16 >= last)
                        })
                        .collect()
                }
            }
        };
        for id in promote {
            match node
                .raft()
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
            {
                Ok(_) => {
                    tracing::info!(member = %format!("{id:x}"), "promoted caught-up learner to voter")
                }
                Err(e) => {
                    tracing::debug!(member = %format!("{id:x}"), error = %e, "promotion deferred")
                }
            }
        }
    }
}

/// Asks the members at `peer_urls` for the member list and the cluster ID
/// (`--initial-cluster-state existing`); tries each URL for up to `wait`.
pub async fn fetch_cluster(
    peer_urls: &[String],
    wait: Duration,
) -> Result<(u64, Vec<Member>), String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + wait;
    let mut errors = Vec::new();
    loop {
        for u in peer_urls {
            let url = format!("{}/members", u.trim_end_matches('/'));
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    let cid = r
                        .headers()
                        .get(HEADER_CLUSTER_ID)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| u64::from_str_radix(s, 16).ok());
                    let members = r.json::<Vec<Member>>().await;
                    match (cid, members) {
                        (Some(c), Ok(m)) => return Ok((c, m)),
                        (None, _) => errors.push(format!("{url}: no cluster ID in the answer")),
                        (_, Err(e)) => errors.push(format!("{url}: {e}")),
                    }
                }
                Ok(r) => errors.push(format!("{url}: {}", r.status())),
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        if Instant::now() >= deadline {
            errors.dedup();
            return Err(format!(
                "could not retrieve cluster information from the given URLs: {}",
                errors.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_member_ids_depend_on_time_and_token() {
        let urls = vec!["http://127.0.0.1:24804".to_string()];
        let a = member_id_at(&urls, "etcd-cluster", 1_700_000_000);
        assert_ne!(a, member_id_at(&urls, "etcd-cluster", 1_700_000_001));
        assert_ne!(a, member_id_at(&urls, "other", 1_700_000_000));
        assert_eq!(a, member_id_at(&urls, "etcd-cluster", 1_700_000_000));
    }
}
