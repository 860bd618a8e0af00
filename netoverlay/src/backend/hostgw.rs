//! host-gw: one route per remote lease via the remote host's address on the
//! external interface; no device, no encapsulation (reference §6.4).

use std::collections::BTreeSet;

use crate::config::{BackendType, NetworkConfig};
use crate::lease::{Lease, LeaseAttrs};

use super::kernel::{Kernel, Route};
use super::{accepts, in_network, Backend, BackendError, BackendFuture, ExternalInterface};

pub struct HostGw {
    kernel: Kernel,
    config: NetworkConfig,
    ext: ExternalInterface,
}

impl HostGw {
    pub fn new(kernel: Kernel, config: NetworkConfig, ext: ExternalInterface) -> HostGw {
        HostGw {
            kernel,
            config,
            ext,
        }
    }

    fn route(&self, peer: &Lease) -> Route {
        Route {
            dst: peer.subnet,
            gateway: Some(peer.attrs.public_ip),
            oif: self.ext.index,
        }
    }

    /// Routes of ours now in the kernel: inside Network, via a gateway, out
    /// of the external interface.
    async fn installed(&self) -> Result<Vec<Route>, BackendError> {
        let net = self.config.network;
        Ok(self
            .kernel
            .routes()
            .await?
            .into_iter()
            .filter(|r| r.oif == self.ext.index && r.gateway.is_some() && net.contains_net(&r.dst))
            .collect())
    }

    fn usable(&self, p: &Lease) -> bool {
        in_network(&self.config.network, p) && accepts(&BackendType::HostGw, p)
    }
}

impl Backend for HostGw {
    fn kind(&self) -> BackendType {
        BackendType::HostGw
    }

    fn mtu(&self) -> u32 {
        self.ext.mtu
    }

    fn prepare(&mut self) -> BackendFuture<'_, LeaseAttrs> {
        let mut a = LeaseAttrs::new(self.ext.public_ip);
        a.backend_type = "host-gw".into();
        Box::pin(async move { Ok(a) })
    }

    fn configure<'a>(&'a mut self, _own: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn reconcile<'a>(&'a mut self, peers: &'a [Lease]) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let want: BTreeSet<Route> = peers
                .iter()
                .filter(|p| self.usable(p))
                .map(|p| self.route(p))
                .collect();
            for r in self.installed().await? {
                if !want.contains(&r) {
                    self.kernel.delete_route(&r).await?;
                }
            }
            for r in &want {
                if let Err(e) = self.kernel.replace_route(r, false).await {
                    // An off-link peer cannot be reached by host-gw; say so and go on.
                    tracing::error!(route = %r.dst, error = %e, "host-gw route refused (peer not on this L2 segment?)");
                }
            }
            Ok(())
        })
    }

    fn add_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            if !self.usable(peer) {
                return Ok(());
            }
            // A moved lease: drop the route via the old gateway first.
            for r in self.installed().await? {
                if r.dst == peer.subnet && r.gateway != Some(peer.attrs.public_ip) {
                    self.kernel.delete_route(&r).await?;
                }
            }
            self.kernel.replace_route(&self.route(peer), false).await
        })
    }

    fn remove_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async move { self.kernel.delete_route(&self.route(peer)).await })
    }

    fn teardown(&mut self) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            for r in self.installed().await? {
                self.kernel.delete_route(&r).await?;
            }
            Ok(())
        })
    }
}
