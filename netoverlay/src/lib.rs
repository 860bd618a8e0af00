//! keelson-netoverlay: a flannel-compatible overlay network.
//!
//! Every host leases a block of the configured network in the kv, publishes
//! how to reach it, watches everyone else's leases and programs its kernel so
//! that traffic for a remote block reaches the right host. The crate is the
//! whole daemon as a library: [`config`] (the network document), [`lease`]
//! and [`manager`] (the lease protocol as a pure state machine), [`env`]
//! (`subnet.env` and Docker options), [`backend`] (the data paths) and
//! [`daemon`] (the driver that wires them to a [`KvClient`](keelson_kv::client::KvClient)).

pub mod admin;
pub mod backend;
pub mod cidr;
pub mod config;
pub mod daemon;
pub mod env;
pub mod iptables;
pub mod lease;
pub mod manager;
pub mod memkv;

pub use cidr::Ipv4Net;
pub use config::{BackendConfig, BackendType, ConfigError, NetworkConfig};
pub use lease::{Lease, LeaseAttrs};
pub use manager::{Action, Input, LeaseError, LeaseEvent, LeaseManager, ManagerOptions};
pub use daemon::{Overlay, OverlayConfig, OverlayError};
pub use memkv::MemKv;
