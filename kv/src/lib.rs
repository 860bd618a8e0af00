//! keelson-kv: a consistent key-value store that speaks etcd's v2 HTTP API.
//!
//! The store's data model is a pure apply step (`store`), replicated through
//! `openraft` over a durable write-ahead log (`wal`), and served over HTTP.

pub mod backup;
pub mod client;
pub mod embedded;
pub mod raft;
pub mod server;
pub mod storage;
pub mod store;
pub mod v2;
pub mod wal;
