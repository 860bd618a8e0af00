//! [`EmbeddedKvClient`]: the [`KvClient`] seam over a member running in the
//! same process, with no HTTP in between.
//!
//! The scheduler, the overlay and locksmith store their state through
//! `KvClient`; a program that embeds the store hands them this client and
//! gets exactly the semantics of the HTTP API (writes through Raft, error
//! 300 on a failed proposal, the same parameter rules and errors, watches
//! from the same history) without serializing anything.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use keelson_kv::client::KvClient;
//! use keelson_kv::embedded::EmbeddedKvClient;
//! use keelson_kv::server::{KvServer, ServerConfig};
//!
//! let handle = KvServer::start(ServerConfig {
//!     data_dir: "/tmp/embedded.etcd".into(),
//!     listen_client_urls: vec![],
//!     ..ServerConfig::default()
//! })
//! .await?;
//! let kv: Arc<dyn KvClient> = Arc::new(EmbeddedKvClient::new(handle.core().clone()));
//! kv.set("/hello", "world", Default::default()).await?;
//! handle.shutdown().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use crate::client::{
    clean_key, CreateInOrderOptions, DeleteOptions, GetOptions, KvClient, KvError, KvFuture,
    KvResponse, PrevExist, SetOptions, WatchOptions,
};
use crate::server::{now, KvCore, KvServerHandle};
use crate::store::{Command, PutRequest};
use crate::v2::{ErrorCode, V2Error};

/// A [`KvClient`] over an in-process member. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedKvClient {
    core: Arc<KvCore>,
}

impl EmbeddedKvClient {
    pub fn new(core: Arc<KvCore>) -> Self {
        EmbeddedKvClient { core }
    }

    /// A client over a running server's member.
    pub fn from_handle(handle: &KvServerHandle) -> Self {
        Self::new(handle.core().clone())
    }
}

fn param_error(code: ErrorCode, cause: &str) -> KvError {
    KvError::Key(V2Error::new(code, cause, 0))
}

fn check_prev_value(v: &Option<String>) -> Result<(), KvError> {
    if v.as_deref() == Some("") {
        return Err(param_error(
            ErrorCode::PrevValueRequired,
            "\"prevValue\" cannot be empty",
        ));
    }
    Ok(())
}

impl EmbeddedKvClient {
    async fn write(&self, command: Command) -> Result<KvResponse, KvError> {
        let w = self.core.write(command).await?;
        Ok(KvResponse {
            etcd_index: w.event.index(),
            event: w.event.to_response(),
            raft_index: w.raft_index,
            raft_term: w.raft_term,
        })
    }
}

impl KvClient for EmbeddedKvClient {
    fn get<'a>(&'a self, key: &'a str, opts: GetOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            let r = self
                .core
                .get(&clean_key(key), opts.recursive, opts.sorted, opts.quorum)
                .await?;
            Ok(KvResponse {
                event: r.event.to_response(),
                etcd_index: r.etcd_index,
                raft_index: r.raft_index,
                raft_term: r.raft_term,
            })
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        opts: SetOptions,
    ) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            check_prev_value(&opts.prev.value)?;
            if opts.refresh {
                if !value.is_empty() {
                    return Err(param_error(
                        ErrorCode::RefreshValue,
                        "A value was provided on a refresh",
                    ));
                }
                if opts.ttl.is_none() {
                    return Err(param_error(
                        ErrorCode::RefreshTtlRequired,
                        "No TTL value set",
                    ));
                }
            }
            let req = PutRequest {
                value: value.to_owned(),
                dir: opts.dir,
                expiration: opts.ttl.map(|t| now().plus_secs(t)),
                refresh: opts.refresh,
                prev_exist: match opts.prev_exist {
                    PrevExist::Ignore => None,
                    PrevExist::Exists => Some(true),
                    PrevExist::NotExists => Some(false),
                },
                prev_value: opts.prev.value.clone(),
                prev_index: opts.prev.index.unwrap_or(0),
            };
            self.write(Command::from_put(clean_key(key), req)).await
        })
    }

    fn create_in_order<'a>(
        &'a self,
        dir: &'a str,
        value: &'a str,
        opts: CreateInOrderOptions,
    ) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.write(Command::CreateInOrder {
                parent: clean_key(dir),
                value: value.to_owned(),
                dir: false,
                expiration: opts.ttl.map(|t| now().plus_secs(t)),
            })
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a str, opts: DeleteOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            check_prev_value(&opts.prev.value)?;
            self.write(Command::from_delete(
                clean_key(key),
                opts.dir,
                opts.recursive,
                opts.prev.value.clone(),
                opts.prev.index.unwrap_or(0),
            ))
            .await
        })
    }

    fn watch_once<'a>(&'a self, key: &'a str, opts: WatchOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            let key = clean_key(key);
            loop {
                let mut w =
                    self.core
                        .watch(&key, opts.recursive, opts.wait_index.unwrap_or(0), false)?;
                // A watch that ends without an event (the member let go of
                // it) is simply started again, as the HTTP client does.
                if let Some(event) = w.next().await {
                    return Ok(KvResponse {
                        event: event.to_response(),
                        etcd_index: w.etcd_index,
                        raft_index: w.raft_index,
                        raft_term: w.raft_term,
                    });
                }
            }
        })
    }
}
