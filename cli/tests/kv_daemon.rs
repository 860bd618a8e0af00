//! The `keelson kv` binary as a process: acknowledged writes survive
//! `kill -9`, SIGTERM exits 0, the `etcd` symlink name works, and flag
//! errors use etcd's texts and exit codes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keelson");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One blocking HTTP/1.1 request; returns status and body.
fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn spawn(program: &Path, argv0_dir: Option<&Path>, data: &Path, port: u16) -> Child {
    let url = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(program);
    if argv0_dir.is_none() {
        cmd.arg("kv");
    }
    cmd.args(["-name", "d1", "--data-dir"])
        .arg(data)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--initial-advertise-peer-urls",
            &peer,
            "--listen-peer-urls",
            &peer,
        ])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .env("ETCD_VERBOSE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("keelson starts")
}

fn wait_healthy(child: &mut Child, addr: SocketAddr) {
    let start = Instant::now();
    loop {
        if let Some((200, _)) = http(addr, "GET", "/health", "") {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("keelson exited early: {st}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "keelson did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d1.etcd");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut child = spawn(Path::new(BIN), None, &data, port);
    wait_healthy(&mut child, addr);
    let mut acked = Vec::new();
    for i in 0..200 {
        if let Some((s, _)) = http(
            addr,
            "PUT",
            &format!("/v2/keys/dur/k{i}"),
            &format!("value=v{i}"),
        ) {
            if s == 201 || s == 200 {
                acked.push(i);
            }
        }
    }
    assert_eq!(acked.len(), 200, "every write was acknowledged");
    // kill -9: no chance to flush anything that was not already durable.
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let mut child = spawn(Path::new(BIN), None, &data, port);
    wait_healthy(&mut child, addr);
    for i in &acked {
        let (s, body) = http(addr, "GET", &format!("/v2/keys/dur/k{i}"), "").expect("answer");
        assert_eq!(s, 200, "acknowledged key k{i} lost after kill -9: {body}");
        assert!(body.contains(&format!("\"value\":\"v{i}\"")), "{body}");
    }
    // SIGTERM: graceful shutdown, exit 0.
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(st.success());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0");
    // The etcd symlink name runs the same daemon over the same data.
    let link = dir.path().join("etcd");
    std::os::unix::fs::symlink(BIN, &link).expect("symlink");
    let mut child = spawn(&link, Some(dir.path()), &data, port);
    wait_healthy(&mut child, addr);
    let (s, _) = http(addr, "GET", "/v2/keys/dur/k199", "").expect("answer");
    assert_eq!(s, 200);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert_eq!(
        child.wait().expect("wait").code(),
        Some(0),
        "SIGINT must exit 0"
    );
}

#[test]
fn flag_errors_use_etcd_texts() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("kv")
            .args(args)
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["foo"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("error verifying flags, 'foo' is not a valid flag. See 'etcd --help'."),
        "{err}"
    );
    let (code, err) = run(&["--bogus"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("flag provided but not defined: -bogus"),
        "{err}"
    );
    let (code, err) = run(&[
        "--heartbeat-interval",
        "300",
        "--data-dir",
        "/nonexistent/x",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"),
        "{err}"
    );
    let (code, err) = run(&["-listen-client-urls", "http://127.0.0.1:1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        ),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["kv", "--version"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("etcd Version: "));
    // The environment is read when the flag is absent.
    let out = Command::new(BIN)
        .args(["kv", "--data-dir", "/nonexistent/x"])
        .env("ETCD_HEARTBEAT_INTERVAL", "300")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat-interval[300ms]"));
}
