//! `keelctl update`: update_engine_client's verbs, signing, and the update
//! server's administration.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keelson_updater::admin::AdminClient;
use keelson_updater::api::{ApiClient, DEFAULT_SOCKET};
use keelson_updater::config::rooted;
use keelson_updater::engine::{Status, StatusReport};
use keelson_updater::payload::{sign_payload_file, write_keypair, SigningKey};
use keelson_updater::rollout::{Interval, Policy, Timezone};

/// Where the engine's socket is.
#[derive(Debug, Clone, Args)]
pub struct EngineSocket {
    /// The engine's local API socket (default /var/run/update-engine.sock under --root).
    #[arg(long, global = true, env = "KEELSON_UPDATE_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Root directory the engine runs under.
    #[arg(long, global = true, env = "KEELSON_ROOT", default_value = "/")]
    pub root: PathBuf,
}

impl EngineSocket {
    /// The client for this socket.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(
            self.socket
                .clone()
                .unwrap_or_else(|| rooted(&self.root, DEFAULT_SOCKET)),
        )
    }
}

/// `keelctl update …`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub socket: EngineSocket,
    #[command(subcommand)]
    pub command: UpdateCommand,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Ask the engine to check for an update now (and install it).
    CheckForUpdate,
    /// Print the engine's status block (LAST_CHECKED_TIME=…, CURRENT_OP=UPDATE_STATUS_…).
    Status,
    /// Print every status change (a progress bar while downloading on a terminal).
    Watch {
        /// Exit 0 once this status (e.g. UPDATE_STATUS_UPDATED_NEED_REBOOT) is reached.
        #[arg(long)]
        until: Option<String>,
    },
    /// Return the engine to idle after a failed or abandoned update.
    ResetStatus,
    /// Print whether a reboot is needed; exit 0 if it is, 1 if not.
    RebootNeeded,
    /// Generate an Ed25519 signing key: DIR/NAME.key (private) and DIR/NAME.pub.
    Keygen {
        /// Directory to write the key pair in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Base name of the key files.
        #[arg(long, default_value = "update")]
        name: String,
    },
    /// Sign a payload: writes PAYLOAD.manifest.json (size, SHA-256, release, signature).
    Sign {
        /// The private key written by keygen.
        #[arg(long)]
        key: PathBuf,
        /// The release version the payload installs.
        #[arg(long = "release", visible_alias = "version")]
        release: String,
        /// Output file (default PAYLOAD.manifest.json).
        #[arg(long)]
        out: Option<PathBuf>,
        payload: PathBuf,
    },
    /// Administer an update server.
    Server(ServerArgs),
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The update server's base URL.
    #[arg(
        long = "server",
        env = "KEELSON_UPDATE_SERVER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    #[command(subcommand)]
    pub command: ServerCommand,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Upload a payload with its signed manifest (default PAYLOAD.manifest.json).
    Upload {
        payload: PathBuf,
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// List the uploaded packages.
    Packages,
    /// Create, change, list, pause or resume groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Point a group at an uploaded version.
    Promote { group: String, version: String },
    /// List the machines the server has seen.
    Instances {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group (safe mode on unless --safe-mode=false).
    Create {
        id: String,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Change a group's rollout policy (unset flags keep their values).
    Set {
        id: String,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// List groups with their version, policy and rollout counters.
    List,
    /// Switch a group's updates off.
    Pause { id: String },
    /// Switch a group's updates back on.
    Resume { id: String },
}

/// Nebraska's rollout settings.
#[derive(Debug, Clone, Args)]
pub struct PolicyFlags {
    /// Grant at most this many updates per period (and in flight at once).
    #[arg(long)]
    pub max_updates: Option<u32>,
    /// The period, e.g. "1 hours" or "30 minutes".
    #[arg(long)]
    pub period: Option<Interval>,
    /// An update not finished within this long has timed out.
    #[arg(long)]
    pub update_timeout: Option<Interval>,
    /// Grant only Monday–Friday 09:00–17:00 in --timezone.
    #[arg(long)]
    pub office_hours: Option<bool>,
    /// The group's time zone as a UTC offset, e.g. +02:00.
    #[arg(long)]
    pub timezone: Option<Timezone>,
    /// One canary per new version; pause on failure or timeout.
    #[arg(long)]
    pub safe_mode: Option<bool>,
    /// Updates on or off.
    #[arg(long)]
    pub updates_enabled: Option<bool>,
}

impl PolicyFlags {
    fn apply(&self, mut p: Policy) -> Policy {
        if let Some(v) = self.max_updates {
            p.max_updates_per_period = v;
        }
        if let Some(v) = self.period {
            p.period_interval = v;
        }
        if let Some(v) = self.update_timeout {
            p.update_timeout = v;
        }
        if let Some(v) = self.office_hours {
            p.office_hours = v;
        }
        if let Some(v) = self.timezone {
            p.timezone = v;
        }
        if let Some(v) = self.safe_mode {
            p.safe_mode = v;
        }
        if let Some(v) = self.updates_enabled {
            p.updates_enabled = v;
        }
        p
    }
}

/// Runs `keelctl update …`.
pub fn run(args: UpdateArgs) -> ExitCode {
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keelctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keelctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let engine = args.socket.client();
    let mut out = std::io::stdout().lock();
    match args.command {
        UpdateCommand::CheckForUpdate => {
            engine.check_for_update().await?;
            writeln!(out, "Update check requested.")?;
        }
        UpdateCommand::Status => {
            out.write_all(engine.status().await?.render().as_bytes())?;
        }
        UpdateCommand::ResetStatus => {
            engine.reset_status().await?;
            writeln!(out, "Status reset.")?;
        }
        UpdateCommand::RebootNeeded => {
            let r = engine.reboot_needed().await?;
            writeln!(out, "REBOOT_NEEDED={}", r.reboot_needed)?;
            writeln!(out, "NEW_VERSION={}", r.new_version)?;
            if !r.reboot_needed {
                return Ok(ExitCode::from(1));
            }
        }
        UpdateCommand::Watch { until } => {
            let until = until
                .map(|u| {
                    Status::parse(&u).ok_or_else(|| {
                        anyhow::anyhow!("unknown status {u:?}: expected an UPDATE_STATUS_* name")
                    })
                })
                .transpose()?;
            drop(out);
            return watch(&engine, until).await;
        }
        UpdateCommand::Keygen { dir, name } => {
            let id = write_keypair(&dir, &name)?;
            writeln!(
                out,
                "wrote {} and {}\nkey id {id}",
                dir.join(format!("{name}.key")).display(),
                dir.join(format!("{name}.pub")).display()
            )?;
        }
        UpdateCommand::Sign {
            key,
            release,
            out: dest,
            payload,
        } => {
            let key = SigningKey::load(&key)?;
            let release = release
                .parse()
                .with_context(|| format!("bad release version {release:?}"))?;
            let manifest = sign_payload_file(&key, &release, &payload)?;
            let dest = dest.unwrap_or_else(|| manifest_path(&payload));
            std::fs::write(&dest, &manifest)
                .with_context(|| format!("writing {}", dest.display()))?;
            writeln!(out, "wrote {}", dest.display())?;
        }
        UpdateCommand::Server(s) => server(&AdminClient::new(&s.url), s.command, &mut out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn manifest_path(payload: &Path) -> PathBuf {
    let mut s = payload.as_os_str().to_owned();
    s.push(".manifest.json");
    PathBuf::from(s)
}

async fn server(
    admin: &AdminClient,
    cmd: ServerCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match cmd {
        ServerCommand::Upload { payload, manifest } => {
            let manifest = manifest.unwrap_or_else(|| manifest_path(&payload));
            let p = admin.upload(&payload, &manifest).await?;
            writeln!(
                out,
                "uploaded {} {} ({} bytes, sha256 {})",
                p.version, p.name, p.size, p.sha256
            )?;
        }
        ServerCommand::Packages => {
            writeln!(out, "VERSION\tNAME\tSIZE\tSHA256")?;
            for p in admin.packages().await? {
                writeln!(out, "{}\t{}\t{}\t{}", p.version, p.name, p.size, p.sha256)?;
            }
        }
        ServerCommand::Promote { group, version } => {
            let g = admin.promote(&group, &version).await?;
            writeln!(
                out,
                "group {} now serves {}",
                g.id,
                g.version.unwrap_or_default()
            )?;
        }
        ServerCommand::Instances { json } => {
            let list = admin.instances().await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                writeln!(out, "ID\tVERSION\tGROUP\tSTATUS\tLAST_ERROR")?;
                for i in list {
                    let status = serde_json::to_value(i.status)?;
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}",
                        i.id,
                        i.version,
                        i.group,
                        status.as_str().unwrap_or("?"),
                        i.last_error
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into())
                    )?;
                }
            }
        }
        ServerCommand::Group(g) => match g {
            GroupCommand::Create { id, policy } => {
                let g = admin
                    .create_group(&id, Some(policy.apply(Policy::default())))
                    .await?;
                writeln!(out, "created group {}", g.id)?;
            }
            GroupCommand::Set { id, policy } => {
                let cur = admin.group(&id).await?;
                let g = admin.set_policy(&id, &policy.apply(cur.policy)).await?;
                writeln!(out, "{}", serde_json::to_string(&g.policy)?)?;
            }
            GroupCommand::Pause { id } => {
                admin.set_paused(&id, true).await?;
                writeln!(out, "paused group {id}")?;
            }
            GroupCommand::Resume { id } => {
                admin.set_paused(&id, false).await?;
                writeln!(out, "resumed group {id}")?;
            }
            GroupCommand::List => {
                writeln!(out, "GROUP\tVERSION\tUPDATES\tMAX/PERIOD\tTIMEOUT\tSAFE\tIN_FLIGHT\tTIMED_OUT\tNOTE")?;
                for g in admin.groups().await? {
                    let p = &g.policy;
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}/{}\t{}\t{}\t{}\t{}\t{}",
                        g.id,
                        g.version.as_deref().unwrap_or("-"),
                        if p.updates_enabled { "on" } else { "off" },
                        p.max_updates_per_period,
                        p.period_interval,
                        p.update_timeout,
                        p.safe_mode,
                        g.updates_in_progress,
                        g.updates_timed_out,
                        g.paused_reason.as_deref().unwrap_or("-")
                    )?;
                }
            }
        },
    }
    Ok(())
}

fn bar(s: &StatusReport) -> String {
    const W: usize = 30;
    let p = s.progress.clamp(0.0, 1.0);
    let filled = (p * W as f64).round() as usize;
    format!(
        "\r[{}{}] {:5.1}% {} {} of {} MiB",
        "#".repeat(filled),
        "-".repeat(W - filled),
        p * 100.0,
        s.new_version,
        (p * s.new_size as f64 / 1048576.0).round() as u64,
        s.new_size.div_ceil(1 << 20)
    )
}

async fn watch(engine: &ApiClient, until: Option<Status>) -> anyhow::Result<ExitCode> {
    let tty = std::io::stdout().is_terminal();
    let mut w = engine.watch().await?;
    let mut out = std::io::stdout();
    let mut in_bar = false;
    let mut last: Option<StatusReport> = None;
    while let Some(s) = w.next().await? {
        if tty && s.current_operation == Status::Downloading {
            write!(out, "{}", bar(&s))?;
            in_bar = true;
        } else if !tty
            && s.current_operation == Status::Downloading
            && last
                .as_ref()
                .is_some_and(|l| l.current_operation == Status::Downloading)
            && (s.progress * 10.0).floor()
                == (last.as_ref().map(|l| l.progress).unwrap_or(0.0) * 10.0).floor()
        {
            // Not a terminal: one block per 10% of download progress.
        } else {
            if in_bar {
                writeln!(out)?;
                in_bar = false;
            }
            if tty {
                writeln!(
                    out,
                    "{}  {}  {}",
                    s.current_operation, s.new_version, s.progress
                )?;
            } else {
                writeln!(out, "{}", s.render())?;
            }
        }
        out.flush()?;
        let done = until == Some(s.current_operation);
        last = Some(s);
        if done {
            if in_bar {
                writeln!(out)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    if in_bar {
        writeln!(out)?;
    }
    if until.is_some() {
        bail!("the update engine went away before reaching the status");
    }
    Ok(ExitCode::SUCCESS)
}
