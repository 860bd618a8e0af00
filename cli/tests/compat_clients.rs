//! Real clients against `keelson kv`, compared with the same clients
//! against the real etcd 3.4.23: Debian's `etcdctl` (`ETCDCTL_API=2`) and
//! a `python3-etcd` script run with Debian's `/usr/bin/python3`. Outputs
//! and exit codes must be equal once indexes, member IDs, names and URLs
//! are normalised. The tools are required: missing ones fail the test.

mod proc_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proc_support::{start_etcd, start_keelson, Server};

/// Replaces every run of digits following `[`, `Index: ` or `I=` style
/// markers, member IDs (16 hex digits) and the server's URLs and name.
fn normalise(s: &str, server: &Server, name: &str) -> String {
    let mut out = s.replace(&server.url(), "<client-url>");
    out = out.replace(&format!("name={name} "), "name=<name> ");
    // Peer URLs differ by design (Keelson's default vs etcd's flag).
    out = out
        .split('\n')
        .map(|line| {
            line.split(' ')
                .map(|w| {
                    if let Some(rest) = w.strip_prefix("peerURLs=") {
                        let _ = rest;
                        "peerURLs=<peer>".to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    // Hex member IDs.
    let mut res = String::new();
    let chars: Vec<char> = out.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        let boundary_before = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        let boundary_after = chars
            .get(i + run)
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        if (12..=16).contains(&run)
            && boundary_before
            && boundary_after
            && chars[i..i + run]
                .iter()
                .any(|c| c.is_ascii_alphabetic() || run > 10)
        {
            res.push_str("<id>");
            i += run;
        } else {
            res.push(chars[i]);
            i += 1;
        }
    }
    // Indexes in error lines: `[123]`.
    let mut out = String::new();
    let mut rest = res.as_str();
    while let Some(p) = rest.find('[') {
        out.push_str(&rest[..=p]);
        let tail = &rest[p + 1..];
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(']') {
            out.push_str("<index>");
            rest = &tail[digits..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn etcdctl(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .arg("--endpoints")
        .arg(server.url())
        .args(args)
        .output()
        .expect("Debian's etcdctl is required (apt-get install etcd-client)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first `n` lines a long-running etcdctl command prints, then kill it.
/// `then` runs once the command had a moment to start watching.
fn etcdctl_lines(server: &Server, args: &[&str], n: usize, then: &dyn Fn()) -> Vec<String> {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .arg("--endpoints")
        .arg(server.url())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    then();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

/// Runs the etcdctl scenario against one server; returns a transcript.
fn etcdctl_transcript(s: &Server, name: &str) -> String {
    let mut t = String::new();
    let mut run = |args: &[&str]| {
        let (code, out, err) = etcdctl(s, args);
        t.push_str(&format!(
            "$ etcdctl {}\n[exit {code}]\n{}{}",
            args.join(" "),
            normalise(&out, s, name),
            normalise(&err, s, name)
        ));
    };
    run(&["set", "/a", "1"]);
    run(&["get", "/a"]);
    run(&["mk", "/a", "2"]);
    run(&["mk", "/b", "2"]);
    run(&["mkdir", "/d"]);
    run(&["set", "/d/x", "x1"]);
    run(&["set", "/d/y/z", "z1"]);
    run(&["ls", "--sort", "-r", "/"]);
    run(&["ls", "--sort", "-p", "/"]);
    run(&["get", "/d"]);
    run(&["update", "/a", "3"]);
    run(&["update", "/nokey", "1"]);
    run(&["set", "--swap-with-value", "wrong", "/a", "4"]);
    run(&["set", "--swap-with-value", "3", "/a", "4"]);
    run(&["rm", "/b"]);
    run(&["rm", "/nokey"]);
    run(&["get", "/nokey"]);
    run(&["rm", "--recursive", "/d"]);
    run(&["mk", "--ttl", "100", "/ttl", "t"]);
    run(&["member", "list"]);
    run(&["cluster-health"]);
    run(&["bogus"]);
    // Watches from the history: --after-index.
    let (code, out, _) = etcdctl(s, &["-o", "extended", "set", "/w/k", "first"]);
    assert_eq!(code, 0);
    let index: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Modified-Index: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Modified-Index in extended output");
    let (code, out, _) = etcdctl(s, &["set", "/w/k", "second"]);
    assert_eq!((code, out.as_str()), (0, "second\n"));
    let after = (index - 1).to_string();
    let (code, out, err) = etcdctl(s, &["watch", "--after-index", &after, "/w/k"]);
    t.push_str(&format!(
        "$ etcdctl watch --after-index <i-1> /w/k\n[exit {code}]\n{out}{err}"
    ));
    let lines = etcdctl_lines(
        s,
        &[
            "watch",
            "--forever",
            "--recursive",
            "--after-index",
            &after,
            "/w",
        ],
        4,
        &|| {},
    );
    t.push_str(&format!(
        "$ etcdctl watch -f -r --after-index <i-1> /w\n{}\n",
        lines.join("\n")
    ));
    // exec-watch from now on (with --after-index the oracle's exec-watch
    // adds one to the index twice; not something to build a test on).
    let lines = etcdctl_lines(
        s,
        &[
            "exec-watch",
            "--recursive",
            "/w",
            "--",
            "sh",
            "-c",
            "echo \"A=$ETCD_WATCH_ACTION K=$ETCD_WATCH_KEY V=$ETCD_WATCH_VALUE\"",
        ],
        1,
        &|| {
            let (code, _, _) = etcdctl(s, &["set", "/w/k", "third"]);
            assert_eq!(code, 0);
        },
    );
    t.push_str(&format!(
        "$ etcdctl exec-watch -r /w -- sh -c ... (then set /w/k third)\n{}\n",
        lines.join("\n")
    ));
    t
}

#[test]
fn debian_etcdctl_v2_sees_the_same_as_against_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = start_keelson(dir.path(), &[]);
    let e = start_etcd(dir.path());
    let kt = etcdctl_transcript(&k, "k1");
    let et = etcdctl_transcript(&e, "e1");
    eprintln!("{kt}");
    assert!(
        kt.contains("isLeader=true") && kt.contains("cluster is healthy"),
        "{kt}"
    );
    let (kl, el): (Vec<&str>, Vec<&str>) = (kt.lines().collect(), et.lines().collect());
    for (i, (a, b)) in kl.iter().zip(&el).enumerate() {
        assert_eq!(
            a, b,
            "line {i} differs\n--- keelson ---\n{kt}\n--- etcd ---\n{et}"
        );
    }
    assert_eq!(
        kl.len(),
        el.len(),
        "\n--- keelson ---\n{kt}\n--- etcd ---\n{et}"
    );
}

const PY_SCRIPT: &str = r#"
import sys, etcd
host, port = sys.argv[1], int(sys.argv[2])
c = etcd.Client(host=host, port=port)
base = c.write('/py/base', 'b').modifiedIndex
def rel(i):
    return None if i is None else i - base
def show(tag, r):
    print(tag, r.action, r.key, repr(r.value), r.dir, rel(r.modifiedIndex), rel(r.createdIndex), r.ttl is not None)
show('write', c.write('/py/k', 'v1'))
show('read', c.read('/py/k'))
show('update', c.write('/py/k', 'v2', prevValue='v1'))
try:
    c.write('/py/k', 'v3', prevValue='nope')
except etcd.EtcdCompareFailed as e:
    print('cas failed', type(e).__name__, str(e).split(' [')[0])
show('cas-index', c.write('/py/k', 'v3', prevIndex=base + 2))
show('tas', c.test_and_set('/py/k', 'v4', 'v3'))
try:
    c.write('/py/k', 'x', prevExist=False)
except etcd.EtcdAlreadyExist as e:
    print('exists', type(e).__name__)
show('ttl', c.write('/py/ttl', 't', ttl=300))
r = c.read('/py/ttl')
print('ttl range', 0 < r.ttl <= 300)
show('mkdir', c.write('/py/dir', None, dir=True))
show('in-dir', c.write('/py/dir/a', 'A'))
show('in-dir', c.write('/py/dir/b', 'B'))
r = c.read('/py/dir', recursive=True, sorted=True)
print('children', [(ch.key, ch.value) for ch in r.leaves])
q1 = c.write('/py/queue', 'first', append=True)
q2 = c.write('/py/queue', 'second', append=True)
q3 = c.write('/py/queue', 'third', append=True)
print('in-order increasing', q1.key < q2.key < q3.key, rel(int(q1.key.split('/')[-1])))
r = c.read('/py/queue', recursive=True, sorted=True)
print('queue', [ch.value for ch in r.leaves])
w = c.read('/py/k', wait=True, waitIndex=base + 1)
show('watch-index', w)
w = c.read('/py', wait=True, recursive=True, waitIndex=base + 3)
show('watch-recursive', w)
show('delete', c.delete('/py/k'))
try:
    c.read('/py/k')
except etcd.EtcdKeyNotFound as e:
    print('not found', type(e).__name__)
try:
    c.delete('/py/dir')
except etcd.EtcdNotFile as e:
    print('not a file', type(e).__name__)
show('delete-dir', c.delete('/py/dir', recursive=True))
print('machines', len(c.machines))
print('leader', sorted(c.leader.keys()))
"#;

fn python_run(script: &Path, s: &Server) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg("127.0.0.1")
        .arg(s.port.to_string())
        .output()
        .expect("Debian's /usr/bin/python3 is required");
    assert!(
        out.status.success(),
        "python-etcd script failed against {}:\n{}{}",
        s.url(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn python_etcd_sees_the_same_as_against_etcd() {
    let probe = Command::new("/usr/bin/python3")
        .args(["-c", "import etcd"])
        .output()
        .expect("Debian's /usr/bin/python3 is required");
    assert!(
        probe.status.success(),
        "python3-etcd is required for /usr/bin/python3 (apt-get install python3-etcd): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("client.py");
    std::fs::write(&script, PY_SCRIPT).expect("write script");
    let k = start_keelson(dir.path(), &[]);
    let e = start_etcd(dir.path());
    let kt = python_run(&script, &k);
    let et = python_run(&script, &e);
    eprintln!("{kt}");
    assert!(kt.contains("in-order increasing True"), "{kt}");
    assert_eq!(kt, et, "\n--- keelson ---\n{kt}\n--- etcd ---\n{et}");
}
