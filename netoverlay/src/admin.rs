//! Operator verbs for `keelctl`: list leases, add and remove reservations
//! (reference §4.2, §13 item 11). A reservation is a lease key without TTL;
//! these functions validate against the network configuration so a typo
//! cannot reserve a subnet no host could ever use.

use std::net::Ipv4Addr;

use keelson_kv::client::{GetOptions, KvClient, KvError, Precondition};
use keelson_kv::v2::ErrorCode;

use crate::cidr::Ipv4Net;
use crate::config::NetworkConfig;
use crate::daemon::OverlayError;
use crate::lease::{config_key, lease_key, subnets_dir, Lease, LeaseAttrs};

/// What a reservation command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("kv: {0}")]
    Kv(#[from] KvError),
    #[error("no network config at {0}: write one first")]
    NoConfig(String),
    #[error("network config at {key} is invalid: {error}")]
    Config {
        key: String,
        error: crate::config::ConfigError,
    },
    #[error("{subnet} does not fit the network config ({network}, /{len} leases between {min} and {max})")]
    NotInNetwork {
        subnet: Ipv4Net,
        network: Ipv4Net,
        len: u8,
        min: Ipv4Addr,
        max: Ipv4Addr,
    },
    #[error(
        "{subnet} is leased by {holder}; reserve it for that host, or wait for the lease to expire"
    )]
    Held { subnet: Ipv4Net, holder: Ipv4Addr },
    #[error("{0} is not a reservation (it has a TTL); leases expire by themselves")]
    NotReservation(Ipv4Net),
    #[error("no lease or reservation for {0}")]
    NotFound(Ipv4Net),
}

impl From<OverlayError> for AdminError {
    fn from(e: OverlayError) -> Self {
        match e {
            OverlayError::Kv(k) => AdminError::Kv(k),
            other => AdminError::NoConfig(other.to_string()),
        }
    }
}

/// Every readable lease of a network, sorted by subnet (`""` = default).
pub async fn list_leases(
    kv: &dyn KvClient,
    prefix: &str,
    network: &str,
) -> Result<Vec<Lease>, OverlayError> {
    let opts = GetOptions {
        recursive: true,
        sorted: true,
        quorum: false,
    };
    match kv.get(&subnets_dir(prefix, network), opts).await {
        Ok(r) => {
            let mut v = r
                .node()
                .map(|n| Lease::from_listing(n).0)
                .unwrap_or_default();
            v.sort_by_key(|l| l.subnet);
            Ok(v)
        }
        Err(e) if e.is_code(ErrorCode::KeyNotFound) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

async fn network_config(
    kv: &dyn KvClient,
    prefix: &str,
    network: &str,
) -> Result<NetworkConfig, AdminError> {
    let key = config_key(prefix, network);
    match kv.get(&key, GetOptions::default()).await {
        Ok(r) => {
            let text = r.node().and_then(|n| n.value.clone()).unwrap_or_default();
            NetworkConfig::parse(&text).map_err(|error| AdminError::Config { key, error })
        }
        Err(e) if e.is_code(ErrorCode::KeyNotFound) => Err(AdminError::NoConfig(key)),
        Err(e) => Err(e.into()),
    }
}

/// Reserves `subnet` for the host whose public IP is `public_ip`.
pub async fn reserve(
    kv: &dyn KvClient,
    prefix: &str,
    network: &str,
    subnet: Ipv4Net,
    public_ip: Ipv4Addr,
) -> Result<(), AdminError> {
    let cfg = network_config(kv, prefix, network).await?;
    if !cfg.is_compatible(&subnet) {
        return Err(AdminError::NotInNetwork {
            subnet,
            network: cfg.network,
            len: cfg.subnet_len,
            min: cfg.subnet_min,
            max: cfg.subnet_max,
        });
    }
    let key = lease_key(prefix, network, &subnet);
    let existing = list_leases(kv, prefix, network).await?;
    if let Some(l) = existing.iter().find(|l| l.subnet.overlaps(&subnet)) {
        if l.attrs.public_ip != public_ip || l.subnet != subnet {
            return Err(AdminError::Held {
                subnet: l.subnet,
                holder: l.attrs.public_ip,
            });
        }
        // The host's own lease: keep its attributes, drop the TTL.
        let prev = Precondition {
            value: None,
            index: Some(l.modified_index),
        };
        kv.compare_and_swap(&key, &l.value, prev, None).await?;
        return Ok(());
    }
    kv.create(&key, &LeaseAttrs::new(public_ip).to_json(), None)
        .await?;
    Ok(())
}

/// Removes a reservation (a lease with a TTL is left alone).
pub async fn unreserve(
    kv: &dyn KvClient,
    prefix: &str,
    network: &str,
    subnet: Ipv4Net,
) -> Result<(), AdminError> {
    let l = list_leases(kv, prefix, network)
        .await?
        .into_iter()
        .find(|l| l.subnet == subnet)
        .ok_or(AdminError::NotFound(subnet))?;
    if !l.is_reservation() {
        return Err(AdminError::NotReservation(subnet));
    }
    let prev = Precondition {
        value: None,
        index: Some(l.modified_index),
    };
    kv.compare_and_delete(&lease_key(prefix, network, &subnet), prev)
        .await?;
    Ok(())
}

/// One line per lease, like `etcdctl ls` plus what matters: subnet,
/// public IP, backend, and the TTL or `reserved`.
pub fn format_leases(leases: &[Lease], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::from("SUBNET\tPUBLIC IP\tBACKEND\tEXPIRES\n");
    for l in leases {
        let exp = match l.expiration {
            None => "reserved".to_string(),
            Some(t) => format!("{}s", (t - now).num_seconds().max(0)),
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            l.subnet,
            l.attrs.public_ip,
            l.attrs.effective_backend(),
            exp
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memkv::MemKv;

    #[tokio::test]
    async fn reserve_list_unreserve() {
        let kv = MemKv::new();
        let p = "/coreos.com/network";
        let s: Ipv4Net = "10.1.5.0/24".parse().unwrap();
        let ip: Ipv4Addr = "10.88.0.13".parse().unwrap();
        assert!(matches!(
            reserve(&kv, p, "", s, ip).await,
            Err(AdminError::NoConfig(_))
        ));
        kv.set(
            "/coreos.com/network/config",
            r#"{"Network":"10.1.0.0/16"}"#,
            Default::default(),
        )
        .await
        .unwrap();
        let e = reserve(&kv, p, "", "10.2.5.0/24".parse().unwrap(), ip)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        reserve(&kv, p, "", s, ip).await.unwrap();
        let v = list_leases(&kv, p, "").await.unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].is_reservation());
        assert_eq!(v[0].value, r#"{"PublicIP":"10.88.0.13"}"#);
        let e = reserve(&kv, p, "", s, "10.88.0.99".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, AdminError::Held { .. }));
        assert!(format_leases(&v, chrono::Utc::now())
            .contains("10.1.5.0/24\t10.88.0.13\tudp\treserved"));
        unreserve(&kv, p, "", s).await.unwrap();
        assert!(list_leases(&kv, p, "").await.unwrap().is_empty());
        assert!(matches!(
            unreserve(&kv, p, "", s).await,
            Err(AdminError::NotFound(_))
        ));
        // A live lease becomes a reservation in place; leases are not unreserved.
        kv.create(
            "/coreos.com/network/subnets/10.1.7.0-24",
            r#"{"PublicIP":"10.88.0.11","BackendType":"host-gw"}"#,
            Some(100),
        )
        .await
        .unwrap();
        let s7: Ipv4Net = "10.1.7.0/24".parse().unwrap();
        assert!(matches!(
            unreserve(&kv, p, "", s7).await,
            Err(AdminError::NotReservation(_))
        ));
        reserve(&kv, p, "", s7, "10.88.0.11".parse().unwrap())
            .await
            .unwrap();
        let v = list_leases(&kv, p, "").await.unwrap();
        assert!(v[0].is_reservation() && v[0].attrs.backend_type == "host-gw");
    }
}
