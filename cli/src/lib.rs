//! Flag parsing, wiring and output formatting for Keelson's binaries. Logic
//! that another program could want lives in the library crates.

pub mod aliases;
pub mod certs;
pub mod fleet_daemon;
pub mod fleetctl;
pub mod kv_daemon;
pub mod kvctl;
pub mod locksmith;
pub mod metrics_http;
pub mod node;
pub mod node_runner;
pub mod node_units;
pub mod overlay_daemon;
pub mod overlayctl;
pub mod unit;
pub mod up;
pub mod update;
