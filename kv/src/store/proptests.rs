//! Model-based and robustness properties of the store.
//!
//! The model is a flat map from path to node with etcd's rules written out
//! as plainly as possible; random command sequences must give the same
//! outcomes (success or error code), the same indexes and the same reads on
//! both, and a snapshot must restore to an identical store.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone, PartialEq)]
struct MNode {
    value: Option<String>,
    created: u64,
    modified: u64,
}

#[derive(Debug, Default)]
struct Model {
    index: u64,
    nodes: BTreeMap<String, MNode>,
}

fn ancestors(key: &str) -> Vec<String> {
    key.match_indices('/')
        .skip(1)
        .map(|(i, _)| key[..i].to_owned())
        .collect()
}

fn below(key: &str, dir: &str) -> bool {
    key.starts_with(&format!("{dir}/"))
}

impl Model {
    fn missing(&self, key: &str) -> ErrorCode {
        for a in ancestors(key) {
            match self.nodes.get(&a) {
                Some(n) if n.value.is_some() => return ErrorCode::NotDir,
                Some(_) => {}
                None => return ErrorCode::KeyNotFound,
            }
        }
        ErrorCode::KeyNotFound
    }

    fn blocked(&self, key: &str) -> bool {
        ancestors(key)
            .iter()
            .any(|a| self.nodes.get(a).is_some_and(|n| n.value.is_some()))
    }

    fn insert(&mut self, key: &str, value: Option<String>) {
        let next = self.index + 1;
        for a in ancestors(key) {
            self.nodes.entry(a).or_insert(MNode {
                value: None,
                created: next,
                modified: next,
            });
        }
        self.nodes.insert(
            key.to_owned(),
            MNode {
                value,
                created: next,
                modified: next,
            },
        );
        self.index = next;
    }

    fn remove(&mut self, key: &str) {
        self.nodes.retain(|k, _| k != key && !below(k, key));
        self.index += 1;
    }

    fn compare(n: &MNode, prev_value: &Option<String>, prev_index: Option<u64>) -> bool {
        prev_value
            .as_ref()
            .is_none_or(|v| Some(v) == n.value.as_ref())
            && prev_index.is_none_or(|i| i == n.modified)
    }

    fn apply(&mut self, cmd: &Command) -> Result<(), ErrorCode> {
        match cmd {
            Command::Set {
                path, value, dir, ..
            } => {
                let key = clean_path(path).into_owned();
                if key == "/" {
                    return Err(ErrorCode::RootReadOnly);
                }
                match self.nodes.get(&key) {
                    Some(n) if n.value.is_none() => return Err(ErrorCode::NotFile),
                    Some(_) => {}
                    None if self.blocked(&key) => return Err(ErrorCode::NotDir),
                    None => {}
                }
                self.insert(&key, (!dir).then(|| value.clone()));
                Ok(())
            }
            Command::Create {
                path, value, dir, ..
            } => self.create(clean_path(path).into_owned(), value, *dir),
            Command::CreateInOrder {
                parent, value, dir, ..
            } => {
                let key = clean_path(&format!("{parent}/{:020}", self.index + 1)).into_owned();
                self.create(key, value, *dir)
            }
            Command::Update { path, value, .. } => {
                let key = clean_path(path).into_owned();
                if key == "/" {
                    return Err(ErrorCode::RootReadOnly);
                }
                let next = self.index + 1;
                let missing = self.missing(&key);
                let n = self.nodes.get_mut(&key).ok_or(missing)?;
                match &mut n.value {
                    None if !value.is_empty() => return Err(ErrorCode::NotFile),
                    None => {}
                    Some(v) => {
                        *v = value.clone();
                        n.modified = next;
                    }
                }
                self.index = next;
                Ok(())
            }
            Command::CompareAndSwap {
                path,
                value,
                prev_value,
                prev_index,
                ..
            } => {
                let key = clean_path(path).into_owned();
                if key == "/" {
                    return Err(ErrorCode::RootReadOnly);
                }
                let next = self.index + 1;
                let missing = self.missing(&key);
                let n = self.nodes.get_mut(&key).ok_or(missing)?;
                if n.value.is_none() {
                    return Err(ErrorCode::NotFile);
                }
                if !Model::compare(n, prev_value, *prev_index) {
                    return Err(ErrorCode::TestFailed);
                }
                n.value = Some(value.clone());
                n.modified = next;
                self.index = next;
                Ok(())
            }
            Command::Delete {
                path,
                dir,
                recursive,
            } => {
                let key = clean_path(path).into_owned();
                if key == "/" {
                    return Err(ErrorCode::RootReadOnly);
                }
                let n = self.nodes.get(&key).ok_or_else(|| self.missing(&key))?;
                if n.value.is_none() {
                    if !dir && !recursive {
                        return Err(ErrorCode::NotFile);
                    }
                    if !recursive && self.nodes.keys().any(|k| below(k, &key)) {
                        return Err(ErrorCode::DirNotEmpty);
                    }
                }
                self.remove(&key);
                Ok(())
            }
            Command::CompareAndDelete {
                path,
                prev_value,
                prev_index,
            } => {
                let key = clean_path(path).into_owned();
                if key == "/" {
                    return Err(ErrorCode::NotFile);
                }
                let n = self.nodes.get(&key).ok_or_else(|| self.missing(&key))?;
                if n.value.is_none() {
                    return Err(ErrorCode::NotFile);
                }
                if !Model::compare(n, prev_value, *prev_index) {
                    return Err(ErrorCode::TestFailed);
                }
                self.remove(&key);
                Ok(())
            }
            Command::Sync { .. } => Ok(()),
        }
    }

    fn create(&mut self, key: String, value: &str, dir: bool) -> Result<(), ErrorCode> {
        if key == "/" {
            return Err(ErrorCode::RootReadOnly);
        }
        if self.blocked(&key) {
            return Err(ErrorCode::NotDir);
        }
        if self.nodes.contains_key(&key) {
            return Err(ErrorCode::NodeExist);
        }
        self.insert(&key, (!dir).then(|| value.to_owned()));
        Ok(())
    }
}

fn t0() -> Timestamp {
    Timestamp::from_unix(1_795_294_390, 0)
}

/// Paths over a tiny alphabet so that commands collide often, with the
/// occasional `.`/`..`/empty segment, a hidden name, and a name (`a-`)
/// that sorts between `a` and `a/…`.
fn small_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => Just("a"),
            6 => Just("b"),
            3 => Just("a-"),
            2 => Just("_h"),
            1 => Just(".."),
            1 => Just("."),
            1 => Just(""),
        ],
        0..4,
    )
    .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn small_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("x".to_owned()),
        Just("y".to_owned())
    ]
}

fn model_command() -> impl Strategy<Value = Command> {
    let opt_value = || prop::option::of(small_value());
    let opt_index = || prop::option::of(0u64..12);
    prop_oneof![
        4 => (small_path(), small_value(), any::<bool>()).prop_map(|(path, value, dir)| {
            Command::Set { path, value, dir, expiration: None, refresh: false }
        }),
        2 => (small_path(), small_value(), any::<bool>()).prop_map(|(path, value, dir)| {
            Command::Create { path, value, dir, expiration: None }
        }),
        1 => (small_path(), small_value(), any::<bool>()).prop_map(|(parent, value, dir)| {
            Command::CreateInOrder { parent, value, dir, expiration: None }
        }),
        2 => (small_path(), small_value()).prop_map(|(path, value)| {
            Command::Update { path, value, expiration: None, refresh: false }
        }),
        2 => (small_path(), small_value(), opt_value(), opt_index()).prop_map(
            |(path, value, prev_value, prev_index)| Command::CompareAndSwap {
                path, value, prev_value, prev_index, expiration: None, refresh: false,
            }
        ),
        3 => (small_path(), any::<bool>(), any::<bool>()).prop_map(|(path, dir, recursive)| {
            Command::Delete { path, dir, recursive }
        }),
        1 => (small_path(), opt_value(), opt_index()).prop_map(|(path, prev_value, prev_index)| {
            Command::CompareAndDelete { path, prev_value, prev_index }
        }),
        1 => Just(Command::Sync { now: t0() }),
    ]
}

fn check_reads_match(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.index(), model.index);
    prop_assert_eq!(store.len(), model.nodes.len());
    for (k, n) in &model.nodes {
        let got = store.get(k, false, false, t0());
        prop_assert!(got.is_ok(), "{} missing: {:?}", k, got);
        let node = got.map(|e| e.node).unwrap_or_default();
        prop_assert_eq!(&node.value, &n.value, "value of {}", k);
        prop_assert_eq!(node.dir, n.value.is_none());
        prop_assert_eq!(
            (node.created_index, node.modified_index),
            (n.created, n.modified),
            "indexes of {}",
            k
        );
    }
    // The recursive listing shows exactly the nodes with no hidden segment.
    let visible = model.nodes.keys().filter(|k| !k.contains("/_")).count();
    let root = store.get("/", true, true, t0()).map(|e| e.node);
    prop_assert!(root.is_ok());
    let mut stack = vec![root.unwrap_or_default()];
    let mut listed = 0;
    while let Some(n) = stack.pop() {
        for c in n.nodes.unwrap_or_default() {
            listed += 1;
            stack.push(c);
        }
    }
    prop_assert_eq!(listed, visible);
    Ok(())
}

fn arbitrary_path() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[/a._%é\u{0}\u{10FFFF} -]{0,24}",
        prop::collection::vec(
            prop_oneof![Just(".."), Just(""), Just("%2F"), Just("ü"), Just("_x")],
            0..6
        )
        .prop_map(|s| s.join("/")),
    ]
}

fn arbitrary_command() -> impl Strategy<Value = Command> {
    let exp = prop::option::of(any::<i64>().prop_map(Timestamp::from_unix_nanos));
    (
        0u8..8,
        arbitrary_path(),
        any::<String>(),
        any::<bool>(),
        any::<bool>(),
        exp,
        prop::option::of(any::<String>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(op, path, value, flag, flag2, expiration, prev_value, prev_index)| match op {
                0 => Command::Set {
                    path,
                    value,
                    dir: flag,
                    expiration,
                    refresh: flag2,
                },
                1 => Command::Create {
                    path,
                    value,
                    dir: flag,
                    expiration,
                },
                2 => Command::CreateInOrder {
                    parent: path,
                    value,
                    dir: flag,
                    expiration,
                },
                3 => Command::Update {
                    path,
                    value,
                    expiration,
                    refresh: flag,
                },
                4 => Command::CompareAndSwap {
                    path,
                    value,
                    prev_value,
                    prev_index,
                    expiration,
                    refresh: flag,
                },
                5 => Command::Delete {
                    path,
                    dir: flag,
                    recursive: flag2,
                },
                6 => Command::CompareAndDelete {
                    path,
                    prev_value,
                    prev_index,
                },
                _ => Command::Sync {
                    now: expiration.unwrap_or(Timestamp::from_unix_nanos(i64::MAX)),
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_the_model(cmds in prop::collection::vec(model_command(), 1..60)) {
        let mut store = Store::new();
        let mut model = Model::default();
        for cmd in &cmds {
            let before = store.index();
            let want = model.apply(cmd);
            let got = store.apply(cmd.clone(), t0());
            match (&got, &want) {
                (Ok(applied), Ok(())) => {
                    if let Command::Sync { .. } = cmd {
                        prop_assert!(applied.events().is_empty());
                        prop_assert_eq!(store.index(), before);
                    } else {
                        prop_assert_eq!(store.index(), before + 1);
                        prop_assert_eq!(applied.events().len(), 1);
                        prop_assert_eq!(applied.events()[0].index(), store.index());
                    }
                }
                (Err(e), Err(code)) => {
                    prop_assert_eq!(e.code, *code, "{:?}", cmd);
                    prop_assert_eq!(e.index, before);
                    prop_assert_eq!(store.index(), before);
                }
                _ => prop_assert!(false, "{:?}: store {:?}, model {:?}", cmd, got, want),
            }
            check_reads_match(&store, &model)?;
            // A successful set is immediately readable.
            if let (Ok(_), Command::Set { path, value, dir: false, .. }) = (&got, cmd) {
                let read = store.get(path, false, false, t0()).map(|e| e.node.value);
                prop_assert_eq!(read, Ok(Some(value.clone())));
            }
        }
        let restored = Store::restore(&store.snapshot());
        prop_assert!(restored.is_ok());
        let restored = restored.unwrap_or_default();
        check_reads_match(&restored, &model)?;
        prop_assert_eq!(
            restored.get("/", true, true, t0()).ok().and_then(|e| serde_json::to_string(&e).ok()),
            store.get("/", true, true, t0()).ok().and_then(|e| serde_json::to_string(&e).ok())
        );
        for since in 0..=store.index() + 1 {
            prop_assert_eq!(
                restored.watch_scan("/", true, since),
                store.watch_scan("/", true, since)
            );
        }
    }

    #[test]
    fn arbitrary_input_never_panics(
        cmds in prop::collection::vec(arbitrary_command(), 1..30),
        probes in prop::collection::vec((arbitrary_path(), any::<bool>(), any::<u64>()), 1..10),
        now in any::<i64>(),
    ) {
        let now = Timestamp::from_unix_nanos(now);
        let mut store = Store::with_history_capacity(8);
        for cmd in cmds {
            let before = store.index();
            match store.apply(cmd, now) {
                Ok(applied) => {
                    let n = applied.events().len() as u64;
                    prop_assert_eq!(store.index(), before + n);
                    for e in applied.events() {
                        for (p, r, _) in &probes {
                            let _ = event_matches_watch(e, &clean_path(p), *r);
                        }
                    }
                }
                Err(e) => prop_assert_eq!(e.index, before),
            }
        }
        for (p, r, since) in &probes {
            let _ = store.get(p, *r, true, now);
            let _ = store.watch_scan(p, *r, *since);
        }
        let bytes = store.snapshot();
        let restored = Store::restore(&bytes);
        prop_assert!(restored.is_ok(), "{:?}", restored.err());
        let restored = restored.unwrap_or_default();
        prop_assert_eq!(restored.snapshot(), bytes);
    }

    #[test]
    fn restore_of_corrupted_bytes_never_panics(
        noise in prop::collection::vec(any::<u8>(), 0..256),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let _ = Store::restore(&noise);
        let mut s = Store::new();
        let _ = s.apply(
            Command::Set { path: "/a/b".into(), value: "v".into(), dir: false,
                expiration: Some(t0()), refresh: false },
            t0(),
        );
        let mut bytes = s.snapshot();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(r) = Store::restore(&bytes) {
            let _ = r.get("/", true, true, t0());
            let _ = r.watch_scan("/", true, 1);
        }
    }
}
