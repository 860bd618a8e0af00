//! `keelson node --validate FILE` and `coreos-cloudinit -validate
//! -from-file FILE` (the keelson binary through a symlink of that name):
//! the report lines and exit codes a user and their scripts rely on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cloudconfig/tests/data")
        .join(name)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run keelson")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp dir holding `coreos-cloudinit` → the keelson binary.
fn cloudinit_alias() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("coreos-cloudinit");
    std::os::unix::fs::symlink(KEELSON, &link).unwrap();
    (dir, link)
}

#[test]
fn valid_file_prints_nothing_and_exits_0() {
    let o = run(Command::new(KEELSON)
        .args(["node", "--validate"])
        .arg(data("e1.yaml")));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "");
}

#[test]
fn book_sample_as_printed_reports_line_38_and_exits_1() {
    let file = data("n1-e1-as-printed.yaml");
    let o = run(Command::new(KEELSON)
        .args(["node", "--validate"])
        .arg(&file));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "line 38: error: mapping values are not allowed in this context\n"
    );
    // Keelson's hint names the file, line and column on stderr.
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("{}:38:14: hint: ", file.display())),
        "{err}"
    );
    assert!(err.contains("indented 7 spaces"), "{err}");
}

#[test]
fn missing_pipe_and_missing_dash() {
    for (file, line) in [
        (
            "missing-pipe.yaml",
            "line 41: error: did not find expected key\n",
        ),
        (
            "missing-dash.yaml",
            "line 14: error: did not find expected '-' indicator\n",
        ),
    ] {
        let o = run(Command::new(KEELSON)
            .args(["node", "--validate"])
            .arg(data(file)));
        assert_eq!(o.status.code(), Some(1), "{file}");
        assert_eq!(stdout(&o), line, "{file}");
    }
}

#[test]
fn warnings_alone_also_exit_1_and_json_form() {
    let file = data("n5-toolbox.yaml");
    let o = run(Command::new(KEELSON)
        .args(["node", "--validate"])
        .arg(&file));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "line 2: warning: unrecognized key \"_write_files\"\n"
    );
    let o = run(Command::new(KEELSON)
        .args(["node", "--json", "--cloud-config"])
        .arg(&file)
        .arg("--validate"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "[{\"kind\":\"warning\",\"line\":2,\"message\":\"unrecognized key \\\"_write_files\\\"\"}]\n"
    );
}

#[test]
fn unreadable_file_and_missing_argument() {
    let o = run(Command::new(KEELSON).args(["node", "--validate", "/nonexistent/user-data"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read /nonexistent/user-data"),
        "{}",
        stderr(&o)
    );
    let o = run(Command::new(KEELSON).args(["node", "--validate"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--validate needs a file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn coreos_cloudinit_alias_validates_with_go_flags() {
    let (_dir, alias) = cloudinit_alias();
    // A valid file: no output, exit 0, both flag spellings.
    for args in [
        vec![
            "-validate".to_string(),
            "-from-file".to_string(),
            data("e3.yaml").display().to_string(),
        ],
        vec![
            "--validate".to_string(),
            format!("--from-file={}", data("e3.yaml").display()),
        ],
    ] {
        let o = run(Command::new(&alias).args(&args));
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "");
        assert_eq!(stderr(&o), "");
    }
    // The book's secure sample as printed: rejected at line 1.
    let o = run(Command::new(&alias)
        .arg("--validate")
        .arg("--from-file")
        .arg(data("n4-e8-as-printed.yaml")));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    // Go's log prefix "2006/01/02 15:04:05 ", then the entry.
    let (stamp, entry) = lines[0].split_at(20);
    assert!(
        stamp.len() == 20
            && stamp.as_bytes()[4] == b'/'
            && stamp.as_bytes()[7] == b'/'
            && stamp.as_bytes()[13] == b':'
            && stamp.ends_with(' '),
        "{stamp:?}"
    );
    assert_eq!(
        entry,
        "line 1: error: must be \"#cloud-config\" or begin with \"#!\""
    );
    // N2 through the alias.
    let o = run(Command::new(&alias)
        .arg("-validate")
        .arg("-from-file")
        .arg(data("n2-e3-as-printed.yaml")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .trim_end()
            .ends_with(" line 7: error: did not find expected key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn coreos_cloudinit_alias_flag_errors() {
    let (_dir, alias) = cloudinit_alias();
    let o = run(Command::new(&alias).arg("-bogus"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("flag provided but not defined: -bogus\n"),
        "{}",
        stderr(&o)
    );
    let o = run(Command::new(&alias).arg("-validate"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).starts_with("Provide at least one of --from-file"),
        "{}",
        stdout(&o)
    );
    let o = run(Command::new(&alias).arg("-from-file").arg(data("e1.yaml")));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("keelson node --cloud-config"),
        "{}",
        stderr(&o)
    );
    let o = run(Command::new(&alias).arg("-version"));
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).starts_with("coreos-cloudinit version "),
        "{}",
        stdout(&o)
    );
}
