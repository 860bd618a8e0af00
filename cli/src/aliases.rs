//! `keelson install-aliases DIR`: symlinks under the original tools' names,
//! each pointing at the Keelson binary that answers to that name.
//!
//! The binaries look at the name they were called by (`argv[0]`), so a link
//! named `etcdctl` to `kvctl` is etcdctl. Re-running is safe: a link that
//! already points at the right binary is kept, a link pointing elsewhere is
//! replaced, and anything that is not a symlink is left alone and reported.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which Keelson binary each original name links to.
pub const ALIASES: &[(&str, &str)] = &[
    ("etcd", "keelson"),
    ("fleetd", "keelson"),
    ("flanneld", "keelson"),
    ("locksmithd", "keelson"),
    ("update_engine", "keelson"),
    ("coreos-cloudinit", "keelson"),
    ("etcdctl", "kvctl"),
    ("fleetctl", "keelctl"),
    ("locksmithctl", "keelctl"),
    ("update_engine_client", "keelctl"),
];

/// What happened to one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutcome {
    Created,
    Replaced,
    AlreadyThere,
}

/// Why a link could not be made.
#[derive(Debug)]
pub enum AliasError {
    /// A file that is not a symlink has the name; it is not overwritten.
    NotASymlink(PathBuf),
    /// The Keelson binary the link would point at is not next to `keelson`.
    MissingBinary(PathBuf),
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for AliasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasError::NotASymlink(p) => write!(
                f,
                "{} exists and is not a symlink; not overwriting it (remove it or choose another directory)",
                p.display()
            ),
            AliasError::MissingBinary(p) => write!(
                f,
                "{} not found: install-aliases links to the binaries next to keelson (build them all, e.g. cargo build --release -p keelson-cli)",
                p.display()
            ),
            AliasError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

/// Creates or updates one link `dir/name` → `target`.
pub fn link(dir: &Path, name: &str, target: &Path) -> Result<LinkOutcome, AliasError> {
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            let current = std::fs::read_link(&path).map_err(|e| AliasError::Io(path.clone(), e))?;
            if current == target {
                return Ok(LinkOutcome::AlreadyThere);
            }
            std::fs::remove_file(&path).map_err(|e| AliasError::Io(path.clone(), e))?;
            std::os::unix::fs::symlink(target, &path).map_err(|e| AliasError::Io(path, e))?;
            Ok(LinkOutcome::Replaced)
        }
        Ok(_) => Err(AliasError::NotASymlink(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::os::unix::fs::symlink(target, &path).map_err(|e| AliasError::Io(path, e))?;
            Ok(LinkOutcome::Created)
        }
        Err(e) => Err(AliasError::Io(path, e)),
    }
}

/// Installs every alias in `dir`, linking to the binaries in `bin_dir`.
/// Stops at nothing: each failure is returned with the others' outcomes.
pub fn install(dir: &Path, bin_dir: &Path) -> Vec<(&'static str, Result<LinkOutcome, AliasError>)> {
    ALIASES
        .iter()
        .map(|(name, bin)| {
            let target = bin_dir.join(bin);
            let r = if target.exists() {
                link(dir, name, &target)
            } else {
                Err(AliasError::MissingBinary(target))
            };
            (*name, r)
        })
        .collect()
}

const USAGE: &str = "usage: keelson install-aliases DIR\n\n\
Creates symlinks in DIR under the original tools' names: etcd, fleetd, flanneld,\n\
locksmithd, update_engine and coreos-cloudinit -> keelson; etcdctl -> kvctl;\n\
fleetctl, locksmithctl and update_engine_client -> keelctl (the binaries next to\n\
this keelson). Existing links are updated; other files are never overwritten.\n";

/// `keelson install-aliases DIR`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let dir = match args.as_slice() {
        [a] if a == "-h" || a == "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [d] if !d.to_string_lossy().starts_with('-') => PathBuf::from(d),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let exe = match std::env::current_exe().and_then(std::fs::canonicalize) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("keelson install-aliases: cannot find the keelson binary: {e}");
            return ExitCode::from(1);
        }
    };
    let Some(bin_dir) = exe.parent() else {
        eprintln!(
            "keelson install-aliases: {} has no directory",
            exe.display()
        );
        return ExitCode::from(1);
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("keelson install-aliases: creating {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    let mut failed = false;
    for (name, r) in install(&dir, bin_dir) {
        match r {
            Ok(LinkOutcome::Created) => println!("created {}", dir.join(name).display()),
            Ok(LinkOutcome::Replaced) => println!("updated {}", dir.join(name).display()),
            Ok(LinkOutcome::AlreadyThere) => {
                println!("{} already in place", dir.join(name).display())
            }
            Err(e) => {
                failed = true;
                eprintln!("keelson install-aliases: {e}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_idempotent_and_files_safe() {
        let bin = tempfile::tempdir().unwrap();
        for b in ["keelson", "kvctl", "keelctl"] {
            std::fs::write(bin.path().join(b), "").unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let first = install(dir.path(), bin.path());
        assert!(first
            .iter()
            .all(|(_, r)| matches!(r, Ok(LinkOutcome::Created))));
        let again = install(dir.path(), bin.path());
        assert!(again
            .iter()
            .all(|(_, r)| matches!(r, Ok(LinkOutcome::AlreadyThere))));
        assert_eq!(
            std::fs::read_link(dir.path().join("etcdctl")).unwrap(),
            bin.path().join("kvctl")
        );
        // A link elsewhere is replaced; a plain file is refused.
        std::fs::remove_file(dir.path().join("fleetctl")).unwrap();
        std::os::unix::fs::symlink("/nowhere", dir.path().join("fleetctl")).unwrap();
        std::fs::remove_file(dir.path().join("etcd")).unwrap();
        std::fs::write(dir.path().join("etcd"), "mine").unwrap();
        let third = install(dir.path(), bin.path());
        for (name, r) in third {
            match name {
                "fleetctl" => assert!(matches!(r, Ok(LinkOutcome::Replaced))),
                "etcd" => assert!(matches!(r, Err(AliasError::NotASymlink(_)))),
                _ => assert!(matches!(r, Ok(LinkOutcome::AlreadyThere))),
            }
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etcd")).unwrap(),
            "mine"
        );
    }
}
