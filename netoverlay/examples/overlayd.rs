//! A minimal overlay daemon over the library: flanneld's main flags, run
//! until SIGTERM/SIGINT (kernel state stays), or `--teardown` to uninstall.
//! The namespace tests run it inside each simulated host:
//!
//! ```sh
//! ip netns exec host-a target/debug/examples/overlayd \
//!     --etcd-endpoints http://10.88.0.1:2379 --iface eth0 \
//!     --subnet-file /tmp/host-a/subnet.env
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Parser;
use keelson_netoverlay::{Overlay, OverlayConfig};

#[derive(Parser)]
struct Args {
    #[arg(
        long = "etcd-endpoints",
        default_value = "http://127.0.0.1:4001,http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    etcd_endpoints: Vec<String>,
    #[arg(long = "etcd-prefix", default_value = "/coreos.com/network")]
    etcd_prefix: String,
    #[arg(long)]
    iface: Option<String>,
    #[arg(long = "public-ip")]
    public_ip: Option<Ipv4Addr>,
    #[arg(long = "subnet-file", default_value = "/run/flannel/subnet.env")]
    subnet_file: PathBuf,
    #[arg(long = "subnet-dir", default_value = "/run/flannel/networks")]
    subnet_dir: PathBuf,
    #[arg(long = "ip-masq")]
    ip_masq: bool,
    #[arg(long, value_delimiter = ',')]
    networks: Vec<String>,
    #[arg(long = "docker-opts-file")]
    docker_opts_file: Option<PathBuf>,
    /// Remove devices, routes, rules and this host's leases, then exit.
    #[arg(long)]
    teardown: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let config = OverlayConfig {
        etcd_endpoints: a.etcd_endpoints,
        etcd_prefix: a.etcd_prefix,
        iface: a.iface,
        public_ip: a.public_ip,
        subnet_file: a.subnet_file,
        subnet_dir: a.subnet_dir,
        ip_masq: a.ip_masq,
        networks: a.networks.into_iter().filter(|n| !n.is_empty()).collect(),
        docker_opts_file: a.docker_opts_file,
        ..OverlayConfig::default()
    };
    if a.teardown {
        let kv = Overlay::connect(&config)?;
        Overlay::teardown(config, kv).await?;
        return Ok(());
    }
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    if let Err(e) = Overlay::run(config, shutdown).await {
        eprintln!("overlayd: {e}");
        std::process::exit(1);
    }
    Ok(())
}
