//! [`Registry`]: the driver that keeps a [`ClusterState`] current from one
//! recursive watch on the prefix.
//!
//! It reads the prefix once, then follows changes from the read's index,
//! resuming after every event; when the history window has moved past it
//! (error 401) it re-reads the prefix, the only time the whole registry is
//! read again. Engines, agents and clients read the view
//! through [`Registry::with`] and wait for changes with
//! [`Registry::subscribe`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use keelson_kv::client::{GetOptions, KvClient, KvError, WatchOptions};
use keelson_kv::v2::ErrorCode;
use tokio::sync::watch;

use crate::cluster::ClusterState;
use crate::keys::Keys;

/// A live, watch-maintained view of the registry.
pub struct Registry {
    kv: Arc<dyn KvClient>,
    keys: Keys,
    state: Arc<RwLock<ClusterState>>,
    index: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_all(kv: &dyn KvClient, keys: &Keys) -> Result<ClusterState, KvError> {
    let opts = GetOptions {
        recursive: true,
        sorted: true,
        quorum: false,
    };
    match kv.get(keys.root(), opts).await {
        Ok(r) => Ok(ClusterState::from_snapshot(
            keys.clone(),
            r.node(),
            r.etcd_index,
        )),
        Err(KvError::Key(e)) if e.code == ErrorCode::KeyNotFound => {
            Ok(ClusterState::from_snapshot(keys.clone(), None, e.index))
        }
        Err(e) => Err(e),
    }
}

impl Registry {
    /// Read the registry and start following it.
    pub async fn open(kv: Arc<dyn KvClient>, keys: Keys) -> Result<Registry, KvError> {
        let initial = read_all(&*kv, &keys).await?;
        let start = initial.index;
        let state = Arc::new(RwLock::new(initial));
        let (tx, index) = watch::channel(start);
        let task = tokio::spawn(follow(kv.clone(), keys.clone(), state.clone(), tx, start));
        Ok(Registry {
            kv,
            keys,
            state,
            index,
            task,
        })
    }

    pub fn kv(&self) -> &Arc<dyn KvClient> {
        &self.kv
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Read the current view.
    pub fn with<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let g = match self.state.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&g)
    }

    /// The etcd index of the view; changes on every applied event.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.index.clone()
    }

    /// Wait until the view includes index `index` (our own writes), at most
    /// `timeout`. Returns whether it did.
    pub async fn wait_for_index(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.index.clone();
        tokio::time::timeout(timeout, rx.wait_for(|i| *i >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn follow(
    kv: Arc<dyn KvClient>,
    keys: Keys,
    state: Arc<RwLock<ClusterState>>,
    tx: watch::Sender<u64>,
    start: u64,
) {
    // Our own loop rather than `Watcher`, whose index 0 means "from now":
    // a registry read at index 0 must still see the write at index 1.
    let mut next = start + 1;
    let opts = |i| WatchOptions {
        recursive: true,
        wait_index: Some(i),
    };
    loop {
        match kv.watch_once(keys.root(), opts(next)).await {
            Ok(resp) => {
                let idx = resp
                    .node()
                    .map(|n| n.modified_index)
                    .unwrap_or(resp.etcd_index);
                if let Ok(mut s) = state.write() {
                    s.apply_event(resp.event.action, resp.node(), idx);
                }
                next = idx.max(next) + 1;
                tx.send_replace(idx);
            }
            Err(e) if e.is_code(ErrorCode::EventIndexCleared) => {
                tracing::info!(
                    index = next,
                    "registry watch fell behind the history; re-reading"
                );
                match read_all(&*kv, &keys).await {
                    Ok(fresh) => {
                        let idx = fresh.index;
                        if let Ok(mut s) = state.write() {
                            let bodies = std::mem::take(&mut s.bodies);
                            *s = fresh;
                            for (h, b) in bodies {
                                s.bodies.entry(h).or_insert(b);
                            }
                        }
                        next = idx + 1;
                        tx.send_replace(idx);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "registry re-read failed; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "registry watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
