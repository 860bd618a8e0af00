//! fleetctl's verbs for `keelctl` (and `fleetctl` through a symlink):
//! flags, `FLEETCTL_*` variables, columns and messages as fleetctl 1.0
//! prints them (scheduler.md §10). The work is done by
//! [`keelson_scheduler::FleetClient`] (etcd driver) or
//! [`keelson_scheduler::api::RemoteFleet`] (API driver); this module only
//! parses, waits and formats.

pub mod format;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use keelson_kv::client::{HttpKvClient, KvClient};
use keelson_scheduler::api::{self, ApiClient, RemoteFleet};
use keelson_scheduler::{
    DesiredState, FleetClient, Keys, MachineInfo, SubmitOptions, UnitFileInfo, UnitStateInfo,
};
use keelson_unitfile::UnitName;

use format::{machine_legend, or_dash, tabwrite};

/// fleetctl's global flags and commands.
#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    disable_help_subcommand = true,
    disable_version_flag = true,
    about = "fleetctl: drive a Keelson cluster's units"
)]
pub struct FleetctlArgs {
    /// fleet API URL (unix://, http://) or kv URLs with the etcd driver.
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_ENDPOINT",
        default_value = DEFAULT_ENDPOINT
    )]
    pub endpoint: String,
    /// `API` or `etcd`.
    #[arg(long, global = true, env = "FLEETCTL_DRIVER")]
    pub driver: Option<String>,
    #[arg(
        long = "etcd-key-prefix",
        global = true,
        env = "FLEETCTL_ETCD_KEY_PREFIX",
        default_value = "/_coreos.com/fleet/"
    )]
    pub etcd_key_prefix: String,
    /// Seconds per request.
    #[arg(
        long = "request-timeout",
        global = true,
        env = "FLEETCTL_REQUEST_TIMEOUT",
        default_value_t = 3.0
    )]
    pub request_timeout: f64,
    #[arg(long, global = true, env = "FLEETCTL_DEBUG")]
    pub debug: bool,
    #[arg(long, global = true)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<FleetCommand>,
}

#[derive(Debug, clap::Args)]
pub struct BlockFlags {
    /// Wait this many attempts (2 s each) for the state; 0 waits forever.
    #[arg(
        long = "block-attempts",
        env = "FLEETCTL_BLOCK_ATTEMPTS",
        default_value_t = 0
    )]
    pub block_attempts: u32,
    /// Do not wait for the state.
    #[arg(long = "no-block", env = "FLEETCTL_NO_BLOCK")]
    pub no_block: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListFlags {
    #[arg(long)]
    pub fields: Option<String>,
    #[arg(short = 'l', long, env = "FLEETCTL_FULL")]
    pub full: bool,
    #[arg(long = "no-legend", env = "FLEETCTL_NO_LEGEND")]
    pub no_legend: bool,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Upload units with desired state inactive.
    Submit {
        #[arg(long)]
        replace: bool,
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Submit if needed and schedule units (loaded).
    Load {
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        block: BlockFlags,
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Submit if needed, schedule and start units (launched).
    Start {
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        block: BlockFlags,
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// launched → loaded.
    Stop {
        #[command(flatten)]
        block: BlockFlags,
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Stop then start, one unit at a time.
    Restart {
        #[command(flatten)]
        block: BlockFlags,
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// → inactive.
    Unload {
        #[command(flatten)]
        block: BlockFlags,
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// Remove units from the cluster.
    Destroy {
        #[command(flatten)]
        block: BlockFlags,
        #[arg(required = true)]
        units: Vec<String>,
    },
    #[command(name = "list-units")]
    ListUnits {
        #[command(flatten)]
        list: ListFlags,
    },
    #[command(name = "list-unit-files")]
    ListUnitFiles {
        #[command(flatten)]
        list: ListFlags,
    },
    #[command(name = "list-machines")]
    ListMachines {
        #[command(flatten)]
        list: ListFlags,
    },
    /// Print a unit file as stored.
    Cat {
        unit: String,
    },
    /// The unit's state on its machine, with its last log lines.
    Status {
        #[arg(long = "ssh-port", default_value_t = 22)]
        ssh_port: u16,
        #[arg(required = true)]
        units: Vec<String>,
    },
    /// The unit's log, from the machine that runs it.
    Journal {
        #[arg(long, default_value_t = 10)]
        lines: usize,
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(long, default_value = "short")]
        output: String,
        #[arg(long)]
        sudo: bool,
        #[arg(long = "ssh-port", default_value_t = 22)]
        ssh_port: u16,
        unit: String,
    },
    Version,
}

/// The verbs, for `keelctl` to recognize a fleetctl invocation.
pub const VERBS: &[&str] = &[
    "submit",
    "load",
    "start",
    "stop",
    "restart",
    "unload",
    "destroy",
    "list-units",
    "list-unit-files",
    "list-machines",
    "cat",
    "status",
    "journal",
];

const GLOBAL_FLAGS: &[&str] = &[
    "endpoint",
    "driver",
    "etcd-key-prefix",
    "request-timeout",
    "debug",
];

/// Whether `keelctl ARGS` is a fleetctl command.
pub fn is_fleetctl_invocation(args: &[OsString]) -> bool {
    let Some(first) = args.first().map(|a| a.to_string_lossy().into_owned()) else {
        return false;
    };
    if VERBS.contains(&first.as_str()) {
        return true;
    }
    let flag = first.trim_start_matches('-');
    let flag = flag.split('=').next().unwrap_or_default();
    first.starts_with('-') && GLOBAL_FLAGS.contains(&flag)
}

/// fleetctl's default API socket.
const DEFAULT_ENDPOINT: &str = "unix:///var/run/fleet.sock";
/// Used instead when that socket does not exist (and no driver is forced):
/// the local kv with the etcd driver, which `keelson up` serves.
const FALLBACK_ENDPOINT: &str = "http://127.0.0.1:2379,http://127.0.0.1:4001";

/// The endpoint to use: the given one, except that fleetctl's default socket,
/// when absent, gives way to the local kv (where fleetctl would only fail
/// to connect).
fn effective_endpoint(a: &FleetctlArgs) -> String {
    if a.endpoint == DEFAULT_ENDPOINT
        && a.driver.is_none()
        && !Path::new("/var/run/fleet.sock").exists()
    {
        return FALLBACK_ENDPOINT.to_owned();
    }
    a.endpoint.clone()
}

/// The two drivers.
enum Driver {
    Api(RemoteFleet),
    Etcd(FleetClient, Arc<dyn KvClient>, Keys),
}

impl Driver {
    async fn open(a: &FleetctlArgs) -> anyhow::Result<Driver> {
        let endpoint = effective_endpoint(a);
        let first = endpoint.split(',').next().unwrap_or_default().to_owned();
        let driver = match &a.driver {
            Some(d) => d.to_ascii_lowercase(),
            // 0.11's auto-detection: an etcd port means the etcd driver.
            None if first.ends_with(":2379") || first.ends_with(":4001") => "etcd".into(),
            None => "api".into(),
        };
        match driver.as_str() {
            "api" => Ok(Driver::Api(RemoteFleet::new(ApiClient::new(&first)?))),
            "etcd" => {
                let kv: Arc<dyn KvClient> = Arc::new(
                    HttpKvClient::builder()
                        .endpoints(endpoint.split(',').map(str::to_owned))
                        .request_timeout(Duration::from_secs_f64(a.request_timeout.max(0.1)))
                        .build()?,
                );
                let keys = Keys::new(&a.etcd_key_prefix);
                let c = FleetClient::connect(kv.clone(), keys.clone()).await?;
                Ok(Driver::Etcd(c, kv, keys))
            }
            other => bail!("unknown driver {other:?}: expected API or etcd"),
        }
    }

    async fn submit(&self, n: &str, t: &str, o: SubmitOptions) -> anyhow::Result<()> {
        match self {
            Driver::Api(r) => Ok(r.submit(n, t, o).await?),
            Driver::Etcd(c, ..) => Ok(c.submit(n, t, o).await?),
        }
    }
    async fn load(&self, n: &str, t: Option<&str>, o: SubmitOptions) -> anyhow::Result<()> {
        match self {
            Driver::Api(r) => Ok(r.load(n, t, o).await?),
            Driver::Etcd(c, ..) => Ok(c.load(n, t, o).await?),
        }
    }
    async fn start(&self, n: &str, t: Option<&str>, o: SubmitOptions) -> anyhow::Result<()> {
        match self {
            Driver::Api(r) => Ok(r.start(n, t, o).await?),
            Driver::Etcd(c, ..) => Ok(c.start(n, t, o).await?),
        }
    }
    async fn stop(&self, n: &str) -> anyhow::Result<()> {
        match self {
            Driver::Api(r) => Ok(r.stop(n).await?),
            Driver::Etcd(c, ..) => Ok(c.stop(n).await?),
        }
    }
    async fn unload(&self, n: &str) -> anyhow::Result<()> {
        match self {
            Driver::Api(r) => Ok(r.unload(n).await?),
            Driver::Etcd(c, ..) => Ok(c.unload(n).await?),
        }
    }
    async fn destroy(&self, n: &str) -> anyhow::Result<()> {
        match self {
            Driver::Api(r) => Ok(r.destroy(n).await?),
            Driver::Etcd(c, ..) => Ok(c.destroy(n).await?),
        }
    }
    async fn unit_files(&self) -> anyhow::Result<Vec<UnitFileInfo>> {
        match self {
            Driver::Api(r) => Ok(r.list_unit_files().await?),
            Driver::Etcd(c, ..) => Ok(c.list_unit_files()),
        }
    }
    async fn unit(&self, n: &str) -> anyhow::Result<Option<UnitFileInfo>> {
        match self {
            Driver::Api(r) => Ok(r.unit(n).await?),
            Driver::Etcd(c, ..) => Ok(c.unit(n)),
        }
    }
    async fn units(&self) -> anyhow::Result<Vec<UnitStateInfo>> {
        match self {
            Driver::Api(r) => Ok(r.list_units().await?),
            Driver::Etcd(c, ..) => Ok(c.list_units()),
        }
    }
    async fn machines(&self) -> anyhow::Result<Vec<MachineInfo>> {
        match self {
            Driver::Api(r) => Ok(r.list_machines().await?),
            Driver::Etcd(c, ..) => Ok(c.list_machines()),
        }
    }
    async fn journal(
        &self,
        n: &str,
        lines: usize,
        machine: Option<&str>,
    ) -> anyhow::Result<api::WireJournal> {
        match self {
            Driver::Api(r) => Ok(r.journal(n, lines, machine).await?),
            Driver::Etcd(c, kv, keys) => {
                // Ask the API of the machine that runs the unit.
                let m = match machine {
                    Some(m) => m.to_owned(),
                    None => c
                        .unit(n)
                        .and_then(|u| u.target)
                        .or_else(|| {
                            c.list_units()
                                .into_iter()
                                .find(|s| s.name == n)
                                .map(|s| s.machine_id)
                        })
                        .ok_or_else(|| anyhow!("Unit {n} does not appear to be loaded."))?,
                };
                let url = kv
                    .get(&api::endpoint_key(keys, &m), Default::default())
                    .await?
                    .node()
                    .and_then(|x| x.value.clone())
                    .ok_or_else(|| anyhow!("machine {m} has not published an API endpoint"))?;
                let r = RemoteFleet::new(ApiClient::new(&url)?);
                Ok(r.journal(n, lines, Some(&m)).await?)
            }
        }
    }
}

/// Read the unit files named on the command line: a path, or for an
/// instance without a file, the template's file beside it (else `None`:
/// the registry's template is used).
fn read_unit(arg: &str) -> anyhow::Result<(String, Option<String>)> {
    let p = Path::new(arg);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| arg.to_owned());
    if p.exists() {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {arg}"))?;
        return Ok((name, Some(text)));
    }
    if let Some(t) = UnitName::parse(&name).ok().and_then(|n| n.template()) {
        let tp = p.with_file_name(t.as_str());
        if tp.exists() {
            let text = std::fs::read_to_string(&tp)
                .with_context(|| format!("reading {}", tp.display()))?;
            return Ok((name, Some(text)));
        }
    }
    Ok((name, None))
}

fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// Entry point: `args` without argv[0].
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut argv = vec![OsString::from("fleetctl")];
    argv.extend(crate::fleet_daemon::go_style(args));
    let parsed = match FleetctlArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if parsed.version || matches!(parsed.command, Some(FleetCommand::Version)) {
        println!("fleetctl version {}", api::FLEETD_VERSION);
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(parsed)) {
        Ok(code) => code,
        Err(e) if e.is::<InvalidField>() => ExitCode::from(1),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// An invalid `--fields` entry (already reported).
#[derive(Debug)]
struct InvalidField;

impl std::fmt::Display for InvalidField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid field")
    }
}

impl std::error::Error for InvalidField {}

/// What a blocking verb waits for.
#[derive(Clone, Copy, PartialEq)]
enum Want {
    Launched,
    Loaded,
    Inactive,
}

async fn wait_for(
    d: &Driver,
    name: &str,
    want: Want,
    attempts: u32,
    full: bool,
) -> anyhow::Result<Option<String>> {
    let deadline =
        (attempts > 0).then(|| tokio::time::Instant::now() + Duration::from_secs(2) * attempts);
    let mut last_reason: Option<String> = None;
    loop {
        let u = d.unit(name).await?;
        let states = d.units().await?;
        if let Some(u) = &u {
            let legend = u
                .target
                .as_ref()
                .map(|t| machine_legend(t, u.target_ip.as_deref().unwrap_or(""), full));
            let ok = match want {
                Want::Launched => {
                    u.current == Some(DesiredState::Launched)
                        && states.iter().any(|s| {
                            s.name == name
                                && Some(&s.machine_id) == u.target.as_ref()
                                && s.active == "active"
                        })
                }
                Want::Loaded => u.current == Some(DesiredState::Loaded),
                Want::Inactive => u.current.is_none_or(|c| c == DesiredState::Inactive),
            };
            if ok {
                return Ok(legend);
            }
            if u.reason.is_some() && u.reason != last_reason {
                eprintln!(
                    "Unit {name} not scheduled yet: {}",
                    u.reason.as_deref().unwrap_or_default()
                );
                last_reason = u.reason.clone();
            }
        } else if want == Want::Inactive {
            return Ok(None);
        }
        if deadline.is_some_and(|dl| tokio::time::Instant::now() >= dl) {
            let st = match want {
                Want::Launched => "launched",
                Want::Loaded => "loaded",
                Want::Inactive => "inactive",
            };
            bail!("Error waiting for unit states, exit status: timed out waiting for unit {name} to report state {st}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn run(a: FleetctlArgs) -> anyhow::Result<ExitCode> {
    let Some(cmd) = &a.command else {
        bail!("no command given; see fleetctl --help");
    };
    let d = match Driver::open(&a).await {
        Ok(d) => d,
        Err(e) => {
            if matches!(cmd, FleetCommand::ListMachines { .. }) {
                eprintln!("Error retrieving list of active machines from fleet API ({e:#})");
                eprintln!("Possible issues:");
                eprintln!("  etcd is unhealthy and/or lost quorum");
                eprintln!("  connection cannot be established to any etcd servers");
                return Ok(ExitCode::from(1));
            }
            return Err(e);
        }
    };
    match cmd {
        FleetCommand::Submit { replace, units } => {
            let opts = SubmitOptions {
                replace: *replace,
                ..Default::default()
            };
            for u in units {
                let (name, text) = read_unit(u)?;
                let text = text.ok_or_else(|| anyhow!("unable to find unit file {u}"))?;
                submit_one(&d, &name, &text, u, opts).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Load {
            replace,
            block,
            units,
        }
        | FleetCommand::Start {
            replace,
            block,
            units,
        } => {
            let start = matches!(cmd, FleetCommand::Start { .. });
            let opts = SubmitOptions {
                replace: *replace,
                ..Default::default()
            };
            let mut names = Vec::new();
            for u in units {
                let (name, text) = read_unit(u)?;
                if let Some(t) = &text {
                    submit_one(&d, &name, t, u, opts).await?;
                }
                if start {
                    d.start(&name, None, opts).await?;
                } else {
                    d.load(&name, None, opts).await?;
                }
                names.push(name);
            }
            let verb = if start { "start" } else { "load" };
            for name in &names {
                let global = d.unit(name).await?.is_some_and(|u| u.global);
                if global {
                    out(&format!("Triggered global unit {name} {verb}\n"));
                    continue;
                }
                if block.no_block {
                    out(&format!("Triggered unit {name} {verb}\n"));
                    continue;
                }
                let want = if start { Want::Launched } else { Want::Loaded };
                let legend = wait_for(&d, name, want, block.block_attempts, false).await?;
                let st = if start { "launched" } else { "loaded" };
                out(&format!(
                    "Unit {name} {st} on {}\n",
                    legend.unwrap_or_else(|| "-".into())
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Stop { block, units } => {
            let mut code = ExitCode::SUCCESS;
            let mut done = Vec::new();
            for u in units {
                let name = unit_arg(u);
                if let Err(e) = d.stop(&name).await {
                    eprintln!("{e:#}");
                    code = ExitCode::from(1);
                    continue;
                }
                if block.no_block {
                    out(&format!("Triggered unit {name} stop\n"));
                } else if !d.unit(&name).await?.is_some_and(|u| u.global) {
                    let l = wait_for(&d, &name, Want::Loaded, block.block_attempts, false).await?;
                    out(&format!(
                        "Unit {name} loaded on {}\n",
                        l.unwrap_or_else(|| "-".into())
                    ));
                }
                done.push(name);
            }
            if !done.is_empty() && !block.no_block {
                eprintln!("Successfully stopped units [{}].", done.join(" "));
            }
            Ok(code)
        }
        FleetCommand::Restart { block, units } => {
            for u in units {
                let name = unit_arg(u);
                d.stop(&name).await?;
                if !block.no_block {
                    wait_for(&d, &name, Want::Loaded, block.block_attempts, false).await?;
                }
                d.start(&name, None, SubmitOptions::default()).await?;
                if block.no_block {
                    out(&format!("Triggered unit {name} start\n"));
                } else {
                    let l =
                        wait_for(&d, &name, Want::Launched, block.block_attempts, false).await?;
                    out(&format!(
                        "Unit {name} launched on {}\n",
                        l.unwrap_or_else(|| "-".into())
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Unload { block, units } => {
            let mut done = Vec::new();
            for u in units {
                let name = unit_arg(u);
                d.unload(&name).await?;
                if block.no_block {
                    out(&format!("Triggered unit {name} unload\n"));
                } else {
                    wait_for(&d, &name, Want::Inactive, block.block_attempts, false).await?;
                    out(&format!("Unit {name} inactive\n"));
                }
                done.push(name);
            }
            if !block.no_block {
                eprintln!("Successfully unloaded units [{}].", done.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Destroy { units, .. } => {
            let mut code = ExitCode::SUCCESS;
            for u in units {
                let name = unit_arg(u);
                match d.destroy(&name).await {
                    Ok(()) => out(&format!("Destroyed {name}\n")),
                    Err(e) => {
                        eprintln!("Error destroying units: {e:#}");
                        code = ExitCode::from(1);
                    }
                }
            }
            Ok(code)
        }
        FleetCommand::ListUnits { list } => {
            let fields = parse_fields(list, "unit,machine,active,sub", &UNIT_FIELDS)?;
            let mut rows = header(&fields, list.no_legend);
            for s in d.units().await? {
                rows.push(
                    fields
                        .iter()
                        .map(|f| match f.as_str() {
                            "unit" => s.name.clone(),
                            "machine" => machine_legend(&s.machine_id, &s.public_ip, list.full),
                            "active" => or_dash(&s.active),
                            "sub" => or_dash(&s.sub),
                            "load" => or_dash(&s.load),
                            _ => short_hash(&s.hash, list.full),
                        })
                        .collect(),
                );
            }
            out(&tabwrite(&rows));
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::ListUnitFiles { list } => {
            let fields = parse_fields(list, "unit,hash,dstate,state,target", &UNIT_FILE_FIELDS)?;
            let mut rows = header(&fields, list.no_legend);
            for u in d.unit_files().await? {
                rows.push(
                    fields
                        .iter()
                        .map(|f| match f.as_str() {
                            "unit" => u.name.clone(),
                            "hash" => short_hash(&u.hash, list.full),
                            "dstate" => u.desired.map(|s| s.to_string()).unwrap_or("-".into()),
                            "state" => u.current.map(|s| s.to_string()).unwrap_or("-".into()),
                            "target" | "tmachine" => {
                                if u.global {
                                    "global".into()
                                } else {
                                    u.target
                                        .as_ref()
                                        .map(|t| {
                                            machine_legend(
                                                t,
                                                u.target_ip.as_deref().unwrap_or(""),
                                                list.full,
                                            )
                                        })
                                        .unwrap_or("-".into())
                                }
                            }
                            "global" => u.global.to_string(),
                            "desc" => or_dash(u.description.as_deref().unwrap_or("")),
                            _ => or_dash(u.reason.as_deref().unwrap_or("")),
                        })
                        .collect(),
                );
            }
            out(&tabwrite(&rows));
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::ListMachines { list } => {
            let fields = parse_fields(list, "machine,ip,metadata", &MACHINE_FIELDS)?;
            let machines = match d.machines().await {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("Error retrieving list of active machines from fleet API ({e:#})");
                    eprintln!("Possible issues:");
                    eprintln!("  etcd is unhealthy and/or lost quorum");
                    eprintln!("  connection cannot be established to any etcd servers");
                    return Ok(ExitCode::from(1));
                }
            };
            let mut rows = header(&fields, list.no_legend);
            for m in machines {
                rows.push(
                    fields
                        .iter()
                        .map(|f| match f.as_str() {
                            "machine" => machine_legend(&m.id, "", list.full),
                            "ip" => or_dash(&m.public_ip),
                            _ => or_dash(
                                &m.metadata
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(","),
                            ),
                        })
                        .collect(),
                );
            }
            out(&tabwrite(&rows));
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Cat { unit } => {
            let name = unit_arg(unit);
            match d.unit(&name).await? {
                Some(u) => {
                    out(&keelson_unitfile::normalize(&u.options));
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("Unit {name} not found");
                    Ok(ExitCode::from(1))
                }
            }
        }
        FleetCommand::Status { units, .. } => {
            let mut code = ExitCode::SUCCESS;
            for (i, u) in units.iter().enumerate() {
                if i > 0 {
                    out("\n");
                }
                let name = unit_arg(u);
                if !status_one(&d, &name).await? {
                    code = ExitCode::from(1);
                }
            }
            Ok(code)
        }
        FleetCommand::Journal {
            lines,
            follow,
            unit,
            ..
        } => {
            let name = unit_arg(unit);
            if !*follow {
                let j = d.journal(&name, *lines, None).await?;
                for l in j.lines {
                    out(&format!("{l}\n"));
                }
                return Ok(ExitCode::SUCCESS);
            }
            // Follow: print the last N lines, then whatever is appended.
            let all = d.journal(&name, usize::MAX >> 1, None).await?;
            let machine = all.machine_id.clone();
            for l in &all.lines[all.lines.len().saturating_sub(*lines)..] {
                out(&format!("{l}\n"));
            }
            let mut seen = all.lines.len();
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = d.journal(&name, usize::MAX >> 1, Some(&machine)).await?;
                if now.lines.len() < seen {
                    seen = 0; // log restarted
                }
                for l in &now.lines[seen..] {
                    out(&format!("{l}\n"));
                }
                seen = now.lines.len();
            }
        }
        FleetCommand::Version => Ok(ExitCode::SUCCESS),
    }
}

/// `status` for one unit; `false` when it is not loaded anywhere.
async fn status_one(d: &Driver, name: &str) -> anyhow::Result<bool> {
    let u = d.unit(name).await?;
    let states: Vec<UnitStateInfo> = d
        .units()
        .await?
        .into_iter()
        .filter(|s| s.name == name)
        .collect();
    let Some(s) = states
        .iter()
        .find(|s| u.as_ref().and_then(|u| u.target.as_ref()) == Some(&s.machine_id))
        .or(states.first())
    else {
        out(&format!("Unit {name} does not appear to be loaded.\n"));
        if let Some(reason) = u.and_then(|u| u.reason) {
            out(&format!("   Reason: {reason}\n"));
        }
        return Ok(false);
    };
    let desc = u
        .as_ref()
        .and_then(|u| u.description.clone())
        .map(|d| format!(" - {d}"))
        .unwrap_or_default();
    let dot = if s.active == "active" { "●" } else { "○" };
    let mut text = format!("{dot} {name}{desc}\n");
    text.push_str(&format!("   Loaded: {}\n", s.load));
    text.push_str(&format!("   Active: {} ({})\n", s.active, s.sub));
    text.push_str(&format!(
        "  Machine: {}\n",
        machine_legend(&s.machine_id, &s.public_ip, true)
    ));
    if let Some(reason) = u.as_ref().and_then(|u| u.reason.as_ref()) {
        text.push_str(&format!("   Reason: {reason}\n"));
    }
    match d.journal(name, 10, Some(&s.machine_id)).await {
        Ok(j) if !j.lines.is_empty() => {
            text.push('\n');
            for l in j.lines {
                text.push_str(&l);
                text.push('\n');
            }
        }
        Ok(_) => {}
        Err(e) => text.push_str(&format!("\n(log unavailable: {e:#})\n")),
    }
    out(&text);
    Ok(true)
}

async fn submit_one(
    d: &Driver,
    name: &str,
    text: &str,
    file: &str,
    opts: SubmitOptions,
) -> anyhow::Result<()> {
    match d.submit(name, text, opts).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let msg = format!("{e:#}");
            if msg.contains("differs from local unit file") {
                eprintln!(
                    "WARNING: Unit {name} in registry differs from local unit file {file}. Add --replace to override."
                );
                return Ok(());
            }
            Err(anyhow!(
                "Error creating units: error creating unit {name}: {msg}"
            ))
        }
    }
}

/// A unit named by path on the command line: its file name.
fn unit_arg(s: &str) -> String {
    Path::new(s)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| s.to_owned())
}

fn short_hash(h: &str, full: bool) -> String {
    if h.is_empty() {
        "-".into()
    } else if full {
        h.to_owned()
    } else {
        h.chars().take(7).collect()
    }
}

const UNIT_FIELDS: [&str; 6] = ["unit", "machine", "active", "sub", "load", "hash"];
const UNIT_FILE_FIELDS: [&str; 9] = [
    "unit", "hash", "dstate", "state", "target", "global", "desc", "tmachine", "reason",
];
const MACHINE_FIELDS: [&str; 3] = ["machine", "ip", "metadata"];

fn parse_fields(list: &ListFlags, default: &str, valid: &[&str]) -> anyhow::Result<Vec<String>> {
    let spec = list.fields.as_deref().unwrap_or(default);
    let mut out = Vec::new();
    for f in spec.split(',') {
        if !valid.contains(&f) {
            eprintln!("Invalid key in output format: {f:?}");
            return Err(anyhow!(InvalidField));
        }
        out.push(f.to_owned());
    }
    Ok(out)
}

fn header(fields: &[String], no_legend: bool) -> Vec<Vec<String>> {
    if no_legend {
        Vec::new()
    } else {
        vec![fields.iter().map(|f| f.to_uppercase()).collect()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> FleetctlArgs {
        let mut argv = vec!["fleetctl"];
        argv.extend(v);
        FleetctlArgs::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn absent_default_socket_gives_way_to_the_local_kv() {
        let default = args(&["--endpoint", DEFAULT_ENDPOINT, "list-units"]);
        let expected = if Path::new("/var/run/fleet.sock").exists() {
            DEFAULT_ENDPOINT
        } else {
            FALLBACK_ENDPOINT
        };
        assert_eq!(effective_endpoint(&default), expected);
        // A chosen endpoint, or a forced driver, is used as given.
        let other = args(&["--endpoint", "unix:///tmp/x.sock", "list-units"]);
        assert_eq!(effective_endpoint(&other), "unix:///tmp/x.sock");
        let forced = args(&[
            "--endpoint",
            DEFAULT_ENDPOINT,
            "--driver",
            "API",
            "list-units",
        ]);
        assert_eq!(effective_endpoint(&forced), DEFAULT_ENDPOINT);
    }
}
