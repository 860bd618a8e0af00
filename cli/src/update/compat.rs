//! `update_engine_client`: the original's gflags (`-status`,
//! `-check_for_update`, `-update`, `-reset_status`, `-watch_for_updates`)
//! and its output: the status block on stdout, glog-style lines on stderr.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use keelson_updater::api::{ApiClient, DEFAULT_SOCKET};
use keelson_updater::config::rooted;
use keelson_updater::engine::Status;

/// What the flags asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub check_for_update: bool,
    pub update: bool,
    pub status: bool,
    pub reset_status: bool,
    pub watch_for_updates: bool,
    pub socket: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub help: bool,
}

const HELP: &str = "update_engine_client: Chromium OS Update Engine Client (Keelson)

  Flags:
    -check_for_update (Initiate check for updates.) type: bool default: false
    -reset_status (Sets the status in update_engine to idle.) type: bool default: false
    -status (Print the status to stdout.) type: bool default: false
    -update (Forces an update and waits for it to complete. Implies -check_for_update.) type: bool default: false
    -watch_for_updates (Listen for status updates and print them to the screen.) type: bool default: false
    -socket (Keelson: the engine's socket; default /var/run/update-engine.sock under -root) type: string
    -root (Keelson: the node's root directory) type: string default: \"/\"
";

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "yes" | "t" | "y" => Ok(true),
        "false" | "0" | "no" | "f" | "n" => Ok(false),
        _ => Err(format!(
            "ERROR: illegal value '{v}' specified for bool flag '{name}'"
        )),
    }
}

/// Parses gflags-style arguments (without the program name).
pub fn parse(args: &[OsString]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        i += 1;
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            // gflags leaves positional arguments alone; the client ignored them.
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let (name, negated) = match name.strip_prefix("no") {
            Some(n) if value.is_none() && is_bool(n) => (n, true),
            _ => (name, false),
        };
        if is_bool(name) {
            let v = match &value {
                Some(v) => parse_bool(name, v)?,
                None => !negated,
            };
            match name {
                "check_for_update" => f.check_for_update = v,
                "update" => f.update = v,
                "status" => f.status = v,
                "reset_status" => f.reset_status = v,
                "watch_for_updates" => f.watch_for_updates = v,
                _ => f.help = v,
            }
            continue;
        }
        if !matches!(name, "socket" | "root") {
            return Err(format!("ERROR: unknown command line flag '{name}'"));
        }
        let value = match value {
            Some(v) => v,
            None if i < args.len() => {
                i += 1;
                args[i - 1].to_string_lossy().into_owned()
            }
            None => return Err(format!("ERROR: flag '-{name}' is missing its argument")),
        };
        match name {
            "socket" => f.socket = Some(value.into()),
            "root" => f.root = Some(value.into()),
            _ => return Err(format!("ERROR: unknown command line flag '{name}'")),
        }
    }
    Ok(f)
}

/// Whether `arg` is one of the original's action flags (`-status`, `--update=true`, …).
pub fn is_action_flag(arg: &str) -> bool {
    let Some(body) = arg.strip_prefix('-') else {
        return false;
    };
    let name = body.trim_start_matches('-');
    let name = name.split_once('=').map_or(name, |(n, _)| n);
    is_bool(name) && !matches!(name, "help" | "h")
}

fn is_bool(name: &str) -> bool {
    matches!(
        name,
        "check_for_update"
            | "update"
            | "status"
            | "reset_status"
            | "watch_for_updates"
            | "help"
            | "h"
    )
}

/// A glog-style line: `[MMDD/HHMMSS:INFO:update_engine_client.cc(N)] msg`.
fn log(level: &str, line: u32, msg: &str) {
    let now = chrono::Local::now();
    eprintln!(
        "[{}:{level}:update_engine_client.cc({line})] {msg}",
        now.format("%m%d/%H%M%S")
    );
}

/// Runs `update_engine_client` with `args` (without the program name).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let f = match parse(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if f.help {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let root = f
        .root
        .clone()
        .or_else(|| std::env::var_os("KEELSON_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    let socket = f
        .socket
        .clone()
        .or_else(|| std::env::var_os("KEELSON_UPDATE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| rooted(&root, DEFAULT_SOCKET));
    let client = ApiClient::new(socket);
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(&client, &f))
}

async fn run(client: &ApiClient, f: &Flags) -> ExitCode {
    let fail = |line: u32, what: &str, e: &dyn std::fmt::Display| {
        log("FATAL", line, &format!("{what} failed: {e}"));
        ExitCode::FAILURE
    };
    if f.status {
        log("INFO", 280, "Querying Update Engine status...");
        return match client.status().await {
            Ok(s) => {
                let mut out = std::io::stdout();
                let _ = out.write_all(s.render().as_bytes());
                let _ = out.flush();
                ExitCode::SUCCESS
            }
            Err(e) => fail(282, "GetStatus", &e),
        };
    }
    if f.reset_status {
        log("INFO", 270, "Setting Update Engine status to idle ...");
        return match client.reset_status().await {
            Ok(()) => {
                log("INFO", 274, "ResetStatus succeeded.");
                ExitCode::SUCCESS
            }
            Err(e) => fail(272, "ResetStatus", &e),
        };
    }
    if f.check_for_update || f.update {
        // Subscribe before asking, so no transition is missed.
        let watch = if f.update {
            match client.watch().await {
                Ok(w) => Some(w),
                Err(e) => return fail(245, "Update check/initiate", &e),
            }
        } else {
            None
        };
        log("INFO", 245, "Initiating update check and install.");
        if let Err(e) = client.check_for_update().await {
            return fail(247, "Update check/initiate", &e);
        }
        let Some(mut w) = watch else {
            return ExitCode::SUCCESS;
        };
        log("INFO", 252, "Waiting for update to complete.");
        let mut busy = false;
        loop {
            match w.next().await {
                Ok(Some(s)) => match s.current_operation {
                    Status::UpdatedNeedReboot => {
                        log("INFO", 145, "Update succeeded -- reboot needed.");
                        return ExitCode::SUCCESS;
                    }
                    Status::Idle if busy => {
                        log("ERROR", 148, "Update failed.");
                        return ExitCode::FAILURE;
                    }
                    Status::Idle => {}
                    _ => busy = true,
                },
                Ok(None) | Err(_) => {
                    log("ERROR", 148, "Update failed.");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if f.watch_for_updates {
        log("INFO", 259, "Watching for status updates.");
        let mut w = match client.watch().await {
            Ok(w) => w,
            Err(e) => return fail(261, "WatchForUpdates", &e),
        };
        // The first answer is the current status, not a signal: skip it.
        let _ = w.next().await;
        while let Ok(Some(s)) = w.next().await {
            log("INFO", 112, "Got status update:");
            log(
                "INFO",
                113,
                &format!("  last_checked_time: {}", s.last_checked_time),
            );
            log("INFO", 114, &format!("  progress: {}", s.progress));
            log(
                "INFO",
                115,
                &format!("  current_operation: {}", s.current_operation),
            );
            log("INFO", 116, &format!("  new_version: {}", s.new_version));
            log("INFO", 117, &format!("  new_size: {}", s.new_size));
        }
        return ExitCode::SUCCESS;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn gflags_spellings() {
        for a in [
            &["-status"][..],
            &["--status"],
            &["-status=true"],
            &["--status=1"],
        ] {
            assert!(parse(&os(a)).unwrap().status, "{a:?}");
        }
        assert!(!parse(&os(&["-status=false"])).unwrap().status);
        assert!(!parse(&os(&["-nostatus"])).unwrap().status);
        let f = parse(&os(&["-check_for_update", "-socket", "/s", "--root=/r"])).unwrap();
        assert!(f.check_for_update);
        assert_eq!(f.socket, Some(PathBuf::from("/s")));
        assert_eq!(f.root, Some(PathBuf::from("/r")));
        assert!(parse(&os(&["-reset_status", "-watch_for_updates", "-update"])).is_ok());
        for bogus in [&["-bogus"][..], &["-bogus", "x"], &["--bogus=1"]] {
            assert_eq!(
                parse(&os(bogus)).unwrap_err(),
                "ERROR: unknown command line flag 'bogus'"
            );
        }
        assert!(parse(&os(&["-status=maybe"]))
            .unwrap_err()
            .contains("illegal value"));
        assert!(parse(&os(&["-socket"])).unwrap_err().contains("missing"));
        assert!(is_action_flag("-status") && is_action_flag("--check_for_update=true"));
        assert!(!is_action_flag("--socket") && !is_action_flag("status") && !is_action_flag("-h"));
    }
}
