//! Shared by the process-level tests: start `keelson kv` or the real etcd
//! 3.4.23 as child processes on free loopback ports, and talk HTTP/1.1 to
//! them without a client library (so nothing normalises the bytes).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
pub const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One blocking HTTP/1.1 request with a form body; `None` when the
/// connection fails.
pub fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> Option<Answer> {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/x-www-form-urlencoded\r\n".into()
    };
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(addr, req.as_bytes(), Duration::from_secs(10))
}

/// Sends `bytes` as is and parses whatever comes back (until close).
pub fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    // A server may answer and close before reading a big body.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_answer(&out)
}

pub fn parse_answer(out: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(out);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some(Answer {
        status,
        headers,
        body,
    })
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

/// A child server killed (SIGKILL) on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub port: u16,
    pub data: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `keelson kv` on `port` (0: a free one) over `data`, with `extra` flags.
/// Does not wait for health.
pub fn spawn_keelson(data: &Path, port: u16, extra: &[&str]) -> Server {
    let port = if port == 0 { free_port() } else { port };
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(KEELSON)
        .arg("kv")
        .args(["--name", "k1", "--data-dir"])
        .arg(data)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("keelson starts");
    Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        port,
        data: data.to_owned(),
    }
}

/// Waits until `/health` answers 200; panics if the process exits or the
/// deadline passes.
pub fn wait_healthy(s: &mut Server) {
    let start = Instant::now();
    loop {
        if let Some(a) = http(s.addr, "GET", "/health", "") {
            if a.status == 200 {
                return;
            }
        }
        if let Ok(Some(st)) = s.child.try_wait() {
            panic!("server exited early: {st}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A healthy `keelson kv` over a fresh data directory inside `dir`.
pub fn start_keelson(dir: &Path, extra: &[&str]) -> Server {
    let mut s = spawn_keelson(&dir.join("k1.etcd"), 0, extra);
    wait_healthy(&mut s);
    s
}

/// The real etcd 3.4.23 (`/usr/bin/etcd` or `$ETCD_BIN`) with the v2 API;
/// fails, never skips, when it is missing.
pub fn start_etcd(dir: &Path) -> Server {
    let bin = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        bin.exists(),
        "the oracle etcd 3.4.23 is required at {} (apt-get install etcd-server, or set ETCD_BIN)",
        bin.display()
    );
    let (cport, pport) = (free_port(), free_port());
    let curl = format!("http://127.0.0.1:{cport}");
    let purl = format!("http://127.0.0.1:{pport}");
    let data = dir.join("etcd.data");
    let child = Command::new(bin)
        .args(["--enable-v2=true", "--name", "e1", "--data-dir"])
        .arg(&data)
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
        .args(["--initial-cluster", &format!("e1={purl}")])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    let mut s = Server {
        child,
        addr: format!("127.0.0.1:{cport}").parse().expect("addr"),
        port: cport,
        data,
    };
    wait_healthy(&mut s);
    s
}
