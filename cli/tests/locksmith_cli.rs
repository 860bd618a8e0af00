//! locksmith through the binaries: `keelctl locksmith` and `locksmithctl`
//! (a symlink) against a real `keelson kv`, and `keelson locksmith` with a
//! command-hook rebooter against a real kv and a real `keelson
//! update-engine`, whose local API reports `UPDATE_STATUS_UPDATED_NEED_REBOOT`.

mod proc_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use proc_support::{free_port, start_etcd, start_keelson, KEELSON, KVCTL};

const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");
const DEADLINE: Duration = Duration::from_secs(30);
const SEM: &str = "/coreos.com/updateengine/rebootlock/semaphore";

fn run_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin);
    c.args(args).env_remove("LOCKSMITHCTL_ENDPOINT");
    c.env_remove("LOCKSMITHCTL_GROUP")
        .env_remove("REBOOT_STRATEGY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs")
}

fn out(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn kvctl(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["--endpoints", url];
    a.extend_from_slice(args);
    out(&run_env(Path::new(KVCTL), &a, &[]))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn locksmithctl_commands_against_a_real_kv() {
    let dir = tempfile::tempdir().unwrap();
    let kv = start_keelson(dir.path(), &[]);
    let url = kv.url();
    let ctl = |args: &[&str]| {
        let mut a = vec!["locksmith", "--endpoint", url.as_str()];
        a.extend_from_slice(args);
        out(&run_env(Path::new(KEELCTL), &a, &[]))
    };

    // A fresh store: status creates locksmith's first document.
    assert_eq!(
        ctl(&["status"]),
        (0, "Available: 1\nMax: 1\n".into(), String::new())
    );
    assert_eq!(
        kvctl(&url, &["get", SEM]).1,
        "{\"semaphore\":1,\"max\":1,\"holders\":null}\n"
    );
    assert_eq!(
        ctl(&["set-max", "2"]),
        (0, "Old-Max: 1\nMax: 2\n".into(), String::new())
    );
    assert_eq!(ctl(&["lock", "bbbb"]), (0, String::new(), String::new()));
    // This machine's ID comes from /etc/machine-id under --root.
    let root = dir.path().join("node");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/machine-id"), "aaaa\n").unwrap();
    let root_s = root.to_str().unwrap();
    assert_eq!(ctl(&["--root", root_s, "lock"]).0, 0);
    assert_eq!(
        ctl(&["status"]),
        (
            0,
            "Available: 0\nMax: 2\n\nMACHINE ID\naaaa\nbbbb\n".into(),
            String::new()
        )
    );
    let (code, o, e) = ctl(&["lock", "cccc"]);
    assert_eq!(
        (code, o.as_str(), e.as_str()),
        (1, "", "Error locking: semaphore is at 0\n")
    );
    assert_eq!(
        kvctl(&url, &["get", SEM]).1,
        "{\"semaphore\":0,\"max\":2,\"holders\":[\"aaaa\",\"bbbb\"]}\n"
    );
    assert_eq!(ctl(&["unlock", "bbbb"]).0, 0);
    let (code, _, e) = ctl(&["unlock", "bbbb"]);
    assert_eq!(
        (code, e.as_str()),
        (1, "Error unlocking: holder does not exist\n")
    );
    let (code, _, e) = ctl(&[
        "--root",
        dir.path().join("none").to_str().unwrap(),
        "unlock",
    ]);
    assert_eq!((code, e.as_str()), (1, "Cannot read machine-id\n"));

    // The same through a `locksmithctl` symlink, Go-style flags and the
    // LOCKSMITHCTL_* variables; a group has its own (query-escaped) key.
    let link = dir.path().join("bin/locksmithctl");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(KEELCTL, &link).unwrap();
    let o = out(&run_env(&link, &["-endpoint", &url, "status"], &[]));
    assert_eq!(
        o,
        (
            0,
            "Available: 1\nMax: 2\n\nMACHINE ID\naaaa\n".into(),
            String::new()
        )
    );
    let env = [
        ("LOCKSMITHCTL_ENDPOINT", url.as_str()),
        ("LOCKSMITHCTL_GROUP", "my lb"),
    ];
    let o = out(&run_env(&link, &["set-max", "3"], &env));
    assert_eq!(o, (0, "Old-Max: 1\nMax: 3\n".into(), String::new()));
    assert_eq!(out(&run_env(&link, &["lock", "dddd"], &env)).0, 0);
    assert_eq!(
        kvctl(
            &url,
            &[
                "get",
                "/coreos.com/updateengine/rebootlock/groups/my+lb/semaphore"
            ]
        )
        .1,
        "{\"semaphore\":2,\"max\":3,\"holders\":[\"dddd\"]}\n"
    );
    // A flag wins over its variable.
    let o = out(&run_env(&link, &["-group=", "status"], &env));
    assert_eq!(o.1, "Available: 1\nMax: 2\n\nMACHINE ID\naaaa\n");
    let (code, o, _) = out(&run_env(&link, &["-endpoint", &url, "reboot-all"], &[]));
    assert_eq!(
        (code, o.as_str()),
        (
            2,
            "locksmithctl: unknown subcommand: \"reboot-all\"\nRun 'locksmithctl help' for usage.\n"
        )
    );
    let (code, o, _) = out(&run_env(&link, &[], &[]));
    assert!(code == 0 && o.contains("set-max"), "{o}");
    let (code, _, e) = out(&run_env(&link, &["-endpoint", &url, "set-max", "x"], &[]));
    assert_eq!((code, e.as_str()), (1, "Invalid maximum value: x\n"));
    let (code, _, e) = out(&run_env(&link, &["-endpoint", &url, "set-max"], &[]));
    assert_eq!((code, e.as_str()), (1, "New maximum value must be set.\n"));
    assert_eq!(out(&run_env(&link, &["-bogus", "status"], &[])).0, 2);

    // A semaphore written by hand in locksmith's JSON is honoured...
    let (code, _, e) = kvctl(
        &url,
        &[
            "set",
            SEM,
            r#"{"semaphore":0,"max":1,"holders":["69d27b356a94476da859461d3a3bc6fd"]}"#,
        ],
    );
    assert_eq!(code, 0, "{e}");
    assert_eq!(
        ctl(&["status"]).1,
        "Available: 0\nMax: 1\n\nMACHINE ID\n69d27b356a94476da859461d3a3bc6fd\n"
    );
    assert_eq!(
        ctl(&["lock", "eeee"]).2,
        "Error locking: semaphore is at 0\n"
    );
    assert_eq!(ctl(&["unlock", "69d27b356a94476da859461d3a3bc6fd"]).0, 0);
    assert_eq!(
        kvctl(&url, &["get", SEM]).1,
        "{\"semaphore\":1,\"max\":1,\"holders\":[]}\n"
    );
    // ...a malformed one is reported and left as it is.
    for bad in ["not json", r#"{"semaphore":"one","max":1}"#] {
        assert_eq!(kvctl(&url, &["set", SEM, bad]).0, 0);
        for args in [&["status"][..], &["lock", "eeee"], &["set-max", "5"]] {
            let (code, o, e) = ctl(args);
            assert_eq!(code, 1, "{args:?}: {o}");
            assert!(e.contains("malformed"), "{args:?}: {e}");
        }
        assert_eq!(kvctl(&url, &["get", SEM]).1, format!("{bad}\n"));
    }

    // No store: a clear error and exit 1.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, _, e) = out(&run_env(&link, &["-endpoint", &dead, "status"], &[]));
    assert_eq!(code, 1);
    assert!(e.starts_with("Error getting semaphore: "), "{e}");
}

/// The same locksmithctl session against Debian's etcd 3.4.23 and against
/// `keelson kv`: identical output, exit codes and stored JSON.
#[test]
fn locksmithctl_behaves_the_same_on_etcd_and_keelson() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(dir.path());
    let kv = start_keelson(dir.path(), &[]);
    let session: &[&[&str]] = &[
        &["status"],
        &["set-max", "3"],
        &["lock", "cccc"],
        &["lock", "aaaa"],
        &["lock", "aaaa"],
        &["-group", "lb", "lock", "aaaa"],
        &["-group", "lb", "lock", "bbbb"],
        &["status"],
        &["set-max", "1"],
        &["lock", "bbbb"],
        &["unlock", "cccc"],
        &["unlock", "cccc"],
        &["status"],
        &["-group", "lb", "status"],
    ];
    let play = |url: &str| {
        let mut seen = Vec::new();
        for args in session {
            let mut a = vec!["locksmith", "-endpoint", url];
            a.extend_from_slice(args);
            seen.push(out(&run_env(Path::new(KEELCTL), &a, &[])));
        }
        for key in [
            SEM,
            "/coreos.com/updateengine/rebootlock/groups/lb/semaphore",
        ] {
            seen.push(kvctl(url, &["get", key]));
        }
        seen
    };
    let on_etcd = play(&etcd.url());
    let on_keelson = play(&kv.url());
    assert_eq!(on_etcd, on_keelson);
    // Lowering max below the holders leaves the count negative, as locksmith.
    assert_eq!(on_etcd[9].2, "Error locking: semaphore is at -1\n");
    assert_eq!(
        on_etcd[12].1, "Available: 0\nMax: 1\n\nMACHINE ID\naaaa\n",
        "{on_etcd:?}"
    );
}

/// A child process killed on drop.
struct Proc(Child);

impl Proc {
    fn exited(&mut self) -> Option<i32> {
        self.0
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }
    fn wait_exit(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(c) = self.exited() {
                return c;
            }
            assert!(start.elapsed() < DEADLINE, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A simulated node's root: machine ID, release, update.conf, A/B slots.
fn node_root(dir: &Path, name: &str, update_conf: &str) -> PathBuf {
    let root = dir.join(name);
    write(
        &root.join("etc/machine-id"),
        &format!("{name}0000machine\n"),
    );
    write(
        &root.join("usr/share/coreos/release"),
        "COREOS_RELEASE_VERSION=723.3.0\n",
    );
    write(&root.join("etc/coreos/update.conf"), update_conf);
    let slots = root.join("slots");
    for img in ["usr-a.img", "usr-b.img"] {
        write(&slots.join(img), "");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(slots.join(img))
            .unwrap();
        f.set_len(1 << 20).unwrap();
    }
    write(
        &slots.join("slots.json"),
        r#"{"a":{"priority":2,"tries":0,"successful":true},"b":{"priority":1,"tries":0,"successful":false}}"#,
    );
    root
}

/// The real update engine of a node, its first check an hour away.
fn engine(root: &Path) -> Proc {
    engine_with(root, &[])
}

fn engine_with(root: &Path, extra: &[&str]) -> Proc {
    let sock = root.join("var/run/update-engine.sock");
    // A killed engine leaves its socket file behind.
    let _ = std::fs::remove_file(&sock);
    let p = Proc(
        Command::new(KEELSON)
            .args(["update-engine", "--root", root.to_str().unwrap()])
            .args(["--slots", &format!("dir:{}", root.join("slots").display())])
            .args(["--first-check-delay", "3600"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the engine's socket", || sock.exists());
    p
}

fn locksmithd(root: &Path, args: &[&str], log: &Path) -> Proc {
    let link = root.join("bin/locksmithd");
    if !link.exists() {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(KEELSON, &link).unwrap();
    }
    let marker = root.join("rebooted");
    Proc(
        Command::new(&link)
            .args(["-root", root.to_str().unwrap()])
            .args([
                "-reboot-command",
                &format!("echo reboot >> {}", marker.display()),
            ])
            .args(args)
            .env_remove("REBOOT_STRATEGY")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn reboots(root: &Path) -> usize {
    std::fs::read_to_string(root.join("rebooted"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn need_reboot(root: &Path) {
    let o = run_env(
        Path::new(KEELCTL),
        &[
            "locksmith",
            "--root",
            root.to_str().unwrap(),
            "send-need-reboot",
        ],
        &[],
    );
    assert!(o.status.success(), "{o:?}");
}

fn status(url: &str) -> String {
    out(&run_env(
        Path::new(KEELCTL),
        &["locksmith", "--endpoint", url, "status"],
        &[],
    ))
    .1
}

fn ok(args: &[&str]) -> String {
    let o = run_env(Path::new(KEELCTL), args, &[]);
    assert!(o.status.success(), "keelctl {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An update server on a free port serving a signed 766.3.0 to `stable`;
/// returns it, its URL and the directory of the key that signed it.
fn update_server(d: &Path) -> (Proc, String, PathBuf) {
    use std::io::BufRead;
    let keys = d.join("keys");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    ok(&["update", "keygen", "--dir", &s(&keys), "--name", "release"]);
    let payload = d.join("build/update.gz");
    write(
        &payload,
        &(0..65536u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect::<String>(),
    );
    ok(&[
        "update",
        "sign",
        "--key",
        &s(&keys.join("release.key")),
        "--release",
        "766.3.0",
        &s(&payload),
    ]);
    let mut child = Command::new(KEELSON)
        .args(["update-server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(d.join("srv"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Proc(child);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    for args in [
        &["upload", &s(&payload)][..],
        &["group", "create", "stable"],
        &["promote", "stable", "766.3.0"],
    ] {
        let mut a = vec!["update", "server", "--server", url.as_str()];
        a.extend_from_slice(args);
        ok(&a);
    }
    (server, url, keys)
}

#[test]
fn daemon_takes_the_lock_reboots_and_releases_after_the_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kv = start_keelson(d, &[]);
    let url = kv.url();
    let logs = d.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // A node on 723.3.0 with etcd-lock; the server offers 766.3.0.
    let (_server, server_url, keys) = update_server(d);
    let root = node_root(
        d,
        "n1",
        &format!("GROUP=stable\nSERVER={server_url}/v1/update/\nREBOOT_STRATEGY=etcd-lock\n"),
    );
    let id = "n10000machine";
    let keys_s = keys.to_str().unwrap().to_string();
    let mut eng = engine_with(&root, &["--keys", &keys_s]);
    let ctl = |args: &[&str]| {
        let mut a = vec!["locksmith", "--endpoint", url.as_str()];
        a.extend_from_slice(args);
        out(&run_env(Path::new(KEELCTL), &a, &[]))
    };
    assert_eq!(ctl(&["lock", "othermachine"]).0, 0);
    let mut daemon = locksmithd(&root, &["-endpoint", &url], &logs.join("d1.log"));
    wait_for("the daemon to watch the engine", || {
        std::fs::read_to_string(logs.join("d1.log")).is_ok_and(|l| l.contains("UPDATE_STATUS_IDLE"))
    });
    assert_eq!(reboots(&root), 0, "no reboot before the engine asks");
    // The engine checks, downloads, verifies and installs into USR-B.
    let root_s = root.to_str().unwrap().to_string();
    ok(&["update", "--root", &root_s, "check-for-update"]);
    wait_for("the daemon to try the lock", || {
        std::fs::read_to_string(logs.join("d1.log"))
            .is_ok_and(|l| l.contains("UPDATE_STATUS_UPDATED_NEED_REBOOT"))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reboots(&root), 0, "rebooted without the lock");
    // The slot frees: the daemon wakes on the change, takes it, reboots.
    assert_eq!(ctl(&["unlock", "othermachine"]).0, 0);
    wait_for("the reboot hook", || reboots(&root) == 1);
    assert_eq!(
        status(&url),
        format!("Available: 0\nMax: 1\n\nMACHINE ID\n{id}\n")
    );
    assert!(
        daemon.exited().is_none(),
        "waits to be killed after the reboot"
    );

    // "Reboot": the machine goes down (engine and daemon killed) and boots
    // the new USR-B; the daemon renews the hold and releases it once the
    // machine is healthy.
    drop(daemon);
    drop(eng);
    // What a reboot does to the files: /run is a fresh tmpfs, and the
    // release file comes from the new /usr.
    std::fs::remove_dir_all(root.join("run")).unwrap();
    write(
        &root.join("usr/share/coreos/release"),
        "COREOS_RELEASE_VERSION=766.3.0\n",
    );
    eng = engine_with(&root, &["--keys", &keys_s, "--active", "boot"]);
    let st = ok(&["update", "--root", &root_s, "status"]);
    assert!(st.contains("CURRENT_OP=UPDATE_STATUS_IDLE"), "{st}");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("slots/slots.json")).unwrap())
            .unwrap();
    assert!(
        table["b"]["priority"].as_u64() > table["a"]["priority"].as_u64(),
        "booted USR-B: {table}"
    );
    let mut daemon = locksmithd(&root, &["-endpoint", &url], &logs.join("d2.log"));
    wait_for("the lock released after the reboot", || {
        status(&url) == "Available: 1\nMax: 1\n"
    });
    assert_eq!(
        kvctl(&url, &["get", SEM]).1,
        "{\"semaphore\":1,\"max\":1,\"holders\":[]}\n"
    );
    let (code, _, _) = kvctl(
        &url,
        &[
            "get",
            &format!("/coreos.com/updateengine/rebootlock/semaphore-leases/{id}"),
        ],
    );
    assert_ne!(code, 0, "the lease is gone with the hold");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(reboots(&root), 1, "rebooted exactly once");
    assert!(daemon.exited().is_none());
    drop(daemon);
    drop(eng);

    // REBOOT_STRATEGY=off (update.conf, or the environment): exit 0 at once.
    let off = node_root(d, "n2", "REBOOT_STRATEGY=off\n");
    let mut p = locksmithd(&off, &[], &logs.join("off.log"));
    assert_eq!(p.wait_exit(), 0);
    let log = std::fs::read_to_string(logs.join("off.log")).unwrap();
    assert!(
        log.contains("Reboot strategy is \"off\" - locksmithd is exiting."),
        "{log}"
    );
    let o = Command::new(KEELSON)
        .args(["locksmith", "--root", root.to_str().unwrap()])
        .env("REBOOT_STRATEGY", "off")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");

    // A bad strategy or window is refused at start, clearly.
    let bad = node_root(d, "n3", "REBOOT_STRATEGY=sometimes\n");
    let mut p = locksmithd(&bad, &[], &logs.join("bad.log"));
    assert_eq!(p.wait_exit(), 1);
    let log = std::fs::read_to_string(logs.join("bad.log")).unwrap();
    assert!(
        log.contains("unknown REBOOT_STRATEGY \"sometimes\""),
        "{log}"
    );
    let mut p = locksmithd(
        &off,
        &["-strategy", "reboot", "-reboot-window-start", "Thu 04:00"],
        &logs.join("win.log"),
    );
    assert_eq!(p.wait_exit(), 1);
    let log = std::fs::read_to_string(logs.join("win.log")).unwrap();
    assert!(log.contains("Either both or neither"), "{log}");

    // best-effort (the default) with no kv member here: reboots at once.
    let be = node_root(d, "n4", "GROUP=stable\n");
    let _eng = engine(&be);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _daemon = locksmithd(
        &be,
        &["-endpoint", &dead, "--metrics-addr", &metrics_addr],
        &logs.join("be.log"),
    );
    wait_for("the best-effort daemon to watch the engine", || {
        std::fs::read_to_string(logs.join("be.log")).is_ok_and(|l| l.contains("UPDATE_STATUS_IDLE"))
    });
    // Its state on /metrics: idle, best-effort, and healthy.
    wait_for("locksmithd's /metrics to say idle", || {
        http_get(&metrics_addr, "/metrics").contains("keelson_locksmith_phase{phase=\"idle\"} 1\n")
    });
    let m = http_get(&metrics_addr, "/metrics");
    assert!(
        m.contains("keelson_locksmith_info{strategy=\"best-effort\",group=\"\"} 1\n"),
        "{m}"
    );
    assert_eq!(
        m.matches("} 1\n").count(),
        2,
        "one phase and the info line: {m}"
    );
    let h = http_get(&metrics_addr, "/health");
    assert!(
        h.starts_with("HTTP/1.1 200") && h.ends_with("{\"health\":\"true\"}"),
        "{h}"
    );
    need_reboot(&be);
    wait_for("the best-effort reboot", || reboots(&be) == 1);
    let log = std::fs::read_to_string(logs.join("be.log")).unwrap();
    assert!(log.contains("reboots without the lock"), "{log}");
    assert!(!log.contains("took the reboot lock"), "{log}");
}

/// Stops fleetds with SIGTERM (they stop their units) when the test ends.
struct Fleet(Child);

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fleetd(root: &Path, url: &str, log: &Path) -> Fleet {
    let f = Fleet(
        Command::new(KEELSON)
            .args(["fleet", "--root", root.to_str().unwrap()])
            .env("FLEET_ETCD_SERVERS", url)
            .env("FLEET_AGENT_TTL", "3s")
            .env("FLEET_ENGINE_RECONCILE_INTERVAL", "0.5")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let sock = root.join("var/run/fleet.sock");
    wait_for("the fleet API socket", || sock.exists());
    f
}

fn fleetctl(sock: &Path, args: &[&str]) -> String {
    let mut a = vec![format!("-endpoint=unix://{}", sock.display())];
    a.extend(args.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = run_env(Path::new(KEELCTL), &a, &[("FLEETCTL_ENDPOINT", "")]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The machine running `unit` according to `list-units -full`.
fn running_on(sock: &Path, unit: &str) -> Option<String> {
    fleetctl(sock, &["list-units", "-no-legend", "-full"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&unit) && w.contains(&"active") && w.contains(&"running"))
        .and_then(|w| w.get(1).copied())
        .map(|m| m.split('/').next().unwrap_or_default().to_string())
}

#[test]
fn daemon_drains_the_machine_through_fleet_before_rebooting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kv = start_keelson(d, &[]);
    let url = kv.url();
    let logs = d.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // n1 runs the unit; n2 joins afterwards, with room for it.
    let n1 = node_root(d, "n1", "REBOOT_STRATEGY=reboot\n");
    let n2 = node_root(d, "n2", "REBOOT_STRATEGY=reboot\n");
    let (id1, id2) = ("n10000machine", "n20000machine");
    let _f1 = fleetd(&n1, &url, &logs.join("fleet1.log"));
    let sock = n1.join("var/run/fleet.sock");
    let unit = d.join("web.service");
    write(
        &unit,
        "[Service]\nExecStart=/bin/sh -c 'while true; do sleep 1; done'\n",
    );
    let o = fleetctl(
        &sock,
        &["start", "-block-attempts=20", unit.to_str().unwrap()],
    );
    assert!(o.contains("launched on"), "{o}");
    wait_for("web.service running on n1", || {
        running_on(&sock, "web.service").as_deref() == Some(id1)
    });
    let _f2 = fleetd(&n2, &url, &logs.join("fleet2.log"));
    wait_for("two machines", || {
        fleetctl(&sock, &["list-machines", "-no-legend"])
            .lines()
            .count()
            == 2
    });

    let eng = engine(&n1);
    let daemon = locksmithd(&n1, &["-endpoint", &url], &logs.join("d1.log"));
    wait_for("the daemon to watch the engine", || {
        std::fs::read_to_string(logs.join("d1.log")).is_ok_and(|l| l.contains("UPDATE_STATUS_IDLE"))
    });
    need_reboot(&n1);
    wait_for("the reboot hook", || reboots(&n1) == 1);
    // The unit ran elsewhere before the reboot was asked for.
    assert_eq!(running_on(&sock, "web.service").as_deref(), Some(id2));
    let drain_key = format!("/_coreos.com/fleet/keelson/drain/{id1}");
    assert_eq!(
        kvctl(&url, &["get", &drain_key]).0,
        0,
        "n1 is marked draining"
    );
    let log = std::fs::read_to_string(logs.join("d1.log")).unwrap();
    assert!(
        log.contains("drained: this machine's units run elsewhere"),
        "{log}"
    );

    // After the "reboot" the mark is lifted once the machine is healthy;
    // nothing moves back.
    drop(daemon);
    drop(eng);
    let _eng = engine(&n1);
    let _daemon = locksmithd(&n1, &["-endpoint", &url], &logs.join("d2.log"));
    wait_for("the drain lifted", || {
        kvctl(&url, &["get", &drain_key]).0 != 0
    });
    assert_eq!(running_on(&sock, "web.service").as_deref(), Some(id2));
    assert_eq!(reboots(&n1), 1);
}

/// A plain HTTP/1.1 GET; the whole answer, headers included ("" if nothing listens).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}
