//! The built-in supervisor running real processes.

use std::path::Path;
use std::time::Duration;

use keelson_scheduler::init::{InitSystem, Supervisor, SupervisorConfig};

fn config(dir: &Path) -> SupervisorConfig {
    SupervisorConfig {
        units_dir: dir.join("units"),
        state_dir: dir.join("state"),
        kvctl: None,
        machine_id: "11111111111111111111111111111111".into(),
        host_name: Some("core-01".into()),
        root: "/".into(),
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state(s: &Supervisor, name: &str) -> (String, String) {
    s.units()
        .into_iter()
        .find(|u| u.name == name)
        .map(|u| (u.state.active, u.state.sub))
        .unwrap_or_default()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false)
}

#[tokio::test]
async fn simple_service_lifecycle_with_hooks_env_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    std::fs::write(dir.path().join("env"), "FROM_FILE=file\n").unwrap();
    let unit = format!(
        "[Service]\nEnvironment=GREETING=hello\nEnvironmentFile={env}\nEnvironmentFile=-/nonexistent\n\
         ExecStartPre=-/bin/false\nExecStartPre=/bin/sh -c 'echo pre >> {m}'\n\
         ExecStart=/bin/sh -c 'echo $GREETING $FROM_FILE %n %H; exec sleep 1000'\n\
         ExecStartPost=/bin/sh -c 'echo post >> {m}'\nExecStop=/bin/sh -c 'echo stop $MAINPID >> {m}'\n\
         ExecStopPost=/bin/sh -c 'echo stoppost >> {m}'\n",
        env = dir.path().join("env").display(),
        m = marks.display()
    );
    let sup = Supervisor::new(config(dir.path())).unwrap();
    sup.load("hello.service", &unit).unwrap();
    sup.start("hello.service").unwrap();
    wait_for("running", || {
        state(&sup, "hello.service") == ("active".into(), "running".into())
    })
    .await;
    wait_for("post", || {
        std::fs::read_to_string(&marks)
            .unwrap_or_default()
            .contains("post")
    })
    .await;
    let pid = sup.main_pids()["hello.service"];
    assert!(alive(pid));
    wait_for("log", || {
        sup.journal("hello.service", 50)
            .unwrap()
            .iter()
            .any(|l| l == "hello file hello.service core-01")
    })
    .await;
    sup.stop("hello.service").unwrap();
    wait_for("stopped", || {
        state(&sup, "hello.service") == ("inactive".into(), "dead".into())
    })
    .await;
    wait_for("process gone", || !alive(pid)).await;
    let m = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(m, format!("pre\npost\nstop {pid}\nstoppost\n"));
    assert!(!sup.units()[0].launched);
    sup.unload("hello.service").unwrap();
    assert!(sup.units().is_empty());
    assert!(!dir.path().join("units/hello.service").exists());
}

#[tokio::test]
async fn failing_pre_fails_and_oneshot_remains() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(config(dir.path())).unwrap();
    sup.load(
        "bad.service",
        "[Service]\nExecStartPre=/bin/false\nExecStart=/bin/sleep 1000\n",
    )
    .unwrap();
    sup.start("bad.service").unwrap();
    wait_for("failed", || {
        state(&sup, "bad.service") == ("failed".into(), "failed".into())
    })
    .await;
    sup.load(
        "once.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\nExecStart=/bin/true\n",
    )
    .unwrap();
    sup.start("once.service").unwrap();
    wait_for("exited", || {
        state(&sup, "once.service") == ("active".into(), "exited".into())
    })
    .await;
    let err = sup
        .load(
            "two.service",
            "[Service]\nExecStart=/bin/true\nExecStart=/bin/true\n",
        )
        .unwrap_err();
    assert!(err.to_string().contains("more than one ExecStart"), "{err}");
    let err = sup
        .load("web.socket", "[Socket]\nListenStream=8080\n")
        .unwrap_err();
    assert!(
        err.to_string().contains("socket units are not supported"),
        "{err}"
    );
    let err = sup
        .load("data.mount", "[Mount]\nWhat=/dev/x\nWhere=/data\n")
        .unwrap_err();
    assert!(
        err.to_string().contains("mount units are not supported"),
        "{err}"
    );
    let err = sup
        .load("t.timer", "[Timer]\nOnCalendar=daily\n")
        .unwrap_err();
    assert!(
        err.to_string().contains("timer units are not supported"),
        "{err}"
    );
}

#[tokio::test]
async fn restart_always_and_timeout_start() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(config(dir.path())).unwrap();
    sup.load(
        "r.service",
        "[Service]\nExecStart=/bin/sleep 1000\nRestart=always\nRestartSec=200ms\n",
    )
    .unwrap();
    sup.start("r.service").unwrap();
    wait_for("running", || state(&sup, "r.service").1 == "running").await;
    let pid = sup.main_pids()["r.service"];
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_for("new pid", || {
        sup.main_pids().get("r.service").is_some_and(|p| *p != pid)
            && state(&sup, "r.service").1 == "running"
    })
    .await;
    sup.load(
        "slow.service",
        "[Service]\nType=oneshot\nTimeoutStartSec=300ms\nExecStart=/bin/sleep 30\n",
    )
    .unwrap();
    sup.start("slow.service").unwrap();
    wait_for("timeout", || state(&sup, "slow.service").0 == "failed").await;
    sup.load(
        "nofail.service",
        "[Service]\nExecStart=/bin/sh -c 'exit 3'\nRestart=on-failure\nRestartSec=100ms\n",
    )
    .unwrap();
    sup.start("nofail.service").unwrap();
    wait_for("restarting", || {
        state(&sup, "nofail.service").1 == "auto-restart"
    })
    .await;
    sup.stop("nofail.service").unwrap();
    wait_for("stopped", || state(&sup, "nofail.service").0 == "inactive").await;
}

#[tokio::test]
async fn restarted_supervisor_adopts_and_kills_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(config(dir.path())).unwrap();
    sup.load("keep.service", "[Service]\nExecStart=/bin/sleep 1000\n")
        .unwrap();
    sup.load("orphan.service", "[Service]\nExecStart=/bin/sleep 1001\n")
        .unwrap();
    sup.start("keep.service").unwrap();
    sup.start("orphan.service").unwrap();
    wait_for("running", || {
        sup.units().iter().all(|u| u.state.sub == "running")
    })
    .await;
    let pids = sup.main_pids();
    // The agent dies: its supervisor goes away, processes keep running.
    sup.abandon();
    drop(sup);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(alive(pids["keep.service"]) && alive(pids["orphan.service"]));
    // orphan's unit file disappears while the agent is down.
    std::fs::remove_file(dir.path().join("units/orphan.service")).unwrap();
    let sup = Supervisor::new(config(dir.path())).unwrap();
    let units = sup.units();
    assert_eq!(units.len(), 1);
    assert!(units[0].launched);
    wait_for("adopted", || {
        state(&sup, "keep.service") == ("active".into(), "running".into())
    })
    .await;
    assert_eq!(
        sup.main_pids()["keep.service"],
        pids["keep.service"],
        "adopted, not duplicated"
    );
    wait_for("orphan killed", || !alive(pids["orphan.service"])).await;
    sup.stop("keep.service").unwrap();
    wait_for("adopted process stopped", || !alive(pids["keep.service"])).await;
}

#[tokio::test]
async fn binds_to_stops_the_sidekick() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(config(dir.path())).unwrap();
    sup.load("main@1.service", "[Service]\nExecStart=/bin/sleep 1000\n")
        .unwrap();
    sup.load(
        "side@1.service",
        "[Unit]\nBindsTo=main@%i.service\n[Service]\nExecStart=/bin/sleep 1000\n",
    )
    .unwrap();
    sup.start("main@1.service").unwrap();
    sup.start("side@1.service").unwrap();
    wait_for("both running", || {
        sup.units().iter().all(|u| u.state.sub == "running")
    })
    .await;
    let pid = sup.main_pids()["main@1.service"];
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_for("main failed", || {
        state(&sup, "main@1.service").0 == "failed"
    })
    .await;
    wait_for("sidekick stopped", || {
        state(&sup, "side@1.service").0 == "inactive"
    })
    .await;
}

#[tokio::test]
async fn environment_files_are_read_under_the_machine_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/environment"),
        "COREOS_PUBLIC_IPV4=10.9.8.7\n",
    )
    .unwrap();
    let sup = Supervisor::new(SupervisorConfig {
        root,
        ..config(dir.path())
    })
    .unwrap();
    sup.load(
        "env.service",
        "[Service]\nEnvironmentFile=/etc/environment\nExecStart=/bin/sh -c 'echo ip=${COREOS_PUBLIC_IPV4}; exec sleep 1000'\n",
    )
    .unwrap();
    sup.start("env.service").unwrap();
    wait_for("the machine's own /etc/environment", || {
        sup.journal("env.service", 50)
            .unwrap()
            .iter()
            .any(|l| l == "ip=10.9.8.7")
    })
    .await;
    sup.unload("env.service").unwrap();
}
