//! [`Watcher`]: an endless sequence of events on a key or subtree, built on
//! [`KvClient::watch_once`].
//!
//! After an event with `modifiedIndex` M the next wait starts at M+1, which
//! neither misses nor repeats an event while M+1 is inside the server's
//! history window. When it is not (error 401, "outdated and cleared"), the
//! events in between are gone for good: the only correct recovery is to read
//! the current state and continue from the read's `X-Etcd-Index` + 1, so the
//! watcher does that and hands the fresh state to the caller as
//! [`WatchEvent::Resync`] (reference kv.md §6.2–§6.3).

use std::sync::Arc;

use futures::Stream;

use super::{GetOptions, KvClient, KvError, KvResponse, WatchOptions};
use crate::v2::ErrorCode;

/// How a [`Watcher`] starts and recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatcherOptions {
    /// Deliver events with an index greater than this; 0 means "from now".
    pub after_index: u64,
    /// Watch the whole subtree.
    pub recursive: bool,
    /// On error 401 re-read and carry on (true, the default) or return the
    /// error (what `etcdctl watch` does).
    pub resync_on_cleared: bool,
}

impl Default for WatcherOptions {
    fn default() -> Self {
        WatcherOptions {
            after_index: 0,
            recursive: false,
            resync_on_cleared: true,
        }
    }
}

/// What a [`Watcher`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A change, in index order.
    Event(KvResponse),
    /// Events were lost (the history window moved past the watcher). The
    /// caller must rebuild its view from `snapshot`: the current state of the
    /// watched key, or `None` if it does not exist. Watching continues after
    /// `etcd_index`.
    Resync {
        snapshot: Option<KvResponse>,
        etcd_index: u64,
    },
}

/// Watches a key or subtree, resuming from the last index.
pub struct Watcher {
    client: Arc<dyn KvClient>,
    key: String,
    opts: WatcherOptions,
    /// The index the next wait starts at; 0 = "the next change".
    next_wait: u64,
}

impl Watcher {
    pub fn new(client: Arc<dyn KvClient>, key: impl Into<String>, opts: WatcherOptions) -> Self {
        let next_wait = if opts.after_index > 0 {
            opts.after_index + 1
        } else {
            0
        };
        Watcher {
            client,
            key: key.into(),
            opts,
            next_wait,
        }
    }

    /// The index the next wait will start from (0 = from now).
    pub fn next_index(&self) -> u64 {
        self.next_wait
    }

    /// Wait for the next event.
    pub async fn next(&mut self) -> Result<WatchEvent, KvError> {
        let wopts = WatchOptions {
            recursive: self.opts.recursive,
            wait_index: Some(self.next_wait),
        };
        match self.client.watch_once(&self.key, wopts).await {
            Ok(resp) => {
                if let Some(node) = resp.node() {
                    if node.modified_index > 0 {
                        self.next_wait = node.modified_index + 1;
                    }
                }
                Ok(WatchEvent::Event(resp))
            }
            Err(e) if self.opts.resync_on_cleared && e.is_code(ErrorCode::EventIndexCleared) => {
                self.resync().await
            }
            Err(e) => Err(e),
        }
    }

    async fn resync(&mut self) -> Result<WatchEvent, KvError> {
        let read = self
            .client
            .get(
                &self.key,
                GetOptions {
                    recursive: self.opts.recursive,
                    sorted: true,
                    quorum: true,
                },
            )
            .await;
        let (snapshot, etcd_index) = match read {
            Ok(r) => {
                let i = r.etcd_index;
                (Some(r), i)
            }
            Err(KvError::Key(e)) if e.code == ErrorCode::KeyNotFound => (None, e.index),
            Err(e) => return Err(e),
        };
        self.next_wait = etcd_index + 1;
        Ok(WatchEvent::Resync {
            snapshot,
            etcd_index,
        })
    }

    /// The watcher as a `Stream` (it never ends by itself).
    pub fn into_stream(self) -> impl Stream<Item = Result<WatchEvent, KvError>> + Send {
        futures::stream::unfold(self, |mut w| async move {
            let item = w.next().await;
            Some((item, w))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::client::{CreateInOrderOptions, DeleteOptions, KvFuture, SetOptions, WatchOptions};
    use crate::v2::{Action, Node, Response, V2Error};

    /// Answers watches from a script and records the wait indexes asked for.
    struct Scripted {
        watches: Mutex<VecDeque<Result<KvResponse, KvError>>>,
        asked: Mutex<Vec<(String, Option<u64>)>>,
    }

    fn event(key: &str, index: u64) -> KvResponse {
        KvResponse {
            event: Response {
                action: Action::Set,
                node: Some(Node {
                    key: Some(key.into()),
                    value: Some("v".into()),
                    modified_index: index,
                    created_index: index,
                    ..Node::default()
                }),
                prev_node: None,
            },
            etcd_index: index,
            raft_index: 0,
            raft_term: 0,
        }
    }

    impl KvClient for Scripted {
        fn get<'a>(&'a self, key: &'a str, _: GetOptions) -> KvFuture<'a, KvResponse> {
            self.asked
                .lock()
                .unwrap()
                .push((format!("get {key}"), None));
            Box::pin(async { Ok(event("/k", 2000)) })
        }
        fn set<'a>(&'a self, _: &'a str, _: &'a str, _: SetOptions) -> KvFuture<'a, KvResponse> {
            unreachable!("the watcher only reads and watches")
        }
        fn create_in_order<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: CreateInOrderOptions,
        ) -> KvFuture<'a, KvResponse> {
            unreachable!("the watcher only reads and watches")
        }
        fn delete<'a>(&'a self, _: &'a str, _: DeleteOptions) -> KvFuture<'a, KvResponse> {
            unreachable!("the watcher only reads and watches")
        }
        fn watch_once<'a>(&'a self, key: &'a str, o: WatchOptions) -> KvFuture<'a, KvResponse> {
            self.asked
                .lock()
                .unwrap()
                .push((format!("watch {key}"), o.wait_index));
            let next = self.watches.lock().unwrap().pop_front();
            Box::pin(async move { next.unwrap_or(Err(KvError::Timeout)) })
        }
    }

    #[tokio::test]
    async fn resumes_from_last_index_and_resyncs_on_401() {
        let script = Arc::new(Scripted {
            watches: Mutex::new(VecDeque::from(vec![
                Ok(event("/k/a", 10)),
                Ok(event("/k/b", 12)),
                Err(KvError::Key(V2Error::new(
                    ErrorCode::EventIndexCleared,
                    "x",
                    1500,
                ))),
                Ok(event("/k/c", 2001)),
            ])),
            asked: Mutex::new(Vec::new()),
        });
        let mut w = Watcher::new(
            script.clone(),
            "/k",
            WatcherOptions {
                after_index: 5,
                recursive: true,
                ..WatcherOptions::default()
            },
        );
        assert!(matches!(w.next().await.unwrap(), WatchEvent::Event(_)));
        assert!(matches!(w.next().await.unwrap(), WatchEvent::Event(_)));
        match w.next().await.unwrap() {
            WatchEvent::Resync {
                etcd_index,
                snapshot,
            } => {
                assert_eq!(etcd_index, 2000);
                assert!(snapshot.is_some());
            }
            other => panic!("expected resync, got {other:?}"),
        }
        assert!(matches!(w.next().await.unwrap(), WatchEvent::Event(_)));
        let asked = script.asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![
                ("watch /k".to_string(), Some(6)),
                ("watch /k".to_string(), Some(11)),
                ("watch /k".to_string(), Some(13)),
                ("get /k".to_string(), None),
                ("watch /k".to_string(), Some(2001)),
            ]
        );
    }

    #[tokio::test]
    async fn cleared_is_an_error_when_asked() {
        let script = Arc::new(Scripted {
            watches: Mutex::new(VecDeque::from(vec![Err(KvError::Key(V2Error::new(
                ErrorCode::EventIndexCleared,
                "x",
                1500,
            )))])),
            asked: Mutex::new(Vec::new()),
        });
        let mut w = Watcher::new(
            script,
            "/k",
            WatcherOptions {
                resync_on_cleared: false,
                ..WatcherOptions::default()
            },
        );
        let e = w.next().await.unwrap_err();
        assert!(e.is_code(ErrorCode::EventIndexCleared));
    }
}
