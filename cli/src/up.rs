//! `keelson up`: a local cluster in one command.
//!
//! Node *i* is a `keelson node` child process (kv member and fleet in one
//! process, see [`crate::node_runner`]) on the loopback address BASE+i
//! (127.0.0.11, .12, ... by default), each under its own root in the data
//! directory. One process per node is what a machine is in the book's
//! failure drills (scenarios.md §0.3: kill a node = kill its process), and
//! it keeps nodes independent: one dying leaves the others running. The
//! layout (node count, addresses, cluster token) is saved in the data
//! directory, so running `keelson up` again restarts the same cluster with
//! the same member names and IDs.
//!
//! Node 1's kv also listens on 127.0.0.1:2379, where `kvctl` and `keelctl`
//! look when given no settings (`keelctl` falls back to it when fleetctl's
//! default socket `/var/run/fleet.sock` does not exist).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use keelson_kv::client::{HttpKvClient, KvClient};
use keelson_scheduler::{FleetClient, Keys};

/// `keelson up`'s flags.
#[derive(Debug, Parser)]
#[command(
    name = "keelson up",
    about = "Start a local cluster of N nodes on loopback addresses (kv member and fleet on each) and show its status",
    long_about = "Start a local cluster of N nodes on loopback addresses and show its status until Ctrl-C.\n\n\
Node i runs a kv member and fleet (agent and engine) in one `keelson node` process on \
BASE+i (127.0.0.11, 127.0.0.12, ... by default), with its files under DATA_DIR/core-0i and \
its log in DATA_DIR/logs/core-0i.log. Node 1's kv also answers on 127.0.0.1:2379, so \
`kvctl` and `keelctl` work without settings. Running it again on the same data directory \
restarts the same cluster. Ctrl-C or SIGTERM stops every node and leaves nothing running."
)]
pub struct UpFlags {
    /// Number of nodes (default 3; on a restart, the saved number).
    #[arg(long)]
    pub nodes: Option<u16>,
    /// Where the nodes keep their data and logs (created if missing).
    #[arg(long = "data-dir", default_value = "keelson-up.data")]
    pub data_dir: PathBuf,
    /// Node i listens on this address plus i (default 127.0.0.10).
    #[arg(long = "base-ip")]
    pub base_ip: Option<Ipv4Addr>,
    /// The kv client port on every node's address (default 2379).
    #[arg(long = "client-port")]
    pub client_port: Option<u16>,
    /// The kv peer port on every node's address (default 2380).
    #[arg(long = "peer-port")]
    pub peer_port: Option<u16>,
    /// Do not also serve node 1's kv on 127.0.0.1:2379.
    #[arg(long = "no-default-endpoint")]
    pub no_default_endpoint: bool,
    /// Print the status as lines when it changes, even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

/// The saved shape of a cluster: what must not change between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub nodes: u16,
    pub base_ip: Ipv4Addr,
    pub client_port: u16,
    pub peer_port: u16,
    pub token: String,
}

const LAYOUT_FILE: &str = "cluster.json";

impl Layout {
    fn to_json(&self) -> String {
        serde_json::json!({
            "nodes": self.nodes,
            "base_ip": self.base_ip.to_string(),
            "client_port": self.client_port,
            "peer_port": self.peer_port,
            "token": self.token,
        })
        .to_string()
    }

    fn from_json(text: &str) -> anyhow::Result<Layout> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        let num = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_u64())
                .and_then(|x| u16::try_from(x).ok())
                .ok_or_else(|| anyhow!("missing or invalid {k:?}"))
        };
        let text = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("missing or invalid {k:?}"))
        };
        Ok(Layout {
            nodes: num("nodes")?,
            base_ip: text("base_ip")?
                .parse()
                .map_err(|_| anyhow!("invalid \"base_ip\""))?,
            client_port: num("client_port")?,
            peer_port: num("peer_port")?,
            token: text("token")?,
        })
    }

    /// The saved layout, checked against the flags; or a new one from them.
    pub fn resolve(flags: &UpFlags, saved: Option<Layout>) -> anyhow::Result<Layout> {
        let layout = match saved {
            Some(s) => {
                let clash = |what: &str, given: String, saved: String| {
                    anyhow!(
                        "{} holds a cluster with {what} {saved}, not {given}; run without --{} or use another --data-dir",
                        flags.data_dir.display(),
                        what.replace(' ', "-")
                    )
                };
                if let Some(n) = flags.nodes.filter(|n| *n != s.nodes) {
                    return Err(clash("nodes", n.to_string(), s.nodes.to_string()));
                }
                if let Some(ip) = flags.base_ip.filter(|ip| *ip != s.base_ip) {
                    return Err(clash("base ip", ip.to_string(), s.base_ip.to_string()));
                }
                if let Some(p) = flags.client_port.filter(|p| *p != s.client_port) {
                    return Err(clash(
                        "client port",
                        p.to_string(),
                        s.client_port.to_string(),
                    ));
                }
                if let Some(p) = flags.peer_port.filter(|p| *p != s.peer_port) {
                    return Err(clash("peer port", p.to_string(), s.peer_port.to_string()));
                }
                s
            }
            None => Layout {
                nodes: flags.nodes.unwrap_or(3),
                base_ip: flags.base_ip.unwrap_or(Ipv4Addr::new(127, 0, 0, 10)),
                client_port: flags.client_port.unwrap_or(2379),
                peer_port: flags.peer_port.unwrap_or(2380),
                token: new_token()?,
            },
        };
        if layout.nodes == 0 || layout.nodes > 99 {
            bail!("--nodes must be between 1 and 99");
        }
        let last = u32::from(layout.base_ip.octets()[3]) + u32::from(layout.nodes);
        if last > 254 {
            bail!(
                "--base-ip {} leaves no room for {} nodes (the last address would end in .{last})",
                layout.base_ip,
                layout.nodes
            );
        }
        if !layout.base_ip.is_loopback() {
            bail!("--base-ip must be a loopback address (127.x.y.z)");
        }
        if layout.client_port == layout.peer_port {
            bail!("--client-port and --peer-port must differ");
        }
        Ok(layout)
    }

    pub fn node(&self, i: u16) -> NodeLayout {
        let o = self.base_ip.octets();
        // `resolve` checked that the last octet does not overflow.
        let last = o[3].saturating_add(u8::try_from(i).unwrap_or(u8::MAX));
        let ip = Ipv4Addr::new(o[0], o[1], o[2], last);
        NodeLayout {
            index: i,
            name: format!("core-{i:02}"),
            machine_id: machine_id(i),
            client_url: format!("http://{ip}:{}", self.client_port),
            peer_url: format!("http://{ip}:{}", self.peer_port),
            ip,
        }
    }

    pub fn all(&self) -> Vec<NodeLayout> {
        (1..=self.nodes).map(|i| self.node(i)).collect()
    }
}

/// One node's names and addresses.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    pub index: u16,
    pub name: String,
    pub machine_id: String,
    pub ip: Ipv4Addr,
    pub client_url: String,
    pub peer_url: String,
}

/// The book's fixed machine IDs: core-01 is `1111…`, core-02 `2222…`.
pub fn machine_id(i: u16) -> String {
    if (1..=9).contains(&i) {
        i.to_string().repeat(32)
    } else {
        format!("{i:032x}")
    }
}

fn new_token() -> anyhow::Result<String> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .context("reading /proc/sys/kernel/random/uuid for a cluster token")?;
    Ok(format!("keelson-up-{}", uuid.trim()))
}

/// The arguments of `keelson node` for node `n`.
pub fn node_args(
    layout: &Layout,
    n: &NodeLayout,
    root: &Path,
    default_endpoint: bool,
    parent: u32,
) -> Vec<OsString> {
    let nodes = layout.all();
    let initial_cluster = nodes
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    let mut listen = n.client_url.clone();
    if default_endpoint && n.index == 1 {
        listen.push_str(",http://127.0.0.1:2379");
    }
    // Its own member first; the others if it is down.
    let mut servers = vec![n.client_url.clone()];
    servers.extend(
        nodes
            .iter()
            .filter(|m| m.index != n.index)
            .map(|m| m.client_url.clone()),
    );
    let kv = [
        format!("--name={}", n.name),
        "--data-dir=/var/lib/etcd2".to_owned(),
        format!("--listen-client-urls={listen}"),
        format!("--advertise-client-urls={}", n.client_url),
        format!("--listen-peer-urls={}", n.peer_url),
        format!("--initial-advertise-peer-urls={}", n.peer_url),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-token={}", layout.token),
        "--initial-cluster-state=new".to_owned(),
    ];
    let fleet = [
        format!("--etcd-servers={}", servers.join(",")),
        format!("--metadata=node={}", n.index),
        format!("--public-ip={}", n.ip),
        format!("--machine-id={}", n.machine_id),
        format!("--host-name={}", n.name),
    ];
    let mut args: Vec<OsString> = vec![
        "node".into(),
        "--name".into(),
        n.name.clone().into(),
        "--root".into(),
        root.as_os_str().to_owned(),
        "--services".into(),
        "kv,fleet".into(),
        "--exit-with-parent".into(),
        parent.to_string().into(),
    ];
    args.extend(kv.iter().map(|a| OsString::from(format!("--kv-arg={a}"))));
    args.extend(
        fleet
            .iter()
            .map(|a| OsString::from(format!("--fleet-arg={a}"))),
    );
    args
}

/// A running (or exited) node.
struct NodeProc {
    layout: NodeLayout,
    root: PathBuf,
    log: PathBuf,
    child: Child,
    exited: Option<String>,
}

impl NodeProc {
    fn poll(&mut self) {
        if self.exited.is_none() {
            match self.child.try_wait() {
                Ok(Some(st)) => self.exited = Some(st.to_string()),
                Ok(None) => {}
                Err(e) => self.exited = Some(format!("unknown ({e})")),
            }
        }
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// The kernel start time of a process (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// After a node had to be killed: kill the process groups of the units its
/// supervisor recorded, which a graceful stop would have stopped.
fn kill_recorded_units(root: &Path) {
    let dir = root.join("var/lib/keelson/fleet/records");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let pid = v
            .get("main_pid")
            .and_then(|p| p.as_i64())
            .and_then(|p| i32::try_from(p).ok());
        let started = v.get("main_start_time").and_then(|s| s.as_u64());
        if let (Some(pid), Some(started)) = (pid, started) {
            if start_time(pid) == Some(started) {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// What the status view shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Status {
    rows: Vec<[String; 4]>,
    leader: Option<String>,
    members: Option<usize>,
    machines: Vec<[String; 3]>,
    units: Vec<[String; 4]>,
}

impl Status {
    fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "members: {}, leader: {}, machines: {}, units: {}",
            self.members
                .map_or_else(|| "?".to_owned(), |m| m.to_string()),
            self.leader.as_deref().unwrap_or("none"),
            self.machines.len(),
            self.units.len()
        );
        let mut t = vec![[
            "NODE".to_owned(),
            "ADDRESS".to_owned(),
            "PROCESS".to_owned(),
            "KV".to_owned(),
        ]];
        t.extend(self.rows.iter().cloned());
        s.push_str(&table(&t));
        let mut t = vec![["MACHINE".to_owned(), "IP".to_owned(), "METADATA".to_owned()]];
        t.extend(self.machines.iter().cloned());
        s.push_str(&table(&t));
        if !self.units.is_empty() {
            let mut t = vec![[
                "UNIT".to_owned(),
                "MACHINE".to_owned(),
                "ACTIVE".to_owned(),
                "SUB".to_owned(),
            ]];
            t.extend(self.units.iter().cloned());
            s.push_str(&table(&t));
        }
        s
    }
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = width[i]);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s.push('\n');
    s
}

/// Clients the status view reuses between refreshes.
struct Watcher {
    per_node: Vec<HttpKvClient>,
    cluster: Arc<HttpKvClient>,
    fleet: Option<FleetClient>,
}

const PROBE: Duration = Duration::from_millis(1500);

impl Watcher {
    fn new(layout: &Layout) -> anyhow::Result<Watcher> {
        let nodes = layout.all();
        let per_node = nodes
            .iter()
            .map(|n| {
                HttpKvClient::builder()
                    .endpoint(n.client_url.clone())
                    .request_timeout(PROBE)
                    .connect_timeout(PROBE)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = Arc::new(
            HttpKvClient::builder()
                .endpoints(nodes.iter().map(|n| n.client_url.clone()))
                .request_timeout(PROBE)
                .connect_timeout(PROBE)
                .build()?,
        );
        Ok(Watcher {
            per_node,
            cluster,
            fleet: None,
        })
    }

    async fn status(&mut self, procs: &[NodeProc]) -> Status {
        let mut st = Status::default();
        for (p, kv) in procs.iter().zip(&self.per_node) {
            let process = match &p.exited {
                Some(why) => format!("exited ({why})"),
                None => format!("pid {}", p.child.id()),
            };
            let role = if p.exited.is_some() {
                "-".to_owned()
            } else {
                match tokio::time::timeout(PROBE, kv.stats("self")).await {
                    Ok(Ok(v)) => match v.get("state").and_then(|s| s.as_str()) {
                        Some("StateLeader") => {
                            st.leader = Some(p.layout.name.clone());
                            "leader".to_owned()
                        }
                        Some(_) => "follower".to_owned(),
                        None => "?".to_owned(),
                    },
                    _ => "unreachable".to_owned(),
                }
            };
            st.rows.push([
                p.layout.name.clone(),
                p.layout.ip.to_string(),
                process,
                role,
            ]);
        }
        if let Ok(Ok(m)) = tokio::time::timeout(PROBE, self.cluster.members()).await {
            st.members = Some(m.len());
        }
        if self.fleet.is_none() {
            let kv: Arc<dyn KvClient> = self.cluster.clone();
            if let Ok(Ok(c)) =
                tokio::time::timeout(PROBE, FleetClient::connect(kv, Keys::default())).await
            {
                self.fleet = Some(c);
            }
        }
        if let Some(f) = &self.fleet {
            let name_of = |id: &str| {
                procs
                    .iter()
                    .find(|p| p.layout.machine_id == id)
                    .map_or_else(|| id.to_owned(), |p| p.layout.name.clone())
            };
            for m in f.list_machines() {
                let md = m
                    .metadata
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                st.machines.push([
                    name_of(&m.id),
                    m.public_ip,
                    if md.is_empty() { "-".into() } else { md },
                ]);
            }
            for u in f.list_units() {
                st.units
                    .push([u.name.clone(), name_of(&u.machine_id), u.active, u.sub]);
            }
        }
        st
    }
}

fn header(layout: &Layout, data: &Path, default_endpoint: bool) -> String {
    let nodes = layout.all();
    let endpoints = nodes
        .iter()
        .map(|n| n.client_url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let sock = data.join(&nodes[0].name).join("var/run/fleet.sock");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "keelson up: {} node{} ({}), data in {}",
        layout.nodes,
        if layout.nodes == 1 { "" } else { "s" },
        nodes
            .iter()
            .map(|n| format!("{} {}", n.name, n.ip))
            .collect::<Vec<_>>()
            .join(", "),
        data.display()
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "  export ETCDCTL_ENDPOINTS={endpoints}");
    let _ = writeln!(s, "  export FLEETCTL_ENDPOINT=unix://{}", sock.display());
    let _ = writeln!(
        s,
        "  logs: {}",
        data.join("logs").join("core-NN.log").display()
    );
    let _ = writeln!(s);
    if default_endpoint {
        let _ = writeln!(
            s,
            "kvctl and keelctl also work with no settings: {}'s kv answers on http://127.0.0.1:2379.",
            nodes[0].name
        );
    }
    let _ = writeln!(s, "Ctrl-C stops the cluster.");
    s
}

fn pid_alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// Refuses a data directory that a live `keelson up` is using.
fn claim(data: &Path) -> anyhow::Result<PathBuf> {
    let pidfile = data.join("up.pid");
    if let Ok(text) = std::fs::read_to_string(&pidfile) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let is_up = cmdline.split(|b| *b == 0).any(|a| a == b"up");
            if pid_alive(pid) && is_up {
                bail!(
                    "{} is in use by a keelson up that is still running (pid {pid}); stop it first",
                    data.display()
                );
            }
        }
    }
    std::fs::write(&pidfile, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pidfile.display()))?;
    Ok(pidfile)
}

/// Fails early, with the reason, when an address a node needs is taken.
fn check_ports(layout: &Layout, default_endpoint: bool) -> anyhow::Result<()> {
    let mut addrs: Vec<(String, &str)> = Vec::new();
    for n in layout.all() {
        addrs.push((format!("{}:{}", n.ip, layout.client_port), "kv client"));
        addrs.push((format!("{}:{}", n.ip, layout.peer_port), "kv peer"));
    }
    if default_endpoint {
        addrs.push(("127.0.0.1:2379".to_owned(), "default kv client"));
    }
    for (addr, what) in addrs {
        if let Err(e) = std::net::TcpListener::bind(addr.as_str()) {
            let hint = if addr == "127.0.0.1:2379" {
                " (another etcd or keelson kv? stop it, or pass --no-default-endpoint)"
            } else {
                " (another keelson up? stop it, or choose --base-ip or ports)"
            };
            bail!("cannot use {addr} for the {what} URL: {e}{hint}");
        }
    }
    Ok(())
}

/// How long nodes get to stop gracefully before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(45);

/// `keelson up ARGS`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut argv = vec![OsString::from("keelson up")];
    argv.extend(args);
    let flags = match UpFlags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(flags) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keelson up: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(flags: UpFlags) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&flags.data_dir)
        .with_context(|| format!("creating {}", flags.data_dir.display()))?;
    let data = std::fs::canonicalize(&flags.data_dir)
        .with_context(|| format!("resolving {}", flags.data_dir.display()))?;
    let layout_path = data.join(LAYOUT_FILE);
    let saved = match std::fs::read_to_string(&layout_path) {
        Ok(t) => Some(
            Layout::from_json(&t).with_context(|| format!("reading {}", layout_path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", layout_path.display())),
    };
    let restart = saved.is_some();
    let layout = Layout::resolve(&flags, saved)?;
    let pidfile = claim(&data)?;
    if let Err(e) = check_ports(&layout, !flags.no_default_endpoint) {
        let _ = std::fs::remove_file(&pidfile);
        return Err(e);
    }
    std::fs::write(&layout_path, layout.to_json())
        .with_context(|| format!("writing {}", layout_path.display()))?;
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let exe = std::env::current_exe().context("finding the keelson binary")?;
    let default_endpoint = !flags.no_default_endpoint;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Watch the signals before any child exists, so none is missed.
    let (mut term, mut int) = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;

    let mut procs: Vec<NodeProc> = Vec::new();
    let started = (|| -> anyhow::Result<()> {
        for n in layout.all() {
            let root = data.join(&n.name);
            std::fs::create_dir_all(root.join("etc"))
                .with_context(|| format!("creating {}", root.display()))?;
            let log = logs.join(format!("{}.log", n.name));
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("opening {}", log.display()))?;
            let _ = writeln!(
                file,
                "--- keelson up: {} {} on {} ---",
                if restart { "restarting" } else { "starting" },
                n.name,
                n.ip
            );
            let err = file
                .try_clone()
                .with_context(|| format!("opening {}", log.display()))?;
            let child = Command::new(&exe)
                .args(node_args(
                    &layout,
                    &n,
                    &root,
                    default_endpoint,
                    std::process::id(),
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::from(file))
                .stderr(Stdio::from(err))
                .spawn()
                .with_context(|| format!("starting {}", n.name))?;
            procs.push(NodeProc {
                layout: n,
                root,
                log,
                child,
                exited: None,
            });
        }
        Ok(())
    })();
    if let Err(e) = started {
        eprintln!("keelson up: {e:#}");
        // Whatever started is stopped; the exit status is 1 either way.
        let _ = rt.block_on(stop(&mut procs, &mut term, &mut int));
        let _ = std::fs::remove_file(&pidfile);
        return Ok(ExitCode::from(1));
    }

    let head = header(&layout, &data, default_endpoint);
    let tty = std::io::stdout().is_terminal() && !flags.plain;
    if !tty {
        println!("{head}");
        let _ = std::io::stdout().flush();
    }
    let mut watcher = Watcher::new(&layout)?;
    let mut last_shown = String::new();
    let mut reported_exits = 0usize;
    let code = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick.tick() => {}
            }
            for p in procs.iter_mut() {
                p.poll();
            }
            let exited: Vec<&NodeProc> = procs.iter().filter(|p| p.exited.is_some()).collect();
            if exited.len() > reported_exits {
                reported_exits = exited.len();
                if !tty {
                    for p in &exited {
                        println!("{} exited; see {}", p.layout.name, p.log.display());
                    }
                }
            }
            let status = watcher.status(&procs).await.render();
            if tty {
                let mut out = String::from("\x1b[H\x1b[2J");
                out.push_str(&head);
                out.push('\n');
                out.push_str(&status);
                for p in procs.iter().filter(|p| p.exited.is_some()) {
                    let _ = writeln!(out, "{} exited; see {}", p.layout.name, p.log.display());
                }
                print!("{out}");
                let _ = std::io::stdout().flush();
            } else if status != last_shown {
                print!("{status}");
                let _ = std::io::stdout().flush();
                last_shown = status;
            }
        }
        println!("keelson up: stopping {} node(s)...", procs.len());
        stop(&mut procs, &mut term, &mut int).await
    });
    drop(watcher);
    let _ = std::fs::remove_file(&pidfile);
    println!("keelson up: stopped; data kept in {}", data.display());
    Ok(code)
}

/// SIGTERM every node, wait for each (a second Ctrl-C, or the grace
/// period, kills the rest), and reap them all.
async fn stop(
    procs: &mut [NodeProc],
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> ExitCode {
    for p in procs.iter_mut() {
        p.poll();
        if p.exited.is_none() {
            signal(p.child.id(), rustix::process::Signal::TERM);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    let mut forced = false;
    loop {
        for p in procs.iter_mut() {
            p.poll();
        }
        if procs.iter().all(|p| p.exited.is_some()) {
            break;
        }
        if Instant::now() >= deadline {
            forced = true;
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = term.recv() => { forced = true; break; }
            _ = int.recv() => { forced = true; break; }
        }
    }
    let mut ok = true;
    for p in procs.iter_mut() {
        // A node that died on its own, or was killed, left its units
        // running in their own process groups.
        let clean = p.exited.as_deref() == Some("exit status: 0");
        if p.exited.is_none() {
            eprintln!(
                "keelson up: {} did not stop in time; killing it",
                p.layout.name
            );
            let _ = p.child.kill();
            match p.child.wait() {
                Ok(st) => p.exited = Some(st.to_string()),
                Err(e) => p.exited = Some(format!("unknown ({e})")),
            }
            kill_recorded_units(&p.root);
            ok = false;
        } else if !clean {
            kill_recorded_units(&p.root);
            eprintln!(
                "keelson up: {} ended with {}; see {}",
                p.layout.name,
                p.exited.as_deref().unwrap_or("?"),
                p.log.display()
            );
            ok = false;
        }
    }
    if ok && !forced {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> UpFlags {
        let mut v = vec!["keelson up"];
        v.extend(args);
        UpFlags::try_parse_from(v).unwrap()
    }

    #[test]
    fn layout_addresses_and_ids() {
        let l = Layout::resolve(&flags(&[]), None).unwrap();
        assert_eq!(l.nodes, 3);
        let n = l.all();
        assert_eq!(n[0].name, "core-01");
        assert_eq!(n[0].ip, Ipv4Addr::new(127, 0, 0, 11));
        assert_eq!(n[2].client_url, "http://127.0.0.13:2379");
        assert_eq!(n[1].peer_url, "http://127.0.0.12:2380");
        assert_eq!(n[1].machine_id, "2".repeat(32));
        assert_eq!(machine_id(12).len(), 32);
        let back = Layout::from_json(&l.to_json()).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn saved_layout_wins_and_clashes_are_refused() {
        let saved = Layout::resolve(&flags(&["--nodes", "5"]), None).unwrap();
        let again = Layout::resolve(&flags(&[]), Some(saved.clone())).unwrap();
        assert_eq!(again, saved);
        let err = Layout::resolve(&flags(&["--nodes", "3"]), Some(saved)).unwrap_err();
        assert!(err.to_string().contains("nodes 5, not 3"), "{err}");
        assert!(Layout::resolve(&flags(&["--nodes", "0"]), None).is_err());
        assert!(
            Layout::resolve(&flags(&["--base-ip", "127.0.0.250", "--nodes", "9"]), None).is_err()
        );
        assert!(Layout::resolve(&flags(&["--base-ip", "10.0.0.10"]), None).is_err());
    }

    #[test]
    fn node_arguments() {
        let l = Layout::resolve(&flags(&["--nodes", "2"]), None).unwrap();
        let n = l.node(1);
        let a: Vec<String> = node_args(&l, &n, Path::new("/d/core-01"), true, 42)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            a.contains(
                &"--kv-arg=--listen-client-urls=http://127.0.0.11:2379,http://127.0.0.1:2379"
                    .to_owned()
            ),
            "{a:?}"
        );
        assert!(a.contains(&"--kv-arg=--initial-cluster=core-01=http://127.0.0.11:2380,core-02=http://127.0.0.12:2380".to_owned()), "{a:?}");
        assert!(
            a.contains(
                &"--fleet-arg=--etcd-servers=http://127.0.0.11:2379,http://127.0.0.12:2379"
                    .to_owned()
            ),
            "{a:?}"
        );
        let b = node_args(&l, &l.node(2), Path::new("/d/core-02"), true, 42);
        assert!(b
            .iter()
            .all(|x| !x.to_string_lossy().contains("127.0.0.1:2379")));
    }

    #[test]
    fn status_renders_a_summary_line() {
        let st = Status {
            rows: vec![[
                "core-01".into(),
                "127.0.0.11".into(),
                "pid 1".into(),
                "leader".into(),
            ]],
            leader: Some("core-01".into()),
            members: Some(1),
            machines: vec![["core-01".into(), "127.0.0.11".into(), "node=1".into()]],
            units: vec![],
        };
        let r = st.render();
        assert!(
            r.starts_with("members: 1, leader: core-01, machines: 1, units: 0\n"),
            "{r}"
        );
        assert!(r.contains("core-01  127.0.0.11  pid 1    leader\n"), "{r}");
    }
}
