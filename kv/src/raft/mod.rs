//! Replication: Keelson's storage, state machine and network plugged into
//! `openraft`.
//!
//! Consensus is not home-made: openraft drives elections, replication and
//! snapshots, and this module only supplies the three things it asks for.
//! Each is a seam with a real and an in-memory implementation, so the same
//! node can run on disk behind HTTP in production and fully in memory in a
//! deterministic cluster test. The replicated command is opaque bytes; the
//! store decides what they mean.

pub mod http_transport;
mod log_store;
mod network;
mod node;
mod state_machine;
pub(crate) mod types;

pub use http_transport::{HttpTransport, PeerError, PeerStats, PeerTimeouts};
pub use log_store::LogStore;
pub use network::{InProcessRouter, InProcessTransport, Network, PeerClient, RpcResult, Transport};
pub use node::{KvNode, NodeError, RaftConfig};
pub use state_machine::{SmStore, StateMachine};
pub use types::{Entry, Payload, PeerNode, Raft, Reply, TypeConfig};
