//! The updater's command lines: `keelson update-engine`, `keelson
//! update-server`, `keelctl update` and `update_engine_client`.

pub mod client;
pub mod compat;
pub mod engine_daemon;
pub mod server_daemon;

use std::ffi::OsString;

/// Go/gflags style for daemons: `-flag` and `-flag=value` become `--flag…`
/// (single-letter `-h` is left alone).
pub fn go_style(args: Vec<OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if s.starts_with('-') && !s.starts_with("--") && s.len() > 2 {
                OsString::from(format!("-{s}"))
            } else {
                a
            }
        })
        .collect()
}

/// Logs to stderr, info by default (`RUST_LOG` overrides).
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// A runtime for one command.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    crate::node_runner::label_threads(&mut builder);
    builder.build()
}
