//! The counters behind `GET /v2/stats/store`.
//!
//! Write counters change only when a command is applied, so every member
//! that applied the same log agrees on them and they travel in snapshots.
//! Read counters are local to the answering member and `watchers` belongs to
//! the driver that holds the watchers.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// `/v2/stats/store`, with etcd's field names in etcd's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStats {
    pub gets_success: u64,
    pub gets_fail: u64,
    pub sets_success: u64,
    pub sets_fail: u64,
    pub delete_success: u64,
    pub delete_fail: u64,
    pub update_success: u64,
    pub update_fail: u64,
    pub create_success: u64,
    pub create_fail: u64,
    pub compare_and_swap_success: u64,
    pub compare_and_swap_fail: u64,
    pub compare_and_delete_success: u64,
    pub compare_and_delete_fail: u64,
    pub expire_count: u64,
    pub watchers: u64,
}

/// Which counter pair a command feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Set,
    Delete,
    Update,
    Create,
    CompareAndSwap,
    CompareAndDelete,
}

/// Write counters: part of the replicated state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WriteCounters {
    pub sets_success: u64,
    pub sets_fail: u64,
    pub delete_success: u64,
    pub delete_fail: u64,
    pub update_success: u64,
    pub update_fail: u64,
    pub create_success: u64,
    pub create_fail: u64,
    pub compare_and_swap_success: u64,
    pub compare_and_swap_fail: u64,
    pub compare_and_delete_success: u64,
    pub compare_and_delete_fail: u64,
    pub expire_count: u64,
}

impl WriteCounters {
    pub fn record(&mut self, op: Op, ok: bool) {
        let c = match (op, ok) {
            (Op::Set, true) => &mut self.sets_success,
            (Op::Set, false) => &mut self.sets_fail,
            (Op::Delete, true) => &mut self.delete_success,
            (Op::Delete, false) => &mut self.delete_fail,
            (Op::Update, true) => &mut self.update_success,
            (Op::Update, false) => &mut self.update_fail,
            (Op::Create, true) => &mut self.create_success,
            (Op::Create, false) => &mut self.create_fail,
            (Op::CompareAndSwap, true) => &mut self.compare_and_swap_success,
            (Op::CompareAndSwap, false) => &mut self.compare_and_swap_fail,
            (Op::CompareAndDelete, true) => &mut self.compare_and_delete_success,
            (Op::CompareAndDelete, false) => &mut self.compare_and_delete_fail,
        };
        *c += 1;
    }
}

/// Read counters: bumped through `&self` by concurrent readers.
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    pub success: AtomicU64,
    pub fail: AtomicU64,
}

impl ReadCounters {
    pub fn record(&self, ok: bool) {
        let c = if ok { &self.success } else { &self.fail };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn combine(w: &WriteCounters, r: &ReadCounters, watchers: u64) -> StoreStats {
    StoreStats {
        gets_success: r.success.load(Ordering::Relaxed),
        gets_fail: r.fail.load(Ordering::Relaxed),
        sets_success: w.sets_success,
        sets_fail: w.sets_fail,
        delete_success: w.delete_success,
        delete_fail: w.delete_fail,
        update_success: w.update_success,
        update_fail: w.update_fail,
        create_success: w.create_success,
        create_fail: w.create_fail,
        compare_and_swap_success: w.compare_and_swap_success,
        compare_and_swap_fail: w.compare_and_swap_fail,
        compare_and_delete_success: w.compare_and_delete_success,
        compare_and_delete_fail: w.compare_and_delete_fail,
        expire_count: w.expire_count,
        watchers,
    }
}
