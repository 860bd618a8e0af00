//! `keelson up`, `keelson node` and `keelson install-aliases` as a user
//! runs them: the built binaries as processes, the cluster on loopback
//! addresses of its own (never 127.0.0.1:2379), checked with `kvctl` and
//! `keelctl`, and stopped with the signals a terminal sends.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");

/// Several times what a loaded machine should need.
const LONG: Duration = Duration::from_secs(180);

/// These tests start many processes each: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// PIDs of live processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // A zombie has an empty command line; it is not running.
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// Waits for `child` to exit, up to `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Kills whatever a failed test left behind: the child and every process
/// that names the test's directory.
struct Cleanup {
    child: Option<Child>,
    needle: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in processes_mentioning(&self.needle) {
            signal(pid as u32, "-KILL");
        }
    }
}

/// `keelson up` with its stdout collected as it comes.
struct Up {
    guard: Cleanup,
    out: Arc<Mutex<String>>,
}

impl Up {
    fn start(args: &[String]) -> Up {
        let needle = args
            .iter()
            .skip_while(|a| *a != "--data-dir")
            .nth(1)
            .cloned()
            .expect("--data-dir");
        let mut child = Command::new(KEELSON)
            .arg("up")
            .args(args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("keelson up starts");
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Up {
            guard: Cleanup {
                child: Some(child),
                needle,
            },
            out,
        }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn pid(&self) -> u32 {
        self.guard.child.as_ref().map(Child::id).expect("child")
    }

    /// The value of `export NAME=...` in what it printed.
    fn export(&self, name: &str) -> String {
        let prefix = format!("export {name}=");
        self.output()
            .lines()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} in:\n{}", self.output()))
    }

    /// Waits until the latest summary line shows a leader, `members`
    /// members and `machines` machines.
    fn wait_ready(&self, members: usize, machines: usize) {
        wait("a leader and every machine in the status", LONG, || {
            let out = self.output();
            let last = out.lines().rfind(|l| l.starts_with("members: "))?;
            let ok = last.starts_with(&format!("members: {members}, leader: core-"))
                && last.contains(&format!(", machines: {machines},"));
            ok.then_some(())
        });
    }

    /// SIGINT, as Ctrl-C; returns whether it exited 0.
    fn interrupt(&mut self) -> bool {
        signal(self.pid(), "-INT");
        let child = self.guard.child.as_mut().expect("child");
        let st = wait_exit(child, LONG).expect("keelson up exits after SIGINT");
        self.guard.child = None;
        st.success()
    }
}

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin);
    c.args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_ENDPOINT")
        .env_remove("ETCDCTL_PEERS")
        .env_remove("FLEETCTL_ENDPOINT")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The supervisor's record of a running unit: its main PID.
fn unit_main_pid(data: &Path, unit: &str) -> Option<i32> {
    for e in std::fs::read_dir(data).ok()?.flatten() {
        let rec = e
            .path()
            .join("var/lib/keelson/fleet/records")
            .join(format!("{unit}.json"));
        if let Ok(t) = std::fs::read_to_string(&rec) {
            let v: serde_json::Value = serde_json::from_str(&t).ok()?;
            if let Some(p) = v.get("main_pid").and_then(|p| p.as_i64()) {
                return Some(p as i32);
            }
        }
    }
    None
}

fn alive(pid: i32) -> bool {
    // Gone, or a zombie waiting for its reaper (its cmdline is empty).
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn up_starts_a_cluster_that_works_and_stops_clean() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("up.data");
    let data_s = data.to_string_lossy().into_owned();
    // An address block of its own, and free ports on it.
    let block = 100 + std::process::id() % 150;
    let base = format!("127.0.{block}.10");
    let ip1 = format!("127.0.{block}.11");
    let (cp, pp) = (free_port(&ip1), free_port(&ip1));
    let args: Vec<String> = [
        "--nodes",
        "3",
        "--data-dir",
        &data_s,
        "--base-ip",
        &base,
        "--client-port",
        &cp.to_string(),
        "--peer-port",
        &pp.to_string(),
        "--no-default-endpoint",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let mut up = Up::start(&args);
    up.wait_ready(3, 3);
    let endpoints = up.export("ETCDCTL_ENDPOINTS");
    assert_eq!(
        endpoints,
        format!("http://{ip1}:{cp},http://127.0.{block}.12:{cp},http://127.0.{block}.13:{cp}")
    );
    let fleet_ep = up.export("FLEETCTL_ENDPOINT");
    assert_eq!(
        fleet_ep,
        format!("unix://{}/core-01/var/run/fleet.sock", data.display())
    );
    let kv_env = [("ETCDCTL_ENDPOINTS", endpoints.as_str())];
    let set = run(KVCTL, &["set", "/hello", "world"], &kv_env);
    assert!(set.status.success(), "{set:?}");
    assert_eq!(text(&set), "world\n");
    let get = run(KVCTL, &["get", "/hello"], &kv_env);
    assert_eq!(text(&get), "world\n", "{get:?}");
    let members_before = text(&run(KVCTL, &["member", "list"], &kv_env));
    assert_eq!(members_before.lines().count(), 3, "{members_before}");

    // The newcomer's unit, through the printed fleet endpoint.
    let fl_env = [("FLEETCTL_ENDPOINT", fleet_ep.as_str())];
    let hello = repo_file("examples/units/hello.service");
    let hello_s = hello.to_string_lossy().into_owned();
    let start = run(KEELCTL, &["start", &hello_s], &fl_env);
    assert!(start.status.success(), "{start:?}");
    let row = wait("hello.service active running", LONG, || {
        let o = run(KEELCTL, &["list-units", "--no-legend"], &fl_env);
        text(&o)
            .lines()
            .find(|l| l.starts_with("hello.service") && l.contains("active\trunning"))
            .map(str::to_owned)
    });
    assert!(row.contains(&format!("127.0.{block}.1")), "{row}");
    let machines = run(KEELCTL, &["list-machines", "--no-legend"], &fl_env);
    assert_eq!(text(&machines).lines().count(), 3, "{machines:?}");
    // The status view shows the unit too.
    wait("the unit in the status view", LONG, || {
        up.output()
            .lines()
            .any(|l| l.starts_with("hello.service") && l.contains("running"))
            .then_some(())
    });
    // `%H` is the node's name.
    wait("the unit's greeting", LONG, || {
        let o = run(KEELCTL, &["journal", "hello.service"], &fl_env);
        text(&o).contains("hello from core-0").then_some(())
    });
    let unit_pid = unit_main_pid(&data, "hello.service").expect("hello.service's record");
    assert!(alive(unit_pid));

    // Logs say which node and service spoke.
    let log = std::fs::read_to_string(data.join("logs/core-01.log")).expect("core-01's log");
    assert!(log.contains("[core-01/kv]"), "{log}");
    assert!(log.contains("[core-01/fleet]"), "{log}");

    // Ctrl-C: exits 0 and leaves nothing running, units included.
    assert!(
        up.interrupt(),
        "keelson up exits 0; it printed:\n{}",
        up.output()
    );
    let left = processes_mentioning(&data_s);
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert!(
        !alive(unit_pid),
        "the unit's process {unit_pid} is still running"
    );
    assert!(
        !data.join("up.pid").exists(),
        "the pid file is removed on exit"
    );

    // Again on the same data: the same cluster, with its data.
    let mut again = Up::start(&args);
    again.wait_ready(3, 3);
    let get = wait("/hello after the restart", LONG, || {
        let o = run(KVCTL, &["get", "/hello"], &kv_env);
        o.status.success().then(|| text(&o))
    });
    assert_eq!(get, "world\n");
    let members_after = text(&run(KVCTL, &["member", "list"], &kv_env));
    let ids = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&members_after), ids(&members_before));
    // A different shape on the same data is refused, with the reason.
    let clash = Command::new(KEELSON)
        .args(["up", "--nodes", "5", "--data-dir", &data_s])
        .output()
        .expect("runs");
    assert!(!clash.status.success());
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains("nodes 3, not 5"),
        "{clash:?}"
    );

    // One node dying leaves the others up.
    let status = again.output();
    let pid3: u32 = status
        .lines()
        .rfind(|l| l.starts_with("core-03 ") && l.contains(" pid "))
        .and_then(|l| l.split("pid ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("core-03's pid in:\n{status}"));
    signal(pid3, "-KILL");
    wait("core-03 shown as exited", LONG, || {
        again
            .output()
            .lines()
            .any(|l| l.starts_with("core-03 ") && l.contains("exited"))
            .then_some(())
    });
    wait("a write with two of three members", LONG, || {
        run(KVCTL, &["set", "/after", "kill"], &kv_env)
            .status
            .success()
            .then_some(())
    });
    let units = all_unit_pids(&data);
    // It reports the lost node, and still leaves nothing running.
    assert!(
        !again.interrupt(),
        "a run that lost a node exits non-zero:\n{}",
        again.output()
    );
    assert!(processes_mentioning(&data_s).is_empty());
    let alive_units: Vec<i32> = units.into_iter().filter(|p| alive(*p)).collect();
    assert!(
        alive_units.is_empty(),
        "unit processes left: {alive_units:?}"
    );
}

/// Every live main PID any node's supervisor recorded.
fn all_unit_pids(data: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for node in std::fs::read_dir(data).into_iter().flatten().flatten() {
        let dir = node.path().join("var/lib/keelson/fleet/records");
        for rec in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let v: serde_json::Value = std::fs::read_to_string(rec.path())
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            if let Some(p) = v.get("main_pid").and_then(|p| p.as_i64()) {
                if alive(p as i32) {
                    out.push(p as i32);
                }
            }
        }
    }
    out
}

#[test]
fn node_runs_kv_and_fleet_in_one_process() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("n1");
    let root_s = root.to_string_lossy().into_owned();
    let url = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let peer = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let log_path = dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new(KEELSON)
        .args(["node", "--name", "n1", "--root", &root_s])
        .args(["--services", "kv,fleet"])
        .arg("--kv-arg=--data-dir=/var/lib/etcd2")
        .arg(format!("--kv-arg=--listen-client-urls={url}"))
        .arg(format!("--kv-arg=--advertise-client-urls={url}"))
        .arg(format!("--kv-arg=--listen-peer-urls={peer}"))
        .arg(format!("--kv-arg=--initial-advertise-peer-urls={peer}"))
        .arg(format!("--kv-arg=--initial-cluster=n1={peer}"))
        .arg(format!("--fleet-arg=--etcd-servers={url}"))
        .arg("--fleet-arg=--metadata=role=both")
        .env("RUST_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("keelson node starts");
    let pid = child.id();
    let mut guard = Cleanup {
        child: Some(child),
        needle: root_s.clone(),
    };
    let kv_env = [("ETCDCTL_ENDPOINTS", url.as_str())];
    wait("the kv", LONG, || {
        run(KVCTL, &["set", "/x", "1"], &kv_env)
            .status
            .success()
            .then_some(())
    });
    let sock = format!("unix://{root_s}/var/run/fleet.sock");
    let fl_env = [("FLEETCTL_ENDPOINT", sock.as_str())];
    let machines = wait("the machine", LONG, || {
        let o = run(KEELCTL, &["list-machines", "-l", "--no-legend"], &fl_env);
        let t = text(&o);
        (t.lines().count() == 1).then_some(t)
    });
    // The machine ID `keelson node` wrote, as systemd would on first boot.
    let id = std::fs::read_to_string(root.join("etc/machine-id")).expect("machine-id");
    assert!(machines.starts_with(id.trim()), "{machines}");
    assert!(machines.contains("role=both"), "{machines}");
    // One process serves both: the only one under this root, with a thread
    // per service.
    assert_eq!(processes_mentioning(&root_s), vec![pid as i32]);
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect();
    assert!(threads.iter().any(|t| t == "n1/kv"), "{threads:?}");
    assert!(threads.iter().any(|t| t == "n1/fleet"), "{threads:?}");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        log.contains("[n1/kv]") && log.contains("[n1/fleet]"),
        "{log}"
    );

    signal(pid, "-TERM");
    let child = guard.child.as_mut().expect("child");
    let st = wait_exit(child, LONG).expect("keelson node exits after SIGTERM");
    guard.child = None;
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(st.success(), "{st:?}\n{log}");
    // Fleet is stopped before the kv it deregisters from.
    let fleet_stop = log.find("stopped service=fleet").expect("fleet stopped");
    let kv_stop = log.find("stopped service=kv").expect("kv stopped");
    assert!(fleet_stop < kv_stop, "{log}");
    assert!(processes_mentioning(&root_s).is_empty());
}

#[test]
fn node_stops_everything_when_a_service_fails() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("n2");
    let root_s = root.to_string_lossy().into_owned();
    let url = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let child = Command::new(KEELSON)
        .args(["node", "--name", "n2", "--root", &root_s])
        .args(["--services", "kv,fleet"])
        .arg("--kv-arg=--proxy=sometimes")
        .arg(format!("--fleet-arg=--etcd-servers={url}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keelson node starts");
    let mut guard = Cleanup {
        child: None,
        needle: root_s.clone(),
    };
    let out = child.wait_with_output().expect("exits");
    guard.child = None;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service kv failed"), "{err}");
    assert!(
        err.contains("stopped service=fleet"),
        "fleet stopped: {err}"
    );
    drop(guard);
}

#[test]
fn install_aliases_links_the_original_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    let st = run(KEELSON, &["install-aliases", &bin.to_string_lossy()], &[]);
    assert!(st.status.success(), "{st:?}");
    let keelson = std::fs::canonicalize(KEELSON).expect("keelson");
    let dir_of = keelson.parent().expect("bin dir");
    for (name, target) in [
        ("etcd", "keelson"),
        ("fleetd", "keelson"),
        ("flanneld", "keelson"),
        ("locksmithd", "keelson"),
        ("update_engine", "keelson"),
        ("coreos-cloudinit", "keelson"),
        ("etcdctl", "kvctl"),
        ("fleetctl", "keelctl"),
        ("locksmithctl", "keelctl"),
        ("update_engine_client", "keelctl"),
    ] {
        let link = std::fs::read_link(bin.join(name)).expect(name);
        assert_eq!(link, dir_of.join(target), "{name}");
    }
    let via_link = run(&bin.join("etcdctl").to_string_lossy(), &["--version"], &[]);
    let direct = run(KVCTL, &["--version"], &[]);
    assert!(via_link.status.success());
    // kvctl through the link, naming itself as it was called.
    assert_eq!(
        text(&via_link),
        text(&direct).replacen("kvctl", "etcdctl", 1)
    );
    assert!(
        text(&via_link).starts_with("etcdctl version"),
        "{via_link:?}"
    );
    // Idempotent.
    let again = run(KEELSON, &["install-aliases", &bin.to_string_lossy()], &[]);
    assert!(again.status.success(), "{again:?}");
    // A file that is not a link is never overwritten.
    std::fs::remove_file(bin.join("fleetctl")).expect("rm");
    std::fs::write(bin.join("fleetctl"), "mine").expect("write");
    let refused = run(KEELSON, &["install-aliases", &bin.to_string_lossy()], &[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a symlink"),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read_to_string(bin.join("fleetctl")).expect("kept"),
        "mine"
    );
}
