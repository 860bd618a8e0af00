//! `kvctl backup` and `keelson kv --force-new-cluster` end to end, with the
//! binaries (reference kv.md §10.6): back up a running member, start the
//! copy on other ports as a new one-member cluster, every key is there with
//! its value and indexes, under a new member and cluster ID.

mod proc_support;

use std::process::Command;

use proc_support::{http, spawn_keelson, start_keelson, wait_healthy, Server, KVCTL};

fn member_id(s: &Server) -> String {
    let a = http(s.addr, "GET", "/v2/members", "").expect("members answer");
    assert_eq!(a.status, 200, "{}", a.body);
    let v: serde_like::Members = serde_like::parse(&a.body);
    assert_eq!(v.ids.len(), 1, "one member expected: {}", a.body);
    v.ids[0].clone()
}

/// Just enough JSON picking to avoid a serde dependency in this test.
mod serde_like {
    pub struct Members {
        pub ids: Vec<String>,
    }
    pub fn parse(body: &str) -> Members {
        let ids = body
            .split("\"id\":\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_owned)
            .collect();
        Members { ids }
    }
}

fn kvctl_backup(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(KVCTL)
        .arg("backup")
        .args(args)
        .output()
        .expect("kvctl runs")
}

#[test]
fn backup_of_a_running_member_restores_with_force_new_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A small --snapshot-count so the copy needs both the snapshot and the
    // log after it.
    let mut src = start_keelson(dir.path(), &["--snapshot-count", "40"]);
    let mut expected = Vec::new();
    for i in 0..130 {
        let a = http(
            src.addr,
            "PUT",
            &format!("/v2/keys/b/k{i}"),
            &format!("value=v{i}"),
        )
        .expect("answer");
        assert!(matches!(a.status, 200 | 201), "{}", a.body);
        expected.push((format!("/v2/keys/b/k{i}"), a.body));
    }
    let a = http(src.addr, "PUT", "/v2/keys/dir/sub?dir=true", "").expect("answer");
    assert_eq!(a.status, 201);
    let a = http(src.addr, "PUT", "/v2/keys/b/k3", "value=changed").expect("answer");
    assert_eq!(a.status, 200);
    let k3 = a.body.replace("\"action\":\"set\"", "\"action\":\"get\"");
    let k3 = k3
        .split(",\"prevNode\"")
        .next()
        .unwrap_or_default()
        .to_owned()
        + "}\n";
    let original_id = member_id(&src);
    let original_cluster = http(src.addr, "GET", "/v2/keys/", "")
        .and_then(|a| a.header("X-Etcd-Cluster-Id").map(str::to_owned))
        .expect("cluster id");

    // Backup while the member runs (and keeps writing).
    let backup = dir.path().join("backup");
    let out = kvctl_backup(&[
        "--data-dir".as_ref(),
        src.data.as_os_str(),
        "--backup-dir".as_ref(),
        backup.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "backup prints nothing on stdout");
    assert!(backup.join("member/wal").is_dir() && backup.join("member/snap").is_dir());
    let a = http(src.addr, "PUT", "/v2/keys/after-backup", "value=x").expect("answer");
    assert_eq!(a.status, 201);

    // Into a directory that already holds a member: refused.
    let out = kvctl_backup(&[
        "--data-dir".as_ref(),
        src.data.as_os_str(),
        "--backup-dir".as_ref(),
        backup.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds member data"));
    // From a directory that is not a member: refused.
    let out = kvctl_backup(&[
        "--data-dir".as_ref(),
        dir.path().join("nothing").as_os_str(),
        "--backup-dir".as_ref(),
        dir.path().join("b2").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));

    // A copy cannot start as a plain member: it would pass for the old one.
    let mut plain = spawn_keelson(&backup, 0, &[]);
    let st = plain.child.wait().expect("exits");
    assert_eq!(st.code(), Some(1));

    let mut restored = spawn_keelson(&backup, 0, &["--force-new-cluster"]);
    wait_healthy(&mut restored);
    assert_ne!(restored.port, src.port);
    for (target, body) in expected.iter().filter(|(t, _)| !t.ends_with("/k3")) {
        let a = http(restored.addr, "GET", target, "").expect("answer");
        assert_eq!(a.status, 200, "{target} missing after restore: {}", a.body);
        // Same value and indexes: the store's index is part of the data.
        assert_eq!(
            a.body,
            body.replace("\"action\":\"set\"", "\"action\":\"get\"")
        );
    }
    let a = http(restored.addr, "GET", "/v2/keys/b/k3", "").expect("answer");
    assert_eq!(a.body, k3);
    let a = http(restored.addr, "GET", "/v2/keys/dir/sub", "").expect("answer");
    assert_eq!(a.status, 200, "{}", a.body);
    let a = http(restored.addr, "GET", "/v2/keys/after-backup", "").expect("answer");
    assert_eq!(a.status, 404, "written after the backup: {}", a.body);
    let new_id = member_id(&restored);
    assert_ne!(new_id, original_id, "the copy must have a new member ID");
    let new_cluster = http(restored.addr, "GET", "/v2/keys/", "")
        .and_then(|a| a.header("X-Etcd-Cluster-Id").map(str::to_owned))
        .expect("cluster id");
    assert_ne!(new_cluster, original_cluster);
    // It takes writes as a one-member cluster...
    let a = http(restored.addr, "PUT", "/v2/keys/b/new", "value=n").expect("answer");
    assert_eq!(a.status, 201, "{}", a.body);
    // ...and restarts without the flag under the same identity.
    assert_eq!(restored.terminate(), Some(0));
    let mut again = spawn_keelson(&backup, 0, &[]);
    wait_healthy(&mut again);
    assert_eq!(member_id(&again), new_id);
    for t in ["/v2/keys/b/new", "/v2/keys/b/k129", "/v2/keys/b/k0"] {
        let a = http(again.addr, "GET", t, "").expect("answer");
        assert_eq!(a.status, 200, "{t}: {}", a.body);
    }
    // The source member was never disturbed.
    let a = http(src.addr, "GET", "/v2/keys/b/k129", "").expect("answer");
    assert_eq!(a.status, 200);
    assert_eq!(src.terminate(), Some(0));
}

#[test]
fn backup_wal_dir_and_force_new_cluster_on_a_live_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = dir.path().join("wal-elsewhere");
    let mut src = start_keelson(
        dir.path(),
        &["--wal-dir", wal.to_str().expect("utf-8 path")],
    );
    for i in 0..20 {
        let a = http(src.addr, "PUT", &format!("/v2/keys/w{i}"), "value=x").expect("answer");
        assert_eq!(a.status, 201);
    }
    let original_id = member_id(&src);
    assert_eq!(src.terminate(), Some(0));

    let backup = dir.path().join("bk");
    let bwal = dir.path().join("bk-wal");
    let out = kvctl_backup(&[
        "--data-dir".as_ref(),
        src.data.as_os_str(),
        "--wal-dir".as_ref(),
        wal.as_os_str(),
        "--backup-dir".as_ref(),
        backup.as_os_str(),
        "--backup-wal-dir".as_ref(),
        bwal.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bwal.is_dir() && !backup.join("member/wal").exists());
    let mut restored = spawn_keelson(
        &backup,
        0,
        &[
            "--force-new-cluster",
            "--wal-dir",
            bwal.to_str().expect("utf-8"),
        ],
    );
    wait_healthy(&mut restored);
    let a = http(restored.addr, "GET", "/v2/keys/w19", "").expect("answer");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_ne!(member_id(&restored), original_id);
    restored.kill();

    // --force-new-cluster straight on a member's own data directory (quorum
    // loss recovery): same keys, new identity.
    let mut forced = spawn_keelson(
        &src.data,
        0,
        &[
            "--force-new-cluster",
            "--wal-dir",
            wal.to_str().expect("utf-8"),
        ],
    );
    wait_healthy(&mut forced);
    let a = http(forced.addr, "GET", "/v2/keys/w0", "").expect("answer");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_ne!(member_id(&forced), original_id);
}
