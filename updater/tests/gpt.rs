//! The GPT BootSlots implementation against images made by sgdisk.
mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use keelson_updater::gpt::{GptDisk, GptSlots, COREOS_USR_TYPE};
use keelson_updater::slots::{BootSlots, Slot, SlotAttrs, SlotError};

#[test]
fn reads_the_sgdisk_layout() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    common::make_image(&img, 8);
    let disk = GptDisk::open(&img).unwrap();
    let parts = disk.partitions();
    let labels: Vec<_> = parts.iter().map(|p| (p.number, p.label.as_str())).collect();
    assert_eq!(
        labels,
        vec![
            (1, "EFI-SYSTEM"),
            (2, "BIOS-BOOT"),
            (3, "USR-A"),
            (4, "USR-B"),
            (9, "ROOT")
        ]
    );
    let a = disk.slot_partition(Slot::A).unwrap();
    assert_eq!(a.type_guid, COREOS_USR_TYPE);
    assert_eq!(a.len(), 8 * 1024 * 1024);
    let slots = GptSlots::open(&img, Slot::A).unwrap();
    let t = slots.table().unwrap();
    assert_eq!(t.a.to_string(), "priority=2 tries=0 successful=1");
    assert_eq!(t.b.to_string(), "priority=1 tries=0 successful=0");
}

#[test]
fn attribute_writes_keep_both_tables_valid_and_match_sgdisk() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    common::make_image(&img, 4);
    // an unrelated bit (60, read-only) must survive our edits
    common::sgdisk(&["-A", "4:set:60", img.to_str().unwrap()]);
    let mut s = GptSlots::boot(&img).unwrap();
    assert_eq!(s.active(), Slot::A);
    s.mark_inactive_unbootable().unwrap();
    assert_eq!(common::sgdisk_attrs(&img, 4), 1 << 60);
    s.set_next().unwrap();
    common::sgdisk_verify(&img);
    assert_eq!(common::sgdisk_attrs(&img, 4), 1 << 60 | 2 << 48 | 1 << 52);
    assert_eq!(common::sgdisk_attrs(&img, 3), 1 << 48 | 1 << 56);

    // boot B: tries spent, written back
    let mut s = GptSlots::boot(&img).unwrap();
    assert_eq!(s.active(), Slot::B);
    assert_eq!(common::sgdisk_attrs(&img, 4), 1 << 60 | 2 << 48);
    s.mark_good().unwrap();
    common::sgdisk_verify(&img);
    assert_eq!(
        SlotAttrs::from_gpt(common::sgdisk_attrs(&img, 4)).to_string(),
        "priority=2 tries=0 successful=1"
    );
    let want = common::sgdisk_attrs(&img, 4);
    // the backup table carries the same change: destroy the primary header and
    // let sgdisk fall back to the backup
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(512)).unwrap();
    f.write_all(&[0u8; 512]).unwrap();
    drop(f);
    assert!(matches!(
        GptDisk::open(&img),
        Err(SlotError::BadTable { .. })
    ));
    let out = common::sgdisk(&["-i", "4", img.to_str().unwrap()]);
    assert!(out.contains("loaded backup partition table"), "{out}");
    assert_eq!(common::sgdisk_attrs(&img, 4), want);
}

#[test]
fn sgdisk_changes_are_seen() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    common::make_image(&img, 4);
    common::sgdisk(&["-A", "3:clear:56", "-A", "4:set:52", img.to_str().unwrap()]);
    // A now: priority 2, not successful, no tries -> unbootable; B: priority 1, tries 1
    let s = GptSlots::boot(&img).unwrap();
    assert_eq!(s.active(), Slot::B);
    assert!(matches!(
        GptSlots::boot(&img),
        Err(SlotError::NothingBootable)
    ));
}

#[test]
fn slot_io_stays_inside_the_partition() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    common::make_image(&img, 2);
    let s = GptSlots::open(&img, Slot::A).unwrap();
    let mut b = s.open_slot(Slot::B).unwrap();
    assert_eq!(b.len(), 2 * 1024 * 1024);
    b.write_all(b"USR-B contents").unwrap();
    b.seek(SeekFrom::End(-3)).unwrap();
    assert!(b.write_all(b"overflow").is_err());
    let start = GptDisk::open(&img)
        .unwrap()
        .slot_partition(Slot::B)
        .unwrap()
        .start();
    let mut raw = vec![0u8; 14];
    let mut f = std::fs::File::open(&img).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    f.read_exact(&mut raw).unwrap();
    assert_eq!(&raw, b"USR-B contents");
    common::sgdisk_verify(&img);
}

#[test]
fn corrupt_and_missing_tables_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("plain.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    assert!(matches!(
        GptDisk::open(&img),
        Err(SlotError::BadTable { .. })
    ));
    assert!(matches!(
        GptDisk::open(&d.path().join("absent.img")),
        Err(SlotError::Io { .. })
    ));
    let img = d.path().join("disk.img");
    common::make_image(&img, 2);
    // flip a byte in the entry array: the CRC catches it
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&img)
        .unwrap();
    f.seek(SeekFrom::Start(1024 + 2 * 128 + 60)).unwrap();
    f.write_all(b"X").unwrap();
    drop(f);
    let e = GptDisk::open(&img).unwrap_err();
    assert!(e.to_string().contains("CRC"), "{e}");
    // a table without USR partitions
    let img = d.path().join("nousr.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    common::sgdisk(&["-o", "-n", "1:0:+1M", img.to_str().unwrap()]);
    assert!(matches!(
        GptSlots::open(&img, Slot::A),
        Err(SlotError::NoSlot { .. })
    ));
}
