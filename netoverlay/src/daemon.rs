//! [`Overlay`]: the daemon. It wires a [`LeaseManager`] per network to a
//! [`KvClient`] and a [`Backend`], performing what the manager decides; all
//! policy lives in the manager, all kernel work in the backend, so this file
//! is only the loop that carries results between them.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Utc;
use keelson_kv::client::{
    GetOptions, HttpKvClient, KvClient, KvError, Precondition, WatchEvent, Watcher, WatcherOptions,
};
use keelson_kv::v2::{Action as KvAction, ErrorCode};
use tokio::sync::{mpsc, watch};

use crate::backend::{self, Backend, BackendError, ExternalInterface, Kernel};
use crate::cidr::Ipv4Net;
use crate::config::{ConfigError, NetworkConfig};
use crate::env::{under_root, write_docker_opts, DockerOptsOptions, EnvError, SubnetEnv};
use crate::iptables;
use crate::lease::{config_key, lease_key, subnets_dir, Lease};
use crate::manager::{Action, Input, LeaseError, LeaseEvent, LeaseManager, ManagerOptions};

/// flanneld's options (reference §8). Paths are taken under `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// `--etcd-endpoints` (`http://127.0.0.1:4001,http://127.0.0.1:2379`).
    pub etcd_endpoints: Vec<String>,
    /// `--etcd-prefix` (`/coreos.com/network`).
    pub etcd_prefix: String,
    /// `--iface`: interface name or one of its IPv4 addresses; default: the
    /// interface of the default route.
    pub iface: Option<String>,
    /// `--public-ip`: address published in leases; default: the interface's.
    pub public_ip: Option<Ipv4Addr>,
    /// `--subnet-file` (`/run/flannel/subnet.env`).
    pub subnet_file: PathBuf,
    /// `--subnet-dir` (`/run/flannel/networks`), multi-network mode.
    pub subnet_dir: PathBuf,
    /// `--ip-masq`.
    pub ip_masq: bool,
    /// `--networks`: empty = the single default network.
    pub networks: Vec<String>,
    /// `--root` (`/`).
    pub root: PathBuf,
    /// Keelson: also write the Docker options file (`mk-docker-opts -i`) here.
    pub docker_opts_file: Option<PathBuf>,
    /// `--iptables-forward-rules` (true).
    pub forward_rules: bool,
    /// How often kernel state and iptables rules are re-checked (10 s).
    pub resync_interval: StdDuration,
    /// Lease protocol tunables (flannel's defaults).
    pub lease: ManagerOptions,
    /// udp data path tunables (packets per system call).
    pub udp: backend::udp::UdpOptions,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            etcd_endpoints: vec![
                "http://127.0.0.1:4001".into(),
                "http://127.0.0.1:2379".into(),
            ],
            etcd_prefix: "/coreos.com/network".into(),
            iface: None,
            public_ip: None,
            subnet_file: "/run/flannel/subnet.env".into(),
            subnet_dir: "/run/flannel/networks".into(),
            ip_masq: false,
            networks: Vec::new(),
            root: "/".into(),
            docker_opts_file: None,
            forward_rules: true,
            resync_interval: StdDuration::from_secs(10),
            lease: ManagerOptions::default(),
            udp: backend::udp::UdpOptions::default(),
        }
    }
}

impl OverlayConfig {
    /// The env file of a network (`""` = default network).
    pub fn env_file(&self, network: &str) -> PathBuf {
        if network.is_empty() {
            under_root(&self.root, &self.subnet_file)
        } else {
            under_root(&self.root, &self.subnet_dir.join(format!("{network}.env")))
        }
    }

    /// The networks this daemon serves (`""` alone: the default network).
    pub fn network_names(&self) -> Vec<String> {
        if self.networks.is_empty() {
            vec![String::new()]
        } else {
            self.networks.clone()
        }
    }
}

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("kv: {0}")]
    Kv(#[from] KvError),
    #[error("network config at {key} is invalid: {error}")]
    Config { key: String, error: ConfigError },
    #[error("network {network:?}: {error}")]
    Backend {
        network: String,
        error: BackendError,
    },
    #[error("network {network:?}: {error}")]
    Lease { network: String, error: LeaseError },
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("--networks: {0}")]
    Networks(String),
}

/// The overlay daemon.
pub struct Overlay;

impl Overlay {
    /// Runs against the store named by `etcd_endpoints` until `shutdown`
    /// completes (normal stop: kernel state stays) or a fatal error.
    pub async fn run(
        config: OverlayConfig,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), OverlayError> {
        let kv = Self::connect(&config)?;
        Self::run_with(config, kv, shutdown).await
    }

    /// The HTTP client for `etcd_endpoints`.
    pub fn connect(config: &OverlayConfig) -> Result<Arc<dyn KvClient>, OverlayError> {
        let mut b = HttpKvClient::builder();
        for e in &config.etcd_endpoints {
            b = b.endpoint(e.as_str());
        }
        Ok(Arc::new(b.build()?))
    }

    /// Runs over any [`KvClient`] (embedded store, HTTP, in-memory).
    pub async fn run_with(
        config: OverlayConfig,
        kv: Arc<dyn KvClient>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), OverlayError> {
        let names = config.network_names();
        let (stop_tx, stop_rx) = watch::channel(false);
        let kernel = Kernel::connect().map_err(|error| OverlayError::Backend {
            network: String::new(),
            error,
        })?;
        let ext =
            resolve_interface(&kernel, &config)
                .await
                .map_err(|error| OverlayError::Backend {
                    network: String::new(),
                    error,
                })?;
        tracing::info!(iface = %ext.name, public_ip = %ext.public_ip, mtu = ext.mtu, "using interface");
        enable_forwarding(&config);
        let mut tasks = tokio::task::JoinSet::new();
        for name in names {
            let (config, kv, kernel, ext, stop) = (
                config.clone(),
                kv.clone(),
                kernel.clone(),
                ext.clone(),
                stop_rx.clone(),
            );
            tasks.spawn(async move { run_network(name, config, kv, kernel, ext, stop).await });
        }
        tokio::pin!(shutdown);
        let result = tokio::select! {
            _ = &mut shutdown => Ok(()),
            Some(r) = tasks.join_next() => match r {
                Ok(r) => r,
                Err(e) => Err(OverlayError::Networks(format!("network task failed: {e}"))),
            },
        };
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        result
    }

    /// Explicit uninstall: removes devices, routes and rules of every
    /// configured network and deletes this host's leases.
    pub async fn teardown(
        config: OverlayConfig,
        kv: Arc<dyn KvClient>,
    ) -> Result<(), OverlayError> {
        let kernel = Kernel::connect().map_err(|error| OverlayError::Backend {
            network: String::new(),
            error,
        })?;
        let ext =
            resolve_interface(&kernel, &config)
                .await
                .map_err(|error| OverlayError::Backend {
                    network: String::new(),
                    error,
                })?;
        for name in config.network_names() {
            let be = |error| OverlayError::Backend {
                network: name.clone(),
                error,
            };
            let net = read_config(&*kv, &config.etcd_prefix, &name).await?;
            let mut backend = backend::for_config(&net, &ext, Some(kernel.clone())).map_err(be)?;
            backend.teardown().await.map_err(be)?;
            let env_file = config.env_file(&name);
            if let Some(own) = SubnetEnv::previous_subnet(&env_file) {
                let own = Ipv4Net::new(own.addr(), own.prefix());
                let _ = iptables::remove(&iptables::masq_rules(&net.network, &own));
            }
            let _ = iptables::remove(&iptables::forward_rules(&net.network));
            for l in crate::admin::list_leases(&*kv, &config.etcd_prefix, &name).await? {
                if l.attrs.public_ip == ext.public_ip {
                    let key = lease_key(&config.etcd_prefix, &name, &l.subnet);
                    let prev = Precondition {
                        value: None,
                        index: Some(l.modified_index),
                    };
                    let _ = kv.compare_and_delete(&key, prev).await;
                }
            }
            let _ = std::fs::remove_file(&env_file);
        }
        Ok(())
    }
}

fn enable_forwarding(config: &OverlayConfig) {
    let _ = config;
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
        tracing::warn!(error = %e, "could not enable net.ipv4.ip_forward; cross-host traffic needs it");
    }
}

/// `--iface` (name or address) / default-route interface, and `--public-ip`.
pub async fn resolve_interface(
    kernel: &Kernel,
    config: &OverlayConfig,
) -> Result<ExternalInterface, BackendError> {
    let link = match config.iface.as_deref() {
        Some(s) => {
            if let Ok(ip) = s.parse::<Ipv4Addr>() {
                let mut found = None;
                for l in kernel.links().await? {
                    if kernel
                        .ipv4_addrs(l.index)
                        .await?
                        .iter()
                        .any(|a| a.addr() == ip)
                    {
                        found = Some(l);
                        break;
                    }
                }
                found.ok_or_else(|| BackendError::NoInterface(s.to_string()))?
            } else {
                kernel
                    .link_by_name(s)
                    .await?
                    .ok_or_else(|| BackendError::NoInterface(s.to_string()))?
            }
        }
        None => {
            let idx = kernel.default_route_link().await?.ok_or_else(|| {
                BackendError::NoInterface("(no default route; set --iface)".into())
            })?;
            kernel
                .link_by_index(idx)
                .await?
                .ok_or_else(|| BackendError::NoInterface(format!("index {idx}")))?
        }
    };
    let addrs = kernel.ipv4_addrs(link.index).await?;
    let iface_addr = match (
        config
            .iface
            .as_deref()
            .and_then(|s| s.parse::<Ipv4Addr>().ok()),
        addrs.first(),
    ) {
        (Some(ip), _) => ip,
        (None, Some(a)) => a.addr(),
        (None, None) if config.public_ip.is_some() => {
            config.public_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
        }
        (None, None) => return Err(BackendError::NoAddress(link.name.clone())),
    };
    Ok(ExternalInterface {
        index: link.index,
        name: link.name,
        mtu: link.mtu,
        iface_addr,
        public_ip: config.public_ip.unwrap_or(iface_addr),
    })
}

/// Reads and parses `<prefix>[/<name>]/config`, waiting (once a second, as
/// flannel does) while the key does not exist.
pub async fn read_config(
    kv: &dyn KvClient,
    prefix: &str,
    name: &str,
) -> Result<NetworkConfig, OverlayError> {
    let key = config_key(prefix, name);
    let mut logged = false;
    loop {
        match kv.get(&key, GetOptions::default()).await {
            Ok(r) => {
                let text = r.node().and_then(|n| n.value.clone()).unwrap_or_default();
                return NetworkConfig::parse(&text)
                    .map_err(|error| OverlayError::Config { key, error });
            }
            Err(e) => {
                if !logged {
                    tracing::warn!(%key, error = %e, "Failed to retrieve network config (write it with: etcdctl set {key} '{{\"Network\":\"10.1.0.0/16\"}}'); retrying every second");
                    logged = true;
                }
                tokio::time::sleep(StdDuration::from_secs(1)).await;
            }
        }
    }
}

async fn list(kv: &dyn KvClient, dir: &str) -> Input {
    let opts = GetOptions {
        recursive: true,
        sorted: true,
        quorum: false,
    };
    match kv.get(dir, opts).await {
        Ok(r) => {
            let (leases, bad) = r.node().map(Lease::from_listing).unwrap_or_default();
            for b in bad {
                tracing::warn!(error = %b, "skipping malformed lease");
            }
            Input::Listed {
                leases,
                index: r.etcd_index,
            }
        }
        Err(KvError::Key(e)) if e.code == ErrorCode::KeyNotFound => Input::Listed {
            leases: vec![],
            index: e.index,
        },
        Err(e) => {
            tracing::warn!(error = %e, "listing leases failed");
            Input::KvFailed
        }
    }
}

fn lease_of(r: &keelson_kv::client::KvResponse) -> Option<Lease> {
    r.node().and_then(|n| Lease::from_node(n).ok())
}

/// Translates one watch event into manager input.
pub fn watch_input(ev: WatchEvent) -> Option<Input> {
    match ev {
        WatchEvent::Event(r) => {
            let node = r.node()?;
            match r.event.action {
                KvAction::Delete | KvAction::Expire | KvAction::CompareAndDelete => {
                    Ipv4Net::from_key(node.key.as_deref()?)
                        .map(|s| Input::Event(LeaseEvent::Removed(s)))
                }
                KvAction::Get => None,
                _ => match Lease::from_node(node) {
                    Ok(l) => Some(Input::Event(LeaseEvent::Set(l))),
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring malformed lease event");
                        None
                    }
                },
            }
        }
        WatchEvent::Resync { snapshot, .. } => {
            let leases = snapshot
                .and_then(|s| s.node().map(|n| Lease::from_listing(n).0))
                .unwrap_or_default();
            Some(Input::Resync { leases })
        }
    }
}

fn spawn_watch(
    kv: Arc<dyn KvClient>,
    dir: String,
    after: u64,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut w = Watcher::new(
            kv,
            dir,
            WatcherOptions {
                after_index: after,
                recursive: true,
                resync_on_cleared: true,
            },
        );
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                n = w.next() => n,
            };
            match next {
                Ok(ev) => {
                    if let Some(i) = watch_input(ev) {
                        if tx.send(i).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease watch failed; retrying");
                    tokio::time::sleep(StdDuration::from_secs(1)).await;
                }
            }
        }
    });
}

fn spawn_config_watch(
    kv: Arc<dyn KvClient>,
    key: String,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut w = Watcher::new(kv.clone(), key.clone(), WatcherOptions::default());
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                n = w.next() => n,
            };
            let text = match next {
                Ok(WatchEvent::Event(r)) => r.node().and_then(|n| n.value.clone()),
                Ok(WatchEvent::Resync { snapshot, .. }) => {
                    snapshot.and_then(|s| s.node().and_then(|n| n.value.clone()))
                }
                Err(_) => {
                    tokio::time::sleep(StdDuration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(text) = text else { continue };
            match NetworkConfig::parse(&text) {
                Ok(c) => {
                    if tx.send(Input::ConfigChanged(c)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(%key, error = %e, "new network config is invalid; keeping the old one")
                }
            }
        }
    });
}

/// Acquires one lease and returns it, performing only the kv side of the
/// protocol (no data path, no watch): what `alloc` needs, and what the
/// lease-acquisition bench runs a thousand times at once. Yields between
/// operations so that concurrent callers really interleave.
pub async fn acquire_lease(
    kv: &dyn KvClient,
    prefix: &str,
    network: &str,
    mut mgr: LeaseManager,
) -> Result<Lease, LeaseError> {
    let dir = subnets_dir(prefix, network);
    let mut queue: VecDeque<Action> = mgr.start().into();
    loop {
        let Some(action) = queue.pop_front() else {
            // Waiting for a retry after a store failure.
            let wait = mgr
                .next_wakeup()
                .map_or(StdDuration::from_millis(100), |t| {
                    (t - Utc::now()).to_std().unwrap_or(StdDuration::ZERO)
                });
            tokio::time::sleep(wait).await;
            queue.extend(mgr.handle(Utc::now(), Input::Tick));
            continue;
        };
        let input = match action {
            Action::List => list(kv, &dir).await,
            Action::Create { subnet, value, ttl } => {
                match kv
                    .create(&lease_key(prefix, network, &subnet), &value, ttl)
                    .await
                {
                    Ok(r) => lease_of(&r).map_or(Input::KvFailed, Input::Created),
                    Err(e) if e.is_code(ErrorCode::NodeExist) => Input::CreateConflict,
                    Err(_) => Input::KvFailed,
                }
            }
            Action::Swap {
                subnet,
                value,
                prev_index,
                ttl,
            } => {
                let prev = Precondition {
                    value: None,
                    index: Some(prev_index),
                };
                match kv
                    .compare_and_swap(&lease_key(prefix, network, &subnet), &value, prev, ttl)
                    .await
                {
                    Ok(r) => lease_of(&r).map_or(Input::KvFailed, Input::Swapped),
                    Err(e)
                        if e.is_code(ErrorCode::TestFailed)
                            || e.is_code(ErrorCode::KeyNotFound) =>
                    {
                        Input::SwapConflict
                    }
                    Err(_) => Input::KvFailed,
                }
            }
            Action::Acquired(l) => return Ok(l),
            Action::Fatal(e) => return Err(e),
            _ => continue,
        };
        tokio::task::yield_now().await;
        queue.extend(mgr.handle(Utc::now(), input));
    }
}

struct NetworkRun {
    name: String,
    config: OverlayConfig,
    net: NetworkConfig,
    kv: Arc<dyn KvClient>,
    backend: Box<dyn Backend>,
    own: Option<Lease>,
}

impl NetworkRun {
    fn be(&self, error: BackendError) -> OverlayError {
        OverlayError::Backend {
            network: self.name.clone(),
            error,
        }
    }

    fn rules(&self) -> Vec<iptables::Rule> {
        let mut r = Vec::new();
        if let (true, Some(own)) = (self.config.ip_masq, &self.own) {
            r.extend(iptables::masq_rules(&self.net.network, &own.subnet));
        }
        if self.config.forward_rules && self.net.backend.kind != crate::config::BackendType::Alloc {
            r.extend(iptables::forward_rules(&self.net.network));
        }
        r
    }

    async fn acquired(&mut self, lease: Lease) -> Result<(), OverlayError> {
        let first = self.own.is_none();
        if let Some(old) = &self.own {
            if old.subnet == lease.subnet {
                tracing::info!(subnet = %lease.subnet, "lease re-created with the same subnet");
            }
        }
        self.own = Some(lease.clone());
        if !first {
            return Ok(());
        }
        tracing::info!(network = %self.name, subnet = %lease.subnet, backend = %self.net.backend.kind, "lease acquired");
        self.backend
            .configure(&lease)
            .await
            .map_err(|e| self.be(e))?;
        if let Err(e) = iptables::ensure(&self.rules()) {
            if self.config.ip_masq {
                return Err(self.be(e));
            }
            tracing::warn!(error = %e, "forward rules not installed");
        }
        let env = SubnetEnv {
            network: self.net.network,
            subnet: lease.subnet,
            mtu: self.backend.mtu(),
            ip_masq: self.config.ip_masq,
        };
        let path = self.config.env_file(&self.name);
        env.write(&path)?;
        if let (Some(out), true) = (&self.config.docker_opts_file, self.name.is_empty()) {
            let opts = DockerOptsOptions {
                individual: true,
                ..Default::default()
            };
            write_docker_opts(&path, &under_root(&self.config.root, out), &opts)?;
        }
        Ok(())
    }
}

async fn run_network(
    name: String,
    config: OverlayConfig,
    kv: Arc<dyn KvClient>,
    kernel: Kernel,
    ext: ExternalInterface,
    mut stop: watch::Receiver<bool>,
) -> Result<(), OverlayError> {
    let net = tokio::select! {
        c = read_config(&*kv, &config.etcd_prefix, &name) => c?,
        _ = stop.changed() => return Ok(()),
    };
    tracing::info!(network = %name, config = ?net.network, backend = %net.backend.kind, "network config");
    let mut backend =
        backend::for_config_with(&net, &ext, Some(kernel), config.udp).map_err(|error| {
            OverlayError::Backend {
                network: name.clone(),
                error,
            }
        })?;
    let attrs = backend
        .prepare()
        .await
        .map_err(|error| OverlayError::Backend {
            network: name.clone(),
            error,
        })?;
    let previous = SubnetEnv::previous_subnet(&config.env_file(&name))
        .map(|s| Ipv4Net::new(s.addr(), s.prefix()));
    let dir = subnets_dir(&config.etcd_prefix, &name);
    let mut mgr = LeaseManager::new(
        net.clone(),
        attrs,
        previous,
        config.lease.clone(),
        rand::random(),
    );
    let mut run = NetworkRun {
        name: name.clone(),
        config: config.clone(),
        net,
        kv: kv.clone(),
        backend,
        own: None,
    };
    let (tx, mut rx) = mpsc::channel::<Input>(256);
    let mut queue: VecDeque<Action> = mgr.start().into();
    let mut resync = tokio::time::interval(config.resync_interval);
    resync.tick().await;
    loop {
        while let Some(action) = queue.pop_front() {
            let input = match action {
                Action::List => Some(list(&*run.kv, &dir).await),
                Action::Create { subnet, value, ttl } => {
                    let key = lease_key(&config.etcd_prefix, &name, &subnet);
                    Some(match run.kv.create(&key, &value, ttl).await {
                        Ok(r) => lease_of(&r).map_or(Input::KvFailed, Input::Created),
                        Err(e) if e.is_code(ErrorCode::NodeExist) => Input::CreateConflict,
                        Err(e) => {
                            tracing::warn!(error = %e, %key, "creating lease failed");
                            Input::KvFailed
                        }
                    })
                }
                Action::Swap {
                    subnet,
                    value,
                    prev_index,
                    ttl,
                } => {
                    let key = lease_key(&config.etcd_prefix, &name, &subnet);
                    let prev = Precondition {
                        value: None,
                        index: Some(prev_index),
                    };
                    Some(
                        match run.kv.compare_and_swap(&key, &value, prev, ttl).await {
                            Ok(r) => lease_of(&r).map_or(Input::KvFailed, Input::Swapped),
                            Err(e)
                                if e.is_code(ErrorCode::TestFailed)
                                    || e.is_code(ErrorCode::KeyNotFound) =>
                            {
                                Input::SwapConflict
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, %key, "Error renewing lease (trying again in 1 min)");
                                Input::KvFailed
                            }
                        },
                    )
                }
                Action::Delete { subnet, prev_index } => {
                    tracing::info!(%subnet, "Found lease but not compatible with current config, deleting");
                    let key = lease_key(&config.etcd_prefix, &name, &subnet);
                    let prev = Precondition {
                        value: None,
                        index: Some(prev_index),
                    };
                    let _ = run.kv.compare_and_delete(&key, prev).await;
                    None
                }
                Action::Watch { after_index } => {
                    spawn_watch(
                        kv.clone(),
                        dir.clone(),
                        after_index,
                        tx.clone(),
                        stop.clone(),
                    );
                    spawn_config_watch(
                        kv.clone(),
                        config_key(&config.etcd_prefix, &name),
                        tx.clone(),
                        stop.clone(),
                    );
                    None
                }
                Action::Acquired(lease) => {
                    run.acquired(lease).await?;
                    None
                }
                Action::Reconcile(peers) => {
                    if let Err(e) = run.backend.reconcile(&peers).await {
                        tracing::error!(error = %e, "reconciling the data path failed; will retry");
                    }
                    None
                }
                Action::PeerAdded(l) => {
                    tracing::info!(subnet = %l.subnet, public_ip = %l.attrs.public_ip, "subnet added");
                    if let Err(e) = run.backend.add_peer(&l).await {
                        tracing::error!(error = %e, subnet = %l.subnet, "adding peer failed");
                    }
                    None
                }
                Action::PeerRemoved(l) => {
                    tracing::info!(subnet = %l.subnet, "subnet removed");
                    if let Err(e) = run.backend.remove_peer(&l).await {
                        tracing::error!(error = %e, subnet = %l.subnet, "removing peer failed");
                    }
                    None
                }
                Action::Fatal(error) => {
                    tracing::error!(network = %name, %error, "stopping");
                    return Err(OverlayError::Lease {
                        network: name,
                        error,
                    });
                }
            };
            if let Some(i) = input {
                queue.extend(mgr.handle(Utc::now(), i));
            }
        }
        let wake = mgr.next_wakeup().map(|t| {
            let d = (t - Utc::now()).to_std().unwrap_or(StdDuration::ZERO);
            tokio::time::Instant::now() + d
        });
        let far = tokio::time::Instant::now() + StdDuration::from_secs(3600);
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            Some(i) = rx.recv() => queue.extend(mgr.handle(Utc::now(), i)),
            _ = tokio::time::sleep_until(wake.unwrap_or(far)) => queue.extend(mgr.handle(Utc::now(), Input::Tick)),
            _ = resync.tick() => {
                if run.own.is_some() {
                    let peers: Vec<Lease> = mgr.peers().cloned().collect();
                    if let Err(e) = run.backend.reconcile(&peers).await {
                        tracing::warn!(error = %e, "periodic reconcile failed");
                    }
                    if let Err(e) = iptables::ensure(&run.rules()) {
                        tracing::warn!(error = %e, "re-adding iptables rules failed");
                    }
                }
            }
        }
    }
}
