//! Differential test against go-systemd's own `unit` package, the parser and
//! writer fleet uses: Keelson's fleet-mode normalised form and hash must be
//! byte-identical to what go-systemd produces, on the book's corpus and on a
//! few hundred generated units full of the lexer's quirks.
//!
//! The oracle is `tests/gosystemd/main.go`, built from Debian's
//! `golang-github-coreos-go-systemd-dev` with `golang-go` (both installed by
//! `scripts/setup.sh`). Without `go` this test fails; it never skips.
//!
//! Two things are kept out of the generated units on purpose:
//! - lines of 2048 bytes or more: Keelson rejects every such line, while
//!   go-systemd's check depends on where the line falls in its 4096-byte read
//!   buffer (reference §10.1 rule 8), a documented difference;
//! - invalid UTF-8, which Keelson refuses and Go would read.
//!
//! Error texts are compared through `ParseErrorKind::go_systemd_message`,
//! except that Debian's current go-systemd prints the text after a section
//! header with `%q` where fleet v1.0.0 printed decimal bytes (§10), so for
//! that error only the common prefix is compared.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keelson_unitfile::{Mode, ParseErrorKind, Unit};

struct Oracle {
    _dir: tempfile::TempDir,
    binary: PathBuf,
}

impl Oracle {
    fn build() -> Oracle {
        let version = Command::new("go").arg("version").output();
        match version {
            Ok(out) if out.status.success() => {}
            other => panic!(
                "the differential test needs `go` and go-systemd's unit package: install \
                 golang-go and golang-github-coreos-go-systemd-dev (scripts/setup.sh) ({other:?})"
            ),
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let binary = dir.path().join("gosystemd");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gosystemd/main.go");
        let out = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", dir.path().join("gocache"))
            .env("GOFLAGS", "")
            .current_dir(dir.path())
            .output()
            .expect("run go build");
        assert!(
            out.status.success(),
            "building the go-systemd oracle failed (is golang-github-coreos-go-systemd-dev installed?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Oracle { _dir: dir, binary }
    }

    /// go-systemd's answer: Ok((hash, serialized)) or Err(message).
    fn run(&self, input: &[u8]) -> Result<(String, String), String> {
        let mut child = Command::new(&self.binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run oracle");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("feed oracle");
        let out = child.wait_with_output().expect("oracle output");
        assert!(out.status.success(), "oracle failed on {input:?}");
        let text = String::from_utf8(out.stdout).expect("oracle output is UTF-8");
        if let Some(rest) = text.strip_prefix("OK ") {
            let (hash, serialized) = rest.split_once('\n').expect("hash line");
            Ok((hash.to_owned(), serialized.to_owned()))
        } else if let Some(msg) = text.strip_prefix("ERR ") {
            Err(msg.trim_end_matches('\n').to_owned())
        } else {
            panic!("unexpected oracle output {text:?}")
        }
    }
}

fn compare(oracle: &Oracle, input: &str) {
    let ours = Unit::parse(input, Mode::Fleet, None);
    match (ours, oracle.run(input.as_bytes())) {
        (Ok(unit), Ok((hash, serialized))) => {
            assert_eq!(
                unit.normalized(),
                serialized,
                "normalised form of {input:?}"
            );
            assert_eq!(unit.hash().to_string(), hash, "hash of {input:?}");
            assert_eq!(
                keelson_unitfile::fleet_hash(input).map(|h| h.to_string()),
                Ok(hash)
            );
        }
        (Err(e), Err(msg)) => match e.kind() {
            ParseErrorKind::GarbageAfterSection { .. } => {
                assert!(
                    msg.starts_with("found garbage after section name "),
                    "{input:?}: {msg}"
                );
            }
            kind => assert_eq!(
                kind.go_systemd_message().as_deref(),
                Some(msg.as_str()),
                "error for {input:?}"
            ),
        },
        (Ok(unit), Err(msg)) => panic!(
            "go-systemd refused {input:?} ({msg}), Keelson accepted {:?}",
            unit.options()
        ),
        (Err(e), Ok(_)) => panic!("Keelson refused {input:?} ({e}), go-systemd accepted it"),
    }
}

#[test]
fn corpus_matches_go_systemd() {
    let oracle = Oracle::build();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("tsv") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("corpus file");
        compare(&oracle, &text);
        n += 1;
    }
    assert_eq!(n, 42);
}

/// Lines chosen to hit every rule of reference §10.1 (except rule 8).
const FRAGMENTS: &[&str] = &[
    "[Unit]",
    "[Service]",
    "[X-Fleet]",
    " [Socket] ",
    "[Multi\nLine]",
    "garbage [Unit]",
    "pre # comment [NotASection]",
    "Description=My Service",
    "  Key  =  a  b  ",
    "ExecStart=",
    "ExecStart=/bin/true",
    "K=foo \\",
    "K=foo \\  ",
    "K=foo\\\\",
    "K=a\\\r",
    "  continued line",
    "\tcontinued \\",
    "# comment",
    "; comment",
    "# comment \\",
    "#c \\ ",
    "#c \\  ",
    "",
    "",
    "   ",
    "\r",
    "K=v # not a comment",
    "=empty name",
    "K==x",
    "\u{a0}K=v\u{a0}",
    "\u{2003}",
    "\u{feff}",
    "Environment=\"A=b c\" D=e",
    "K=[x]",
    "K=a\0b",
    "K=caf\u{e9} \u{2603}",
    "After=a.service b.service",
];

/// Rare fragments that usually make go-systemd fail.
const FATAL: &[&str] = &["JustAWord", "[", "[S] trailing", "K"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, no dependency.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn generate(rng: &mut Rng) -> String {
    let mut text = String::new();
    if rng.below(4) != 0 {
        text.push_str("[Unit]\n");
    }
    let lines = rng.below(16);
    let crlf = rng.below(5) == 0;
    for i in 0..lines {
        let fragment = if rng.below(40) == 0 {
            FATAL[rng.below(FATAL.len())]
        } else {
            FRAGMENTS[rng.below(FRAGMENTS.len())]
        };
        text.push_str(fragment);
        let last = i + 1 == lines;
        if !last || rng.below(3) != 0 {
            text.push_str(if crlf || rng.below(10) == 0 {
                "\r\n"
            } else {
                "\n"
            });
        }
    }
    text
}

#[test]
fn generated_units_match_go_systemd() {
    let oracle = Oracle::build();
    let mut rng = Rng(0x05ee_d0ff_1ee7);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..400 {
        let text = generate(&mut rng);
        compare(&oracle, &text);
        if Unit::parse(&text, Mode::Fleet, None).is_ok() {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Both paths must actually be exercised.
    assert!(
        accepted > 100 && refused > 20,
        "accepted {accepted}, refused {refused}"
    );
}
