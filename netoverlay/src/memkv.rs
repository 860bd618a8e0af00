//! [`MemKv`]: an in-memory [`KvClient`] over the kv crate's pure store, for
//! deterministic tests and simulations of the overlay without a server.
//!
//! It has etcd's v2 semantics because it *is* the store's apply step (create
//! with `prevExist=false`, compare-and-swap, TTLs, watch history and error
//! 401); only the transport and Raft are missing. Time comes from a clock the
//! caller may move, so a test can expire a 24 h lease instantly.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use keelson_kv::client::{
    CreateInOrderOptions, DeleteOptions, GetOptions, KvClient, KvError, KvFuture, KvResponse,
    PrevExist, SetOptions, WatchOptions,
};
use keelson_kv::store::{Command, PutRequest, Store, Timestamp};
use tokio::sync::Notify;

/// The clock of a [`MemKv`]: real time plus an offset the test may advance.
#[derive(Debug, Default)]
pub struct MemClock {
    offset_nanos: AtomicI64,
}

impl MemClock {
    pub fn now(&self) -> Timestamp {
        let real = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        Timestamp::from_unix_nanos(real.saturating_add(self.offset_nanos.load(Ordering::SeqCst)))
    }

    /// Moves time forward by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.offset_nanos
            .fetch_add(secs.saturating_mul(1_000_000_000), Ordering::SeqCst);
    }
}

struct Inner {
    store: Mutex<Store>,
    changed: Notify,
    clock: MemClock,
}

/// An in-process kv. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct MemKv {
    inner: Arc<Inner>,
}

impl Default for MemKv {
    fn default() -> Self {
        MemKv::new()
    }
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv {
            inner: Arc::new(Inner {
                store: Mutex::new(Store::new()),
                changed: Notify::new(),
                clock: MemClock::default(),
            }),
        }
    }

    pub fn clock(&self) -> &MemClock {
        &self.inner.clock
    }

    /// The store with every due expiry applied.
    fn locked(&self) -> MutexGuard<'_, Store> {
        let mut s = self
            .inner
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.inner.clock.now();
        if s.next_expiration().is_some_and(|t| t <= now) {
            if let Ok(applied) = s.apply(Command::Sync { now }, now) {
                if !applied.events().is_empty() {
                    self.inner.changed.notify_waiters();
                }
            }
        }
        s
    }

    fn write(&self, cmd: Command) -> Result<KvResponse, KvError> {
        let now = self.inner.clock.now();
        let mut s = self.locked();
        let applied = s.apply(cmd, now)?;
        let index = s.index();
        drop(s);
        self.inner.changed.notify_waiters();
        let event = applied
            .into_event()
            .map(|e| e.to_response())
            .ok_or_else(|| KvError::Config("memkv: write produced no event".into()))?;
        Ok(KvResponse {
            event,
            etcd_index: index,
            raft_index: index,
            raft_term: 1,
        })
    }
}

fn expiration(clock: &MemClock, ttl: Option<u64>) -> Option<Timestamp> {
    ttl.map(|t| clock.now().plus_secs(t))
}

impl KvClient for MemKv {
    fn get<'a>(&'a self, key: &'a str, opts: GetOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            let now = self.inner.clock.now();
            let s = self.locked();
            let ev = s.get(key, opts.recursive, opts.sorted, now)?;
            Ok(KvResponse {
                event: ev.to_response(),
                etcd_index: s.index(),
                raft_index: s.index(),
                raft_term: 1,
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
            let req = PutRequest {
                value: value.to_string(),
                dir: opts.dir,
                expiration: expiration(&self.inner.clock, opts.ttl),
                refresh: opts.refresh,
                prev_exist: match opts.prev_exist {
                    PrevExist::Ignore => None,
                    PrevExist::Exists => Some(true),
                    PrevExist::NotExists => Some(false),
                },
                prev_value: opts.prev.value.clone(),
                prev_index: opts.prev.index.unwrap_or(0),
            };
            self.write(Command::from_put(key, req))
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
                parent: dir.to_string(),
                value: value.to_string(),
                dir: false,
                expiration: expiration(&self.inner.clock, opts.ttl),
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str, opts: DeleteOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.write(Command::from_delete(
                key,
                opts.dir,
                opts.recursive,
                opts.prev.value.clone(),
                opts.prev.index.unwrap_or(0),
            ))
        })
    }

    fn watch_once<'a>(&'a self, key: &'a str, opts: WatchOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            let since = match opts.wait_index {
                Some(i) if i > 0 => i,
                _ => self.locked().index() + 1,
            };
            loop {
                let notified = self.inner.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let next_exp = {
                    let s = self.locked();
                    if let Some(ev) = s.watch_scan(key, opts.recursive, since)? {
                        return Ok(KvResponse {
                            event: ev.to_response(),
                            etcd_index: s.index(),
                            raft_index: s.index(),
                            raft_term: 1,
                        });
                    }
                    s.next_expiration()
                };
                // Wake for a write, or for the next expiry to sweep it.
                let wait = match next_exp {
                    Some(t) => {
                        let now = self.inner.clock.now();
                        let ns =
                            (t.unix_nanos() - now.unix_nanos()).clamp(1_000_000, 1_000_000_000);
                        std::time::Duration::from_nanos(ns as u64)
                    }
                    None => std::time::Duration::from_secs(1),
                };
                let _ = tokio::time::timeout(wait, notified).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_kv::v2::{Action, ErrorCode};

    #[tokio::test]
    async fn create_cas_ttl_and_watch() {
        let kv = MemKv::new();
        kv.create("/a/b", "1", Some(10)).await.unwrap();
        let e = kv.create("/a/b", "2", None).await.unwrap_err();
        assert!(e.is_code(ErrorCode::NodeExist));
        let r = kv.get("/a/b", GetOptions::default()).await.unwrap();
        let idx = r.node().unwrap().modified_index;
        let w = {
            let kv = kv.clone();
            tokio::spawn(async move {
                kv.watch_once(
                    "/a",
                    WatchOptions {
                        recursive: true,
                        wait_index: Some(idx + 1),
                    },
                )
                .await
            })
        };
        kv.clock().advance(11);
        let ev = w.await.unwrap().unwrap();
        assert_eq!(ev.event.action, Action::Expire);
    }
}
