//! Drop-in merging (reference `unitfile.md` §4) from pairs and from
//! directories named by the test.

use std::fs;
use std::path::Path;

use keelson_unitfile::{
    find_drop_ins, load_unit, merge_drop_ins, DropInLayout, LoadError, Mode, Unit,
};

fn corpus(file: &str) -> String {
    fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(file),
    )
    .expect("corpus file")
}

#[test]
fn book_etcd2_drop_ins_apply_in_file_name_order() {
    let unit = Unit::parse(
        corpus("C40-etcd2.service"),
        Mode::Systemd,
        Some("etcd2.service"),
    )
    .unwrap();
    // Given out of order on purpose: the order is the file names'.
    let drop_ins = [
        ("custom.conf", corpus("C35-etcd2.service.d_custom.conf")),
        (
            "30-configuration.conf",
            corpus("C08-etcd2.service.d_30-configuration.conf"),
        ),
        (
            "20-cloudinit.conf",
            corpus("C06-etcd2.service.d_20-cloudinit.conf"),
        ),
    ];
    let merged = merge_drop_ins(&unit, &drop_ins).unwrap();
    assert_eq!(
        merged.drop_ins(),
        ["20-cloudinit.conf", "30-configuration.conf", "custom.conf"]
    );
    // custom.conf resets ExecStart= and sets its own.
    let exec = merged.values("Service", "ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(exec[0]
        .starts_with("/usr/bin/etcd2 --initial-advertise-peer-urls=http://${IPV4_PRIVATE}:2380"));
    // Lists accumulate across files.
    assert_eq!(
        merged.values("Service", "EnvironmentFile"),
        ["/run/metadata/coreos", "/run/metadata"]
    );
    let env = merged.values("Service", "Environment");
    assert_eq!(env.len(), 14);
    assert_eq!(env[7], "\"ETCD_NAME=etcdserver\"");
    assert_eq!(env[8], "ETCD_NAME=core-01");
    assert_eq!(
        merged.values("Unit", "Requires"),
        ["coreos-metadata.service", "populate-ips.service"]
    );
    let last = merged.options().len() - 1;
    assert_eq!(merged.origin(last), Some("custom.conf"));
    assert_eq!(merged.origin(0), Some("etcd2.service"));
}

#[test]
fn scalar_last_wins_and_empty_resets() {
    let unit = Unit::parse(
        "[Service]\nRestart=always\nRestartSec=10\nExecStart=/usr/bin/fleetd\n",
        Mode::Systemd,
        None,
    )
    .unwrap();
    let merged = unit
        .with_drop_ins(&[
            ("norestart.conf", "[Service]\nRestart=no\n"),
            ("zz.conf", "[Service]\nRestartSec=\n"),
        ])
        .unwrap();
    assert_eq!(merged.value("Service", "Restart"), Some("no"));
    assert_eq!(merged.value("Service", "RestartSec"), None);
    assert_eq!(
        merged.value("Service", "ExecStart"),
        Some("/usr/bin/fleetd")
    );
}

#[test]
fn reset_then_set_equals_only_the_new_value() {
    let base = Unit::parse(
        "[Service]\nExecStart=/a\nExecStart=/b\n",
        Mode::Systemd,
        None,
    )
    .unwrap();
    let merged = merge_drop_ins(
        &base,
        &[("x.conf", "[Service]\nExecStart=\nExecStart=/new\n")],
    )
    .unwrap();
    let only = Unit::parse("[Service]\nExecStart=/new\n", Mode::Systemd, None).unwrap();
    let strip = |o: Vec<keelson_unitfile::UnitOption>| -> Vec<(String, String, String)> {
        o.into_iter()
            .map(|o| (o.section, o.name, o.value))
            .collect()
    };
    assert_eq!(
        strip(merged.effective_options()),
        strip(only.effective_options())
    );
}

#[test]
fn duplicate_names_first_wins_and_errors_name_the_drop_in() {
    let base = Unit::parse("[Service]\nType=simple\n", Mode::Fleet, None).unwrap();
    let merged = merge_drop_ins(
        &base,
        &[
            ("a.conf", "[Service]\nType=oneshot\n"),
            ("a.conf", "[Service]\nType=forking\n"),
        ],
    )
    .unwrap();
    assert_eq!(merged.value("Service", "Type"), Some("oneshot"));
    let e = merge_drop_ins(&base, &[("bad.conf", "[Service]\nnope\n")]).unwrap_err();
    assert!(e.to_string().starts_with("bad.conf:2:1: "), "{e}");
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn directories_precedence_masking_and_templates() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/systemd/system");
    let run = root.path().join("run/systemd/system");
    let lib = root.path().join("usr/lib/systemd/system");
    write(
        &lib.join("web@.service"),
        "[Service]\nExecStart=/bin/web\nRestart=always\n",
    );
    write(
        &run.join("web@8080.service.d/10-port.conf"),
        "[Service]\nEnvironment=PORT=8080\n",
    );
    write(
        &etc.join("web@8080.service.d/10-port.conf"),
        "[Service]\nEnvironment=PORT=9090\n",
    );
    write(
        &lib.join("web@.service.d/20-restart.conf"),
        "[Service]\nRestart=no\n",
    );
    write(
        &run.join("web@.service.d/30-masked.conf"),
        "[Service]\nUser=nobody\n",
    );
    fs::create_dir_all(etc.join("web@.service.d")).unwrap();
    std::os::unix::fs::symlink("/dev/null", etc.join("web@.service.d/30-masked.conf")).unwrap();
    write(&etc.join("web@8080.service.d/README"), "not a drop-in\n");
    write(
        &etc.join("web-.service.d/40-prefix.conf"),
        "[Service]\nNice=5\n",
    );
    write(
        &etc.join("service.d/50-all.conf"),
        "[Service]\nTasksMax=10\n",
    );
    let dirs = [&etc, &run, &lib];

    let found = find_drop_ins("web@8080.service", &dirs, DropInLayout::Classic).unwrap();
    let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["10-port.conf", "20-restart.conf"]);
    assert!(found[0].path.starts_with(&etc));

    let merged = load_unit(
        "web@8080.service",
        &dirs,
        Mode::Systemd,
        DropInLayout::Classic,
    )
    .unwrap();
    assert_eq!(merged.value("Service", "Environment"), Some("PORT=9090"));
    assert_eq!(merged.value("Service", "Restart"), Some("no"));
    assert_eq!(merged.value("Service", "User"), None);
    assert!(merged.files()[0].ends_with("usr/lib/systemd/system/web@.service"));

    // Current systemd also reads web-.service.d/? No: the prefix of
    // `web@8080` has no dash. A dashed name does, and everyone reads service.d.
    let current = find_drop_ins("web@8080.service", &dirs, DropInLayout::Current).unwrap();
    let names: Vec<&str> = current.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["10-port.conf", "20-restart.conf", "50-all.conf"]);
    write(
        &lib.join("web-api.service"),
        "[Service]\nExecStart=/bin/api\n",
    );
    let merged = load_unit(
        "web-api.service",
        &dirs,
        Mode::Systemd,
        DropInLayout::Current,
    )
    .unwrap();
    assert_eq!(merged.value("Service", "Nice"), Some("5"));
    assert_eq!(merged.value("Service", "TasksMax"), Some("10"));
    let merged = load_unit(
        "web-api.service",
        &dirs,
        Mode::Systemd,
        DropInLayout::Classic,
    )
    .unwrap();
    assert_eq!(merged.drop_ins().len(), 0);
}

#[test]
fn load_errors() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    let lib = root.path().join("lib");
    write(&lib.join("a.service"), "[Service]\nExecStart=/bin/a\n");
    fs::create_dir_all(&etc).unwrap();
    std::os::unix::fs::symlink("/dev/null", etc.join("a.service")).unwrap();
    write(&lib.join("b.service"), "[Service]\nbroken\n");
    let dirs = [&etc, &lib];
    assert!(matches!(
        load_unit("a.service", &dirs, Mode::Systemd, DropInLayout::Classic),
        Err(LoadError::Masked { .. })
    ));
    assert!(matches!(
        load_unit("zzz.service", &dirs, Mode::Systemd, DropInLayout::Classic),
        Err(LoadError::NotFound { .. })
    ));
    let e = load_unit("b.service", &dirs, Mode::Fleet, DropInLayout::Classic).unwrap_err();
    assert!(matches!(e, LoadError::Parse(_)));
    assert!(
        e.to_string().contains("lib/b.service:2:1: missing `="),
        "{e}"
    );
}
