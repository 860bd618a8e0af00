//! `HttpKvClient` against the real etcd 3.4.23 (Debian `etcd-server`, v2 API
//! enabled): encoding, error decoding, compare-and-swap under contention,
//! watch resumption past the 1000-event history window, failover and the
//! cluster endpoints. Fails when `etcd` is missing (scripts/setup.sh).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keelson_kv::client::{
    DeleteOptions, GetOptions, HttpKvClient, KvClient, KvError, Precondition, SetOptions,
    WatchEvent, WatchOptions, Watcher, WatcherOptions,
};
use keelson_kv::v2::{Action, ErrorCode};

struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.contains("\"health\":\"true\"")
}

fn start_etcd() -> Etcd {
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cp, pp) = (free_port(), free_port());
        let curl = format!("http://127.0.0.1:{cp}");
        let purl = format!("http://127.0.0.1:{pp}");
        let child = Command::new("etcd")
            .arg("--enable-v2=true")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &curl,
                "--advertise-client-urls",
                &curl,
            ])
            .args([
                "--listen-peer-urls",
                &purl,
                "--initial-advertise-peer-urls",
                &purl,
            ])
            .args(["--initial-cluster", &format!("default={purl}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run `etcd` (Debian etcd-server 3.4.23); run scripts/setup.sh");
        let mut etcd = Etcd {
            child,
            _dir: dir,
            port: cp,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = etcd.child.try_wait() {
                break;
            }
            if healthy(cp) {
                return etcd;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("etcd did not start");
}

fn client(etcd: &Etcd) -> Arc<HttpKvClient> {
    Arc::new(
        HttpKvClient::builder()
            .endpoint(format!("http://127.0.0.1:{}", etcd.port))
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_operations_and_errors() {
    let etcd = start_etcd();
    let kv = client(&etcd);

    // Keys that need escaping survive the round trip; values are form-encoded.
    let key = "/enc/sp ace/q?x#y%z/é+&=";
    let value = "a b&c=d\n<>\"'%";
    let r = kv.set(key, value, SetOptions::default()).await.unwrap();
    assert_eq!(r.event.action, Action::Set);
    assert_eq!(r.node().unwrap().key.as_deref(), Some(key));
    assert!(r.etcd_index >= 4 && r.raft_index > 0 && r.raft_term > 0);
    let g = kv.get(key, GetOptions::default()).await.unwrap();
    assert_eq!(g.node().unwrap().value.as_deref(), Some(value));
    // A missing leading slash is added.
    kv.set("noslash", "1", SetOptions::default()).await.unwrap();
    assert_eq!(
        kv.get("/noslash", GetOptions::default())
            .await
            .unwrap()
            .node()
            .unwrap()
            .value
            .as_deref(),
        Some("1")
    );

    // create / update / compare-and-swap / compare-and-delete / refresh
    let c = kv.create("/ops/a", "one", None).await.unwrap();
    assert_eq!(c.event.action, Action::Create);
    let e = kv.create("/ops/a", "two", None).await.unwrap_err();
    assert!(e.is_code(ErrorCode::NodeExist), "{e}");
    assert_eq!(e.v2().unwrap().cause, "/ops/a");
    let u = kv.update("/ops/a", "three", Some(100)).await.unwrap();
    assert_eq!(u.event.action, Action::Update);
    assert_eq!(u.node().unwrap().ttl, 100);
    let e = kv
        .compare_and_swap(
            "/ops/a",
            "x",
            Precondition {
                value: Some("nope".into()),
                index: None,
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("101: Compare failed ([nope != three]) [{}]", u.etcd_index)
    );
    let m = u.node().unwrap().modified_index;
    let s = kv
        .compare_and_swap(
            "/ops/a",
            "four",
            Precondition {
                value: Some("three".into()),
                index: Some(m),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(s.event.action, Action::CompareAndSwap);
    assert_eq!(
        s.event.prev_node.as_ref().unwrap().value.as_deref(),
        Some("three")
    );
    let r = kv.refresh("/ops/a", 50).await.unwrap();
    assert_eq!(r.node().unwrap().value.as_deref(), Some("four"));
    assert_eq!(r.node().unwrap().ttl, 50);
    let e = kv
        .compare_and_delete(
            "/ops/a",
            Precondition {
                value: Some("bad".into()),
                index: None,
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_code(ErrorCode::TestFailed));
    let d = kv
        .compare_and_delete(
            "/ops/a",
            Precondition {
                value: Some("four".into()),
                index: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(d.event.action, Action::CompareAndDelete);

    // directories
    kv.mkdir("/ops/d", None).await.unwrap();
    kv.set("/ops/d/x", "1", SetOptions::default())
        .await
        .unwrap();
    let e = kv
        .delete(
            "/ops/d",
            DeleteOptions {
                dir: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_code(ErrorCode::DirNotEmpty));
    let e = kv
        .set("/ops/d", "v", SetOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_code(ErrorCode::NotFile));
    let l = kv
        .get(
            "/ops",
            GetOptions {
                recursive: true,
                sorted: true,
                quorum: true,
            },
        )
        .await
        .unwrap();
    let d = &l.node().unwrap().nodes.as_ref().unwrap()[0];
    assert_eq!(d.key.as_deref(), Some("/ops/d"));
    assert_eq!(
        d.nodes.as_ref().unwrap()[0].key.as_deref(),
        Some("/ops/d/x")
    );
    kv.delete(
        "/ops/d",
        DeleteOptions {
            recursive: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // in-order keys increase
    let a = kv
        .create_in_order("/queue", "j1", Default::default())
        .await
        .unwrap();
    let b = kv
        .create_in_order("/queue", "j2", Default::default())
        .await
        .unwrap();
    assert!(a.node().unwrap().key < b.node().unwrap().key);

    // errors carry the etcd index and the first missing path
    let e = kv
        .get("/nothere/child", GetOptions::default())
        .await
        .unwrap_err();
    let v2 = e.v2().expect("v2 error");
    assert_eq!(
        (v2.code, v2.cause.as_str()),
        (ErrorCode::KeyNotFound, "/nothere")
    );
    assert!(v2.index > 0);
    let e = kv.set("/", "x", SetOptions::default()).await.unwrap_err();
    assert!(e.is_code(ErrorCode::RootReadOnly));

    // one-shot watch answered from history
    let w = kv
        .watch_once(
            "/queue",
            WatchOptions {
                recursive: true,
                wait_index: Some(a.etcd_index),
            },
        )
        .await
        .unwrap();
    assert_eq!(w.node().unwrap().value.as_deref(), Some("j1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_race_loses_no_update() {
    let etcd = start_etcd();
    let kv = client(&etcd);
    kv.set("/counter", "0", SetOptions::default())
        .await
        .unwrap();
    let (workers, per_worker) = (6u64, 10u64);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..per_worker {
                loop {
                    let cur = kv
                        .get(
                            "/counter",
                            GetOptions {
                                quorum: true,
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap();
                    let node = cur.node().unwrap();
                    let n: u64 = node.value.as_deref().unwrap().parse().unwrap();
                    let prev = Precondition {
                        value: None,
                        index: Some(node.modified_index),
                    };
                    match kv
                        .compare_and_swap("/counter", &(n + 1).to_string(), prev, None)
                        .await
                    {
                        Ok(_) => break,
                        Err(e) if e.is_code(ErrorCode::TestFailed) => conflicts += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = kv.get("/counter", GetOptions::default()).await.unwrap();
    assert_eq!(
        end.node().unwrap().value.as_deref(),
        Some((workers * per_worker).to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_resumes_and_resyncs_after_history_is_cleared() {
    let etcd = start_etcd();
    let kv = client(&etcd);
    let first = kv.set("/wr/x", "1", SetOptions::default()).await.unwrap();
    let start = first.etcd_index;

    // A watcher following along sees events in order and resumes from the
    // last index without repeats.
    let mut follow = Watcher::new(
        kv.clone(),
        "/wr",
        WatcherOptions {
            after_index: start - 1,
            recursive: true,
            ..Default::default()
        },
    );
    kv.set("/wr/y", "2", SetOptions::default()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        match follow.next().await.unwrap() {
            WatchEvent::Event(r) => seen.push(r.node().unwrap().key.clone().unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec!["/wr/x".to_string(), "/wr/y".to_string()]);

    // Push the watcher's index out of the 1000-event window.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..130 {
                kv.set(&format!("/noise/{t}/{i}"), "n", SetOptions::default())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // etcdctl-style: the 401 is an error.
    let mut strict = Watcher::new(
        kv.clone(),
        "/wr",
        WatcherOptions {
            after_index: start,
            recursive: true,
            resync_on_cleared: false,
        },
    );
    let e = strict.next().await.unwrap_err();
    assert!(e.is_code(ErrorCode::EventIndexCleared), "{e}");
    assert!(e
        .v2()
        .unwrap()
        .cause
        .starts_with("the requested history has been cleared ["));

    // The resuming watcher re-reads and carries on after the read's index.
    match follow.next().await.unwrap() {
        WatchEvent::Resync {
            snapshot,
            etcd_index,
        } => {
            let snap = snapshot.expect("snapshot");
            assert_eq!(snap.node().unwrap().nodes.as_ref().unwrap().len(), 2);
            assert_eq!(follow.next_index(), etcd_index + 1);
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    let after = kv.set("/wr/z", "3", SetOptions::default()).await.unwrap();
    match follow.next().await.unwrap() {
        WatchEvent::Event(r) => {
            assert_eq!(r.node().unwrap().key.as_deref(), Some("/wr/z"));
            assert_eq!(r.node().unwrap().modified_index, after.etcd_index);
        }
        other => panic!("unexpected {other:?}"),
    }

    // A resync of a key that does not exist continues from the error's index.
    let mut gone = Watcher::new(
        kv.clone(),
        "/never",
        WatcherOptions {
            after_index: start,
            ..Default::default()
        },
    );
    match gone.next().await.unwrap() {
        WatchEvent::Resync {
            snapshot: None,
            etcd_index,
        } => assert!(etcd_index > start + 1000),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_sync_and_cluster_endpoints() {
    let etcd = start_etcd();
    let live = format!("http://127.0.0.1:{}", etcd.port);
    let kv = HttpKvClient::builder()
        .endpoints(["http://127.0.0.1:1".to_string(), live.clone()])
        .build()
        .unwrap();
    kv.set("/f", "1", SetOptions::default()).await.unwrap();
    kv.sync().await.unwrap();
    assert_eq!(kv.endpoints(), vec![live.clone()]);

    let dead = HttpKvClient::builder()
        .endpoints(["http://127.0.0.1:1", "127.0.0.1:2"])
        .build()
        .unwrap();
    match dead.get("/f", GetOptions::default()).await.unwrap_err() {
        KvError::Cluster(errs) => {
            assert_eq!(errs.len(), 2);
            assert_eq!(
                errs[0].message,
                "dial tcp 127.0.0.1:1: connect: connection refused"
            );
            assert!(errs.iter().all(|e| e.connect));
        }
        other => panic!("unexpected {other:?}"),
    }

    let members = kv.members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "default");
    assert_eq!(members[0].client_urls, vec![live.clone()]);
    assert_eq!(kv.leader().await.unwrap().id, members[0].id);
    assert_eq!(kv.version().await.unwrap().etcdserver, "3.4.23");
    assert!(kv.health(&live).await.unwrap());
    let store = kv.stats("store").await.unwrap();
    assert!(store["setsSuccess"].as_u64().unwrap() >= 1);
    let me = kv.stats("self").await.unwrap();
    assert_eq!(me["name"], "default");
    // A peer URL already in use is refused with the server's message.
    let peer = members[0].peer_urls.clone();
    match kv.add_member(&peer).await.unwrap_err() {
        KvError::Api { status, message } => {
            assert_eq!(
                (status, message.as_str()),
                (409, "membership: peerURL exists")
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    let e = kv.remove_member("ffff").await.unwrap_err();
    assert!(matches!(e, KvError::Api { status: 404, .. }), "{e}");
}
