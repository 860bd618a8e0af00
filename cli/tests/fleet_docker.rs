//! The book's container units on a real Docker engine: a `keelson kv`, two
//! `keelson fleet` machines (the built-in supervisor) and `keelctl`, running
//! `helloglobal.service` from `examples/units` verbatim, `docker pull
//! busybox` included. The image comes from the local registry that
//! `scripts/setup.sh` starts and names as dockerd's mirror, so no Internet is
//! needed; without a reachable dockerd the test fails and says so.
//!
//! Both machines share one dockerd, so a container name is one per host, not
//! one per machine: the global unit runs while only one machine is up, and
//! failover uses the same unit without its `[X-Fleet] Global=true`, where the
//! unit's own `docker kill`/`docker rm` pre-start lines clear the container
//! the dead machine left behind.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");
/// Debian's client, as the units name it (another may come first on PATH).
const DOCKER: &str = "/usr/bin/docker";
/// The container the book's unit runs (`docker run --name hello busybox`).
const CONTAINER: &str = "hello";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn docker(args: &[&str]) -> Output {
    Command::new(DOCKER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{DOCKER} {args:?}: {e}; run scripts/setup.sh as root"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The test needs dockerd, with the local registry as its mirror: fail (never
/// skip) and say how to get them.
fn require_docker() {
    let o = Command::new(DOCKER)
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output();
    match o {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "dockerd is not reachable through {DOCKER}: {}\nrun scripts/setup.sh as root: it installs docker.io and starts dockerd and the local registry",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "cannot run {DOCKER}: {e}\nrun scripts/setup.sh as root: it installs docker.io and starts dockerd and the local registry"
        ),
    }
    let mirrors = stdout(&docker(&[
        "info",
        "--format",
        "{{json .RegistryConfig.Mirrors}}",
    ]));
    assert!(
        mirrors.contains("127.0.0.1:5000"),
        "dockerd does not use the local registry as its mirror ({}), so `docker pull busybox` would need the Internet; run scripts/setup.sh as root",
        mirrors.trim()
    );
    // The unit's `docker pull busybox` reads library/busybox from it.
    let tags = http_get("127.0.0.1:5000", "/v2/library/busybox/tags/list");
    assert!(
        tags.starts_with("HTTP/1.1 200") && tags.contains("\"latest\""),
        "the local registry on 127.0.0.1:5000 has no library/busybox:latest ({tags:?}); run scripts/setup.sh as root"
    );
}

/// A plain HTTP/1.1 GET; the whole response, or the error as text.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let run = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    run().unwrap_or_else(|e| format!("GET http://{addr}{path}: {e}"))
}

/// `docker ps` rows (running containers only) named exactly `name`:
/// (ID, image).
fn running(name: &str) -> Vec<(String, String)> {
    let o = docker(&[
        "ps",
        "--no-trunc",
        "--filter",
        &format!("name=^/{name}$"),
        "--format",
        "{{.ID}} {{.Image}}",
    ]);
    assert!(o.status.success(), "docker ps: {o:?}");
    stdout(&o)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, image)| (id.to_owned(), image.to_owned()))
        .collect()
}

/// Removes the book's container when the test ends, however it ends. Dropped
/// before the processes, so that their shutdown finds nothing to stop.
struct Container(&'static str);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(DOCKER)
            .args(["rm", "-f", self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Kills what it holds when the test ends, however it ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
            }
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
    }
}

fn keelctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(KEELCTL)
        .arg(format!("--endpoint=unix://{}", sock.display()))
        .args(args)
        .env_remove("FLEETCTL_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .expect("keelctl runs")
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

/// `list-units --no-legend` rows of `unit`: [unit, machine, active, sub].
fn unit_rows(sock: &Path, unit: &str) -> Vec<Vec<String>> {
    stdout(&keelctl(sock, &["list-units", "--no-legend"]))
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|r| r.first().map(String::as_str) == Some(unit))
        .collect()
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

struct Machine {
    id: String,
    sock: PathBuf,
    root: PathBuf,
}

fn start_fleet(dir: &Path, url: &str, n: usize) -> (Child, Machine) {
    let id = format!("{n}").repeat(32);
    let root = dir.join(format!("core-0{n}"));
    std::fs::create_dir_all(&root).expect("root");
    let log = std::fs::File::create(dir.join(format!("fleet{n}.log"))).expect("log");
    let child = Command::new(KEELSON)
        .arg("fleet")
        .arg("--root")
        .arg(&root)
        .args(["--machine-id", &id])
        .args(["--public-ip", &format!("10.0.0.{n}")])
        .env("FLEET_ETCD_SERVERS", url)
        .env("FLEET_AGENT_TTL", "3s")
        .env("FLEET_ENGINE_RECONCILE_INTERVAL", "0.5")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("keelson fleet starts");
    let sock = root.join("var/run/fleet.sock");
    (child, Machine { id, sock, root })
}

#[test]
fn book_busybox_unit_on_docker() {
    require_docker();
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/units/helloglobal.service");
    let verbatim = std::fs::read_to_string(&book).expect("examples/units/helloglobal.service");
    assert!(
        verbatim.contains("ExecStartPre=/usr/bin/docker pull busybox\n")
            && verbatim.contains("ExecStart=/usr/bin/docker run --name hello busybox "),
        "{verbatim}"
    );
    let dir = tempfile::tempdir().expect("tempdir");

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
    let mut procs = Procs(vec![kv]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait(30, "the kv", || TcpStream::connect(addr).ok());

    // Declared after `procs`, so dropped first: a container left by an
    // earlier run would be killed by the unit's pre-start lines anyway.
    let _container = Container(CONTAINER);

    // 1. The global unit, verbatim, while one machine is up.
    let (child, m1) = start_fleet(dir.path(), &url, 1);
    procs.0.push(child);
    wait(20, "the API socket", || m1.sock.exists().then_some(()));
    let o = keelctl(&m1.sock, &["start", &book.to_string_lossy()]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o),
        "Triggered global unit helloglobal.service start\n"
    );
    let row = wait(60, "helloglobal.service active/running", || {
        unit_rows(&m1.sock, "helloglobal.service")
            .into_iter()
            .find(|r| r.get(2..4) == Some(&["active".into(), "running".into()]))
    });
    assert!(row[1].starts_with(&m1.id[..8]), "{row:?}");
    let first = wait(30, "the hello container", || {
        running(CONTAINER).into_iter().next()
    });
    assert_eq!(first.1, "busybox", "{first:?}");
    // The container's output reaches the unit's journal through `docker run`.
    wait(30, "Hello World in the journal", || {
        let j = stdout(&keelctl(
            &m1.sock,
            &["journal", "--lines=5", "helloglobal.service"],
        ));
        j.lines().any(|l| l == "Hello World").then_some(())
    });
    let status = stdout(&keelctl(&m1.sock, &["status", "helloglobal.service"]));
    assert!(
        status.starts_with("● helloglobal.service - My Service\n")
            && status.contains("   Active: active (running)\n")
            && status.contains("\nHello World\n"),
        "{status}"
    );

    // stop runs ExecStop (`docker stop hello`): the container exits rather
    // than disappearing, and the unit goes inactive.
    let o = keelctl(&m1.sock, &["stop", "helloglobal.service"]);
    assert!(o.status.success(), "{o:?}");
    wait(40, "helloglobal.service inactive/dead", || {
        unit_rows(&m1.sock, "helloglobal.service")
            .into_iter()
            .find(|r| r.get(2..4) == Some(&["inactive".into(), "dead".into()]))
    });
    assert!(running(CONTAINER).is_empty(), "container still running");
    let o = docker(&[
        "inspect",
        "--format",
        "{{.Id}} {{.State.Status}}",
        CONTAINER,
    ]);
    assert_eq!(stdout(&o).trim(), format!("{} exited", first.0), "{o:?}");
    let log = std::fs::read_to_string(
        m1.root
            .join("var/lib/keelson/fleet/logs/helloglobal.service.log"),
    )
    .expect("the unit's log");
    assert!(
        log.contains("keelson[helloglobal.service]: Stopped"),
        "{log}"
    );

    // destroy: the unit leaves the cluster and the machine.
    let o = keelctl(&m1.sock, &["destroy", "helloglobal.service"]);
    assert_eq!(stdout(&o), "Destroyed helloglobal.service\n", "{o:?}");
    wait(20, "helloglobal.service to go", || {
        let files = stdout(&keelctl(&m1.sock, &["list-unit-files", "--no-legend"]));
        (unit_rows(&m1.sock, "helloglobal.service").is_empty()
            && !files.contains("helloglobal.service")
            && !m1.root.join("run/fleet/units/helloglobal.service").exists())
        .then_some(())
    });
    assert!(running(CONTAINER).is_empty());

    // 2. Failover. Same unit without `Global=true` (adapted: both machines
    // share one dockerd, see the module doc), so one machine runs it.
    let (child, m2) = start_fleet(dir.path(), &url, 2);
    procs.0.push(child);
    wait(20, "the API socket", || m2.sock.exists().then_some(()));
    let machines = [m1, m2];
    wait(20, "2 machines", || {
        let o = keelctl(&machines[0].sock, &["list-machines", "--no-legend"]);
        (stdout(&o).lines().count() == 2).then_some(())
    });
    let single = verbatim.replace("[X-Fleet]\nGlobal=true\n", "");
    assert_ne!(single, verbatim);
    let single_path = dir.path().join("hello.service");
    std::fs::write(&single_path, &single).expect("unit file");
    let o = keelctl(
        &machines[1].sock,
        &[
            "start",
            "--block-attempts=30",
            &single_path.to_string_lossy(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let row = wait(60, "hello.service active/running", || {
        unit_rows(&machines[1].sock, "hello.service")
            .into_iter()
            .find(|r| r.get(2..4) == Some(&["active".into(), "running".into()]))
    });
    let on = machines
        .iter()
        .position(|m| row[1].starts_with(&m.id[..8]))
        .unwrap_or_else(|| panic!("{row:?}"));
    let other = 1 - on;
    let before = wait(30, "the hello container", || {
        running(CONTAINER).into_iter().next()
    });
    assert_ne!(before.0, first.0, "a new container");
    let record = std::fs::read_to_string(
        machines[on]
            .root
            .join("var/lib/keelson/fleet/records/hello.service.json"),
    )
    .expect("the unit's record");
    let record: serde_json::Value = serde_json::from_str(&record).expect("record json");
    let client_pid = record["main_pid"].as_i64().expect("main pid") as i32;
    assert!(alive(client_pid));

    // kill -9 the fleet that runs it: the unit moves to the other machine,
    // whose pre-start `docker kill hello`/`docker rm hello` clear the old
    // container (and with it the dead machine's orphaned `docker run`).
    procs.0[1 + on].kill().expect("kill -9");
    let _ = procs.0[1 + on].wait();
    let sock = &machines[other].sock;
    wait(40, "hello.service to run on the other machine", || {
        unit_rows(sock, "hello.service").into_iter().find(|r| {
            r[1].starts_with(&machines[other].id[..8])
                && r.get(2..4) == Some(&["active".into(), "running".into()])
        })
    });
    let after = wait(30, "a new hello container", || {
        running(CONTAINER)
            .into_iter()
            .find(|(id, _)| *id != before.0)
    });
    assert_eq!(after.1, "busybox");
    assert_eq!(running(CONTAINER).len(), 1);
    wait(30, "Hello World from the moved unit", || {
        let j = stdout(&keelctl(sock, &["journal", "--lines=5", "hello.service"]));
        j.lines().any(|l| l == "Hello World").then_some(())
    });
    wait(20, "the orphaned docker run client to exit", || {
        (!alive(client_pid)).then_some(())
    });
    let files = stdout(&keelctl(sock, &["list-unit-files", "--no-legend"]));
    assert!(
        files
            .lines()
            .any(|l| l.starts_with("hello.service") && l.contains(&machines[other].id[..8])),
        "{files}"
    );
}
