//! Thin rtnetlink wrapper: the few link, address, route, neighbour and FDB
//! operations the backends need, each idempotent (replace instead of add,
//! "not found" on delete is success) so that reconciling after a restart is
//! the same code as a fresh start.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::cidr::Ipv4Net;

use super::BackendError;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub kind: Option<String>,
    pub vxlan_id: Option<u32>,
}

/// A route this crate manages: `dst` via `gateway` (if any) out of `oif`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: u32,
}

/// An rtnetlink connection.
#[derive(Clone)]
pub struct Kernel {
    handle: Handle,
}

fn nl(op: &str, e: rtnetlink::Error) -> BackendError {
    BackendError::Netlink {
        op: op.to_string(),
        reason: e.to_string(),
    }
}

fn errno_is(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;

fn gone(e: &rtnetlink::Error) -> bool {
    errno_is(e, ENOENT) || errno_is(e, ESRCH) || errno_is(e, ENODEV) || errno_is(e, EADDRNOTAVAIL)
}

fn link_from(msg: LinkMessage) -> Link {
    let mut l = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        kind: None,
        vxlan_id: None,
    };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(m) => l.mtu = m,
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(&a);
                l.mac = Some(m);
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            for x in v {
                                if let InfoVxlan::Id(id) = x {
                                    l.vxlan_id = Some(id);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

impl Kernel {
    /// Opens a netlink socket in the caller's network namespace. Must run
    /// inside a tokio runtime (the connection is a spawned task).
    pub fn connect() -> Result<Kernel, BackendError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| BackendError::Netlink {
            op: "open netlink socket".into(),
            reason: e.to_string(),
        })?;
        tokio::spawn(conn);
        Ok(Kernel { handle })
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, BackendError> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(link_from(m))),
            Ok(None) => Ok(None),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(nl("get link", e)),
        }
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, BackendError> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(link_from(m))),
            Ok(None) => Ok(None),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(nl("get link", e)),
        }
    }

    pub async fn links(&self) -> Result<Vec<Link>, BackendError> {
        let s = self.handle.link().get().execute();
        let v: Vec<LinkMessage> = s.try_collect().await.map_err(|e| nl("list links", e))?;
        Ok(v.into_iter().map(link_from).collect())
    }

    /// IPv4 addresses of a link, in kernel order.
    pub async fn ipv4_addrs(&self, index: u32) -> Result<Vec<Ipv4Net>, BackendError> {
        let s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let msgs: Vec<_> = s.try_collect().await.map_err(|e| nl("list addresses", e))?;
        let mut out = Vec::new();
        for m in msgs {
            if m.header.index != index {
                continue;
            }
            for a in &m.attributes {
                if let AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) = a
                {
                    out.push(Ipv4Net::host(*ip, m.header.prefix_len));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The interface of the IPv4 default route.
    pub async fn default_route_link(&self) -> Result<Option<u32>, BackendError> {
        for r in self.routes().await? {
            if r.dst.prefix() == 0 {
                return Ok(Some(r.oif));
            }
        }
        Ok(None)
    }

    pub async fn set_up(&self, index: u32) -> Result<(), BackendError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| nl("set link up", e))
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), BackendError> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| nl("set mtu", e))
    }

    pub async fn delete_link(&self, index: u32) -> Result<(), BackendError> {
        match self.handle.link().del(index).execute().await {
            Err(e) if !gone(&e) => Err(nl("delete link", e)),
            _ => Ok(()),
        }
    }

    /// Adds `ip/prefix` to a link (present already = fine).
    pub async fn add_addr(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), BackendError> {
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .execute()
            .await
        {
            Err(e) if !errno_is(&e, EEXIST) => Err(nl("add address", e)),
            _ => Ok(()),
        }
    }

    /// Creates `flannel.<vni>`-style VXLAN device (learning off).
    pub async fn create_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        dev: u32,
        port: u16,
        learning: bool,
    ) -> Result<(), BackendError> {
        let mut b = LinkVxlan::new(name, vni)
            .local(local)
            .dev(dev)
            .learning(learning);
        if port != 0 {
            b = b.port(port);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| nl("create vxlan device", e))
    }

    /// IPv4 routes of the main table.
    pub async fn routes(&self) -> Result<Vec<Route>, BackendError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let s = self.handle.route().get(msg).execute();
        let msgs: Vec<RouteMessage> = s.try_collect().await.map_err(|e| nl("list routes", e))?;
        let mut out = Vec::new();
        for m in msgs {
            if m.header.table != 254 {
                continue;
            }
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let mut gw = None;
            let mut oif = 0;
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(*g),
                    RouteAttribute::Oif(i) => oif = *i,
                    _ => {}
                }
            }
            out.push(Route {
                dst: Ipv4Net::new(dst, m.header.destination_prefix_length),
                gateway: gw,
                oif,
            });
        }
        Ok(out)
    }

    fn route_msg(r: &Route, onlink: bool) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(r.dst.addr(), r.dst.prefix())
            .output_interface(r.oif);
        if let Some(g) = r.gateway {
            b = b.gateway(g);
        } else {
            b = b.scope(rtnetlink::packet_route::route::RouteScope::Link);
        }
        if onlink {
            b = b.onlink();
        }
        b.build()
    }

    /// Adds or replaces a route.
    pub async fn replace_route(&self, r: &Route, onlink: bool) -> Result<(), BackendError> {
        self.handle
            .route()
            .add(Self::route_msg(r, onlink))
            .replace()
            .execute()
            .await
            .map_err(|e| nl(&format!("add route {} via {:?}", r.dst, r.gateway), e))
    }

    pub async fn delete_route(&self, r: &Route) -> Result<(), BackendError> {
        match self
            .handle
            .route()
            .del(Self::route_msg(r, false))
            .execute()
            .await
        {
            Err(e) if !gone(&e) => Err(nl("delete route", e)),
            _ => Ok(()),
        }
    }

    /// Permanent ARP entry `ip → mac` on a link.
    pub async fn replace_neighbour(
        &self,
        index: u32,
        ip: Ipv4Addr,
        mac: &[u8; 6],
    ) -> Result<(), BackendError> {
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .link_layer_address(mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| nl("add neighbour", e))
    }

    /// Permanent FDB entry (`bridge fdb replace MAC dev X dst IP self permanent`).
    pub async fn replace_fdb(
        &self,
        index: u32,
        mac: &[u8; 6],
        dst: Ipv4Addr,
    ) -> Result<(), BackendError> {
        self.handle
            .neighbours()
            .add_bridge(index, mac)
            .destination(IpAddr::V4(dst))
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| nl("add fdb entry", e))
    }

    /// Neighbour (family inet) or FDB (family bridge) entries of a link.
    pub async fn neighbours(
        &self,
        index: u32,
        bridge: bool,
    ) -> Result<Vec<NeighbourMessage>, BackendError> {
        let req = self.handle.neighbours().get();
        let req = req.set_address_family(if bridge {
            AddressFamily::Bridge
        } else {
            AddressFamily::Inet
        });
        let msgs: Vec<NeighbourMessage> = req
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl("list neighbours", e))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.ifindex == index)
            .collect())
    }

    pub async fn delete_neighbour(&self, msg: NeighbourMessage) -> Result<(), BackendError> {
        match self.handle.neighbours().del(msg).execute().await {
            Err(e) if !gone(&e) => Err(nl("delete neighbour", e)),
            _ => Ok(()),
        }
    }
}

/// The destination IP and MAC of a neighbour/FDB message.
pub fn neighbour_parts(m: &NeighbourMessage) -> (Option<Ipv4Addr>, Option<[u8; 6]>) {
    let mut ip = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(i)) => ip = Some(*i),
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                let mut x = [0u8; 6];
                x.copy_from_slice(l);
                mac = Some(x);
            }
            _ => {}
        }
    }
    (ip, mac)
}
