//! `keelson update-server`: an Omaha update server with a JSON admin API.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use keelson_updater::config::rooted;
use keelson_updater::omaha::COREOS_APP_ID;
use keelson_updater::payload::TrustedKeys;
use keelson_updater::server::UpdateServer;

/// Flags of `keelson update-server` (also accepted Go-style).
#[derive(Debug, Parser)]
#[command(
    name = "keelson update-server",
    about = "Serve Omaha updates, hosted payloads and the admin API"
)]
pub struct ServerFlags {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, env = "KEELSON_UPDATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Root directory for the default data directory.
    #[arg(long, env = "KEELSON_ROOT", default_value = "/")]
    pub root: PathBuf,
    /// Where packages and groups are kept; default
    /// /var/lib/keelson/update-server under --root.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The Omaha application id served.
    #[arg(long, default_value = COREOS_APP_ID)]
    pub app_id: String,
    /// Public base URL for payload links; default http://<listen address>.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Accept uploads only when signed by a key in this directory (`*.pub`).
    #[arg(long)]
    pub upload_keys: Option<PathBuf>,
}

/// Runs the server with `args` (after `update-server`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut full = vec![OsString::from("keelson update-server")];
    full.extend(super::go_style(args));
    let flags = match ServerFlags::try_parse_from(full) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    super::init_logging();
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keelson update-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keelson update-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: ServerFlags) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&flags.listen)
        .await
        .with_context(|| format!("listening on {}", flags.listen))?;
    let addr = listener.local_addr()?;
    let base = flags
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let data_dir = flags
        .data_dir
        .clone()
        .unwrap_or_else(|| rooted(&flags.root, "/var/lib/keelson/update-server"));
    let srv = UpdateServer::open(&data_dir, &flags.app_id, &base)
        .with_context(|| format!("opening {}", data_dir.display()))?;
    if let Some(d) = &flags.upload_keys {
        srv.require_upload_signatures(TrustedKeys::load_dirs(std::slice::from_ref(d))?);
    }
    tracing::info!(%addr, data_dir = %data_dir.display(), packages = srv.packages().len(), "update server ready");
    // Scripts and tests read the address from the first line of stdout.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
    tokio::select! {
        r = keelson_updater::server::serve(srv, listener) => r.context("serving")?,
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => { s.recv().await; }
                Err(_) => std::future::pending::<()>().await,
            }
        } => {}
    }
    Ok(())
}
