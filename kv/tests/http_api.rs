//! Keelson's HTTP API on its own: behaviour that has no oracle counterpart
//! (documented deviations, metrics, shutdown), exact bytes of the common
//! answers, and the embedded client over the same member.

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http_support::{send, start_keelson, Conn, LONG};
use keelson_kv::client::{
    DeleteOptions, GetOptions, KvClient, Precondition, SetOptions, WatchOptions,
};
use keelson_kv::embedded::EmbeddedKvClient;
use keelson_kv::server::WATCHER_BUFFER;
use keelson_kv::v2::{Action, ErrorCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_bytes_of_common_answers() {
    let k = start_keelson().await;
    let r = send(k.addr, "GET", "/v2/keys/", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "{\"action\":\"get\",\"node\":{\"dir\":true}}\n");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Content-Length"), Some("37"));
    for h in [
        "X-Etcd-Cluster-Id",
        "X-Etcd-Index",
        "X-Raft-Index",
        "X-Raft-Term",
    ] {
        assert!(
            r.headers.iter().any(|(k, _)| k == h),
            "{h} (title case) missing: {:?}",
            r.headers
        );
    }
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let r = send(k.addr, "PUT", "/v2/keys/message", "value=Hello+world").await;
    assert_eq!(r.status, 201);
    let i = r.header("X-Etcd-Index").unwrap().to_owned();
    assert_eq!(
        r.body,
        format!("{{\"action\":\"set\",\"node\":{{\"key\":\"/message\",\"value\":\"Hello world\",\"modifiedIndex\":{i},\"createdIndex\":{i}}}}}\n")
    );
    let r = send(k.addr, "GET", "/v2/keys/nothere", "").await;
    assert_eq!(r.status, 404);
    assert!(r.header("X-Raft-Index").is_none());
    assert_eq!(r.header("X-Etcd-Index"), Some(i.as_str()));
    assert_eq!(
        r.body,
        format!("{{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/nothere\",\"index\":{i}}}\n")
    );
    let r = send(k.addr, "PATCH", "/v2/keys/a", "").await;
    assert_eq!((r.status, r.body.as_str()), (405, "Method Not Allowed\n"));
    assert_eq!(r.header("Allow"), Some("HEAD,GET,PUT,POST,DELETE"));
    let r = send(k.addr, "GET", "/nope", "").await;
    assert_eq!((r.status, r.body.as_str()), (404, "404 page not found\n"));
    let r = send(k.addr, "GET", "/health", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "{\"health\":\"true\"}"));
    let r = send(k.addr, "GET", "/version", "").await;
    assert_eq!(
        r.body,
        format!(
            "{{\"etcdserver\":\"{}\",\"etcdcluster\":\"3.4.0\"}}",
            env!("CARGO_PKG_VERSION")
        )
    );
    k.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_has_the_get_length_and_no_body() {
    let k = start_keelson().await;
    send(k.addr, "PUT", "/v2/keys/h", "value=1").await;
    let get = send(k.addr, "GET", "/v2/keys/h", "").await;
    let head = Conn::open(k.addr, "HEAD", "/v2/keys/h", &[], "").await;
    let len = head
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.clone());
    assert_eq!(len, Some(get.body.len().to_string()));
    let body = head.finish().await.body;
    assert_eq!(body, "");
    k.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_headers_flush_at_once_and_stream_continues_after_history() {
    let k = start_keelson().await;
    let w1 = send(k.addr, "PUT", "/v2/keys/s/a", "value=1").await;
    let first: u64 = w1.header("X-Etcd-Index").unwrap().parse().unwrap();
    // Deviation from etcd (documented): a stream that starts in the history
    // keeps delivering live events.
    let mut c = Conn::open(
        k.addr,
        "GET",
        &format!("/v2/keys/s?wait=true&recursive=true&stream=true&waitIndex={first}"),
        &[],
        "",
    )
    .await;
    assert_eq!(c.status, 200);
    let chunked = c
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    assert!(chunked);
    let line = c.next_line(LONG).await.unwrap();
    assert!(line.contains("\"key\":\"/s/a\""), "{line}");
    send(k.addr, "PUT", "/v2/keys/s/b", "value=2").await;
    let line = c.next_line(LONG).await.unwrap();
    assert!(line.contains("\"key\":\"/s/b\""), "{line}");
    // A live watch's headers come before any event.
    let mut live = Conn::open(k.addr, "GET", "/v2/keys/later?wait=true", &[], "").await;
    assert_eq!(live.status, 200);
    let stats = send(k.addr, "GET", "/v2/stats/store", "").await;
    assert!(stats.body.contains("\"watchers\":2"), "{}", stats.body);
    send(k.addr, "PUT", "/v2/keys/later", "value=x").await;
    let line = live.next_line(LONG).await.unwrap();
    assert!(line.starts_with("{\"action\":\"set\""), "{line}");
    assert!(
        live.next_line(LONG).await.is_none(),
        "a plain watch ends after one event"
    );
    drop(c);
    k.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stream_watcher_is_dropped_and_counted() {
    let k = start_keelson().await;
    let core = k.handle.core().clone();
    // Register a stream watcher through the core and never read it.
    let mut w = core.watch("/slow", false, 0, true).unwrap();
    for i in 0..(WATCHER_BUFFER + 5) {
        send(k.addr, "PUT", "/v2/keys/slow", &format!("value={i}")).await;
    }
    assert_eq!(core.watcher_counts(), (0, 1));
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), w.next()).await {
        n += 1;
    }
    assert_eq!(n, WATCHER_BUFFER);
    let m = send(k.addr, "GET", "/metrics", "").await;
    assert!(
        m.body.contains("keelson_kv_watchers_dropped_total 1"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("keelson_kv_http_requests_total{method=\"PUT\"}"),
        "{}",
        m.body
    );
    k.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_watches_and_refuses_writes() {
    let k = start_keelson().await;
    let mut c = Conn::open(k.addr, "GET", "/v2/keys/x?wait=true", &[], "").await;
    assert_eq!(c.status, 200);
    let core = k.handle.core().clone();
    tokio::time::timeout(LONG, k.handle.shutdown())
        .await
        .expect("shutdown in time")
        .unwrap();
    assert!(c.next_line(LONG).await.is_none());
    let err = core
        .write(keelson_kv::store::Command::from_delete(
            "/x", false, false, None, 0,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RaftInternal);
    assert_eq!(err.index, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_client_matches_http_semantics() {
    let k = start_keelson().await;
    let kv: Arc<dyn KvClient> = Arc::new(EmbeddedKvClient::from_handle(&k.handle));
    let r = kv.set("a/b", "1", SetOptions::default()).await.unwrap();
    assert_eq!(r.event.action, Action::Set);
    assert_eq!(r.node().and_then(|n| n.key.as_deref()), Some("/a/b"));
    let idx = r.etcd_index;
    // Visible over HTTP too.
    let got = send(k.addr, "GET", "/v2/keys/a/b", "").await;
    assert!(got.body.contains("\"value\":\"1\""));
    assert!(kv
        .create("/a/b", "2", None)
        .await
        .unwrap_err()
        .is_code(ErrorCode::NodeExist));
    let e = kv
        .compare_and_swap(
            "/a/b",
            "3",
            Precondition {
                value: Some("x".into()),
                index: None,
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.v2().map(|e| e.cause.as_str()), Some("[x != 1]"));
    let e = kv
        .compare_and_swap(
            "/a/b",
            "3",
            Precondition {
                value: Some(String::new()),
                index: None,
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(e.is_code(ErrorCode::PrevValueRequired));
    let r = kv
        .compare_and_swap(
            "/a/b",
            "3",
            Precondition {
                value: Some("1".into()),
                index: Some(idx),
            },
            Some(100),
        )
        .await
        .unwrap();
    assert_eq!(r.event.action, Action::CompareAndSwap);
    assert!(r.node().is_some_and(|n| n.ttl > 0));
    let d = kv
        .get(
            "/a",
            GetOptions {
                recursive: true,
                sorted: true,
                quorum: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        d.node().and_then(|n| n.nodes.as_ref()).map(Vec::len),
        Some(1)
    );
    // Watch: from history, then live.
    let w = kv
        .watch_once(
            "/a/b",
            WatchOptions {
                recursive: false,
                wait_index: Some(idx),
            },
        )
        .await
        .unwrap();
    assert_eq!(w.event.action, Action::Set);
    let kv2 = kv.clone();
    let waiter = tokio::spawn(async move {
        kv2.watch_once(
            "/a",
            WatchOptions {
                recursive: true,
                wait_index: None,
            },
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    kv.create_in_order("/a/q", "job", Default::default())
        .await
        .unwrap();
    let ev = tokio::time::timeout(LONG, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.event.action, Action::Create);
    let r = kv
        .delete(
            "/a",
            DeleteOptions {
                recursive: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.event.action, Action::Delete);
    assert!(kv
        .get("/a", GetOptions::default())
        .await
        .unwrap_err()
        .is_code(ErrorCode::KeyNotFound));
    k.handle.shutdown().await.unwrap();
}
