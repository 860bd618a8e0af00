//! [`MemoryBackend`]: the in-memory backend. It records the routes it would
//! program, for deterministic tests of the daemon, and is the `alloc` backend
//! (allocate a lease, forward nothing).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::cidr::Ipv4Net;
use crate::config::BackendType;
use crate::lease::{Lease, LeaseAttrs};

use super::{Backend, BackendFuture};

/// Remote subnet → remote public IP, shared with the test that reads it.
pub type RouteTable = Arc<Mutex<BTreeMap<Ipv4Net, Ipv4Addr>>>;

pub struct MemoryBackend {
    kind: BackendType,
    public_ip: Ipv4Addr,
    mtu: u32,
    routes: RouteTable,
}

impl MemoryBackend {
    pub fn new(kind: BackendType, public_ip: Ipv4Addr, mtu: u32) -> MemoryBackend {
        MemoryBackend {
            kind,
            public_ip,
            mtu,
            routes: RouteTable::default(),
        }
    }

    /// The table this backend maintains.
    pub fn routes(&self) -> RouteTable {
        self.routes.clone()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<Ipv4Net, Ipv4Addr>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> BackendType {
        self.kind.clone()
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn prepare(&mut self) -> BackendFuture<'_, LeaseAttrs> {
        let mut a = LeaseAttrs::new(self.public_ip);
        if self.kind != BackendType::Udp {
            a.backend_type = self.kind.as_str().to_string();
        }
        Box::pin(async move { Ok(a) })
    }

    fn configure<'a>(&'a mut self, _own: &'a Lease) -> BackendFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn reconcile<'a>(&'a mut self, peers: &'a [Lease]) -> BackendFuture<'a, ()> {
        let mut t = self.table();
        t.clear();
        for p in peers {
            t.insert(p.subnet, p.attrs.public_ip);
        }
        drop(t);
        Box::pin(async { Ok(()) })
    }

    fn add_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()> {
        self.table().insert(peer.subnet, peer.attrs.public_ip);
        Box::pin(async { Ok(()) })
    }

    fn remove_peer<'a>(&'a mut self, peer: &'a Lease) -> BackendFuture<'a, ()> {
        self.table().remove(&peer.subnet);
        Box::pin(async { Ok(()) })
    }

    fn teardown(&mut self) -> BackendFuture<'_, ()> {
        self.table().clear();
        Box::pin(async { Ok(()) })
    }
}
