//! `keelctl`: fleetctl, locksmithctl and the update client, for Keelson.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keelctl",
    version,
    about = "Drive a Keelson cluster: units, reboots, updates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with unit files offline: fleet hashes, normalised form, verification.
    #[command(subcommand)]
    Unit(keelson_cli::unit::UnitCommand),
    /// Drive the update engine (update_engine_client's verbs), sign payloads,
    /// administer an update server.
    Update(keelson_cli::update::client::UpdateArgs),
    /// Overlay network leases and reservations (flannel's subnets).
    Overlay(keelson_cli::overlayctl::OverlayArgs),
    /// The cluster-wide reboot lock (locksmithctl's commands and flags):
    /// status, lock [ID], unlock [ID], set-max N.
    #[command(disable_help_flag = true)]
    Locksmith {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let prog = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `locksmithctl status`, or `keelctl locksmith status`: locksmithctl's flags.
    if prog == "locksmithctl" {
        return keelson_cli::locksmith::ctl::main("locksmithctl", args[1..].to_vec());
    }
    if args.get(1).is_some_and(|a| a == "locksmith") {
        return keelson_cli::locksmith::ctl::main("keelctl locksmith", args[2..].to_vec());
    }
    // `update_engine_client -status`, or `keelctl update -status`: the original's flags.
    // fleetctl's verbs and flags: `fleetctl list-units`, `keelctl list-units`.
    if prog == "fleetctl" || keelson_cli::fleetctl::is_fleetctl_invocation(&args[1..]) {
        return keelson_cli::fleetctl::main(args[1..].to_vec());
    }
    if prog == "update_engine_client" {
        return keelson_cli::update::compat::main(args[1..].to_vec());
    }
    if args.get(1).is_some_and(|a| a == "update")
        && args
            .get(2)
            .is_some_and(|a| keelson_cli::update::compat::is_action_flag(&a.to_string_lossy()))
    {
        return keelson_cli::update::compat::main(args[2..].to_vec());
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Unit(cmd) => keelson_cli::unit::run(cmd),
        Command::Update(args) => keelson_cli::update::client::run(args),
        Command::Overlay(args) => keelson_cli::overlayctl::run(args),
        Command::Locksmith { args } => keelson_cli::locksmith::ctl::main("keelctl locksmith", args),
    }
}
