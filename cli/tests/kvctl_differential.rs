//! Differential tests: the same commands through Debian's etcdctl 3.4.23
//! (`ETCDCTL_API=2`) and through `kvctl`, each against its own fresh etcd
//! 3.4.23 so that indexes line up exactly; stdout, stderr and exit codes must
//! be identical once ports, member IDs and expiration times are mapped.
//!
//! kvctl runs through a symlink named `etcdctl`, which also checks that it
//! takes etcdctl's name (help texts) from argv[0].
//!
//! These tests need `etcd` and `etcdctl` on PATH (scripts/setup.sh installs
//! them) and fail when they are missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
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

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

impl Etcd {
    /// Start a one-member etcd with the v2 API on free loopback ports,
    /// retrying with other ports if it does not come up.
    fn start() -> Etcd {
        for _attempt in 0..5 {
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
                client_port: cp,
                peer_port: pp,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = etcd.child.try_wait() {
                    break; // port conflict or similar: try other ports
                }
                if http_get(cp, "/health").is_some_and(|r| r.contains("\"health\":\"true\"")) {
                    return etcd;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(etcd);
        }
        panic!("etcd did not start");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn member_id(&self) -> String {
        let r = http_get(self.client_port, "/v2/members").expect("members");
        let i = r.find("\"id\":\"").expect("member id") + 6;
        let j = r[i..].find('"').expect("member id end");
        r[i..i + j].to_string()
    }
}

/// kvctl, reachable as `etcdctl` through a symlink.
fn kvctl_as_etcdctl() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("etcdctl");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kvctl"), &link).expect("symlink");
    (dir, link)
}

fn tool(bin: &Path, endpoint: &str) -> Command {
    let mut c = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("ETCDCTL_") {
            c.env_remove(k);
        }
    }
    c.env("ETCDCTL_API", "2").env("ETCDCTL_ENDPOINTS", endpoint);
    c
}

fn etcdctl_path() -> PathBuf {
    let p = PathBuf::from("/usr/bin/etcdctl");
    assert!(
        p.exists(),
        "Debian etcdctl 3.4.23 is missing (/usr/bin/etcdctl); run scripts/setup.sh"
    );
    p
}

fn run(mut c: Command, stdin: Option<&str>) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    {
        let mut i = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait")
}

/// The two sides of a differential run.
struct Pair {
    oracle: Etcd,
    ours: Etcd,
    etcdctl: PathBuf,
    kvctl: PathBuf,
    _link_dir: tempfile::TempDir,
    ids: (String, String),
    mismatches: Vec<String>,
    steps: usize,
}

#[derive(Debug, PartialEq, Eq)]
struct Observed {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

impl Pair {
    fn new() -> Pair {
        let etcdctl = etcdctl_path();
        let a = std::thread::spawn(Etcd::start);
        let ours = Etcd::start();
        let oracle = a.join().expect("etcd thread");
        let (link_dir, kvctl) = kvctl_as_etcdctl();
        let ids = (oracle.member_id(), ours.member_id());
        Pair {
            ids,
            oracle,
            ours,
            etcdctl,
            kvctl,
            _link_dir: link_dir,
            mismatches: Vec::new(),
            steps: 0,
        }
    }

    /// Map everything that necessarily differs between the two clusters.
    fn normalise(&self, s: &str, ours: bool) -> String {
        let mut s = s.to_string();
        if ours {
            s = s
                .replace(
                    &self.ours.client_port.to_string(),
                    &self.oracle.client_port.to_string(),
                )
                .replace(
                    &self.ours.peer_port.to_string(),
                    &self.oracle.peer_port.to_string(),
                )
                .replace(&self.ids.1, &self.ids.0)
                .replace(
                    &format!("VERSION:\n   {}\n", env!("CARGO_PKG_VERSION")),
                    "VERSION:\n   3.4.23\n",
                );
        }
        mask_after(
            &mask_after(&mask_after(&s, "\"expiration\":\"", '"'), "\"ttl\":", ','),
            "TTL: ",
            '\n',
        )
    }

    fn observe(&self, ours: bool, args: &[&str], stdin: Option<&str>) -> Observed {
        let (bin, url) = if ours {
            (&self.kvctl, self.ours.url())
        } else {
            (&self.etcdctl, self.oracle.url())
        };
        let args: Vec<String> = args.iter().map(|a| a.replace("{URL}", &url)).collect();
        let mut c = tool(bin, &url);
        c.args(&args);
        let o = run(c, stdin);
        Observed {
            stdout: self.normalise(&String::from_utf8_lossy(&o.stdout), ours),
            stderr: self.normalise(&String::from_utf8_lossy(&o.stderr), ours),
            code: o.status.code(),
        }
    }

    /// Run one command on both sides and record any difference.
    fn step_stdin(&mut self, args: &[&str], stdin: Option<&str>) -> Observed {
        self.steps += 1;
        let want = self.observe(false, args, stdin);
        let got = self.observe(true, args, stdin);
        if want != got {
            self.mismatches.push(format!(
                "`etcdctl {}`\n  etcdctl: {want:?}\n  kvctl:   {got:?}",
                args.join(" ")
            ));
        }
        want
    }

    fn step(&mut self, args: &[&str]) -> Observed {
        self.step_stdin(args, None)
    }

    /// Run a long-lived command (watch --forever, exec-watch) on both sides,
    /// let it work for `settle`, interrupt it like Ctrl-C, and compare.
    fn step_interrupted(&mut self, args: &[&str], settle: Duration, sort_lines: bool) {
        self.steps += 1;
        let spawn = |ours: bool| {
            let (bin, url) = if ours {
                (&self.kvctl, self.ours.url())
            } else {
                (&self.etcdctl, self.oracle.url())
            };
            let mut c = tool(bin, &url);
            c.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().expect("spawn")
        };
        let (a, b) = (spawn(false), spawn(true));
        std::thread::sleep(settle);
        for child in [&a, &b] {
            let status = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
        let collect = |c: Child, ours: bool| {
            let o = c.wait_with_output().expect("wait");
            let fix = |b: &[u8]| {
                let s = self.normalise(&String::from_utf8_lossy(b), ours);
                if sort_lines {
                    let mut l: Vec<&str> = s.lines().collect();
                    l.sort();
                    l.join("\n")
                } else {
                    s
                }
            };
            Observed {
                stdout: fix(&o.stdout),
                stderr: fix(&o.stderr),
                code: o.status.code(),
            }
        };
        let want = collect(a, false);
        let got = collect(b, true);
        assert!(
            !want.stdout.is_empty(),
            "oracle printed nothing for {args:?}"
        );
        if want != got {
            self.mismatches.push(format!(
                "`etcdctl {}` (interrupted)\n  etcdctl: {want:?}\n  kvctl:   {got:?}",
                args.join(" ")
            ));
        }
    }

    fn finish(self) {
        assert!(
            self.mismatches.is_empty(),
            "{} of {} steps differ:\n{}",
            self.mismatches.len(),
            self.steps,
            self.mismatches.join("\n")
        );
    }
}

/// Replace what follows `marker` up to `end` by `*` (unless it is `0`).
fn mask_after(s: &str, marker: &str, end: char) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        let j = rest.find([end, '}']).unwrap_or(rest.len());
        if &rest[..j] == "0" {
            out.push('0');
        } else {
            out.push('*');
        }
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

#[test]
fn keys_commands_match_etcdctl() {
    let mut p = Pair::new();
    // set / get, keys without a leading slash, values with spaces and odd bytes
    p.step(&["set", "/k/a", "hello"]);
    p.step(&["set", "k/b", "x y"]);
    p.step(&["get", "/k/a"]);
    p.step(&["get", "k/b"]);
    p.step(&["-o", "json", "set", "/k/odd", "<a&b> \"q\" \\ é \ttab"]);
    p.step(&["-o", "json", "get", "/k/odd"]);
    p.step(&["set", "/k/sp ace/q?x#y%z", "v"]);
    p.step(&["ls", "/k/sp ace"]);
    p.step(&["-o", "extended", "get", "/k/sp ace/q?x#y%z"]);
    p.step(&["set", "--", "/k/neg", "-5"]);
    p.step(&["get", "/k/neg"]);
    p.step_stdin(&["set", "/k/stdin"], Some("from stdin\n"));
    p.step(&["-o", "json", "get", "/k/stdin"]);
    // formats
    p.step(&["-o", "json", "set", "/k/a", "v2"]);
    p.step(&["-o", "extended", "set", "/k/a", "v3"]);
    p.step(&["-o", "extended", "get", "/k/a"]);
    p.step(&["-o", "yaml", "set", "/k/y", "1"]);
    // mk, mkdir, setdir, update, updatedir
    p.step(&["mk", "/k/a", "z"]);
    p.step(&["mk", "/k/new", "n"]);
    p.step(&["-o", "json", "mk", "/k/new2", "n2"]);
    p.step(&["mk", "--in-order", "/k/q", "job1"]);
    p.step(&["-o", "json", "mk", "--in-order", "/k/q", "job2"]);
    p.step(&["mkdir", "/k/d"]);
    p.step(&["mkdir", "/k/d"]);
    p.step(&["-o", "json", "mkdir", "/k/d2"]);
    p.step(&["-o", "extended", "mkdir", "/k/d3"]);
    p.step(&["setdir", "/k/sd"]);
    p.step(&["setdir", "/k/sd"]);
    p.step(&["-o", "json", "setdir", "/k/sd2"]);
    p.step(&["updatedir", "/k/sd"]);
    p.step(&["updatedir", "/k/nosuchdir"]);
    p.step(&["update", "/k/nope", "1"]);
    p.step(&["update", "/k/a", "u1"]);
    p.step(&["-o", "json", "update", "/k/a", "u2"]);
    p.step(&["set", "/k/ttl", "t", "--ttl", "1000"]);
    p.step(&["-o", "json", "get", "/k/ttl"]);
    p.step(&["-o", "extended", "update", "--ttl", "2000", "/k/ttl", "t2"]);
    p.step(&["-o", "extended", "updatedir", "--ttl", "1000", "/k/sd"]);
    // get on a directory, missing keys
    p.step(&["get", "/k"]);
    p.step(&["get", "/k/missing"]);
    p.step(&["get", "/missing/child"]);
    p.step(&["-o", "json", "get", "/k/missing"]);
    p.step(&["get", "--quorum", "/k/a"]);
    // ls
    p.step(&["ls", "--sort"]);
    p.step(&["ls", "--sort", "/k"]);
    p.step(&["ls", "--sort", "-r", "/k"]);
    p.step(&["ls", "--sort", "-r", "-p", "/"]);
    p.step(&["ls", "/", "--sort", "--recursive"]);
    p.step(&["ls", "/k/a"]);
    p.step(&["ls", "/nothere"]);
    // compare-and-swap / compare-and-delete
    p.step(&["set", "--swap-with-value", "nope", "/k/a", "x"]);
    p.step(&["set", "--swap-with-value", "u2", "/k/a", "x"]);
    p.step(&["set", "--swap-with-index", "1", "/k/a", "y"]);
    p.step(&["set", "--swap-with-value", "x", "/k/missing", "y"]);
    p.step(&["rm", "--with-value", "bad", "/k/a"]);
    p.step(&["rm", "--with-index", "9999", "/k/a"]);
    p.step(&["rm", "--with-value", "x", "/k/a"]);
    // rm / rmdir
    p.step(&["rm", "k/b"]);
    p.step(&["-o", "extended", "rm", "/k/new"]);
    p.step(&["-o", "json", "rm", "/k/new2"]);
    p.step(&["rm", "/k/d"]);
    p.step(&["rm", "--dir", "/k/d"]);
    p.step(&["-o", "json", "rmdir", "/k/d2"]);
    p.step(&["rmdir", "/k/d3"]);
    p.step(&["rmdir", "/k"]);
    p.step(&["rm", "/k"]);
    p.step(&["-o", "extended", "rm", "-r", "/k/q"]);
    p.step(&["rm", "/k/missing"]);
    // watch from history (non-forever)
    p.step(&["set", "/w/a", "1"]);
    p.step(&["set", "/w/b", "2"]);
    p.step(&["rm", "/w/a"]);
    p.step(&["mkdir", "/w/d"]);
    p.step(&["set", "/w/d/x", "3"]);
    let idx = p
        .step(&["-o", "extended", "get", "/w/b"])
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Index: ").map(str::to_string))
        .expect("index line");
    let idx: u64 = idx.parse().expect("index");
    let start = (idx - 5).to_string();
    p.step(&["watch", "--after-index", &start, "/w/a"]);
    p.step(&["watch", "-r", "--after-index", &start, "/w"]);
    p.step(&[
        "-o",
        "extended",
        "watch",
        "-r",
        "--after-index",
        &start,
        "/w",
    ]);
    p.step(&["-o", "json", "watch", "--after-index", &start, "/w/b"]);
    p.step(&["watch", "/w/a", "--after-index", &(idx - 3).to_string()]);
    p.step_interrupted(
        &["watch", "--forever", "-r", "--after-index", &start, "/w"],
        Duration::from_millis(1500),
        false,
    );
    p.step_interrupted(
        &[
            "exec-watch",
            "--after-index",
            &start,
            "-r",
            "/w",
            "--",
            "sh",
            "-c",
            "echo \"A=$ETCD_WATCH_ACTION K=$ETCD_WATCH_KEY V=$ETCD_WATCH_VALUE I=$ETCD_WATCH_MODIFIED_INDEX\"",
        ],
        Duration::from_millis(1500),
        true,
    );
    // argument errors
    for cmd in [
        "get",
        "set",
        "mk",
        "mkdir",
        "rm",
        "rmdir",
        "update",
        "watch",
        "updatedir",
        "setdir",
    ] {
        p.step(&[cmd]);
    }
    p.step(&["set", "/k/x"]);
    p.step(&["exec-watch", "/w"]);
    p.step(&["bogus"]);
    p.step(&["set", "/k/x", "v", "--ttl", "abc"]);
    p.step(&["get", "--sort=maybe", "/w/b"]);
    p.step(&["get", "---x", "/w/b"]);
    p.step(&["--bogus", "get", "/w/b"]);
    p.step(&["--timeout", "1x", "get", "/w/b"]);
    // Go-style single-dash long flags, flags after arguments, unknown flags kept
    p.step(&["-no-sync", "-output", "extended", "get", "-quorum", "/w/b"]);
    p.step(&["set", "/w/k", "v", "-ttl", "0x3e8"]);
    p.step(&["set", "/w/k2", "v", "--bogus"]);
    p.step(&["--debug", "get", "/w/b"]);
    p.step(&["--debug", "--no-sync", "set", "/w/dbg", "a b&c"]);
    p.step(&[
        "--debug",
        "--no-sync",
        "rm",
        "--with-value",
        "a b&c",
        "/w/dbg",
    ]);
    // help and version
    p.step(&[]);
    p.step(&["-h"]);
    p.step(&["help", "get"]);
    p.step(&["help", "bogus"]);
    for cmd in [
        "get",
        "ls",
        "set",
        "mk",
        "rm",
        "watch",
        "exec-watch",
        "member",
        "cluster-health",
    ] {
        p.step(&[cmd, "-h"]);
    }
    p.finish();
}

#[test]
fn cluster_commands_match_etcdctl() {
    let mut p = Pair::new();
    p.step(&["member", "list"]);
    p.step(&["-o", "json", "member", "list"]);
    p.step(&["member", "list", "extra"]);
    p.step(&["member", "add"]);
    p.step(&["member", "remove"]);
    p.step(&["member", "remove", "abc"]);
    p.step(&["member", "remove", "default"]);
    p.step(&["member", "update"]);
    p.step(&["member", "bogus"]);
    p.step(&["member"]);
    p.step(&["cluster-health"]);
    // Nothing listening: sync fails (exit 2), --no-sync fails per request (4).
    p.step(&["--endpoints", "http://127.0.0.1:1", "get", "/a"]);
    p.step(&[
        "--no-sync",
        "--endpoints",
        "http://127.0.0.1:1",
        "member",
        "list",
    ]);
    p.step(&["--endpoints", "http://127.0.0.1:1", "cluster-health"]);
    p.step(&["--endpoints", "127.0.0.1:2379", "get", "/a"]);
    // Failover: a dead endpoint first, then the live one.
    p.step(&[
        "--no-sync",
        "--endpoints",
        "http://127.0.0.1:1,{URL}",
        "set",
        "/f",
        "1",
    ]);
    p.step(&["-C", "{URL}", "get", "/f"]);
    p.step(&["--peers", "{URL}", "--no-sync", "get", "/f"]);
    p.finish();
}

#[test]
fn expiry_events_match_etcdctl() {
    let mut p = Pair::new();
    p.step(&["set", "/e/x", "1", "--ttl", "1"]);
    let idx = p
        .step(&["-o", "extended", "get", "/e/x"])
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Index: ").map(str::to_string))
        .expect("index line");
    std::thread::sleep(Duration::from_millis(2500));
    let after = idx.parse::<u64>().expect("index").to_string();
    p.step(&["watch", "--after-index", &after, "/e/x"]);
    p.step(&["-o", "extended", "watch", "--after-index", &after, "/e/x"]);
    p.step(&["-o", "json", "watch", "-r", "--after-index", &after, "/e"]);
    p.step(&["get", "/e/x"]);
    p.finish();
}

/// etcdctl shuffles its endpoints, so the order of per-endpoint errors is
/// random there; kvctl keeps the given order. Checked on kvctl alone.
#[test]
fn every_unreachable_endpoint_is_reported() {
    let o = tool(
        Path::new(env!("CARGO_BIN_EXE_kvctl")),
        "http://127.0.0.1:1,http://127.0.0.1:2",
    )
    .args(["--no-sync", "get", "/a"])
    .output()
    .expect("kvctl");
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error:  client: etcd cluster is unavailable or misconfigured; error #0: dial tcp 127.0.0.1:1: connect: connection refused\n; error #1: dial tcp 127.0.0.1:2: connect: connection refused\n\nerror #0: dial tcp 127.0.0.1:1: connect: connection refused\nerror #1: dial tcp 127.0.0.1:2: connect: connection refused\n\n"
    );
}

#[test]
fn kvctl_by_its_own_name_speaks_kvctl() {
    let o = Command::new(env!("CARGO_BIN_EXE_kvctl"))
        .arg("get")
        .arg("-h")
        .output()
        .expect("kvctl");
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("kvctl get - retrieve the value of a key"), "{s}");
    let o = Command::new(env!("CARGO_BIN_EXE_kvctl"))
        .arg("--version")
        .output()
        .expect("kvctl");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "kvctl version: {}\nAPI version: 2\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}
