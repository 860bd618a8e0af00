//! The kv over TLS with certificates from `keelson certs`: a member that
//! demands client certificates (`--client-cert-auth`) answers `kvctl` and
//! Debian's `etcdctl` holding one from its CA and refuses those without,
//! with one from another CA, or not trusting its CA; a three-member cluster
//! whose peers use mutual TLS replicates, survives a member restart, and
//! keeps out a member whose peer certificate comes from another CA. No key
//! material reaches the logs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
const LONG: Duration = Duration::from_secs(90);

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn certs(dir: &Path, args: &[&str]) {
    let o = Command::new(KEELSON)
        .args(["certs", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "keelson certs {args:?}: {o:?}");
}

struct Proc(Child, PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kv(dir: &Path, name: &str, args: &[String]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(KEELSON)
        .arg("kv")
        .args(["--name", name])
        .arg("--data-dir")
        .arg(dir.join(format!("{name}.etcd")))
        .args(args)
        .env("RUST_LOG", "info,openraft=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc(child, log)
}

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn client_certificates_are_required_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (c, other) = (dir.path().join("pki"), dir.path().join("other"));
    certs(&c, &["ca"]);
    certs(&c, &["server", "server", "--hosts", "127.0.0.1,localhost"]);
    certs(&c, &["client", "client"]);
    certs(&other, &["ca", "--cn", "someone-else"]);
    certs(&other, &["client", "client"]);
    // A second CA in the same directory is refused, the first kept.
    let again = Command::new(KEELSON)
        .args(["certs", "--dir"])
        .arg(&c)
        .arg("ca")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let p = |n: &str| c.join(n).display().to_string();
    let (cp, pp) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let url = format!("https://127.0.0.1:{cp}");
    let peer = format!("http://127.0.0.1:{pp}");
    let args: Vec<String> = [
        "--listen-client-urls",
        &url,
        "--advertise-client-urls",
        &url,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("tls1={peer}"),
        "--cert-file",
        &p("server.pem"),
        "--key-file",
        &p("server-key.pem"),
        "--trusted-ca-file",
        &p("ca.pem"),
        "--client-cert-auth",
    ]
    .map(String::from)
    .to_vec();
    let member = kv(dir.path(), "tls1", &args);
    let good = [
        "--endpoints",
        &url,
        "--ca-file",
        &p("ca.pem"),
        "--cert-file",
        &p("client.pem"),
        "--key-file",
        &p("client-key.pem"),
    ];
    wait("the member to take a write over TLS", || {
        let mut a = good.to_vec();
        a.extend(["set", "/tls", "yes"]);
        run(KVCTL, &a, &[]).status.success().then_some(())
    });
    let mut a = good.to_vec();
    a.extend(["get", "/tls"]);
    assert_eq!(text(&run(KVCTL, &a, &[])), "yes\n");

    // No client certificate: refused, in etcdctl's words and exit code.
    let o = run(
        KVCTL,
        &[
            "--endpoints",
            &url,
            "--ca-file",
            &p("ca.pem"),
            "get",
            "/tls",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("remote error: tls: certificate required"),
        "{}",
        text(&o)
    );
    // A client certificate from another CA: refused.
    let oc = |n: &str| other.join(n).display().to_string();
    let o = run(
        KVCTL,
        &[
            "--endpoints",
            &url,
            "--ca-file",
            &p("ca.pem"),
            "--cert-file",
            &oc("client.pem"),
            "--key-file",
            &oc("client-key.pem"),
            "get",
            "/tls",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    // Not trusting the server's CA: refused on our side.
    let o = run(
        KVCTL,
        &[
            "--endpoints",
            &url,
            "--ca-file",
            &oc("ca.pem"),
            "--cert-file",
            &p("client.pem"),
            "--key-file",
            &p("client-key.pem"),
            "get",
            "/tls",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("x509: certificate signed by unknown authority"),
        "{}",
        text(&o)
    );
    // Plain HTTP to the TLS port gets nothing useful.
    let o = run(
        KVCTL,
        &[
            "--endpoints",
            &format!("http://127.0.0.1:{cp}"),
            "get",
            "/tls",
        ],
        &[],
    );
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));

    // Debian's etcdctl with the same files, the same way.
    let v2 = [("ETCDCTL_API", "2")];
    let o = run("etcdctl", &[&good[..], &["get", "/tls"]].concat(), &v2);
    assert_eq!(text(&o), "yes\n");
    let o = run(
        "etcdctl",
        &[
            "--endpoints",
            &url,
            "--ca-file",
            &p("ca.pem"),
            "get",
            "/tls",
        ],
        &v2,
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("certificate required"), "{}", text(&o));

    // The log names refusals, never key material.
    let log = std::fs::read_to_string(&member.1).unwrap();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

#[test]
fn peers_with_mutual_tls_replicate_restart_and_keep_strangers_out() {
    let dir = tempfile::tempdir().unwrap();
    let (c, other) = (dir.path().join("pki"), dir.path().join("other"));
    certs(&c, &["ca"]);
    certs(&other, &["ca", "--cn", "someone-else"]);
    let ips = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];
    for (i, ip) in ips.iter().enumerate() {
        certs(&c, &["peer", &format!("m{}", i + 1), "--hosts", ip]);
    }
    certs(&other, &["peer", "m4", "--hosts", "127.0.0.24"]);
    let ports: Vec<(u16, u16)> = ips
        .iter()
        .map(|ip| (free_port(ip), free_port(ip)))
        .collect();
    let initial = ips
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (ip, (_, pp)))| format!("m{}=https://{ip}:{pp}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let args = |i: usize, pki: &Path, ip: &str, (cp, pp): (u16, u16), state: &str| -> Vec<String> {
        let f = |n: String| pki.join(n).display().to_string();
        let client = format!("http://{ip}:{cp}");
        let peer = format!("https://{ip}:{pp}");
        vec![
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            initial.clone(),
            "--initial-cluster-state".into(),
            state.into(),
            "--initial-cluster-token".into(),
            "tls-peers".into(),
            "--peer-cert-file".into(),
            f(format!("m{i}.pem")),
            "--peer-key-file".into(),
            f(format!("m{i}-key.pem")),
            "--peer-trusted-ca-file".into(),
            f("ca.pem".into()),
            "--peer-client-cert-auth".into(),
        ]
    };
    let mut members: Vec<Option<Proc>> = (0..3)
        .map(|i| {
            Some(kv(
                dir.path(),
                &format!("m{}", i + 1),
                &args(i + 1, &c, ips[i], ports[i], "new"),
            ))
        })
        .collect();
    let ep = |i: usize| format!("http://{}:{}", ips[i], ports[i].0);
    wait("a write through member 1", || {
        run(
            KVCTL,
            &["--no-sync", "--endpoints", &ep(0), "set", "/peers", "tls"],
            &[],
        )
        .status
        .success()
        .then_some(())
    });
    for i in 0..3 {
        wait("every member to have the write", || {
            let o = run(
                KVCTL,
                &["--no-sync", "--endpoints", &ep(i), "get", "/peers"],
                &[],
            );
            (text(&o) == "tls\n").then_some(())
        });
    }

    // A member restarts and catches up over mutual TLS.
    members[2] = None;
    // (If it led, the others elect a leader first.)
    wait("a write while member 3 is down", || {
        run(
            KVCTL,
            &[
                "--no-sync",
                "--endpoints",
                &ep(0),
                "set",
                "/while-down",
                "1",
            ],
            &[],
        )
        .status
        .success()
        .then_some(())
    });
    members[2] = Some(kv(dir.path(), "m3", &args(3, &c, ips[2], ports[2], "new")));
    wait("the restarted member to catch up", || {
        let o = run(
            KVCTL,
            &["--no-sync", "--endpoints", &ep(2), "get", "/while-down"],
            &[],
        );
        (text(&o) == "1\n").then_some(())
    });

    // A member with a peer certificate from another CA cannot join: the
    // others refuse its handshakes and it never sees the data.
    let (cp4, pp4) = (free_port("127.0.0.24"), free_port("127.0.0.24"));
    let mut a4 = args(4, &other, "127.0.0.24", (cp4, pp4), "existing");
    a4[9] = format!("{initial},m4=https://127.0.0.24:{pp4}");
    let stranger = kv(dir.path(), "m4", &a4);
    std::thread::sleep(Duration::from_secs(5));
    let o = run(
        KVCTL,
        &[
            "--no-sync",
            "--endpoints",
            &format!("http://127.0.0.24:{cp4}"),
            "get",
            "/peers",
        ],
        &[],
    );
    assert_ne!(
        text(&o),
        "tls\n",
        "a member with a foreign peer certificate got the data"
    );
    let logs: String = members
        .iter()
        .flatten()
        .map(|p| std::fs::read_to_string(&p.1).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("rejected a peer connection: TLS handshake failed"),
        "{logs}"
    );
    assert!(!logs.contains("PRIVATE KEY"));
    drop(stranger);
    // The cluster is unharmed.
    wait("a write after the stranger left", || {
        run(
            KVCTL,
            &["--no-sync", "--endpoints", &ep(1), "set", "/after", "ok"],
            &[],
        )
        .status
        .success()
        .then_some(())
    });
}
