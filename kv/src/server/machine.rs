//! The glue between Raft and the v2 store: what a log entry carries, how it
//! is applied, and how the answer travels back to the proposer.
//!
//! A log entry is a [`Proposal`]: the store [`Command`] plus the proposer's
//! clock, because the store's apply step is pure and only renders `ttl`
//! from the time it is given. The answer is an [`ApplyReply`], the
//! serialized `Result` of [`Store::apply`]. Every applied event is also
//! handed to the [`WatchHub`] while the store is still held exclusively,
//! which is what makes "history scan, then register" race-free for watches.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::watch::WatchHub;
use crate::raft::StateMachine;
use crate::store::{Command, Event, Store, Timestamp};
use crate::v2::{ErrorCode, V2Error};

/// One replicated entry: a command and the proposer's wall clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub command: Command,
    pub now: Timestamp,
}

impl Proposal {
    pub fn encode(&self) -> Vec<u8> {
        // A command is plain data (strings, integers, options): encoding
        // cannot fail, but never panic on it either.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The state machine's answer to a [`Proposal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApplyReply {
    /// The events the command produced (one for a write, any number for an
    /// expiry sweep).
    Events(Vec<Event>),
    /// The store refused the command.
    Error {
        code: u32,
        cause: String,
        index: u64,
    },
}

impl ApplyReply {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a reply into the store's result.
    pub fn decode(bytes: &[u8]) -> Result<Vec<Event>, V2Error> {
        match serde_json::from_slice::<ApplyReply>(bytes) {
            Ok(ApplyReply::Events(events)) => Ok(events),
            Ok(ApplyReply::Error { code, cause, index }) => Err(V2Error::new(
                ErrorCode::from_code(code).unwrap_or(ErrorCode::RaftInternal),
                cause,
                index,
            )),
            Err(e) => Err(V2Error::new(
                ErrorCode::RaftInternal,
                format!("cannot decode the state machine's reply: {e}"),
                0,
            )),
        }
    }
}

/// The v2 store as Raft's state machine, publishing to a watch hub.
pub struct KvStateMachine {
    store: Store,
    hub: Arc<WatchHub>,
}

impl KvStateMachine {
    /// An empty store keeping `history` events for `waitIndex`.
    pub fn new(hub: Arc<WatchHub>, history: usize) -> KvStateMachine {
        KvStateMachine {
            store: Store::with_history_capacity(history),
            hub,
        }
    }

    /// The store (read it through `KvNode::read`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The hub that applied events are published to.
    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }
}

impl StateMachine for KvStateMachine {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        let proposal: Proposal = match serde_json::from_slice(payload) {
            Ok(p) => p,
            Err(e) => {
                // Every member sees the same bytes, so skipping is
                // deterministic; the proposer gets an internal error.
                tracing::error!(raft_index = index, error = %e, "undecodable log entry skipped");
                return ApplyReply::Error {
                    code: ErrorCode::RaftInternal.code(),
                    cause: format!("undecodable log entry: {e}"),
                    index: 0,
                }
                .encode();
            }
        };
        let reply = match self.store.apply(proposal.command, proposal.now) {
            Ok(applied) => {
                let events = applied.events();
                self.hub.publish(events);
                ApplyReply::Events(events.iter().map(|e| Event::clone(e)).collect())
            }
            Err(e) => ApplyReply::Error {
                code: e.code.code(),
                cause: e.cause,
                index: e.index,
            },
        };
        reply.encode()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.store.snapshot()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.store = Store::restore(data).map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PutRequest;

    #[test]
    fn apply_round_trips_events_and_errors() {
        let hub = WatchHub::new();
        let mut sm = KvStateMachine::new(hub, 1000);
        let now = Timestamp::from_unix(1_800_000_000, 0);
        let p = Proposal {
            command: Command::from_put(
                "/a",
                PutRequest {
                    value: "1".into(),
                    ..PutRequest::default()
                },
            ),
            now,
        };
        let events = ApplyReply::decode(&sm.apply(1, &p.encode())).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].node.value.as_deref(), Some("1"));
        let p = Proposal {
            command: Command::from_delete("/nope", false, false, None, 0),
            now,
        };
        let err = ApplyReply::decode(&sm.apply(2, &p.encode())).unwrap_err();
        assert_eq!(err.code, ErrorCode::KeyNotFound);
        assert_eq!(err.index, 1);
        let err = ApplyReply::decode(&sm.apply(3, b"garbage")).unwrap_err();
        assert_eq!(err.code, ErrorCode::RaftInternal);
        let snap = sm.snapshot();
        let mut other = KvStateMachine::new(WatchHub::new(), 1000);
        other.restore(&snap).unwrap();
        assert_eq!(other.store().index(), 1);
    }
}
