//! [`KvNode`]: one member's Raft instance, started from configuration.
//!
//! This is the only place that knows how the pieces fit (storage, state
//! machine, transport, openraft's config), so that the HTTP server and the
//! embedding API see four verbs: propose, read linearizably, inspect, shut
//! down. A brand-new member with no peers initializes itself as a one-member
//! group, so a single `keelson` is a working store from its first second and
//! the cluster issue only adds members.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{Config as RaftCoreConfig, ServerState, SnapshotPolicy};

use super::log_store::LogStore;
use super::network::{Network, Transport};
use super::state_machine::{SmStore, StateMachine};
use super::types::{
    decode_batch, decode_entry, decode_json, encode_json, HardState, Meta, Payload, PeerNode, Raft,
    WalIdentity,
};
use crate::storage::{completed_blocking, PurgeMark, Storage, StorageError, StoredSnapshot};
use crate::wal::snap::{sync_dir, SnapDir};
use crate::wal::{DiskOptions, DiskStorage, Wal, WalOptions, DEFAULT_SEGMENT_BYTES};

/// A member's Raft and storage settings; names follow etcd's flags.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This member's id (stable for the life of the data directory).
    pub member_id: u64,
    /// `--name`.
    pub name: String,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
    /// The initial cluster when bootstrapping a new group; empty means a
    /// one-member group of this member alone. Ignored once the data
    /// directory holds state.
    pub initial_members: BTreeMap<u64, PeerNode>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--wal-dir`.
    pub wal_dir: Option<PathBuf>,
    /// `--snapshot-count`: applied entries between snapshots.
    pub snapshot_count: u64,
    /// Entries kept behind a snapshot so slow followers can catch up from
    /// the log instead of a full snapshot (etcd: 5000).
    pub snapshot_catchup_entries: u64,
    /// `--max-wals` (0 = unlimited).
    pub max_wals: usize,
    /// `--max-snapshots` (0 = unlimited).
    pub max_snapshots: usize,
    /// `--quota-backend-bytes` (0 = 2 GiB).
    pub quota_backend_bytes: u64,
    /// WAL segment size.
    pub segment_bytes: u64,
    /// `--heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// How long [`KvNode::shutdown`] waits for in-flight proposals.
    pub shutdown_grace: Duration,
    /// `--force-new-cluster`: before starting, fold the snapshot and the
    /// log into a new snapshot whose membership is this member alone, and
    /// replace the log with an empty one under `member_id`.
    pub force_new_cluster: bool,
    /// `--initial-cluster-state existing`: a brand-new member waits for
    /// the leader to replicate the log to it instead of initializing a
    /// group of its own.
    pub join_existing: bool,
    /// How long a proposal may wait to be committed before it fails
    /// (etcd's request timeout: 5 s plus two election timeouts). Without
    /// it a write queued on a leader that lost its quorum would wait
    /// forever and hold up every proposal behind it.
    pub request_timeout: Duration,
}

impl RaftConfig {
    /// etcd 3.4's defaults for everything but identity and location.
    pub fn new(member_id: u64, name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        RaftConfig {
            member_id,
            name: name.into(),
            peer_urls: vec!["http://localhost:2380".into()],
            initial_members: BTreeMap::new(),
            data_dir: data_dir.into(),
            wal_dir: None,
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5000,
            max_wals: 5,
            max_snapshots: 5,
            quota_backend_bytes: 0,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            shutdown_grace: Duration::from_secs(5),
            force_new_cluster: false,
            join_existing: false,
            request_timeout: Duration::from_secs(7),
        }
    }

    /// Checks the settings with etcd's rules and messages.
    pub fn validate(&self) -> Result<(), NodeError> {
        let hb = self.heartbeat_interval.as_millis();
        let et = self.election_timeout.as_millis();
        if hb == 0 {
            return Err(NodeError::Config(
                "--heartbeat-interval must be positive".into(),
            ));
        }
        if et < 5 * hb {
            return Err(NodeError::Config(format!(
                "--election-timeout[{et}ms] should be at least as 5 times as --heartbeat-interval[{hb}ms]"
            )));
        }
        if et > 50_000 {
            return Err(NodeError::Config(format!(
                "--election-timeout[{et}ms] is too long, and should be set less than 50000ms"
            )));
        }
        if self.snapshot_count == 0 {
            return Err(NodeError::Config(
                "--snapshot-count must be positive".into(),
            ));
        }
        if self.member_id == 0 {
            return Err(NodeError::Config("member id 0 is reserved".into()));
        }
        Ok(())
    }

    fn openraft_config(&self) -> Result<RaftCoreConfig, NodeError> {
        let et = self.election_timeout.as_millis() as u64;
        RaftCoreConfig {
            cluster_name: "keelson".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            // etcd randomizes the timeout in [et, 2et).
            election_timeout_min: et,
            election_timeout_max: et * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_count),
            max_in_snapshot_log_to_keep: self.snapshot_catchup_entries,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))
    }

    fn self_node(&self) -> PeerNode {
        PeerNode::new(self.name.clone(), self.peer_urls.clone())
    }
}

/// Why a node operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// This member is not the leader; send the request to `leader`.
    #[error("etcdserver: not leader (leader is {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader { leader: Option<u64> },
    /// The leader could not confirm its leadership with a quorum.
    #[error("etcdserver: no quorum to serve a linearizable read: {0}")]
    NoQuorum(String),
    /// The proposal was not committed within the request timeout (no
    /// quorum, or leadership changed while it was in flight); it may
    /// still be applied later.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The node is shutting down or has stopped.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// Raft failed (typically a storage failure); the node has stopped.
    #[error("raft: {0}")]
    Raft(String),
}

/// A batch stops growing at this many commands or bytes.
const MAX_BATCH_COMMANDS: usize = 4096;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

type ProposeResult = Result<(u64, Vec<u8>), NodeError>;

struct Proposal {
    payload: Vec<u8>,
    reply: oneshot::Sender<ProposeResult>,
}

fn fatal(e: openraft::error::Fatal<u64>) -> NodeError {
    match e {
        openraft::error::Fatal::Stopped => NodeError::Stopped,
        other => NodeError::Raft(other.to_string()),
    }
}

/// Group commit above Raft: openraft 0.9 flushes every leader append before
/// it takes the next client write, so one entry per proposal would mean one
/// fsync per proposal. Instead, whatever proposals queue up while an entry
/// is being replicated go out together as the next entry.
async fn run_proposer(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>, timeout: Duration) {
    while let Some(first) = rx.recv().await {
        let mut size = first.payload.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && size < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    size += p.payload.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let commands: Vec<&Vec<u8>> = batch.iter().map(|p| &p.payload).collect();
        let result =
            tokio::time::timeout(timeout, raft.client_write(Payload::batch(&commands))).await;
        let answers: Result<(u64, Vec<Vec<u8>>), NodeError> = match result {
            Err(_) => Err(NodeError::Timeout),
            Ok(result) => match result {
                Ok(resp) => match decode_batch(&resp.data.0) {
                    Ok(replies) if replies.len() == batch.len() => Ok((
                        resp.log_id.index,
                        replies.into_iter().map(<[u8]>::to_vec).collect(),
                    )),
                    Ok(replies) => Err(NodeError::Raft(format!(
                        "state machine answered {} of {} commands",
                        replies.len(),
                        batch.len()
                    ))),
                    Err(e) => Err(NodeError::Raft(format!("malformed reply batch: {e}"))),
                },
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    Err(NodeError::NotLeader {
                        leader: f.leader_id,
                    })
                }
                Err(RaftError::APIError(e)) => Err(NodeError::Raft(e.to_string())),
                Err(RaftError::Fatal(e)) => Err(fatal(e)),
            },
        };
        match answers {
            Ok((index, replies)) => {
                for (p, r) in batch.into_iter().zip(replies) {
                    let _ = p.reply.send(Ok((index, r)));
                }
            }
            Err(e) => {
                for p in batch {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NodeError + 'a {
    move |e| StorageError::io(op, path, e).into()
}

/// A sibling of `dir` named `<dir><suffix>`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// `--force-new-cluster` (etcd's `restartAsStandaloneNode`, reshaped for
/// openraft, which has no way to shrink a membership without a quorum):
/// replays the newest snapshot and every logged entry into `sm`, writes the
/// result as a snapshot whose membership is `config.member_id` alone, and
/// swaps in an empty log purged up to it. Every logged entry is kept, even
/// past the recorded commit point: the commit point is saved lazily, and on
/// a one-member group an entry in the log is an acknowledged write.
/// Rerunnable after a crash at any step: the snapshot is written before
/// the log is swapped, and a rerun starts from whatever is newest.
fn force_new_cluster<M: StateMachine>(config: &RaftConfig, sm: &mut M) -> Result<(), NodeError> {
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership, Vote};
    use std::collections::BTreeSet;

    let member = config.data_dir.join("member");
    let wal_dir = config.wal_dir.clone().unwrap_or_else(|| member.join("wal"));
    let snap_dir = member.join("snap");
    let old = DiskStorage::open(DiskOptions::new(
        &config.data_dir,
        config.wal_dir.as_deref(),
    ))?;
    let mut last: Option<LogId<u64>> = None;
    if let Some(s) = old.load_snapshot()? {
        let meta: Meta = decode_json(&s.meta)
            .map_err(|e| StorageError::Metadata(format!("cannot decode snapshot metadata: {e}")))?;
        sm.restore(&s.data).map_err(|e| {
            StorageError::Metadata(format!("cannot restore snapshot {}: {e}", s.index))
        })?;
        last = meta.last_log_id;
    }
    let from = last.map_or(0, |l| l.index + 1);
    for (index, bytes) in old.entries(from, u64::MAX) {
        let e = decode_entry(&bytes)
            .map_err(|e| StorageError::Metadata(format!("cannot decode log entry {index}: {e}")))?;
        if let EntryPayload::Normal(p) = &e.payload {
            let commands = p.commands().map_err(|e| {
                StorageError::Metadata(format!("cannot decode log entry {index}: {e}"))
            })?;
            for c in commands {
                sm.apply(index, c);
            }
        }
        last = Some(e.log_id);
    }
    let vote_term = match old.hard_state() {
        Some(b) => decode_json::<HardState>(&b)
            .map_err(|e| StorageError::Metadata(format!("cannot decode the hard state: {e}")))?
            .vote
            .map_or(0, |v| v.leader_id().term),
        None => 0,
    };
    old.close()?;
    drop(old);

    let id = config.member_id;
    let fresh = sibling(&wal_dir, ".force-new-cluster");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(io_err("remove", &fresh))?;
    }
    let mut wal_opts = WalOptions::new(&fresh);
    wal_opts.segment_bytes = config.segment_bytes;
    wal_opts.max_wals = config.max_wals;
    wal_opts.metadata = encode_json(&WalIdentity { member_id: id }).map_err(NodeError::Raft)?;
    let wal = Wal::open(wal_opts)?;
    if let Some(l) = last {
        let term = l.leader_id.term;
        let lid = LogId::new(CommittedLeaderId::new(term, id), l.index);
        let membership = Membership::new(
            vec![BTreeSet::from([id])],
            BTreeMap::from([(id, config.self_node())]),
        );
        let meta = Meta {
            last_log_id: Some(lid),
            last_membership: StoredMembership::new(Some(lid), membership),
            snapshot_id: format!("{term}-{}-force-new-cluster", l.index),
        };
        let mark = PurgeMark {
            index: l.index,
            meta: encode_json(&lid).map_err(NodeError::Raft)?,
        };
        completed_blocking(|d| wal.purge(mark, d))?;
        let hard = HardState {
            vote: Some(Vote::new(term.max(vote_term), id)),
            committed: Some(lid),
        };
        let hard = encode_json(&hard).map_err(NodeError::Raft)?;
        completed_blocking(|d| wal.save_hard_state(hard, true, d))?;
        wal.close()?;
        // The snapshot is the data from here on: durable before the old
        // log goes.
        SnapDir::open(&snap_dir, config.max_snapshots)?.save(&StoredSnapshot {
            term,
            index: l.index,
            meta: encode_json(&meta).map_err(NodeError::Raft)?,
            data: sm.snapshot().into(),
        })?;
    } else {
        wal.close()?;
    }
    drop(wal);
    let retired = sibling(&wal_dir, ".pre-force-new-cluster");
    if retired.exists() {
        std::fs::remove_dir_all(&retired).map_err(io_err("remove", &retired))?;
    }
    std::fs::rename(&wal_dir, &retired).map_err(io_err("rename", &wal_dir))?;
    std::fs::rename(&fresh, &wal_dir).map_err(io_err("rename", &fresh))?;
    if let Some(parent) = wal_dir.parent() {
        sync_dir(parent)?;
    }
    std::fs::remove_dir_all(&retired).map_err(io_err("remove", &retired))?;
    tracing::info!(
        member_id = %format!("{id:x}"),
        index = last.map_or(0, |l| l.index),
        "force-new-cluster: rewrote the data as a one-member cluster"
    );
    Ok(())
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One running member. See the module documentation.
pub struct KvNode<M> {
    id: u64,
    raft: Raft,
    sm: SmStore<M>,
    storage: Arc<dyn Storage>,
    closing: AtomicBool,
    in_flight: AtomicUsize,
    grace: Duration,
    proposals: mpsc::UnboundedSender<Proposal>,
    proposer: Mutex<Option<JoinHandle<()>>>,
}

impl<M: StateMachine> KvNode<M> {
    /// Opens `<data-dir>/member/{wal,snap}` (or `--wal-dir`) and starts.
    pub async fn start(
        config: RaftConfig,
        sm: M,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, NodeError> {
        config.validate()?;
        let sm = if config.force_new_cluster {
            let c = config.clone();
            tokio::task::spawn_blocking(move || {
                let mut sm = sm;
                force_new_cluster(&c, &mut sm).map(|()| sm)
            })
            .await
            .map_err(|e| NodeError::Raft(format!("--force-new-cluster panicked: {e}")))??
        } else {
            sm
        };
        let mut opts = DiskOptions::new(&config.data_dir, config.wal_dir.as_deref());
        opts.wal.segment_bytes = config.segment_bytes;
        opts.wal.max_wals = config.max_wals;
        opts.wal.metadata = encode_json(&WalIdentity {
            member_id: config.member_id,
        })
        .map_err(NodeError::Raft)?;
        opts.max_snapshots = config.max_snapshots;
        opts.quota_bytes = config.quota_backend_bytes;
        let storage = tokio::task::spawn_blocking(move || DiskStorage::open(opts))
            .await
            .map_err(|e| NodeError::Raft(format!("opening storage panicked: {e}")))??;
        Self::start_with_storage(config, Arc::new(storage), sm, transport).await
    }

    /// Starts on the given storage (e.g. [`crate::storage::MemStorage`]).
    pub async fn start_with_storage(
        config: RaftConfig,
        storage: Arc<dyn Storage>,
        sm: M,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, NodeError> {
        config.validate()?;
        let meta = storage.metadata();
        if !meta.is_empty() {
            let ident: WalIdentity = decode_json(&meta)
                .map_err(|e| StorageError::Metadata(format!("cannot decode WAL identity: {e}")))?;
            if ident.member_id != config.member_id {
                return Err(StorageError::Metadata(format!(
                    "the data directory belongs to member {:x}, not {:x}",
                    ident.member_id, config.member_id
                ))
                .into());
            }
        }
        let has_snapshot = {
            let s = storage.clone();
            tokio::task::spawn_blocking(move || s.load_snapshot())
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))??
                .is_some()
        };
        let brand_new =
            !has_snapshot && storage.last_index().is_none() && storage.hard_state().is_none();
        let log = LogStore::new(storage.clone())?;
        let sm = SmStore::open(storage.clone(), sm)?;
        let raft = Raft::new(
            config.member_id,
            Arc::new(config.openraft_config()?),
            Network::new(transport),
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        if brand_new && !config.join_existing {
            let members = if config.initial_members.is_empty() {
                BTreeMap::from([(config.member_id, config.self_node())])
            } else {
                config.initial_members.clone()
            };
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(NodeError::Raft(e.to_string())),
            }
        }
        let (proposals, rx) = mpsc::unbounded_channel();
        let proposer = tokio::spawn(run_proposer(raft.clone(), rx, config.request_timeout));
        Ok(KvNode {
            proposals,
            proposer: Mutex::new(Some(proposer)),
            id: config.member_id,
            raft,
            sm,
            storage,
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            grace: config.shutdown_grace,
        })
    }

    fn enter(&self) -> Result<InFlight<'_>, NodeError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(&self.in_flight);
        if self.closing.load(Ordering::SeqCst) {
            return Err(NodeError::Stopped);
        }
        Ok(guard)
    }

    /// Replicates a serialized command and applies it; returns the Raft
    /// index of the entry that carried it (shared with commands batched
    /// alongside) and the state machine's answer. Refused with etcd's
    /// "database space exceeded" when over quota.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<(u64, Vec<u8>), NodeError> {
        let _g = self.enter()?;
        self.storage.check_quota(payload.len() as u64)?;
        let (reply, rx) = oneshot::channel();
        self.proposals
            .send(Proposal { payload, reply })
            .map_err(|_| NodeError::Stopped)?;
        rx.await.unwrap_or(Err(NodeError::Stopped))
    }

    /// Confirms leadership with a quorum and waits until this member has
    /// applied everything committed before the call (ReadIndex); a read of
    /// the state machine afterwards is linearizable (`quorum=true`).
    /// Returns the index the read reflects.
    pub async fn linearizable_read(&self) -> Result<u64, NodeError> {
        let _g = self.enter()?;
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(NodeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(NodeError::NoQuorum(q.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Reads the local state machine (fast, possibly stale).
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        self.sm.read(f)
    }

    pub fn member_id(&self) -> u64 {
        self.id
    }

    /// The leader this member knows of.
    pub fn leader_id(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader
    }

    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The highest Raft index committed and applied on this member (what
    /// etcd reports as `X-Raft-Index`). openraft 0.9 does not publish the
    /// commit index apart from the applied one.
    pub fn committed_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// The last log index this member holds (committed or not).
    pub fn last_log_index(&self) -> u64 {
        self.raft.metrics().borrow().last_log_index.unwrap_or(0)
    }

    /// The index of the newest snapshot.
    pub fn snapshot_index(&self) -> Option<u64> {
        self.raft.metrics().borrow().snapshot.map(|l| l.index)
    }

    /// Members of the current configuration.
    pub fn members(&self) -> BTreeMap<u64, PeerNode> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect()
    }

    /// The underlying openraft handle (membership changes, metrics).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Waits until some member is known as leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, NodeError> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = rx.borrow().current_leader {
                return Ok(l);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(NodeError::Stopped),
                Err(_) => return Err(NodeError::NotLeader { leader: None }),
            }
        }
    }

    /// The SIGTERM path: refuse new requests, let in-flight ones finish
    /// (up to the grace period), stop Raft, make the WAL durable and
    /// release the data directory.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        if self.closing.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let start = Instant::now();
        while self.in_flight.load(Ordering::SeqCst) > 0 && start.elapsed() < self.grace {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left = self.in_flight.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(
                left,
                "shutdown: in-flight requests did not finish within the grace period"
            );
        }
        if let Some(h) = self
            .proposer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::error!(error = %e, "raft core did not stop cleanly");
        }
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.close())
            .await
            .map_err(|e| NodeError::Raft(format!("closing storage panicked: {e}")))??;
        Ok(())
    }
}
