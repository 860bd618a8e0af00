//! The USR slots of a real GPT disk (or disk image).
//!
//! Only the 64-bit attribute fields of USR-A and USR-B ever change, so rather
//! than depend on a general partitioning crate this module reads the primary
//! header and entry array, validates both CRC32s, and on a change rewrites the
//! entry in both the primary and the backup array and recomputes both
//! headers' CRCs, exactly what `cgpt add -P -T -S` does. Slots are found by
//! label (`USR-A`, `USR-B`), falling back to partitions 3 and 4.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::slots::{BootSlots, Region, Slot, SlotAttrs, SlotError, SlotTable};

/// Logical sector size of disk images (what `sgdisk` uses for files).
pub const SECTOR: u64 = 512;

/// The coreos-usr partition type GUID, as text.
pub const COREOS_USR_TYPE: &str = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";

/// One GPT partition entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based partition number.
    pub number: u32,
    /// Type GUID in text form.
    pub type_guid: String,
    pub label: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
}

impl Partition {
    /// Byte offset of the partition.
    pub fn start(&self) -> u64 {
        self.first_lba * SECTOR
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
    /// Whether the partition has no sectors (never, for a valid entry).
    pub fn is_empty(&self) -> bool {
        self.last_lba < self.first_lba
    }
}

#[derive(Debug, Clone)]
struct Header {
    raw: Vec<u8>,
    size: usize,
    backup_lba: u64,
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn guid_text(b: &[u8]) -> String {
    // mixed-endian: first three fields little-endian
    format!(
        "{:08x}-{:04x}-{:04x}-{}-{}",
        le32(b, 0),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    )
}

fn header_crc(raw: &[u8], size: usize) -> u32 {
    let mut h = raw[..size].to_vec();
    h[16..20].fill(0);
    crc32fast::hash(&h)
}

/// A GPT disk opened for attribute edits.
#[derive(Debug)]
pub struct GptDisk {
    path: PathBuf,
    file: File,
    primary: Header,
    entries: Vec<u8>,
}

impl GptDisk {
    /// Opens and validates the primary GPT of `path`.
    pub fn open(path: &Path) -> Result<Self, SlotError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(SlotError::io(path))?;
        let primary = Self::read_header(path, &mut file, 1)?;
        let entries = Self::read_entries(path, &mut file, &primary)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            primary,
            entries,
        })
    }

    fn bad(path: &Path, reason: impl Into<String>) -> SlotError {
        SlotError::BadTable {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn read_header(path: &Path, file: &mut File, lba: u64) -> Result<Header, SlotError> {
        let mut raw = vec![0u8; SECTOR as usize];
        file.seek(SeekFrom::Start(lba * SECTOR))
            .and_then(|_| file.read_exact(&mut raw))
            .map_err(SlotError::io(path))?;
        if &raw[..8] != b"EFI PART" {
            return Err(Self::bad(path, format!("no GPT header at LBA {lba}")));
        }
        let size = le32(&raw, 12) as usize;
        if !(92..=SECTOR as usize).contains(&size) {
            return Err(Self::bad(
                path,
                format!("GPT header size {size} is invalid"),
            ));
        }
        if header_crc(&raw, size) != le32(&raw, 16) {
            return Err(Self::bad(
                path,
                format!("GPT header CRC mismatch at LBA {lba}"),
            ));
        }
        let h = Header {
            size,
            backup_lba: le64(&raw, 32),
            entries_lba: le64(&raw, 72),
            num_entries: le32(&raw, 80),
            entry_size: le32(&raw, 84),
            raw,
        };
        if h.entry_size < 128
            || !h.entry_size.is_multiple_of(8)
            || h.num_entries == 0
            || h.num_entries > 1024
        {
            return Err(Self::bad(path, "GPT entry array geometry is invalid"));
        }
        Ok(h)
    }

    fn read_entries(path: &Path, file: &mut File, h: &Header) -> Result<Vec<u8>, SlotError> {
        let mut e = vec![0u8; h.num_entries as usize * h.entry_size as usize];
        file.seek(SeekFrom::Start(h.entries_lba * SECTOR))
            .and_then(|_| file.read_exact(&mut e))
            .map_err(SlotError::io(path))?;
        if crc32fast::hash(&e) != le32(&h.raw, 88) {
            return Err(Self::bad(path, "GPT partition entry array CRC mismatch"));
        }
        Ok(e)
    }

    fn entry(&self, number: u32) -> Option<&[u8]> {
        let i = number.checked_sub(1)? as usize;
        let sz = self.primary.entry_size as usize;
        self.entries.get(i * sz..(i + 1) * sz)
    }

    /// Every used partition entry.
    pub fn partitions(&self) -> Vec<Partition> {
        (1..=self.primary.num_entries)
            .filter_map(|n| {
                let e = self.entry(n)?;
                if e[..16].iter().all(|b| *b == 0) {
                    return None;
                }
                let units: Vec<u16> = e[56..128]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|u| *u != 0)
                    .collect();
                Some(Partition {
                    number: n,
                    type_guid: guid_text(&e[..16]),
                    label: String::from_utf16_lossy(&units),
                    first_lba: le64(e, 32),
                    last_lba: le64(e, 40),
                    attributes: le64(e, 48),
                })
            })
            .collect()
    }

    /// The partition holding `slot`: by label, else by number.
    pub fn slot_partition(&self, slot: Slot) -> Result<Partition, SlotError> {
        let parts = self.partitions();
        parts
            .iter()
            .find(|p| p.label == slot.label())
            .or_else(|| parts.iter().find(|p| p.number == slot.partition_number()))
            .filter(|p| !p.is_empty())
            .cloned()
            .ok_or(SlotError::NoSlot {
                path: self.path.clone(),
                label: slot.label(),
                number: slot.partition_number(),
            })
    }

    /// Rewrites the attribute fields of the given partitions in both tables,
    /// with fresh CRCs, and syncs. The backup is written first so that the
    /// primary, which the bootloader reads, is always either old or new.
    pub fn set_attributes(&mut self, changes: &[(u32, u64)]) -> Result<(), SlotError> {
        let sz = self.primary.entry_size as usize;
        for (number, attr) in changes {
            let i = number
                .checked_sub(1)
                .filter(|i| *i < self.primary.num_entries)
                .ok_or_else(|| Self::bad(&self.path, format!("no partition entry {number}")))?
                as usize;
            self.entries[i * sz + 48..i * sz + 56].copy_from_slice(&attr.to_le_bytes());
        }
        let entries_crc = crc32fast::hash(&self.entries);
        let path = self.path.clone();
        let mut backup = Self::read_header(&path, &mut self.file, self.primary.backup_lba)?;
        for h in [&mut backup, &mut self.primary] {
            h.raw[88..92].copy_from_slice(&entries_crc.to_le_bytes());
            let c = header_crc(&h.raw, h.size);
            h.raw[16..20].copy_from_slice(&c.to_le_bytes());
        }
        let lbas = [
            (
                backup.entries_lba,
                self.primary.backup_lba,
                backup.raw.clone(),
            ),
            (self.primary.entries_lba, 1, self.primary.raw.clone()),
        ];
        for (entries_lba, header_lba, raw) in lbas {
            self.file
                .seek(SeekFrom::Start(entries_lba * SECTOR))
                .and_then(|_| self.file.write_all(&self.entries))
                .and_then(|_| self.file.seek(SeekFrom::Start(header_lba * SECTOR)))
                .and_then(|_| self.file.write_all(&raw))
                .and_then(|_| self.file.sync_data())
                .map_err(SlotError::io(&path))?;
        }
        Ok(())
    }
}

/// [`BootSlots`] on a GPT disk image (or block device) with USR-A/USR-B.
#[derive(Debug, Clone)]
pub struct GptSlots {
    path: PathBuf,
    active: Slot,
}

impl GptSlots {
    /// Uses the disk at `path`, running from `active`. Fails if the table is
    /// invalid or a slot is missing.
    pub fn open(path: &Path, active: Slot) -> Result<Self, SlotError> {
        let d = GptDisk::open(path)?;
        d.slot_partition(Slot::A)?;
        d.slot_partition(Slot::B)?;
        Ok(Self {
            path: path.to_path_buf(),
            active,
        })
    }

    /// Simulates firmware + GRUB `gptprio.next`: picks a slot, writes back the
    /// spent try, and returns the slots running from it.
    pub fn boot(path: &Path) -> Result<Self, SlotError> {
        let mut s = Self::open(path, Slot::A)?;
        let mut t = s.table()?;
        s.active = t.boot_next().ok_or(SlotError::NothingBootable)?;
        s.write_table(&t)?;
        Ok(s)
    }

    /// The disk path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BootSlots for GptSlots {
    fn active(&self) -> Slot {
        self.active
    }

    fn table(&self) -> Result<SlotTable, SlotError> {
        let d = GptDisk::open(&self.path)?;
        Ok(SlotTable {
            a: SlotAttrs::from_gpt(d.slot_partition(Slot::A)?.attributes),
            b: SlotAttrs::from_gpt(d.slot_partition(Slot::B)?.attributes),
        })
    }

    fn write_table(&mut self, table: &SlotTable) -> Result<(), SlotError> {
        let mut d = GptDisk::open(&self.path)?;
        let a = d.slot_partition(Slot::A)?;
        let b = d.slot_partition(Slot::B)?;
        d.set_attributes(&[
            (a.number, table.a.to_gpt(a.attributes)),
            (b.number, table.b.to_gpt(b.attributes)),
        ])
    }

    fn open_slot(&self, slot: Slot) -> Result<Region, SlotError> {
        let p = GptDisk::open(&self.path)?.slot_partition(slot)?;
        Region::open(&self.path, p.start(), p.len())
    }
}
