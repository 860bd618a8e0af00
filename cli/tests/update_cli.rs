//! End to end through the binaries: keygen and sign with `keelctl update`, a
//! `keelson update-server` fed by `keelctl update server`, a `keelson
//! update-engine` on a GPT disk image made by Debian's sgdisk, driven by
//! `keelctl update` and by `update_engine_client` through a symlink.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
const KEELCTL: &str = env!("CARGO_BIN_EXE_keelctl");
const USR_TYPE: &str = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";
const DEADLINE: Duration = Duration::from_secs(90);

/// Kills the daemon when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn ok(bin: &str, args: &[&str]) -> String {
    let o = run(bin, args);
    assert!(
        o.status.success(),
        "{bin} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn sgdisk(args: &[&str]) -> String {
    let o = Command::new("sgdisk")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run sgdisk ({e}); install Debian's gdisk with `sudo scripts/setup.sh`")
        });
    assert!(o.status.success(), "sgdisk {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A sparse CoreOS-like disk: 3 = USR-A (booted, good), 4 = USR-B, 8 MiB each.
fn make_image(path: &Path) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let (t3, t4) = (format!("3:{USR_TYPE}"), format!("4:{USR_TYPE}"));
    sgdisk(&[
        "-o",
        "-n",
        "1:2048:+4M",
        "-t",
        "1:EF00",
        "-c",
        "1:EFI-SYSTEM",
        "-n",
        "2:0:+1M",
        "-t",
        "2:EF02",
        "-c",
        "2:BIOS-BOOT",
        "-n",
        "3:0:+8M",
        "-t",
        &t3,
        "-c",
        "3:USR-A",
        "-n",
        "4:0:+8M",
        "-t",
        &t4,
        "-c",
        "4:USR-B",
        "-n",
        "9:0:0",
        "-c",
        "9:ROOT",
        "-A",
        "3:set:49",
        "-A",
        "3:set:56",
        "-A",
        "4:set:48",
        path.to_str().unwrap(),
    ]);
}

fn partition(path: &Path, n: u32) -> (u64, u64) {
    let out = sgdisk(&["-i", &n.to_string(), path.to_str().unwrap()]);
    let field = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .trim()
            .to_string()
    };
    let first: u64 = field("First sector: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let attrs = u64::from_str_radix(&field("Attribute flags: "), 16).unwrap();
    (first * 512, attrs)
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn field(block: &str, key: &str) -> String {
    block
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {block:?}"))
        .to_string()
}

/// The status block exactly as update_engine_client printed it.
fn assert_status_block(block: &str) {
    let keys: Vec<&str> = block
        .lines()
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "LAST_CHECKED_TIME",
            "PROGRESS",
            "CURRENT_OP",
            "NEW_VERSION",
            "NEW_SIZE"
        ],
        "{block}"
    );
    let p = field(block, "PROGRESS");
    assert_eq!(
        p.split('.').nth(1).map(str::len),
        Some(6),
        "six decimals: {p}"
    );
    assert!(field(block, "CURRENT_OP").starts_with("UPDATE_STATUS_"));
    assert!(block.ends_with('\n'));
}

#[test]
fn sign_serve_update_and_report_through_the_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // Keys and a signed payload.
    let keys = d.join("keys");
    let out = ok(
        KEELCTL,
        &["update", "keygen", "--dir", &s(&keys), "--name", "release"],
    );
    assert!(out.contains("key id "), "{out}");
    assert!(keys.join("release.key").exists() && keys.join("release.pub").exists());
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let pfile = d.join("build/update.gz");
    std::fs::create_dir_all(pfile.parent().unwrap()).unwrap();
    std::fs::write(&pfile, &payload).unwrap();
    ok(
        KEELCTL,
        &[
            "update",
            "sign",
            "--key",
            &s(&keys.join("release.key")),
            "--release",
            "766.3.0",
            &s(&pfile),
        ],
    );
    let manifest = std::fs::read_to_string(d.join("build/update.gz.manifest.json")).unwrap();
    assert!(manifest.contains("\"release\":\"766.3.0\""), "{manifest}");
    assert!(manifest.contains("\"length\":3000000"), "{manifest}");

    // The update server, on a free port; its address is the first stdout line.
    let mut child = Command::new(KEELSON)
        .args([
            "update-server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &s(&d.join("srv")),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Daemon(child);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let admin = |args: &[&str]| {
        let mut a = vec!["update", "server", "--server", url.as_str()];
        a.extend_from_slice(args);
        ok(KEELCTL, &a)
    };
    let out = admin(&["upload", &s(&pfile)]);
    assert!(
        out.contains("uploaded 766.3.0 update.gz (3000000 bytes"),
        "{out}"
    );
    assert!(admin(&["group", "create", "stable"]).contains("created group stable"));
    assert!(admin(&["packages"]).contains("766.3.0\tupdate.gz\t3000000"));

    // A node on 723.3.0, stable, trusting the release key, booted from USR-A.
    let img = d.join("disk.img");
    make_image(&img);
    let (a_off, _) = partition(&img, 3);
    let old_usr = b"USR-A: CoreOS 723.3.0";
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.seek(SeekFrom::Start(a_off)).unwrap();
        std::io::Write::write_all(&mut f, old_usr).unwrap();
    }
    let root = d.join("node");
    write_file(
        &root.join("etc/coreos/update.conf"),
        &format!("GROUP=stable\nSERVER={url}/v1/update/\n"),
    );
    write_file(&root.join("etc/machine-id"), "node1machine\n");
    write_file(
        &root.join("usr/share/coreos/release"),
        "COREOS_RELEASE_VERSION=723.3.0\nCOREOS_RELEASE_BOARD=amd64-usr\n",
    );
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let engine = Daemon(
        Command::new(KEELSON)
            .args([
                "update-engine",
                "--metrics-addr",
                &metrics_addr,
                "-root",
                &s(&root),
                "--slots",
                &format!("gpt:{}", s(&img)),
                "--keys",
                &s(&keys),
                "--first-check-delay",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = root.join("var/run/update-engine.sock");
    wait_for("the engine's socket", || socket.exists());
    let root_s = s(&root);
    let ctl = |args: &[&str]| {
        let mut a = vec!["update", "--root", root_s.as_str()];
        a.extend_from_slice(args);
        ok(KEELCTL, &a)
    };

    // The scheduled first check: the group has no version yet, so no update.
    wait_for("the first scheduled check", || {
        let st = ctl(&["status"]);
        field(&st, "LAST_CHECKED_TIME") != "0"
    });
    let st = ctl(&["status"]);
    assert_status_block(&st);
    assert_eq!(field(&st, "CURRENT_OP"), "UPDATE_STATUS_IDLE");
    let o = run(KEELCTL, &["update", "--root", &s(&root), "reboot-needed"]);
    assert_eq!(o.status.code(), Some(1));

    // Promote, then ask for a check: the engine downloads, verifies, installs.
    assert!(admin(&["promote", "stable", "766.3.0"]).contains("now serves 766.3.0"));
    let mut watch = Command::new(KEELCTL)
        .args([
            "update",
            "--root",
            &s(&root),
            "watch",
            "--until",
            "UPDATE_STATUS_UPDATED_NEED_REBOOT",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(ctl(&["check-for-update"]).contains("requested"));
    wait_for("UPDATE_STATUS_UPDATED_NEED_REBOOT", || {
        field(&ctl(&["status"]), "CURRENT_OP") == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
    });
    // The same state on /metrics, and /health answers.
    let metrics = http_get(&metrics_addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "keelson_update_engine_status{operation=\"UPDATE_STATUS_UPDATED_NEED_REBOOT\"} 1\n",
        "keelson_update_engine_status{operation=\"UPDATE_STATUS_IDLE\"} 0\n",
        "keelson_update_engine_new_version{version=\"766.3.0\"} 1\n",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in {metrics}");
    }
    let health = http_get(&metrics_addr, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("{\"health\":\"true\"}"), "{health}");
    let start = Instant::now();
    let code = loop {
        if let Some(c) = watch.try_wait().unwrap() {
            break c;
        }
        if start.elapsed() > DEADLINE {
            let _ = watch.kill();
            panic!("watch did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success());
    let mut seen = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    // The watch reports status changes as the engine publishes them; a
    // state that lasts only an instant (VERIFYING a small payload) may be
    // superseded before the watcher reads it, so the test asserts the order
    // of what was seen and that the pipeline ended where it must.
    let pipeline = [
        "IDLE",
        "CHECKING_FOR_UPDATE",
        "UPDATE_AVAILABLE",
        "DOWNLOADING",
        "VERIFYING",
        "FINALIZING",
        "UPDATED_NEED_REBOOT",
    ];
    let observed: Vec<usize> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("CURRENT_OP=UPDATE_STATUS_"))
        .map(|op| {
            pipeline
                .iter()
                .position(|p| *p == op)
                .unwrap_or_else(|| panic!("unexpected state {op} in {seen}"))
        })
        .collect();
    assert!(
        observed.windows(2).all(|w| w[0] <= w[1]),
        "states out of order: {seen}"
    );
    assert_eq!(observed.last(), Some(&(pipeline.len() - 1)), "{seen}");
    assert!(
        observed.contains(
            &pipeline
                .iter()
                .position(|p| *p == "DOWNLOADING")
                .unwrap_or(0)
        ),
        "DOWNLOADING never seen: {seen}"
    );

    let st = ctl(&["status"]);
    assert_status_block(&st);
    assert_eq!(field(&st, "NEW_VERSION"), "766.3.0");
    assert_eq!(field(&st, "NEW_SIZE"), "3000000");
    assert_eq!(field(&st, "PROGRESS"), "1.000000");
    let rn = ctl(&["reboot-needed"]);
    assert!(
        rn.contains("REBOOT_NEEDED=true\nNEW_VERSION=766.3.0"),
        "{rn}"
    );

    // USR-B holds the payload and boots next, once; USR-A is untouched.
    let (b_off, b_attrs) = partition(&img, 4);
    let (_, a_attrs) = partition(&img, 3);
    assert_eq!(
        b_attrs,
        (2 << 48) | (1 << 52),
        "B: priority 2, tries 1, not successful"
    );
    assert_eq!(a_attrs, (1 << 48) | (1 << 56), "A: priority 1, successful");
    let mut f = std::fs::File::open(&img).unwrap();
    let mut got = vec![0u8; payload.len()];
    f.seek(SeekFrom::Start(b_off)).unwrap();
    f.read_exact(&mut got).unwrap();
    assert!(got == payload, "USR-B differs from the payload");
    let mut a = vec![0u8; old_usr.len()];
    f.seek(SeekFrom::Start(a_off)).unwrap();
    f.read_exact(&mut a).unwrap();
    assert_eq!(a, old_usr);
    assert!(sgdisk(&["-v", &s(&img)]).contains("No problems found"));

    // The server saw the events.
    let inst = admin(&["instances"]);
    assert!(
        inst.contains("node1machine\t723.3.0\tstable\tinstalled\t-"),
        "{inst}"
    );

    // update_engine_client through a symlink prints the original's block.
    let link = d.join("bin/update_engine_client");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(KEELCTL, &link).unwrap();
    let o = Command::new(&link)
        .arg("-status")
        .env("KEELSON_ROOT", &root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let block = String::from_utf8(o.stdout).unwrap();
    assert_status_block(&block);
    assert_eq!(
        block,
        st.replace(
            &field(&st, "LAST_CHECKED_TIME"),
            &field(&block, "LAST_CHECKED_TIME")
        )
    );
    assert!(block.contains(
        "CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\nNEW_VERSION=766.3.0\nNEW_SIZE=3000000\n"
    ));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains(":INFO:update_engine_client.cc(")
            && err.contains("] Querying Update Engine status..."),
        "{err}"
    );
    // The same flags after `keelctl update`, and -check_for_update is accepted.
    let o = run(
        KEELCTL,
        &["update", "-status", &format!("-root={}", s(&root))],
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 5);
    let o = Command::new(&link)
        .args(["--check_for_update", "-socket", &s(&socket)])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Initiating update check and install."));
    let o = Command::new(&link).arg("-bogus_flag").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown command line flag 'bogus_flag'"));

    // reset-status returns to idle and clears the need-reboot marker.
    ctl(&["reset-status"]);
    wait_for("idle after reset", || {
        field(&ctl(&["status"]), "CURRENT_OP") == "UPDATE_STATUS_IDLE"
    });
    drop(engine);

    // Without an engine: a clear error, not a hang.
    let o = run(
        KEELCTL,
        &["update", "--socket", &s(&d.join("none.sock")), "status"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is `keelson update-engine` running?"));
}

#[test]
fn bad_flags_and_inputs_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run(
        KEELSON,
        &["update-engine", "--root", d, "--slots", "floppy:/dev/fd0"],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    // No release file under the root is reported before the slots.
    assert!(err.contains("release") || err.contains("--slots"), "{err}");
    write_file(
        &dir.path().join("usr/share/coreos/release"),
        "COREOS_RELEASE_VERSION=723.3.0\n",
    );
    let o = run(
        KEELSON,
        &["update-engine", "--root", d, "--slots", "floppy:/dev/fd0"],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected gpt:DISK or dir:PATH"));
    let o = run(
        KEELSON,
        &[
            "update-engine",
            "--root",
            d,
            "--slots",
            &format!("gpt:{d}/missing.img"),
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.img"));

    let o = run(
        KEELCTL,
        &[
            "update",
            "sign",
            "--key",
            &format!("{d}/nokey"),
            "--release",
            "1.2.3",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nokey"));
    ok(KEELCTL, &["update", "keygen", "--dir", d, "--name", "k"]);
    let o = run(KEELCTL, &["update", "keygen", "--dir", d, "--name", "k"]);
    assert_eq!(o.status.code(), Some(1), "never overwrite a key");
    let o = run(
        KEELCTL,
        &[
            "update",
            "server",
            "--server",
            "http://127.0.0.1:9",
            "instances",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach the update server"));
    let o = run(
        KEELCTL,
        &[
            "update", "server", "group", "create", "g", "--period", "soon",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad interval"));
}

/// A plain HTTP/1.1 GET; the whole answer, headers included.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}
