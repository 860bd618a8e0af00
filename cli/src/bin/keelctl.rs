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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Unit(cmd) => keelson_cli::unit::run(cmd),
    }
}
