//! A/B `/usr` slots and the bootloader's choice between them.
//!
//! CoreOS keeps two `/usr` partitions, USR-A and USR-B, and lets GRUB's
//! `gptprio.next` pick one at boot from three GPT attribute fields: priority,
//! tries left, and successful. An update writes the inactive slot, gives it the
//! highest priority and one try; if the new system never marks itself good,
//! the try is spent and the next boot falls back to the old slot. The rules
//! live here as pure functions on a [`SlotTable`] so they can be
//! property-tested; [`BootSlots`] is the seam with a real GPT implementation
//! ([`crate::gpt::GptSlots`]) and a directory one ([`DirSlots`]) for tests.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One of the two `/usr` slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// USR-A, partition 3.
    A,
    /// USR-B, partition 4.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    /// The GPT partition label.
    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "USR-A",
            Slot::B => "USR-B",
        }
    }
    /// The GPT partition number (1-based).
    pub fn partition_number(self) -> u32 {
        match self {
            Slot::A => 3,
            Slot::B => 4,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Errors from slot operations.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadTable { path: PathBuf, reason: String },
    #[error("{path}: no partition labelled {label} (and partition {number} is not a usable slot)")]
    NoSlot {
        path: PathBuf,
        label: &'static str,
        number: u32,
    },
    #[error("no bootable slot: both USR slots have priority 0 or neither has tries left nor is marked successful")]
    NothingBootable,
    #[error("cannot roll back: {0} is not bootable (not successful and no tries left)")]
    CannotRollBack(Slot),
}

impl SlotError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SlotError + '_ {
        move |source| SlotError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The Chrome OS-style boot attributes of a slot (GPT attribute bits 48–56).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SlotAttrs {
    /// 0 = never boot; higher wins (4 bits).
    pub priority: u8,
    /// Boot attempts left (4 bits).
    pub tries: u8,
    /// The slot booted and was marked good.
    pub successful: bool,
}

impl SlotAttrs {
    const PRIORITY_SHIFT: u32 = 48;
    const TRIES_SHIFT: u32 = 52;
    const SUCCESSFUL_BIT: u32 = 56;
    const MASK: u64 = (0xF << 48) | (0xF << 52) | (1 << 56);

    /// Decodes from a GPT attribute field.
    pub fn from_gpt(attr: u64) -> Self {
        Self {
            priority: ((attr >> Self::PRIORITY_SHIFT) & 0xF) as u8,
            tries: ((attr >> Self::TRIES_SHIFT) & 0xF) as u8,
            successful: (attr >> Self::SUCCESSFUL_BIT) & 1 == 1,
        }
    }

    /// Encodes into `attr`, leaving every other bit (read-only, no-auto, …) alone.
    pub fn to_gpt(self, attr: u64) -> u64 {
        (attr & !Self::MASK)
            | (u64::from(self.priority & 0xF) << Self::PRIORITY_SHIFT)
            | (u64::from(self.tries & 0xF) << Self::TRIES_SHIFT)
            | (u64::from(self.successful) << Self::SUCCESSFUL_BIT)
    }

    /// Whether the bootloader may pick this slot.
    pub fn bootable(self) -> bool {
        self.priority > 0 && (self.tries > 0 || self.successful)
    }
}

impl std::fmt::Display for SlotAttrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // cgpt's spelling
        write!(
            f,
            "priority={} tries={} successful={}",
            self.priority,
            self.tries,
            u8::from(self.successful)
        )
    }
}

/// Both slots' attributes; the pure core of every slot operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SlotTable {
    pub a: SlotAttrs,
    pub b: SlotAttrs,
}

impl SlotTable {
    /// A fresh install booted from A (coreos/docs `manual-rollbacks.md`).
    pub fn fresh_install() -> Self {
        Self {
            a: SlotAttrs {
                priority: 2,
                tries: 0,
                successful: true,
            },
            b: SlotAttrs {
                priority: 1,
                tries: 0,
                successful: false,
            },
        }
    }

    pub fn get(&self, s: Slot) -> SlotAttrs {
        match s {
            Slot::A => self.a,
            Slot::B => self.b,
        }
    }

    pub fn get_mut(&mut self, s: Slot) -> &mut SlotAttrs {
        match s {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }

    /// `cgpt prioritize`: `s` gets the highest priority, the other stays
    /// below it (and stays 0 if it was 0).
    pub fn prioritize(&mut self, s: Slot) {
        let other = self.get_mut(s.other());
        other.priority = if other.priority > 0 { 1 } else { 0 };
        self.get_mut(s).priority = 2;
    }

    /// GRUB's `gptprio.next`: the highest-priority slot with tries left or
    /// successful set (first in table order on a tie); its tries are
    /// decremented before booting. `None` means nothing is bootable.
    pub fn boot_next(&mut self) -> Option<Slot> {
        let mut pick: Option<Slot> = None;
        for s in [Slot::A, Slot::B] {
            let at = self.get(s);
            if !at.bootable() {
                continue;
            }
            if pick.is_none_or(|p| at.priority > self.get(p).priority) {
                pick = Some(s);
            }
        }
        let s = pick?;
        let at = self.get_mut(s);
        if at.tries > 0 {
            at.tries -= 1;
        }
        Some(s)
    }

    /// Before writing `s`: make it unbootable so a half-written slot is never chosen.
    pub fn clear(&mut self, s: Slot) {
        *self.get_mut(s) = SlotAttrs::default();
    }

    /// After a verified write of `s`: one try, not yet successful, highest priority.
    pub fn set_next(&mut self, s: Slot) {
        let at = self.get_mut(s);
        at.tries = 1;
        at.successful = false;
        self.prioritize(s);
    }

    /// The running slot passed its health check: successful, no tries, highest priority.
    pub fn mark_good(&mut self, s: Slot) {
        let at = self.get_mut(s);
        at.successful = true;
        at.tries = 0;
        self.prioritize(s);
    }

    /// Manual rollback from `active` to the other slot, which must be bootable.
    pub fn rollback(&mut self, active: Slot) -> Result<(), SlotError> {
        let other = active.other();
        let at = self.get(other);
        if !(at.successful || at.tries > 0) {
            return Err(SlotError::CannotRollBack(other));
        }
        self.prioritize(other);
        Ok(())
    }
}

/// A window onto one slot's bytes inside a file (a partition of a disk image,
/// or a whole file). Reads and writes never leave the window.
#[derive(Debug)]
pub struct Region {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Region {
    /// Opens `path` read-write, limited to `[start, start + len)`.
    pub fn open(path: &Path, start: u64, len: u64) -> Result<Self, SlotError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(SlotError::io(path))?;
        file.seek(SeekFrom::Start(start))
            .map_err(SlotError::io(path))?;
        Ok(Self {
            file,
            start,
            len,
            pos: 0,
        })
    }

    /// The window's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes to stable storage.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}

impl Read for Region {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let k = self.file.read(&mut buf[..n])?;
        self.pos += k as u64;
        Ok(k)
    }
}

impl Write for Region {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "write past the end of the slot",
            ));
        }
        let k = self.file.write(&buf[..n])?;
        self.pos += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()
    }
}

impl Seek for Region {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.filter(|t| *t <= self.len).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek outside the slot")
        })?;
        self.file.seek(SeekFrom::Start(self.start + target))?;
        self.pos = target;
        Ok(target)
    }
}

/// The A/B slot seam. Implementations store the attributes; the rules are
/// the provided methods, shared by all of them.
pub trait BootSlots {
    /// The slot the system is running from.
    fn active(&self) -> Slot;
    /// Both slots' attributes.
    fn table(&self) -> Result<SlotTable, SlotError>;
    /// Writes both slots' attributes.
    fn write_table(&mut self, table: &SlotTable) -> Result<(), SlotError>;
    /// Opens a slot's bytes for reading and writing.
    fn open_slot(&self, slot: Slot) -> Result<Region, SlotError>;

    /// The slot updates are written to.
    fn inactive(&self) -> Slot {
        self.active().other()
    }

    /// Before writing: the inactive slot can no longer be booted.
    fn mark_inactive_unbootable(&mut self) -> Result<(), SlotError> {
        let mut t = self.table()?;
        t.clear(self.inactive());
        self.write_table(&t)
    }

    /// After a verified write: boot the inactive slot next, once.
    fn set_next(&mut self) -> Result<(), SlotError> {
        let mut t = self.table()?;
        t.set_next(self.inactive());
        self.write_table(&t)
    }

    /// After the health check: the active slot is good.
    fn mark_good(&mut self) -> Result<(), SlotError> {
        let mut t = self.table()?;
        t.mark_good(self.active());
        self.write_table(&t)
    }

    /// Manual rollback: boot the other slot next.
    fn rollback(&mut self) -> Result<(), SlotError> {
        let mut t = self.table()?;
        t.rollback(self.active())?;
        self.write_table(&t)
    }
}

/// Slots as two files and a JSON attribute table in a directory, for tests
/// and for hosts without a CoreOS disk layout.
#[derive(Debug, Clone)]
pub struct DirSlots {
    dir: PathBuf,
    active: Slot,
}

impl DirSlots {
    const TABLE: &'static str = "slots.json";

    fn slot_path(dir: &Path, s: Slot) -> PathBuf {
        dir.join(match s {
            Slot::A => "usr-a.img",
            Slot::B => "usr-b.img",
        })
    }

    /// Creates `dir` with two `size`-byte slots in the fresh-install state.
    pub fn create(dir: &Path, size: u64) -> Result<(), SlotError> {
        std::fs::create_dir_all(dir).map_err(SlotError::io(dir))?;
        for s in [Slot::A, Slot::B] {
            let p = Self::slot_path(dir, s);
            let f = File::create(&p).map_err(SlotError::io(&p))?;
            f.set_len(size).map_err(SlotError::io(&p))?;
        }
        Self::store(dir, &SlotTable::fresh_install())
    }

    /// Opens the slots, running from `active`.
    pub fn open(dir: &Path, active: Slot) -> Self {
        Self {
            dir: dir.to_path_buf(),
            active,
        }
    }

    /// Simulates a boot: applies the bootloader rule, persists the spent try,
    /// and returns the slots running from the chosen slot.
    pub fn boot(dir: &Path) -> Result<Self, SlotError> {
        let mut s = Self::open(dir, Slot::A);
        let mut t = s.table()?;
        s.active = t.boot_next().ok_or(SlotError::NothingBootable)?;
        s.write_table(&t)?;
        Ok(s)
    }

    fn store(dir: &Path, t: &SlotTable) -> Result<(), SlotError> {
        let p = dir.join(Self::TABLE);
        let tmp = dir.join(".slots.json.tmp");
        let body = serde_json::to_vec_pretty(t).map_err(|e| SlotError::BadTable {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, body).map_err(SlotError::io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(SlotError::io(&p))
    }
}

impl BootSlots for DirSlots {
    fn active(&self) -> Slot {
        self.active
    }

    fn table(&self) -> Result<SlotTable, SlotError> {
        let p = self.dir.join(Self::TABLE);
        let body = std::fs::read(&p).map_err(SlotError::io(&p))?;
        serde_json::from_slice(&body).map_err(|e| SlotError::BadTable {
            path: p,
            reason: e.to_string(),
        })
    }

    fn write_table(&mut self, table: &SlotTable) -> Result<(), SlotError> {
        Self::store(&self.dir, table)
    }

    fn open_slot(&self, slot: Slot) -> Result<Region, SlotError> {
        let p = Self::slot_path(&self.dir, slot);
        let len = std::fs::metadata(&p).map_err(SlotError::io(&p))?.len();
        Region::open(&p, 0, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn attribute_bits() {
        let at = SlotAttrs {
            priority: 2,
            tries: 1,
            successful: true,
        };
        let raw = at.to_gpt(1 << 60 | 1);
        assert_eq!(raw, 1 << 60 | 1 | 2 << 48 | 1 << 52 | 1 << 56);
        assert_eq!(SlotAttrs::from_gpt(raw), at);
        assert_eq!(at.to_string(), "priority=2 tries=1 successful=1");
    }

    #[test]
    fn documented_update_walkthrough() {
        // coreos/docs manual-rollbacks.md, section 7.4
        let mut t = SlotTable::fresh_install();
        assert_eq!(t.boot_next(), Some(Slot::A));
        t.clear(Slot::B);
        t.set_next(Slot::B);
        assert_eq!(t.a.to_string(), "priority=1 tries=0 successful=1");
        assert_eq!(t.b.to_string(), "priority=2 tries=1 successful=0");
        assert_eq!(t.boot_next(), Some(Slot::B));
        assert_eq!(t.b.to_string(), "priority=2 tries=0 successful=0");
        t.mark_good(Slot::B);
        assert_eq!(t.b.to_string(), "priority=2 tries=0 successful=1");
        assert_eq!(t.a.to_string(), "priority=1 tries=0 successful=1");
        assert_eq!(t.boot_next(), Some(Slot::B));
    }

    #[test]
    fn failed_boot_rolls_back() {
        let mut t = SlotTable::fresh_install();
        t.boot_next();
        t.set_next(Slot::B);
        assert_eq!(t.boot_next(), Some(Slot::B)); // crashes before mark_good
        assert_eq!(t.boot_next(), Some(Slot::A));
        assert_eq!(t.boot_next(), Some(Slot::A));
    }

    #[test]
    fn tie_goes_to_table_order_and_zero_never_boots() {
        let good = SlotAttrs {
            priority: 1,
            tries: 0,
            successful: true,
        };
        let mut t = SlotTable { a: good, b: good };
        assert_eq!(t.boot_next(), Some(Slot::A));
        t.a.priority = 0;
        t.b.priority = 0;
        assert_eq!(t.boot_next(), None);
        assert!(SlotTable::fresh_install().rollback(Slot::A).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Update,
        Boot,
        MarkGood,
        Rollback,
    }

    proptest! {
        // Section 12: no sequence of update, boot, crash (a boot without
        // mark-good) and mark-good leaves the machine without a bootable slot,
        // and an unverified slot never boots more than its one try.
        #[test]
        fn always_bootable(ops in proptest::collection::vec(prop_oneof![
            Just(Op::Update), Just(Op::Boot), Just(Op::MarkGood), Just(Op::Rollback)], 0..60)) {
            let mut t = SlotTable::fresh_install();
            let mut active = t.boot_next().unwrap();
            t.mark_good(active);
            for op in ops {
                match op {
                    // the engine only updates from a slot it has marked good
                    Op::Update if t.get(active).successful => { let s = active.other(); t.clear(s); t.set_next(s); }
                    Op::Update => {}
                    Op::Boot => { active = t.boot_next().expect("a bootable slot"); }
                    Op::MarkGood => t.mark_good(active),
                    Op::Rollback => { let _ = t.rollback(active); }
                }
                prop_assert!(t.a.bootable() || t.b.bootable(), "{:?}", t);
                prop_assert!(t.get(active).successful || t.get(active.other()).successful);
            }
        }
    }

    #[test]
    fn dir_slots_boot_and_write() {
        let d = tempfile::tempdir().unwrap();
        DirSlots::create(d.path(), 4096).unwrap();
        let mut s = DirSlots::boot(d.path()).unwrap();
        assert_eq!(s.active(), Slot::A);
        s.mark_inactive_unbootable().unwrap();
        let mut r = s.open_slot(Slot::B).unwrap();
        assert_eq!(r.len(), 4096);
        r.write_all(b"new usr").unwrap();
        assert!(
            r.write_all(&[0u8; 5000]).is_err(),
            "writes stay inside the slot"
        );
        s.set_next().unwrap();
        let s = DirSlots::boot(d.path()).unwrap();
        assert_eq!(s.active(), Slot::B);
        let s = DirSlots::boot(d.path()).unwrap();
        assert_eq!(s.active(), Slot::A, "never marked good: rolled back");
    }
}
