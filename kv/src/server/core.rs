//! [`KvCore`]: one running member seen as the v2 key-value service, with no
//! HTTP in it. The HTTP server and the embedded client are two thin faces
//! of this type, so both get the same semantics (proposal through Raft,
//! local or linearizable reads, race-free watches, etcd's error 300 on a
//! failed proposal).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::cluster::Cluster;
use super::machine::{ApplyReply, KvStateMachine, Proposal};
use super::watch::{WatchHub, WatchRegistration};
use crate::raft::{KvNode, NodeError};
use crate::store::{clean_path, Command, Event, StoreStats, Timestamp};
use crate::v2::{ErrorCode, V2Error};

/// The wall clock as the store's [`Timestamp`].
pub fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

/// A successful write: the event and the Raft position after it.
#[derive(Debug, Clone)]
pub struct Written {
    pub event: Event,
    pub raft_index: u64,
    pub raft_term: u64,
}

/// A successful read: the event and the etcd index it reflects.
#[derive(Debug, Clone)]
pub struct Read {
    pub event: Event,
    pub etcd_index: u64,
    pub raft_index: u64,
    pub raft_term: u64,
}

/// A started watch: events from the history first, then live ones.
pub struct Watch {
    /// The etcd index when the watch was registered (`X-Etcd-Index`).
    pub etcd_index: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    history: VecDeque<Arc<Event>>,
    live: Option<WatchRegistration>,
}

impl Watch {
    /// The next event, or `None` when the watch is over (a one-shot watch
    /// delivered its event, the watcher fell behind and was dropped, or the
    /// server is shutting down).
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        if let Some(e) = self.history.pop_front() {
            return Some(e);
        }
        self.live.as_mut()?.recv().await
    }
}

/// Member identity and timing facts for the stats endpoints.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// One member as a key-value service. See the module documentation.
pub struct KvCore {
    node: KvNode<KvStateMachine>,
    hub: Arc<WatchHub>,
    identity: Identity,
    request_timeout: Duration,
    start_time: Timestamp,
    leader_since: Mutex<Option<(u64, Timestamp)>>,
    closing: AtomicBool,
    /// The peer side (forwarding, membership); unset for a member that
    /// runs without peers.
    cluster: OnceLock<Arc<Cluster>>,
}

fn raft_error(e: NodeError) -> V2Error {
    V2Error::new(ErrorCode::RaftInternal, e.to_string(), 0)
}

impl KvCore {
    pub(crate) fn new(
        node: KvNode<KvStateMachine>,
        hub: Arc<WatchHub>,
        identity: Identity,
        request_timeout: Duration,
    ) -> KvCore {
        KvCore {
            node,
            hub,
            identity,
            request_timeout,
            start_time: now(),
            leader_since: Mutex::new(None),
            closing: AtomicBool::new(false),
            cluster: OnceLock::new(),
        }
    }

    /// The peer side of this member, if it has one.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    pub(crate) fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// etcd's request timeout for this member.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Proposes on the leader, wherever it is: locally when this member
    /// leads, else forwarded over the peer channel; waits out elections.
    async fn propose_anywhere(
        &self,
        payload: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> Result<(u64, Vec<u8>), NodeError> {
        loop {
            let me = self.node.member_id();
            let attempt = match (self.node.leader_id(), self.cluster.get()) {
                (Some(l), Some(c)) if l != me => {
                    c.forward_propose(&self.node, l, payload.clone(), deadline)
                        .await
                }
                _ => self.node.propose(payload.clone()).await,
            };
            match attempt {
                Err(NodeError::NotLeader { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => return other,
            }
        }
    }

    /// A read index confirmed by the leader and applied here.
    async fn read_index_anywhere(&self, deadline: tokio::time::Instant) -> Result<u64, NodeError> {
        loop {
            let me = self.node.member_id();
            let attempt = match (self.node.leader_id(), self.cluster.get()) {
                (Some(l), Some(c)) if l != me => {
                    c.forward_read_index(&self.node, l, deadline).await
                }
                _ => self.node.linearizable_read().await,
            };
            match attempt {
                Err(NodeError::NotLeader { .. }) | Err(NodeError::NoQuorum(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => return other,
            }
        }
    }

    /// The Raft node underneath.
    pub fn node(&self) -> &KvNode<KvStateMachine> {
        &self.node
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn start_time(&self) -> Timestamp {
        self.start_time
    }

    /// Registered watchers and watchers dropped for being slow.
    pub fn watcher_counts(&self) -> (usize, u64) {
        (self.hub.count(), self.hub.dropped())
    }

    /// The current etcd index of this member.
    pub fn etcd_index(&self) -> u64 {
        self.node.read(|m| m.store().index())
    }

    /// `/v2/stats/store`.
    pub fn store_stats(&self) -> StoreStats {
        let watchers = self.hub.count() as u64;
        self.node.read(|m| m.store().stats(watchers))
    }

    /// Notes the leader this member currently knows, returning since when
    /// it has been leader.
    pub fn observe_leader(&self) -> Option<(u64, Timestamp)> {
        let leader = self.node.leader_id();
        let mut g = self.leader_since.lock().unwrap_or_else(|e| e.into_inner());
        match (leader, *g) {
            (None, _) => *g = None,
            (Some(l), Some((known, _))) if l == known => {}
            (Some(l), _) => *g = Some((l, now())),
        }
        *g
    }

    fn check_open(&self) -> Result<(), V2Error> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(raft_error(NodeError::Stopped));
        }
        Ok(())
    }

    /// Proposes a command through Raft and waits for it to be applied;
    /// returns the events it produced. A proposal that fails or times out
    /// is error 300 with index 0, as in etcd.
    pub async fn propose(&self, command: Command) -> Result<(Vec<Event>, u64), V2Error> {
        self.check_open()?;
        let payload = Proposal {
            command,
            now: now(),
        }
        .encode();
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let (raft_index, reply) =
            match tokio::time::timeout_at(deadline, self.propose_anywhere(payload, deadline)).await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(raft_error(e)),
                Err(_) => {
                    return Err(V2Error::new(
                        ErrorCode::RaftInternal,
                        "etcdserver: request timed out",
                        0,
                    ))
                }
            };
        Ok((ApplyReply::decode(&reply)?, raft_index))
    }

    /// A key-space write (`set`, `create`, `update`, CAS, delete, CAD).
    pub async fn write(&self, command: Command) -> Result<Written, V2Error> {
        let (events, _) = self.propose(command).await?;
        let event = events.into_iter().next().ok_or_else(|| {
            V2Error::new(ErrorCode::RaftInternal, "the write produced no event", 0)
        })?;
        Ok(Written {
            event,
            raft_index: self.node.committed_index(),
            raft_term: self.node.current_term(),
        })
    }

    /// A read of the local copy (`quorum=false`) or a linearizable one.
    pub async fn get(
        &self,
        path: &str,
        recursive: bool,
        sorted: bool,
        quorum: bool,
    ) -> Result<Read, V2Error> {
        if quorum {
            self.check_open()?;
            let deadline = tokio::time::Instant::now() + self.request_timeout;
            match tokio::time::timeout_at(deadline, self.read_index_anywhere(deadline)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(raft_error(e)),
                Err(_) => {
                    return Err(V2Error::new(
                        ErrorCode::RaftInternal,
                        "etcdserver: request timed out",
                        0,
                    ))
                }
            }
        }
        let t = now();
        let (event, etcd_index) = self.node.read(|m| {
            let s = m.store();
            s.get(path, recursive, sorted, t).map(|e| (e, s.index()))
        })?;
        Ok(Read {
            event,
            etcd_index,
            raft_index: self.node.committed_index(),
            raft_term: self.node.current_term(),
        })
    }

    /// Starts a watch (kv.md §6). `wait_index` 0 means "from the next
    /// index". A `stream` watch delivers every matching event from
    /// `wait_index` on, history first; otherwise one event.
    pub fn watch(
        &self,
        path: &str,
        recursive: bool,
        wait_index: u64,
        stream: bool,
    ) -> Result<Watch, V2Error> {
        self.check_open()?;
        let key = clean_path(path).into_owned();
        let raft_index = self.node.committed_index();
        let raft_term = self.node.current_term();
        // The store is held for reading: no event can be applied between
        // the history scan and the registration.
        self.node.read(|m| {
            let store = m.store();
            let current = store.index();
            let mut history = VecDeque::new();
            let mut from = if wait_index == 0 {
                current + 1
            } else {
                wait_index
            };
            while from <= current {
                match store.watch_scan(&key, recursive, from)? {
                    Some(e) => {
                        from = e.index() + 1;
                        history.push_back(e);
                        if !stream {
                            break;
                        }
                    }
                    None => break,
                }
            }
            let live = if stream || history.is_empty() {
                Some(
                    m.hub()
                        .register(&key, recursive, from.max(current + 1), stream),
                )
            } else {
                None
            };
            Ok(Watch {
                etcd_index: current,
                raft_index,
                raft_term,
                history,
                live,
            })
        })
    }

    /// The leader's expiry sweep: proposes `Sync` when a TTL is due.
    pub async fn expire_due(&self) {
        if !self.node.is_leader() || self.closing.load(Ordering::SeqCst) {
            return;
        }
        let t = now();
        let due = self
            .node
            .read(|m| m.store().next_expiration().is_some_and(|e| e <= t));
        if due {
            if let Err(e) = self.propose(Command::Sync { now: t }).await {
                tracing::warn!(error = %e, "expiry sweep failed");
            }
        }
    }

    /// Whether this member has a leader and can commit (`/health`).
    pub async fn healthy(&self) -> bool {
        if self.node.leader_id().is_none() || self.closing.load(Ordering::SeqCst) {
            return false;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        matches!(
            tokio::time::timeout_at(deadline, self.read_index_anywhere(deadline)).await,
            Ok(Ok(_))
        )
    }

    /// Refuses new work and ends every watch; then stops Raft and makes
    /// the log durable.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.closing.store(true, Ordering::SeqCst);
        self.hub.close_all();
        self.node.shutdown().await
    }

    pub(crate) fn begin_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.hub.close_all();
    }
}
