//! `keelson overlay` (also `flanneld` through a symlink): flanneld's flags and
//! `FLANNELD_*` environment variables mapped onto
//! [`keelson_netoverlay::OverlayConfig`] (reference netoverlay.md §8), and
//! `keelson overlay mk-docker-opts` (also `mk-docker-opts.sh`), the script
//! that turns `subnet.env` into Docker daemon options (§5.2).
//!
//! Go's flag syntax is accepted (`-iface eth0`, `-ip-masq`, `--ip-masq=false`);
//! a flag on the command line wins over its variable and an empty variable
//! counts as unset. SIGTERM or SIGINT stop the daemon and leave devices and
//! routes in place so that a restart does not interrupt traffic; `--teardown`
//! removes them and this host's leases.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser};
use keelson_kv::client::{HttpKvClient, KvClient};
use keelson_netoverlay::env::{
    write_docker_opts, DockerOptsOptions, DEFAULT_DOCKER_OPTS_FILE, DEFAULT_SUBNET_FILE,
};
use keelson_netoverlay::{Overlay, OverlayConfig};

/// Go's `strconv.ParseBool`, for boolean flags and `FLANNELD_*` booleans.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("parse error on {s:?}: invalid syntax")),
    }
}

/// flanneld's flags (book era plus the later ones Keelson implements).
#[derive(Debug, Parser)]
#[command(
    name = "flanneld",
    disable_help_subcommand = true,
    about = "Keelson's flannel-compatible overlay network daemon"
)]
pub struct OverlayFlags {
    /// Comma-separated store endpoints.
    #[arg(
        long = "etcd-endpoints",
        env = "FLANNELD_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:4001,http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of the network config and leases.
    #[arg(
        long = "etcd-prefix",
        env = "FLANNELD_ETCD_PREFIX",
        default_value = "/coreos.com/network"
    )]
    pub etcd_prefix: String,
    /// TLS client key for the store.
    #[arg(long = "etcd-keyfile", env = "FLANNELD_ETCD_KEYFILE")]
    pub etcd_keyfile: Option<PathBuf>,
    /// TLS client certificate for the store.
    #[arg(long = "etcd-certfile", env = "FLANNELD_ETCD_CERTFILE")]
    pub etcd_certfile: Option<PathBuf>,
    /// CA bundle to verify the store with.
    #[arg(long = "etcd-cafile", env = "FLANNELD_ETCD_CAFILE")]
    pub etcd_cafile: Option<PathBuf>,
    #[arg(long = "etcd-username", env = "FLANNELD_ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    #[arg(long = "etcd-password", env = "FLANNELD_ETCD_PASSWORD")]
    pub etcd_password: Option<String>,
    /// Interface (name or address) for inter-host traffic; default: that of
    /// the default route.
    #[arg(long, env = "FLANNELD_IFACE")]
    pub iface: Option<String>,
    /// Address published in the lease; default: the interface's.
    #[arg(long = "public-ip", env = "FLANNELD_PUBLIC_IP")]
    pub public_ip: Option<Ipv4Addr>,
    #[arg(
        long = "subnet-file",
        env = "FLANNELD_SUBNET_FILE",
        default_value = DEFAULT_SUBNET_FILE
    )]
    pub subnet_file: PathBuf,
    /// Env files of multi-network mode.
    #[arg(
        long = "subnet-dir",
        env = "FLANNELD_SUBNET_DIR",
        default_value = "/run/flannel/networks"
    )]
    pub subnet_dir: PathBuf,
    /// Install masquerade rules for traffic leaving the overlay.
    #[arg(
        long = "ip-masq",
        env = "FLANNELD_IP_MASQ",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub ip_masq: bool,
    /// Comma-separated network names (multi-network mode).
    #[arg(long, env = "FLANNELD_NETWORKS", value_delimiter = ',')]
    pub networks: Vec<String>,
    /// Accept overlay traffic in FORWARD where the policy would drop it.
    #[arg(
        long = "iptables-forward-rules",
        env = "FLANNELD_IPTABLES_FORWARD_RULES",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub iptables_forward_rules: bool,
    /// Address of the health and metrics listener (flanneld's `-healthz-ip`).
    #[arg(
        long = "healthz-ip",
        env = "FLANNELD_HEALTHZ_IP",
        default_value = "0.0.0.0"
    )]
    pub healthz_ip: std::net::IpAddr,
    /// Port of the health and metrics listener; 0 (the default, as in
    /// flanneld) serves none. Serves `/healthz`, `/health` and `/metrics`.
    #[arg(
        long = "healthz-port",
        env = "FLANNELD_HEALTHZ_PORT",
        default_value_t = 0
    )]
    pub healthz_port: u16,
    /// Accepted for compatibility; `RUST_LOG` sets the log level.
    #[arg(short = 'v', env = "FLANNELD_V", default_value_t = 0)]
    pub verbosity: u32,
    /// Keelson: absolute paths are taken under this directory.
    #[arg(long, env = "FLANNELD_ROOT", default_value = "/")]
    pub root: PathBuf,
    /// Keelson: also write Docker options (`mk-docker-opts.sh -i`) here,
    /// right after `subnet.env`.
    #[arg(long = "docker-opts-file", env = "FLANNELD_DOCKER_OPTS_FILE")]
    pub docker_opts_file: Option<PathBuf>,
    /// Keelson: packets per system call on the udp backend's data path
    /// (1 = upstream flannel's one packet per call).
    #[arg(
        long = "udp-batch",
        env = "FLANNELD_UDP_BATCH",
        default_value_t = 64,
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub udp_batch: u16,
    /// Keelson: remove devices, routes, rules and this host's leases, then exit.
    #[arg(long)]
    pub teardown: bool,
}

impl OverlayFlags {
    pub fn config(&self) -> OverlayConfig {
        OverlayConfig {
            etcd_endpoints: self
                .etcd_endpoints
                .iter()
                .filter(|e| !e.is_empty())
                .cloned()
                .collect(),
            etcd_prefix: self.etcd_prefix.clone(),
            iface: self.iface.clone().filter(|s| !s.is_empty()),
            public_ip: self.public_ip,
            subnet_file: self.subnet_file.clone(),
            subnet_dir: self.subnet_dir.clone(),
            ip_masq: self.ip_masq,
            networks: self
                .networks
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
            root: self.root.clone(),
            docker_opts_file: self.docker_opts_file.clone(),
            forward_rules: self.iptables_forward_rules,
            udp: keelson_netoverlay::backend::udp::UdpOptions {
                batch: usize::from(self.udp_batch),
            },
            ..OverlayConfig::default()
        }
    }

    /// The store client, with the `--etcd-*file` TLS material and credentials.
    pub fn kv_client(&self) -> anyhow::Result<Arc<dyn KvClient>> {
        let mut b = HttpKvClient::builder().endpoints(self.config().etcd_endpoints);
        if let Some(ca) = &self.etcd_cafile {
            b = b.ca_file(ca);
        }
        match (&self.etcd_certfile, &self.etcd_keyfile) {
            (Some(cert), Some(key)) => b = b.client_cert(cert, key),
            (None, None) => {}
            _ => anyhow::bail!("--etcd-certfile and --etcd-keyfile must be given together"),
        }
        if let Some(user) = &self.etcd_username {
            b = b.credentials(user, self.etcd_password.clone().unwrap_or_default());
        }
        Ok(Arc::new(b.build()?))
    }
}

/// Go-style arguments for clap: `-flag` becomes `--flag` (single letters,
/// `-v` and `-h`, stay short).
fn go_args(args: Vec<OsString>) -> Vec<OsString> {
    crate::update::go_style(args)
}

/// Parses flanneld's command line (without argv[0]).
pub fn parse(args: Vec<OsString>) -> Result<OverlayFlags, clap::Error> {
    let argv = std::iter::once(OsString::from("flanneld")).chain(go_args(args));
    let mut cmd = OverlayFlags::command();
    // flanneld: an empty FLANNELD_* variable counts as unset.
    let empty: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()))
        })
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        cmd = cmd.mut_arg(id, |a| a.env(None));
    }
    let matches = cmd.try_get_matches_from(argv)?;
    OverlayFlags::from_arg_matches(&matches)
}

/// `keelson overlay ARGS` / `flanneld ARGS`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    if args.first().is_some_and(|a| a == "mk-docker-opts") {
        return mk_docker_opts_main(args[1..].to_vec());
    }
    let flags = match parse(args) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            });
        }
    };
    crate::update::init_logging();
    let rt = match crate::update::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flanneld: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flanneld: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: OverlayFlags) -> anyhow::Result<()> {
    let config = flags.config();
    let kv = flags.kv_client()?;
    if flags.teardown {
        Overlay::teardown(config, kv).await?;
        tracing::info!("overlay torn down");
        return Ok(());
    }
    if flags.healthz_port != 0 {
        let addr = std::net::SocketAddr::new(flags.healthz_ip, flags.healthz_port);
        let listener = crate::metrics_http::bind(addr).await?;
        let files: Vec<(String, std::path::PathBuf)> = config
            .network_names()
            .into_iter()
            .map(|n| {
                let f = config.env_file(&n);
                (n, f)
            })
            .collect();
        let f2 = files.clone();
        let render: crate::metrics_http::Render =
            std::sync::Arc::new(move || render_leases(&files));
        let health: crate::metrics_http::Health = std::sync::Arc::new(move || {
            for (n, f) in &f2 {
                if !f.exists() {
                    let net = if n.is_empty() {
                        "the network"
                    } else {
                        n.as_str()
                    };
                    return Err(format!("no lease for {net} yet ({} missing)", f.display()));
                }
            }
            Ok(())
        });
        crate::metrics_http::spawn(listener, render, health, async {
            crate::node_runner::shutdown_signal().await;
        });
    }
    let stop = crate::node_runner::shutdown_signal();
    let shutdown = async move {
        stop.await;
        tracing::info!("stopping; devices and routes stay in place");
    };
    Overlay::run_with(config, kv, shutdown).await?;
    Ok(())
}

/// Each network's lease as this host's env file records it.
fn render_leases(files: &[(String, PathBuf)]) -> String {
    use keelson_kv::metrics::{Exposition, Kind};
    let mut e = Exposition::new();
    e.family(
        "keelson_overlay_lease",
        Kind::Gauge,
        "1 for each network this host holds a lease in (from its subnet.env).",
    );
    let mut held = 0;
    for (network, file) in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        let (subnet, net, mtu) = (
            get("FLANNEL_SUBNET"),
            get("FLANNEL_NETWORK"),
            get("FLANNEL_MTU"),
        );
        e.sample(
            "keelson_overlay_lease",
            &[
                ("network", network),
                ("overlay", &net),
                ("subnet", &subnet),
                ("mtu", &mtu),
            ],
            1.0,
        );
        held += 1;
    }
    e.single(
        "keelson_overlay_networks",
        Kind::Gauge,
        "Networks this daemon serves.",
        files.len() as f64,
    );
    e.single(
        "keelson_overlay_leases_held",
        Kind::Gauge,
        "Networks in which this host holds a lease.",
        f64::from(held),
    );
    e.finish()
}

/// `mk-docker-opts.sh`'s options (getopts-style short flags).
#[derive(Debug, Parser)]
#[command(
    name = "mk-docker-opts.sh",
    about = "Generate Docker daemon options from flannel's subnet.env"
)]
pub struct MkDockerOptsFlags {
    /// flannel env file to read (missing: no options).
    #[arg(short = 'f', default_value = DEFAULT_SUBNET_FILE)]
    pub flannel_env: PathBuf,
    /// File to write.
    #[arg(short = 'd', default_value = DEFAULT_DOCKER_OPTS_FILE)]
    pub docker_env: PathBuf,
    /// Write one variable per option.
    #[arg(short = 'i')]
    pub individual: bool,
    /// Write one combined variable.
    #[arg(short = 'c')]
    pub combined: bool,
    /// Name of the combined variable; its current value is prepended.
    #[arg(short = 'k', default_value = "DOCKER_OPTS")]
    pub combined_key: String,
    /// Omit the ip-masq option.
    #[arg(short = 'm')]
    pub omit_ip_masq: bool,
}

impl MkDockerOptsFlags {
    pub fn options(&self) -> DockerOptsOptions {
        DockerOptsOptions {
            individual: self.individual,
            combined: self.combined,
            combined_key: self.combined_key.clone(),
            combined_prefix: std::env::var(&self.combined_key).unwrap_or_default(),
            omit_ip_masq: self.omit_ip_masq,
        }
    }
}

/// `keelson overlay mk-docker-opts ARGS` / `mk-docker-opts.sh ARGS`.
pub fn mk_docker_opts_main(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("mk-docker-opts.sh")).chain(args);
    let flags = match MkDockerOptsFlags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp => 0,
                _ => 1,
            });
        }
    };
    match write_docker_opts(&flags.flannel_env, &flags.docker_env, &flags.options()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<OverlayFlags, clap::Error> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn defaults_are_flanneld_s() {
        let f = p(&[]).unwrap();
        let c = f.config();
        assert_eq!(
            c.etcd_endpoints,
            vec!["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
        );
        assert_eq!(c.etcd_prefix, "/coreos.com/network");
        assert_eq!(c.subnet_file, PathBuf::from("/run/flannel/subnet.env"));
        assert!(!c.ip_masq && c.forward_rules && c.networks.is_empty());
        assert_eq!(c.root, PathBuf::from("/"));
    }

    #[test]
    fn go_style_flags() {
        let f = p(&[
            "-etcd-endpoints=http://10.0.0.1:2379,http://10.0.0.2:2379",
            "-iface",
            "eth1",
            "-ip-masq",
            "-public-ip=10.0.0.9",
            "-networks",
            "blue,red",
            "-etcd-cafile",
            "/ca.pem",
            "-v",
            "1",
        ])
        .unwrap();
        let c = f.config();
        assert_eq!(c.etcd_endpoints.len(), 2);
        assert_eq!(c.iface.as_deref(), Some("eth1"));
        assert!(c.ip_masq);
        assert_eq!(c.public_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(c.networks, vec!["blue", "red"]);
        assert_eq!(f.etcd_cafile, Some(PathBuf::from("/ca.pem")));
        assert!(!p(&["--ip-masq=false"]).unwrap().ip_masq);
        assert!(p(&["--ip-masq=maybe"]).is_err());
        assert!(p(&["-no-such-flag"]).is_err());
        assert!(p(&["--public-ip", "not-an-ip"]).is_err());
    }

    #[test]
    fn cert_without_key_is_refused() {
        let f = p(&["--etcd-certfile", "/c.pem"]).unwrap();
        let e = f.kv_client().err().expect("error");
        assert!(e.to_string().contains("--etcd-keyfile"), "{e}");
    }

    #[test]
    fn mk_docker_opts_flags() {
        let f = MkDockerOptsFlags::try_parse_from([
            "mk-docker-opts.sh",
            "-d",
            "/run/flannel_docker_opts.env",
            "-i",
        ])
        .unwrap();
        assert_eq!(f.docker_env, PathBuf::from("/run/flannel_docker_opts.env"));
        assert_eq!(f.flannel_env, PathBuf::from("/run/flannel/subnet.env"));
        assert!(f.individual && !f.combined && !f.omit_ip_masq);
        let f =
            MkDockerOptsFlags::try_parse_from(["mk-docker-opts.sh", "-cm", "-k", "OPTS"]).unwrap();
        assert!(f.combined && f.omit_ip_masq);
        assert_eq!(f.combined_key, "OPTS");
    }
}
