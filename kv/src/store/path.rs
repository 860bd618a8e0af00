//! Key paths: cleaning (Go's `path.Clean(path.Join("/", p))`, which is what
//! etcd applies to every key) and the small predicates the tree and the
//! watch matcher share.

use std::borrow::Cow;

/// Cleans a key the way etcd does: rooted, no empty, `.` or `..` segments,
/// no trailing slash. `..` never climbs above the root. Already-clean paths
/// are returned without allocating.
pub fn clean_path(p: &str) -> Cow<'_, str> {
    if is_clean(p) {
        return Cow::Borrowed(p);
    }
    let mut out = String::with_capacity(p.len() + 1);
    let mut lens: Vec<usize> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if let Some(len) = lens.pop() {
                    out.truncate(len);
                }
            }
            _ => {
                lens.push(out.len());
                out.push('/');
                out.push_str(seg);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

pub(crate) fn is_clean(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    rest.split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The parent of a clean, non-root path (`/` for top-level keys).
pub(crate) fn parent(key: &str) -> &str {
    match key.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &key[..i],
    }
}

/// Whether `key` lies strictly below `dir` (both clean).
pub(crate) fn is_below(key: &str, dir: &str) -> bool {
    if dir == "/" {
        return key.len() > 1;
    }
    key.len() > dir.len() && key.starts_with(dir) && key.as_bytes()[dir.len()] == b'/'
}

/// Whether any segment of `key` below `dir` is hidden (`_` prefix); `key`
/// must be below `dir`. This is etcd's rule for recursive watchers.
pub(crate) fn hidden_below(key: &str, dir: &str) -> bool {
    let rest = if dir == "/" { key } else { &key[dir.len()..] };
    rest.contains("/_")
}

/// The prefix shared by every key strictly below `dir` (`dir` + `/`).
pub(crate) fn child_prefix(dir: &str) -> Cow<'_, str> {
    if dir == "/" {
        Cow::Borrowed("/")
    } else {
        Cow::Owned(format!("{dir}/"))
    }
}

/// The smallest string greater than every key below `dir`: `dir` + `0`
/// (`0` is the byte after `/`). Not meaningful for the root.
pub(crate) fn subtree_end(dir: &str) -> String {
    format!("{dir}0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        for (raw, want) in [
            ("", "/"),
            ("/", "/"),
            ("foo", "/foo"),
            ("/foo/", "/foo"),
            ("//foo//bar", "/foo/bar"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../..", "/"),
            ("/a/b/..", "/a"),
            ("a/b/../../..", "/"),
            ("/sp ace/x", "/sp ace/x"),
            ("/.hidden/..x", "/.hidden/..x"),
            ("/%2F/é", "/%2F/é"),
        ] {
            assert_eq!(clean_path(raw), want, "clean({raw:?})");
        }
        assert!(matches!(clean_path("/a/b"), Cow::Borrowed(_)));
    }

    #[test]
    fn path_helpers() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert!(is_below("/a/b", "/a"));
        assert!(!is_below("/ab", "/a"));
        assert!(!is_below("/a", "/a"));
        assert!(is_below("/a", "/"));
        assert!(hidden_below("/a/_b/c", "/a"));
        assert!(!hidden_below("/_a/b/c", "/_a"));
        assert!(hidden_below("/_a", "/"));
        assert!(!hidden_below("/a_b", "/"));
    }
}
