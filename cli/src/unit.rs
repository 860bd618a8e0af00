//! `keelctl unit`: fleet's view of unit files, offline.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use keelson_unitfile::verify::{verify, Severity};
use keelson_unitfile::{Mode, Unit};

#[derive(Debug, Subcommand)]
pub enum UnitCommand {
    /// Print fleet's unit hash of each file as `HASH  FILE` (full SHA-1, as
    /// `fleetctl list-unit-files --full` shows it).
    Hash {
        /// Print the 7-digit short hash instead.
        #[arg(long)]
        short: bool,
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Print a file in the normalised form fleet stored and hashed.
    Normalize { file: String },
    /// Check syntax, the unit name, `[X-Fleet]` and exec lines; print
    /// `file:line:col: message` for each problem and fail if any is an error.
    Verify {
        #[arg(required = true)]
        files: Vec<String>,
    },
}

/// Runs a `keelctl unit` command, printing to stdout/stderr; the exit code
/// is 0 on success, 1 if any file had an error.
pub fn run(cmd: UnitCommand) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    match cmd {
        UnitCommand::Hash { short, files } => {
            for file in files {
                match read_unit(&file) {
                    Ok(unit) => {
                        let hash = unit.hash();
                        let shown = if short {
                            hash.short()
                        } else {
                            hash.to_string()
                        };
                        let _ = writeln!(out, "{shown}  {file}");
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
        }
        UnitCommand::Normalize { file } => match read_unit(&file) {
            Ok(unit) => {
                let _ = out.write_all(unit.normalized().as_bytes());
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        },
        UnitCommand::Verify { files } => {
            for file in files {
                let contents = match std::fs::read(&file) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{file}: cannot read: {e}");
                        failed = true;
                        continue;
                    }
                };
                for d in verify(&file, &contents) {
                    failed |= d.severity == Severity::Error;
                    let _ = writeln!(out, "{d}");
                }
            }
        }
    }
    let _ = out.flush();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn read_unit(file: &str) -> Result<Unit, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{file}: cannot read: {e}"))?;
    Unit::parse(&bytes, Mode::Fleet, Some(file)).map_err(|e| e.to_string())
}
