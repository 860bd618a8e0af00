//! The overlay as users run it: three hosts in network namespaces on a
//! bridge, Keelson's own kv (`keelson kv`) as the store, and the `keelson`
//! binary as the overlay daemon, called as `flanneld` through a symlink with
//! Go-style flags, with `FLANNELD_*` variables, and as `keelson overlay`.
//! `keelctl overlay` lists the leases; `mk-docker-opts.sh` (a symlink too)
//! turns `subnet.env` into Docker options (reference netoverlay.md §5, §8,
//! §14).
//!
//! Everything lives in namespaces the test creates (`kc<pid><id>-…`), the
//! bridge included; the guard removes them and kills the processes it started
//! even when an assertion fails. Needs root, iproute2, iptables and ping:
//! missing tools fail the test (run `scripts/setup.sh`), they never skip it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");
const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
const KV_URL: &str = "http://10.88.0.1:2379";
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
        run(&["id", "-u"]).trim() == "0",
        "namespace tests need root (CAP_NET_ADMIN)"
    );
    for tool in ["ip", "ping", "iptables", "sysctl"] {
        assert!(
            try_run(&["sh", "-c", &format!("command -v {tool}")]),
            "{tool} is missing: run scripts/setup.sh"
        );
    }
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

/// Symlinks to the `keelson` binary under the original tools' names.
fn links(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    for name in ["flanneld", "mk-docker-opts.sh"] {
        let link = bin.join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(KEELSON, &link).expect("symlink");
        }
    }
    bin
}

fn env_vars(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn var(vars: &[(String, String)], k: &str) -> Option<String> {
    vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

struct Lab {
    tag: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    kv: Option<Child>,
    daemons: Vec<Option<Child>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.daemons.iter_mut().flatten().chain(self.kv.as_mut()) {
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
        let mut lab = Lab {
            tag: format!("kc{}{id}", std::process::id()),
            dir: tempfile::tempdir().expect("tempdir"),
            namespaces: Vec::new(),
            kv: None,
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
        }
        let log = std::fs::File::create(lab.dir.path().join("kv.log")).expect("log");
        let kv = Command::new("ip")
            .args(["netns", "exec", &lab.name("kv"), KEELSON, "kv"])
            .args(["--name", "kv", "--data-dir"])
            .arg(lab.dir.path().join("kv-data"))
            .args([
                "--listen-client-urls",
                KV_URL,
                "--advertise-client-urls",
                KV_URL,
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "kv=http://127.0.0.1:2380",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keelson kv");
        lab.kv = Some(kv);
        wait_for("keelson kv", || {
            lab.in_kv(KVCTL, &["--endpoints", KV_URL, "ls", "/"])
                .status
                .success()
                .then_some(())
        });
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

    /// A command run inside the kv's namespace (where the store is reachable).
    fn in_kv(&self, prog: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name("kv"), prog])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    fn keelctl(&self, args: &[&str]) -> String {
        let out = self.in_kv(
            KEELCTL,
            &[&["overlay", "--endpoints", KV_URL], args].concat(),
        );
        assert!(
            out.status.success(),
            "keelctl overlay {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn root(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{i}"))
    }

    /// `--root` puts the default `/run/flannel/subnet.env` here.
    fn env_file(&self, i: usize) -> PathBuf {
        self.root(i).join("run/flannel/subnet.env")
    }

    /// Host 1: `flanneld` with Go-style flags; host 2: `flanneld` with
    /// `FLANNELD_*` variables only; others: `keelson overlay` with `--flags`.
    fn daemon_cmd(&self, i: usize, extra: &[&str]) -> Command {
        let flanneld = links(self.dir.path()).join("flanneld");
        let root = self.root(i).display().to_string();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name(&format!("h{i}"))]);
        match i {
            1 => {
                c.arg(&flanneld).args([
                    &format!("-etcd-endpoints={KV_URL}"),
                    "-iface",
                    "eth0",
                    &format!("-root={root}"),
                    "-docker-opts-file=/run/docker_opts.env",
                ]);
            }
            2 => {
                c.arg(&flanneld)
                    .env("FLANNELD_ETCD_ENDPOINTS", KV_URL)
                    .env("FLANNELD_IFACE", "eth0")
                    .env("FLANNELD_IP_MASQ", "f")
                    .env("FLANNELD_ROOT", &root);
            }
            _ => {
                c.args([KEELSON, "overlay", "--etcd-endpoints", KV_URL])
                    .args(["--iface", "eth0", "--root", &root])
                    .args(["--healthz-port", "9106"]);
            }
        }
        c.args(extra);
        c
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("h{i}.log"))).expect("log");
        let child = self
            .daemon_cmd(i, &[])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start flanneld");
        self.daemons[i - 1] = Some(child);
    }

    /// SIGTERM: a normal stop, which must succeed and keep kernel state.
    fn stop(&mut self, i: usize) {
        let mut c = self.daemons[i - 1].take().expect("running daemon");
        run(&["kill", "-TERM", &c.id().to_string()]);
        let status = c.wait().expect("wait");
        assert!(
            status.success(),
            "flanneld exited with {status} on SIGTERM: {}",
            self.log(i)
        );
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("h{i}.log"))).unwrap_or_default()
    }

    /// The host's lease (`FLANNEL_SUBNET` is its `.1` with the prefix).
    fn subnet(&self, i: usize) -> (String, String, String) {
        let path = self.env_file(i);
        wait_for(
            &format!("{} (log: {})", path.display(), self.log(i)),
            || {
                let vars = env_vars(&path);
                let sub = var(&vars, "FLANNEL_SUBNET")?;
                let mtu = var(&vars, "FLANNEL_MTU")?;
                let (gw, len) = sub.split_once('/')?;
                let o: Vec<&str> = gw.split('.').collect();
                (o.len() == 4).then(|| {
                    (
                        format!("{}.{}.{}.0/{len}", o[0], o[1], o[2]),
                        gw.to_string(),
                        mtu,
                    )
                })
            },
        )
    }

    /// A container namespace behind bridge `kbr0` in host `i`, holding `.2`
    /// of the host's lease; returns its address.
    fn container(&mut self, i: usize) -> String {
        let (subnet, gw, mtu) = self.subnet(i);
        let len = subnet
            .split_once('/')
            .map(|(_, l)| l.to_string())
            .expect("len");
        let ip = format!("{}.2", gw.rsplit_once('.').expect("gw").0);
        let host = self.name(&format!("h{i}"));
        let c = self.ns(&format!("c{i}"));
        run(&["ip", "-n", &host, "link", "add", "kbr0", "type", "bridge"]);
        run(&[
            "ip",
            "-n",
            &host,
            "addr",
            "add",
            &format!("{gw}/{len}"),
            "dev",
            "kbr0",
        ]);
        run(&["ip", "-n", &host, "link", "set", "kbr0", "mtu", &mtu, "up"]);
        let port = format!("v{i}");
        run(&[
            "ip", "link", "add", "eth0", "netns", &c, "mtu", &mtu, "type", "veth", "peer", "name",
            &port, "netns", &host, "mtu", &mtu,
        ]);
        run(&[
            "ip", "-n", &host, "link", "set", &port, "master", "kbr0", "up",
        ]);
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
        run(&["ip", "-n", &c, "route", "add", "default", "via", &gw]);
        ip
    }

    fn wait_ping(&self, from_ns: &str, to: &str) {
        let ns = self.name(from_ns);
        wait_for(&format!("ping {from_ns} -> {to}"), || {
            try_run(&["ip", "netns", "exec", &ns, "ping", "-c", "1", "-W", "1", to]).then_some(())
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

fn has_route(routes: &str, subnet: &str, dev: &str) -> bool {
    routes
        .lines()
        .any(|l| l.starts_with(subnet) && l.contains(&format!("dev {dev}")))
}

#[test]
fn vxlan_flanneld_on_keelson_kv() {
    let mut lab = Lab::new("vx", 3);
    let out = lab.in_kv(
        KVCTL,
        &[
            "--endpoints",
            KV_URL,
            "set",
            "/coreos.com/network/config",
            r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=3 {
        lab.start(i);
    }

    // Distinct /24s inside the network, listed by keelctl with their hosts.
    let subnets: Vec<String> = (1..=3).map(|i| lab.subnet(i).0).collect();
    for s in &subnets {
        assert!(s.starts_with("10.1.") && s.ends_with("/24"), "{s}");
        assert_eq!(
            subnets.iter().filter(|t| *t == s).count(),
            1,
            "duplicate {s}"
        );
    }
    let vars = env_vars(&lab.env_file(2));
    assert_eq!(
        var(&vars, "FLANNEL_NETWORK").as_deref(),
        Some("10.1.0.0/16")
    );
    assert_eq!(var(&vars, "FLANNEL_MTU").as_deref(), Some("1450"));
    assert_eq!(var(&vars, "FLANNEL_IPMASQ").as_deref(), Some("false"));
    let leases = lab.keelctl(&["leases"]);
    assert!(
        leases.starts_with("SUBNET\tPUBLIC IP\tBACKEND\tEXPIRES\n"),
        "{leases}"
    );
    for (i, s) in subnets.iter().enumerate() {
        assert!(
            leases
                .lines()
                .any(|l| l.starts_with(&format!("{s}\t10.88.0.1{}\tvxlan\t", i + 1))),
            "{s} missing from:\n{leases}"
        );
    }

    // Host 3's daemon serves flanneld's /healthz and Keelson's /metrics.
    let h3 = lab.name("h3");
    let get = |path: &str| {
        run(&[
            "ip",
            "netns",
            "exec",
            &h3,
            "bash",
            "-c",
            &format!(
                "exec 3<>/dev/tcp/10.88.0.13/9106; printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
            ),
        ])
    };
    let healthz = get("/healthz");
    assert!(
        healthz.starts_with("HTTP/1.0 200") || healthz.starts_with("HTTP/1.1 200"),
        "{healthz}"
    );
    let metrics = get("/metrics");
    let want = format!(
        "keelson_overlay_lease{{network=\"\",overlay=\"10.1.0.0/16\",subnet=\"{}\",mtu=\"1450\"}} 1\n",
        lab.subnet(3).1 + "/24"
    );
    assert!(metrics.contains(&want), "missing {want:?} in {metrics}");
    assert!(
        metrics.contains("keelson_overlay_leases_held 1\n"),
        "{metrics}"
    );

    // Host 1's daemon also wrote Docker options under its --root.
    let opts =
        std::fs::read_to_string(lab.root(1).join("run/docker_opts.env")).expect("docker opts file");
    let gw1 = lab.subnet(1).1;
    assert!(
        opts.contains(&format!("DOCKER_OPT_BIP=\"--bip={gw1}/24\"")),
        "{opts}"
    );
    assert!(opts.contains("DOCKER_OPT_MTU=\"--mtu=1450\""), "{opts}");

    // Containers reach each other across hosts, both ways.
    let c: Vec<String> = (1..=3).map(|i| lab.container(i)).collect();
    lab.wait_ping("c1", &c[2]);
    lab.wait_ping("c3", &c[0]);
    lab.wait_ping("c2", &c[0]);

    // Reservations through keelctl.
    let out = lab.keelctl(&["reserve", "10.1.250.0/24", "10.88.0.99"]);
    assert!(out.contains("reserved 10.1.250.0/24"), "{out}");
    let leases = lab.keelctl(&["leases"]);
    assert!(
        leases.contains("10.1.250.0/24\t10.88.0.99\tudp\treserved"),
        "{leases}"
    );
    let bad = lab.in_kv(
        KEELCTL,
        &[
            "overlay",
            "--endpoints",
            KV_URL,
            "reserve",
            "10.2.0.0/24",
            "10.88.0.99",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("does not fit"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    lab.keelctl(&["unreserve", "10.1.250.0/24"]);
    assert!(!lab.keelctl(&["leases"]).contains("10.1.250.0/24"));

    // SIGTERM: clean exit, routes stay; teardown removes them and the lease.
    lab.stop(1);
    let routes = lab.routes(1);
    assert!(has_route(&routes, &subnets[2], "flannel.1"), "{routes}");
    lab.wait_ping("c3", &c[0]);
    let out = lab
        .daemon_cmd(1, &["-teardown"])
        .output()
        .expect("teardown");
    assert!(
        out.status.success(),
        "teardown: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let routes = lab.routes(1);
    assert!(!routes.contains("flannel.1"), "{routes}");
    assert!(!lab.env_file(1).exists());
    let leases = lab.keelctl(&["leases"]);
    assert!(!leases.contains(&subnets[0]), "{leases}");
    // The other hosts withdraw host 1's routes once its lease is gone.
    wait_for("host 1's route withdrawn on host 3", || {
        (!has_route(&lab.routes(3), &subnets[0], "flannel.1")).then_some(())
    });
    wait_for("ping c3 -> c2 still works", || {
        try_run(&[
            "ip",
            "netns",
            "exec",
            &lab.name("c3"),
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            &c[1],
        ])
        .then_some(())
    });
}

#[test]
fn mk_docker_opts_through_its_symlink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = links(dir.path());
    let env = dir.path().join("subnet.env");
    std::fs::write(
        &env,
        "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.19.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    )
    .expect("write");
    let out_file = dir.path().join("docker_opts.env");
    let mk = |args: &[&str]| {
        Command::new(bin.join("mk-docker-opts.sh"))
            .arg("-f")
            .arg(&env)
            .arg("-d")
            .arg(&out_file)
            .args(args)
            .env("OPTS", "--debug")
            .output()
            .expect("mk-docker-opts.sh")
    };
    assert!(mk(&["-i"]).status.success());
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("out"),
        "DOCKER_OPT_BIP=\"--bip=10.1.19.1/24\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=false\"\nDOCKER_OPT_MTU=\"--mtu=1450\"\n"
    );
    assert!(mk(&["-c", "-m", "-k", "OPTS"]).status.success());
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("out"),
        "OPTS=\"--debug --bip=10.1.19.1/24 --mtu=1450\"\n"
    );
    // The same as a subcommand of keelson.
    let out = Command::new(KEELSON)
        .args(["overlay", "mk-docker-opts", "-c", "-f"])
        .arg(&env)
        .arg("-d")
        .arg(&out_file)
        .env_remove("DOCKER_OPTS")
        .output()
        .expect("keelson overlay mk-docker-opts");
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("out"),
        "DOCKER_OPTS=\"--bip=10.1.19.1/24 --ip-masq=false --mtu=1450\"\n"
    );
    // A bad FLANNEL_IPMASQ is the script's error, exit 1.
    std::fs::write(&env, "FLANNEL_IPMASQ=yes\n").expect("write");
    let out = mk(&["-i"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid value of FLANNEL_IPMASQ"));
}
