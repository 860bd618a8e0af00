//! The data paths. A [`Backend`] turns the lease set into kernel state (or,
//! for udp, is itself the data path): it prepares its device before the lease
//! is taken (vxlan publishes the device MAC), configures it once the lease is
//! known, reconciles against the full peer set at start (adding what is
//! missing, removing what is stale, so a restart disturbs nothing), then
//! applies increments. A normal stop leaves kernel state in place; only
//! [`Backend::teardown`] removes it (reference §13, items 7 and 8).

pub mod hostgw;
pub mod kernel;
pub mod memory;
pub mod udp;
pub mod vxlan;

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;

use crate::cidr::Ipv4Net;
use crate::config::{BackendType, NetworkConfig};
use crate::lease::{Lease, LeaseAttrs};

pub use kernel::Kernel;

/// The future every [`Backend`] method returns (boxed so `Box<dyn Backend>` works).
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// What went wrong programming the data path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("netlink: {op}: {reason}")]
    Netlink { op: String, reason: String },
    #[error("{0}")]
    Io(String),
    #[error("backend {0:?} is not supported by Keelson (supported: udp, vxlan, host-gw, alloc)")]
    Unsupported(String),
    #[error("interface {0:?} not found (check --iface)")]
    NoInterface(String),
    #[error("interface {0} has no IPv4 address (set --public-ip or pick another --iface)")]
    NoAddress(String),
    #[error("iptables: {0}")]
    Iptables(String),
}

/// The host's external interface, as chosen by `--iface` / `--public-ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalInterface {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// The interface's own address (the VXLAN local address).
    pub iface_addr: Ipv4Addr,
    /// The address published in leases.
    pub public_ip: Ipv4Addr,
}

/// A data path.
pub trait Backend: Send {
    fn kind(&self) -> BackendType;

    /// MTU containers must use.
    fn mtu(&self) -> u32;

    /// Creates devices; returns what the lease publishes.
    fn prepare(&mut self) -> BackendFuture<'_, LeaseAttrs>;

    /// Our lease is held: address the device, add the network route.
    fn configure<'a>(&'a mut self, own: &'a Lease) -> BackendFuture<'a, ()>;

    /// Makes kernel state match exactly this set of remote leases.
    fn reconcile<'a>(&'a mut self, peers: &'a [Lease]) -> BackendFuture<'a, ()>;

    fn add_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()>;

    fn remove_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()>;

    /// Removes everything this backend installed.
    fn teardown(&mut self) -> BackendFuture<'_, ()>;
}

/// Builds the backend a configuration names.
pub fn for_config(
    config: &NetworkConfig,
    ext: &ExternalInterface,
    kernel: Option<Kernel>,
) -> Result<Box<dyn Backend>, BackendError> {
    for_config_with(config, ext, kernel, udp::UdpOptions::default())
}

/// [`for_config`] with the udp data path's tunables.
pub fn for_config_with(
    config: &NetworkConfig,
    ext: &ExternalInterface,
    kernel: Option<Kernel>,
    udp_options: udp::UdpOptions,
) -> Result<Box<dyn Backend>, BackendError> {
    let need = || {
        kernel
            .clone()
            .ok_or_else(|| BackendError::Io("no netlink connection".into()))
    };
    Ok(match &config.backend.kind {
        BackendType::HostGw => Box::new(hostgw::HostGw::new(need()?, config.clone(), ext.clone())),
        BackendType::Vxlan => Box::new(vxlan::Vxlan::new(need()?, config.clone(), ext.clone())),
        BackendType::Udp => Box::new(udp::Udp::new(
            need()?,
            config.clone(),
            ext.clone(),
            udp_options,
        )),
        BackendType::Alloc => Box::new(memory::MemoryBackend::new(
            BackendType::Alloc,
            ext.public_ip,
            ext.mtu,
        )),
        BackendType::Other(name) => return Err(BackendError::Unsupported(name.clone())),
    })
}

/// Whether a peer's lease is usable by a backend of kind `kind`; logs the
/// upstream warning otherwise.
pub(crate) fn accepts(kind: &BackendType, peer: &Lease) -> bool {
    if peer.attrs.effective_backend() == kind.as_str() {
        return true;
    }
    tracing::warn!(subnet = %peer.subnet, backend = peer.attrs.effective_backend(), "Ignoring non-{kind} subnet");
    false
}

/// Leases of `network` only (a hand-written key outside it is never routed).
pub(crate) fn in_network(network: &Ipv4Net, peer: &Lease) -> bool {
    network.contains_net(&peer.subnet)
}
