//! Differential tests: the same raw HTTP requests go to Keelson (in-process)
//! and to the real etcd 3.4.23 (`/usr/bin/etcd --enable-v2=true`), and the
//! answers must agree: status, content type, which `X-Etcd-*`/`X-Raft-*`
//! headers are present, `X-Etcd-Index` and bodies with indexes rebased on
//! the index each server had before the scenario, expiration and ttl
//! masked. These tests fail, never skip, when etcd is missing.

mod http_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_support::{etcd_index, normalise, send, start_etcd, start_keelson, Conn, Raw, LONG};

/// What must agree between the two answers.
fn summary(r: &Raw, base: u64) -> String {
    let presence = |h: &str| if r.header(h).is_some() { "yes" } else { "no" };
    let etcd_index = r
        .header("X-Etcd-Index")
        .map(|v| normalise(&format!("\"index\":{v}"), base))
        .unwrap_or_else(|| "-".into());
    format!(
        "status={} content-type={:?} x-etcd-index={} x-raft-index={} x-raft-term={} cluster-id={} allow={:?} location={:?} cors={:?}\nbody={}",
        r.status,
        r.header("Content-Type"),
        etcd_index,
        presence("X-Raft-Index"),
        presence("X-Raft-Term"),
        presence("X-Etcd-Cluster-Id"),
        r.header("Allow"),
        r.header("Location"),
        r.header("Access-Control-Allow-Origin"),
        normalise(&r.body, base),
    )
}

/// Replaces `{B+k}` with the server's base index plus k.
fn template(s: &str, base: u64) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("{B+") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 3..];
        let end = tail.find('}').unwrap_or(tail.len());
        let k: u64 = tail[..end].parse().unwrap_or(0);
        out.push_str(&(base + k).to_string());
        rest = &tail[(end + 1).min(tail.len())..];
    }
    out.push_str(rest);
    out
}

struct Pair {
    k: SocketAddr,
    e: SocketAddr,
    kbase: u64,
    ebase: u64,
    checked: usize,
}

impl Pair {
    async fn new(k: SocketAddr, e: SocketAddr) -> Pair {
        // A fresh Keelson member is at index 0, where rebasing cannot tell
        // "no index" from "the base": start both past it.
        for addr in [k, e] {
            let r = send(addr, "PUT", "/v2/keys/_warmup", "value=1").await;
            assert!(r.status == 200 || r.status == 201, "warm-up write: {r:?}");
        }
        Pair {
            k,
            e,
            kbase: etcd_index(k).await,
            ebase: etcd_index(e).await,
            checked: 0,
        }
    }

    /// Sends one request to both and asserts the answers agree.
    async fn check(&mut self, method: &str, target: &str, body: &str) -> (Raw, Raw) {
        let kr = send(
            self.k,
            method,
            &template(target, self.kbase),
            &template(body, self.kbase),
        )
        .await;
        let er = send(
            self.e,
            method,
            &template(target, self.ebase),
            &template(body, self.ebase),
        )
        .await;
        let (ks, es) = (summary(&kr, self.kbase), summary(&er, self.ebase));
        assert_eq!(
            ks, es,
            "\n{method} {target} {body}\nkeelson:\n{ks}\netcd:\n{es}"
        );
        self.checked += 1;
        (kr, er)
    }

    /// Same, with an explicit content type.
    async fn check_ct(&mut self, method: &str, target: &str, ct: &str, body: &str) {
        let headers = [("Content-Type", ct)];
        let kr = Conn::open(self.k, method, target, &headers, body)
            .await
            .finish()
            .await;
        let er = Conn::open(self.e, method, target, &headers, body)
            .await
            .finish()
            .await;
        let (ks, es) = (summary(&kr, self.kbase), summary(&er, self.ebase));
        assert_eq!(
            ks, es,
            "\n{method} {target} [{ct}] {body}\nkeelson:\n{ks}\netcd:\n{es}"
        );
        self.checked += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_operations_match_etcd() {
    let etcd = start_etcd().await;
    let keelson = start_keelson().await;
    let mut p = Pair::new(keelson.addr, etcd.addr).await;
    let steps: &[(&str, &str, &str)] = &[
        // §3.4 worked examples.
        ("PUT", "/v2/keys/message", "value=Hello world"),
        ("PUT", "/v2/keys/message", "value=Hello etcd"),
        ("GET", "/v2/keys/message", ""),
        ("HEAD", "/v2/keys/message", ""),
        ("DELETE", "/v2/keys/message", ""),
        ("GET", "/v2/keys/message", ""),
        ("HEAD", "/v2/keys/message", ""),
        ("PUT", "/v2/keys/foo?prevExist=false", "value=one"),
        ("PUT", "/v2/keys/foo?prevExist=false", "value=two"),
        ("PUT", "/v2/keys/foo?prevExist=true", "value=three"),
        ("PUT", "/v2/keys/foo?prevValue=two", "value=four"),
        ("PUT", "/v2/keys/foo?prevValue=three", "value=four"),
        ("PUT", "/v2/keys/foo?prevIndex={B+1}", "value=five"),
        ("PUT", "/v2/keys/foo", "value=five"),
        (
            "PUT",
            "/v2/keys/foo?prevIndex={B+6}&prevValue=four",
            "value=x",
        ),
        ("PUT", "/v2/keys/foo?prevIndex={B+6}", "value=six"),
        ("DELETE", "/v2/keys/foo?prevValue=seven", ""),
        ("DELETE", "/v2/keys/foo?prevIndex={B+1}", ""),
        ("DELETE", "/v2/keys/foo?prevValue=six", ""),
        ("PUT", "/v2/keys/nothere?prevExist=true", "value=1"),
        ("PUT", "/v2/keys/nothere?prevValue=a", "value=1"),
        ("DELETE", "/v2/keys/nothere?prevValue=a", ""),
        ("PUT", "/v2/keys/dir", "dir=true"),
        ("PUT", "/v2/keys/dir", "dir=true"),
        ("PUT", "/v2/keys/dir", "value=x"),
        ("PUT", "/v2/keys/dir/a", "value=1"),
        ("PUT", "/v2/keys/dir/sub/b", "value=2"),
        ("PUT", "/v2/keys/dir/_hidden", "value=h"),
        ("GET", "/v2/keys/dir?sorted=true", ""),
        ("GET", "/v2/keys/dir?recursive=true&sorted=true", ""),
        ("GET", "/v2/keys/dir/_hidden", ""),
        ("GET", "/v2/keys/dir/a?recursive=true&sorted=true", ""),
        ("PUT", "/v2/keys/dir/a/c", "value=1"),
        ("GET", "/v2/keys/dir/a/c", ""),
        ("GET", "/v2/keys/nothere/child", ""),
        ("DELETE", "/v2/keys/dir", ""),
        ("DELETE", "/v2/keys/dir?dir=true", ""),
        ("DELETE", "/v2/keys/dir/a?prevValue=1", ""),
        ("DELETE", "/v2/keys/dir/sub?prevValue=1", ""),
        ("PUT", "/v2/keys/dir/sub?prevValue=1", "value=3"),
        ("PUT", "/v2/keys/dir/sub?prevExist=true", "value=3"),
        ("DELETE", "/v2/keys/dir?recursive=true", ""),
        ("GET", "/v2/keys/dir", ""),
        ("PUT", "/v2/keys/k2", "value=v"),
        ("PUT", "/v2/keys/k2", "dir=true"),
        ("PUT", "/v2/keys/k2?prevExist=false", "dir=true"),
        ("PUT", "/v2/keys/k3?prevExist=false", "dir=true"),
        ("DELETE", "/v2/keys/k3?dir=true", ""),
        ("PUT", "/v2/keys/k4", "value=v"),
        ("DELETE", "/v2/keys/k4?dir=true", ""),
        // In-order keys.
        ("POST", "/v2/keys/queue", "value=Job1"),
        ("POST", "/v2/keys/queue", "value=Job2"),
        ("GET", "/v2/keys/queue?sorted=true", ""),
        ("POST", "/v2/keys/queue/x", "dir=true"),
        ("PUT", "/v2/keys/qk", "value=1"),
        ("POST", "/v2/keys/qk", "value=2"),
        // Root.
        ("PUT", "/v2/keys/", "value=3"),
        ("DELETE", "/v2/keys/", ""),
        ("DELETE", "/v2/keys/?recursive=true", ""),
        ("DELETE", "/v2/keys/?prevValue=x", ""),
        // noValueOnSuccess, value-less set, odd paths.
        ("PUT", "/v2/keys/a?noValueOnSuccess=true", "value=3"),
        (
            "PUT",
            "/v2/keys/a?noValueOnSuccess=true&prevExist=true",
            "value=4",
        ),
        ("DELETE", "/v2/keys/a?noValueOnSuccess=true", ""),
        ("PUT", "/v2/keys/empty", ""),
        ("GET", "/v2/keys/empty", ""),
        ("PUT", "/v2/keys/sp%20ace/x%2Fy", "value=1"),
        ("GET", "/v2/keys/sp%20ace?recursive=true", ""),
        ("GET", "/v2/keys/w/foo/", ""),
        (
            "PUT",
            "/v2/keys/coreos.com/network/config",
            "value=%7B%22Network%22%3A%2210.1.0.0%22%7D",
        ),
        ("GET", "/v2/keys/coreos.com/network/config", ""),
        // Body wins over query; first value counts.
        ("PUT", "/v2/keys/bw?value=fromquery", "value=frombody"),
        ("PUT", "/v2/keys/fv?value=first&value=second", ""),
        ("GET", "/v2/keys/fv", ""),
        // TTLs (values masked).
        ("PUT", "/v2/keys/t1", "value=v&ttl=100"),
        ("GET", "/v2/keys/t1", ""),
        ("PUT", "/v2/keys/t1?prevExist=true", "value=w&ttl="),
        ("PUT", "/v2/keys/tdir?dir=true", "ttl=30"),
        ("PUT", "/v2/keys/tdir?ttl=60&dir=true&prevExist=true", ""),
        ("PUT", "/v2/keys/tdir?prevExist=true", "value=x"),
        // Refresh.
        ("PUT", "/v2/keys/r1", "value=keep&ttl=100"),
        ("PUT", "/v2/keys/r1?refresh=true&ttl=200", ""),
        ("PUT", "/v2/keys/r1?refresh=true&prevExist=true&ttl=300", ""),
        ("GET", "/v2/keys/r1", ""),
        ("PUT", "/v2/keys/rmissing?refresh=true&ttl=5", ""),
        ("PUT", "/v2/keys/r1?refresh=true", ""),
        ("PUT", "/v2/keys/r1?refresh=true&ttl=5", "value=no"),
        ("PUT", "/v2/keys/r1?refresh=false", "value=yes"),
        // Quorum reads.
        ("GET", "/v2/keys/r1?quorum=true", ""),
        ("GET", "/v2/keys/nope?quorum=true", ""),
        ("HEAD", "/v2/keys/r1?quorum=true", ""),
    ];
    for (m, t, b) in steps {
        p.check(m, t, b).await;
    }
    eprintln!("{} exchanges matched etcd", p.checked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_errors_match_etcd() {
    let etcd = start_etcd().await;
    let keelson = start_keelson().await;
    let mut p = Pair::new(keelson.addr, etcd.addr).await;
    p.check("PUT", "/v2/keys/pe", "value=1").await;
    let steps: &[(&str, &str, &str)] = &[
        ("GET", "/v2/keys/pe?recursive=maybe", ""),
        ("GET", "/v2/keys/pe?sorted=2", ""),
        ("GET", "/v2/keys/pe?wait=yes", ""),
        ("GET", "/v2/keys/pe?quorum=", ""),
        ("GET", "/v2/keys/pe?stream=x&wait=true", ""),
        ("DELETE", "/v2/keys/pe?dir=nope", ""),
        ("PUT", "/v2/keys/pe?ttl=abc", "value=1"),
        ("PUT", "/v2/keys/pe?ttl=-1", "value=1"),
        ("PUT", "/v2/keys/pe", "value=1&ttl=1.5"),
        ("PUT", "/v2/keys/pe?prevIndex=x", "value=1"),
        ("PUT", "/v2/keys/pe?prevIndex=", "value=1"),
        ("PUT", "/v2/keys/pe?prevIndex=-3", "value=1"),
        ("GET", "/v2/keys/pe?wait=true&waitIndex=abc", ""),
        ("PUT", "/v2/keys/pe?prevValue=", "value=1"),
        ("DELETE", "/v2/keys/pe?prevValue=", ""),
        ("PUT", "/v2/keys/pe?prevExist=maybe", "value=1"),
        ("PUT", "/v2/keys/pe?refresh=maybe", "value=1"),
        ("PUT", "/v2/keys/pe?noValueOnSuccess=2", "value=1"),
        ("PUT", "/v2/keys/pe?wait=true", "value=1"),
        ("DELETE", "/v2/keys/pe?wait=true", ""),
        ("HEAD", "/v2/keys/pe?wait=true", ""),
        ("POST", "/v2/keys/pe?wait=true", ""),
        ("PUT", "/v2/keys/pe?value=%zz", ""),
        ("GET", "/v2/keys/pe?x=%4", ""),
        ("PUT", "/v2/keys/pe?a=1;b=2", "value=1"),
        (
            "PUT",
            "/v2/keys/pe?recursive=T&sorted=FALSE&dir=F",
            "value=bools",
        ),
        ("GET", "/v2/keys/pe?recursive=True&sorted=0", ""),
        // Error precedence: prevIndex before booleans.
        ("GET", "/v2/keys/pe?recursive=x&prevIndex=y", ""),
    ];
    for (m, t, b) in steps {
        p.check(m, t, b).await;
    }
    p.check_ct(
        "PUT",
        "/v2/keys/pe",
        "application/x-www-form-urlencoded",
        "value=%zz",
    )
    .await;
    p.check_ct(
        "PUT",
        "/v2/keys/pe",
        "application/x-www-form-urlencoded; charset=utf-8",
        "value=ct",
    )
    .await;
    p.check_ct("PUT", "/v2/keys/pe", "text/plain", "value=ignored")
        .await;
    p.check_ct(
        "PUT",
        "/v2/keys/pe?value=q",
        "application/x-www-form-urlencoded",
        "value=b",
    )
    .await;
    p.check("GET", "/v2/keys/pe", "").await;
    eprintln!("{} exchanges matched etcd", p.checked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_endpoints_match_etcd() {
    let etcd = start_etcd().await;
    let keelson = start_keelson().await;
    let mut p = Pair::new(keelson.addr, etcd.addr).await;
    let steps: &[(&str, &str, &str)] = &[
        ("PATCH", "/v2/keys/a", ""),
        ("OPTIONS", "/v2/keys/a", ""),
        ("GET", "/nope", ""),
        ("GET", "/v2/keysfoo", ""),
        ("GET", "/v2/stats/nope", ""),
        ("GET", "/v2/keys//a", ""),
        ("HEAD", "/v2/keys//a", ""),
        ("PUT", "/v2/keys//a?x=1", "value=2"),
        ("GET", "/v2/keys/./a/../b", ""),
        ("GET", "/v2/keys/a%2F%2Fb", ""),
        ("POST", "/v2/stats/store", ""),
        ("PUT", "/v2/stats/self", ""),
        ("POST", "/version", ""),
        ("POST", "/health", ""),
        ("DELETE", "/v2/machines", ""),
        ("PATCH", "/v2/members", ""),
        ("GET", "/v2/members/nope", ""),
        ("DELETE", "/v2/members/123", ""),
        ("DELETE", "/v2/members/zz", ""),
        ("POST", "/v2/members", "peerURLs=x"),
        ("GET", "/health", ""),
    ];
    for (m, t, b) in steps {
        p.check(m, t, b).await;
    }
    // Shapes with member-specific values.
    let (k, e) = (keelson.addr, etcd.addr);
    let field_names = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        let mut names: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        names.sort();
        names
    };
    for path in [
        "/v2/stats/store",
        "/v2/stats/self",
        "/v2/stats/leader",
        "/version",
    ] {
        let (kr, er) = (
            send(k, "GET", path, "").await,
            send(e, "GET", path, "").await,
        );
        assert_eq!(kr.status, er.status, "{path}");
        assert_eq!(
            kr.header("Content-Type"),
            er.header("Content-Type"),
            "{path}"
        );
        assert_eq!(field_names(&kr.body), field_names(&er.body), "{path}");
        assert_eq!(kr.body.ends_with('\n'), er.body.ends_with('\n'), "{path}");
        assert!(kr.header("X-Etcd-Index").is_none(), "{path}");
        p.checked += 1;
    }
    let ks = send(k, "GET", "/v2/stats/self", "").await;
    let v: serde_json::Value = serde_json::from_str(&ks.body).expect("json");
    assert_eq!(v["state"], "StateLeader");
    assert_eq!(v["name"], "k1");
    assert!(
        ks.body.starts_with("{\"name\":\"k1\",\"id\":"),
        "{}",
        ks.body
    );
    // /v2/members: same shape; ids follow etcd's derivation.
    let (km, em) = (
        send(k, "GET", "/v2/members", "").await,
        send(e, "GET", "/v2/members", "").await,
    );
    assert_eq!(km.status, em.status);
    assert_eq!(km.header("Content-Type"), em.header("Content-Type"));
    assert!(km.header("X-Etcd-Cluster-Id").is_some());
    assert!(km.body.ends_with("]}\n"), "{}", km.body);
    let kv: serde_json::Value = serde_json::from_str(&km.body).expect("json");
    let ev: serde_json::Value = serde_json::from_str(&em.body).expect("json");
    let mine = &kv["members"][0];
    let theirs = &ev["members"][0];
    for f in ["id", "name", "peerURLs", "clientURLs"] {
        assert!(mine.get(f).is_some() && theirs.get(f).is_some(), "{f}");
    }
    let (kl, el) = (
        send(k, "GET", "/v2/members/leader", "").await,
        send(e, "GET", "/v2/members/leader", "").await,
    );
    assert_eq!(
        (kl.status, kl.body.ends_with("}\n")),
        (el.status, el.body.ends_with("}\n"))
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&kl.body).expect("json"),
        *mine
    );
    let (kma, ema) = (
        send(k, "GET", "/v2/machines", "").await,
        send(e, "GET", "/v2/machines", "").await,
    );
    assert_eq!(
        (kma.status, kma.header("Content-Type")),
        (ema.status, ema.header("Content-Type"))
    );
    assert_eq!(kma.body, format!("http://{k}"));
    let (kh, eh) = (
        send(k, "GET", "/version", "").await,
        send(e, "GET", "/version", "").await,
    );
    let kv: serde_json::Value = serde_json::from_str(&kh.body).expect("json");
    let ev: serde_json::Value = serde_json::from_str(&eh.body).expect("json");
    assert_eq!(kv["etcdcluster"], ev["etcdcluster"]);
    p.checked += 5;
    eprintln!("{} exchanges matched etcd", p.checked);
}

/// Opens the same watch on both servers, asserts the headers arrive at
/// once, runs `writes` on both, and compares the event lines.
async fn watch_both(p: &mut Pair, target: &str, writes: &[(&str, &str, &str)], lines: usize) {
    let mut kc = Conn::open(p.k, "GET", &template(target, p.kbase), &[], "").await;
    let mut ec = Conn::open(p.e, "GET", &template(target, p.ebase), &[], "").await;
    let kh = Raw {
        status: kc.status,
        headers: kc.headers.clone(),
        body: String::new(),
    };
    let eh = Raw {
        status: ec.status,
        headers: ec.headers.clone(),
        body: String::new(),
    };
    assert_eq!(
        summary(&kh, p.kbase),
        summary(&eh, p.ebase),
        "watch headers for {target}"
    );
    assert_eq!(
        kh.header("Transfer-Encoding"),
        eh.header("Transfer-Encoding"),
        "{target}"
    );
    for (m, t, b) in writes {
        p.check(m, t, b).await;
    }
    for i in 0..lines {
        let kl = kc.next_line(LONG).await.unwrap_or_default();
        let el = ec.next_line(LONG).await.unwrap_or_default();
        assert_eq!(
            normalise(&kl, p.kbase),
            normalise(&el, p.ebase),
            "event {i} of {target}"
        );
        assert!(
            kl.ends_with('\n'),
            "event {i} of {target}: keelson {kl:?}, etcd {el:?}"
        );
    }
    p.checked += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_match_etcd() {
    let etcd = start_etcd().await;
    let keelson = start_keelson().await;
    let mut p = Pair::new(keelson.addr, etcd.addr).await;
    // Live: exact key, recursive, directory deletion waking a child watch.
    watch_both(
        &mut p,
        "/v2/keys/w/foo?wait=true",
        &[("PUT", "/v2/keys/w/foo", "value=1")],
        1,
    )
    .await;
    watch_both(
        &mut p,
        "/v2/keys/w?wait=true&recursive=true",
        &[("PUT", "/v2/keys/w/sub/x", "value=1")],
        1,
    )
    .await;
    watch_both(
        &mut p,
        "/v2/keys/w/sub/x?wait=true",
        &[("DELETE", "/v2/keys/w?recursive=true", "")],
        1,
    )
    .await;
    // Hidden nodes do not wake recursive watchers; the next visible one does.
    watch_both(
        &mut p,
        "/v2/keys/h?wait=true&recursive=true",
        &[
            ("PUT", "/v2/keys/h/_secret", "value=1"),
            ("PUT", "/v2/keys/h/shown", "value=2"),
        ],
        1,
    )
    .await;
    // From history: waitIndex at an old event answers at once.
    watch_both(&mut p, "/v2/keys/w/foo?wait=true&waitIndex={B+1}", &[], 1).await;
    watch_both(
        &mut p,
        "/v2/keys/w?wait=true&recursive=true&waitIndex={B+2}",
        &[],
        1,
    )
    .await;
    // Future waitIndex waits for that index.
    watch_both(
        &mut p,
        "/v2/keys/f?wait=true&waitIndex={B+7}",
        &[
            ("PUT", "/v2/keys/f", "value=1"),
            ("PUT", "/v2/keys/f", "value=2"),
        ],
        1,
    )
    .await;
    // Stream without waitIndex: every event.
    watch_both(
        &mut p,
        "/v2/keys/s?wait=true&recursive=true&stream=true",
        &[
            ("PUT", "/v2/keys/s/a", "value=1"),
            ("PUT", "/v2/keys/s/b", "value=2"),
            ("DELETE", "/v2/keys/s/a", ""),
        ],
        3,
    )
    .await;
    // Refresh does not wake watchers.
    p.check("PUT", "/v2/keys/rf", "value=1&ttl=100").await;
    watch_both(
        &mut p,
        "/v2/keys/rf?wait=true",
        &[
            ("PUT", "/v2/keys/rf?refresh=true&ttl=200", ""),
            ("PUT", "/v2/keys/rf", "value=2"),
        ],
        1,
    )
    .await;
    // TTL expiry wakes the watcher with an expire event.
    p.check("PUT", "/v2/keys/e/x", "value=1&ttl=1").await;
    watch_both(&mut p, "/v2/keys/e/x?wait=true", &[], 1).await;
    p.check("GET", "/v2/keys/e/x", "").await;
    eprintln!("{} watch exchanges matched etcd", p.checked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_window_401_matches_etcd() {
    let etcd = start_etcd().await;
    let keelson = start_keelson().await;
    let mut p = Pair::new(keelson.addr, etcd.addr).await;
    // 1010 writes push the first events out of the 1000-event window.
    for (addr, _) in [(p.k, p.kbase), (p.e, p.ebase)] {
        for i in 0..1010 {
            let r = send(addr, "PUT", "/v2/keys/hist", &format!("value={i}")).await;
            assert!(r.status == 200 || r.status == 201);
        }
    }
    p.check("GET", "/v2/keys/hist?wait=true&waitIndex={B+1}", "")
        .await;
    p.check("GET", "/v2/keys/hist?wait=true&waitIndex={B+5}", "")
        .await;
    // The oldest retained event is still served.
    let (kr, er) = p
        .check("GET", "/v2/keys/hist?wait=true&waitIndex={B+11}", "")
        .await;
    assert_eq!(kr.status, 200);
    assert_eq!(er.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_matches_etcd() {
    let etcd = start_etcd().await;
    let keelson = start_keelson().await;
    let mut p = Pair::new(keelson.addr, etcd.addr).await;
    // ttl=0: answered with an expiration and no ttl field, gone at the next
    // sweep. It lives here, where both servers are waited on, because the
    // sweep's timing would otherwise shift one server's index mid-sequence.
    p.check("PUT", "/v2/keys/t0", "value=v&ttl=0").await;
    p.check("PUT", "/v2/keys/ttl1", "value=v&ttl=1").await;
    p.check("PUT", "/v2/keys/tdir1?dir=true", "ttl=1").await;
    p.check("PUT", "/v2/keys/tdir1/child", "value=c").await;
    for addr in [p.k, p.e] {
        let start = Instant::now();
        loop {
            let a = send(addr, "GET", "/v2/keys/ttl1", "").await;
            let b = send(addr, "GET", "/v2/keys/tdir1/child", "").await;
            let c = send(addr, "GET", "/v2/keys/t0", "").await;
            if a.status == 404 && b.status == 404 && c.status == 404 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(6),
                "ttl=1 keys still present on {addr} after 6 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Both recorded one expire event per node and the same counters.
    let ks = send(p.k, "GET", "/v2/stats/store", "").await;
    let es = send(p.e, "GET", "/v2/stats/store", "").await;
    let kv: serde_json::Value = serde_json::from_str(&ks.body).expect("json");
    let ev: serde_json::Value = serde_json::from_str(&es.body).expect("json");
    assert!(kv["expireCount"].as_u64().is_some_and(|n| n >= 2), "{kv}");
    assert!(ev["expireCount"].as_u64().is_some_and(|n| n >= 2), "{ev}");
    p.check("GET", "/v2/keys/ttl1", "").await;
}
