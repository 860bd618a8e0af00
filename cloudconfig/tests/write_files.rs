//! `write_files` applied under a temporary root: content, encodings,
//! permissions and owners as they land on disk.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use keelson_cloudconfig::{apply_write_files, CloudConfig, Metadata, OwnerOutcome};

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn e10_script_is_executable_and_verbatim() {
    let root = tempfile::tempdir().unwrap();
    let cfg = CloudConfig::parse_with(&data("e10.yaml"), &Metadata::ipv4("10.0.0.1")).unwrap();
    let written = apply_write_files(root.path(), &cfg.write_files).unwrap();
    assert_eq!(written.len(), 1);
    let script = root.path().join("tmp/ip.sh");
    assert_eq!(mode(&script), 0o755);
    let body = fs::read_to_string(&script).unwrap();
    assert!(body.starts_with("#!/bin/sh\n"));
    assert!(body.ends_with("echo \"IPV4_PRIVATE=$(get_ipv4 eth0)\" >> /run/metadata\n"));
    // Parents are created 0755.
    assert_eq!(mode(&root.path().join("tmp")), 0o755);
}

#[test]
fn e8_files_modes_and_content() {
    let root = tempfile::tempdir().unwrap();
    let cfg = CloudConfig::parse_with(&data("e8.yaml"), &Metadata::ipv4("10.0.0.1")).unwrap();
    apply_write_files(root.path(), &cfg.write_files).unwrap();
    let drop_in = root
        .path()
        .join("run/systemd/system/etcd2.service.d/30-configuration.conf");
    assert_eq!(mode(&drop_in), 0o644);
    assert!(fs::read_to_string(&drop_in)
        .unwrap()
        .contains("Environment=ETCD_TRUSTED_CA_FILE=/home/core/ca.crt\n"));
    assert_eq!(
        fs::read_to_string(root.path().join("home/core/server.key")).unwrap(),
        "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n"
    );
    assert_eq!(mode(&root.path().join("home/core/server.key")), 0o644);
}

#[test]
fn e11_hyphenated_key_quoted_permissions() {
    let root = tempfile::tempdir().unwrap();
    let text = data("e11.yaml").replace("<token>", "abc");
    let cfg = CloudConfig::parse_with(&text, &Metadata::ipv4("10.0.0.1")).unwrap();
    apply_write_files(root.path(), &cfg.write_files).unwrap();
    let nfs = root.path().join("etc/conf.d/nfs");
    assert_eq!(fs::read_to_string(&nfs).unwrap(), "OPTS_RPC_MOUNTD=\"\"\n");
    assert_eq!(mode(&nfs), 0o644);
}

#[test]
fn owner_is_applied_when_it_resolves() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    let uid = nix_like_uid();
    fs::write(
        root.path().join("etc/passwd"),
        format!("me:x:{uid}:{uid}::/home/me:/bin/sh\n"),
    )
    .unwrap();
    fs::write(root.path().join("etc/group"), format!("mine:x:{uid}:\n")).unwrap();
    let cfg = CloudConfig::parse(
        "#cloud-config\nwrite_files:\n  - path: /home/me/.toolboxrc\n    owner: me:mine\n    permissions: '0600'\n    content: |\n      TOOLBOX_USER=root\n  - path: /etc/other\n    owner: nobody-here-xyz\n    content: x\n",
    )
    .unwrap();
    let written = apply_write_files(root.path(), &cfg.write_files).unwrap();
    assert_eq!(
        written[0].owner,
        OwnerOutcome::Applied {
            uid: Some(uid),
            gid: Some(uid)
        }
    );
    let meta = fs::metadata(root.path().join("home/me/.toolboxrc")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, uid));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // An owner the node does not know is skipped, not fatal.
    assert_eq!(
        written[1].owner,
        OwnerOutcome::Unresolved {
            owner: "nobody-here-xyz".into()
        }
    );
    assert_eq!(mode(&root.path().join("etc/other")), 0o644);
}

/// The uid of this process, so the chown above is permitted for any user.
fn nix_like_uid() -> u32 {
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

#[test]
fn encodings_decode_before_writing() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"compressed\n").unwrap();
    let gz = gz.finish().unwrap();
    let text = format!(
        "#cloud-config\nwrite_files:\n  - path: /etc/a\n    encoding: b64\n    content: {}\n  - path: /etc/b\n    encoding: gzip+base64\n    content: {}\n  - path: /etc/c\n    encoding: gzip\n    content: !!binary |\n      {}\n",
        b64.encode("plain\n"),
        b64.encode(&gz),
        b64.encode(&gz),
    );
    assert!(
        keelson_cloudconfig::validate(&text).is_empty(),
        "{}",
        keelson_cloudconfig::validate(&text)
    );
    let root = tempfile::tempdir().unwrap();
    let cfg = CloudConfig::parse(&text).unwrap();
    apply_write_files(root.path(), &cfg.write_files).unwrap();
    assert_eq!(fs::read(root.path().join("etc/a")).unwrap(), b"plain\n");
    assert_eq!(
        fs::read(root.path().join("etc/b")).unwrap(),
        b"compressed\n"
    );
    assert_eq!(
        fs::read(root.path().join("etc/c")).unwrap(),
        b"compressed\n"
    );
}

#[test]
fn nothing_is_written_outside_the_root() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("node1");
    fs::create_dir_all(&root).unwrap();
    for path in ["/../escaped", "/etc/../../escaped", "relative/escaped"] {
        let cfg = CloudConfig::parse(&format!(
            "#cloud-config\nwrite_files:\n  - path: {path}\n    content: x\n"
        ))
        .unwrap();
        assert!(
            apply_write_files(&root, &cfg.write_files).is_err(),
            "{path}"
        );
    }
    // A symlink inside the root pointing at an absolute host path is
    // resolved inside the root.
    fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink(outer.path(), root.join("etc/link")).unwrap();
    let cfg = CloudConfig::parse(
        "#cloud-config\nwrite_files:\n  - path: /etc/link/escaped\n    content: x\n",
    )
    .unwrap();
    let w = apply_write_files(&root, &cfg.write_files).unwrap();
    assert!(w[0].host_path.starts_with(&root), "{:?}", w[0].host_path);
    assert!(!outer.path().join("escaped").exists());
    // /usr is read-only on CoreOS.
    let cfg =
        CloudConfig::parse("#cloud-config\nwrite_files:\n  - path: /usr/bin/x\n    content: x\n")
            .unwrap();
    let err = apply_write_files(&root, &cfg.write_files).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[test]
fn bad_permissions_and_content_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let cfg = CloudConfig::parse("#cloud-config\nwrite_files:\n  - path: /etc/x\n    permissions: rw-r--r--\n    content: x\n").unwrap();
    let err = apply_write_files(root.path(), &cfg.write_files).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid permissions \"rw-r--r--\""),
        "{err}"
    );
    let cfg = CloudConfig::parse(
        "#cloud-config\nwrite_files:\n  - path: /etc/y\n    encoding: base64\n    content: '***'\n",
    )
    .unwrap();
    let err = apply_write_files(root.path(), &cfg.write_files).unwrap_err();
    assert!(
        err.to_string().contains("cannot be decoded as \"base64\""),
        "{err}"
    );
    assert!(!root.path().join("etc/y").exists());
}
