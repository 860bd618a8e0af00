//! `kvctl migrate` from the real etcd 3.4.23 into a Keelson member:
//! nested directories, hidden keys, values and remaining TTLs.

mod proc_support;

use std::process::Command;

use proc_support::{http, start_etcd, start_keelson, KVCTL};

fn put(addr: std::net::SocketAddr, key: &str, body: &str) {
    let a = http(addr, "PUT", &format!("/v2/keys{key}"), body).expect("etcd answers");
    assert!(a.status / 100 == 2, "{key}: {} {}", a.status, a.body);
}

fn get(addr: std::net::SocketAddr, key: &str) -> serde_json::Value {
    let a = http(addr, "GET", &format!("/v2/keys{key}"), "").expect("answers");
    serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null)
}

#[test]
fn migrate_copies_dirs_hidden_keys_and_ttls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_etcd(dir.path());
    let e = etcd.addr;
    put(e, "/a/b/c/leaf", "value=deep");
    put(e, "/a/plain", "value=p");
    put(e, "/empty", "dir=true");
    put(e, "/_hidden/x", "value=hx");
    put(e, "/a/_inner", "value=hi");
    put(e, "/_coreos.com/fleet/machines/m1/object", "value=fleet");
    put(e, "/ttl/key", "value=t&ttl=300");
    put(e, "/ttldir", "dir=true&ttl=400");
    put(e, "/ttldir/k", "value=in");
    put(e, "/spaces", "value=a%20b%0Ac");

    let dst_dir = dir.path().join("dst");
    std::fs::create_dir_all(&dst_dir).expect("dir");
    let keelson = start_keelson(&dst_dir, &[]);
    let out = Command::new(KVCTL)
        .args(["migrate", "--from", &etcd.url(), "--to", &keelson.url()])
        .output()
        .expect("kvctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("migrated "), "{stdout}");

    let k = keelson.addr;
    assert_eq!(get(k, "/a/b/c/leaf")["node"]["value"], "deep");
    assert_eq!(get(k, "/a/plain")["node"]["value"], "p");
    assert_eq!(get(k, "/empty")["node"]["dir"], true);
    assert_eq!(get(k, "/_hidden/x")["node"]["value"], "hx");
    assert_eq!(get(k, "/a/_inner")["node"]["value"], "hi");
    assert_eq!(
        get(k, "/_coreos.com/fleet/machines/m1/object")["node"]["value"],
        "fleet"
    );
    assert_eq!(get(k, "/spaces")["node"]["value"], "a b\nc");
    let t = get(k, "/ttl/key");
    assert_eq!(t["node"]["value"], "t");
    let ttl = t["node"]["ttl"].as_i64().expect("a TTL");
    assert!((250..=300).contains(&ttl), "remaining TTL {ttl}");
    let d = get(k, "/ttldir");
    let ttl = d["node"]["ttl"].as_i64().expect("a dir TTL");
    assert!((350..=400).contains(&ttl), "remaining dir TTL {ttl}");
    assert_eq!(get(k, "/ttldir/k")["node"]["value"], "in");

    // Bad invocation: a clear error, exit 1.
    let out = Command::new(KVCTL)
        .args(["migrate", "--from", &etcd.url()])
        .output()
        .expect("kvctl runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from and --to"));
}
