//! `keelson node --cloud-config FILE --root DIR` as a user runs it: the
//! built binary applies a book-style cloud-config under a root of its own
//! (files, drop-ins, hostname, keys), runs the kv member, fleet and a
//! content unit the config starts in one process, and stops them all on
//! SIGTERM. A config with a YAML mistake is refused and nothing is written.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");
const LONG: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn config(dir: &Path, client: u16, peer: u16) -> String {
    format!(
        r#"#cloud-config
hostname: core-77
ssh_authorized_keys:
  - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC0g core@example
write_files:
  - path: /etc/motd.d/hello.conf
    permissions: 0640
    content: |
      hello $private_ipv4
coreos:
  etcd2:
    name: core-77
    advertise-client-urls: http://$public_ipv4:{client}
    listen-client-urls: http://$public_ipv4:{client}
    listen-peer-urls: http://$private_ipv4:{peer}
    initial-advertise-peer-urls: http://$private_ipv4:{peer}
    initial-cluster: core-77=http://$private_ipv4:{peer}
  fleet:
    public-ip: $public_ipv4
    metadata: role=web
    etcd_servers: http://$public_ipv4:{client}
  units:
    - name: etcd2.service
      command: start
    - name: fleet.service
      command: start
    - name: marker.service
      command: start
      content: |
        [Unit]
        Description=writes a marker while it runs
        [Service]
        ExecStart=/bin/sh -c 'while true; do echo %H > {marker}; sleep 1; done'
"#,
        marker = dir.join("marker").display()
    )
}

#[test]
fn cloud_config_node_applies_files_runs_services_and_stops_clean() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let (client, peer) = (free_port(), free_port());
    let file = dir.path().join("user-data");
    std::fs::write(&file, config(dir.path(), client, peer)).unwrap();
    let ip = ["--public-ipv4", "127.0.0.1", "--private-ipv4", "127.0.0.1"];

    // --dry-run says what would run and writes nothing.
    let out = Command::new(KEELSON)
        .args(["node", "--cloud-config"])
        .arg(&file)
        .arg("--root")
        .arg(&root)
        .args(ip)
        .arg("--dry-run")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("start marker.service\n"), "{text}");
    assert!(
        text.contains(&format!(
            "run kv --advertise-client-urls=http://127.0.0.1:{client}"
        )),
        "{text}"
    );
    assert!(text.contains("--data-dir=/var/lib/etcd2"), "{text}");
    assert!(
        text.contains("run fleet --host-name=core-77 --etcd-servers="),
        "{text}"
    );
    assert!(text.contains("run units --start marker.service"), "{text}");
    assert!(!root.exists(), "--dry-run wrote under the root");

    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut node = Command::new(KEELSON)
        .args(["node", "--cloud-config"])
        .arg(&file)
        .arg("--root")
        .arg(&root)
        .args(ip)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let ep = format!("http://127.0.0.1:{client}");

    // The kv member answers on the configured URL, with its data under the root.
    wait("the kv to take a write", || {
        Command::new(KVCTL)
            .args(["--endpoints", &ep, "set", "/from-node", "yes"])
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    assert!(root.join("var/lib/etcd2").is_dir());
    // Fleet registered this machine with the configured metadata.
    wait("fleet to list the machine", || {
        let o = Command::new(KEELCTL)
            .args(["--driver=etcd", "--endpoint", &ep, "list-machines"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&o.stdout)
            .contains("role=web")
            .then_some(())
    });
    // The content unit runs with %H from the config's hostname.
    let marker = dir.path().join("marker");
    wait("the config's unit to run", || {
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|t| t.trim() == "core-77")
    });
    // Files, drop-ins, hostname and keys are under the root, not the host.
    let motd = root.join("etc/motd.d/hello.conf");
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "hello 127.0.0.1\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&motd).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let dropin =
        std::fs::read_to_string(root.join("run/systemd/system/etcd2.service.d/20-cloudinit.conf"))
            .unwrap();
    assert!(
        dropin.contains("Environment=\"ETCD_NAME=core-77\"\n"),
        "{dropin}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "core-77\n"
    );
    assert!(
        std::fs::read_to_string(root.join("home/core/.ssh/authorized_keys"))
            .unwrap()
            .contains("core@example")
    );
    assert!(root.join("etc/systemd/system/marker.service").is_file());
    let logs = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    for label in ["[core-77/kv]", "[core-77/fleet]", "[core-77/units]"] {
        assert!(logs.contains(label), "no {label} lines in:\n{logs}");
    }

    // SIGTERM stops everything: the node exits 0 and the unit stops.
    let _ = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status();
    let status = wait("the node to exit", || node.try_wait().ok().flatten());
    assert!(status.success(), "node exited with {status}");
    let before = std::fs::read_to_string(&marker).ok();
    std::fs::remove_file(&marker).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !marker.exists(),
        "the unit still runs after the node stopped (marker was {before:?})"
    );
}

#[test]
fn invalid_cloud_config_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let file = dir.path().join("user-data");
    // A missing `|` after `content:`.
    std::fs::write(
        &file,
        "#cloud-config\nwrite_files:\n  - path: /etc/x\n    content:\n      a: b\n     c\n",
    )
    .unwrap();
    let out = Command::new(KEELSON)
        .args(["node", "--cloud-config"])
        .arg(&file)
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line "), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(!root.exists());
}
