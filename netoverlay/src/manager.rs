//! The lease manager: acquisition, renewal, loss and the view of other hosts'
//! leases, as a pure state machine.
//!
//! Like quinn-proto or etcd's raft, [`LeaseManager`] does no I/O and reads no
//! clock: the driver feeds it [`Input`]s (results of kv operations, watch
//! events, the current time) and performs the [`Action`]s it returns (kv
//! operations, data-path changes). That is what lets the tests run a day of
//! lease renewals, store failures and races between a thousand hosts in
//! milliseconds, and it keeps every decision in one place:
//!
//! * acquire (reference §4.1): reuse the lease holding our public IP, else the
//!   previous subnet from `subnet.env`, else a random one of the first 100
//!   free subnets; create with `prevExist=false`; on a lost race list again,
//!   up to 10 rounds;
//! * renew (§4.3) ahead of expiry with a compare-and-swap on our last
//!   `modifiedIndex`, so a lease another host now holds is never overwritten;
//!   reservations (no TTL, §4.2) are never renewed;
//! * loss (§4.5, Keelson rule): re-create the **same** subnet; only when it is
//!   taken or no longer fits the network, stop with [`LeaseError`];
//! * peers (§4.4): other hosts' leases, delivered as a full set once
//!   ([`Action::Reconcile`]) and then as increments.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cidr::Ipv4Net;
use crate::config::NetworkConfig;
use crate::lease::{Lease, LeaseAttrs, LEASE_TTL_SECS};

/// Tunables; the defaults are flannel's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerOptions {
    /// TTL of a lease (86400 s).
    pub ttl_secs: u64,
    /// Renew this long before expiry (1 h; modern `--subnet-lease-renew-margin`).
    pub renew_margin: Duration,
    /// Wait after a failed renewal (1 min).
    pub renew_retry: Duration,
    /// Wait after the store failed during acquisition (1 s).
    pub retry_delay: Duration,
    /// Rounds of list + create before giving up (10).
    pub max_rounds: u32,
    /// Free subnets collected before choosing one at random (100).
    pub candidates: usize,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            ttl_secs: LEASE_TTL_SECS,
            renew_margin: Duration::hours(1),
            renew_retry: Duration::minutes(1),
            retry_delay: Duration::seconds(1),
            max_rounds: 10,
            candidates: 100,
        }
    }
}

/// A change seen by the watch on `<prefix>/subnets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// `set`, `create`, `update`, `compareAndSwap`.
    Set(Lease),
    /// `delete`, `expire`, `compareAndDelete`.
    Removed(Ipv4Net),
}

/// What the driver tells the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed; the driver sends this at [`LeaseManager::next_wakeup`].
    Tick,
    /// The answer to [`Action::List`] (key not found = empty), with the
    /// store index of the read.
    Listed { leases: Vec<Lease>, index: u64 },
    /// [`Action::Create`] succeeded; the lease as stored.
    Created(Lease),
    /// [`Action::Create`] failed: the key exists (a lost race).
    CreateConflict,
    /// [`Action::Swap`] succeeded; the lease as stored.
    Swapped(Lease),
    /// [`Action::Swap`] failed: compare failed or key not found.
    SwapConflict,
    /// The operation in flight failed for another reason (store down, ...).
    KvFailed,
    /// A watch event.
    Event(LeaseEvent),
    /// The watch lost history and re-read the directory.
    Resync { leases: Vec<Lease> },
    /// The network configuration was rewritten.
    ConfigChanged(NetworkConfig),
}

/// What the manager asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read `<prefix>/subnets` recursively; answer with [`Input::Listed`].
    List,
    /// Create the lease key with `prevExist=false`; answer with
    /// [`Input::Created`] / [`Input::CreateConflict`] / [`Input::KvFailed`].
    Create {
        subnet: Ipv4Net,
        value: String,
        ttl: Option<u64>,
    },
    /// Compare-and-swap on `prevIndex`; answer with [`Input::Swapped`] /
    /// [`Input::SwapConflict`] / [`Input::KvFailed`].
    Swap {
        subnet: Ipv4Net,
        value: String,
        prev_index: u64,
        ttl: Option<u64>,
    },
    /// Compare-and-delete an incompatible old lease of ours (no answer needed).
    Delete {
        subnet: Ipv4Net,
        prev_index: u64,
    },
    /// Start watching after this index (sent once, at first acquisition).
    Watch {
        after_index: u64,
    },
    /// Our lease is held: write `subnet.env`. `renewed_subnet` is false the
    /// first time and after a re-creation of the same subnet.
    Acquired(Lease),
    /// The complete set of other hosts' leases (program the data path).
    Reconcile(Vec<Lease>),
    PeerAdded(Lease),
    PeerRemoved(Lease),
    /// Stop the daemon with this error.
    Fatal(LeaseError),
}

/// Why the daemon must stop. Each message says what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("out of subnets: every /{len} lease between {min} and {max} of {network} is taken; widen Network or SubnetMin/SubnetMax, or remove stale leases")]
    OutOfSubnets {
        network: Ipv4Net,
        len: u8,
        min: Ipv4Addr,
        max: Ipv4Addr,
    },
    #[error("Max retries reached trying to acquire a subnet ({0} rounds lost to other hosts); is the store overloaded?")]
    MaxRetries(u32),
    #[error("lease {subnet} was lost and is now held by {holder}; not renumbering silently: restart the daemon to get a new subnet, then restart the containers on this host")]
    LeaseTaken { subnet: Ipv4Net, holder: Ipv4Addr },
    #[error("lease {subnet} no longer fits the network configuration ({network}, /{len} leases between {min} and {max}); restart the daemon to get a new subnet, then restart the containers on this host")]
    NoLongerInNetwork {
        subnet: Ipv4Net,
        network: Ipv4Net,
        len: u8,
        min: Ipv4Addr,
        max: Ipv4Addr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `wake_at` to list again.
    Idle,
    Listing,
    Creating,
    /// Rewriting a lease of ours found by public IP.
    TakingOver,
    Held,
    Renewing,
    Failed,
}

/// The lease state machine of one host in one network.
#[derive(Debug)]
pub struct LeaseManager {
    config: NetworkConfig,
    attrs: LeaseAttrs,
    value: String,
    previous: Option<Ipv4Net>,
    opts: ManagerOptions,
    rng: StdRng,
    phase: Phase,
    /// Set while the subnet we held must be re-created rather than replaced.
    keep: Option<Ipv4Net>,
    held: Option<Lease>,
    acquired_once: bool,
    rounds: u32,
    wake_at: Option<DateTime<Utc>>,
    renew_at: Option<DateTime<Utc>>,
    list_index: u64,
    peers: BTreeMap<Ipv4Net, Lease>,
}

impl LeaseManager {
    /// `previous` is the subnet named by the last run's `subnet.env`; `seed`
    /// drives the random choice among free subnets.
    pub fn new(
        config: NetworkConfig,
        attrs: LeaseAttrs,
        previous: Option<Ipv4Net>,
        opts: ManagerOptions,
        seed: u64,
    ) -> LeaseManager {
        let value = attrs.to_json();
        LeaseManager {
            config,
            attrs,
            value,
            previous,
            opts,
            rng: StdRng::seed_from_u64(seed),
            phase: Phase::Idle,
            keep: None,
            held: None,
            acquired_once: false,
            rounds: 0,
            wake_at: None,
            renew_at: None,
            list_index: 0,
            peers: BTreeMap::new(),
        }
    }

    /// The first actions: list the leases.
    pub fn start(&mut self) -> Vec<Action> {
        self.phase = Phase::Listing;
        vec![Action::List]
    }

    /// Our lease, once held.
    pub fn lease(&self) -> Option<&Lease> {
        self.held.as_ref()
    }

    /// Other hosts' leases as currently known.
    pub fn peers(&self) -> impl Iterator<Item = &Lease> {
        self.peers.values()
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Whether a fatal error was reported.
    pub fn is_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// When the driver must send [`Input::Tick`] next, if ever.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        match self.phase {
            Phase::Idle => self.wake_at,
            Phase::Held => self.renew_at,
            _ => None,
        }
    }

    /// Feeds one input at time `now`.
    pub fn handle(&mut self, now: DateTime<Utc>, input: Input) -> Vec<Action> {
        if self.phase == Phase::Failed {
            return Vec::new();
        }
        let mut out = Vec::new();
        match input {
            Input::Tick => self.tick(now, &mut out),
            Input::Listed { leases, index } if self.phase == Phase::Listing => {
                self.list_index = index;
                self.replace_peers(leases.clone(), &mut out);
                self.decide(now, leases, &mut out);
            }
            Input::Created(lease) | Input::Swapped(lease)
                if matches!(
                    self.phase,
                    Phase::Creating | Phase::TakingOver | Phase::Renewing
                ) =>
            {
                self.hold(now, lease, &mut out)
            }
            Input::CreateConflict if self.phase == Phase::Creating => self.lost_race(&mut out),
            Input::SwapConflict if self.phase == Phase::TakingOver => self.lost_race(&mut out),
            Input::SwapConflict if self.phase == Phase::Renewing => {
                // The lease changed under us or is gone: re-create it.
                self.keep = self.held.as_ref().map(|l| l.subnet);
                self.phase = Phase::Listing;
                out.push(Action::List);
            }
            Input::KvFailed => match self.phase {
                Phase::Renewing => {
                    self.phase = Phase::Held;
                    self.renew_at = Some(now + self.opts.renew_retry);
                }
                Phase::Listing | Phase::Creating | Phase::TakingOver => {
                    self.phase = Phase::Idle;
                    self.wake_at = Some(now + self.opts.retry_delay);
                }
                _ => {}
            },
            Input::Event(LeaseEvent::Set(lease)) => self.peer_set(now, lease, &mut out),
            Input::Event(LeaseEvent::Removed(subnet)) => self.peer_removed(subnet, &mut out),
            Input::Resync { leases } => {
                let own = self.held.as_ref().map(|l| l.subnet);
                if let Some(own) = own {
                    match leases.iter().find(|l| l.subnet == own) {
                        Some(l) => self.peer_set(now, l.clone(), &mut out),
                        None => self.peer_removed(own, &mut out),
                    }
                }
                self.replace_peers(leases, &mut out);
            }
            Input::ConfigChanged(cfg) => {
                self.config = cfg;
                if let Some(own) = self.held.as_ref().map(|l| l.subnet) {
                    if !self.config.is_compatible(&own) {
                        self.fail(self.not_in_network(own), &mut out);
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn tick(&mut self, now: DateTime<Utc>, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Idle if self.wake_at.is_some_and(|t| t <= now) => {
                self.wake_at = None;
                self.phase = Phase::Listing;
                out.push(Action::List);
            }
            Phase::Held if self.renew_at.is_some_and(|t| t <= now) => {
                if let Some(l) = &self.held {
                    self.phase = Phase::Renewing;
                    self.renew_at = None;
                    out.push(Action::Swap {
                        subnet: l.subnet,
                        value: self.value.clone(),
                        prev_index: l.modified_index,
                        ttl: Some(self.opts.ttl_secs),
                    });
                }
            }
            _ => {}
        }
    }

    fn not_in_network(&self, subnet: Ipv4Net) -> LeaseError {
        LeaseError::NoLongerInNetwork {
            subnet,
            network: self.config.network,
            len: self.config.subnet_len,
            min: self.config.subnet_min,
            max: self.config.subnet_max,
        }
    }

    fn fail(&mut self, e: LeaseError, out: &mut Vec<Action>) {
        self.phase = Phase::Failed;
        out.push(Action::Fatal(e));
    }

    /// Steps 2–4 of §4.1 (or the re-creation of a lost lease).
    fn decide(&mut self, now: DateTime<Utc>, leases: Vec<Lease>, out: &mut Vec<Action>) {
        let me = self.attrs.public_ip;
        if let Some(keep) = self.keep {
            if !self.config.is_compatible(&keep) {
                return self.fail(self.not_in_network(keep), out);
            }
            match leases.iter().find(|l| l.subnet.overlaps(&keep)) {
                Some(l) if l.subnet == keep && l.attrs.public_ip == me => {
                    return self.take_over(now, l, out);
                }
                Some(l) => {
                    let holder = l.attrs.public_ip;
                    return self.fail(
                        LeaseError::LeaseTaken {
                            subnet: keep,
                            holder,
                        },
                        out,
                    );
                }
                None => return self.create(keep, None, out),
            }
        }
        let mut mine: Option<&Lease> = None;
        for l in leases.iter().filter(|l| l.attrs.public_ip == me) {
            if self.config.is_compatible(&l.subnet) && mine.is_none() {
                mine = Some(l);
            } else if !self.config.is_compatible(&l.subnet) {
                out.push(Action::Delete {
                    subnet: l.subnet,
                    prev_index: l.modified_index,
                });
            }
        }
        if let Some(l) = mine {
            return self.take_over(now, l, out);
        }
        if let Some(p) = self.previous {
            if self.config.is_compatible(&p) && !leases.iter().any(|l| l.subnet.overlaps(&p)) {
                return self.create(p, Some(self.opts.ttl_secs), out);
            }
        }
        match self.pick_free(&leases) {
            Some(s) => self.create(s, Some(self.opts.ttl_secs), out),
            None => {
                let c = &self.config;
                let e = LeaseError::OutOfSubnets {
                    network: c.network,
                    len: c.subnet_len,
                    min: c.subnet_min,
                    max: c.subnet_max,
                };
                self.fail(e, out)
            }
        }
    }

    fn create(&mut self, subnet: Ipv4Net, ttl: Option<u64>, out: &mut Vec<Action>) {
        // A lost lease is re-created as an ordinary lease.
        let ttl = ttl.or(Some(self.opts.ttl_secs));
        self.phase = Phase::Creating;
        out.push(Action::Create {
            subnet,
            value: self.value.clone(),
            ttl,
        });
    }

    fn take_over(&mut self, now: DateTime<Utc>, l: &Lease, out: &mut Vec<Action>) {
        if l.is_reservation() && l.value == self.value {
            // A reservation already saying what we would write: use as is.
            self.phase = Phase::TakingOver;
            return self.hold(now, l.clone(), out);
        }
        self.phase = Phase::TakingOver;
        out.push(Action::Swap {
            subnet: l.subnet,
            value: self.value.clone(),
            prev_index: l.modified_index,
            // A reservation stays a reservation (modern flannel).
            ttl: (!l.is_reservation()).then_some(self.opts.ttl_secs),
        });
    }

    fn hold(&mut self, now: DateTime<Utc>, lease: Lease, out: &mut Vec<Action>) {
        let first = !self.acquired_once;
        let recreated = self.keep.take().is_some();
        let renewal = self.phase == Phase::Renewing;
        self.rounds = 0;
        self.phase = Phase::Held;
        self.schedule_renew(now, &lease);
        self.peers.remove(&lease.subnet);
        self.held = Some(lease.clone());
        if first {
            self.acquired_once = true;
            out.push(Action::Acquired(lease));
            out.push(Action::Reconcile(self.peers.values().cloned().collect()));
            out.push(Action::Watch {
                after_index: self.list_index,
            });
        } else if recreated || !renewal {
            out.push(Action::Acquired(lease));
        }
    }

    fn schedule_renew(&mut self, now: DateTime<Utc>, lease: &Lease) {
        // Reservations have no expiration and are never renewed (§4.2).
        self.renew_at = lease
            .expiration
            .map(|exp| (exp - self.opts.renew_margin).max(now));
    }

    fn lost_race(&mut self, out: &mut Vec<Action>) {
        self.rounds += 1;
        if self.keep.is_none() && self.rounds >= self.opts.max_rounds {
            return self.fail(LeaseError::MaxRetries(self.rounds), out);
        }
        self.phase = Phase::Listing;
        out.push(Action::List);
    }

    /// A random one of the first `candidates` free subnets (§4.1 step 4).
    fn pick_free(&mut self, leases: &[Lease]) -> Option<Ipv4Net> {
        // Taken ranges merged into a sorted disjoint union for binary search.
        let mut taken: Vec<(u64, u64)> = leases
            .iter()
            .map(|l| {
                let s = u64::from(u32::from(l.subnet.addr()));
                (s, s + l.subnet.size() - 1)
            })
            .collect();
        taken.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(taken.len());
        for (s, e) in taken {
            match merged.last_mut() {
                Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let c = &self.config;
        let size = 1u64 << (32 - u32::from(c.subnet_len));
        let max = u64::from(u32::from(c.subnet_max));
        let mut at = u64::from(u32::from(c.subnet_min));
        // Keelson: the pool doubles after each lost race, so a thousand hosts
        // starting at once converge in a few rounds instead of exhausting the
        // retries on the same 100 subnets. The first round is flannel's.
        let pool = self.opts.candidates << self.rounds.min(10);
        let mut free = Vec::with_capacity(pool.min(4096));
        while at <= max && free.len() < pool {
            let end = at + size - 1;
            // First merged range ending at or after `at`.
            let i = merged.partition_point(|r| r.1 < at);
            match merged.get(i) {
                Some(r) if r.0 <= end => {
                    // Skip past the taken range, staying aligned.
                    let next = (r.1 + 1).div_ceil(size) * size;
                    at = next.max(at + size);
                }
                _ => {
                    free.push(at);
                    at += size;
                }
            }
        }
        if free.is_empty() {
            return None;
        }
        let pick = free[self.rng.gen_range(0..free.len())];
        Some(Ipv4Net::new(Ipv4Addr::from(pick as u32), c.subnet_len))
    }

    fn is_own(&self, subnet: &Ipv4Net) -> bool {
        self.held.as_ref().is_some_and(|l| l.subnet == *subnet)
    }

    fn peer_set(&mut self, now: DateTime<Utc>, lease: Lease, out: &mut Vec<Action>) {
        if self.is_own(&lease.subnet) {
            if lease.attrs.public_ip != self.attrs.public_ip {
                let holder = lease.attrs.public_ip;
                return self.fail(
                    LeaseError::LeaseTaken {
                        subnet: lease.subnet,
                        holder,
                    },
                    out,
                );
            }
            // Our own write, or someone refreshed it: follow its expiration.
            if self.phase == Phase::Held {
                self.schedule_renew(now, &lease);
            }
            self.held = Some(lease);
            return;
        }
        if lease.attrs.public_ip == self.attrs.public_ip {
            // A stale lease carrying our address: never a route to ourselves.
            return;
        }
        let changed = self.peers.get(&lease.subnet) != Some(&lease);
        let same_attrs = self
            .peers
            .get(&lease.subnet)
            .is_some_and(|old| old.attrs == lease.attrs);
        self.peers.insert(lease.subnet, lease.clone());
        if changed && !same_attrs && self.acquired_once {
            out.push(Action::PeerAdded(lease));
        }
    }

    fn peer_removed(&mut self, subnet: Ipv4Net, out: &mut Vec<Action>) {
        if self.is_own(&subnet) && matches!(self.phase, Phase::Held | Phase::Renewing) {
            // Re-create the same subnet at once; the data path stays as is.
            self.keep = Some(subnet);
            self.create(subnet, None, out);
            return;
        }
        if let Some(old) = self.peers.remove(&subnet) {
            if self.acquired_once {
                out.push(Action::PeerRemoved(old));
            }
        }
    }

    fn replace_peers(&mut self, leases: Vec<Lease>, out: &mut Vec<Action>) {
        let own = self.held.as_ref().map(|l| l.subnet);
        let me = self.attrs.public_ip;
        let new: BTreeMap<Ipv4Net, Lease> = leases
            .into_iter()
            .filter(|l| Some(l.subnet) != own && l.attrs.public_ip != me)
            .map(|l| (l.subnet, l))
            .collect();
        if self.acquired_once {
            for (s, old) in &self.peers {
                if !new.contains_key(s) {
                    out.push(Action::PeerRemoved(old.clone()));
                }
            }
            for (s, l) in &new {
                if self.peers.get(s).map(|o| &o.attrs) != Some(&l.attrs) {
                    out.push(Action::PeerAdded(l.clone()));
                }
            }
        }
        self.peers = new;
    }
}

#[cfg(test)]
mod tests;
