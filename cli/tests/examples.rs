//! The book's workflows under `examples/`, run end to end from the
//! examples' own files: cloud-configs started with `keelson node`, unit
//! files given to `keelctl`, scripts run as the READMEs run them.
//!
//! The READMEs use the book's addresses (127.0.0.11-13, ports 2379/2380, a
//! discovery store on 127.0.0.1:4001); each test rewrites them into a
//! loopback block of its own (`127.2xx.N.*`) with free ports, so tests never
//! meet each other, `keelson up` or a store on 127.0.0.1:2379. Tests run one
//! at a time; a guard stops every process a test started, unit processes
//! included, even when an assertion fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");

/// Several times what a loaded machine should need.
const LONG: Duration = Duration::from_secs(120);

static SERIAL: Mutex<()> = Mutex::new(());
static BLOCK: AtomicU32 = AtomicU32::new(1);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

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
        assert!(
            start.elapsed() < LONG,
            "timed out after {LONG:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn signal(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
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
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if pid != me && String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Main PIDs (= process groups) the supervisors under `root` recorded.
fn unit_groups(root: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for sub in [
        "var/lib/keelson/fleet/records",
        "var/lib/keelson/node/records",
    ] {
        let Ok(dir) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        for e in dir.flatten() {
            let rec: serde_json::Value = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            // Only a recorded process that is still the same process.
            let (Some(pid), Some(started)) =
                (rec["main_pid"].as_i64(), rec["main_start_time"].as_u64())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let now = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(19))
                .and_then(|v| v.parse::<u64>().ok());
            if now == Some(started) {
                out.push(pid as i32);
            }
        }
    }
    out
}

/// One test's simulated machines: a loopback block, free ports, the nodes'
/// processes and whatever else the test started.
struct Lab {
    dir: tempfile::TempDir,
    /// `127.2xx.N.`: the block that stands for the README's `127.0.0.`.
    prefix: String,
    /// README port → this test's port.
    ports: Vec<(u16, u16)>,
    nodes: Vec<Option<Child>>,
    others: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        let n = BLOCK.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("127.{}.{n}.", 200 + std::process::id() % 50);
        let probe = format!("{prefix}11");
        let mut ports = Vec::new();
        for p in [2379, 2380, 4001, 7001, 8080] {
            ports.push((p, free_port(&probe)));
        }
        Lab {
            dir: tempfile::tempdir().unwrap(),
            prefix,
            ports,
            nodes: Vec::new(),
            others: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A README's text with this test's addresses and ports.
    fn rewrite(&self, text: &str) -> String {
        let mut t = text.replace("127.0.0.", &self.prefix);
        for (from, to) in &self.ports {
            t = t.replace(&format!(":{from}"), &format!(":{to}"));
        }
        t
    }

    fn port(&self, readme: u16) -> u16 {
        self.ports
            .iter()
            .find(|(p, _)| *p == readme)
            .map(|(_, q)| *q)
            .expect("a known port")
    }

    fn ip(&self, i: usize) -> String {
        format!("{}1{i}", self.prefix)
    }

    /// Node `i`'s client URL.
    fn url(&self, i: usize) -> String {
        format!("http://{}:{}", self.ip(i), self.port(2379))
    }

    fn root(&self, i: usize) -> PathBuf {
        self.path(&format!("core-0{i}"))
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.path(&format!("core-0{i}.log"))).unwrap_or_default()
    }

    /// `keelson node --cloud-config <example>/core-0i.yaml --root core-0i`,
    /// as the README starts it, on this test's addresses.
    fn start_node(&mut self, example_name: &str, i: usize) {
        let src = example(example_name).join(format!("core-0{i}.yaml"));
        let cfg = self.rewrite(&std::fs::read_to_string(&src).unwrap());
        let file = self.path(&format!("core-0{i}.yaml"));
        std::fs::write(&file, cfg).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("core-0{i}.log")))
            .unwrap();
        let ip = self.ip(i);
        let child = Command::new(KEELSON)
            .args(["node", "--cloud-config"])
            .arg(&file)
            .arg("--root")
            .arg(self.root(i))
            .args(["--public-ipv4", &ip, "--private-ipv4", &ip])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        while self.nodes.len() < i {
            self.nodes.push(None);
        }
        self.nodes[i - 1] = Some(child);
    }

    fn start_cluster(&mut self, example_name: &str) {
        for i in 1..=3 {
            self.start_node(example_name, i);
        }
        self.wait_members(1, 3);
    }

    /// Waits until `kvctl member list` through node `via` shows `n` members
    /// with one leader and a write goes through.
    fn wait_members(&self, via: usize, n: usize) -> String {
        let url = self.url(via);
        wait(&format!("{n} members and a leader"), || {
            let o = self.kvctl(&url, &["member", "list"]);
            let t = stdout(&o);
            (o.status.success()
                && t.lines().count() == n
                && t.matches("isLeader=true").count() == 1
                && self.kvctl(&url, &["set", "/ready", "yes"]).status.success())
            .then_some(t)
        })
    }

    /// SIGKILLs node `i` and the processes of its units: the machine dies.
    fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in unit_groups(&self.root(i)) {
            signal(-pid, "-KILL");
        }
    }

    fn kvctl(&self, url: &str, args: &[&str]) -> Output {
        Command::new(KVCTL)
            .args(["--endpoints", url])
            .args(args)
            .output()
            .unwrap()
    }

    /// `keelctl` through node `via`'s kv, run in `cwd` (where unit files are).
    fn keelctl_in(&self, via: usize, cwd: &Path, args: &[&str]) -> Output {
        Command::new(KEELCTL)
            .args(["--driver=etcd", "--endpoint", &self.url(via)])
            .args(args)
            .current_dir(cwd)
            .env_remove("FLEETCTL_ENDPOINT")
            .env_remove("FLEETCTL_DRIVER")
            .output()
            .unwrap()
    }

    fn keelctl(&self, via: usize, args: &[&str]) -> Output {
        self.keelctl_in(via, self.dir.path(), args)
    }

    /// `list-units` rows as (unit, machine, active, sub).
    fn units(&self, via: usize) -> Vec<(String, String, String, String)> {
        let o = self.keelctl(via, &["list-units", "--no-legend", "-l"]);
        stdout(&o)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4).then(|| (f[0].into(), f[1].into(), f[2].into(), f[3].into()))
            })
            .collect()
    }

    fn machines(&self, via: usize) -> String {
        stdout(&self.keelctl(via, &["list-machines", "-l"]))
    }

    /// The end of each node's log, for failure messages.
    fn logs(&self) -> String {
        (1..=self.nodes.len())
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- core-0{i} (last lines)\n{tail}\n")
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // Like pulling the plug on every machine at once (stopping them
        // gracefully one by one would leave the last without a quorum to
        // deregister through, and slow): the nodes, then their units.
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for c in &mut self.others {
            let _ = c.kill();
            let _ = c.wait();
        }
        for i in 1..=self.nodes.len() {
            for pid in unit_groups(&self.root(i)) {
                signal(-pid, "-KILL");
            }
        }
        for pid in processes_mentioning(&self.dir.path().to_string_lossy()) {
            signal(pid, "-KILL");
        }
    }
}

/// The machine column's IP (`1111…/127.x.y.11`) as a node number.
fn node_of(lab: &Lab, machine: &str) -> usize {
    let ip = machine.rsplit('/').next().unwrap_or_default();
    ip.strip_prefix(&format!("{}1", lab.prefix))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no node for machine {machine}"))
}

// ------------------------------------------------------- bootstrap-static

#[test]
fn bootstrap_static() {
    let _s = serial();
    let mut lab = Lab::new();
    lab.start_cluster("bootstrap-static");

    // Three members named in advance, one leader, seen from any member.
    let list = lab.wait_members(3, 3);
    for i in 1..=3 {
        let row = format!(
            "name=core-0{i} peerURLs=http://{ip}:{pp} clientURLs=http://{ip}:{cp}",
            ip = lab.ip(i),
            pp = lab.port(2380),
            cp = lab.port(2379)
        );
        assert!(list.contains(&row), "no {row:?} in:\n{list}");
    }
    let health = lab.kvctl(&lab.url(2), &["cluster-health"]);
    assert!(
        stdout(&health).ends_with("cluster is healthy\n"),
        "{}",
        text(&health)
    );
    // A write through one member is read through another.
    let set = lab.kvctl(&lab.url(1), &["set", "/message1", "Book1"]);
    assert_eq!(stdout(&set), "Book1\n", "{}", text(&set));
    let get = lab.kvctl(&lab.url(3), &["get", "/message1"]);
    assert_eq!(stdout(&get), "Book1\n", "{}", text(&get));

    // Fleet on every node: three machines with the fixed IDs, the same list
    // from every node.
    let want: Vec<String> = (1..=3)
        .map(|i| format!("{}\t{}\t-", i.to_string().repeat(32), lab.ip(i)))
        .collect();
    for via in 1..=3 {
        let m = wait("three machines", || {
            let m = lab.machines(via);
            want.iter().all(|w| m.contains(w.as_str())).then_some(m)
        });
        let header: Vec<&str> = m
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(header, ["MACHINE", "IP", "METADATA"], "{m}");
    }
    // Each node's data is under its own root.
    for i in 1..=3 {
        assert!(lab.root(i).join("var/lib/etcd2").is_dir());
        assert_eq!(
            std::fs::read_to_string(lab.root(i).join("etc/hostname")).unwrap(),
            format!("core-0{i}\n")
        );
    }
}

// ------------------------------------------------------------ global-unit

#[test]
fn global_unit() {
    let _s = serial();
    let mut lab = Lab::new();
    lab.start_cluster("bootstrap-static");
    let dir = example("global-unit");

    let o = lab.keelctl_in(1, &dir, &["start", "helloglobal.service"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        stdout(&o),
        "Triggered global unit helloglobal.service start\n"
    );
    // One row per machine, each running.
    let rows = wait("helloglobal on three machines", || {
        let rows: Vec<_> = lab
            .units(2)
            .into_iter()
            .filter(|r| r.0 == "helloglobal.service" && r.2 == "active" && r.3 == "running")
            .collect();
        (rows.len() == 3).then_some(rows)
    });
    let mut nodes: Vec<usize> = rows.iter().map(|r| node_of(&lab, &r.1)).collect();
    nodes.sort();
    assert_eq!(nodes, [1, 2, 3], "{rows:?}");
    let files = stdout(&lab.keelctl(1, &["list-unit-files", "--no-legend"]));
    let f: Vec<&str> = files.split_whitespace().collect();
    assert_eq!(f.first(), Some(&"helloglobal.service"), "{files}");
    assert_eq!(
        f.get(2..5),
        Some(&["launched", "-", "global"][..]),
        "{files}"
    );
    // %H is each machine's own host name.
    for i in 1..=3 {
        let log = lab
            .root(i)
            .join("var/lib/keelson/fleet/logs/helloglobal.service.log");
        wait("the unit's output", || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains(&format!("Hello World from core-0{i}\n")))
        });
    }
    // destroy stops it everywhere.
    let o = lab.keelctl(3, &["destroy", "helloglobal.service"]);
    assert_eq!(
        stdout(&o),
        "Destroyed helloglobal.service\n",
        "{}",
        text(&o)
    );
    wait("no unit rows", || lab.units(1).is_empty().then_some(()));
}

// --------------------------------------------------------------- metadata

#[test]
fn metadata() {
    let _s = serial();
    let mut lab = Lab::new();
    lab.start_cluster("metadata");
    let m = wait("three machines with metadata", || {
        let m = lab.machines(2);
        (m.lines().count() == 4).then_some(m)
    });
    for (i, md) in [
        (1, "compute=web,rack=rack1"),
        (2, "compute=web,rack=rack2"),
        (3, "compute=db,rack=rack3"),
    ] {
        let row = format!("{}\t{}\t{md}\n", i.to_string().repeat(32), lab.ip(i));
        assert!(m.contains(&row), "no {row:?} in:\n{m}");
    }

    let o = lab.keelctl_in(
        1,
        &example("metadata"),
        &["start", "nginxweb.service", "nginxdb.service"],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{}", text(&o));
    // web: the least-loaded web machine, lowest ID on a tie (core-01);
    // db: the only db machine (core-03).
    for (unit, i) in [("nginxweb.service", 1), ("nginxdb.service", 3)] {
        let line = format!(
            "Unit {unit} launched on {}.../{}\n",
            i.to_string().repeat(8),
            lab.ip(i)
        );
        assert!(out.contains(&line), "no {line:?} in:\n{out}");
    }
    // The web server answers on core-01's address (the README's curl).
    let url = format!("http://{}:8080/", lab.ip(1));
    wait("the web server", || {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &url])
            .status()
            .ok()
            .filter(|s| s.success())
    });
}

// --------------------------------------------------------------- failover

#[test]
fn failover() {
    let _s = serial();
    let mut lab = Lab::new();
    lab.start_cluster("failover");
    // Started once every machine has joined, as in the book.
    wait("three machines", || {
        (lab.machines(1).lines().count() == 4).then_some(())
    });
    let o = lab.keelctl_in(1, &example("failover"), &["start", "nginxweb.service"]);
    assert!(
        stdout(&o).contains(&format!("launched on 11111111.../{}", lab.ip(1))),
        "{}",
        text(&o)
    );

    // core-01 dies: the node process and its units, no deregistration.
    lab.kill_node(1);
    wait("core-01 to leave the machine list", || {
        let m = lab.machines(2);
        (m.lines().count() == 3 && !m.contains(&"1".repeat(32))).then_some(())
    });
    let row = wait("nginxweb to run on another machine", || {
        lab.units(2)
            .into_iter()
            .find(|r| r.0 == "nginxweb.service" && r.2 == "active" && r.3 == "running")
    });
    // The other web machine, never the db machine.
    assert_eq!(node_of(&lab, &row.1), 2, "{row:?}");
    let url = format!("http://{}:8080/", lab.ip(2));
    wait("the web server on core-02", || {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &url])
            .status()
            .ok()
            .filter(|s| s.success())
    });
    // The two survivors still form a cluster (2 of 3 is a quorum).
    let set = lab.kvctl(&lab.url(3), &["set", "/after-failover", "ok"]);
    assert!(set.status.success(), "{}", text(&set));
}

// ---------------------------------------------------------------- sidekick

#[test]
fn sidekick() {
    let _s = serial();
    let mut lab = Lab::new();
    lab.start_cluster("bootstrap-static");
    // As in the book, the units are started once every machine has joined:
    // placement spreads the two servers over the machines it knows.
    wait("three machines", || {
        (lab.machines(1).lines().count() == 4).then_some(())
    });
    let units = [
        "apachet@8081.service",
        "apachet-discovery@8081.service",
        "apachet@8082.service",
        "apachet-discovery@8082.service",
    ];
    let mut args = vec!["start"];
    args.extend(units);
    let o = lab.keelctl_in(1, &example("sidekick"), &args);
    assert!(o.status.success(), "{}", text(&o));

    // Each sidekick runs beside its service and publishes its address.
    let rows = wait("four running units", || {
        let rows = lab.units(1);
        (rows.len() == 4 && rows.iter().all(|r| r.2 == "active" && r.3 == "running"))
            .then_some(rows)
    });
    let machine = |u: &str| rows.iter().find(|r| r.0 == u).map(|r| r.1.clone()).unwrap();
    for port in ["8081", "8082"] {
        assert_eq!(
            machine(&format!("apachet@{port}.service")),
            machine(&format!("apachet-discovery@{port}.service")),
            "{rows:?}"
        );
    }
    let n8081 = node_of(&lab, &machine("apachet@8081.service"));
    let n8082 = node_of(&lab, &machine("apachet@8082.service"));
    assert_ne!(n8081, n8082, "{rows:?}");
    let url = lab.url(2);
    let ls = |lab: &Lab| {
        let mut keys: Vec<String> = stdout(&lab.kvctl(&url, &["ls", "/services/apachet"]))
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    };
    let mut want = vec![
        format!("/services/apachet/{}", lab.ip(n8081)),
        format!("/services/apachet/{}", lab.ip(n8082)),
    ];
    want.sort();
    wait("both keys", || (ls(&lab) == want).then_some(()));
    for (n, port) in [(n8081, 8081), (n8082, 8082)] {
        let key = format!("/services/apachet/{}", lab.ip(n));
        let o = lab.kvctl(&url, &["-o", "extended", "get", &key]);
        let t = stdout(&o);
        let value = format!(
            "{{\"host\": \"core-0{n}\", \"ipv4_addr\": {}, \"port\": {port}}}",
            lab.ip(n)
        );
        assert!(t.ends_with(&format!("\n\n{value}\n")), "{t}");
        let ttl: u64 = t
            .lines()
            .find_map(|l| l.strip_prefix("TTL: "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no TTL in {t}"));
        assert!(ttl > 0 && ttl <= 30, "{t}");
    }

    // The 8082 server dies: its unit fails, BindsTo= stops the sidekick,
    // whose ExecStop= removes the key.
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            lab.root(n8082)
                .join("var/lib/keelson/fleet/records/apachet@8082.service.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pid = rec["main_pid"].as_i64().expect("a main PID") as i32;
    signal(pid, "-KILL");
    wait("apachet@8082 failed and its sidekick inactive", || {
        let rows = lab.units(1);
        let state = |u: &str| rows.iter().find(|r| r.0 == u).map(|r| r.2.clone());
        (state("apachet@8082.service").as_deref() == Some("failed")
            && state("apachet-discovery@8082.service").as_deref() == Some("inactive"))
        .then_some(())
    });
    let only = vec![format!("/services/apachet/{}", lab.ip(n8081))];
    wait("only the 8081 key", || (ls(&lab) == only).then_some(()));
}

// ---------------------------------------------------- bootstrap-discovery

#[test]
fn bootstrap_discovery() {
    let _s = serial();
    let mut lab = Lab::new();
    let dir = example("bootstrap-discovery");
    // The discovery service: a single-member kv on 127.0.0.1:4001, started
    // with the README's command line.
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("keelson kv --name discovery"))
        .expect("the README starts the discovery store");
    // The command without its redirection and `&`.
    let line = lab.rewrite(line.split(" 2>").next().unwrap_or_default().trim());
    let data = lab.path("discovery");
    let mut words = line.split_whitespace().skip(1);
    let mut args: Vec<String> = Vec::new();
    while let Some(w) = words.next() {
        if w == "--data-dir" {
            words.next();
            args.push(w.into());
            args.push(data.display().to_string());
        } else {
            args.push(w.into());
        }
    }
    let disc_url = format!("http://{}1:{}", lab.prefix, lab.port(4001));
    let log = std::fs::File::create(lab.path("discovery.log")).unwrap();
    lab.others.push(
        Command::new(KEELSON)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // The token, made by the example's script.
    let o = wait("the token", || {
        Command::new("sh")
            .arg(dir.join("new-token.sh"))
            .env("DISCOVERY", &disc_url)
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    assert!(
        stdout(&o).contains("/v2/keys/_etcd/registry/book-token"),
        "{}",
        text(&o)
    );

    // Two of three: the cluster does not form.
    lab.start_node("bootstrap-discovery", 1);
    lab.start_node("bootstrap-discovery", 2);
    let registry = |lab: &Lab| {
        stdout(&lab.kvctl(&disc_url, &["ls", "/_etcd/registry/book-token"]))
            .lines()
            .count()
    };
    wait("two members registered", || {
        (registry(&lab) == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let o = lab.kvctl(
        &lab.url(1),
        &["--total-timeout", "3s", "set", "/early", "x"],
    );
    assert!(
        !o.status.success(),
        "a write before the third member: {}",
        text(&o)
    );

    // The third arrives: three members, found through the token.
    lab.start_node("bootstrap-discovery", 3);
    let list = lab.wait_members(2, 3);
    for i in 1..=3 {
        assert!(list.contains(&format!("name=core-0{i} ")), "{list}");
    }
    assert_eq!(registry(&lab), 3);
    let set = lab.kvctl(&lab.url(3), &["set", "/found", "through-discovery"]);
    assert!(set.status.success(), "{}", text(&set));
    let get = lab.kvctl(&lab.url(1), &["get", "/found"]);
    assert_eq!(stdout(&get), "through-discovery\n");
    wait("three machines", || {
        (lab.machines(1).lines().count() == 4).then_some(())
    });
}

// --------------------------------------------------------- overlay-leases

fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn var(vars: &[(String, String)], k: &str) -> Option<String> {
    vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[test]
fn overlay_leases() {
    let _s = serial();
    let mut lab = Lab::new();
    let dir = example("overlay-leases");
    lab.start_cluster("overlay-leases");
    // The network config, from the example's file.
    let config = std::fs::read_to_string(dir.join("network.json")).unwrap();
    let o = lab.kvctl(
        &lab.url(1),
        &["set", "/coreos.com/network/config", config.trim()],
    );
    assert!(o.status.success(), "{}", text(&o));

    // Each node leases its own /24 and writes subnet.env under its root.
    let mut subnets = Vec::new();
    for i in 1..=3 {
        let file = lab.root(i).join("run/flannel/subnet.env");
        let vars = wait("subnet.env", || {
            let v = env_file(&file);
            var(&v, "FLANNEL_SUBNET").map(|_| v)
        });
        assert_eq!(
            var(&vars, "FLANNEL_NETWORK").as_deref(),
            Some("10.1.0.0/16")
        );
        assert_eq!(var(&vars, "FLANNEL_IPMASQ").as_deref(), Some("false"));
        let subnet = var(&vars, "FLANNEL_SUBNET").unwrap();
        assert!(
            subnet.starts_with("10.1.") && subnet.ends_with(".1/24"),
            "{subnet}"
        );
        subnets.push(subnet);
    }
    let mut distinct = subnets.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{subnets:?}");

    // The leases in the kv: one key per node, naming its address, with a TTL.
    let url = lab.url(2);
    let ls = stdout(&lab.kvctl(&url, &["ls", "/coreos.com/network/subnets"]));
    assert_eq!(ls.lines().count(), 3, "{ls}");
    for (i, subnet) in subnets.iter().enumerate() {
        let net = subnet.trim_end_matches(".1/24");
        let key = format!("/coreos.com/network/subnets/{net}.0-24");
        let o = lab.kvctl(&url, &["-o", "extended", "get", &key]);
        let t = stdout(&o);
        assert!(
            t.contains(&format!("\"PublicIP\":\"{}\"", lab.ip(i + 1))),
            "{key}: {}",
            text(&o)
        );
        let ttl: u64 = t
            .lines()
            .find_map(|l| l.strip_prefix("TTL: "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(ttl > 23 * 3600, "{t}");
    }

    // A restarted node keeps its subnet.
    let node = lab.nodes[0].take();
    if let Some(mut c) = node {
        signal(c.id() as i32, "-TERM");
        let _ = c.wait();
    }
    std::fs::remove_dir_all(lab.root(1).join("run")).unwrap();
    lab.start_node("overlay-leases", 1);
    let file = lab.root(1).join("run/flannel/subnet.env");
    let again = wait("subnet.env after the restart", || {
        var(&env_file(&file), "FLANNEL_SUBNET")
    });
    assert_eq!(again, subnets[0]);
}

// --------------------------------------------------------- rolling-update

#[test]
fn rolling_update() {
    let _s = serial();
    let mut lab = Lab::new();
    let work = lab.path("work");
    let bin = Path::new(KEELSON).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let store_ip = format!("{}10", lab.prefix);
    let log = std::fs::File::create(lab.path("script.log")).unwrap();
    let script = Command::new("bash")
        .arg(example("rolling-update").join("rolling-update.sh"))
        .arg(&work)
        .env("PATH", path)
        .env("STORE_IP", &store_ip)
        .env("STORE_PORT", free_port(&store_ip).to_string())
        .env("PEER_PORT", free_port(&store_ip).to_string())
        .env("SERVER_PORT", free_port(&store_ip).to_string())
        .env_remove("REBOOT_STRATEGY")
        .env_remove("KEELSON_ROOT")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    lab.others.push(script);
    let status = wait("the script to finish", || {
        lab.others[0].try_wait().ok().flatten()
    });
    let timeline = std::fs::read_to_string(work.join("timeline")).unwrap_or_default();
    let script_log = std::fs::read_to_string(lab.path("script.log")).unwrap_or_default();
    assert!(status.success(), "{status}\n{timeline}\n{script_log}");
    assert!(!timeline.contains("VIOLATION"), "{timeline}");

    // Each machine rebooted exactly once, holding the lock alone.
    let mut rebooted = Vec::new();
    for line in timeline.lines() {
        if let Some((node, holders)) = line.split_once(" reboots; lock holders: ") {
            let i: usize = node.trim_start_matches("core-0").parse().unwrap();
            assert_eq!(holders.trim(), i.to_string().repeat(32), "{timeline}");
            rebooted.push(i);
        }
    }
    rebooted.sort();
    assert_eq!(rebooted, [1, 2, 3], "{timeline}");
    // Every reboot ends (the machine is up) before the next begins.
    let events: Vec<&str> = timeline
        .lines()
        .filter(|l| l.ends_with(" is up again") || l.contains(" reboots; "))
        .collect();
    for pair in events.chunks(2) {
        let node = &pair[0][..7];
        assert_eq!(
            pair.get(1),
            Some(&format!("{node} is up again").as_str()),
            "{timeline}"
        );
    }
    // All on the new version, from the other slot, idle; the lock is free.
    for i in 1..=3 {
        let line = timeline
            .lines()
            .find(|l| l.starts_with(&format!("core-0{i}: ")))
            .unwrap_or_else(|| panic!("no summary for core-0{i} in {timeline}"));
        for want in [
            "COREOS_RELEASE_VERSION=766.3.0",
            "running from USR-B",
            "CURRENT_OP=UPDATE_STATUS_IDLE",
        ] {
            assert!(line.contains(want), "{line}");
        }
        let table: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(work.join(format!("core-0{i}/slots/slots.json"))).unwrap(),
        )
        .unwrap();
        assert!(
            table["b"]["priority"].as_u64() > table["a"]["priority"].as_u64(),
            "core-0{i}: {table}"
        );
    }
    assert!(timeline.ends_with("Available: 1\nMax: 1\n"), "{timeline}");
}
