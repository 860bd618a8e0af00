//! vxlan: the kernel VXLAN device `flannel.<VNI>`, fully pre-populated as
//! modern flannel does (reference §6.3): per remote lease one route (lease via
//! its network address, onlink), one permanent neighbour entry (that address →
//! the peer's VTEP MAC) and one permanent FDB entry (VTEP MAC → the peer's
//! public IP). No kernel miss callbacks, so nothing expires and a daemon
//! restart disturbs no traffic. An existing compatible device is reused, so
//! its MAC — published as `BackendData.VtepMAC` — survives restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::config::{BackendType, NetworkConfig};
use crate::lease::{format_mac, Lease, LeaseAttrs};

use super::kernel::{neighbour_parts, Kernel, Route};
use super::{accepts, in_network, Backend, BackendError, BackendFuture, ExternalInterface};

pub struct Vxlan {
    kernel: Kernel,
    config: NetworkConfig,
    ext: ExternalInterface,
    index: u32,
    mac: [u8; 6],
}

impl Vxlan {
    pub fn new(kernel: Kernel, config: NetworkConfig, ext: ExternalInterface) -> Vxlan {
        Vxlan {
            kernel,
            config,
            ext,
            index: 0,
            mac: [0; 6],
        }
    }

    /// `flannel.<VNI>`.
    pub fn device_name(&self) -> String {
        format!("flannel.{}", self.config.backend.vni)
    }

    fn route(&self, peer: &Lease) -> Route {
        Route {
            dst: peer.subnet,
            gateway: Some(peer.subnet.addr()),
            oif: self.index,
        }
    }

    fn usable(&self, p: &Lease) -> Option<[u8; 6]> {
        if !in_network(&self.config.network, p) || !accepts(&BackendType::Vxlan, p) {
            return None;
        }
        let mac = p.attrs.vtep_mac();
        if mac.is_none() {
            tracing::warn!(subnet = %p.subnet, "vxlan lease without a valid VtepMAC; ignoring");
        }
        mac
    }

    async fn install(&self, peer: &Lease, mac: &[u8; 6]) -> Result<(), BackendError> {
        // Neighbour and FDB first, so the route never points at an
        // unresolvable next hop.
        self.kernel
            .replace_fdb(self.index, mac, peer.attrs.public_ip)
            .await?;
        self.kernel
            .replace_neighbour(self.index, peer.subnet.addr(), mac)
            .await?;
        self.kernel.replace_route(&self.route(peer), true).await
    }
}

impl Backend for Vxlan {
    fn kind(&self) -> BackendType {
        BackendType::Vxlan
    }

    fn mtu(&self) -> u32 {
        self.config.mtu_for(self.ext.mtu)
    }

    fn prepare(&mut self) -> BackendFuture<'_, LeaseAttrs> {
        Box::pin(async move {
            let name = self.device_name();
            let b = &self.config.backend;
            let existing = self.kernel.link_by_name(&name).await?;
            let reuse = existing
                .as_ref()
                .is_some_and(|l| l.kind.as_deref() == Some("vxlan") && l.vxlan_id == Some(b.vni));
            if let (Some(l), false) = (&existing, reuse) {
                tracing::warn!(device = %name, "existing device is not a compatible vxlan device; recreating");
                self.kernel.delete_link(l.index).await?;
            }
            if !reuse {
                self.kernel
                    .create_vxlan(
                        &name,
                        b.vni,
                        self.ext.iface_addr,
                        self.ext.index,
                        b.port,
                        b.learning,
                    )
                    .await?;
            }
            let link = self
                .kernel
                .link_by_name(&name)
                .await?
                .ok_or_else(|| BackendError::NoInterface(name.clone()))?;
            self.index = link.index;
            self.mac = link
                .mac
                .ok_or_else(|| BackendError::Io(format!("{name} has no MAC address")))?;
            let mtu = self.mtu();
            if link.mtu != mtu {
                self.kernel.set_mtu(link.index, mtu).await?;
            }
            self.kernel.set_up(link.index).await?;
            tracing::info!(device = %name, vtep_mac = %format_mac(&self.mac), reused = reuse, "vxlan device ready");
            let mut a = LeaseAttrs::new(self.ext.public_ip);
            a.backend_type = "vxlan".into();
            a.backend_data = serde_json::json!({ "VtepMAC": format_mac(&self.mac) });
            Ok(a)
        })
    }

    fn configure<'a>(&'a mut self, own: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            self.kernel
                .add_addr(self.index, own.subnet.addr(), 32)
                .await
        })
    }

    fn reconcile<'a>(&'a mut self, peers: &'a [Lease]) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let want: BTreeMap<Route, (&Lease, [u8; 6])> = peers
                .iter()
                .filter_map(|p| self.usable(p).map(|m| (self.route(p), (p, m))))
                .collect();
            let gws: BTreeSet<Ipv4Addr> = want.keys().filter_map(|r| r.gateway).collect();
            let macs: BTreeSet<[u8; 6]> = want.values().map(|(_, m)| *m).collect();
            for r in self.kernel.routes().await? {
                if r.oif == self.index && r.gateway.is_some() && !want.contains_key(&r) {
                    self.kernel.delete_route(&r).await?;
                }
            }
            for n in self.kernel.neighbours(self.index, false).await? {
                let (ip, _) = neighbour_parts(&n);
                if ip.is_some_and(|ip| !gws.contains(&ip)) {
                    self.kernel.delete_neighbour(n).await?;
                }
            }
            for n in self.kernel.neighbours(self.index, true).await? {
                let (_, mac) = neighbour_parts(&n);
                if mac.is_some_and(|m| !macs.contains(&m) && m != self.mac) {
                    self.kernel.delete_neighbour(n).await?;
                }
            }
            for (p, mac) in want.values() {
                self.install(p, mac).await?;
            }
            Ok(())
        })
    }

    fn add_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            match self.usable(peer) {
                Some(mac) => self.install(peer, &mac).await,
                None => Ok(()),
            }
        })
    }

    fn remove_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            self.kernel.delete_route(&self.route(peer)).await?;
            for n in self.kernel.neighbours(self.index, false).await? {
                if neighbour_parts(&n).0 == Some(peer.subnet.addr()) {
                    self.kernel.delete_neighbour(n).await?;
                }
            }
            if let Some(mac) = peer.attrs.vtep_mac() {
                for n in self.kernel.neighbours(self.index, true).await? {
                    if neighbour_parts(&n).1 == Some(mac) {
                        self.kernel.delete_neighbour(n).await?;
                    }
                }
            }
            Ok(())
        })
    }

    fn teardown(&mut self) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            if let Some(l) = self.kernel.link_by_name(&self.device_name()).await? {
                self.kernel.delete_link(l.index).await?;
            }
            Ok(())
        })
    }
}
