//! Peer messaging: openraft's network traits over a [`Transport`] seam.
//!
//! Raft's safety does not depend on the network, but every cluster test
//! does: partitions, slow links and dead peers must be reproducible. So the
//! wiring speaks to a small object-safe [`Transport`] (three RPCs, addressed
//! by member id and [`PeerNode`]), implemented in-process here for tests and
//! one-member groups, and over HTTP(S) with rustls later, without openraft's
//! generics leaking into either.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::FutureExt;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};

use super::types::{PeerNode, Raft, TypeConfig};

/// The result of one peer RPC, in openraft's own error vocabulary so that
/// remote Raft errors (a higher term, a stopped peer) pass through intact.
pub type RpcResult<T, E = RaftError<u64>> = Result<T, RPCError<u64, PeerNode, E>>;

/// Delivers Raft's three peer messages to another member.
///
/// Implementations must not block: return a future. `target` is the
/// member id; `node` carries its peer URLs (what an HTTP transport dials).
pub trait Transport: Send + Sync + 'static {
    fn append_entries(
        &self,
        target: u64,
        node: &PeerNode,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<'static, RpcResult<AppendEntriesResponse<u64>>>;

    fn vote(
        &self,
        target: u64,
        node: &PeerNode,
        req: VoteRequest<u64>,
    ) -> BoxFuture<'static, RpcResult<VoteResponse<u64>>>;

    fn install_snapshot(
        &self,
        target: u64,
        node: &PeerNode,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> BoxFuture<
        'static,
        RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>,
    >;
}

/// openraft's network factory over a [`Transport`].
#[derive(Clone)]
pub struct Network {
    transport: Arc<dyn Transport>,
}

impl Network {
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Network { transport }
    }
}

/// A connection to one peer.
pub struct PeerClient {
    target: u64,
    node: PeerNode,
    transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.transport
            .append_entries(self.target, &self.node, rpc)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        self.transport
            .install_snapshot(self.target, &self.node, rpc)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        self.transport.vote(self.target, &self.node, rpc).await
    }
}

#[derive(Default)]
struct RouterState {
    nodes: HashMap<u64, Raft>,
    isolated: HashSet<u64>,
}

/// An in-process "network" connecting the Raft instances of one process:
/// each member gets a [`InProcessTransport`] from [`InProcessRouter::transport_for`].
/// Members can be isolated to simulate partitions.
#[derive(Clone, Default)]
pub struct InProcessRouter {
    state: Arc<Mutex<RouterState>>,
}

impl InProcessRouter {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `raft` reachable as member `id` (replacing any earlier one).
    pub fn register(&self, id: u64, raft: Raft) {
        self.lock().nodes.insert(id, raft);
    }

    /// Makes member `id` unreachable, as if it had crashed.
    pub fn unregister(&self, id: u64) {
        self.lock().nodes.remove(&id);
    }

    /// Cuts (or restores) every link to and from member `id`.
    pub fn set_isolated(&self, id: u64, isolated: bool) {
        let mut g = self.lock();
        if isolated {
            g.isolated.insert(id);
        } else {
            g.isolated.remove(&id);
        }
    }

    /// The transport member `from` sends through.
    pub fn transport_for(&self, from: u64) -> Arc<dyn Transport> {
        Arc::new(InProcessTransport {
            from,
            router: self.clone(),
        })
    }

    /// The Raft instance behind `to`, or why it cannot be reached.
    fn route(&self, from: u64, to: u64) -> Result<Raft, String> {
        let g = self.lock();
        if g.isolated.contains(&from) || g.isolated.contains(&to) {
            return Err(format!("link {from} -> {to} is cut"));
        }
        g.nodes
            .get(&to)
            .cloned()
            .ok_or_else(|| format!("member {to} is not running"))
    }
}

fn unreachable<E: std::error::Error>(why: String) -> RPCError<u64, PeerNode, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::new(
        io::ErrorKind::NotConnected,
        why,
    )))
}

/// One member's view of an [`InProcessRouter`].
pub struct InProcessTransport {
    from: u64,
    router: InProcessRouter,
}

impl Transport for InProcessTransport {
    fn append_entries(
        &self,
        target: u64,
        _node: &PeerNode,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<'static, RpcResult<AppendEntriesResponse<u64>>> {
        let raft = self.router.route(self.from, target);
        async move {
            raft.map_err(unreachable)?
                .append_entries(req)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
        }
        .boxed()
    }

    fn vote(
        &self,
        target: u64,
        _node: &PeerNode,
        req: VoteRequest<u64>,
    ) -> BoxFuture<'static, RpcResult<VoteResponse<u64>>> {
        let raft = self.router.route(self.from, target);
        async move {
            raft.map_err(unreachable)?
                .vote(req)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
        }
        .boxed()
    }

    fn install_snapshot(
        &self,
        target: u64,
        _node: &PeerNode,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> BoxFuture<
        'static,
        RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self.router.route(self.from, target);
        async move {
            raft.map_err(unreachable)?
                .install_snapshot(req)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
        }
        .boxed()
    }
}
