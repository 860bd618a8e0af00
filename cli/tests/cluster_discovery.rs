//! Discovery and proxy mode with the binaries: a 3-member Keelson cluster
//! formed through the v2 discovery protocol against the real etcd 3.4.23,
//! a 4th member falling back to a proxy, discovery's error cases, and a
//! proxy serving reads, writes and watches through a leader kill.

mod cluster_support;
mod proc_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{agreed_leader, eventually, free_port, http, serial, LONG};

/// A `keelson kv` process with its addresses; killed on drop.
struct Proc {
    name: String,
    client: std::net::SocketAddr,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit; returns its code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn as_member(&self) -> cluster_support::Member {
        let mut m = cluster_support::Member::new(
            &self.name,
            "127.0.0.1",
            Path::new("/nonexistent"),
            (self.client.port(), 0),
        );
        m.child = None;
        m
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `keelson kv --name <name>` on fresh loopback ports with `extra`.
fn spawn(dir: &Path, name: &str, extra: &[&str]) -> Proc {
    let (cp, pp) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let curl = format!("http://127.0.0.1:{cp}");
    let purl = format!("http://127.0.0.1:{pp}");
    let log = dir.join(format!("{name}.log"));
    let f = std::fs::File::create(&log).expect("log file");
    let child = Command::new(cluster_support::BIN)
        .arg("kv")
        .args(["--name", name, "--data-dir"])
        .arg(dir.join(format!("{name}.etcd")))
        .args(["--listen-client-urls", &curl])
        .args(["--advertise-client-urls", &curl])
        .args(["--listen-peer-urls", &purl])
        .args(["--initial-advertise-peer-urls", &purl])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .args(extra)
        .env("RUST_LOG", "info,openraft=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(f))
        .spawn()
        .expect("keelson starts");
    Proc {
        name: name.into(),
        client: format!("127.0.0.1:{cp}").parse().expect("addr"),
        log,
        child: Some(child),
    }
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn ok(a: Option<cluster_support::Answer>) -> bool {
    a.is_some_and(|a| a.status / 100 == 2)
}

#[test]
fn discovery_against_etcd_then_proxy_through_leader_kill() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = proc_support::start_etcd(dir.path());
    let base = format!("{}/v2/keys/_etcd/registry", etcd.url());
    // The token and its size, as discovery.etcd.io would create them.
    let a = http(
        etcd.addr,
        "PUT",
        "/v2/keys/_etcd/registry/tok/_config/size",
        "value=3",
    )
    .expect("etcd answers");
    assert_eq!(a.status, 201, "{}", a.body);
    let durl = format!("{base}/tok");

    // No size key: etcd's error text, exit 1.
    let mut nosize = spawn(
        dir.path(),
        "nosize",
        &["--discovery", &format!("{base}/none")],
    );
    assert_eq!(nosize.wait_exit(LONG), Some(1));
    assert!(
        nosize.log_text().contains("discovery: size key not found"),
        "{}",
        nosize.log_text()
    );
    // Both discovery and a static cluster: refused.
    let mut both = spawn(
        dir.path(),
        "both",
        &[
            "--discovery",
            &durl,
            "--initial-cluster",
            "both=http://127.0.0.1:1",
        ],
    );
    assert_eq!(both.wait_exit(LONG), Some(1));
    assert!(both
        .log_text()
        .contains("multiple discovery or bootstrap flags are set"));

    // Three members find each other through etcd.
    let members: Vec<Proc> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| spawn(dir.path(), n, &["--discovery", &durl]))
        .collect();
    let views: Vec<cluster_support::Member> = members.iter().map(Proc::as_member).collect();
    let refs: Vec<&cluster_support::Member> = views.iter().collect();
    cluster_support::wait_healthy(&refs);
    let list = eventually("a 3-member list", LONG, || {
        let a = http(members[0].client, "GET", "/v2/members", "")?;
        let v = a.json();
        let ms = v["members"].as_array()?.clone();
        (ms.len() == 3
            && ms
                .iter()
                .all(|m| m["clientURLs"].as_array().is_some_and(|c| !c.is_empty())))
        .then_some(ms)
    });
    let mut names: Vec<String> = list
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(names, ["m1", "m2", "m3"]);
    // The registry holds exactly the three registrations.
    let reg = http(etcd.addr, "GET", "/v2/keys/_etcd/registry/tok", "").expect("etcd");
    assert_eq!(
        reg.json()["node"]["nodes"].as_array().map(Vec::len),
        Some(3)
    );
    agreed_leader(&refs);

    // A 4th member finds the cluster full and becomes a proxy.
    let proxy = spawn(dir.path(), "m4", &["--discovery", &durl]);
    eventually("the proxy to serve", LONG, || {
        ok(http(proxy.client, "PUT", "/v2/keys/via-proxy", "value=1")).then_some(())
    });
    assert!(proxy
        .log_text()
        .contains("discovery cluster full, falling back to proxy"));
    // A plain read on a follower may be stale (as in etcd); a quorum read
    // must see the write acknowledged through the proxy.
    let a = http(
        members[1].client,
        "GET",
        "/v2/keys/via-proxy?quorum=true",
        "",
    )
    .expect("member");
    assert_eq!(a.json()["node"]["value"], "1");
    let a = http(proxy.client, "GET", "/v2/members", "").expect("proxy");
    assert_eq!(a.json()["members"].as_array().map(Vec::len), Some(3));
    let stored =
        std::fs::read_to_string(dir.path().join("m4.etcd/proxy/cluster")).expect("proxy/cluster");
    assert!(stored.starts_with("{\"PeerURLs\":["), "{stored}");

    // With --discovery-fallback exit, a latecomer stops instead.
    let mut late = spawn(
        dir.path(),
        "m5",
        &["--discovery", &durl, "--discovery-fallback", "exit"],
    );
    assert_eq!(late.wait_exit(LONG), Some(1));
    assert!(late.log_text().contains("discovery: cluster is full"));

    // A readonly proxy from a static --initial-cluster.
    let peers = list
        .iter()
        .map(|m| {
            format!(
                "{}={}",
                m["name"].as_str().unwrap_or(""),
                m["peerURLs"][0].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let ro = spawn(
        dir.path(),
        "ro",
        &["--proxy", "readonly", "--initial-cluster", &peers],
    );
    eventually("the readonly proxy to serve reads", LONG, || {
        ok(http(ro.client, "GET", "/v2/keys/via-proxy", "")).then_some(())
    });
    let a = http(ro.client, "PUT", "/v2/keys/x", "value=1").expect("readonly proxy");
    assert_eq!(a.status, 501);
    assert_eq!(a.body, "");

    // A watch through the proxy sees a write made on a member.
    let watch_addr = proxy.client;
    let watcher =
        std::thread::spawn(move || http(watch_addr, "GET", "/v2/keys/watched?wait=true", ""));
    std::thread::sleep(Duration::from_millis(300));
    assert!(ok(http(
        members[2].client,
        "PUT",
        "/v2/keys/watched",
        "value=seen"
    )));
    let w = watcher.join().expect("watch thread").expect("watch answer");
    let body = if w.header("transfer-encoding") == Some("chunked") {
        dechunk(&w.body)
    } else {
        w.body.clone()
    };
    let v: serde_json::Value = serde_json::from_str(&body).expect("watch JSON");
    assert_eq!(v["node"]["value"], "seen");

    // Kill -9 the leader: the proxy keeps serving reads and writes.
    let mut members = members;
    let leader = agreed_leader(&refs);
    members[leader].kill();
    let started = Instant::now();
    for i in 0..20 {
        let body = format!("value=v{i}");
        eventually(
            "a write through the proxy after the leader kill",
            LONG,
            || ok(http(proxy.client, "PUT", "/v2/keys/after", &body)).then_some(()),
        );
        let a = eventually("a read through the proxy", LONG, || {
            http(proxy.client, "GET", "/v2/keys/after?quorum=true", "").filter(|a| a.status == 200)
        });
        assert_eq!(a.json()["node"]["value"], format!("v{i}"));
    }
    eprintln!(
        "20 writes through the proxy after the kill took {:?}",
        started.elapsed()
    );
    assert!(ok(http(ro.client, "GET", "/v2/keys/after?quorum=true", "")));
    drop(etcd);
}

#[test]
fn discovery_refuses_a_duplicate_name() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = proc_support::start_etcd(dir.path());
    let a = http(
        etcd.addr,
        "PUT",
        "/v2/keys/_etcd/registry/dup/_config/size",
        "value=3",
    )
    .expect("etcd answers");
    assert_eq!(a.status, 201);
    let durl = format!("{}/v2/keys/_etcd/registry/dup", etcd.url());
    let _first = spawn(dir.path(), "same", &["--discovery", &durl]);
    eventually("the first registration", LONG, || {
        let a = http(etcd.addr, "GET", "/v2/keys/_etcd/registry/dup", "")?;
        (a.json()["node"]["nodes"].as_array().map(Vec::len) == Some(1)).then_some(())
    });
    let dup_dir = dir.path().join("other");
    std::fs::create_dir_all(&dup_dir).expect("dir");
    let mut second = spawn(&dup_dir, "same", &["--discovery", &durl]);
    assert_eq!(second.wait_exit(LONG), Some(1));
    assert!(
        second
            .log_text()
            .contains("discovery: found duplicate name"),
        "{}",
        second.log_text()
    );
}
