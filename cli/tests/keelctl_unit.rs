//! `keelctl unit` end to end: the binary, real files, exit codes.

use std::process::Command;

fn keelctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run keelctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hash_agrees_with_fleet_on_the_books_units() {
    // Expected values: fleet v1.0.0's hashes (reference unitfile.md §11.4).
    let expected = [
        (
            "helloglobal.service",
            "6c90609ec33214658d4610804e304059b57fc9ca",
        ),
        (
            "nginxweb.service",
            "504169d340dcc26f11c38d1fb15ca0fa3a3cef01",
        ),
        (
            "docker-tcp.socket",
            "a32e52b2c897f5d82ef235a5a7228f090ced4684",
        ),
        (
            "apachet@.service",
            "fabe5867b24a5c97cd3ecc7755e6119a51eabf11",
        ),
        (
            "apachet-discovery@.service",
            "ef37d7ab7593b282cd4da5508a677b19e69afa8d",
        ),
        (
            "var-lib-docker.mount",
            "60b2d6ff8412f8771f29e07f5e08bfeda468f377",
        ),
    ];
    let files: Vec<String> = expected
        .iter()
        .map(|(f, _)| format!("examples/units/{f}"))
        .collect();
    let mut args = vec!["unit", "hash"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = keelctl(&args);
    assert_eq!(code, 0, "{stderr}");
    let want: String = expected
        .iter()
        .map(|(f, h)| format!("{h}  examples/units/{f}\n"))
        .collect();
    assert_eq!(stdout, want);

    let (code, stdout, _) = keelctl(&[
        "unit",
        "hash",
        "--short",
        "examples/units/helloglobal.service",
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout, "6c90609  examples/units/helloglobal.service\n");
}

#[test]
fn every_example_unit_verifies() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/units");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("examples/units")
        .map(|e| {
            format!(
                "examples/units/{}",
                e.expect("entry").file_name().to_string_lossy()
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 20);
    let mut args = vec!["unit", "verify"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = keelctl(&args);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
}

#[test]
fn normalize_prints_what_fleet_stored() {
    let (code, stdout, _) = keelctl(&["unit", "normalize", "examples/units/helloglobal.service"]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "[Unit]\nDescription=My Service\nAfter=docker.service\n\n[Service]\nTimeoutStartSec=0\n\
ExecStartPre=-/usr/bin/docker kill hello\nExecStartPre=-/usr/bin/docker rm hello\n\
ExecStartPre=/usr/bin/docker pull busybox\n\
ExecStart=/usr/bin/docker run --name hello busybox /bin/sh -c \"while true; do echo Hello World; sleep 1; done\"\n\
ExecStop=/usr/bin/docker stop hello\n\n[X-Fleet]\nGlobal=true\n"
    );
}

#[test]
fn verify_points_at_each_error_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("web.service");
    std::fs::write(
        &bad,
        "[Unit]\nDescription=web\n\n[Service]\nExecStart=/usr/bin/docker run \"unterminated\n\n[X-Fleet]\nMachineOf=db.service\n  Conflict=web*.service\n",
    )
    .expect("write");
    let broken = dir.path().join("broken.service");
    std::fs::write(&broken, "[Service]\nExecStart=/bin/true\nJustAWord\n").expect("write");
    let (bad_s, broken_s) = (bad.to_string_lossy(), broken.to_string_lossy());
    let (code, stdout, _) = keelctl(&["unit", "verify", &bad_s, &broken_s]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("{bad_s}:5:1: ExecStart=:")),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{bad_s}:9:3: unrecognized requirement in [X-Fleet] section: \"Conflict\""
        )),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(&format!("{broken_s}:3:1: ")),
        "{stdout}"
    );

    let (code, _, stderr) = keelctl(&["unit", "hash", &broken_s]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with(&format!("{broken_s}:3:1: ")), "{stderr}");
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let (code, _, stderr) = keelctl(&["unit", "verify", "/nonexistent/x.service"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read"), "{stderr}");
}
