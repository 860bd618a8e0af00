//! The semaphore in the kv: locksmith's operations as compare-and-swap loops,
//! plus expiring holds.
//!
//! Every change is a read of the semaphore key followed by a write with
//! `prevIndex=<modifiedIndex read>`; a write that loses the race ("Compare
//! failed") is retried from a fresh read. A value that is not locksmith's JSON
//! is reported and never written over: the operator decides what it should be.
//!
//! Expiry is kept outside locksmith's document so that its JSON stays exactly
//! locksmith's. Beside the semaphore key of a group live two directories that
//! locksmith never reads:
//!
//! - `<group dir>/semaphore-leases/<id>`: a key with a TTL, refreshed by the
//!   holder while it holds the slot;
//! - `<group dir>/semaphore-holders/<id>`: a permanent record that `<id>`'s
//!   hold is an expiring one.
//!
//! A holder with a record and no lease has expired; [`LockClient::reap_expired`]
//! removes it from `holders` by compare-and-swap. Holders without a record
//! (taken by `locksmithctl lock`, by upstream locksmithd, or written by hand)
//! never expire, as in locksmith. A holder writes its lease before its record
//! and takes the slot after both; the reaper reads the semaphore, then the
//! records, then the leases, and swaps on the semaphore index it read, so a
//! hold taken or released meanwhile makes its swap fail instead of reaping a
//! live holder.

use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_kv::client::{DeleteOptions, GetOptions, KvClient, KvError, Precondition, SetOptions};
use keelson_kv::v2::{ErrorCode, Node};

use super::semaphore::{group_dir, Semaphore, SemaphoreError};

/// How many times a read-modify-write is retried after losing a race.
const MAX_CAS_ATTEMPTS: usize = 64;

/// What can go wrong with a semaphore operation.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// locksmith's own refusals ("semaphore is at 0", "holder exists",
    /// "holder does not exist"); `index` is the semaphore's modifiedIndex
    /// when it was refused, to watch for the next change from.
    #[error("{source}")]
    Refused { source: SemaphoreError, index: u64 },
    /// The key holds something that is not locksmith's semaphore JSON. It
    /// is left untouched.
    #[error("semaphore {key} holds a malformed value ({reason}); it is left as it is: fix it with `kvctl set` or delete it to start over (value: {value:?})")]
    Malformed {
        key: String,
        reason: String,
        value: String,
    },
    /// Other writers kept changing the semaphore between our read and write.
    #[error("semaphore {key} kept changing: gave up after {attempts} compare-and-swap attempts")]
    Contended { key: String, attempts: usize },
    /// The kv failed or refused the request.
    #[error(transparent)]
    Kv(#[from] KvError),
}

impl LockError {
    /// The semaphore refusal, if that is what this is.
    pub fn refusal(&self) -> Option<&SemaphoreError> {
        match self {
            LockError::Refused { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A group's semaphore in the kv.
#[derive(Clone)]
pub struct LockClient {
    kv: Arc<dyn KvClient>,
    key: String,
    leases: String,
    records: String,
}

impl LockClient {
    /// The semaphore of `group` (`""` is the default group).
    pub fn new(kv: Arc<dyn KvClient>, group: &str) -> Self {
        let dir = group_dir(group);
        LockClient {
            kv,
            key: format!("{dir}/semaphore"),
            leases: format!("{dir}/semaphore-leases"),
            records: format!("{dir}/semaphore-holders"),
        }
    }

    /// The semaphore key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key of `id`'s lease (the TTL key the holder refreshes).
    pub fn lease_key(&self, id: &str) -> String {
        format!("{}/{}", self.leases, id)
    }

    /// The key recording that `id`'s hold expires.
    pub fn record_key(&self, id: &str) -> String {
        format!("{}/{}", self.records, id)
    }

    /// The client this lock talks through.
    pub fn kv(&self) -> &Arc<dyn KvClient> {
        &self.kv
    }

    /// Creates `{"semaphore":1,"max":1,"holders":null}` unless the key exists.
    pub async fn init(&self) -> Result<(), LockError> {
        match self
            .kv
            .create(&self.key, &Semaphore::default().to_json(), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_code(ErrorCode::NodeExist) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the semaphore and its modifiedIndex, creating it first if absent
    /// (as every locksmith command does).
    pub async fn read(&self) -> Result<(Semaphore, u64), LockError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            match self.kv.get(&self.key, GetOptions::default()).await {
                Ok(r) => {
                    let node = r.node().cloned().unwrap_or_default();
                    return self.decode(&node).map(|s| (s, node.modified_index));
                }
                Err(e) if e.is_code(ErrorCode::KeyNotFound) => self.init().await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(self.contended())
    }

    fn decode(&self, node: &Node) -> Result<Semaphore, LockError> {
        let malformed = |reason: String, value: &str| LockError::Malformed {
            key: self.key.clone(),
            reason,
            value: value.to_string(),
        };
        if node.dir {
            return Err(malformed("it is a directory".into(), ""));
        }
        let value = node.value.as_deref().unwrap_or_default();
        Semaphore::parse(value).map_err(|e| malformed(e.to_string(), value))
    }

    fn contended(&self) -> LockError {
        LockError::Contended {
            key: self.key.clone(),
            attempts: MAX_CAS_ATTEMPTS,
        }
    }

    /// Read, apply `f`, write back with `prevIndex`; retried on a lost race.
    /// With `id_for_lease`, that holder's lease and record are written after
    /// `f` succeeded and before the swap. Returns the new semaphore and its
    /// index (the old ones when `f` changed nothing, without writing).
    async fn modify<F>(
        &self,
        f: F,
        id_for_lease: Option<(&str, u64)>,
    ) -> Result<(Semaphore, u64), LockError>
    where
        F: Fn(&mut Semaphore) -> Result<bool, SemaphoreError>,
    {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut sem, index) = self.read().await?;
            let changed = f(&mut sem).map_err(|source| LockError::Refused { source, index })?;
            if !changed {
                return Ok((sem, index));
            }
            if let Some((id, ttl)) = id_for_lease {
                self.write_lease(id, ttl).await?;
            }
            let prev = Precondition {
                value: None,
                index: Some(index),
            };
            match self
                .kv
                .compare_and_swap(&self.key, &sem.to_json(), prev, None)
                .await
            {
                Ok(r) => {
                    let new_index = r.node().map(|n| n.modified_index).unwrap_or(r.etcd_index);
                    return Ok((sem, new_index));
                }
                Err(e) if e.is_code(ErrorCode::TestFailed) || e.is_code(ErrorCode::KeyNotFound) => {
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(self.contended())
    }

    /// `locksmithctl lock`: a slot for `id` that never expires.
    pub async fn lock(&self, id: &str) -> Result<(), LockError> {
        self.modify(|s| s.lock(id).map(|()| true), None)
            .await
            .map(drop)
    }

    /// `locksmithctl unlock`.
    pub async fn unlock(&self, id: &str) -> Result<(), LockError> {
        self.modify(|s| s.unlock(id).map(|()| true), None).await?;
        self.delete_lease(id).await
    }

    /// `locksmithctl set-max`: returns (old max, new max).
    pub async fn set_max(&self, max: i64) -> Result<(i64, i64), LockError> {
        let old = std::sync::Mutex::new(0);
        self.modify(
            |s| {
                let o = s.set_max(max);
                if let Ok(mut g) = old.lock() {
                    *g = o;
                }
                Ok(true)
            },
            None,
        )
        .await?;
        let old = old.into_inner().unwrap_or_default();
        Ok((old, max))
    }

    /// `locksmithctl status`.
    pub async fn status(&self) -> Result<Semaphore, LockError> {
        self.read().await.map(|(s, _)| s)
    }

    /// The daemon's lock: a slot for `id` whose lease lives `ttl` seconds
    /// unless refreshed. Already holding one counts as success. The lease is
    /// written only once a slot looks free, so waiting machines cost one read.
    /// Returns the semaphore's new modifiedIndex.
    pub async fn lock_expiring(&self, id: &str, ttl: u64) -> Result<u64, LockError> {
        let (_, index) = self
            .modify(
                |s| {
                    if s.is_holder(id) {
                        return Ok(false);
                    }
                    s.lock(id).map(|()| true)
                },
                Some((id, ttl)),
            )
            .await?;
        // Already a holder (e.g. restarted after locking): make it expiring.
        self.write_lease(id, ttl).await?;
        Ok(index)
    }

    /// After a reboot: whether `id` still holds a slot; if it does, its lease
    /// is renewed (recreated if it lapsed), so the hold expires again should
    /// this machine die before releasing it.
    pub async fn renew(&self, id: &str, ttl: u64) -> Result<bool, LockError> {
        let (sem, _) = self.read().await?;
        if !sem.is_holder(id) {
            return Ok(false);
        }
        self.write_lease(id, ttl).await?;
        Ok(true)
    }

    /// Resets `id`'s lease to `ttl` seconds (recreating it if it lapsed).
    pub async fn refresh_lease(&self, id: &str, ttl: u64) -> Result<(), LockError> {
        match self.kv.refresh(&self.lease_key(id), ttl).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_code(ErrorCode::KeyNotFound) => self.write_lease(id, ttl).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Returns `id`'s slot; not holding one is fine (it may have expired and
    /// been reaped). Returns whether a slot was returned.
    pub async fn release(&self, id: &str) -> Result<bool, LockError> {
        let held = match self.modify(|s| s.unlock(id).map(|()| true), None).await {
            Ok(_) => true,
            Err(LockError::Refused {
                source: SemaphoreError::HolderDoesNotExist,
                ..
            }) => false,
            Err(e) => return Err(e),
        };
        self.delete_lease(id).await?;
        Ok(held)
    }

    async fn write_lease(&self, id: &str, ttl: u64) -> Result<(), LockError> {
        // Lease first, record second: see the module documentation.
        let lease = SetOptions {
            ttl: Some(ttl.max(1)),
            ..SetOptions::default()
        };
        self.kv.set(&self.lease_key(id), id, lease).await?;
        let record = format!("{{\"ttl\":{ttl}}}");
        self.kv
            .set(&self.record_key(id), &record, SetOptions::default())
            .await?;
        Ok(())
    }

    async fn delete_lease(&self, id: &str) -> Result<(), LockError> {
        for key in [self.record_key(id), self.lease_key(id)] {
            match self.kv.delete(&key, DeleteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.is_code(ErrorCode::KeyNotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Children of a directory: name → modifiedIndex (empty if absent).
    async fn list(&self, dir: &str) -> Result<BTreeMap<String, u64>, LockError> {
        match self.kv.get(dir, GetOptions::default()).await {
            Ok(r) => Ok(r
                .node()
                .and_then(|n| n.nodes.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|n| {
                    let key = n.key.as_deref()?;
                    let name = key.rsplit('/').next()?;
                    Some((name.to_string(), n.modified_index))
                })
                .collect()),
            Err(e) if e.is_code(ErrorCode::KeyNotFound) => Ok(BTreeMap::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes holders whose lease expired from `holders` (by compare-and-swap)
    /// and forgets their records. Returns the IDs whose slots were reclaimed.
    pub async fn reap_expired(&self) -> Result<Vec<String>, LockError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut sem, index) = self.read().await?;
            let records = self.list(&self.records).await?;
            if records.is_empty() {
                return Ok(Vec::new());
            }
            let leases = self.list(&self.leases).await?;
            let expired: Vec<(String, u64)> = records
                .into_iter()
                .filter(|(id, _)| !leases.contains_key(id))
                .collect();
            let mut reaped = Vec::new();
            for (id, _) in &expired {
                if sem.unlock(id).is_ok() {
                    reaped.push(id.clone());
                }
            }
            if !reaped.is_empty() {
                let prev = Precondition {
                    value: None,
                    index: Some(index),
                };
                match self
                    .kv
                    .compare_and_swap(&self.key, &sem.to_json(), prev, None)
                    .await
                {
                    Ok(_) => {}
                    Err(e)
                        if e.is_code(ErrorCode::TestFailed)
                            || e.is_code(ErrorCode::KeyNotFound) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            for (id, record_index) in expired {
                let prev = Precondition {
                    value: None,
                    index: Some(record_index),
                };
                match self
                    .kv
                    .compare_and_delete(&self.record_key(&id), prev)
                    .await
                {
                    Ok(_) => {}
                    // Rewritten (a new hold) or already gone: leave it.
                    Err(e)
                        if e.is_code(ErrorCode::TestFailed)
                            || e.is_code(ErrorCode::KeyNotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(reaped);
        }
        Err(self.contended())
    }
}
