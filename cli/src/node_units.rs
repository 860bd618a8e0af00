//! The `units` service of `keelson node`: the node's own init system for the
//! units a cloud-config starts (`coreos.units` with `command: start`) that
//! are not one of Keelson's services. It runs them with the scheduler's
//! built-in supervisor, the same one fleet's agent uses, reading unit files
//! and their drop-ins from the systemd directories under `--root`
//! (`/run/systemd/system` before `/etc/systemd/system`, as systemd orders
//! them), and stops them all when the node stops.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use keelson_scheduler::init::{InitSystem, Supervisor, SupervisorConfig};

use crate::kv_daemon::rooted;

/// Where unit files are looked up, most important first.
const UNIT_DIRS: [&str; 2] = ["/run/systemd/system", "/etc/systemd/system"];

/// `keelson node`'s `units` service.
#[derive(Debug, Parser)]
#[command(name = "keelson node units")]
pub struct UnitsFlags {
    /// A unit to start; repeatable, started in order.
    #[arg(long = "start", value_name = "UNIT")]
    pub start: Vec<String>,
    /// Prefix for the absolute paths read and written.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// `%m` for the units (default: `/etc/machine-id` under --root).
    #[arg(long = "machine-id")]
    pub machine_id: Option<String>,
    /// `%H` for the units (default: the host's name).
    #[arg(long = "hostname")]
    pub hostname: Option<String>,
}

/// A unit's text as systemd would load it: the unit file, then each
/// `NAME.d/*.conf` drop-in in file-name order (a drop-in in an earlier
/// directory hides one of the same name in a later one).
pub fn unit_text(root: &Path, name: &str) -> anyhow::Result<String> {
    let mut text = None;
    for dir in UNIT_DIRS {
        let p = rooted(root, &Path::new(dir).join(name));
        if let Ok(t) = std::fs::read_to_string(&p) {
            text = Some(t);
            break;
        }
    }
    let mut text = text.with_context(|| {
        format!(
            "unit {name} not found in {} under {}",
            UNIT_DIRS.join(" or "),
            root.display()
        )
    })?;
    let mut dropins: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for dir in UNIT_DIRS.iter().rev() {
        let d = rooted(root, &Path::new(dir).join(format!("{name}.d")));
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if file.ends_with(".conf") {
                dropins.insert(file, e.path());
            }
        }
    }
    for (_, p) in dropins {
        let t = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&t);
    }
    Ok(text)
}

fn machine_id(flags: &UnitsFlags) -> String {
    if let Some(m) = &flags.machine_id {
        return m.clone();
    }
    std::fs::read_to_string(rooted(&flags.root, Path::new("/etc/machine-id")))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

async fn run(flags: UnitsFlags) -> anyhow::Result<()> {
    let supervisor = Supervisor::new(SupervisorConfig {
        units_dir: rooted(&flags.root, Path::new("/var/lib/keelson/node/units")),
        state_dir: rooted(&flags.root, Path::new("/var/lib/keelson/node")),
        kvctl: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("kvctl")))
            .filter(|p| p.exists()),
        machine_id: machine_id(&flags),
        host_name: flags.hostname.clone(),
        root: flags.root.clone(),
    })
    .context("starting the supervisor")?;
    let supervisor = Arc::new(supervisor);
    for name in &flags.start {
        let text = unit_text(&flags.root, name)?;
        supervisor
            .load(name, &text)
            .with_context(|| format!("loading {name}"))?;
        supervisor
            .start(name)
            .with_context(|| format!("starting {name}"))?;
        tracing::info!(unit = %name, "started");
    }
    let why = crate::node_runner::shutdown_signal().await;
    tracing::info!("{why}: stopping the node's units");
    supervisor.stop_all(Duration::from_secs(20)).await;
    Ok(())
}

/// `keelson node`'s `units` service: start the units, stop them on the
/// node's word.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut argv = vec![OsString::from("keelson node units")];
    argv.extend(args);
    let flags = match UnitsFlags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    crate::node_runner::label_threads(&mut builder);
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_text_appends_dropins_runtime_first() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc/systemd/system");
        let run = root.path().join("run/systemd/system");
        std::fs::create_dir_all(etc.join("a.service.d")).unwrap();
        std::fs::create_dir_all(run.join("a.service.d")).unwrap();
        std::fs::write(etc.join("a.service"), "[Service]\nExecStart=/bin/true\n").unwrap();
        std::fs::write(etc.join("a.service.d/10-x.conf"), "[Service]\nX=etc\n").unwrap();
        std::fs::write(run.join("a.service.d/10-x.conf"), "[Service]\nX=run\n").unwrap();
        std::fs::write(etc.join("a.service.d/20-y.conf"), "[Service]\nY=1").unwrap();
        let t = unit_text(root.path(), "a.service").unwrap();
        assert_eq!(
            t,
            "[Service]\nExecStart=/bin/true\n[Service]\nX=run\n[Service]\nY=1"
        );
        let e = unit_text(root.path(), "missing.service").unwrap_err();
        assert!(
            e.to_string().contains("unit missing.service not found"),
            "{e}"
        );
    }
}
