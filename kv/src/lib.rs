//! keelson-kv: a consistent key-value store that speaks etcd's v2 HTTP API,
//! embeddable in a program.
//!
//! Embedding a store takes a data directory and a few lines: start a
//! [`server::KvServer`] (no HTTP listener needed) and talk to it through
//! [`embedded::EmbeddedKvClient`], the in-process implementation of the
//! [`client::KvClient`] trait that the scheduler, the overlay and locksmith
//! use. Writes go through Raft and the write-ahead log exactly as they do
//! behind the HTTP API.
//!
//! ```
//! use keelson_kv::client::KvClient;
//! use keelson_kv::embedded::EmbeddedKvClient;
//! use keelson_kv::server::{KvServer, ServerConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let server = KvServer::start(ServerConfig {
//!     data_dir: dir.path().join("demo.etcd"),
//!     listen_client_urls: vec![], // in-process only; add URLs to serve HTTP
//!     ..ServerConfig::default()
//! })
//! .await?;
//! let kv = EmbeddedKvClient::from_handle(&server);
//! kv.set("/config/greeting", "hello", Default::default()).await?;
//! let got = kv.get("/config/greeting", Default::default()).await?;
//! assert_eq!(got.event.node.and_then(|n| n.value).as_deref(), Some("hello"));
//! server.shutdown().await?; // flushes the log; the data outlives the process
//! # Ok(()) }
//! ```
//!
//! Modules, from the data model outwards:
//!
//! - [`store`]: the v2 data model as a pure apply step (keys, directories,
//!   TTLs on an explicit clock, CAS/CAD, in-order keys, the event history).
//! - [`v2`]: the wire types (nodes, responses, error codes) of the v2 API.
//! - [`storage`]: the storage seam Raft writes through, with an in-memory
//!   implementation; [`wal`]: the durable one (checksummed segments, group
//!   commit, snapshots).
//! - [`raft`]: the store replicated with `openraft` over that storage.
//! - [`server`]: a running member ([`server::KvServer`]) and the
//!   etcd-compatible HTTP API; [`embedded`]: the same member as a
//!   [`client::KvClient`] in-process.
//! - [`client`]: the [`client::KvClient`] trait and the HTTP v2 client that
//!   works against Keelson and against a real etcd.
//! - [`backup`]: `etcdctl backup`; restore with `--force-new-cluster`
//!   ([`server::ServerConfig::force_new_cluster`]).

pub mod backup;
pub mod client;
pub mod discovery;
pub mod embedded;
pub mod metrics;
pub mod proxy;
pub mod raft;
pub mod server;
pub mod storage;
pub mod store;
pub mod tls;
pub mod v2;
pub mod wal;
