//! The book's fleet scenarios end to end: a real `keelson kv`, three
//! `keelson fleet` processes (distinct machine IDs, roots, metadata and API
//! sockets) and `fleetctl` through a symlink to `keelctl`, with Go-style
//! single-dash flags.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills what it holds when the test ends, however it ends.
struct Procs(Vec<Child>, String);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_marked(&self.1);
    }
}

/// Kill unit processes orphaned by a `kill -9`ed fleetd: their command
/// lines carry the test's unique marker.
fn kill_marked(marker: &str) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(marker) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn fleetctl(bin: &Path, sock: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-endpoint=unix://{}", sock.display()))
        .args(args)
        .env_remove("FLEETCTL_ENDPOINT")
        .stdin(Stdio::null());
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleetctl runs");
    child.wait_with_output().expect("fleetctl output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Poll `f` until it returns `Some`, or panic with `what` after `secs`.
fn wait<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rows(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn fleet_cluster_of_three() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("kfe2e{}", std::process::id());
    let fleetctl_bin = dir.path().join("fleetctl");
    std::os::unix::fs::symlink(KEELCTL, &fleetctl_bin).expect("symlink");

    // The kv.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let kv = Command::new(KEELSON)
        .args(["kv", "-name", "d1", "--data-dir"])
        .arg(dir.path().join("kv"))
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("keelson kv starts");
    let mut procs = Procs(vec![kv], marker.clone());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait(30, "the kv", || TcpStream::connect(addr).ok());

    // Three machines.
    let metadata = ["compute=web", "compute=web", "compute=db"];
    let ids: Vec<String> = (1..=3).map(|i| format!("{i}").repeat(32)).collect();
    let mut socks: Vec<PathBuf> = Vec::new();
    for (i, md) in metadata.iter().enumerate() {
        let root = dir.path().join(format!("core-0{}", i + 1));
        std::fs::create_dir_all(&root).expect("root");
        let log = std::fs::File::create(dir.path().join(format!("fleet{i}.log"))).expect("log");
        let child = Command::new(KEELSON)
            .arg("fleet")
            .arg("--root")
            .arg(&root)
            .args(["--machine-id", &ids[i], "--metadata", md])
            .args(["--public-ip", &format!("10.0.0.{}", i + 1)])
            .env("FLEET_ETCD_SERVERS", &url)
            .env("FLEET_AGENT_TTL", "3s")
            .env("FLEET_ENGINE_RECONCILE_INTERVAL", "0.5")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("keelson fleet starts");
        procs.0.push(child);
        socks.push(root.join("var/run/fleet.sock"));
    }
    for s in &socks {
        wait(20, "the API socket", || s.exists().then_some(()));
    }
    // The db machine's API is used throughout: it survives the kill below.
    let api = socks[2].clone();
    let fc = |args: &[&str]| fleetctl(&fleetctl_bin, &api, args);

    let machines = wait(20, "3 machines", || {
        let o = fc(&["list-machines"]);
        (rows(&stdout(&o)).len() == 3).then(|| stdout(&o))
    });
    assert!(
        machines.starts_with("MACHINE\t\tIP\t\tMETADATA\n"),
        "{machines}"
    );
    assert!(
        machines.contains("33333333...\t10.0.0.3\tcompute=db\n"),
        "{machines}"
    );

    // Units: the book's, with a shell loop instead of a container.
    let exec = format!("ExecStart=/bin/sh -c 'while true; do echo hi {marker}; sleep 1; done'");
    let write = |name: &str, xfleet: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!("[Unit]\nDescription={name}\n\n[Service]\n{exec}\n\n[X-Fleet]\n{xfleet}\n"),
        )
        .expect("unit file");
        p.to_string_lossy().into_owned()
    };
    let global = write("global.service", "Global=true");
    let web = write("web.service", "MachineMetadata=compute=web");
    let db = write("db.service", "MachineMetadata=compute=db");
    let cache = write("cache.service", "MachineMetadata=compute=cache");
    let bad = write("bad.service", "MachineMetadata=compute=web\nFooBar=1");

    // Unknown [X-Fleet] key: refused at submit, with line and column.
    let o = fc(&["submit", &bad]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.service") && err.contains("line 9, column 1") && err.contains("FooBar"),
        "{err}"
    );
    assert!(!stdout(&fc(&["list-unit-files"])).contains("bad.service"));

    // A global unit runs on all three.
    let o = fc(&["start", &global]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "Triggered global unit global.service start\n");
    wait(30, "global.service on 3 machines", || {
        let u = stdout(&fc(&["list-units", "-no-legend"]));
        (u.lines()
            .filter(|l| l.starts_with("global.service") && l.contains("active\trunning"))
            .count()
            == 3)
            .then_some(())
    });

    // Metadata placement.
    let o = fc(&["start", "-block-attempts=15", &web, &db]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("Unit db.service launched on 33333333.../10.0.0.3\n"),
        "{out}"
    );
    let web_line = out
        .lines()
        .find(|l| l.starts_with("Unit web.service launched on "))
        .unwrap_or_else(|| panic!("{out}"));
    let web_machine = if web_line.contains("11111111...") {
        0
    } else {
        1
    };
    assert!(
        web_line.contains(&format!("10.0.0.{}", web_machine + 1)),
        "{web_line}"
    );

    // An unplaceable unit says why (Keelson's reason).
    let o = fc(&["start", "-no-block", &cache]);
    assert_eq!(stdout(&o), "Triggered unit cache.service start\n");
    let reason = wait(20, "a reason", || {
        let o = fc(&["list-unit-files", "-fields=unit,reason", "-no-legend"]);
        let s = stdout(&o);
        s.lines()
            .find(|l| l.starts_with("cache.service") && l.contains("compute=cache"))
            .map(str::to_owned)
    });
    assert!(reason.contains("compute=cache"), "{reason}");
    let o = fc(&["status", "cache.service"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("Unit cache.service does not appear to be loaded.\n"));

    // list-unit-files: fleetctl's columns; 7-character hashes, 40 with --full.
    let luf = stdout(&fc(&["list-unit-files"]));
    assert!(
        luf.starts_with("UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n"),
        "{luf}"
    );
    let db_row = rows(&luf)
        .into_iter()
        .find(|r| r[0] == "db.service")
        .expect("db row");
    assert_eq!(db_row[1].len(), 7);
    assert_eq!(
        &db_row[2..],
        ["launched", "launched", "33333333.../10.0.0.3"]
    );
    assert!(luf.contains("global.service\t"));
    assert!(luf
        .lines()
        .any(|l| l.starts_with("global.service") && l.ends_with("\tglobal")));
    let full = stdout(&fc(&["list-unit-files", "--full", "-no-legend"]));
    let r = rows(&full);
    assert!(r.iter().all(|r| r[1].len() == 40), "{full}");

    // status and journal reach the machine that runs the unit.
    let status = wait(20, "web.service output in status", || {
        let s = stdout(&fc(&["status", "web.service"]));
        s.lines().any(|l| l == format!("hi {marker}")).then_some(s)
    });
    assert!(
        status.starts_with("● web.service - web.service\n"),
        "{status}"
    );
    assert!(status.contains("   Active: active (running)\n"), "{status}");
    let hi = format!("hi {marker}");
    let j = wait(20, "the unit's own output in journal", || {
        let j = stdout(&fc(&["journal", "-lines=2", "web.service"]));
        j.lines().any(|l| l == hi).then_some(j)
    });
    assert_eq!(j.lines().count(), 2, "{j}");
    let cat = stdout(&fc(&["cat", "db.service"]));
    assert!(
        cat.contains("[X-Fleet]\nMachineMetadata=compute=db\n"),
        "{cat}"
    );

    // kill -9 the machine running web.service: the unit moves to the other
    // web machine (never the db one) and the machine leaves list-machines.
    let victim = 1 + web_machine; // procs.0[0] is the kv
    procs.0[victim].kill().expect("kill -9");
    let _ = procs.0[victim].wait();
    let other = 1 - web_machine;
    let moved = wait(40, "web.service to move", || {
        let luf = stdout(&fc(&["list-unit-files", "-no-legend"]));
        let row = rows(&luf).into_iter().find(|r| r[0] == "web.service")?;
        (row[3] == "launched" && row[4].starts_with(&ids[other][..8])).then_some(row)
    });
    assert_eq!(
        moved[4],
        format!("{}.../10.0.0.{}", &ids[other][..8], other + 1)
    );
    let machines = wait(40, "2 machines", || {
        let o = fc(&["list-machines", "-no-legend"]);
        (rows(&format!("H\n{}", stdout(&o))).len() == 2).then(|| stdout(&o))
    });
    assert!(!machines.contains(&ids[web_machine][..8]), "{machines}");
    wait(20, "the moved unit's output", || {
        let j = stdout(&fc(&["journal", "web.service"]));
        j.lines().any(|l| l == format!("hi {marker}")).then_some(())
    });
    let units = stdout(&fc(&["list-units", "-no-legend"]));
    assert_eq!(
        units
            .lines()
            .filter(|l| l.starts_with("global.service"))
            .count(),
        2,
        "{units}"
    );

    // destroy
    let o = fc(&["destroy", "cache.service"]);
    assert_eq!(stdout(&o), "Destroyed cache.service\n");
    drop(procs);
}
