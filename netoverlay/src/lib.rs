//! keelson-netoverlay: a flannel-compatible overlay network.
//!
//! This crate will hold the network configuration read from
//! `/coreos.com/network/config`, the subnet lease manager (a pure state machine
//! over `KvClient`), `subnet.env` and Docker options output, and the `Backend`
//! trait with its udp (TUN), vxlan (kernel VXLAN over netlink) and host-gw
//! implementations.
//!
//! Nothing is implemented yet; see the netoverlay issue.
