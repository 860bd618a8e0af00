//! Shared helpers for the HTTP tests: a raw HTTP/1.1 client (no redirects,
//! exact headers, chunked bodies read as they arrive), Keelson started
//! in-process, the real etcd 3.4.23 started as a child process, and the
//! normalisation that makes their answers comparable.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keelson_kv::server::{KvServer, KvServerHandle, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const LONG: Duration = Duration::from_secs(20);

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[derive(Debug, Clone)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An open connection whose response is read incrementally.
pub struct Conn {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    length: Option<usize>,
    done: bool,
}

fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

impl Conn {
    /// Sends a request and reads the status line and headers.
    pub async fn open(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Conn {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&request_bytes(method, target, headers, body))
            .await
            .expect("send");
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        tokio::time::timeout(LONG, reader.read_line(&mut line))
            .await
            .expect("status line in time")
            .expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await.expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let find = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = find("content-length").and_then(|v| v.parse().ok());
        let done = method == "HEAD" || status == 204 || status == 304;
        Conn {
            reader,
            status,
            headers,
            chunked,
            length,
            done,
        }
    }

    /// The next chunk of a chunked body (`None` at the end).
    pub async fn next_chunk(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        if !self.chunked {
            let mut buf = Vec::new();
            match self.length {
                Some(n) => {
                    buf.resize(n, 0);
                    self.reader.read_exact(&mut buf).await.ok()?;
                }
                None => {
                    self.reader.read_to_end(&mut buf).await.ok()?;
                }
            }
            self.done = true;
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
        let mut size = String::new();
        if self.reader.read_line(&mut size).await.ok()? == 0 {
            self.done = true;
            return None;
        }
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut buf = vec![0; n + 2];
        self.reader.read_exact(&mut buf).await.ok()?;
        if n == 0 {
            self.done = true;
            return None;
        }
        buf.truncate(n);
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    /// The next newline-terminated line of the body, with a deadline.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.next_chunk())
            .await
            .ok()
            .flatten()
    }

    /// Reads the rest of the body.
    pub async fn finish(mut self) -> Raw {
        let mut body = String::new();
        while let Some(c) = tokio::time::timeout(LONG, self.next_chunk())
            .await
            .expect("body in time")
        {
            body.push_str(&c);
        }
        Raw {
            status: self.status,
            headers: self.headers,
            body,
        }
    }
}

/// One request, whole answer.
pub async fn send(addr: SocketAddr, method: &str, target: &str, body: &str) -> Raw {
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/x-www-form-urlencoded")]
    };
    Conn::open(addr, method, target, headers, body)
        .await
        .finish()
        .await
}

/// Keelson started in-process on a free port.
pub struct Keelson {
    pub handle: KvServerHandle,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

pub fn keelson_config(dir: &std::path::Path, port: u16) -> ServerConfig {
    let url = format!("http://127.0.0.1:{port}");
    ServerConfig {
        name: "k1".into(),
        data_dir: dir.join("k1.etcd"),
        listen_client_urls: vec![url.clone()],
        advertise_client_urls: vec![url],
        listen_peer_urls: vec![format!("http://127.0.0.1:{}", port + 1)],
        initial_advertise_peer_urls: vec![format!("http://127.0.0.1:{}", port + 1)],
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    }
}

pub async fn start_keelson() -> Keelson {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = keelson_config(dir.path(), 0);
    let handle = KvServer::start(config).await.expect("keelson starts");
    let url = handle.client_urls()[0].clone();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .expect("bound address");
    Keelson { handle, addr, dir }
}

/// The real etcd 3.4.23, killed on drop.
pub struct Etcd {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the oracle lives; the differential tests fail (never skip) when
/// it is missing: install Debian's `etcd-server`.
pub fn etcd_binary() -> PathBuf {
    let p = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        p.exists(),
        "the oracle etcd 3.4.23 is required at {} (apt-get install etcd-server, or set ETCD_BIN)",
        p.display()
    );
    p
}

pub async fn start_etcd() -> Etcd {
    let bin = etcd_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cport, pport) = (free_port(), free_port());
    let curl = format!("http://127.0.0.1:{cport}");
    let purl = format!("http://127.0.0.1:{pport}");
    let child = Command::new(bin)
        .args(["--enable-v2=true", "--name", "e1", "--data-dir"])
        .arg(dir.path().join("e1.etcd"))
        .args([
            "--listen-client-urls",
            &curl,
            "--advertise-client-urls",
            &curl,
            "--listen-peer-urls",
            &purl,
            "--initial-advertise-peer-urls",
            &purl,
            "--initial-cluster",
            &format!("e1={purl}"),
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    let addr: SocketAddr = format!("127.0.0.1:{cport}").parse().expect("addr");
    let mut etcd = Etcd { child, addr, dir };
    let start = Instant::now();
    loop {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
        {
            let _ = s.shutdown().await;
            let r = send(addr, "GET", "/health", "").await;
            if r.status == 200 {
                break;
            }
        }
        if let Ok(Some(st)) = etcd.child.try_wait() {
            panic!("etcd exited early: {st}");
        }
        assert!(start.elapsed() < LONG, "etcd did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    etcd
}

/// Rewrites every decimal number that follows one of `keys` (as in
/// `"index":12`) with `f`.
fn rewrite_after(s: &str, key: &str, f: &dyn Fn(u64) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(key) {
        let (head, tail) = rest.split_at(i + key.len());
        out.push_str(head);
        let digits: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            rest = tail;
            continue;
        }
        out.push_str(&f(digits.parse().unwrap_or(0)));
        rest = &tail[digits.len()..];
    }
    out.push_str(rest);
    out
}

/// Replaces a quoted string value after `key` with `placeholder`.
fn mask_string_after(s: &str, key: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(key) {
        let (head, tail) = rest.split_at(i + key.len());
        out.push_str(head);
        match tail
            .strip_prefix('"')
            .and_then(|t| t.find('"').map(|j| (t, j)))
        {
            Some((t, j)) => {
                out.push_str(&format!("\"{placeholder}\""));
                rest = &t[j + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Makes a body comparable across servers: indexes rebased on `base` (the
/// etcd index before the scenario), in-order key names rebased, expiration
/// times and ttls masked.
pub fn normalise(body: &str, base: u64) -> String {
    let rebase = |n: u64| {
        if n == 0 {
            "0".to_string()
        } else {
            format!("B+{}", n as i64 - base as i64)
        }
    };
    let mut s = body.to_owned();
    for key in ["\"modifiedIndex\":", "\"createdIndex\":", "\"index\":"] {
        s = rewrite_after(&s, key, &rebase);
    }
    s = mask_string_after(&s, "\"expiration\":", "<expiration>");
    s = rewrite_after(&s, "\"ttl\":", &|_| "<ttl>".into());
    // In-order names: 20 zero-padded digits.
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/'
            && i + 21 <= b.len()
            && b[i + 1..i + 21].iter().all(u8::is_ascii_digit)
            && b.get(i + 21).is_none_or(|c| !c.is_ascii_digit())
        {
            let n: u64 = s[i + 1..i + 21].parse().unwrap_or(0);
            out.push_str(&format!("/<inorder {}>", rebase(n)));
            i += 21;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    // Compare-failure and history causes carry indexes as well.
    let mut s = out;
    for key in ["[", "/", " != "] {
        s = rewrite_after(&s, key, &|n| {
            if n > 1_000_000 {
                n.to_string()
            } else {
                rebase(n)
            }
        });
    }
    s
}

/// The current etcd index of a server (`X-Etcd-Index` of a root GET).
pub async fn etcd_index(addr: SocketAddr) -> u64 {
    send(addr, "GET", "/v2/keys/", "")
        .await
        .header("X-Etcd-Index")
        .and_then(|v| v.parse().ok())
        .expect("X-Etcd-Index")
}
