//! The book's corpus (reference `unitfile.md` §12) against the hashes fleet
//! v1.0.0 computed for it (§11.4), in both modes.

use std::fs;
use std::path::{Path, PathBuf};

use keelson_unitfile::{fleet_hash, fleet_normalize, LineKind, Mode, Unit, UnitHash};

struct Entry {
    file: String,
    options: usize,
    hash: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn table() -> Vec<Entry> {
    let text = fs::read_to_string(corpus_dir().join("hashes.tsv")).expect("hashes.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Entry {
                file: f[0].to_owned(),
                options: f[1].parse().expect("option count"),
                hash: f[2].to_owned(),
            }
        })
        .collect()
}

fn read(file: &str) -> Vec<u8> {
    fs::read(corpus_dir().join(file)).expect("corpus file")
}

#[test]
fn table_covers_c01_to_c42() {
    let t = table();
    assert_eq!(t.len(), 42);
    for (i, e) in t.iter().enumerate() {
        assert!(e.file.starts_with(&format!("C{:02}-", i + 1)), "{}", e.file);
    }
}

#[test]
fn fleet_mode_hashes_match_fleet() {
    for e in table() {
        let bytes = read(&e.file);
        let unit =
            Unit::parse(&bytes, Mode::Fleet, Some(&e.file)).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(unit.options().len(), e.options, "{}: option count", e.file);
        let hash = unit.hash();
        assert_eq!(hash.to_string(), e.hash, "{}: hash", e.file);
        assert_eq!(fleet_hash(&bytes), Ok(hash), "{}: fast path", e.file);
        assert_eq!(
            fleet_normalize(&bytes).as_deref(),
            Ok(unit.normalized().as_str())
        );
        assert_eq!(hash.short(), e.hash[..7], "{}: short hash", e.file);
        assert_eq!(e.hash.parse::<UnitHash>().ok(), Some(hash));
        assert_eq!(
            unit.to_lossless().as_bytes(),
            &bytes[..],
            "{}: lossless",
            e.file
        );
        // The normalised form is a fixed point and keeps the options.
        let normalized = unit.normalized();
        let again = Unit::parse(&normalized, Mode::Fleet, None).expect("normalised form parses");
        assert_eq!(again.normalized(), normalized, "{}: idempotent", e.file);
        assert_eq!(again.hash(), hash);
        let strip = |u: &Unit| -> Vec<(String, String, String)> {
            u.options()
                .iter()
                .map(|o| (o.section.clone(), o.name.clone(), o.value.clone()))
                .collect()
        };
        let mut grouped = strip(&unit);
        let order = unit.sections();
        grouped.sort_by_key(|(s, _, _)| order.iter().position(|o| o == s));
        assert_eq!(strip(&again), grouped, "{}: options preserved", e.file);
    }
}

#[test]
fn systemd_mode_parses_every_corpus_file() {
    for e in table() {
        let bytes = read(&e.file);
        let unit =
            Unit::parse(&bytes, Mode::Systemd, Some(&e.file)).unwrap_or_else(|err| panic!("{err}"));
        assert!(
            unit.warnings().is_empty(),
            "{}: {:?}",
            e.file,
            unit.warnings()
        );
        assert_eq!(unit.options().len(), e.options, "{}: option count", e.file);
        assert_eq!(
            unit.to_lossless().as_bytes(),
            &bytes[..],
            "{}: lossless",
            e.file
        );
        let normalized = unit.normalized();
        let again = Unit::parse(&normalized, Mode::Systemd, None).expect("normalised form parses");
        assert_eq!(again.normalized(), normalized, "{}: idempotent", e.file);
    }
}

#[test]
fn helloglobal_worked_example() {
    let unit = Unit::parse(read("C01-helloglobal.service"), Mode::Fleet, None).unwrap();
    let want = "[Unit]\nDescription=My Service\nAfter=docker.service\n\n[Service]\nTimeoutStartSec=0\nExecStartPre=-/usr/bin/docker kill hello\nExecStartPre=-/usr/bin/docker rm hello\nExecStartPre=/usr/bin/docker pull busybox\nExecStart=/usr/bin/docker run --name hello busybox /bin/sh -c \"while true; do echo Hello World; sleep 1; done\"\nExecStop=/usr/bin/docker stop hello\n\n[X-Fleet]\nGlobal=true\n";
    assert_eq!(unit.normalized(), want);
    let bytes: Vec<u8> = unit.hash().as_bytes().to_vec();
    assert_eq!(
        bytes,
        [
            108, 144, 96, 158, 195, 50, 20, 101, 141, 70, 16, 128, 78, 48, 64, 89, 181, 127, 201,
            202
        ]
    );
}

#[test]
fn continuation_units_differ_between_modes() {
    // C19: fleet keeps the ten physical lines, backslashes and indentation;
    // systemd joins them with spaces.
    let bytes = read("C19-apachet-discovery@.service");
    let fleet = Unit::parse(&bytes, Mode::Fleet, None).unwrap();
    let exec = fleet.value("Service", "ExecStart").unwrap();
    assert_eq!(exec.lines().count(), 10);
    assert!(exec.starts_with("/bin/bash -c '\\\n  while true; do \\\n"));
    assert!(exec.ends_with("    sleep 20; \\\n  done'"));
    assert!(!fleet.normalized().contains('#'));

    let systemd = Unit::parse(&bytes, Mode::Systemd, None).unwrap();
    let exec = systemd.value("Service", "ExecStart").unwrap();
    assert!(!exec.contains('\n'));
    // Each final backslash became one space; indentation is kept.
    assert!(exec.starts_with("/bin/bash -c '   while true; do      curl -f"));
    assert!(exec.ends_with("sleep 20;    done'"));

    let kinds: Vec<LineKind> = systemd.lines().map(|l| l.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == LineKind::Continuation)
            .count(),
        9
    );
    let kinds: Vec<LineKind> = fleet.lines().map(|l| l.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == LineKind::Continuation)
            .count(),
        9
    );
    assert_eq!(kinds.iter().filter(|k| **k == LineKind::Comment).count(), 7);
}

#[test]
fn docker_tcp_socket_layouts_share_a_hash() {
    let a = Unit::parse(read("C05-docker-tcp.socket"), Mode::Fleet, None).unwrap();
    let b = Unit::parse(read("C33-docker-tcp.socket"), Mode::Fleet, None).unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().short(), "a32e52b");
}
