//! Three hosts in network namespaces on a bridge, one real etcd 3.4 (v2 API),
//! an overlay daemon (`examples/overlayd`) per host, and a container namespace
//! behind each host's bridge (reference §14, scenarios N1, N3, N4).
//!
//! Everything lives in namespaces the test creates (`ko<pid><id>-…`),
//! including the bridge, so nothing touches the machine's own network; the
//! guard removes them (and kills the processes it started) even when an
//! assertion fails. Needs root, iproute2, iptables, ping and etcd: missing
//! tools fail the test (run `scripts/setup.sh`), they never skip it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keelson_netoverlay::env::SubnetEnv;
use keelson_netoverlay::Ipv4Net;

/// The tests share two cores; one lab at a time keeps timings sane.
static SERIAL: Mutex<()> = Mutex::new(());

const DEADLINE: Duration = Duration::from_secs(60);

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?} (run scripts/setup.sh): {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn try_run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn preflight() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "namespace tests need root (CAP_NET_ADMIN)"
    );
    for tool in ["ip", "etcd", "etcdctl", "ping", "iptables", "sysctl"] {
        assert!(
            try_run(&["sh", "-c", &format!("command -v {tool}")]),
            "{tool} is missing: run scripts/setup.sh"
        );
    }
}

fn overlayd() -> PathBuf {
    // target/<profile>/deps/<test> → target/<profile>/examples/overlayd
    let exe = std::env::current_exe().expect("current exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples/overlayd"))
        .expect("target dir");
    assert!(p.exists(), "{} missing: cargo test builds examples; run `cargo build -p keelson-netoverlay --examples`", p.display());
    p
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

struct Lab {
    tag: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    etcd: Option<Child>,
    daemons: Vec<Option<Child>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.daemons.iter_mut().flatten().chain(self.etcd.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Lab {
    fn new(id: &str, hosts: usize) -> Lab {
        preflight();
        let tag = format!("ko{}{id}", std::process::id());
        let mut lab = Lab {
            tag,
            dir: tempfile::tempdir().expect("tempdir"),
            namespaces: Vec::new(),
            etcd: None,
            daemons: (0..hosts).map(|_| None).collect(),
        };
        let sw = lab.ns("sw");
        run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        lab.attach("kv", "10.88.0.1");
        for i in 1..=hosts {
            let ns = lab.attach(&format!("h{i}"), &format!("10.88.0.1{i}"));
            run(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                "10.88.0.1",
            ]);
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
        }
        let data = lab.dir.path().join("etcd");
        let kv = lab.name("kv");
        let etcd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &kv,
                "etcd",
                "--name",
                "kv",
                "--enable-v2=true",
            ])
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                "http://10.88.0.1:2379",
                "--advertise-client-urls",
                "http://10.88.0.1:2379",
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "kv=http://127.0.0.1:2380",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        lab.etcd = Some(etcd);
        wait_for("etcd", || lab.etcdctl_ok(&["ls", "/"]).then_some(()));
        lab
    }

    fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.tag)
    }

    fn ns(&mut self, short: &str) -> String {
        let n = self.name(short);
        run(&["ip", "netns", "add", &n]);
        self.namespaces.push(n.clone());
        run(&["ip", "-n", &n, "link", "set", "lo", "up"]);
        n
    }

    /// A namespace with `eth0` = `addr/24` on the switch.
    fn attach(&mut self, short: &str, addr: &str) -> String {
        let ns = self.ns(short);
        let sw = self.name("sw");
        let port = format!("p{short}");
        run(&[
            "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
            "netns", &sw,
        ]);
        run(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    fn etcdctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.name("kv"),
            "etcdctl",
            "--endpoints",
            "http://10.88.0.1:2379",
        ])
        .args(args)
        .env("ETCDCTL_API", "2");
        c
    }

    fn etcdctl_ok(&self, args: &[&str]) -> bool {
        self.etcdctl_cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl_cmd(args).output().expect("etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn host_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{i}"))
    }

    fn env_file(&self, i: usize, network: &str) -> PathBuf {
        if network.is_empty() {
            self.host_dir(i).join("subnet.env")
        } else {
            self.host_dir(i)
                .join("networks")
                .join(format!("{network}.env"))
        }
    }

    fn daemon_cmd(&self, i: usize, extra: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name(&format!("h{i}"))])
            .arg(overlayd())
            .args([
                "--etcd-endpoints",
                "http://10.88.0.1:2379",
                "--iface",
                "eth0",
            ])
            .arg("--subnet-file")
            .arg(self.env_file(i, ""))
            .arg("--subnet-dir")
            .arg(self.host_dir(i).join("networks"))
            .args(extra);
        c
    }

    fn start(&mut self, i: usize, extra: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join(format!("h{i}.log"))).expect("log");
        let child = self
            .daemon_cmd(i, extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start overlayd");
        self.daemons[i - 1] = Some(child);
    }

    /// SIGTERM (a normal stop: kernel state must stay).
    fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.daemons[i - 1].take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }

    fn teardown(&self, i: usize, extra: &[&str]) {
        let out = self
            .daemon_cmd(i, &[&["--teardown"], extra].concat())
            .output()
            .expect("teardown");
        assert!(
            out.status.success(),
            "teardown: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("h{i}.log"))).unwrap_or_default()
    }

    fn subnet(&self, i: usize, network: &str) -> Ipv4Net {
        let path = self.env_file(i, network);
        wait_for(
            &format!("{} (log: {})", path.display(), self.log(i)),
            || {
                let text = std::fs::read_to_string(&path).ok()?;
                SubnetEnv::parse(&text).map(|e| Ipv4Net::new(e.subnet.addr(), e.subnet.prefix()))
            },
        )
    }

    fn env(&self, i: usize, network: &str) -> SubnetEnv {
        self.subnet(i, network);
        SubnetEnv::parse(&std::fs::read_to_string(self.env_file(i, network)).expect("env"))
            .expect("env")
    }

    /// A container namespace behind bridge `br` in host `i`, holding `.2`
    /// of the host's lease; returns its address.
    fn container(&mut self, i: usize, network: &str, br: &str) -> String {
        let env = self.env(i, network);
        let host = self.name(&format!("h{i}"));
        let c = self.ns(&format!("c{i}{network}"));
        let gw = env.subnet.gateway();
        let ip = std::net::Ipv4Addr::from(u32::from(env.subnet.addr()) + 2);
        let mtu = env.mtu.to_string();
        let len = env.subnet.prefix().to_string();
        if !try_run(&["ip", "-n", &host, "link", "show", br]) {
            run(&["ip", "-n", &host, "link", "add", br, "type", "bridge"]);
            run(&[
                "ip",
                "-n",
                &host,
                "addr",
                "add",
                &format!("{gw}/{len}"),
                "dev",
                br,
            ]);
            run(&["ip", "-n", &host, "link", "set", br, "mtu", &mtu, "up"]);
        }
        let port = format!("v{network}{i}");
        run(&[
            "ip", "link", "add", "eth0", "netns", &c, "mtu", &mtu, "type", "veth", "peer", "name",
            &port, "netns", &host, "mtu", &mtu,
        ]);
        run(&["ip", "-n", &host, "link", "set", &port, "master", br, "up"]);
        run(&[
            "ip",
            "-n",
            &c,
            "addr",
            "add",
            &format!("{ip}/{len}"),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &c, "link", "set", "eth0", "up"]);
        run(&[
            "ip",
            "-n",
            &c,
            "route",
            "add",
            "default",
            "via",
            &gw.to_string(),
        ]);
        ip.to_string()
    }

    fn ping(&self, from_ns: &str, to: &str) -> bool {
        try_run(&[
            "ip",
            "netns",
            "exec",
            &self.name(from_ns),
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            to,
        ])
    }

    fn wait_ping(&self, from_ns: &str, to: &str) {
        wait_for(&format!("ping {from_ns} -> {to}"), || {
            self.ping(from_ns, to).then_some(())
        });
    }

    fn routes(&self, i: usize) -> String {
        run(&[
            "ip",
            "-n",
            &self.name(&format!("h{i}")),
            "-4",
            "route",
            "show",
        ])
    }
}

/// A route line starting with `head` and carrying `flag`.
fn has_route(routes: &str, head: &str, flag: &str) -> bool {
    routes
        .lines()
        .any(|l| l.starts_with(head) && l.split_whitespace().any(|w| w == flag))
}

fn set_config(lab: &Lab, key: &str, doc: &str) {
    lab.etcdctl(&["set", key, doc]);
}

/// N1 + N3 + restart + removal for one backend.
fn backend_scenario(id: &str, backend: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = Lab::new(id, 3);
    set_config(
        &lab,
        "/coreos.com/network/config",
        &format!(r#"{{"Network":"10.1.0.0/16","Backend":{{"Type":"{backend}"}}}}"#),
    );
    for i in 1..=3 {
        lab.start(i, &[]);
    }
    // Distinct subnets inside the network, each published with its host's IP.
    let subnets: Vec<Ipv4Net> = (1..=3).map(|i| lab.subnet(i, "")).collect();
    let network: Ipv4Net = "10.1.0.0/16".parse().unwrap();
    for (i, s) in subnets.iter().enumerate() {
        assert!(network.contains_net(s) && s.prefix() == 24, "{s}");
        assert!(
            subnets.iter().filter(|t| *t == s).count() == 1,
            "duplicate {s}"
        );
        let value = lab.etcdctl(&[
            "get",
            &format!("/coreos.com/network/subnets/{}", s.key_name()),
        ]);
        assert!(
            value.contains(&format!("\"PublicIP\":\"10.88.0.1{}\"", i + 1)),
            "{value}"
        );
        match backend {
            "udp" => assert!(!value.contains("BackendType"), "{value}"),
            b => assert!(
                value.contains(&format!("\"BackendType\":\"{b}\"")),
                "{value}"
            ),
        }
        let env = lab.env(i + 1, "");
        let want_mtu = match backend {
            "udp" => 1472,
            "vxlan" => 1450,
            _ => 1500,
        };
        assert_eq!(env.mtu, want_mtu);
        assert!(!env.ip_masq);
    }
    // Containers on hosts 1, 2 and 3; 1 and 3 reach each other both ways.
    let c1 = lab.container(1, "", "kbr0");
    let c2 = lab.container(2, "", "kbr0");
    let c3 = lab.container(3, "", "kbr0");
    lab.wait_ping("c1", &c3);
    lab.wait_ping("c3", &c1);
    lab.wait_ping("c1", &c2);
    // Kernel state (reference §14.3 item 4).
    let r1 = lab.routes(1);
    let s3 = subnets[2];
    match backend {
        "host-gw" => assert!(
            r1.contains(&format!("{s3} via 10.88.0.13 dev eth0")),
            "{r1}"
        ),
        "vxlan" => assert!(
            has_route(
                &r1,
                &format!("{s3} via {} dev flannel.1", s3.addr()),
                "onlink"
            ),
            "{r1}"
        ),
        _ => assert!(r1.contains("10.1.0.0/16 dev flannel0"), "{r1}"),
    }
    // Restart host 1: the kernel routes of kernel backends stay during the
    // stop, and it comes back with the same subnet.
    lab.stop(1);
    if backend != "udp" {
        let during = lab.routes(1);
        assert!(
            during.contains(&s3.to_string()),
            "routes gone on a normal stop: {during}"
        );
    }
    std::fs::remove_file(lab.env_file(1, "")).ok();
    lab.start(1, &[]);
    assert_eq!(lab.subnet(1, ""), subnets[0], "restart changed the subnet");
    lab.wait_ping("c1", &c3);
    lab.wait_ping("c3", &c1);
    // Remove host 2: its routes disappear from the others.
    lab.stop(2);
    lab.teardown(2, &[]);
    let s2 = subnets[1];
    for i in [1, 3] {
        wait_for(&format!("{s2} withdrawn on h{i}"), || {
            let r = lab.routes(i);
            let gone = match backend {
                "udp" => !lab.ping(&format!("c{i}"), &c2),
                _ => !r.contains(&s2.to_string()),
            };
            gone.then_some(())
        });
    }
    assert!(!lab
        .etcdctl(&["ls", "/coreos.com/network/subnets"])
        .contains(&s2.key_name()));
    lab.wait_ping("c1", &c3);
}

#[test]
fn host_gw_three_hosts() {
    backend_scenario("g", "host-gw");
}

#[test]
fn vxlan_three_hosts() {
    backend_scenario("x", "vxlan");
}

#[test]
fn udp_three_hosts() {
    backend_scenario("u", "udp");
}

/// N4: two networks at once stay separate.
#[test]
fn two_networks_stay_separate() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = Lab::new("m", 2);
    set_config(
        &lab,
        "/coreos.com/network/blue/config",
        r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":1}}"#,
    );
    set_config(
        &lab,
        "/coreos.com/network/green/config",
        r#"{"Network":"10.2.0.0/16","Backend":{"Type":"vxlan","VNI":2}}"#,
    );
    for i in 1..=2 {
        lab.start(i, &["--networks", "blue,green"]);
    }
    let blue: Vec<Ipv4Net> = (1..=2).map(|i| lab.subnet(i, "blue")).collect();
    let green: Vec<Ipv4Net> = (1..=2).map(|i| lab.subnet(i, "green")).collect();
    assert!(blue
        .iter()
        .all(|s| "10.1.0.0/16".parse::<Ipv4Net>().unwrap().contains_net(s)));
    assert!(green
        .iter()
        .all(|s| "10.2.0.0/16".parse::<Ipv4Net>().unwrap().contains_net(s)));
    assert_ne!(blue[0], blue[1]);
    assert_ne!(green[0], green[1]);
    let ls = lab.etcdctl(&["ls", "--recursive", "/coreos.com/network"]);
    for s in &blue {
        assert!(
            ls.contains(&format!(
                "/coreos.com/network/blue/subnets/{}",
                s.key_name()
            )),
            "{ls}"
        );
    }
    for s in &green {
        assert!(
            ls.contains(&format!(
                "/coreos.com/network/green/subnets/{}",
                s.key_name()
            )),
            "{ls}"
        );
    }
    assert!(
        !lab.env_file(1, "").exists(),
        "multi-network mode writes no subnet.env"
    );
    let b1 = lab.container(1, "blue", "kbrb");
    let b2 = lab.container(2, "blue", "kbrb");
    let g1 = lab.container(1, "green", "kbrg");
    let g2 = lab.container(2, "green", "kbrg");
    lab.wait_ping("c1blue", &b2);
    lab.wait_ping("c2blue", &b1);
    lab.wait_ping("c1green", &g2);
    lab.wait_ping("c2green", &g1);
    // Each network's peers go through its own device only.
    let r = lab.routes(1);
    assert!(
        has_route(
            &r,
            &format!("{} via {} dev flannel.1", blue[1], blue[1].addr()),
            "onlink"
        ),
        "{r}"
    );
    assert!(
        has_route(
            &r,
            &format!("{} via {} dev flannel.2", green[1], green[1].addr()),
            "onlink"
        ),
        "{r}"
    );
    assert!(
        !r.contains(&format!("{} via {} dev flannel.2", blue[1], blue[1].addr())),
        "{r}"
    );
    assert!(
        !r.contains(&format!(
            "{} via {} dev flannel.1",
            green[1],
            green[1].addr()
        )),
        "{r}"
    );
}
