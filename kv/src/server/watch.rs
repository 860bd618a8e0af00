//! Live watchers: the part of etcd's watcher hub that is not the history.
//!
//! The state machine calls [`WatchHub::publish`] for every applied event
//! while it holds the store exclusively, and a watch is registered while
//! the store is held for reading right after its history scan, so no event
//! can fall between the scan and the registration. Each watcher has a
//! bounded queue of [`WATCHER_BUFFER`] events, like etcd's: a watcher that
//! falls that far behind is dropped (its stream ends) rather than letting
//! one slow client hold memory for the whole server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::store::{event_matches_watch, Event};

/// Undelivered events a watcher may have before it is dropped (etcd: 100).
pub const WATCHER_BUFFER: usize = 100;

struct Watcher {
    key: String,
    recursive: bool,
    since: u64,
    stream: bool,
    tx: mpsc::Sender<Arc<Event>>,
}

/// The registered watchers of one member.
#[derive(Default)]
pub struct WatchHub {
    watchers: Mutex<HashMap<u64, Watcher>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

/// A registered watcher's end: events arrive on `events`; dropping it
/// unregisters the watcher.
pub struct WatchRegistration {
    pub(crate) events: mpsc::Receiver<Arc<Event>>,
    guard: WatchGuard,
}

impl WatchRegistration {
    /// The next event, or `None` once the watcher is done (a one-shot
    /// watcher got its event, or a slow watcher was dropped).
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        self.events.recv().await
    }

    /// The watcher's id in its hub.
    pub fn id(&self) -> u64 {
        self.guard.id
    }
}

struct WatchGuard {
    hub: Arc<WatchHub>,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

impl WatchHub {
    pub fn new() -> Arc<WatchHub> {
        Arc::new(WatchHub::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Watcher>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a watcher on the clean path `key` for events with index
    /// `>= since`. A non-`stream` watcher is removed after its first event.
    /// Call with the store held (see the module documentation).
    pub fn register(
        self: &Arc<Self>,
        key: &str,
        recursive: bool,
        since: u64,
        stream: bool,
    ) -> WatchRegistration {
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Watcher {
                key: key.to_owned(),
                recursive,
                since,
                stream,
                tx,
            },
        );
        WatchRegistration {
            events: rx,
            guard: WatchGuard {
                hub: Arc::clone(self),
                id,
            },
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Hands applied events, in index order, to every watcher they wake.
    pub fn publish(&self, events: &[Arc<Event>]) {
        if events.is_empty() {
            return;
        }
        let mut watchers = self.lock();
        if watchers.is_empty() {
            return;
        }
        for event in events {
            watchers.retain(|_, w| {
                if event.index() < w.since || !event_matches_watch(event, &w.key, w.recursive) {
                    return !w.tx.is_closed();
                }
                match w.tx.try_send(Arc::clone(event)) {
                    Ok(()) => w.stream,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(key = %w.key, "dropping a watcher that fell {WATCHER_BUFFER} events behind");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
    }

    /// Currently registered watchers (`/v2/stats/store` `watchers`).
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Watchers dropped for falling behind since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Ends every watcher (shutdown): their streams finish after the
    /// events already queued.
    pub fn close_all(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Command, PutRequest, Store, Timestamp};

    fn put(store: &mut Store, key: &str) -> Arc<Event> {
        let now = Timestamp::from_unix(1_800_000_000, 0);
        let req = PutRequest {
            value: "v".into(),
            ..PutRequest::default()
        };
        store
            .apply(Command::from_put(key, req), now)
            .ok()
            .and_then(|a| a.into_event())
            .expect("set applies")
    }

    #[tokio::test]
    async fn one_shot_and_stream_watchers() {
        let hub = WatchHub::new();
        let mut store = Store::new();
        let mut once = hub.register("/a", false, 1, false);
        let mut all = hub.register("/", true, 1, true);
        assert_eq!(hub.count(), 2);
        let e1 = put(&mut store, "/a");
        let e2 = put(&mut store, "/b");
        hub.publish(std::slice::from_ref(&e1));
        hub.publish(std::slice::from_ref(&e2));
        assert_eq!(once.recv().await, Some(e1.clone()));
        assert_eq!(once.recv().await, None);
        assert_eq!(all.recv().await, Some(e1));
        assert_eq!(all.recv().await, Some(e2));
        assert_eq!(hub.count(), 1);
        drop(all);
        assert_eq!(hub.count(), 0);
    }

    #[tokio::test]
    async fn slow_watcher_is_dropped_after_buffer_fills() {
        let hub = WatchHub::new();
        let mut store = Store::new();
        let mut w = hub.register("/k", false, 0, true);
        for _ in 0..=WATCHER_BUFFER {
            let e = put(&mut store, "/k");
            hub.publish(&[e]);
        }
        assert_eq!(hub.count(), 0);
        assert_eq!(hub.dropped(), 1);
        let mut n = 0;
        while w.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, WATCHER_BUFFER);
    }
}
