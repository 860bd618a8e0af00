//! keelson-netoverlay: a flannel-compatible overlay network.
//!
//! Every host leases a block of the configured network in the kv, publishes
//! how to reach it, watches everyone else's leases and programs its kernel so
//! that traffic for a remote block reaches the right host. The crate is the
//! whole daemon as a library: [`config`] (the network document), [`lease`]
//! and [`manager`] (the lease protocol as a pure state machine), [`env`]
//! (`subnet.env` and Docker options), [`backend`] (the data paths) and
//! [`daemon`] (the driver that wires them to a [`KvClient`](keelson_kv::client::KvClient)).
//!
//! ```no_run
//! use keelson_netoverlay::{Overlay, OverlayConfig};
//!
//! # async fn demo() -> Result<(), keelson_netoverlay::OverlayError> {
//! // flanneld --etcd-endpoints=http://10.88.0.1:2379 --iface=eth0
//! let config = OverlayConfig {
//!     etcd_endpoints: vec!["http://10.88.0.1:2379".into()],
//!     iface: Some("eth0".into()),
//!     ..OverlayConfig::default()
//! };
//! Overlay::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! The lease protocol can be driven without any I/O:
//!
//! ```
//! use keelson_netoverlay::{Action, Input, LeaseAttrs, LeaseManager, ManagerOptions, NetworkConfig};
//!
//! let config = NetworkConfig::parse(r#"{ "network": "10.1.0.0/16" }"#).unwrap();
//! let me = LeaseAttrs::new("10.88.0.11".parse().unwrap());
//! let mut m = LeaseManager::new(config, me, None, ManagerOptions::default(), 1);
//! assert_eq!(m.start(), vec![Action::List]);
//! let actions = m.handle(chrono::Utc::now(), Input::Listed { leases: vec![], index: 1 });
//! assert!(matches!(actions[0], Action::Create { ttl: Some(86400), .. }));
//! ```

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
pub use daemon::{Overlay, OverlayConfig, OverlayError};
pub use lease::{Lease, LeaseAttrs};
pub use manager::{Action, Input, LeaseError, LeaseEvent, LeaseManager, ManagerOptions};
pub use memkv::MemKv;
