//! `keelctl locksmith` and `locksmithctl`: locksmithctl's commands, flags
//! (`-endpoint`, `-group`, `-etcd-*`, each also `LOCKSMITHCTL_<NAME>`; a flag
//! wins over its variable), output and exit codes (reference updater.md
//! §10.7). Go's single-dash long flags are accepted.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keelson_updater::api::ApiClient;
use keelson_updater::locksmith::{format_set_max, format_status, LockClient};

use super::{non_empty, EtcdOptions};

/// locksmithctl's global flags.
#[derive(Debug, Parser)]
#[command(
    name = "locksmithctl",
    disable_help_subcommand = true,
    disable_version_flag = true,
    about = "Manage the cluster-wide reboot lock (locksmith's semaphore in the kv)"
)]
pub struct CtlArgs {
    /// Store endpoint; repeat or separate with commas (default
    /// http://127.0.0.1:2379 and http://127.0.0.1:4001).
    #[arg(
        long,
        env = "LOCKSMITHCTL_ENDPOINT",
        value_delimiter = ',',
        global = true
    )]
    pub endpoint: Vec<String>,
    #[arg(long = "etcd-cafile", env = "LOCKSMITHCTL_ETCD_CAFILE", global = true)]
    pub etcd_cafile: Option<String>,
    #[arg(
        long = "etcd-certfile",
        env = "LOCKSMITHCTL_ETCD_CERTFILE",
        global = true
    )]
    pub etcd_certfile: Option<String>,
    #[arg(
        long = "etcd-keyfile",
        env = "LOCKSMITHCTL_ETCD_KEYFILE",
        global = true
    )]
    pub etcd_keyfile: Option<String>,
    #[arg(
        long = "etcd-username",
        env = "LOCKSMITHCTL_ETCD_USERNAME",
        global = true
    )]
    pub etcd_username: Option<String>,
    #[arg(
        long = "etcd-password",
        env = "LOCKSMITHCTL_ETCD_PASSWORD",
        global = true
    )]
    pub etcd_password: Option<String>,
    /// The locksmith group (empty: the default group).
    #[arg(long, env = "LOCKSMITHCTL_GROUP", default_value = "", global = true)]
    pub group: String,
    /// Print debug information to stderr.
    #[arg(long, env = "LOCKSMITHCTL_DEBUG", global = true)]
    pub debug: bool,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Keelson: where `/etc/machine-id` and the update engine's socket are.
    #[arg(long, env = "KEELSON_ROOT", default_value = "/", global = true)]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Option<CtlCommand>,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Show the semaphore: free slots, slots in total, holders.
    Status,
    /// Take a slot for this machine or the given machine ID.
    Lock { machine_id: Option<String> },
    /// Give back the slot of this machine or the given machine ID.
    Unlock { machine_id: Option<String> },
    /// Set the number of slots.
    SetMax {
        #[arg(allow_negative_numbers = true)]
        max: Vec<String>,
    },
    /// Tell locksmithd a reboot is needed, without an update (through the
    /// update engine's local API).
    SendNeedReboot {
        /// The update engine's socket (default under --root).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Show usage.
    Help,
    #[command(external_subcommand)]
    Other(Vec<String>),
}

fn usage(name: &str) -> String {
    format!(
        "NAME:\n\t{name} - Manage the cluster wide reboot lock.\n\n\
         USAGE:\n\t{name} [global options] <command> [command options] [arguments...]\n\n\
         COMMANDS:\n\
         \thelp\t\t\tShow a list of commands or help for one command\n\
         \tlock\t\t\tLock this machine or a given machine-id for reboot.\n\
         \tsend-need-reboot\tSend a 'need reboot' signal over the update engine's API.\n\
         \tset-max\t\t\tSet the maximum number of lock holders\n\
         \tstatus\t\t\tGet the status of the cluster wide reboot lock.\n\
         \tunlock\t\t\tUnlock this machine or a given machine-id for reboot.\n\n\
         GLOBAL OPTIONS:\n\
         \t-debug=false\t\tPrint out debug information to stderr.\n\
         \t-endpoint=[]\t\tetcd endpoint for locksmith (default http://127.0.0.1:2379, http://127.0.0.1:4001); repeat for several\n\
         \t-etcd-cafile=\"\"\t\tetcd CA file authentication\n\
         \t-etcd-certfile=\"\"\tetcd cert file authentication\n\
         \t-etcd-keyfile=\"\"\t\tetcd key file authentication\n\
         \t-etcd-password=\"\"\tetcd password\n\
         \t-etcd-username=\"\"\tetcd username\n\
         \t-group=\"\"\t\tlocksmith group\n\
         \t-version=false\t\tPrint the version and exit.\n"
    )
}

/// Go's flag syntax: `-flag`, `-flag=value` become `--flag…`; negative
/// numbers and single letters are left alone.
pub fn go_flags(args: Vec<OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| {
            let s = a.to_string_lossy();
            let b = s.as_bytes();
            if b.len() > 2 && b[0] == b'-' && b[1].is_ascii_alphabetic() {
                OsString::from(format!("-{s}"))
            } else {
                a
            }
        })
        .collect()
}

/// Runs locksmithctl with `args` (after the program name or `locksmith`);
/// `name` is how it was called, for messages.
pub fn main(name: &str, args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from(name)).chain(go_flags(args));
    let parsed = match CtlArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // Go's flag package exits 2 on a bad flag, 0 on -h.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if parsed.version {
        println!("{name} version {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if parsed.debug {
        crate::update::init_logging();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(rt.block_on(run(name, parsed)))
}

fn etcd(a: &CtlArgs) -> EtcdOptions {
    EtcdOptions {
        endpoints: a.endpoint.clone(),
        cafile: non_empty(&a.etcd_cafile),
        certfile: non_empty(&a.etcd_certfile),
        keyfile: non_empty(&a.etcd_keyfile),
        username: non_empty(&a.etcd_username),
        password: a.etcd_password.clone(),
    }
}

fn this_machine(a: &CtlArgs, given: Option<String>) -> Result<String, String> {
    if let Some(id) = given {
        return Ok(id);
    }
    match keelson_updater::config::machine_id(&a.root) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err("Cannot read machine-id".into()),
        Err(e) => Err(format!("Cannot read machine-id: {e}")),
    }
}

async fn run(name: &str, a: CtlArgs) -> u8 {
    let command = a.command.as_ref().unwrap_or(&CtlCommand::Help);
    let lock = || -> Result<LockClient, u8> {
        match etcd(&a).client() {
            Ok(kv) => Ok(LockClient::new(kv, &a.group)),
            Err(e) => {
                eprintln!("Error initializing etcd client: {e:#}");
                Err(1)
            }
        }
    };
    match command {
        CtlCommand::Help => {
            print!("{}", usage(name));
            0
        }
        CtlCommand::Other(words) => {
            let sub = words.first().map(String::as_str).unwrap_or_default();
            println!("{name}: unknown subcommand: {sub:?}");
            println!("Run '{name} help' for usage.");
            2
        }
        CtlCommand::Status => {
            let l = match lock() {
                Ok(l) => l,
                Err(c) => return c,
            };
            match l.status().await {
                Ok(sem) => {
                    print!("{}", format_status(&sem));
                    0
                }
                Err(e) => {
                    eprintln!("Error getting semaphore: {e}");
                    1
                }
            }
        }
        CtlCommand::Lock { machine_id } | CtlCommand::Unlock { machine_id } => {
            let locking = matches!(command, CtlCommand::Lock { .. });
            let id = match this_machine(&a, machine_id.clone()) {
                Ok(id) => id,
                Err(m) => {
                    eprintln!("{m}");
                    return 1;
                }
            };
            let l = match lock() {
                Ok(l) => l,
                Err(c) => return c,
            };
            let r = if locking {
                l.lock(&id).await
            } else {
                l.unlock(&id).await
            };
            match r {
                Ok(()) => 0,
                Err(e) => {
                    let verb = if locking { "locking" } else { "unlocking" };
                    eprintln!("Error {verb}: {e}");
                    1
                }
            }
        }
        CtlCommand::SetMax { max } => {
            let [n] = max.as_slice() else {
                eprintln!("New maximum value must be set.");
                return 1;
            };
            let Ok(n) = n.parse::<i64>() else {
                eprintln!("Invalid maximum value: {n}");
                return 1;
            };
            let l = match lock() {
                Ok(l) => l,
                Err(c) => return c,
            };
            match l.set_max(n).await {
                Ok((old, new)) => {
                    print!("{}", format_set_max(old, new));
                    0
                }
                Err(e) => {
                    eprintln!("Error setting value: {e}");
                    1
                }
            }
        }
        CtlCommand::SendNeedReboot { socket } => {
            let api = match socket {
                Some(s) => ApiClient::new(s.clone()),
                None => ApiClient::under_root(&a.root),
            };
            match api.send_need_reboot().await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("Error sending need-reboot: {e}");
                    1
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locksmith::DEFAULT_ENDPOINTS;

    fn parse(args: &[&str]) -> CtlArgs {
        let argv = std::iter::once(OsString::from("locksmithctl"))
            .chain(go_flags(args.iter().map(OsString::from).collect()));
        CtlArgs::try_parse_from(argv).unwrap()
    }

    #[test]
    fn go_style_flags_and_commands() {
        let a = parse(&[
            "-endpoint",
            "http://a:1,http://b:2",
            "-group=lb",
            "set-max",
            "-1",
        ]);
        assert_eq!(
            etcd(&a).endpoints(),
            ["http://a:1".to_string(), "http://b:2".to_string()]
        );
        assert_eq!(a.group, "lb");
        assert!(matches!(a.command, Some(CtlCommand::SetMax { ref max }) if max == &["-1"]));
        let a = parse(&[
            "-endpoint=http://a:1",
            "-endpoint",
            "http://b:2",
            "lock",
            "abc",
        ]);
        assert_eq!(etcd(&a).endpoints().len(), 2);
        assert!(
            matches!(a.command, Some(CtlCommand::Lock { ref machine_id }) if machine_id.as_deref() == Some("abc"))
        );
        let a = parse(&["frobnicate", "x"]);
        assert!(matches!(a.command, Some(CtlCommand::Other(ref w)) if w[0] == "frobnicate"));
        assert!(parse(&[]).command.is_none());
        assert_eq!(EtcdOptions::default().endpoints(), DEFAULT_ENDPOINTS);
    }
}
