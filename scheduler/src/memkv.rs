//! [`MemKv`]: a deterministic in-process [`KvClient`] over the pure v2
//! [`Store`], for tests, simulations and benchmarks.
//!
//! The scheduler only talks to the kv through `KvClient`, so running engines
//! and agents against this client exercises exactly the code that runs
//! against a real cluster, minus the network. TTLs are real: every call
//! first applies the store's expiry sweep at the current wall-clock time, and
//! waiting watchers re-check every 50 ms, so `expire` events arrive on time.
//! [`FaultyKv`] wraps any client and can be switched off to simulate a
//! machine cut off from the kv.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use keelson_kv::client::{
    clean_key, CreateInOrderOptions, DeleteOptions, GetOptions, KvClient, KvError, KvFuture,
    KvResponse, PrevExist, SetOptions, WatchOptions,
};
use keelson_kv::store::{Command, PutRequest, Store, Timestamp};
use keelson_kv::v2::V2Error;
use tokio::sync::Notify;

/// Counts of the operations a [`MemKv`] served.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvOpCounts {
    pub reads: u64,
    pub writes: u64,
    pub watches: u64,
}

/// An in-memory kv: one [`Store`] behind a mutex.
pub struct MemKv {
    store: Mutex<Store>,
    changed: Notify,
    reads: AtomicU64,
    writes: AtomicU64,
    watches: AtomicU64,
}

impl Default for MemKv {
    fn default() -> Self {
        MemKv::new()
    }
}

fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

fn response(event: &keelson_kv::store::Event, etcd_index: u64) -> KvResponse {
    KvResponse {
        event: event.to_response(),
        etcd_index,
        raft_index: etcd_index,
        raft_term: 1,
    }
}

impl MemKv {
    pub fn new() -> Self {
        MemKv::with_history(keelson_kv::store::DEFAULT_HISTORY_CAPACITY)
    }

    /// A store keeping only `capacity` events, to provoke error 401.
    pub fn with_history(capacity: usize) -> Self {
        MemKv {
            store: Mutex::new(Store::with_history_capacity(capacity)),
            changed: Notify::new(),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            watches: AtomicU64::new(0),
        }
    }

    /// Operations served so far.
    pub fn op_counts(&self) -> KvOpCounts {
        KvOpCounts {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            watches: self.watches.load(Ordering::Relaxed),
        }
    }

    /// Locks the store after applying any due expiry.
    fn locked(&self) -> MutexGuard<'_, Store> {
        let mut store = match self.store.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = now();
        if store.next_expiration().is_some_and(|t| t <= now) {
            if let Ok(applied) = store.apply(Command::Sync { now }, now) {
                if !applied.events().is_empty() {
                    self.changed.notify_waiters();
                }
            }
        }
        store
    }

    fn apply(&self, cmd: Command) -> Result<KvResponse, KvError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut store = self.locked();
        let applied = store.apply(cmd, now()).map_err(KvError::Key)?;
        let index = store.index();
        drop(store);
        self.changed.notify_waiters();
        let event = applied.into_event().ok_or_else(|| {
            KvError::Key(V2Error::new(
                keelson_kv::v2::ErrorCode::RaftInternal,
                "no event",
                index,
            ))
        })?;
        Ok(response(&event, index))
    }
}

fn expiration(ttl: Option<u64>) -> Option<Timestamp> {
    ttl.map(|t| now().plus_secs(t))
}

impl KvClient for MemKv {
    fn get<'a>(&'a self, key: &'a str, opts: GetOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let store = self.locked();
            let ev = store
                .get(&clean_key(key), opts.recursive, opts.sorted, now())
                .map_err(KvError::Key)?;
            Ok(response(&ev, store.index()))
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
                value: value.to_owned(),
                dir: opts.dir,
                expiration: expiration(opts.ttl),
                refresh: opts.refresh,
                prev_exist: match opts.prev_exist {
                    PrevExist::Ignore => None,
                    PrevExist::Exists => Some(true),
                    PrevExist::NotExists => Some(false),
                },
                prev_value: opts.prev.value.clone(),
                prev_index: opts.prev.index.unwrap_or(0),
            };
            self.apply(Command::from_put(clean_key(key), req))
        })
    }

    fn create_in_order<'a>(
        &'a self,
        dir: &'a str,
        value: &'a str,
        opts: CreateInOrderOptions,
    ) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.apply(Command::CreateInOrder {
                parent: clean_key(dir),
                value: value.to_owned(),
                dir: false,
                expiration: expiration(opts.ttl),
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str, opts: DeleteOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.apply(Command::from_delete(
                clean_key(key),
                opts.dir,
                opts.recursive,
                opts.prev.value.clone(),
                opts.prev.index.unwrap_or(0),
            ))
        })
    }

    fn watch_once<'a>(&'a self, key: &'a str, opts: WatchOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.watches.fetch_add(1, Ordering::Relaxed);
            let key = clean_key(key);
            // "From now" is fixed at registration, so nothing is missed
            // between waits.
            let since = match opts.wait_index {
                Some(i) if i > 0 => i,
                _ => self.locked().index() + 1,
            };
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let store = self.locked();
                    if let Some(ev) = store
                        .watch_scan(&key, opts.recursive, since)
                        .map_err(KvError::Key)?
                    {
                        return Ok(response(&ev, store.index()));
                    }
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        })
    }
}

/// Wraps a client; while [`FaultyKv::set_down`] is on, every call fails as
/// if the kv were unreachable (and waiting watches fail too).
pub struct FaultyKv {
    inner: Arc<dyn KvClient>,
    down: Arc<AtomicBool>,
}

impl FaultyKv {
    pub fn new(inner: Arc<dyn KvClient>) -> Self {
        FaultyKv {
            inner,
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Cut the client off (`true`) or reconnect it.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), KvError> {
        if self.down.load(Ordering::SeqCst) {
            Err(KvError::Timeout)
        } else {
            Ok(())
        }
    }
}

impl KvClient for FaultyKv {
    fn get<'a>(&'a self, key: &'a str, opts: GetOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.check()?;
            self.inner.get(key, opts).await
        })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        opts: SetOptions,
    ) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.check()?;
            self.inner.set(key, value, opts).await
        })
    }
    fn create_in_order<'a>(
        &'a self,
        dir: &'a str,
        value: &'a str,
        opts: CreateInOrderOptions,
    ) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.check()?;
            self.inner.create_in_order(dir, value, opts).await
        })
    }
    fn delete<'a>(&'a self, key: &'a str, opts: DeleteOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.check()?;
            self.inner.delete(key, opts).await
        })
    }
    fn watch_once<'a>(&'a self, key: &'a str, opts: WatchOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            self.check()?;
            let down = self.down.clone();
            tokio::select! {
                r = self.inner.watch_once(key, opts) => r,
                _ = async move {
                    while !down.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                } => Err(KvError::Timeout),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn set_get_watch_and_expire() {
        let kv = Arc::new(MemKv::new());
        let r = kv.create("/a/b", "1", Some(1)).await.unwrap();
        assert_eq!(r.etcd_index, 1);
        assert!(kv.create("/a/b", "2", None).await.is_err());
        let got = kv
            .get(
                "/a",
                GetOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            got.node().and_then(|n| n.nodes.as_ref()).map(Vec::len),
            Some(1)
        );
        let w = kv
            .watch_once(
                "/a",
                WatchOptions {
                    recursive: true,
                    wait_index: Some(2),
                },
            )
            .await
            .unwrap();
        assert_eq!(w.event.action, keelson_kv::v2::Action::Expire);
    }
}
