//! Keelson's openraft type configuration and the byte encodings of what Raft
//! persists.
//!
//! The replicated payload is opaque bytes on purpose: the store defines its
//! commands, and keeping Raft blind to them means the store can evolve its
//! command format without touching the log format, and the log can be read
//! by tools that know nothing about the store.

use std::fmt;
use std::io::Cursor;

use bytes::{Buf, BufMut, Bytes};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};

/// The data of one Raft entry: a batch of serialized store commands,
/// proposed together so that they share one log append and one fsync
/// (openraft 0.9 flushes each leader append before taking the next).
/// Build it with [`Payload::batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(pub Vec<u8>);

impl Payload {
    /// Frames `commands` as one entry: `count u32 | (len u32 | bytes)*`.
    pub fn batch<T: AsRef<[u8]>>(commands: &[T]) -> Payload {
        Payload(encode_batch(commands))
    }

    /// The commands in this entry.
    pub fn commands(&self) -> Result<Vec<&[u8]>, String> {
        decode_batch(&self.0)
    }
}

/// The state machine's answers for one entry, framed like [`Payload`]; empty
/// for Raft's own (blank and membership) entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Vec<u8>);

pub(crate) fn encode_batch<T: AsRef<[u8]>>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + items.iter().map(|i| i.as_ref().len() + 4).sum::<usize>());
    out.put_u32_le(items.len() as u32);
    for i in items {
        out.put_u32_le(i.as_ref().len() as u32);
        out.put_slice(i.as_ref());
    }
    out
}

pub(crate) fn decode_batch(mut b: &[u8]) -> Result<Vec<&[u8]>, String> {
    if b.len() < 4 {
        return Err("command batch too short".into());
    }
    let n = b.get_u32_le() as usize;
    let mut out = Vec::with_capacity(n.min(b.len() / 4));
    for k in 0..n {
        if b.len() < 4 {
            return Err(format!("command batch truncated at item {k}"));
        }
        let len = b.get_u32_le() as usize;
        if b.len() < len {
            return Err(format!("command batch truncated in item {k}"));
        }
        out.push(&b[..len]);
        b = &b[len..];
    }
    if !b.is_empty() {
        return Err(format!("{} trailing bytes after command batch", b.len()));
    }
    Ok(out)
}

/// A member as Raft knows it: etcd's name and peer URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: String,
    pub peer_urls: Vec<String>,
    /// The client URLs the member publishes once it has started (etcd's
    /// member attributes); empty for a member added but not started yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

impl PeerNode {
    pub fn new(name: impl Into<String>, peer_urls: Vec<String>) -> Self {
        PeerNode {
            name: name.into(),
            peer_urls,
            client_urls: Vec::new(),
        }
    }
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

openraft::declare_raft_types!(
    /// Keelson's Raft types: u64 member ids, opaque byte commands.
    pub TypeConfig:
        D = Payload,
        R = Reply,
        NodeId = u64,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig>;

/// Vote and committed log id, persisted together as the WAL's hard state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HardState {
    pub vote: Option<Vote<u64>>,
    pub committed: Option<LogId<u64>>,
}

/// Identity recorded in the WAL when it is created, so a data directory
/// cannot be started as a different member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WalIdentity {
    pub member_id: u64,
}

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// `kind u8 | term u64 | leader node u64 | index u64 | body`: binary so a
/// command costs its own size plus 25 bytes in the log.
pub(crate) fn encode_entry(e: &Entry) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(32);
    let (kind, body) = match &e.payload {
        EntryPayload::Blank => (KIND_BLANK, Vec::new()),
        EntryPayload::Normal(p) => (KIND_NORMAL, p.0.clone()),
        EntryPayload::Membership(m) => (
            KIND_MEMBERSHIP,
            serde_json::to_vec(m).map_err(|e| e.to_string())?,
        ),
    };
    out.put_u8(kind);
    out.put_u64_le(e.log_id.leader_id.term);
    out.put_u64_le(e.log_id.leader_id.node_id);
    out.put_u64_le(e.log_id.index);
    out.put_slice(&body);
    Ok(Bytes::from(out))
}

pub(crate) fn decode_entry(mut b: &[u8]) -> Result<Entry, String> {
    if b.len() < 25 {
        return Err(format!("log entry too short ({} bytes)", b.len()));
    }
    let kind = b.get_u8();
    let term = b.get_u64_le();
    let node = b.get_u64_le();
    let index = b.get_u64_le();
    let payload = match kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(Payload(b.to_vec())),
        KIND_MEMBERSHIP => {
            let m: Membership<u64, PeerNode> =
                serde_json::from_slice(b).map_err(|e| format!("membership entry: {e}"))?;
            EntryPayload::Membership(m)
        }
        k => return Err(format!("unknown log entry kind {k}")),
    };
    Ok(Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, node), index),
        payload,
    })
}

pub(crate) fn encode_json<T: Serialize>(v: &T) -> Result<Bytes, String> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

pub(crate) fn decode_json<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| e.to_string())
}

pub(crate) type Meta = SnapshotMeta<u64, PeerNode>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn entries_round_trip() {
        let lid = LogId::new(CommittedLeaderId::new(3, 2), 17);
        let members: BTreeMap<u64, PeerNode> =
            [(1, PeerNode::new("a", vec!["http://a:2380".into()]))].into();
        let m = Membership::new(vec![BTreeSet::from([1])], members);
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Normal(Payload(b"set /a 1".to_vec())),
            EntryPayload::Membership(m),
        ] {
            let e = Entry {
                log_id: lid,
                payload,
            };
            let d = decode_entry(&encode_entry(&e).unwrap()).unwrap();
            assert_eq!(d, e);
        }
        assert!(decode_entry(b"short").is_err());
    }

    #[test]
    fn batches_round_trip_and_reject_garbage() {
        let items: Vec<&[u8]> = vec![b"a", b"", b"set /x 1"];
        let p = Payload::batch(&items);
        assert_eq!(p.commands().unwrap(), items);
        assert!(decode_batch(&p.0[..p.0.len() - 1]).is_err());
        assert!(decode_batch(b"\x01").is_err());
        let mut extra = p.0.clone();
        extra.push(0);
        assert!(decode_batch(&extra).is_err());
    }
}
