//! The etcd v2 wire format: nodes, events and errors exactly as etcd 3.4's
//! v2 API writes them (field order, omission rules, error codes and texts).
//!
//! These types are shared by the store (which produces them), the HTTP server
//! (which writes them) and the HTTP client (which reads them from Keelson or
//! from a real etcd), so there is one definition of the format.

use serde::{Deserialize, Serialize};

/// A node as it appears in a response: a key (with `value`) or a directory
/// (with `dir: true` and, in listings, `nodes`). Field order is etcd's.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Absent for the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Present for keys (also when empty); absent for directories and for the
    /// `node` of delete/expire events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dir: bool,
    /// RFC 3339 UTC with nanoseconds, e.g. `2026-11-21T20:53:15.029553333Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// Seconds remaining, rounded up; omitted when zero.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ttl: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<Node>>,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub modified_index: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub created_index: u64,
}

/// The body of a successful `/v2/keys` answer: an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub action: Action,
    /// Absent only in `noValueOnSuccess` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Node>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<Node>,
}

/// Event actions, spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "get")]
    Get,
    #[serde(rename = "set")]
    Set,
    #[serde(rename = "create")]
    Create,
    #[serde(rename = "update")]
    Update,
    #[serde(rename = "compareAndSwap")]
    CompareAndSwap,
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "compareAndDelete")]
    CompareAndDelete,
    #[serde(rename = "expire")]
    Expire,
}

impl Action {
    /// The wire spelling (`compareAndSwap`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::Set => "set",
            Action::Create => "create",
            Action::Update => "update",
            Action::CompareAndSwap => "compareAndSwap",
            Action::Delete => "delete",
            Action::CompareAndDelete => "compareAndDelete",
            Action::Expire => "expire",
        }
    }
}

/// The body of a failed `/v2/keys` answer:
/// `{"errorCode":100,"message":"Key not found","cause":"/foo","index":4}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error_code: u32,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cause: String,
    #[serde(default)]
    pub index: u64,
}

/// etcd v2 error codes (reference kv.md §5). Reserved codes exist so that a
/// client can name any code a server sends, but Keelson never produces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    KeyNotFound = 100,
    TestFailed = 101,
    NotFile = 102,
    NoMorePeer = 103,
    NotDir = 104,
    NodeExist = 105,
    KeywordPrefix = 106,
    RootReadOnly = 107,
    DirNotEmpty = 108,
    ExistingPeerAddr = 109,
    Unauthorized = 110,
    ValueRequired = 200,
    PrevValueRequired = 201,
    TtlNaN = 202,
    IndexNaN = 203,
    ValueOrTtlRequired = 204,
    TimeoutNaN = 205,
    NameRequired = 206,
    IndexOrValueRequired = 207,
    IndexValueMutex = 208,
    InvalidField = 209,
    InvalidForm = 210,
    RefreshValue = 211,
    RefreshTtlRequired = 212,
    RaftInternal = 300,
    LeaderElect = 301,
    WatcherCleared = 400,
    EventIndexCleared = 401,
    StandbyInternal = 402,
    InvalidActiveSize = 403,
    InvalidRemoveDelay = 404,
    ClientInternal = 500,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 32] = [
        ErrorCode::KeyNotFound,
        ErrorCode::TestFailed,
        ErrorCode::NotFile,
        ErrorCode::NoMorePeer,
        ErrorCode::NotDir,
        ErrorCode::NodeExist,
        ErrorCode::KeywordPrefix,
        ErrorCode::RootReadOnly,
        ErrorCode::DirNotEmpty,
        ErrorCode::ExistingPeerAddr,
        ErrorCode::Unauthorized,
        ErrorCode::ValueRequired,
        ErrorCode::PrevValueRequired,
        ErrorCode::TtlNaN,
        ErrorCode::IndexNaN,
        ErrorCode::ValueOrTtlRequired,
        ErrorCode::TimeoutNaN,
        ErrorCode::NameRequired,
        ErrorCode::IndexOrValueRequired,
        ErrorCode::IndexValueMutex,
        ErrorCode::InvalidField,
        ErrorCode::InvalidForm,
        ErrorCode::RefreshValue,
        ErrorCode::RefreshTtlRequired,
        ErrorCode::RaftInternal,
        ErrorCode::LeaderElect,
        ErrorCode::WatcherCleared,
        ErrorCode::EventIndexCleared,
        ErrorCode::StandbyInternal,
        ErrorCode::InvalidActiveSize,
        ErrorCode::InvalidRemoveDelay,
        ErrorCode::ClientInternal,
    ];

    /// The numeric code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The code for a number, if etcd defines it.
    pub fn from_code(code: u32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// etcd's exact message text.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::KeyNotFound => "Key not found",
            ErrorCode::TestFailed => "Compare failed",
            ErrorCode::NotFile => "Not a file",
            ErrorCode::NoMorePeer => "Reached the max number of peers in the cluster",
            ErrorCode::NotDir => "Not a directory",
            ErrorCode::NodeExist => "Key already exists",
            ErrorCode::KeywordPrefix => "The prefix of given key is a keyword in etcd",
            ErrorCode::RootReadOnly => "Root is read only",
            ErrorCode::DirNotEmpty => "Directory not empty",
            ErrorCode::ExistingPeerAddr => "Peer address has existed",
            ErrorCode::Unauthorized => "The request requires user authentication",
            ErrorCode::ValueRequired => "Value is Required in POST form",
            ErrorCode::PrevValueRequired => "PrevValue is Required in POST form",
            ErrorCode::TtlNaN => "The given TTL in POST form is not a number",
            ErrorCode::IndexNaN => "The given index in POST form is not a number",
            ErrorCode::ValueOrTtlRequired => "Value or TTL is required in POST form",
            ErrorCode::TimeoutNaN => "The given timeout in POST form is not a number",
            ErrorCode::NameRequired => "Name is required in POST form",
            ErrorCode::IndexOrValueRequired => "Index or value is required",
            ErrorCode::IndexValueMutex => "Index and value cannot both be specified",
            ErrorCode::InvalidField => "Invalid field",
            ErrorCode::InvalidForm => "Invalid POST form",
            ErrorCode::RefreshValue => "Value provided on refresh",
            ErrorCode::RefreshTtlRequired => "A TTL must be provided on refresh",
            ErrorCode::RaftInternal => "Raft Internal Error",
            ErrorCode::LeaderElect => "During Leader Election",
            ErrorCode::WatcherCleared => "watcher is cleared due to etcd recovery",
            ErrorCode::EventIndexCleared => "The event in requested index is outdated and cleared",
            ErrorCode::StandbyInternal => "Standby Internal Error",
            ErrorCode::InvalidActiveSize => "Invalid active size",
            ErrorCode::InvalidRemoveDelay => "Standby remove delay",
            ErrorCode::ClientInternal => "Client Internal Error",
        }
    }

    /// The HTTP status etcd answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::KeyNotFound => 404,
            ErrorCode::TestFailed | ErrorCode::NodeExist => 412,
            ErrorCode::NotFile | ErrorCode::DirNotEmpty => 403,
            ErrorCode::Unauthorized => 401,
            ErrorCode::RaftInternal | ErrorCode::LeaderElect => 500,
            _ => 400,
        }
    }
}

/// A v2 key-space error: code, cause and the etcd index it was raised at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {} ({cause}) [{index}]", .code.code(), .code.message())]
pub struct V2Error {
    pub code: ErrorCode,
    pub cause: String,
    pub index: u64,
}

impl V2Error {
    pub fn new(code: ErrorCode, cause: impl Into<String>, index: u64) -> Self {
        V2Error {
            code,
            cause: cause.into(),
            index,
        }
    }

    /// The JSON body etcd sends for this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error_code: self.code.code(),
            message: self.code.message().to_string(),
            cause: self.cause.clone(),
            index: self.index,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_json_matches_etcd_field_order_and_omissions() {
        let root = Response {
            action: Action::Get,
            node: Some(Node {
                dir: true,
                ..Node::default()
            }),
            prev_node: None,
        };
        assert_eq!(
            serde_json::to_string(&root).unwrap(),
            r#"{"action":"get","node":{"dir":true}}"#
        );
        let dir = Node {
            key: Some("/dir".into()),
            dir: true,
            nodes: Some(vec![Node {
                key: Some("/dir/a".into()),
                value: Some("1".into()),
                modified_index: 21,
                created_index: 21,
                ..Node::default()
            }]),
            modified_index: 20,
            created_index: 20,
            ..Node::default()
        };
        assert_eq!(
            serde_json::to_string(&dir).unwrap(),
            r#"{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":21,"createdIndex":21}],"modifiedIndex":20,"createdIndex":20}"#
        );
    }

    #[test]
    fn error_body_matches_etcd() {
        let e = V2Error::new(ErrorCode::KeyNotFound, "/foo", 4);
        assert_eq!(
            serde_json::to_string(&e.body()).unwrap(),
            r#"{"errorCode":100,"message":"Key not found","cause":"/foo","index":4}"#
        );
        assert_eq!(e.code.http_status(), 404);
        let e = V2Error::new(ErrorCode::EventIndexCleared, "", 0);
        assert_eq!(e.code.http_status(), 400);
        assert_eq!(
            serde_json::to_string(&e.body()).unwrap(),
            r#"{"errorCode":401,"message":"The event in requested index is outdated and cleared","index":0}"#
        );
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        }
    }
}
