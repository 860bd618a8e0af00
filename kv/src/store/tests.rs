//! Store behaviour against the oracle transcripts in kv.md (§2–§8).

use super::*;
use crate::v2::ErrorCode;

/// 2026-11-21T20:53:10Z, the day the oracle transcripts were taken.
const BASE: i64 = 1_795_294_390;

fn at(secs_after_base: i64, nanos: u32) -> Timestamp {
    Timestamp::from_unix(BASE + secs_after_base, nanos)
}

fn now() -> Timestamp {
    at(0, 0)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

fn ok(store: &mut Store, cmd: Command, now: Timestamp) -> Arc<Event> {
    match store.apply(cmd.clone(), now) {
        Ok(applied) => applied.into_event().expect("a key-space event"),
        Err(e) => panic!("{cmd:?} failed: {e}"),
    }
}

fn err(store: &mut Store, cmd: Command) -> V2Error {
    let before = store.index();
    let e = store
        .apply(cmd.clone(), now())
        .expect_err("command should fail");
    assert_eq!(store.index(), before, "{cmd:?} consumed an index");
    e
}

fn err_json(e: &V2Error) -> String {
    json(&e.body())
}

fn put(path: &str, value: &str) -> Command {
    Command::from_put(
        path,
        PutRequest {
            value: value.into(),
            ..PutRequest::default()
        },
    )
}

fn put_with(path: &str, req: PutRequest) -> Command {
    Command::from_put(path, req)
}

fn mkdir(path: &str) -> Command {
    put_with(
        path,
        PutRequest {
            dir: true,
            ..PutRequest::default()
        },
    )
}

fn del(path: &str) -> Command {
    Command::from_delete(path, false, false, None, 0)
}

fn get_json(store: &Store, path: &str, recursive: bool) -> String {
    json(&store.get(path, recursive, true, now()).unwrap())
}

/// A store whose next write gets index `next`, as in the transcripts.
fn store_at(next: u64) -> Store {
    let mut s = Store::new();
    s.index = next - 1;
    s
}

// ---- §3.4 worked examples, verbatim ----

#[test]
fn worked_example_set_replace_delete_get() {
    let mut s = store_at(4);
    let e = ok(&mut s, put("/message", "Hello world"), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":4,"createdIndex":4}}"#
    );
    assert_eq!(s.index(), 4);
    let e = ok(&mut s, put("/message", "Hello etcd"), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"set","node":{"key":"/message","value":"Hello etcd","modifiedIndex":5,"createdIndex":5},"prevNode":{"key":"/message","value":"Hello world","modifiedIndex":4,"createdIndex":4}}"#
    );
    let e = ok(&mut s, del("/message"), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"delete","node":{"key":"/message","modifiedIndex":6,"createdIndex":5},"prevNode":{"key":"/message","value":"Hello etcd","modifiedIndex":5,"createdIndex":5}}"#
    );
    let e = s.get("/message", false, false, now()).unwrap_err();
    assert_eq!(
        err_json(&e),
        r#"{"errorCode":100,"message":"Key not found","cause":"/message","index":6}"#
    );
}

#[test]
fn worked_example_ttl_then_expiry() {
    let mut s = store_at(7);
    let t0 = at(0, 29_553_333);
    let e = ok(
        &mut s,
        put_with(
            "/foo",
            PutRequest {
                value: "bar".into(),
                expiration: Some(t0.plus_secs(5)),
                ..PutRequest::default()
            },
        ),
        t0,
    );
    assert_eq!(
        json(&*e),
        r#"{"action":"set","node":{"key":"/foo","value":"bar","expiration":"2026-11-21T20:53:15.029553333Z","ttl":5,"modifiedIndex":7,"createdIndex":7}}"#
    );
    // Something else used index 8 in the transcript.
    ok(&mut s, put("/_other", "x"), t0);
    // Not due yet: nothing happens, no index used.
    let swept = s.apply(Command::Sync { now: at(4, 0) }, at(4, 0)).unwrap();
    assert!(swept.events().is_empty());
    assert_eq!(s.index(), 8);
    let t6 = at(6, 29_553_333);
    let swept = s.apply(Command::Sync { now: t6 }, t6).unwrap();
    assert_eq!(swept.events().len(), 1);
    assert_eq!(swept.events()[0].index(), 9);
    let e = s.get("/foo", false, false, t6).unwrap_err();
    assert_eq!(
        err_json(&e),
        r#"{"errorCode":100,"message":"Key not found","cause":"/foo","index":9}"#
    );
    assert!(!s.has_ttl_nodes());
}

#[test]
fn worked_example_create_update_cas_cad() {
    let mut s = store_at(10);
    let create = |v: &str| {
        put_with(
            "/foo",
            PutRequest {
                value: v.into(),
                prev_exist: Some(false),
                ..PutRequest::default()
            },
        )
    };
    let e = ok(&mut s, create("one"), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"create","node":{"key":"/foo","value":"one","modifiedIndex":10,"createdIndex":10}}"#
    );
    assert_eq!(
        err_json(&err(&mut s, create("two"))),
        r#"{"errorCode":105,"message":"Key already exists","cause":"/foo","index":10}"#
    );
    let update = |v: &str| {
        put_with(
            "/foo",
            PutRequest {
                value: v.into(),
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        )
    };
    let e = ok(&mut s, update("three"), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"update","node":{"key":"/foo","value":"three","modifiedIndex":11,"createdIndex":10},"prevNode":{"key":"/foo","value":"one","modifiedIndex":10,"createdIndex":10}}"#
    );
    let cas = |value: &str, prev_value: Option<&str>, prev_index: u64| {
        put_with(
            "/foo",
            PutRequest {
                value: value.into(),
                prev_value: prev_value.map(str::to_owned),
                prev_index,
                ..PutRequest::default()
            },
        )
    };
    assert_eq!(
        err_json(&err(&mut s, cas("four", Some("two"), 0))),
        r#"{"errorCode":101,"message":"Compare failed","cause":"[two != three]","index":11}"#
    );
    let e = ok(&mut s, cas("four", Some("three"), 0), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"compareAndSwap","node":{"key":"/foo","value":"four","modifiedIndex":12,"createdIndex":10},"prevNode":{"key":"/foo","value":"three","modifiedIndex":11,"createdIndex":10}}"#
    );
    assert_eq!(
        err_json(&err(&mut s, cas("five", None, 1))),
        r#"{"errorCode":101,"message":"Compare failed","cause":"[1 != 12]","index":12}"#
    );
    ok(&mut s, put("/foo", "five"), now());
    assert_eq!(
        err_json(&err(&mut s, cas("x", Some("four"), 12))),
        r#"{"errorCode":101,"message":"Compare failed","cause":"[four != five] [12 != 13]","index":13}"#
    );
    ok(&mut s, update("six"), now());
    let e = ok(
        &mut s,
        Command::from_delete("/foo", false, false, Some("six".into()), 0),
        now(),
    );
    assert_eq!(
        json(&*e),
        r#"{"action":"compareAndDelete","node":{"key":"/foo","modifiedIndex":15,"createdIndex":13},"prevNode":{"key":"/foo","value":"six","modifiedIndex":14,"createdIndex":13}}"#
    );
}

#[test]
fn worked_example_directories_and_listings() {
    let mut s = store_at(20);
    let e = ok(&mut s, mkdir("/dir"), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"set","node":{"key":"/dir","dir":true,"modifiedIndex":20,"createdIndex":20}}"#
    );
    assert_eq!(
        err_json(&err(&mut s, mkdir("/dir"))),
        r#"{"errorCode":102,"message":"Not a file","cause":"/dir","index":20}"#
    );
    ok(&mut s, put("/dir/a", "1"), now());
    ok(&mut s, put("/dir/sub/b", "2"), now());
    ok(&mut s, put("/dir/_hidden", "h"), now());
    // §2.6 listings (the hidden node is absent from both).
    assert_eq!(
        get_json(&s, "/dir", false),
        r#"{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":21,"createdIndex":21},{"key":"/dir/sub","dir":true,"modifiedIndex":22,"createdIndex":22}],"modifiedIndex":20,"createdIndex":20}}"#
    );
    assert_eq!(
        get_json(&s, "/dir", true),
        r#"{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":21,"createdIndex":21},{"key":"/dir/sub","dir":true,"nodes":[{"key":"/dir/sub/b","value":"2","modifiedIndex":22,"createdIndex":22}],"modifiedIndex":22,"createdIndex":22}],"modifiedIndex":20,"createdIndex":20}}"#
    );
    assert_eq!(
        err_json(&err(
            &mut s,
            Command::from_delete("/dir", true, false, None, 0)
        )),
        r#"{"errorCode":108,"message":"Directory not empty","cause":"/dir","index":23}"#
    );
    s.index = 28;
    let e = ok(
        &mut s,
        Command::from_delete("/dir", false, true, None, 0),
        now(),
    );
    assert_eq!(
        json(&*e),
        r#"{"action":"delete","node":{"key":"/dir","dir":true,"modifiedIndex":29,"createdIndex":20},"prevNode":{"key":"/dir","dir":true,"modifiedIndex":20,"createdIndex":20}}"#
    );
    assert!(s.is_empty());
}

#[test]
fn worked_example_in_order_create() {
    let mut s = store_at(25);
    let e = ok(
        &mut s,
        Command::CreateInOrder {
            parent: "/queue".into(),
            value: "Job1".into(),
            dir: false,
            expiration: None,
        },
        now(),
    );
    assert_eq!(
        json(&*e),
        r#"{"action":"create","node":{"key":"/queue/00000000000000000025","value":"Job1","modifiedIndex":25,"createdIndex":25}}"#
    );
}

#[test]
fn worked_example_directory_ttl_update_quirk() {
    let mut s = store_at(30);
    let t_create = at(18, 347_367_188);
    ok(
        &mut s,
        put_with(
            "/tdir",
            PutRequest {
                dir: true,
                expiration: Some(t_create.plus_secs(30)),
                ..PutRequest::default()
            },
        ),
        t_create,
    );
    let t_update = at(18, 362_156_740);
    let e = ok(
        &mut s,
        put_with(
            "/tdir",
            PutRequest {
                dir: true,
                expiration: Some(t_update.plus_secs(60)),
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        ),
        t_update,
    );
    assert_eq!(
        json(&*e),
        r#"{"action":"update","node":{"key":"/tdir","dir":true,"expiration":"2026-11-21T20:54:28.36215674Z","ttl":60,"modifiedIndex":31,"createdIndex":30},"prevNode":{"key":"/tdir","dir":true,"expiration":"2026-11-21T20:53:58.347367188Z","ttl":30,"modifiedIndex":30,"createdIndex":30}}"#
    );
    // The stored directory kept modifiedIndex 30.
    let got = s.get("/tdir", false, false, t_update).unwrap();
    assert_eq!(got.node.modified_index, 30);
    assert_eq!(got.node.ttl, 60);
    let e = ok(
        &mut s,
        Command::from_delete("/tdir", true, false, None, 0),
        t_update,
    );
    assert_eq!(e.prev_node.as_ref().unwrap().modified_index, 30);
}

#[test]
fn worked_example_root_is_read_only() {
    let mut s = store_at(60);
    assert_eq!(
        err_json(&err(&mut s, put("/", "3"))),
        r#"{"errorCode":107,"message":"Root is read only","cause":"/","index":59}"#
    );
    assert_eq!(
        err_json(&err(&mut s, put("", "3"))),
        r#"{"errorCode":107,"message":"Root is read only","cause":"/","index":59}"#
    );
    for cmd in [
        mkdir("/"),
        Command::Create {
            path: "/".into(),
            value: String::new(),
            dir: false,
            expiration: None,
        },
        put_with(
            "/",
            PutRequest {
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        ),
        put_with(
            "/",
            PutRequest {
                prev_value: Some("x".into()),
                ..PutRequest::default()
            },
        ),
        Command::from_delete("/", true, true, None, 0),
        del("/a/.."),
    ] {
        assert_eq!(err(&mut s, cmd).code, ErrorCode::RootReadOnly);
    }
    // etcd checks compare-and-delete on the root only as "a directory".
    let e = err(
        &mut s,
        Command::from_delete("/", false, false, Some("x".into()), 0),
    );
    assert_eq!((e.code, e.cause.as_str()), (ErrorCode::NotFile, ""));
}

#[test]
fn fresh_root_listing() {
    let s = Store::new();
    assert_eq!(
        get_json(&s, "/", false),
        r#"{"action":"get","node":{"dir":true}}"#
    );
    assert_eq!(
        get_json(&s, "", true),
        r#"{"action":"get","node":{"dir":true}}"#
    );
}

// ---- §5 errors ----

#[test]
fn error_rows() {
    let mut s = Store::new();
    ok(&mut s, put("/key", "v"), now());
    ok(&mut s, mkdir("/dir"), now());
    ok(&mut s, put("/full/x", "v"), now());
    let i = s.index();
    let check = |e: V2Error, code: ErrorCode, cause: &str| {
        assert_eq!((e.code, e.cause.as_str(), e.index), (code, cause, i), "{e}");
    };
    // 100: first missing path.
    check(
        s.get("/nothere/child", false, false, now()).unwrap_err(),
        ErrorCode::KeyNotFound,
        "/nothere",
    );
    check(
        err(&mut s, del("/nothere")),
        ErrorCode::KeyNotFound,
        "/nothere",
    );
    check(
        err(
            &mut s,
            put_with(
                "/a/b",
                PutRequest {
                    prev_exist: Some(true),
                    ..PutRequest::default()
                },
            ),
        ),
        ErrorCode::KeyNotFound,
        "/a",
    );
    check(
        err(
            &mut s,
            Command::from_delete("/nope", false, false, Some("x".into()), 0),
        ),
        ErrorCode::KeyNotFound,
        "/nope",
    );
    check(
        err(
            &mut s,
            put_with(
                "/nope",
                PutRequest {
                    prev_index: 3,
                    ..PutRequest::default()
                },
            ),
        ),
        ErrorCode::KeyNotFound,
        "/nope",
    );
    // 102: directory where a key is needed.
    check(err(&mut s, put("/dir", "v")), ErrorCode::NotFile, "/dir");
    check(err(&mut s, mkdir("/dir")), ErrorCode::NotFile, "/dir");
    check(err(&mut s, del("/dir")), ErrorCode::NotFile, "/dir");
    check(
        err(
            &mut s,
            put_with(
                "/dir",
                PutRequest {
                    value: "x".into(),
                    prev_exist: Some(true),
                    ..PutRequest::default()
                },
            ),
        ),
        ErrorCode::NotFile,
        "/dir",
    );
    check(
        err(
            &mut s,
            put_with(
                "/dir",
                PutRequest {
                    prev_value: Some("x".into()),
                    ..PutRequest::default()
                },
            ),
        ),
        ErrorCode::NotFile,
        "/dir",
    );
    check(
        err(&mut s, Command::from_delete("/dir", false, false, None, 1)),
        ErrorCode::NotFile,
        "/dir",
    );
    // 104: a key in the way, whatever the operation.
    check(err(&mut s, put("/key/c", "v")), ErrorCode::NotDir, "/key");
    check(err(&mut s, put("/key/c/d", "v")), ErrorCode::NotDir, "/key");
    check(
        s.get("/key/c", false, false, now()).unwrap_err(),
        ErrorCode::NotDir,
        "/key",
    );
    check(
        err(
            &mut s,
            put_with(
                "/key/c",
                PutRequest {
                    prev_exist: Some(false),
                    ..PutRequest::default()
                },
            ),
        ),
        ErrorCode::NotDir,
        "/key",
    );
    check(
        err(
            &mut s,
            Command::CreateInOrder {
                parent: "/key".into(),
                value: "j".into(),
                dir: false,
                expiration: None,
            },
        ),
        ErrorCode::NotDir,
        "/key",
    );
    check(err(&mut s, del("/key/c")), ErrorCode::NotDir, "/key");
    // 105, 108.
    check(
        err(
            &mut s,
            put_with(
                "/dir",
                PutRequest {
                    dir: true,
                    prev_exist: Some(false),
                    ..PutRequest::default()
                },
            ),
        ),
        ErrorCode::NodeExist,
        "/dir",
    );
    check(
        err(&mut s, Command::from_delete("/full", true, false, None, 0)),
        ErrorCode::DirNotEmpty,
        "/full",
    );
    assert_eq!(s.index(), i);
}

#[test]
fn error_status_codes_follow_the_table() {
    assert_eq!(ErrorCode::KeyNotFound.http_status(), 404);
    assert_eq!(ErrorCode::NodeExist.http_status(), 412);
    assert_eq!(ErrorCode::DirNotEmpty.http_status(), 403);
    assert_eq!(ErrorCode::EventIndexCleared.http_status(), 400);
}

// ---- §2.3 index rules and §3.2 operations ----

#[test]
fn index_rules() {
    let mut s = Store::new();
    let e = ok(&mut s, put("/a/b/c", "1"), now());
    assert_eq!((e.node.created_index, e.node.modified_index), (1, 1));
    // Implicit directories get the write's index and are permanent.
    for d in ["/a", "/a/b"] {
        let n = s.get(d, false, false, now()).unwrap().node;
        assert_eq!((n.created_index, n.modified_index, n.dir), (1, 1, true));
        assert!(n.expiration.is_none());
    }
    // Writes to a child leave the parent unchanged.
    ok(&mut s, put("/a/b/d", "2"), now());
    let n = s.get("/a/b", false, false, now()).unwrap().node;
    assert_eq!((n.created_index, n.modified_index), (1, 1));
    // set on an existing key replaces it: new createdIndex.
    let e = ok(&mut s, put("/a/b/c", "3"), now());
    assert_eq!((e.node.created_index, e.node.modified_index), (3, 3));
    // update keeps createdIndex.
    let e = ok(
        &mut s,
        put_with(
            "/a/b/c",
            PutRequest {
                value: "4".into(),
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    assert_eq!((e.node.created_index, e.node.modified_index), (3, 4));
    let e = ok(&mut s, del("/a/b/c"), now());
    assert_eq!((e.node.created_index, e.node.modified_index), (3, 5));
    assert_eq!(e.index(), 5);
}

#[test]
fn set_dir_replaces_a_key_and_update_dir_on_a_key_sets_value() {
    let mut s = Store::new();
    ok(&mut s, put("/k", "v"), now());
    let e = ok(&mut s, mkdir("/k"), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"set","node":{"key":"/k","dir":true,"modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/k","value":"v","modifiedIndex":1,"createdIndex":1}}"#
    );
    ok(&mut s, put("/k2", "v"), now());
    let e = ok(
        &mut s,
        put_with(
            "/k2",
            PutRequest {
                dir: true,
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    assert_eq!(e.node.value.as_deref(), Some(""));
    assert!(!e.node.dir);
    // update of a directory with an empty value only touches the TTL.
    let e = ok(
        &mut s,
        put_with(
            "/k",
            PutRequest {
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    assert!(e.node.dir && e.node.value.is_none());
}

#[test]
fn deletes_of_keys_and_directories() {
    let mut s = Store::new();
    ok(&mut s, put("/k", "v"), now());
    ok(&mut s, mkdir("/empty"), now());
    ok(&mut s, put("/full/x/y", "v"), now());
    // dir=true on a key deletes the key.
    ok(
        &mut s,
        Command::from_delete("/k", true, false, None, 0),
        now(),
    );
    ok(
        &mut s,
        Command::from_delete("/empty", true, false, None, 0),
        now(),
    );
    let e = ok(
        &mut s,
        Command::from_delete("/full", false, true, None, 0),
        now(),
    );
    assert!(e.node.dir);
    assert!(e.prev_node.as_ref().unwrap().nodes.is_none());
    assert!(s.is_empty());
    // A missing key after a recursive delete of its parent.
    assert_eq!(
        s.get("/full/x/y", false, false, now()).unwrap_err().cause,
        "/full"
    );
}

#[test]
fn compare_and_delete_with_index() {
    let mut s = Store::new();
    ok(&mut s, put("/k", "v"), now());
    let e = err(&mut s, Command::from_delete("/k", false, false, None, 7));
    assert_eq!(e.cause, "[7 != 1]");
    let e = err(
        &mut s,
        Command::from_delete("/k", false, false, Some("w".into()), 7),
    );
    assert_eq!(e.cause, "[w != v] [7 != 1]");
    ok(
        &mut s,
        Command::from_delete("/k", false, false, Some("v".into()), 1),
        now(),
    );
}

#[test]
fn paths_are_cleaned() {
    let mut s = Store::new();
    let e = ok(&mut s, put("w/foo/", "1"), now());
    assert_eq!(e.key(), "/w/foo");
    let e = ok(&mut s, put("/sp ace/x/../x//y", "2"), now());
    assert_eq!(e.key(), "/sp ace/x/y");
    assert_eq!(
        s.get("/w/./foo", false, false, now())
            .unwrap()
            .node
            .value
            .as_deref(),
        Some("1")
    );
    // The empty value is a value.
    let e = ok(&mut s, put("/empty", ""), now());
    assert_eq!(
        json(&*e),
        r#"{"action":"set","node":{"key":"/empty","value":"","modifiedIndex":3,"createdIndex":3}}"#
    );
}

#[test]
fn from_put_dispatch_follows_the_table() {
    let req = |prev_exist, prev_value: Option<&str>, prev_index| PutRequest {
        prev_exist,
        prev_value: prev_value.map(str::to_owned),
        prev_index,
        ..PutRequest::default()
    };
    let kind = |c: Command| match c {
        Command::Set { .. } => "set",
        Command::Create { .. } => "create",
        Command::Update { .. } => "update",
        Command::CompareAndSwap { .. } => "cas",
        _ => "other",
    };
    assert_eq!(kind(Command::from_put("/k", req(None, None, 0))), "set");
    assert_eq!(
        kind(Command::from_put("/k", req(None, Some("a"), 0))),
        "cas"
    );
    assert_eq!(kind(Command::from_put("/k", req(None, None, 3))), "cas");
    assert_eq!(
        kind(Command::from_put("/k", req(Some(true), None, 0))),
        "update"
    );
    assert_eq!(
        kind(Command::from_put("/k", req(Some(true), None, 3))),
        "cas"
    );
    assert_eq!(
        kind(Command::from_put("/k", req(Some(false), Some("a"), 3))),
        "create"
    );
}

#[test]
fn commands_round_trip_through_serde() {
    let cmds = vec![
        put("/a", "b"),
        Command::from_put(
            "/a",
            PutRequest {
                value: "v".into(),
                expiration: Some(now()),
                refresh: true,
                prev_exist: Some(true),
                prev_value: Some("x".into()),
                prev_index: 4,
                dir: false,
            },
        ),
        Command::from_delete("/a", true, true, None, 0),
        Command::from_delete("/a", false, false, Some("v".into()), 2),
        Command::CreateInOrder {
            parent: "/q".into(),
            value: "j".into(),
            dir: true,
            expiration: None,
        },
        Command::Sync { now: now() },
    ];
    for c in cmds {
        let bytes = serde_json::to_vec(&c).unwrap();
        assert_eq!(serde_json::from_slice::<Command>(&bytes).unwrap(), c);
    }
    assert_eq!(
        json(&Command::Sync {
            now: Timestamp::from_unix_nanos(5)
        }),
        r#"{"sync":{"now":5}}"#
    );
}

// ---- §2.4 TTL ----

fn put_ttl(path: &str, value: &str, now: Timestamp, ttl: u64) -> Command {
    put_with(
        path,
        PutRequest {
            value: value.into(),
            expiration: Some(now.plus_secs(ttl)),
            ..PutRequest::default()
        },
    )
}

#[test]
fn ttl_counts_down_and_rounds_up() {
    let mut s = Store::new();
    ok(&mut s, put_ttl("/k", "v", now(), 60), now());
    assert_eq!(s.get("/k", false, false, at(2, 0)).unwrap().node.ttl, 58);
    assert_eq!(s.get("/k", false, false, at(2, 1)).unwrap().node.ttl, 58);
    assert_eq!(
        s.get("/k", false, false, at(1, 999_999_999))
            .unwrap()
            .node
            .ttl,
        59
    );
    assert_eq!(s.next_expiration(), Some(at(60, 0)));
}

#[test]
fn ttl_zero_shows_expiration_without_ttl_and_expires_at_next_sweep() {
    let mut s = Store::new();
    let t = at(0, 500_000_000);
    let e = ok(&mut s, put_ttl("/k", "v", t, 0), t);
    assert_eq!(
        json(&*e),
        r#"{"action":"set","node":{"key":"/k","value":"v","expiration":"2026-11-21T20:53:10.5Z","modifiedIndex":1,"createdIndex":1}}"#
    );
    let swept = s.apply(Command::Sync { now: t }, t).unwrap();
    assert_eq!(swept.events().len(), 1);
}

#[test]
fn removing_a_ttl() {
    let mut s = Store::new();
    ok(&mut s, put_ttl("/k", "v", now(), 5), now());
    let e = ok(
        &mut s,
        put_with(
            "/k",
            PutRequest {
                value: "v".into(),
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    assert!(e.node.expiration.is_none() && e.node.ttl == 0);
    assert!(e.prev_node.as_ref().unwrap().expiration.is_some());
    assert!(!s.has_ttl_nodes());
    // A plain set also makes a key permanent.
    ok(&mut s, put_ttl("/j", "v", now(), 5), now());
    ok(&mut s, put("/j", "w"), now());
    assert!(!s.has_ttl_nodes());
    let swept = s
        .apply(Command::Sync { now: at(100, 0) }, at(100, 0))
        .unwrap();
    assert!(swept.events().is_empty());
    assert_eq!(s.len(), 2);
}

#[test]
fn expiration_before_2000_means_permanent_on_create() {
    let mut s = Store::new();
    let old = Timestamp::from_unix(1_000, 0);
    let e = ok(
        &mut s,
        put_with(
            "/k",
            PutRequest {
                expiration: Some(old),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    assert!(e.node.expiration.is_none());
    assert!(!s.has_ttl_nodes());
}

#[test]
fn directory_ttl_expires_the_subtree_and_wakes_child_watchers() {
    let mut s = Store::new();
    ok(
        &mut s,
        put_with(
            "/d",
            PutRequest {
                dir: true,
                expiration: Some(now().plus_secs(10)),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    ok(&mut s, put("/d/a/b", "1"), now());
    // A child with its own, later TTL goes with the directory.
    ok(&mut s, put_ttl("/d/c", "2", now(), 30), now());
    ok(&mut s, put_ttl("/other", "3", now(), 20), now());
    let t = at(10, 0);
    let swept = s.apply(Command::Sync { now: t }, t).unwrap();
    let events = swept.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        json(&**e),
        r#"{"action":"expire","node":{"key":"/d","dir":true,"modifiedIndex":5,"createdIndex":1},"prevNode":{"key":"/d","dir":true,"expiration":"2026-11-21T20:53:20Z","modifiedIndex":1,"createdIndex":1}}"#
    );
    assert!(event_matches_watch(e, "/d/a/b", false));
    assert!(event_matches_watch(e, "/d/c", false));
    assert!(event_matches_watch(e, "/", true));
    assert!(!event_matches_watch(e, "/other", true));
    assert_eq!(s.len(), 1);
    assert_eq!(s.next_expiration(), Some(at(20, 0)));
    assert_eq!(s.stats(0).expire_count, 1);
}

#[test]
fn sweep_gives_each_expired_node_its_own_index_in_expiry_order() {
    let mut s = Store::new();
    ok(&mut s, put_ttl("/late", "1", now(), 3), now());
    ok(&mut s, put_ttl("/early", "2", now(), 1), now());
    ok(&mut s, put_ttl("/b", "3", now(), 2), now());
    ok(&mut s, put_ttl("/a", "4", now(), 2), now());
    ok(&mut s, put_ttl("/never", "5", now(), 9), now());
    let t = at(3, 0);
    let swept = s.apply(Command::Sync { now: t }, t).unwrap();
    let got: Vec<(String, u64)> = swept
        .events()
        .iter()
        .map(|e| (e.key().to_owned(), e.index()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/early".into(), 6),
            ("/a".into(), 7),
            ("/b".into(), 8),
            ("/late".into(), 9)
        ]
    );
    assert_eq!(s.index(), 9);
    assert_eq!(s.watch_scan("/a", false, 1).unwrap().unwrap().index(), 4);
    assert_eq!(s.watch_scan("/a", false, 5).unwrap().unwrap().index(), 7);
}

#[test]
fn expire_event_matches_the_oracle_watch_transcript() {
    let mut s = store_at(1167);
    let exp = at(113, 742_953_585);
    ok(
        &mut s,
        put_with(
            "/e/x",
            PutRequest {
                value: "1".into(),
                expiration: Some(exp),
                ..PutRequest::default()
            },
        ),
        at(111, 742_953_585),
    );
    let sweep = Timestamp::from_unix_nanos(exp.unix_nanos() + 300_000_000);
    let swept = s.apply(Command::Sync { now: sweep }, sweep).unwrap();
    let e = &swept.events()[0];
    assert!(event_matches_watch(e, "/e/x", false));
    assert_eq!(
        json(&**e),
        r#"{"action":"expire","node":{"key":"/e/x","modifiedIndex":1168,"createdIndex":1167},"prevNode":{"key":"/e/x","value":"1","expiration":"2026-11-21T20:55:03.742953585Z","modifiedIndex":1167,"createdIndex":1167}}"#
    );
}

#[test]
fn refresh_rules() {
    let mut s = Store::new();
    let refresh = |prev_exist, ttl: u64| {
        put_with(
            "/k",
            PutRequest {
                expiration: Some(now().plus_secs(ttl)),
                refresh: true,
                prev_exist,
                ..PutRequest::default()
            },
        )
    };
    assert_eq!(err(&mut s, refresh(None, 5)).code, ErrorCode::KeyNotFound);
    assert_eq!(
        err(&mut s, refresh(Some(true), 5)).code,
        ErrorCode::KeyNotFound
    );
    ok(&mut s, put_ttl("/k", "v", now(), 5), now());
    // Without prevExist: a set that keeps the value, quirk: new createdIndex.
    let e = ok(&mut s, refresh(None, 50), now());
    assert_eq!(e.action, Action::Set);
    assert_eq!(e.node.value.as_deref(), Some("v"));
    assert_eq!(
        (e.node.created_index, e.node.modified_index, e.node.ttl),
        (2, 2, 50)
    );
    assert!(e.refresh);
    // With prevExist=true: an update that keeps createdIndex.
    let e = ok(&mut s, refresh(Some(true), 80), now());
    assert_eq!(e.action, Action::Update);
    assert_eq!(
        (e.node.created_index, e.node.modified_index, e.node.ttl),
        (2, 3, 80)
    );
    assert_eq!(e.node.value.as_deref(), Some("v"));
    // Never on the wire, never delivered to watchers, skipped by scans.
    assert!(!json(&*e).contains("refresh"));
    assert!(!event_matches_watch(&e, "/k", false));
    assert!(s.watch_scan("/k", false, 2).unwrap().is_none());
    assert_eq!(s.history_start(), 1);
    assert_eq!(s.next_expiration(), Some(at(80, 0)));
}

// ---- §2.2 hidden nodes, §2.5 in-order keys ----

#[test]
fn hidden_nodes_are_omitted_from_listings_but_readable() {
    let mut s = Store::new();
    ok(&mut s, put("/_top", "t"), now());
    ok(&mut s, put("/a/_h/x", "1"), now());
    ok(&mut s, put("/a/v", "2"), now());
    assert_eq!(
        get_json(&s, "/", true),
        r#"{"action":"get","node":{"dir":true,"nodes":[{"key":"/a","dir":true,"nodes":[{"key":"/a/v","value":"2","modifiedIndex":3,"createdIndex":3}],"modifiedIndex":2,"createdIndex":2}]}}"#
    );
    assert_eq!(
        get_json(&s, "/a/_h", false),
        r#"{"action":"get","node":{"key":"/a/_h","dir":true,"nodes":[{"key":"/a/_h/x","value":"1","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":2,"createdIndex":2}}"#
    );
    assert_eq!(
        s.get("/_top", false, false, now())
            .unwrap()
            .node
            .value
            .as_deref(),
        Some("t")
    );
}

#[test]
fn hidden_nodes_and_live_watches() {
    let mut s = Store::new();
    let hidden = ok(&mut s, put("/a/_h/x", "1"), now());
    let hidden_leaf = ok(&mut s, put("/a/b/_x", "1"), now());
    let visible = ok(&mut s, put("/a/b/c", "1"), now());
    assert!(!event_matches_watch(&hidden, "/a", true));
    assert!(!event_matches_watch(&hidden, "/", true));
    assert!(!event_matches_watch(&hidden_leaf, "/a", true));
    assert!(event_matches_watch(&hidden, "/a/_h", true));
    assert!(event_matches_watch(&hidden, "/a/_h/x", false));
    assert!(event_matches_watch(&hidden_leaf, "/a/b/_x", false));
    assert!(event_matches_watch(&visible, "/a", true));
    assert!(!event_matches_watch(&visible, "/a", false));
    assert!(!event_matches_watch(&visible, "/a/b/cd", true));
    // History scans follow the same rule.
    assert_eq!(s.watch_scan("/a", true, 1).unwrap().unwrap().index(), 3);
    assert_eq!(s.watch_scan("/a/_h", true, 1).unwrap().unwrap().index(), 1);
}

#[test]
fn in_order_keys() {
    let mut s = store_at(10);
    let post = |parent: &str, dir| Command::CreateInOrder {
        parent: parent.into(),
        value: "job".into(),
        dir,
        expiration: None,
    };
    let e = ok(&mut s, post("/", false), now());
    assert_eq!(e.key(), "/00000000000000000010");
    assert_eq!(
        ok(&mut s, post("/q", false), now()).key(),
        "/q/00000000000000000011"
    );
    let e = ok(&mut s, post("/q", true), now());
    assert_eq!(e.key(), "/q/00000000000000000012");
    assert!(e.node.dir && e.action == Action::Create);
    s.index = 99;
    ok(&mut s, post("/q/", false), now());
    let listing = s.get("/q", false, true, now()).unwrap().node.nodes.unwrap();
    let keys: Vec<&str> = listing.iter().filter_map(|n| n.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "/q/00000000000000000011",
            "/q/00000000000000000012",
            "/q/00000000000000000100"
        ]
    );
}

#[test]
fn listings_are_sorted_bytewise_at_every_level() {
    let mut s = Store::new();
    for k in [
        "/d/b", "/d/a!", "/d/a/z", "/d/a/y/1", "/d/a-", "/d/a", "/d/é", "/d/B",
    ] {
        // "/d/a" is a directory once "/d/a/z" exists; skip the clash.
        let _ = s.apply(put(k, "v"), now());
    }
    let node = s.get("/d", true, true, now()).unwrap().node;
    let names: Vec<&str> = node
        .nodes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|n| n.key.as_deref())
        .collect();
    assert_eq!(names, ["/d/B", "/d/a", "/d/a!", "/d/a-", "/d/b", "/d/é"]);
    let a = &node.nodes.as_ref().unwrap()[1];
    let inner: Vec<&str> = a
        .nodes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|n| n.key.as_deref())
        .collect();
    assert_eq!(inner, ["/d/a/y", "/d/a/z"]);
    assert_eq!(
        a.nodes.as_ref().unwrap()[0].nodes.as_ref().unwrap()[0]
            .key
            .as_deref(),
        Some("/d/a/y/1")
    );
    // Without recursive, child directories carry no nodes.
    let flat = s.get("/d", false, false, now()).unwrap().node;
    assert!(flat.nodes.unwrap().iter().all(|n| n.nodes.is_none()));
}

// ---- §6 watches and the history window ----

#[test]
fn watch_transcripts() {
    let mut s = store_at(61);
    let e = ok(&mut s, put("/w/sub/x", "1"), now());
    assert!(event_matches_watch(&e, "/w", true));
    assert!(!event_matches_watch(&e, "/w", false));
    assert_eq!(
        json(&*e),
        r#"{"action":"set","node":{"key":"/w/sub/x","value":"1","modifiedIndex":61,"createdIndex":61}}"#
    );

    let mut s = store_at(1164);
    ok(&mut s, put("/s/a", "1"), now());
    ok(&mut s, put("/s/b", "2"), now());
    let e = ok(
        &mut s,
        Command::from_delete("/s", false, true, None, 0),
        now(),
    );
    assert!(event_matches_watch(&e, "/s/a", false));
    assert!(!event_matches_watch(&e, "/sa", false));
    assert_eq!(
        json(&*e),
        r#"{"action":"delete","node":{"key":"/s","dir":true,"modifiedIndex":1166,"createdIndex":1164},"prevNode":{"key":"/s","dir":true,"modifiedIndex":1164,"createdIndex":1164}}"#
    );
    // The same event answers a watch on /s/a resumed from the history.
    assert_eq!(s.watch_scan("/s/a", false, 1165).unwrap().unwrap(), e);
    // And a stream from waitIndex 1164 starts with the first write.
    assert_eq!(
        s.watch_scan("/s", true, 1164).unwrap().unwrap().index(),
        1164
    );
}

#[test]
fn history_window_overflow_gives_401() {
    let mut s = Store::new();
    for i in 0..1163 {
        ok(&mut s, put("/w/foo", &i.to_string()), now());
    }
    assert_eq!(s.history_start(), 164);
    let e = s.watch_scan("/w/foo", false, 5).unwrap_err();
    assert_eq!(
        err_json(&e),
        r#"{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [164/5]","index":1163}"#
    );
    assert_eq!(
        s.watch_scan("/w/foo", false, 164).unwrap().unwrap().index(),
        164
    );
    assert_eq!(
        s.watch_scan("/w/foo", false, 1163)
            .unwrap()
            .unwrap()
            .index(),
        1163
    );
    assert!(s.watch_scan("/w/foo", false, 1164).unwrap().is_none());
    assert!(s.watch_scan("/w/foo", false, 0).unwrap().is_none());
    assert!(s.watch_scan("/w/foo", false, u64::MAX).unwrap().is_none());
    // A smaller, configurable window.
    let mut s = Store::with_history_capacity(3);
    for _ in 0..5 {
        ok(&mut s, put("/k", "v"), now());
    }
    assert_eq!(s.history_start(), 3);
    assert_eq!(
        s.watch_scan("/k", false, 2).unwrap_err().code,
        ErrorCode::EventIndexCleared
    );
}

#[test]
fn watch_scan_finds_the_first_matching_event() {
    let mut s = Store::new();
    ok(&mut s, put("/a", "1"), now()); // 1
    ok(&mut s, put("/b", "1"), now()); // 2
    ok(&mut s, put("/a/../b", "2"), now()); // 3
    ok(&mut s, put("/c/d", "1"), now()); // 4
    assert_eq!(s.watch_scan("/a", false, 1).unwrap().unwrap().index(), 1);
    assert!(s.watch_scan("/a", false, 2).unwrap().is_none());
    assert_eq!(s.watch_scan("/b", false, 1).unwrap().unwrap().index(), 2);
    assert_eq!(s.watch_scan("b/", false, 3).unwrap().unwrap().index(), 3);
    assert_eq!(s.watch_scan("/", true, 4).unwrap().unwrap().index(), 4);
    assert_eq!(s.watch_scan("/c", true, 1).unwrap().unwrap().index(), 4);
    assert!(s.watch_scan("/c", false, 1).unwrap().is_none());
    assert!(s.watch_scan("/nothing", true, 1).unwrap().is_none());
}

// ---- §8 stats ----

#[test]
fn stats_json_has_etcds_names_and_order() {
    let mut s = Store::new();
    ok(&mut s, put("/k", "v"), now());
    let _ = s.apply(put("/k/x", "v"), now());
    ok(
        &mut s,
        put_with(
            "/c",
            PutRequest {
                prev_exist: Some(false),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    // A create blocked by a key counts as a failed set too, as in etcd.
    let _ = s.apply(
        Command::CreateInOrder {
            parent: "/k".into(),
            value: String::new(),
            dir: false,
            expiration: None,
        },
        now(),
    );
    ok(
        &mut s,
        put_with(
            "/k",
            PutRequest {
                value: "w".into(),
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    let _ = s.apply(
        put_with(
            "/k",
            PutRequest {
                prev_value: Some("nope".into()),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    let _ = s.get("/k", false, false, now());
    let _ = s.get("/missing", false, false, now());
    let _ = s.get("/missing", false, false, now());
    ok(
        &mut s,
        Command::from_delete("/k", false, false, Some("w".into()), 0),
        now(),
    );
    let _ = s.apply(del("/k"), now());
    ok(&mut s, put_ttl("/t", "v", now(), 1), now());
    let _ = s.apply(Command::Sync { now: at(1, 0) }, now());
    assert_eq!(
        json(&s.stats(2)),
        r#"{"getsSuccess":1,"getsFail":2,"setsSuccess":2,"setsFail":2,"deleteSuccess":0,"deleteFail":1,"updateSuccess":1,"updateFail":0,"createSuccess":1,"createFail":1,"compareAndSwapSuccess":0,"compareAndSwapFail":1,"compareAndDeleteSuccess":1,"compareAndDeleteFail":0,"expireCount":1,"watchers":2}"#
    );
}

// ---- snapshots ----

fn busy_store() -> Store {
    let mut s = Store::new();
    ok(&mut s, put("/a/b/c", "1"), now());
    ok(&mut s, put("/a/_h", "hidden"), now());
    ok(&mut s, put_ttl("/ttl/k", "v", now(), 30), now());
    ok(
        &mut s,
        put_with(
            "/tdir",
            PutRequest {
                dir: true,
                expiration: Some(now().plus_secs(10)),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    ok(
        &mut s,
        put_with(
            "/a/b/c",
            PutRequest {
                expiration: Some(now().plus_secs(40)),
                refresh: true,
                prev_exist: Some(true),
                ..PutRequest::default()
            },
        ),
        now(),
    );
    ok(&mut s, put("/x\n\"é%2F", "multi\nline \u{1F600}"), now());
    ok(&mut s, del("/x\n\"é%2F"), now());
    let _ = s.apply(put("/a", "v"), now());
    s
}

#[test]
fn snapshot_round_trip_preserves_reads_history_and_expiry() {
    let s = busy_store();
    let bytes = s.snapshot();
    let r = Store::restore(&bytes).unwrap();
    assert_eq!(r.index(), s.index());
    assert_eq!(get_json(&r, "/", true), get_json(&s, "/", true));
    assert_eq!(get_json(&r, "/a/_h", false), get_json(&s, "/a/_h", false));
    assert_eq!(r.history_start(), s.history_start());
    for since in 0..=s.index() + 1 {
        assert_eq!(
            r.watch_scan("/", true, since).unwrap(),
            s.watch_scan("/", true, since).unwrap()
        );
    }
    let writes_only = |st: StoreStats| StoreStats {
        gets_success: 0,
        gets_fail: 0,
        ..st
    };
    assert_eq!(writes_only(r.stats(0)), writes_only(s.stats(0)));
    assert_eq!(Store::restore(&bytes).unwrap().stats(0).gets_success, 0);
    assert_eq!(r.next_expiration(), s.next_expiration());
    // Same bytes again: the snapshot is a pure function of the state.
    assert_eq!(r.snapshot(), bytes);
    // Expiry after restore behaves the same.
    let (mut s, mut r) = (s, r);
    let t = at(35, 0);
    let a = s.apply(Command::Sync { now: t }, t).unwrap();
    let b = r.apply(Command::Sync { now: t }, t).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.events().len(), 2);
    assert_eq!(s.snapshot(), r.snapshot());
}

#[test]
fn restoring_garbage_is_an_error() {
    let good = String::from_utf8(busy_store().snapshot()).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        vec![0xff, 0x00, 0x13],
        b"{\"format\":1}".to_vec(),
        good.replace("\"format\":1", "\"format\":2").into_bytes(),
        good.replace("\"historyCapacity\":1000", "\"historyCapacity\":0")
            .into_bytes(),
        good.replace(
            "\"historyCapacity\":1000",
            "\"historyCapacity\":18446744073709551615",
        )
        .into_bytes(),
        good.replace("\"key\":\"/a\",", "\"key\":\"/zz\",")
            .into_bytes(),
        good.replace("\"key\":\"/a/b\",", "\"key\":\"/a//b\",")
            .into_bytes(),
        good.replace("\"key\":\"/tdir\",", "\"key\":\"/a\",")
            .into_bytes(),
        good.replace("\"key\":\"/a\",", "\"key\":\"/\",")
            .into_bytes(),
        good.replace(
            &format!("\"index\":{}", busy_store().index()),
            "\"index\":1",
        )
        .into_bytes(),
        good.as_bytes()[..good.len() / 2].to_vec(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        assert!(Store::restore(bytes).is_err(), "case {i} restored");
    }
    assert!(Store::restore(good.as_bytes()).is_ok());
}

#[test]
fn deep_paths_do_not_recurse() {
    let mut s = Store::new();
    let deep = "/d".repeat(5_000);
    ok(&mut s, put(&deep, "v"), now());
    assert_eq!(s.len(), 5_000);
    assert_eq!(
        s.get("/d", true, true, now())
            .unwrap()
            .node
            .nodes
            .iter()
            .len(),
        1
    );
    let r = Store::restore(&s.snapshot()).unwrap();
    assert_eq!(r.len(), 5_000);
    ok(
        &mut s,
        Command::from_delete("/d", false, true, None, 0),
        now(),
    );
    assert!(s.is_empty());
}
