//! The key space as a flat ordered map from full path to node.
//!
//! Every node below the root is one entry keyed by its clean path, and every
//! ancestor of an entry is a directory entry (the root itself is implicit).
//! A point lookup is one `BTreeMap` search whatever the depth, a subtree is
//! the contiguous range `dir/ .. dir0`, and nothing here recurses, so deep
//! paths cannot overflow the stack in lookups, deletes, snapshots or drops.
//! Nodes with a TTL are also indexed by `(expiration, path)` so the expiry
//! sweep finds due nodes in order without scanning.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::path::{child_prefix, subtree_end};
use super::time::Timestamp;
use crate::v2::Node;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Key(String),
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub created: u64,
    pub modified: u64,
    pub expiration: Option<Timestamp>,
    pub kind: Kind,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }

    pub fn value(&self) -> Option<&str> {
        match &self.kind {
            Kind::Key(v) => Some(v),
            Kind::Dir => None,
        }
    }

    /// The node as etcd's `Repr(false, false)`: no children; `ttl` as seen
    /// at `now`.
    pub fn repr(&self, key: &str, now: Timestamp) -> Node {
        Node {
            key: Some(key.to_owned()),
            value: self.value().map(str::to_owned),
            dir: self.is_dir(),
            expiration: self.expiration.map(Timestamp::to_rfc3339_nano),
            ttl: self.expiration.map_or(0, |e| e.ttl_at(now)),
            nodes: None,
            modified_index: self.modified,
            created_index: self.created,
        }
    }
}

/// Where a path lookup stopped when the node itself is missing.
pub(crate) enum Missing<'a> {
    /// This ancestor (or the node itself) is the first missing path.
    NotFound(&'a str),
    /// This ancestor is a key, so nothing can exist below it.
    NotDir(&'a str),
}

#[derive(Debug, Default)]
pub(crate) struct Tree {
    nodes: BTreeMap<String, Entry>,
    ttl: BTreeSet<(Timestamp, String)>,
}

impl Tree {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.nodes.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.nodes.iter()
    }

    /// Why a missing clean `key` is missing: the first missing path from the
    /// top, or a key in the way. Only called when `key` itself is absent
    /// (present nodes always have directory ancestors).
    pub fn diagnose<'a>(&self, key: &'a str) -> Missing<'a> {
        for (i, _) in key.match_indices('/').skip(1) {
            let ancestor = &key[..i];
            match self.nodes.get(ancestor) {
                Some(e) if e.is_dir() => {}
                Some(_) => return Missing::NotDir(ancestor),
                None => return Missing::NotFound(ancestor),
            }
        }
        Missing::NotFound(key)
    }

    /// The ancestors of `key` (excluding the root), top-down, that a write
    /// would have to create, or the key in the way.
    pub fn missing_dirs<'a>(&self, key: &'a str) -> Result<Vec<&'a str>, &'a str> {
        let mut missing = Vec::new();
        for (i, _) in key.match_indices('/').skip(1) {
            let ancestor = &key[..i];
            if !missing.is_empty() {
                missing.push(ancestor);
                continue;
            }
            match self.nodes.get(ancestor) {
                Some(e) if e.is_dir() => {}
                Some(_) => return Err(ancestor),
                None => missing.push(ancestor),
            }
        }
        Ok(missing)
    }

    /// Adds a node (replacing any node at `key`, TTL index included).
    pub fn insert(&mut self, key: String, entry: Entry) {
        if let Some(exp) = self.nodes.get(&key).and_then(|old| old.expiration) {
            self.ttl.remove(&(exp, key.clone()));
        }
        if let Some(exp) = entry.expiration {
            self.ttl.insert((exp, key.clone()));
        }
        self.nodes.insert(key, entry);
    }

    /// Changes a node's expiration, keeping the TTL index in step.
    pub fn set_expiration(&mut self, key: &str, expiration: Option<Timestamp>) {
        let Some(entry) = self.nodes.get_mut(key) else {
            return;
        };
        if entry.expiration == expiration {
            return;
        }
        if let Some(old) = entry.expiration {
            self.ttl.remove(&(old, key.to_owned()));
        }
        entry.expiration = expiration;
        if let Some(new) = expiration {
            self.ttl.insert((new, key.to_owned()));
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.nodes.get_mut(key)
    }

    /// Whether the directory `dir` has any child.
    pub fn has_children(&self, dir: &str) -> bool {
        let prefix = child_prefix(dir);
        self.nodes
            .range::<str, _>((Bound::Excluded(prefix.as_ref()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(prefix.as_ref()))
    }

    /// Removes `key` and everything below it; returns the removed node.
    pub fn remove_subtree(&mut self, key: &str) -> Option<Entry> {
        let entry = self.nodes.remove(key)?;
        if let Some(exp) = entry.expiration {
            self.ttl.remove(&(exp, key.to_owned()));
        }
        if entry.is_dir() {
            let start = format!("{key}/");
            let end = subtree_end(key);
            let doomed: Vec<String> = self
                .nodes
                .range::<str, _>((
                    Bound::Included(start.as_str()),
                    Bound::Excluded(end.as_str()),
                ))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if let Some(e) = self.nodes.remove(&k) {
                    if let Some(exp) = e.expiration {
                        self.ttl.remove(&(exp, k));
                    }
                }
            }
        }
        Some(entry)
    }

    /// The node with the earliest expiration, if it is due at `cutoff`.
    pub fn next_due(&self, cutoff: Timestamp) -> Option<String> {
        self.ttl
            .first()
            .filter(|(exp, _)| *exp <= cutoff)
            .map(|(_, k)| k.clone())
    }

    pub fn next_expiration(&self) -> Option<Timestamp> {
        self.ttl.first().map(|(t, _)| *t)
    }

    pub fn has_ttl_nodes(&self) -> bool {
        !self.ttl.is_empty()
    }

    /// The visible (non-hidden) direct children of `dir`, in key order.
    pub fn children<'a>(&'a self, dir: &str) -> Vec<(&'a str, &'a Entry)> {
        let prefix = child_prefix(dir);
        let prefix = prefix.as_ref();
        let mut out = Vec::new();
        let mut start: Bound<String> = Bound::Excluded(prefix.to_owned());
        'seek: loop {
            let range = self
                .nodes
                .range::<str, _>((start.as_ref().map(String::as_str), Bound::Unbounded));
            for (k, e) in range {
                let Some(rest) = k.strip_prefix(prefix) else {
                    break 'seek;
                };
                if let Some(slash) = rest.find('/') {
                    // A grandchild: skip the rest of that child's subtree,
                    // which is contiguous and ends before `child0`.
                    start = Bound::Included(subtree_end(&k[..prefix.len() + slash]));
                    continue 'seek;
                }
                if !rest.starts_with('_') {
                    out.push((k.as_str(), e));
                }
            }
            break;
        }
        out
    }

    /// A directory as etcd lists it: visible children (recursively if asked)
    /// sorted by key, `nodes` omitted when empty. Iterative, so listing
    /// depth is not bounded by the stack.
    pub fn listing(
        &self,
        key: &str,
        entry: Option<&Entry>,
        recursive: bool,
        now: Timestamp,
    ) -> Node {
        let mut top = match entry {
            Some(e) => e.repr(key, now),
            None => Node {
                dir: true,
                ..Node::default()
            },
        };
        struct Frame<'a> {
            node: Node,
            pending: std::vec::IntoIter<(&'a str, &'a Entry)>,
            done: Vec<Node>,
        }
        let mut stack = vec![Frame {
            node: std::mem::take(&mut top),
            pending: self.children(key).into_iter(),
            done: Vec::new(),
        }];
        loop {
            let Some(frame) = stack.last_mut() else {
                return top;
            };
            match frame.pending.next() {
                Some((k, e)) if recursive && e.is_dir() => {
                    let node = e.repr(k, now);
                    stack.push(Frame {
                        node,
                        pending: self.children(k).into_iter(),
                        done: Vec::new(),
                    });
                }
                Some((k, e)) => frame.done.push(e.repr(k, now)),
                None => {
                    let Some(Frame { mut node, done, .. }) = stack.pop() else {
                        return top;
                    };
                    if !done.is_empty() {
                        node.nodes = Some(done);
                    }
                    match stack.last_mut() {
                        Some(parent) => parent.done.push(node),
                        None => top = node,
                    }
                }
            }
        }
    }
}
