//! Malformed requests get etcd's error and status, never a 500 or a crash,
//! and the member keeps serving afterwards. Each request goes to Keelson and
//! to the real etcd 3.4.23 and the answers are compared (status and body,
//! indexes rebased), so "etcd's error" is checked against etcd itself; the
//! few places where the two cannot agree byte for byte are asserted
//! separately and listed in `kv/README.md`.
//!
//! Request size: etcd 3.4's v2 API has no limit of its own; Go's form parser
//! refuses bodies over 10 MiB (`http: POST too large`, error 210). A 2 MiB
//! and an 8 MiB value are stored by both; 16 MiB is refused by both.

mod http_support;

use std::net::SocketAddr;
use std::time::Duration;

use http_support::{etcd_index, normalise, send, start_etcd, start_keelson, Conn, Raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Raw {
    if body.len() < 1 << 20 {
        return Conn::open(addr, method, target, headers, body)
            .await
            .finish()
            .await;
    }
    // A big body: the server may answer (and stop reading) before all of
    // it is sent, so write and read concurrently and ignore a broken pipe.
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let bytes = [head.as_bytes(), body.as_bytes()].concat();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut out)).await;
    drop(writer.await);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    Raw {
        status,
        headers,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A body short enough for an assertion message.
fn short(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_owned();
    }
    let cut = (0..=300)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}... ({} bytes)", &s[..cut], s.len())
}

struct Pair {
    k: SocketAddr,
    e: SocketAddr,
}

impl Pair {
    /// Sends to both; asserts the same status and normalised body; returns
    /// Keelson's answer.
    async fn same(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Raw {
        let (kb, eb) = (etcd_index(self.k).await, etcd_index(self.e).await);
        let kr = request(self.k, method, target, headers, body).await;
        let er = request(self.e, method, target, headers, body).await;
        let what = format!("{method} {target} {headers:?} ({} body bytes)", body.len());
        assert_ne!(
            kr.status,
            500,
            "{what}: 500 from Keelson: {}",
            short(&kr.body)
        );
        assert_eq!(
            kr.status,
            er.status,
            "{what}: status\nkeelson: {}\netcd: {}",
            short(&kr.body),
            short(&er.body)
        );
        let (kn, en) = (normalise(&kr.body, kb), normalise(&er.body, eb));
        assert!(
            kn == en,
            "{what}: body\nkeelson: {}\netcd: {}",
            short(&kn),
            short(&en)
        );
        kr
    }

    /// Both still answer ordinary requests.
    async fn still_serving(&self) {
        for addr in [self.k, self.e] {
            let r = send(addr, "PUT", "/v2/keys/alive", "value=yes").await;
            assert!(matches!(r.status, 200 | 201), "{r:?}");
            let r = send(addr, "GET", "/v2/keys/alive", "").await;
            assert_eq!(r.status, 200);
        }
    }
}

fn error_body(code: u32, message: &str, cause: &str) -> String {
    format!(
        "{{\"errorCode\":{code},\"message\":\"{message}\",\"cause\":\"{}\",\"index\":0}}\n",
        cause.replace('"', "\\\"")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_forms_get_etcds_errors() {
    let k = start_keelson().await;
    let e = start_etcd().await;
    let p = Pair {
        k: k.addr,
        e: e.addr,
    };
    for (addr, _) in [(p.k, 0), (p.e, 1)] {
        send(addr, "PUT", "/v2/keys/warm", "value=1").await;
    }
    let ttl = |cause: &str| error_body(202, "The given TTL in POST form is not a number", cause);
    let index =
        |cause: &str| error_body(203, "The given index in POST form is not a number", cause);
    let form = |cause: &str| error_body(210, "Invalid POST form", cause);
    let field = |cause: &str| error_body(209, "Invalid field", cause);
    let cases: Vec<(&str, &str, &str, u16, String)> = vec![
        // Bad TTLs.
        (
            "PUT",
            "/v2/keys/t?ttl=abc",
            "value=x",
            400,
            ttl("invalid value for \"ttl\""),
        ),
        (
            "PUT",
            "/v2/keys/t?ttl=-1",
            "value=x",
            400,
            ttl("invalid value for \"ttl\""),
        ),
        (
            "PUT",
            "/v2/keys/t?ttl=1.5",
            "value=x",
            400,
            ttl("invalid value for \"ttl\""),
        ),
        (
            "PUT",
            "/v2/keys/t?ttl=99999999999999999999",
            "value=x",
            400,
            ttl("invalid value for \"ttl\""),
        ),
        (
            "PUT",
            "/v2/keys/t",
            "value=x&ttl=zz",
            400,
            ttl("invalid value for \"ttl\""),
        ),
        // Bad indexes.
        (
            "GET",
            "/v2/keys/t?wait=true&waitIndex=abc",
            "",
            400,
            index("invalid value for \"waitIndex\""),
        ),
        (
            "GET",
            "/v2/keys/t?wait=true&waitIndex=-1",
            "",
            400,
            index("invalid value for \"waitIndex\""),
        ),
        (
            "PUT",
            "/v2/keys/t?prevIndex=abc",
            "value=x",
            400,
            index("invalid value for \"prevIndex\""),
        ),
        (
            "PUT",
            "/v2/keys/t?prevIndex=-3",
            "value=x",
            400,
            index("invalid value for \"prevIndex\""),
        ),
        (
            "DELETE",
            "/v2/keys/t?prevIndex=x1",
            "",
            400,
            index("invalid value for \"prevIndex\""),
        ),
        // Bad booleans.
        (
            "GET",
            "/v2/keys/t?recursive=maybe",
            "",
            400,
            field("invalid value for \"recursive\""),
        ),
        (
            "PUT",
            "/v2/keys/t?dir=yes",
            "",
            400,
            field("invalid value for \"dir\""),
        ),
        (
            "POST",
            "/v2/keys/t?prevExist=maybe",
            "value=1",
            400,
            field("invalid value for prevExist"),
        ),
        // Unparsable forms, in the body and in the query.
        (
            "PUT",
            "/v2/keys/t",
            "value=%zz",
            400,
            form("invalid URL escape \"%zz\""),
        ),
        (
            "PUT",
            "/v2/keys/t",
            "value=%",
            400,
            form("invalid URL escape \"%\""),
        ),
        (
            "PUT",
            "/v2/keys/t",
            "value=%4",
            400,
            form("invalid URL escape \"%4\""),
        ),
        (
            "PUT",
            "/v2/keys/t?value=%zz",
            "",
            400,
            form("invalid URL escape \"%zz\""),
        ),
        (
            "GET",
            "/v2/keys/t?quorum=%zz",
            "",
            400,
            form("invalid URL escape \"%zz\""),
        ),
    ];
    for (method, target, body, status, expected) in &cases {
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &[FORM] };
        let r = p.same(method, target, headers, body).await;
        assert_eq!(
            (r.status, &r.body),
            (*status, expected),
            "{method} {target}"
        );
    }
    // Content types: anything but a form is not parsed (the value is empty);
    // an unparsable media type is error 210 with Go's words.
    for ct in [
        "text/plain",
        "application/json",
        "multipart/form-data; boundary=x",
    ] {
        let r = p
            .same(
                "PUT",
                "/v2/keys/ct",
                &[("Content-Type", ct)],
                "value=ignored",
            )
            .await;
        assert!(r.body.contains("\"value\":\"\""), "{ct}: {}", r.body);
    }
    let r = p
        .same("PUT", "/v2/keys/ct", &[("Content-Type", ";;")], "value=x")
        .await;
    assert_eq!(r.body, form("mime: no media type"));
    // A bad escape in the path is refused by Go's server itself.
    for target in ["/v2/keys/k%zz", "/v2/keys/a%2", "/v2/members%zz"] {
        let r = p.same("GET", target, &[], "").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "400 Bad Request"),
            "{target}"
        );
    }
    // Unknown and unsupported methods.
    for m in ["PATCH", "BREW", "TRACE"] {
        let r = p.same(m, "/v2/keys/t", &[], "").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (405, "Method Not Allowed\n"),
            "{m}"
        );
    }
    p.still_serving().await;
    k.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_are_stored_up_to_go_form_limit() {
    let k = start_keelson().await;
    let e = start_etcd().await;
    let p = Pair {
        k: k.addr,
        e: e.addr,
    };
    for (addr, _) in [(p.k, 0), (p.e, 1)] {
        send(addr, "PUT", "/v2/keys/warm", "value=1").await;
    }
    for (mib, ok) in [(2usize, true), (8, true), (16, false)] {
        let value = "v".repeat(mib << 20);
        let body = format!("value={value}");
        let r = p
            .same("PUT", &format!("/v2/keys/big{mib}"), &[FORM], &body)
            .await;
        if ok {
            assert_eq!(r.status, 201, "{mib} MiB");
            let g = send(p.k, "GET", &format!("/v2/keys/big{mib}"), "").await;
            assert!(g.body.contains(&value), "{mib} MiB value read back");
        } else {
            assert_eq!(
                (r.status, r.body.as_str()),
                (
                    400,
                    error_body(210, "Invalid POST form", "http: POST too large").as_str()
                )
            );
        }
    }
    p.still_serving().await;
    // The big values survive a restart (they went through the WAL).
    let config = http_support::keelson_config(k.dir.path(), 0);
    k.handle.shutdown().await.expect("shutdown");
    let h = keelson_kv::server::KvServer::start(config)
        .await
        .expect("restart");
    let addr: SocketAddr = h.client_urls()[0]
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let g = send(addr, "GET", "/v2/keys/big8", "").await;
    assert_eq!(g.status, 200);
    assert!(g.body.len() > 8 << 20);
    h.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_keys_and_values() {
    let k = start_keelson().await;
    let e = start_etcd().await;
    for (target, body) in [
        ("/v2/keys/u8", "value=%ff%fe"),
        ("/v2/keys/k%ff", "value=1"),
    ] {
        let kr = send(k.addr, "PUT", target, body).await;
        let er = send(e.addr, "PUT", target, body).await;
        assert_eq!((kr.status, er.status), (201, 201), "{target}");
        let kg = send(k.addr, "GET", target, "").await;
        let eg = send(e.addr, "GET", target, "").await;
        assert_eq!(kg.status, eg.status);
        // Same JSON string; etcd writes the invalid bytes as the escape
        // `\ufffd`, Keelson (whose keys and values are UTF-8) as U+FFFD
        // itself. Compared as parsed JSON.
        let parse = |s: &str| -> serde_json::Value { serde_json::from_str(s).expect("json") };
        let (mut kj, mut ej) = (parse(&kg.body), parse(&eg.body));
        for j in [&mut kj, &mut ej] {
            j["node"]["modifiedIndex"] = 0.into();
            j["node"]["createdIndex"] = 0.into();
        }
        assert_eq!(kj, ej, "{target}");
        assert!(kj["node"].to_string().contains('\u{fffd}'));
    }
    let r = send(k.addr, "GET", "/v2/keys/", "").await;
    assert_eq!(r.status, 200);
    k.handle.shutdown().await.expect("shutdown");
}

/// Raw bytes on a connection; the answer, if any, until the server closes.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_http_never_hurts_the_member() {
    let k = start_keelson().await;
    // etcd 3.4 serves gRPC and HTTP on one port through cmux and drops a
    // connection it cannot classify without answering; Keelson answers a
    // plain 400 (or 431) and closes. Neither is a 500, and both keep
    // serving.
    let long_header = format!(
        "GET /v2/keys/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2 << 20)
    );
    let garbage: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"\x00\x01\x02\xff\r\n\r\n".to_vec(),
        b"GET /v2/keys/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        b"GET /v2/keys/\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"PUT /v2/keys/te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\nvalue=1\r\n0\r\n\r\n".to_vec(),
        long_header.into_bytes(),
        // A body shorter than announced, then the client goes away.
        b"PUT /v2/keys/short HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nvalue=sh".to_vec(),
    ];
    for (i, g) in garbage.iter().enumerate() {
        let answer = if i + 1 == garbage.len() {
            // Do not wait for an answer that needs the rest of the body.
            let mut s = tokio::net::TcpStream::connect(k.addr)
                .await
                .expect("connect");
            s.write_all(g).await.expect("send");
            drop(s);
            String::new()
        } else {
            raw(k.addr, g).await
        };
        assert!(
            !answer.starts_with("HTTP/1.1 5"),
            "garbage #{i} got a server error: {answer}"
        );
        if !answer.is_empty() {
            let status: u16 = answer
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            assert!((400..500).contains(&status), "garbage #{i}: {answer}");
        }
        let r = send(k.addr, "GET", "/health", "").await;
        assert_eq!(r.status, 200, "member stopped serving after garbage #{i}");
    }
    let r = send(k.addr, "PUT", "/v2/keys/after", "value=ok").await;
    assert_eq!(r.status, 201);
    assert!(send(k.addr, "GET", "/v2/keys/short", "").await.status == 404);
    k.handle.shutdown().await.expect("shutdown");
}
