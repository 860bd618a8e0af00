//! Three `keelson kv` processes on loopback addresses (topology T2,
//! 127.0.0.11-13): static bootstrap, writes and quorum reads through any
//! member, leader-driven expiry, kill -9 of the leader under write load,
//! rejoin and catch-up, loss of quorum (error 300), membership changes
//! with `kvctl`, a member with the wrong cluster token, and Debian's
//! `etcdctl` against the cluster.

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::*;

fn three(base: &std::path::Path) -> Vec<Member> {
    (1..=3)
        .map(|i| {
            let ip = format!("127.0.0.1{i}");
            let ports = (free_port(&ip), free_port(&ip));
            Member::new(&format!("core-0{i}"), &ip, base, ports)
        })
        .collect()
}

fn start_all(ms: &mut [Member], token: &str) {
    let ic = initial_cluster(&ms.iter().collect::<Vec<_>>());
    for m in ms.iter_mut() {
        m.start(&ic, "new", token);
    }
    wait_healthy(&ms.iter().collect::<Vec<_>>());
}

fn endpoints(ms: &[&Member]) -> String {
    ms.iter()
        .map(|m| m.client_url())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn failover_under_load_rejoin_and_quorum_loss() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut ms = three(dir.path());
    start_all(&mut ms, "t2-failover");
    let all: Vec<&Member> = ms.iter().collect();

    // One leader; the member IDs are etcd's derivation.
    let leader = agreed_leader(&all);
    let list = ms[0].get("/v2/members").unwrap().json();
    let members = list["members"].as_array().unwrap().clone();
    assert_eq!(members.len(), 3);
    for m in &ms {
        let entry = eventually("published client URLs", LONG, || {
            let list = m.get("/v2/members")?.json();
            let found = list["members"]
                .as_array()?
                .iter()
                .find(|e| e["name"] == m.name.as_str())?
                .clone();
            (found["clientURLs"][0] == m.client_url().as_str()).then_some(found)
        });
        assert_eq!(entry["peerURLs"][0], m.peer_url().as_str());
    }

    // A write through a follower reaches the leader and is visible at
    // once on that follower and, eventually, everywhere.
    let f1 = (leader + 1) % 3;
    let f2 = (leader + 2) % 3;
    let a = ms[f1].put("/k", "value=v").unwrap();
    assert_eq!(a.status, 201, "{a:?}");
    let a = ms[f1].get("/v2/keys/k").unwrap();
    assert_eq!(a.json()["node"]["value"], "v");
    let a = ms[f2].get("/v2/keys/k?quorum=true").unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["node"]["value"], "v");

    // Stats: the leader measures its followers; followers refuse.
    let st = ms[leader].get("/v2/stats/leader").unwrap();
    assert_eq!(st.status, 200);
    assert_eq!(st.json()["followers"].as_object().unwrap().len(), 2);
    let st = ms[f1].get("/v2/stats/leader").unwrap();
    assert_eq!(
        (st.status, st.body.as_str()),
        (403, "{\"message\":\"not current leader\"}")
    );
    let me = ms[f1].self_stats().unwrap();
    assert_eq!(me["state"], "StateFollower");
    assert!(me["recvAppendRequestCnt"].as_u64().unwrap() > 0);

    // A TTL set through a follower expires (the leader sweeps).
    assert_eq!(ms[f2].put("/ttl", "value=x&ttl=1").unwrap().status, 201);
    eventually("the TTL key to expire", LONG, || {
        (ms[f1].get("/v2/keys/ttl")?.status == 404).then_some(())
    });

    // Write load through every member while the leader is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let addrs: Vec<_> = ms.iter().map(|m| m.addr()).collect();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let addr = addrs[(i as usize) % addrs.len()];
                let a = http(
                    addr,
                    "PUT",
                    &format!("/v2/keys/load/{i}"),
                    &format!("value={i}"),
                );
                if a.is_some_and(|a| a.status == 201) {
                    acked.lock().unwrap().push(i);
                }
            }
        })
    };
    eventually("some writes under load", LONG, || {
        (acked.lock().unwrap().len() > 20).then_some(())
    });
    let old_leader_id = ms[leader].self_stats().unwrap()["id"].clone();
    ms[leader].kill();
    let killed = Instant::now();
    let survivors: Vec<&Member> = ms
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, m)| m)
        .collect();
    let mut n = 0;
    eventually("a write after the leader died", LONG, || {
        n += 1;
        let a = survivors[n % 2].put("/after-failover", "value=1")?;
        (a.status == 201 || a.status == 200).then_some(())
    });
    let failover = killed.elapsed();
    eprintln!("failover: first successful write {failover:?} after kill -9 of the leader");
    let new_leader = agreed_leader(&survivors);
    assert_ne!(
        survivors[new_leader].self_stats().unwrap()["id"],
        old_leader_id
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    // The old leader rejoins from its data directory and catches up.
    let ic = initial_cluster(&all_refs(&ms));
    ms[leader].start(&ic, "new", "t2-failover");
    let all: Vec<&Member> = ms.iter().collect();
    wait_healthy(&all);
    let (_, store) = wait_converged(&all);
    let tree: serde_json::Value = serde_json::from_str(&store).unwrap();
    let load = tree["node"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "/load")
        .unwrap()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["value"].as_str().unwrap().parse::<u64>().unwrap())
        .collect::<std::collections::BTreeSet<u64>>();
    for i in acked.lock().unwrap().iter() {
        assert!(load.contains(i), "acknowledged write {i} lost");
    }
    eprintln!(
        "{} acknowledged writes under load, all present on every member",
        acked.lock().unwrap().len()
    );

    // Debian's etcdctl (v2 API) against the cluster.
    let eps = endpoints(&all);
    let v2 = [("ETCDCTL_API", "2")];
    let o = run("etcdctl", &["--endpoints", &eps, "member", "list"], &v2);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(out.matches("isLeader=true").count(), 1, "{out}");
    let o = run("etcdctl", &["--endpoints", &eps, "cluster-health"], &v2);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.ends_with("cluster is healthy\n"), "{out}");
    let o = run(
        "etcdctl",
        &["--endpoints", &eps, "set", "/from-etcdctl", "x"],
        &v2,
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(
        "etcdctl",
        &[
            "--endpoints",
            &ms[f2].client_url(),
            "get",
            "--quorum",
            "/from-etcdctl",
        ],
        &v2,
    );
    assert_eq!(text(&o).0, "x\n", "{:?}", text(&o));

    // Lose the quorum: writes and quorum reads fail with error 300 after
    // the request timeout; plain reads still answer.
    let lone = (leader + 1) % 3;
    for (i, m) in ms.iter_mut().enumerate() {
        if i != lone {
            m.kill();
        }
    }
    let a = ms[lone].put("/q2", "value=1").unwrap();
    assert_eq!(a.status, 500, "{a:?}");
    assert_eq!(
        a.body,
        "{\"errorCode\":300,\"message\":\"Raft Internal Error\",\"cause\":\"etcdserver: request timed out\",\"index\":0}\n"
    );
    assert_eq!(ms[lone].get("/v2/keys/k").unwrap().status, 200);
    let a = ms[lone].get("/v2/keys/k?quorum=true").unwrap();
    assert_eq!(a.status, 500, "{a:?}");
    assert!(a.body.contains("\"errorCode\":300"), "{a:?}");
    assert_eq!(ms[lone].get("/health").unwrap().status, 503);
}

fn all_refs(ms: &[Member]) -> Vec<&Member> {
    ms.iter().collect()
}

/// `kvctl member add` output: the ID and the `ETCD_INITIAL_CLUSTER` line.
fn member_add(eps: &str, name: &str, peer: &str) -> (String, String) {
    let o = run(
        KVCTL,
        &["--endpoints", eps, "member", "add", name, peer],
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "member add: {out}{err}");
    let id = out
        .split("with ID ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let ic = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    assert!(
        out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{out}"
    );
    (id, ic)
}

fn member_ids(m: &Member) -> Vec<(String, String)> {
    m.get("/v2/members").unwrap().json()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn add_remove_replace_update_and_wrong_token() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut ms = three(dir.path());
    start_all(&mut ms, "t2-members");
    let eps = endpoints(&all_refs(&ms));
    assert_eq!(ms[0].put("/before", "value=1").unwrap().status, 201);

    // Add core-04 with kvctl, start it with the printed settings.
    let ip4 = "127.0.0.14";
    let mut m4 = Member::new("core-04", ip4, dir.path(), (free_port(ip4), free_port(ip4)));
    let (id4, ic) = member_add(&eps, "core-04", &m4.peer_url());
    assert!(ic.contains(&format!("core-04={}", m4.peer_url())), "{ic}");
    let listed = kvctl_read(&eps, &["member", "list"]);
    assert!(
        listed.contains(&format!("{id4}[unstarted]: peerURLs={}", m4.peer_url())),
        "{listed}"
    );
    m4.start(&ic, "existing", "t2-members");
    wait_healthy(&[&m4]);
    eventually("core-04 to be listed with its name", LONG, || {
        member_ids(&ms[0])
            .iter()
            .any(|(id, n)| *id == id4 && n == "core-04")
            .then_some(())
    });
    assert_eq!(m4.get("/v2/keys/before").unwrap().status, 200);
    let mut four: Vec<&Member> = all_refs(&ms);
    four.push(&m4);
    wait_converged(&four);
    let eps4 = endpoints(&four);
    let health = kvctl_read(&eps4, &["cluster-health"]);
    assert_eq!(
        health.matches(" is healthy: got healthy result").count(),
        4,
        "{health}"
    );
    assert!(health.ends_with("cluster is healthy\n"), "{health}");

    // Remove it again: the removed process exits by itself.
    let out = kvctl_out(&eps, &["member", "remove", &id4]);
    assert_eq!(out, format!("Removed member {id4} from cluster\n"));
    eventually("the removed member to exit", LONG, || {
        (!m4.running()).then_some(())
    });
    assert_eq!(member_ids(&ms[0]).len(), 3);
    let again = http_typed(
        ms[1].addr(),
        "DELETE",
        &format!("/v2/members/{id4}"),
        "application/json",
        "",
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(matches!(again.status, 404 | 410), "{again:?}");

    // Update a peer URL to an address where nothing listens, and back.
    // The moved member is cut off meanwhile (the leader sends to the new
    // URL) and answers "During election" (503): `kvctl member list` must
    // go on to another member, as etcd's client does, not fail.
    let leader = agreed_leader(&all_refs(&ms));
    let f = (leader + 1) % 3;
    let id1 = member_ids(&ms[0])
        .into_iter()
        .find(|(_, n)| *n == ms[f].name)
        .unwrap()
        .0;
    let ip = format!("127.0.0.1{}", f + 1);
    let other = format!("http://{ip}:{}", free_port(&ip));
    let out = kvctl_out(&eps, &["member", "update", &id1, &other]);
    assert_eq!(out, format!("Updated member with ID {id1} in cluster\n"));
    eventually("the moved member to lose its leader", LONG, || {
        (ms[f].get("/v2/members/leader")?.status == 503).then_some(())
    });
    let cut_off_first = format!("{},{}", ms[f].client_url(), ms[leader].client_url());
    let o = run(
        KVCTL,
        &["--no-sync", "--endpoints", &cut_off_first, "member", "list"],
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("isLeader=true"), "{out}");
    eventually("the updated peer URL to be listed", LONG, || {
        kvctl_read(&eps, &["member", "list"])
            .contains(&other)
            .then_some(())
    });
    let out = kvctl_out(&eps, &["member", "update", &id1, &ms[f].peer_url()]);
    assert_eq!(out, format!("Updated member with ID {id1} in cluster\n"));
    // Back at its own address, the member catches up with what it missed.
    let a = ms[leader].put("/after-move", "value=back").unwrap();
    assert_eq!(a.status, 201, "{a:?}");
    eventually(
        "the moved member to catch up after moving back",
        LONG,
        || {
            let a = ms[f].get("/v2/keys/after-move")?;
            (a.status == 200 && a.json()["node"]["value"] == "back").then_some(())
        },
    );
    let a = http_typed(
        ms[1].addr(),
        "POST",
        "/v2/members",
        "application/json",
        &format!("{{\"peerURLs\":[\"{}\"]}}", ms[2].peer_url()),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(
        (a.status, a.body.as_str()),
        (409, "{\"message\":\"membership: peerURL exists\"}")
    );

    // Malformed membership requests and peer messages get clear errors.
    let post = |body: &str| {
        http_typed(
            ms[0].addr(),
            "POST",
            "/v2/members",
            "application/json",
            body,
            Duration::from_secs(20),
        )
        .unwrap()
    };
    let a = post("{\"peerURLs\":\"x\"}");
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            400,
            "{\"message\":\"json: cannot unmarshal string into Go struct field .peerURLs of type []string\"}"
        )
    );
    let a = post("{\"peerURLs\":[\"not a url\"]}");
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            400,
            "{\"message\":\"URL scheme must be http, https, unix, or unixs: not a url\"}"
        )
    );
    assert_eq!(post("{").status, 400);
    let peer: std::net::SocketAddr = ms[0].peer_url()["http://".len()..].parse().unwrap();
    let cid = ms[0]
        .get("/v2/members")
        .unwrap()
        .header("x-etcd-cluster-id")
        .unwrap()
        .to_owned();
    let raw = |headers: &str, body: &str| {
        let mut s = std::net::TcpStream::connect(peer).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "POST /raft/append HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let ans = raw("", "{}");
    assert!(ans.starts_with("HTTP/1.1 412"), "{ans}");
    let ans = raw("X-Etcd-Cluster-Id: 1234\r\nX-Server-From: 1\r\n", "{}");
    assert!(
        ans.starts_with("HTTP/1.1 412") && ans.contains("cluster ID mismatch"),
        "{ans}"
    );
    let ans = raw(
        &format!("X-Etcd-Cluster-Id: {cid}\r\nX-Server-From: 1\r\n"),
        "garbage",
    );
    assert!(
        ans.starts_with("HTTP/1.1 400") && ans.contains("bad message"),
        "{ans}"
    );
    assert!(ms[0].healthy());

    // Replace a dead member: kill core-03, remove it, add core-05.
    let id3 = member_ids(&ms[0])
        .into_iter()
        .find(|(_, n)| n == "core-03")
        .unwrap()
        .0;
    ms[2].kill();
    let eps12 = endpoints(&[&ms[0], &ms[1]]);
    let out = kvctl_out(&eps12, &["member", "remove", &id3]);
    assert_eq!(out, format!("Removed member {id3} from cluster\n"));
    let ip5 = "127.0.0.15";
    let mut m5 = Member::new("core-05", ip5, dir.path(), (free_port(ip5), free_port(ip5)));
    let (_, ic) = member_add(&eps12, "core-05", &m5.peer_url());
    m5.start(&ic, "existing", "t2-members");
    let now3 = [&ms[0], &ms[1], &m5];
    wait_healthy(&now3);
    assert_eq!(ms[0].put("/after", "value=2").unwrap().status, 201);
    wait_converged(&now3);
    let health = kvctl_read(&endpoints(&now3), &["cluster-health"]);
    assert!(health.ends_with("cluster is healthy\n"), "{health}");
    assert_eq!(member_ids(&m5).len(), 3);

    // A member with another cluster token is refused by the cluster and
    // never joins it.
    let ip6 = "127.0.0.16";
    let mut m6 = Member::new("core-06", ip6, dir.path(), (free_port(ip6), free_port(ip6)));
    let ic6 = format!(
        "{},core-01={}",
        m6.initial_cluster_entry(),
        ms[0].peer_url()
    );
    m6.start(&ic6, "new", "some-other-token");
    eventually("the stranger to be refused", LONG, || {
        ms[0]
            .log_text()
            .contains("cluster ID mismatch")
            .then_some(())
    });
    assert_eq!(member_ids(&ms[0]).len(), 3);
    let a = http_typed(
        m6.addr(),
        "GET",
        "/v2/members/leader",
        "text/plain",
        "",
        Duration::from_secs(3),
    );
    assert!(a.is_none_or(|a| a.status == 503), "stranger found a leader");
    assert!(ms[0].healthy());
}

fn kvctl_out(eps: &str, args: &[&str]) -> String {
    let mut full = vec!["--endpoints", eps];
    full.extend_from_slice(args);
    let o = run(KVCTL, &full, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "kvctl {args:?}: {out}{err}");
    out
}

/// A read-only kvctl command, retried through a leader election (the
/// machine running the tests may be loaded enough to cause one).
fn kvctl_read(eps: &str, args: &[&str]) -> String {
    let mut full = vec!["--endpoints", eps];
    full.extend_from_slice(args);
    let mut last = String::new();
    eventually(&format!("kvctl {args:?} to succeed"), LONG, || {
        let o = run(KVCTL, &full, &[]);
        let (out, err) = text(&o);
        if o.status.success() {
            return Some(out);
        }
        last = format!("{out}{err}");
        eprintln!("kvctl {args:?} failed, retrying: {last}");
        None
    })
}

/// Debian's python3-etcd given all three members, as an application
/// configures it: it writes and reads through the first, and when that
/// member dies it goes on with another (`allow_reconnect`).
#[test]
fn python_etcd_fails_over_between_members() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut ms = three(dir.path());
    start_all(&mut ms, "t2-python");
    let script = dir.path().join("client.py");
    std::fs::write(&script, PY_FAILOVER).unwrap();
    let hosts = ms
        .iter()
        .map(|m| format!("{}:{}", m.ip, m.client_port))
        .collect::<Vec<_>>()
        .join(",");
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(&hosts)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("Debian's /usr/bin/python3 (python3-etcd) is required");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut before = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        before.push(line);
    }
    assert_eq!(
        before,
        ["machines 3", "set /py/a 1", "get /py/a 1"],
        "python-etcd before the kill"
    );
    // The member the client talks to dies.
    ms[0].kill();
    std::io::Write::write_all(&mut stdin, b"go\n").unwrap();
    drop(stdin);
    let after: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python-etcd failed after the kill: {after:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        after,
        [
            "set /py/b 2",
            "get /py/a 1",
            "cas /py/b 3",
            "not found /py/none"
        ],
        "python-etcd after the kill"
    );
}

const PY_FAILOVER: &str = r#"
import sys, etcd
hosts = tuple((h.split(':')[0], int(h.split(':')[1])) for h in sys.argv[1].split(','))
c = etcd.Client(host=hosts, allow_reconnect=True, protocol='http', read_timeout=10)
print('machines', len(c.machines))
print('set', c.write('/py/a', '1').key, c.read('/py/a').value)
print('get', '/py/a', c.read('/py/a', quorum=True).value)
print('ready', flush=True)
sys.stdin.readline()
print('set', c.write('/py/b', '2').key, c.read('/py/b', quorum=True).value)
print('get', '/py/a', c.read('/py/a').value)
print('cas', '/py/b', c.write('/py/b', '3', prevValue='2').value)
try:
    c.read('/py/none')
except etcd.EtcdKeyNotFound:
    print('not found', '/py/none')
"#;

/// A follower that was down while the others wrote past their snapshot
/// and purged their logs catches up from a snapshot sent over the peer
/// HTTP transport, then from the log; its data is the leader's.
#[test]
fn lagging_follower_catches_up_from_a_snapshot() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut ms = three(dir.path());
    for m in ms.iter_mut() {
        m.extra = [
            "--snapshot-count",
            "50",
            "--experimental-snapshot-catchup-entries",
            "10",
        ]
        .map(String::from)
        .to_vec();
    }
    start_all(&mut ms, "t2-snapshot");
    let leader = agreed_leader(&all_refs(&ms));
    let lag = (leader + 1) % 3;
    let ic = initial_cluster(&all_refs(&ms));
    ms[lag].kill();
    for i in 0..400 {
        let a = ms[leader]
            .put(&format!("/snap/{i}"), &format!("value=v{i}"))
            .unwrap();
        assert_eq!(a.status, 201, "{a:?}");
    }
    let a = ms[leader].put("/snap/dir/last", "value=end").unwrap();
    assert_eq!(a.status, 201, "{a:?}");
    ms[lag].start(&ic, "existing", "t2-snapshot");
    eventually("the lagging member to have the last write", LONG, || {
        let a = ms[lag].get("/v2/keys/snap/dir/last")?;
        (a.status == 200 && a.json()["node"]["value"] == "end").then_some(())
    });
    let log = std::fs::read_to_string(&ms[lag].log).unwrap();
    assert!(
        log.contains("applied incoming snapshot"),
        "the follower caught up without a snapshot; its log:\n{log}"
    );
    // The same tree, with the same indexes, as on the leader.
    let whole = |m: &Member| {
        let a = m.get("/v2/keys/snap?recursive=true&sorted=true").unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        a.json()["node"].clone()
    };
    assert_eq!(whole(&ms[lag]), whole(&ms[leader]));
    // And it takes part again: a write through it is acknowledged.
    let a = ms[lag].put("/snap/after", "value=ok").unwrap();
    assert_eq!(a.status, 201, "{a:?}");
}
