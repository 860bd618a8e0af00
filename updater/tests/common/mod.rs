//! Shared test helpers: CoreOS-like disk images made with Debian's `sgdisk`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

pub const USR_TYPE: &str = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";

/// Runs sgdisk; a missing sgdisk fails the test (install it with scripts/setup.sh).
pub fn sgdisk(args: &[&str]) -> String {
    let out = Command::new("sgdisk")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run sgdisk ({e}); install Debian's gdisk with `sudo scripts/setup.sh`")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sgdisk {args:?} failed: {text}");
    text
}

/// A sparse image with the CoreOS layout (1 EFI, 2 BIOS, 3 USR-A, 4 USR-B,
/// 9 ROOT), USR slots of `usr_mib` MiB, A in the fresh-install state
/// (priority=2 successful=1) and B priority=1.
pub fn make_image(path: &Path, usr_mib: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len((usr_mib * 2 + 16) * 1024 * 1024).unwrap();
    drop(f);
    let p = path.to_str().unwrap();
    let usr = format!("+{usr_mib}M");
    let t3 = format!("3:{USR_TYPE}");
    let t4 = format!("4:{USR_TYPE}");
    sgdisk(&[
        "-o",
        "-n",
        "1:2048:+4M",
        "-t",
        "1:EF00",
        "-c",
        "1:EFI-SYSTEM",
        "-n",
        "2:0:+1M",
        "-t",
        "2:EF02",
        "-c",
        "2:BIOS-BOOT",
        "-n",
        &format!("3:0:{usr}"),
        "-t",
        &t3,
        "-c",
        "3:USR-A",
        "-n",
        &format!("4:0:{usr}"),
        "-t",
        &t4,
        "-c",
        "4:USR-B",
        "-n",
        "9:0:0",
        "-c",
        "9:ROOT",
        "-A",
        "3:set:49",
        "-A",
        "3:set:56",
        "-A",
        "4:set:48",
        p,
    ]);
}

/// The attribute field sgdisk reads for partition `n`.
pub fn sgdisk_attrs(path: &Path, n: u32) -> u64 {
    let out = sgdisk(&["-i", &n.to_string(), path.to_str().unwrap()]);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("Attribute flags: "))
        .unwrap_or_else(|| panic!("no attribute line in {out}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// sgdisk's verification must find no problem (both CRCs, both tables).
pub fn sgdisk_verify(path: &Path) {
    let out = sgdisk(&["-v", path.to_str().unwrap()]);
    assert!(out.contains("No problems found"), "{out}");
}
