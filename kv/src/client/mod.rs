//! `KvClient`: the seam through which the scheduler, the overlay and locksmith
//! keep their state in the kv.
//!
//! The trait speaks the etcd v2 data model (the [`crate::v2`] wire types) and
//! nothing about transport, so the same consumer code runs against an embedded
//! store, a Keelson cluster over HTTP ([`HttpKvClient`]) or a real etcd. Its
//! methods return boxed futures so that `Arc<dyn KvClient>` works: consumers
//! are long-lived tasks that are handed a client, not generic over one.
//!
//! Watching is built on the one primitive every implementation provides, a
//! one-shot watch from an index ([`KvClient::watch_once`]); [`Watcher`] turns it
//! into an endless sequence of events that resumes from the last index and,
//! when the history window has moved past it (error 401), re-reads the key and
//! carries on from the read's index (reference kv.md §6.2–§6.3).
//!
//! ```no_run
//! # async fn demo() -> Result<(), keelson_kv::client::KvError> {
//! use std::sync::Arc;
//! use keelson_kv::client::{HttpKvClient, KvClient, Watcher, WatcherOptions};
//!
//! let kv = Arc::new(HttpKvClient::builder().endpoint("http://127.0.0.1:2379").build()?);
//! kv.create("/locks/reboot", "node-1", Some(60)).await?;
//! let mut w = Watcher::new(kv.clone(), "/locks", WatcherOptions { recursive: true, ..Default::default() });
//! let event = w.next().await?;
//! # let _ = event; Ok(()) }
//! ```

mod http;
mod watch;

use std::future::Future;
use std::pin::Pin;

use crate::v2::{ErrorBody, Node, Response, V2Error};

pub use http::{
    go_path_escape, go_query_escape, EndpointError, HttpKvClient, HttpKvClientBuilder, Member,
    VersionInfo,
};
pub use watch::{WatchEvent, Watcher, WatcherOptions};

/// The future every [`KvClient`] method returns.
pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'a>>;

/// A successful answer: the event plus the indexes the server reported with
/// it (`X-Etcd-Index`, `X-Raft-Index`, `X-Raft-Term`; zero when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvResponse {
    pub event: Response,
    /// The etcd index of the answer: the new index for a write, the current
    /// index for a read, the index at registration for a watch.
    pub etcd_index: u64,
    pub raft_index: u64,
    pub raft_term: u64,
}

impl KvResponse {
    /// The event's node (absent only for `noValueOnSuccess` answers).
    pub fn node(&self) -> Option<&Node> {
        self.event.node.as_ref()
    }
}

/// Options of a read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Return the whole subtree of a directory.
    pub recursive: bool,
    /// Sort children by key at every level.
    pub sorted: bool,
    /// Linearizable read through consensus instead of the local copy.
    pub quorum: bool,
}

/// The `prevExist` condition of a write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrevExist {
    /// No condition (`set`).
    #[default]
    Ignore,
    /// The node must exist (`update`, or CAS with a precondition).
    Exists,
    /// The node must not exist (`create`).
    NotExists,
}

/// Conditions of a compare-and-swap or compare-and-delete. Both may be given;
/// then both must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// The current value must equal this (`prevValue`; must not be empty).
    pub value: Option<String>,
    /// The current `modifiedIndex` must equal this (`prevIndex`; 0 = none).
    pub index: Option<u64>,
}

/// Options of a write (`PUT`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Seconds until expiry. `None` makes the node permanent (also on update).
    pub ttl: Option<u64>,
    /// Create (or update) a directory instead of a key; the value is ignored.
    pub dir: bool,
    pub prev_exist: PrevExist,
    pub prev: Precondition,
    /// Reset the TTL without changing the value or notifying watchers.
    pub refresh: bool,
    /// Ask the server to answer with the action only.
    pub no_value_on_success: bool,
}

/// Options of an in-order create (`POST`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateInOrderOptions {
    pub ttl: Option<u64>,
}

/// Options of a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Allow deleting an empty directory (or a key).
    pub dir: bool,
    /// Delete a directory and everything below it.
    pub recursive: bool,
    /// Turns the delete into a compare-and-delete.
    pub prev: Precondition,
}

/// Options of a one-shot watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchOptions {
    pub recursive: bool,
    /// First index of interest; `None` means "the next change".
    pub wait_index: Option<u64>,
}

/// Everything that can go wrong talking to the kv.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The kv answered with a v2 error (key not found, compare failed, ...).
    #[error(transparent)]
    Key(#[from] V2Error),
    /// The kv answered with an error code this client does not know.
    #[error("{}: {} ({}) [{}]", .0.error_code, .0.message, .0.cause, .0.index)]
    UnknownCode(ErrorBody),
    /// No endpoint could be reached; one entry per endpoint tried.
    #[error("client: etcd cluster is unavailable or misconfigured; {}", format_endpoint_errors(.0))]
    Cluster(Vec<EndpointError>),
    /// A non-key endpoint (members, stats, ...) refused the request; the text
    /// is the server's `message` when it sent one.
    #[error("{message}")]
    Api { status: u16, message: String },
    /// The answer could not be understood.
    #[error("client: malformed answer from {endpoint}: {reason}")]
    Decode { endpoint: String, reason: String },
    /// The client configuration is unusable (bad endpoint URL, unreadable
    /// certificate, ...).
    #[error("{0}")]
    Config(String),
    /// A single request to one URL failed before an answer arrived.
    #[error("{}", .0.message)]
    Transport(EndpointError),
    /// The cluster advertises no client URLs to sync to.
    #[error("client: no endpoints available")]
    NoEndpoints,
    /// The request did not complete in time.
    #[error("context deadline exceeded")]
    Timeout,
}

impl KvError {
    /// The v2 error, if the kv answered with one.
    pub fn v2(&self) -> Option<&V2Error> {
        match self {
            KvError::Key(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this is the given v2 error code.
    pub fn is_code(&self, code: crate::v2::ErrorCode) -> bool {
        self.v2().is_some_and(|e| e.code == code)
    }

    /// True when every endpoint failed to connect (nothing was sent).
    pub fn is_connection_error(&self) -> bool {
        match self {
            KvError::Cluster(errs) => errs.iter().all(|e| e.connect),
            KvError::Timeout => true,
            _ => false,
        }
    }
}

fn format_endpoint_errors(errs: &[EndpointError]) -> String {
    errs.iter()
        .enumerate()
        .map(|(i, e)| format!("error #{i}: {}", e.message))
        .collect::<Vec<_>>()
        .join("\n; ")
}

/// The key-value operations of the etcd v2 API.
///
/// Keys are absolute paths; a missing leading `/` is added. Implementations
/// must be cheap to share (`Arc<dyn KvClient>`).
pub trait KvClient: Send + Sync {
    /// Read a key or a directory.
    fn get<'a>(&'a self, key: &'a str, opts: GetOptions) -> KvFuture<'a, KvResponse>;

    /// Write a key or a directory; `opts` selects set / create / update /
    /// compare-and-swap / refresh exactly as the v2 `PUT` does.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        opts: SetOptions,
    ) -> KvFuture<'a, KvResponse>;

    /// Create a child of `dir` named by the new index (`POST`).
    fn create_in_order<'a>(
        &'a self,
        dir: &'a str,
        value: &'a str,
        opts: CreateInOrderOptions,
    ) -> KvFuture<'a, KvResponse>;

    /// Delete a key or directory, or compare-and-delete.
    fn delete<'a>(&'a self, key: &'a str, opts: DeleteOptions) -> KvFuture<'a, KvResponse>;

    /// Wait for the first event on `key` at or after `wait_index` (or the
    /// next one). Answers at once from the history when it can; fails with
    /// error 401 when the index has left the history window.
    fn watch_once<'a>(&'a self, key: &'a str, opts: WatchOptions) -> KvFuture<'a, KvResponse>;

    /// Create a key that must not exist yet (`prevExist=false`).
    fn create<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<u64>,
    ) -> KvFuture<'a, KvResponse> {
        self.set(
            key,
            value,
            SetOptions {
                ttl,
                prev_exist: PrevExist::NotExists,
                ..SetOptions::default()
            },
        )
    }

    /// Replace the value of an existing key (`prevExist=true`).
    fn update<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<u64>,
    ) -> KvFuture<'a, KvResponse> {
        self.set(
            key,
            value,
            SetOptions {
                ttl,
                prev_exist: PrevExist::Exists,
                ..SetOptions::default()
            },
        )
    }

    /// Replace the value only if `prev` holds.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        prev: Precondition,
        ttl: Option<u64>,
    ) -> KvFuture<'a, KvResponse> {
        self.set(
            key,
            value,
            SetOptions {
                ttl,
                prev,
                ..SetOptions::default()
            },
        )
    }

    /// Delete a key only if `prev` holds.
    fn compare_and_delete<'a>(
        &'a self,
        key: &'a str,
        prev: Precondition,
    ) -> KvFuture<'a, KvResponse> {
        self.delete(
            key,
            DeleteOptions {
                prev,
                ..DeleteOptions::default()
            },
        )
    }

    /// Reset the TTL of an existing key or directory without changing its
    /// value and without waking watchers.
    fn refresh<'a>(&'a self, key: &'a str, ttl: u64) -> KvFuture<'a, KvResponse> {
        self.set(
            key,
            "",
            SetOptions {
                ttl: Some(ttl),
                prev_exist: PrevExist::Exists,
                refresh: true,
                ..SetOptions::default()
            },
        )
    }

    /// Create a directory that must not exist yet.
    fn mkdir<'a>(&'a self, key: &'a str, ttl: Option<u64>) -> KvFuture<'a, KvResponse> {
        self.set(
            key,
            "",
            SetOptions {
                ttl,
                dir: true,
                prev_exist: PrevExist::NotExists,
                ..SetOptions::default()
            },
        )
    }
}

/// A key as etcd's client sends it: absolute and cleaned like Go's
/// `path.Join` (no empty or `.` segments, `..` resolved, no trailing slash).
pub fn clean_key(key: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in key.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(key.len() + 1);
    for seg in out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_cleaned_like_go_path_join() {
        assert_eq!(clean_key("foo"), "/foo");
        assert_eq!(clean_key("/foo/bar/"), "/foo/bar");
        assert_eq!(clean_key("//a//b/./c/../d"), "/a/b/d");
        assert_eq!(clean_key(""), "/");
        assert_eq!(clean_key("/"), "/");
        assert_eq!(clean_key("/.."), "/");
        assert_eq!(clean_key("sp ace/x"), "/sp ace/x");
    }

    #[test]
    fn cluster_error_text_matches_etcd_client() {
        let e = KvError::Cluster(vec![
            EndpointError {
                endpoint: "http://127.0.0.1:1".into(),
                message: "dial tcp 127.0.0.1:1: connect: connection refused".into(),
                connect: true,
            },
            EndpointError {
                endpoint: "http://127.0.0.1:2".into(),
                message: "dial tcp 127.0.0.1:2: connect: connection refused".into(),
                connect: true,
            },
        ]);
        assert_eq!(
            e.to_string(),
            "client: etcd cluster is unavailable or misconfigured; error #0: dial tcp 127.0.0.1:1: connect: connection refused\n; error #1: dial tcp 127.0.0.1:2: connect: connection refused"
        );
        assert!(e.is_connection_error());
    }
}
