//! Writing files under a node's root directory.
//!
//! Every Keelson daemon takes `--root DIR`, so several simulated nodes share
//! one host; a cloud-config path is node-absolute and must land inside that
//! root. Paths are resolved component by component as a chroot would: `..`
//! is refused and symlinks met on the way are followed relative to the root,
//! so neither can lead outside it. Files are replaced atomically (temporary
//! file in the same directory, chmod, chown, rename), like coreos-cloudinit.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::WriteFile;
use crate::error::ApplyError;
use crate::plan::FileWrite;

/// What happened to a file's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OwnerOutcome {
    /// No owner requested.
    Unchanged,
    /// chown-ed to these ids (`None`: left as is).
    Applied { uid: Option<u32>, gid: Option<u32> },
    /// The user or group is not known on the node; the file keeps the
    /// writer's ownership.
    Unresolved { owner: String },
    /// Not running as root, so the change was not permitted.
    NotPermitted { owner: String },
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The node-absolute path.
    pub path: PathBuf,
    /// Where it landed on this host.
    pub host_path: PathBuf,
    pub mode: u32,
    pub owner: OwnerOutcome,
}

const MAX_SYMLINKS: usize = 40;

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> ApplyError + 'a {
    move |source| ApplyError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Resolve the parent directory of a node-absolute path under `root`,
/// creating missing directories (mode 0755), following symlinks relative to
/// the root. Returns the host directory and the file name.
fn resolve_parent(root: &Path, node_path: &str) -> Result<(PathBuf, String), ApplyError> {
    let outside = || ApplyError::OutsideRoot {
        path: node_path.to_string(),
    };
    if !node_path.starts_with('/') {
        return Err(ApplyError::RelativePath {
            path: node_path.to_string(),
        });
    }
    // Pending components, processed front to back; symlinks splice theirs in.
    let mut pending: Vec<String> = Vec::new();
    for c in Path::new(node_path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => pending.push(s.to_string_lossy().into_owned()),
            Component::ParentDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    let Some(file_name) = pending.pop() else {
        return Err(outside());
    };
    pending.reverse();
    let mut stack: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            // Only symlink targets contribute "..": climb, never above root.
            if stack.pop().is_none() {
                return Err(outside());
            }
            continue;
        }
        let candidate = stack
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&comp);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(outside());
                }
                let target = fs::read_link(&candidate).map_err(io(&candidate, "read link"))?;
                if target.is_absolute() {
                    stack.clear();
                }
                let mut parts = Vec::new();
                for c in target.components() {
                    match c {
                        Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                        Component::ParentDir => parts.push("..".to_string()),
                        Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                    }
                }
                for p in parts.into_iter().rev() {
                    pending.push(p);
                }
            }
            Ok(meta) if meta.is_dir() => stack.push(comp),
            Ok(_) => {
                return Err(ApplyError::Io {
                    path: candidate,
                    action: "create directory",
                    source: std::io::Error::other("a file is in the way of a directory"),
                })
            }
            Err(_) => {
                let mut b = fs::DirBuilder::new();
                std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o755);
                b.create(&candidate)
                    .map_err(io(&candidate, "create directory"))?;
                stack.push(comp);
            }
        }
    }
    let dir = stack.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    Ok((dir, file_name))
}

/// A `passwd`/`group` style database line lookup: name → (id, primary gid).
fn lookup_db(text: &str, name: &str) -> Option<(u32, Option<u32>)> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next();
        let id = fields.next()?.parse().ok()?;
        let gid = fields.next().and_then(|g| g.parse().ok());
        Some((id, gid))
    })
}

fn resolve_user(root: &Path, name: &str) -> Option<(u32, u32)> {
    if let Ok(uid) = name.parse::<u32>() {
        return Some((uid, uid));
    }
    if let Ok(text) = fs::read_to_string(root.join("etc/passwd")) {
        if let Some((uid, Some(gid))) = lookup_db(&text, name) {
            return Some((uid, gid));
        }
    }
    let user = nix::unistd::User::from_name(name).ok().flatten()?;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn resolve_group(root: &Path, name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    if let Ok(text) = fs::read_to_string(root.join("etc/group")) {
        if let Some((gid, _)) = lookup_db(&text, name) {
            return Some(gid);
        }
    }
    let group = nix::unistd::Group::from_name(name).ok().flatten()?;
    Some(group.gid.as_raw())
}

/// `chown`'s owner forms: `user`, `user:group`, `user:`, `:group`.
fn resolve_owner(root: &Path, owner: &str) -> Option<(Option<u32>, Option<u32>)> {
    match owner.split_once([':', '.']) {
        None => resolve_user(root, owner).map(|(uid, _)| (Some(uid), None)),
        Some(("", group)) => resolve_group(root, group).map(|g| (None, Some(g))),
        Some((user, "")) => resolve_user(root, user).map(|(u, g)| (Some(u), Some(g))),
        Some((user, group)) => {
            let (uid, _) = resolve_user(root, user)?;
            Some((Some(uid), Some(resolve_group(root, group)?)))
        }
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write one file under `root`: parents created (0755), content written to a
/// temporary file beside it, mode set, owner set when resolvable, renamed
/// into place. `/usr` is refused as read-only.
pub fn write_file(root: &Path, file: &FileWrite) -> Result<Written, ApplyError> {
    let node_path = file.path.to_string_lossy().into_owned();
    if file.path.starts_with("/usr") {
        return Err(ApplyError::ReadOnly { path: node_path });
    }
    let (dir, name) = resolve_parent(root, &node_path)?;
    let host_path = dir.join(&name);
    let tmp = dir.join(format!(
        ".{name}.keelson-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp, "create temporary file"))?;
        f.write_all(&file.content)
            .map_err(io(&tmp, "write temporary file"))?;
        f.sync_all().map_err(io(&tmp, "sync temporary file"))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(file.mode))
            .map_err(io(&tmp, "chmod"))?;
        let owner = match file.owner.as_deref() {
            None | Some("") => OwnerOutcome::Unchanged,
            Some(o) => match resolve_owner(root, o) {
                None => OwnerOutcome::Unresolved {
                    owner: o.to_string(),
                },
                Some((uid, gid)) => match std::os::unix::fs::chown(&tmp, uid, gid) {
                    Ok(()) => OwnerOutcome::Applied { uid, gid },
                    Err(e)
                        if e.kind() == std::io::ErrorKind::PermissionDenied
                            && !nix::unistd::geteuid().is_root() =>
                    {
                        OwnerOutcome::NotPermitted {
                            owner: o.to_string(),
                        }
                    }
                    Err(e) => return Err(io(&tmp, "chown")(e)),
                },
            },
        };
        fs::rename(&tmp, &host_path).map_err(io(&host_path, "rename into place"))?;
        Ok(owner)
    })();
    match result {
        Ok(owner) => Ok(Written {
            path: file.path.clone(),
            host_path,
            mode: file.mode,
            owner,
        }),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Write several files in order; stops at the first failure.
pub fn write_files(root: &Path, files: &[FileWrite]) -> Result<Vec<Written>, ApplyError> {
    files.iter().map(|f| write_file(root, f)).collect()
}

/// Apply `write_files` entries under `root` (reference §3.4): content
/// decoded per `encoding`, permissions (default 0644), owner when it
/// resolves (from the root's `/etc/passwd` and `/etc/group`, else the
/// host's), never outside `root`.
pub fn apply_write_files(root: &Path, files: &[WriteFile]) -> Result<Vec<Written>, ApplyError> {
    let mut out = Vec::with_capacity(files.len());
    for wf in files {
        let mode = wf.mode().ok_or_else(|| ApplyError::Permissions {
            path: wf.path.clone(),
            permissions: wf.permissions.clone().unwrap_or_default(),
        })?;
        let content = wf.decoded_content().map_err(|source| ApplyError::Content {
            path: wf.path.clone(),
            source,
        })?;
        out.push(write_file(
            root,
            &FileWrite {
                path: PathBuf::from(&wf.path),
                content,
                mode,
                owner: wf.owner.clone().filter(|o| !o.is_empty()),
            },
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw(path: &str, content: &str) -> FileWrite {
        FileWrite {
            path: PathBuf::from(path),
            content: content.as_bytes().to_vec(),
            mode: 0o600,
            owner: None,
        }
    }

    #[test]
    fn writes_with_parents_and_mode() {
        let root = tempfile::tempdir().unwrap();
        let w = write_file(root.path(), &fw("/etc/a/b/c.conf", "x\n")).unwrap();
        assert_eq!(w.host_path, root.path().join("etc/a/b/c.conf"));
        assert_eq!(fs::read_to_string(&w.host_path).unwrap(), "x\n");
        let mode = fs::metadata(&w.host_path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(root.path().join("etc/a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o755);
    }

    #[test]
    fn dot_dot_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let err = write_file(root.path(), &fw("/etc/../../escape", "x")).unwrap_err();
        assert!(matches!(err, ApplyError::OutsideRoot { .. }), "{err}");
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir_all(root.join("real")).unwrap();
        // /var/run -> /real : must land in root/real, not the host's /real.
        fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("var/run")).unwrap();
        let w = write_file(&root, &fw("/var/run/x", "y")).unwrap();
        assert_eq!(fs::read_to_string(root.join("real/x")).unwrap(), "y");
        assert!(w.host_path.starts_with(&root));
        // A relative link that climbs out is refused.
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let err = write_file(&root, &fw("/up/x", "y")).unwrap_err();
        assert!(matches!(err, ApplyError::OutsideRoot { .. }), "{err}");
        assert!(!outer.path().join("x").exists());
    }

    #[test]
    fn usr_is_read_only() {
        let root = tempfile::tempdir().unwrap();
        let err = write_file(root.path(), &fw("/usr/share/x", "y")).unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");
    }

    #[test]
    fn owner_from_the_roots_passwd() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\ncore:x:500:500::/home/core:/bin/bash\n",
        )
        .unwrap();
        assert_eq!(resolve_owner(root.path(), "core"), Some((Some(500), None)));
        assert_eq!(
            resolve_owner(root.path(), "core:"),
            Some((Some(500), Some(500)))
        );
        assert_eq!(resolve_owner(root.path(), "no-such-user-xyz"), None);
    }
}
