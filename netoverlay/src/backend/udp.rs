//! udp: a TUN device (`flannel0`, ...) and a UDP socket on port 8285; each
//! inner IPv4 packet travels as the whole payload of one datagram, exactly as
//! flannel's `proxy.c` sends it (reference §6.2), so Keelson and flannel hosts
//! interoperate.
//!
//! Here the daemon *is* the data path, so it is where batching pays: packets
//! are drained from the TUN device until it is empty and sent with one
//! `sendmmsg`, and received with `recvmmsg` (through `nix`, no `unsafe`
//! here). [`UdpOptions::batch`] = 1 gives upstream's one packet per system
//! call, for comparison.

use std::collections::BTreeMap;
use std::io::{ErrorKind, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrIn};

use crate::cidr::Ipv4Net;
use crate::config::{BackendType, NetworkConfig};
use crate::lease::{Lease, LeaseAttrs};

use super::kernel::{Kernel, Route};
use super::{accepts, in_network, Backend, BackendError, BackendFuture, ExternalInterface};

/// Data-path tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Packets per system call (1 = upstream's design).
    pub batch: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions { batch: 64 }
    }
}

/// Remote lease → peer public IP; lookups are longest-prefix.
#[derive(Debug, Default, Clone)]
pub struct PeerTable {
    by_prefix: BTreeMap<(u8, Ipv4Addr), Ipv4Addr>,
}

impl PeerTable {
    pub fn insert(&mut self, subnet: Ipv4Net, peer: Ipv4Addr) {
        self.by_prefix
            .insert((subnet.prefix(), subnet.addr()), peer);
    }

    pub fn remove(&mut self, subnet: &Ipv4Net) {
        self.by_prefix.remove(&(subnet.prefix(), subnet.addr()));
    }

    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        // Lease lengths in one network are uniform; iterate lengths present.
        let mut lens: Vec<u8> = self.by_prefix.keys().map(|k| k.0).collect();
        lens.dedup();
        lens.iter().rev().find_map(|&l| {
            self.by_prefix
                .get(&(l, Ipv4Net::new(dst, l).addr()))
                .copied()
        })
    }
}

/// Decrements the IPv4 TTL in place, fixing the header checksum
/// incrementally (RFC 1624). Returns false for packets to drop: not IPv4,
/// truncated, or TTL expiring.
pub fn decrement_ttl(pkt: &mut [u8]) -> bool {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return false;
    }
    let ttl = pkt[8];
    if ttl <= 1 {
        return false;
    }
    pkt[8] = ttl - 1;
    // HC' = ~(~HC + ~m + m'), m = the 16-bit word holding TTL and protocol.
    let old = u16::from_be_bytes([ttl, pkt[9]]);
    let new = u16::from_be_bytes([ttl - 1, pkt[9]]);
    let hc = u16::from_be_bytes([pkt[10], pkt[11]]);
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let out = !(sum as u16);
    pkt[10..12].copy_from_slice(&out.to_be_bytes());
    true
}

/// Destination address of an IPv4 packet.
pub fn ipv4_dst(pkt: &[u8]) -> Option<Ipv4Addr> {
    (pkt.len() >= 20 && pkt[0] >> 4 == 4).then(|| Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]))
}

pub struct Udp {
    kernel: Kernel,
    config: NetworkConfig,
    ext: ExternalInterface,
    opts: UdpOptions,
    table: Arc<RwLock<PeerTable>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    device: Option<String>,
}

impl Udp {
    pub fn new(
        kernel: Kernel,
        config: NetworkConfig,
        ext: ExternalInterface,
        opts: UdpOptions,
    ) -> Udp {
        Udp {
            kernel,
            config,
            ext,
            opts,
            table: Arc::default(),
            stop: Arc::default(),
            threads: Vec::new(),
            device: None,
        }
    }

    /// The TUN device's name once configured (`flannel0`, ...).
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, PeerTable> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn usable(&self, p: &Lease) -> bool {
        in_network(&self.config.network, p) && accepts(&BackendType::Udp, p)
    }

    async fn start(&mut self, own: &Lease) -> Result<(), BackendError> {
        let io = |what: &str, e: &dyn std::fmt::Display| {
            BackendError::Io(format!("udp backend: {what}: {e}"))
        };
        let mtu = self.mtu();
        let mut cfg = tun::Configuration::default();
        cfg.tun_name("flannel%d");
        cfg.platform_config(|p| {
            p.ensure_root_privileges(false);
        });
        let dev =
            tun::create(&cfg).map_err(|e| io("create TUN device (is /dev/net/tun there?)", &e))?;
        dev.set_nonblock()
            .map_err(|e| io("set TUN non-blocking", &e))?;
        let name = tun::AbstractDevice::tun_name(&dev).map_err(|e| io("TUN name", &e))?;
        let link = self
            .kernel
            .link_by_name(&name)
            .await?
            .ok_or_else(|| BackendError::NoInterface(name.clone()))?;
        self.kernel.set_mtu(link.index, mtu).await?;
        // Modern addressing: the lease address as /32 plus an explicit route
        // for the whole network (Docker may hold a conflicting one).
        self.kernel
            .add_addr(link.index, own.subnet.addr(), 32)
            .await?;
        self.kernel.set_up(link.index).await?;
        self.kernel
            .replace_route(
                &Route {
                    dst: self.config.network,
                    gateway: None,
                    oif: link.index,
                },
                false,
            )
            .await?;
        let port = self.config.backend.effective_port();
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
            .map_err(|e| io(&format!("bind UDP port {port}"), &e))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| io("socket timeout", &e))?;
        let dev = Arc::new(dev);
        let sock = Arc::new(sock);
        let batch = self.opts.batch.max(1);
        let buf = (mtu as usize + 64).max(2048);
        {
            let (dev, sock, table, stop) = (
                dev.clone(),
                sock.clone(),
                self.table.clone(),
                self.stop.clone(),
            );
            self.threads.push(std::thread::spawn(move || {
                tun_to_udp(&dev, &sock, &table, &stop, batch, buf, port)
            }));
        }
        {
            let (stop, dev) = (self.stop.clone(), dev.clone());
            self.threads.push(std::thread::spawn(move || {
                udp_to_tun(&sock, &dev, &stop, batch, buf)
            }));
        }
        tracing::info!(device = %name, port, mtu, batch, "udp data path running");
        self.device = Some(name);
        Ok(())
    }
}

fn tun_to_udp(
    dev: &tun::Device,
    sock: &UdpSocket,
    table: &RwLock<PeerTable>,
    stop: &AtomicBool,
    batch: usize,
    buf: usize,
    port: u16,
) {
    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| vec![0u8; buf]).collect();
    let mut lens = vec![0usize; batch];
    let mut dests: Vec<Option<SockaddrIn>> = vec![None; batch];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(batch, None);
    let fd = sock.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let mut n = match dev.recv_timeout(&mut bufs[0], Duration::from_millis(200)) {
            Ok(len) => {
                lens[0] = len;
                1
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::error!(error = %e, "TUN read failed; udp data path stopping");
                return;
            }
        };
        // Drain what is already queued, up to the batch size.
        while n < batch {
            match dev.recv(&mut bufs[n]) {
                Ok(len) => {
                    lens[n] = len;
                    n += 1;
                }
                Err(_) => break,
            }
        }
        // Route and rewrite in place; compact the batch to what is sent.
        let t = table.read().unwrap_or_else(|p| p.into_inner());
        let mut m = 0;
        for i in 0..n {
            let len = lens[i];
            let pkt = &mut bufs[i][..len];
            let Some(peer) = ipv4_dst(pkt).and_then(|d| t.lookup(d)) else {
                continue;
            };
            if !decrement_ttl(pkt) {
                continue;
            }
            if i != m {
                bufs.swap(i, m);
            }
            lens[m] = len;
            dests[m] = Some(SockaddrIn::from(SocketAddrV4::new(peer, port)));
            m += 1;
        }
        drop(t);
        let mut sent = 0;
        while sent < m {
            if batch == 1 {
                let d = dests[sent].map(SocketAddrV4::from);
                if let Some(d) = d {
                    let _ = sock.send_to(&bufs[sent][..lens[sent]], d);
                }
                sent += 1;
                continue;
            }
            let slices: Vec<[IoSlice<'_>; 1]> = (sent..m)
                .map(|i| [IoSlice::new(&bufs[i][..lens[i]])])
                .collect();
            let cmsgs: Vec<ControlMessage<'_>> = Vec::new();
            match sendmmsg(
                fd,
                &mut headers,
                slices.iter(),
                &dests[sent..m],
                &cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(r) => {
                    let k = r.count();
                    sent += k.max(1);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    // Unreachable peer and the like: drop this packet, go on.
                    tracing::debug!(error = %e, "sendmmsg");
                    sent += 1;
                }
            }
        }
    }
}

fn udp_to_tun(sock: &UdpSocket, dev: &tun::Device, stop: &AtomicBool, batch: usize, buf: usize) {
    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| vec![0u8; buf]).collect();
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(batch, None);
    let mut lens = vec![0usize; batch];
    let fd = sock.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let n = if batch == 1 {
            match sock.recv_from(&mut bufs[0]) {
                Ok((len, _)) => {
                    lens[0] = len;
                    1
                }
                Err(_) => 0,
            }
        } else {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(r) => {
                    let mut k = 0;
                    for (i, m) in r.enumerate() {
                        lens[i] = m.bytes;
                        k = i + 1;
                    }
                    k
                }
                Err(_) => 0,
            }
        };
        for i in 0..n {
            let pkt = &mut bufs[i][..lens[i]];
            if decrement_ttl(pkt) {
                let _ = dev.send(pkt);
            }
        }
    }
}

impl Backend for Udp {
    fn kind(&self) -> BackendType {
        BackendType::Udp
    }

    fn mtu(&self) -> u32 {
        self.config.mtu_for(self.ext.mtu)
    }

    fn prepare(&mut self) -> BackendFuture<'_, LeaseAttrs> {
        // udp publishes no BackendType (flannel writes none).
        let a = LeaseAttrs::new(self.ext.public_ip);
        Box::pin(async move { Ok(a) })
    }

    fn configure<'a>(&'a mut self, own: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            if self.device.is_none() {
                self.start(own).await?;
            }
            Ok(())
        })
    }

    fn reconcile<'a>(&'a mut self, peers: &'a [Lease]) -> BackendFuture<'a, ()> {
        let mut t = PeerTable::default();
        for p in peers.iter().filter(|p| self.usable(p)) {
            t.insert(p.subnet, p.attrs.public_ip);
        }
        *self.write_table() = t;
        Box::pin(async { Ok(()) })
    }

    fn add_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()> {
        if self.usable(peer) {
            self.write_table().insert(peer.subnet, peer.attrs.public_ip);
        }
        Box::pin(async { Ok(()) })
    }

    fn remove_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()> {
        self.write_table().remove(&peer.subnet);
        Box::pin(async { Ok(()) })
    }

    fn teardown(&mut self) -> BackendFuture<'_, ()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Closing the TUN file descriptor removed the device and its routes.
        self.device = None;
        Box::pin(async { Ok(()) })
    }
}

impl Drop for Udp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(h: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in h.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    fn packet(ttl: u8) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 20, 0x12, 0x34, 0x40, 0, ttl, 1, 0, 0, 10, 1, 19, 2, 10, 1, 3, 2,
        ];
        let c = checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        for ttl in 2..=255u8 {
            let mut p = packet(ttl);
            assert!(decrement_ttl(&mut p));
            assert_eq!(p[8], ttl - 1);
            assert_eq!(checksum(&p), 0, "ttl {ttl}");
        }
        assert!(!decrement_ttl(&mut packet(1)));
        assert!(!decrement_ttl(&mut [0x60; 40]));
        assert!(!decrement_ttl(&mut [0x45; 10]));
        assert_eq!(ipv4_dst(&packet(9)), Some(Ipv4Addr::new(10, 1, 3, 2)));
    }

    #[test]
    fn peer_table_longest_prefix() {
        let mut t = PeerTable::default();
        t.insert("10.1.3.0/24".parse().unwrap(), Ipv4Addr::new(10, 88, 0, 12));
        t.insert("10.1.0.0/16".parse().unwrap(), Ipv4Addr::new(10, 88, 0, 99));
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 1, 3, 7)),
            Some(Ipv4Addr::new(10, 88, 0, 12))
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 1, 4, 7)),
            Some(Ipv4Addr::new(10, 88, 0, 99))
        );
        t.remove(&"10.1.0.0/16".parse().unwrap());
        assert_eq!(t.lookup(Ipv4Addr::new(10, 1, 4, 7)), None);
    }
}
