//! `keelctl overlay`: list the overlay's subnet leases and add or remove
//! reservations (TTL-less leases that a host with that public IP gets back).
//! The work is `keelson_netoverlay::admin`; this is flags and output.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use keelson_kv::client::HttpKvClient;
use keelson_netoverlay::admin;
use keelson_netoverlay::Ipv4Net;

#[derive(Debug, Args)]
pub struct OverlayArgs {
    /// Comma-separated kv endpoints.
    #[arg(
        long,
        global = true,
        env = "KEELCTL_ENDPOINTS",
        default_value = "http://127.0.0.1:2379,http://127.0.0.1:4001",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// Key prefix of the overlay (flanneld's `--etcd-prefix`).
    #[arg(
        long = "etcd-prefix",
        global = true,
        default_value = "/coreos.com/network"
    )]
    pub etcd_prefix: String,
    /// Network name in multi-network mode (empty: the default network).
    #[arg(long, global = true, default_value = "")]
    pub network: String,
    /// CA bundle to verify the kv with.
    #[arg(long = "ca-file", global = true)]
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate.
    #[arg(long = "cert-file", global = true, requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// TLS client key.
    #[arg(long = "key-file", global = true, requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: OverlayCommand,
}

#[derive(Debug, Subcommand)]
pub enum OverlayCommand {
    /// List leases and reservations: subnet, public IP, backend, expiry.
    Leases,
    /// Reserve SUBNET (e.g. 10.1.5.0/24) for the host with PUBLIC_IP.
    Reserve {
        subnet: Ipv4Net,
        public_ip: Ipv4Addr,
    },
    /// Remove the reservation of SUBNET.
    Unreserve { subnet: Ipv4Net },
}

pub fn run(args: OverlayArgs) -> ExitCode {
    let rt = match crate::update::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(args)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: OverlayArgs) -> anyhow::Result<String> {
    let mut b = HttpKvClient::builder().endpoints(args.endpoints.iter().filter(|e| !e.is_empty()));
    if let Some(ca) = &args.ca_file {
        b = b.ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&args.cert_file, &args.key_file) {
        b = b.client_cert(cert, key);
    }
    let kv = b.build()?;
    let (prefix, network) = (args.etcd_prefix.as_str(), args.network.as_str());
    Ok(match args.command {
        OverlayCommand::Leases => {
            let leases = admin::list_leases(&kv, prefix, network).await?;
            admin::format_leases(&leases, chrono::Utc::now())
        }
        OverlayCommand::Reserve { subnet, public_ip } => {
            admin::reserve(&kv, prefix, network, subnet, public_ip).await?;
            format!("reserved {subnet} for {public_ip}\n")
        }
        OverlayCommand::Unreserve { subnet } => {
            admin::unreserve(&kv, prefix, network, subnet).await?;
            format!("unreserved {subnet}\n")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        c: Top,
    }
    #[derive(Subcommand)]
    enum Top {
        Overlay(OverlayArgs),
    }

    fn p(args: &[&str]) -> Result<OverlayArgs, clap::Error> {
        let argv = ["keelctl", "overlay"].iter().chain(args).copied();
        T::try_parse_from(argv).map(|t| match t.c {
            Top::Overlay(a) => a,
        })
    }

    #[test]
    fn verbs_and_flags() {
        let a = p(&["leases", "--endpoints", "http://10.0.0.1:2379"]).unwrap();
        assert!(matches!(a.command, OverlayCommand::Leases));
        assert_eq!(a.endpoints, vec!["http://10.0.0.1:2379"]);
        let a = p(&[
            "--etcd-prefix",
            "/x/network",
            "reserve",
            "10.1.5.0/24",
            "10.88.0.9",
        ])
        .unwrap();
        assert_eq!(a.etcd_prefix, "/x/network");
        assert!(matches!(a.command, OverlayCommand::Reserve { .. }));
        assert!(p(&["reserve", "10.1.5.0", "10.88.0.9"]).is_err());
        assert!(p(&["reserve", "10.1.5.0/24", "nope"]).is_err());
        assert!(p(&["unreserve"]).is_err());
        assert!(p(&["--cert-file", "/c.pem", "leases"]).is_err());
    }
}
