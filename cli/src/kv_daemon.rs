//! `keelson kv` (also `etcd`/`etcd2` through a symlink): etcd's server
//! flags and `ETCD_*` environment variables mapped onto
//! [`keelson_kv::server::ServerConfig`] (reference kv.md §11).
//!
//! Go's flag syntax is accepted (`-name x`, `--name=x`, `-debug`,
//! `--debug=false`), a flag given on the command line wins over its
//! environment variable, unknown `ETCD_*` variables are only warned about,
//! and start-up errors use etcd's texts (`error verifying flags, ... See
//! 'etcd --help'.`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use keelson_kv::discovery::{member_data_exists, peer_urls_of, Discovery, DiscoveryError};
use keelson_kv::proxy::ProxyConfig;
use keelson_kv::server::{parse_url_list, ClusterState, KvServer, ServerConfig};

/// Go's `strconv.ParseBool`, for flags and `ETCD_*` booleans.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("parse error on {s:?}: invalid syntax")),
    }
}

/// etcd's server flags. Unsupported features are accepted so that existing
/// unit files start, and refused with a clear message when actually used.
#[derive(Debug, Parser)]
#[command(
    name = "etcd",
    disable_version_flag = true,
    disable_help_subcommand = true,
    about = "Keelson's etcd-compatible key-value member"
)]
pub struct KvFlags {
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default `${name}.etcd`).
    #[arg(long = "data-dir", env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long = "wal-dir", env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    #[arg(
        long = "snapshot-count",
        env = "ETCD_SNAPSHOT_COUNT",
        default_value_t = 100_000
    )]
    pub snapshot_count: u64,
    /// Entries kept behind a snapshot for slow followers (etcd 3.5's flag).
    #[arg(
        long = "experimental-snapshot-catchup-entries",
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub snapshot_catchup_entries: u64,
    /// Milliseconds.
    #[arg(
        long = "heartbeat-interval",
        env = "ETCD_HEARTBEAT_INTERVAL",
        default_value_t = 100
    )]
    pub heartbeat_interval: u64,
    /// Milliseconds.
    #[arg(
        long = "election-timeout",
        env = "ETCD_ELECTION_TIMEOUT",
        default_value_t = 1000
    )]
    pub election_timeout: u64,
    #[arg(
        long = "listen-peer-urls",
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    #[arg(
        long = "listen-client-urls",
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    #[arg(
        long = "max-snapshots",
        env = "ETCD_MAX_SNAPSHOTS",
        default_value_t = 5
    )]
    pub max_snapshots: usize,
    #[arg(long = "max-wals", env = "ETCD_MAX_WALS", default_value_t = 5)]
    pub max_wals: usize,
    #[arg(
        long = "quota-backend-bytes",
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0
    )]
    pub quota_backend_bytes: u64,
    #[arg(long, env = "ETCD_CORS", default_value = "*")]
    pub cors: String,
    #[arg(
        long = "initial-advertise-peer-urls",
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    #[arg(long = "initial-cluster", env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    #[arg(
        long = "initial-cluster-state",
        env = "ETCD_INITIAL_CLUSTER_STATE",
        default_value = "new"
    )]
    pub initial_cluster_state: String,
    #[arg(
        long = "initial-cluster-token",
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    #[arg(
        long = "advertise-client-urls",
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    #[arg(long, env = "ETCD_DISCOVERY")]
    pub discovery: Option<String>,
    #[arg(long = "discovery-srv", env = "ETCD_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    #[arg(
        long = "discovery-fallback",
        env = "ETCD_DISCOVERY_FALLBACK",
        default_value = "proxy"
    )]
    pub discovery_fallback: String,
    #[arg(long = "discovery-proxy", env = "ETCD_DISCOVERY_PROXY")]
    pub discovery_proxy: Option<String>,
    #[arg(long = "strict-reconfig-check", env = "ETCD_STRICT_RECONFIG_CHECK", value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub strict_reconfig_check: bool,
    #[arg(long, env = "ETCD_PROXY", default_value = "off")]
    pub proxy: String,
    #[arg(
        long = "proxy-failure-wait",
        env = "ETCD_PROXY_FAILURE_WAIT",
        default_value_t = 5000
    )]
    pub proxy_failure_wait: u64,
    #[arg(
        long = "proxy-refresh-interval",
        env = "ETCD_PROXY_REFRESH_INTERVAL",
        default_value_t = 30000
    )]
    pub proxy_refresh_interval: u64,
    #[arg(
        long = "proxy-dial-timeout",
        env = "ETCD_PROXY_DIAL_TIMEOUT",
        default_value_t = 1000
    )]
    pub proxy_dial_timeout: u64,
    #[arg(
        long = "proxy-write-timeout",
        env = "ETCD_PROXY_WRITE_TIMEOUT",
        default_value_t = 5000
    )]
    pub proxy_write_timeout: u64,
    #[arg(
        long = "proxy-read-timeout",
        env = "ETCD_PROXY_READ_TIMEOUT",
        default_value_t = 0
    )]
    pub proxy_read_timeout: u64,
    #[arg(long = "cert-file", env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    #[arg(long = "key-file", env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    #[arg(long = "client-cert-auth", env = "ETCD_CLIENT_CERT_AUTH", value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub client_cert_auth: bool,
    #[arg(long = "trusted-ca-file", env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    #[arg(long = "peer-cert-file", env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    #[arg(long = "peer-key-file", env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    #[arg(long = "peer-client-cert-auth", env = "ETCD_PEER_CLIENT_CERT_AUTH", value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    #[arg(long = "peer-trusted-ca-file", env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    #[arg(long, env = "ETCD_DEBUG", value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub debug: bool,
    #[arg(long = "log-package-levels", env = "ETCD_LOG_PACKAGE_LEVELS")]
    pub log_package_levels: Option<String>,
    #[arg(long, env = "ETCD_LOGGER")]
    pub logger: Option<String>,
    #[arg(long = "log-outputs", env = "ETCD_LOG_OUTPUTS")]
    pub log_outputs: Option<String>,
    #[arg(long = "force-new-cluster", env = "ETCD_FORCE_NEW_CLUSTER", value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub force_new_cluster: bool,
    /// Accepted for compatibility: Keelson always serves the v2 API.
    #[arg(long = "enable-v2", env = "ETCD_ENABLE_V2", value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub enable_v2: bool,
    /// Print the version and exit.
    #[arg(long, action = ArgAction::SetTrue)]
    pub version: bool,
    /// Prefix for every absolute path this daemon reads or writes.
    #[arg(long, env = "KEELSON_ROOT", default_value = "/")]
    pub root: PathBuf,
}

/// `--root DIR` applied to an absolute path.
pub fn rooted(root: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix("/") {
        Ok(rel) if root != Path::new("/") => root.join(rel),
        _ => p.to_path_buf(),
    }
}

/// Why the flags cannot start a member; printed as etcd prints it.
#[derive(Debug)]
pub struct FlagError(pub String);

fn given(m: &clap::ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
    )
}

impl KvFlags {
    /// Maps flags onto a server configuration, with etcd's checks.
    pub fn to_config(&self, m: &clap::ArgMatches) -> Result<ServerConfig, FlagError> {
        let e = |s: String| FlagError(s);
        if given(m, "listen_client_urls")
            && !given(m, "advertise_client_urls")
            && self.proxy == "off"
        {
            return Err(e(
                "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                    .into(),
            ));
        }
        if self.discovery_srv.is_some() {
            return Err(e(
                "DNS discovery (--discovery-srv) is not supported by this Keelson version yet"
                    .into(),
            ));
        }
        if self.discovery.is_some() && given(m, "initial_cluster") {
            return Err(e(
                "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"".into(),
            ));
        }
        if !matches!(self.proxy.as_str(), "off" | "on" | "readonly") {
            return Err(e(format!(
                "invalid value \"{}\" for flag -proxy: invalid value {:?} for flag -proxy. Valid values are [\"off\" \"readonly\" \"on\"]",
                self.proxy, self.proxy
            )));
        }
        if !matches!(self.discovery_fallback.as_str(), "proxy" | "exit") {
            return Err(e(format!(
                "invalid value \"{}\" for flag -discovery-fallback: invalid value {:?} for flag -discovery-fallback. Valid values are [\"exit\" \"proxy\"]",
                self.discovery_fallback, self.discovery_fallback
            )));
        }
        let tls = |cert: &Option<PathBuf>,
                   key: &Option<PathBuf>,
                   ca: &Option<PathBuf>,
                   auth: bool,
                   which: &str|
         -> Result<Option<keelson_kv::tls::TlsInfo>, FlagError> {
            match (cert, key) {
                (Some(c), Some(k)) => Ok(Some(keelson_kv::tls::TlsInfo {
                    cert_file: rooted(&self.root, c),
                    key_file: rooted(&self.root, k),
                    trusted_ca_file: ca.as_ref().map(|p| rooted(&self.root, p)),
                    client_cert_auth: auth,
                })),
                (None, None) if auth => Err(e(format!(
                    "--{which}client-cert-auth needs --{which}cert-file and --{which}key-file"
                ))),
                (None, None) => Ok(None),
                _ => Err(e(format!(
                    "both --{which}cert-file and --{which}key-file must be given"
                ))),
            }
        };
        let client_tls = tls(
            &self.cert_file,
            &self.key_file,
            &self.trusted_ca_file,
            self.client_cert_auth,
            "",
        )?;
        let peer_tls = tls(
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
            "peer-",
        )?;
        let state = match self.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(e(format!(
                    "invalid value \"{other}\" for flag -initial-cluster-state: invalid value \"{other}\" for flag -initial-cluster-state. Valid values are [\"new\" \"existing\"]"
                )))
            }
        };
        let urls = |s: &str| parse_url_list(s).map_err(|x| e(x.to_string()));
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)));
        let config = ServerConfig {
            name: self.name.clone(),
            data_dir: rooted(&self.root, &data_dir),
            wal_dir: self.wal_dir.as_ref().map(|w| rooted(&self.root, w)),
            listen_client_urls: urls(&self.listen_client_urls)?,
            advertise_client_urls: urls(&self.advertise_client_urls)?,
            listen_peer_urls: urls(&self.listen_peer_urls)?,
            initial_advertise_peer_urls: urls(&self.initial_advertise_peer_urls)?,
            // Under discovery the cluster is learnt at start, and etcd
            // derives the member IDs from the discovery URL as the token.
            initial_cluster: match &self.discovery {
                Some(_) => String::new(),
                None => self.initial_cluster.clone().unwrap_or_default(),
            },
            initial_cluster_token: match &self.discovery {
                Some(d) => d.trim().to_owned(),
                None => self.initial_cluster_token.clone(),
            },
            initial_cluster_state: state,
            client_tls,
            peer_tls,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            max_wals: self.max_wals,
            max_snapshots: self.max_snapshots,
            quota_backend_bytes: self.quota_backend_bytes,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            cors: self
                .cors
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            watch_history: keelson_kv::store::DEFAULT_HISTORY_CAPACITY,
            force_new_cluster: self.force_new_cluster,
        };
        // A proxy is no member: its name need not be in the cluster.
        if self.proxy == "off" {
            config.validate().map_err(|x| e(x.to_string()))?;
        }
        Ok(config)
    }
}

/// What parsing the command line decided.
pub enum Parsed {
    Run(Box<KvFlags>, clap::ArgMatches),
    /// Print this and exit with the code.
    Exit(String, u8),
}

/// Rewrites Go-style arguments for clap: `-flag` becomes `--flag`; an
/// unknown flag or a positional argument is refused with Go's/etcd's text.
fn normalize_args(args: Vec<OsString>) -> Result<Vec<OsString>, Parsed> {
    let mut cmd = KvFlags::command();
    cmd.build();
    let takes_value = |name: &str| -> Option<bool> {
        if name == "help" || name == "h" {
            return Some(false);
        }
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(name))
            .map(|a| {
                // Optional-value booleans take a value only with `=`.
                a.get_num_args().is_some_and(|n| n.min_values() > 0)
            })
    };
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        i += 1;
        if a == "--" {
            if let Some(next) = args.get(i) {
                return Err(Parsed::Exit(
                    format!(
                        "error verifying flags, '{}' is not a valid flag. See 'etcd --help'.",
                        next.to_string_lossy()
                    ),
                    1,
                ));
            }
            continue;
        }
        if !a.starts_with('-') || a == "-" {
            return Err(Parsed::Exit(
                format!("error verifying flags, '{a}' is not a valid flag. See 'etcd --help'."),
                1,
            ));
        }
        let body = a.trim_start_matches('-');
        let (name, has_eq) = match body.split_once('=') {
            Some((n, _)) => (n, true),
            None => (body, false),
        };
        match takes_value(name) {
            None => {
                return Err(Parsed::Exit(
                    format!("flag provided but not defined: -{name}"),
                    2,
                ))
            }
            Some(v) => {
                out.push(OsString::from(format!("--{body}")));
                if v && !has_eq {
                    if let Some(val) = args.get(i) {
                        out.push(val.clone());
                        i += 1;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Parses `etcd`-style arguments (without the program name).
pub fn parse(args: Vec<OsString>) -> Parsed {
    let args = match normalize_args(args) {
        Ok(a) => a,
        Err(p) => return p,
    };
    let mut full = vec![OsString::from("etcd")];
    full.extend(args);
    let m = match KvFlags::command().try_get_matches_from(full) {
        Ok(m) => m,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            return Parsed::Exit(e.render().to_string(), code);
        }
    };
    match KvFlags::from_arg_matches(&m) {
        Ok(f) => Parsed::Run(Box::new(f), m),
        Err(e) => Parsed::Exit(e.render().to_string(), 2),
    }
}

/// The `ETCD_*` variables set in the environment, as etcd reports them:
/// used, shadowed by a flag, or unknown.
pub fn report_environment(m: &clap::ArgMatches) -> Vec<(tracing::Level, String)> {
    let cmd = KvFlags::command();
    let mut out = Vec::new();
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("ETCD_"))
        .collect();
    vars.sort();
    for (k, v) in vars {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == k.as_str()));
        match arg {
            None => out.push((
                tracing::Level::WARN,
                format!("unrecognized environment variable {k}={v}"),
            )),
            Some(a) => {
                let id = a.get_id().as_str();
                if m.value_source(id) == Some(ValueSource::CommandLine) {
                    out.push((
                        tracing::Level::WARN,
                        format!("environment variable {k:?} is shadowed by the corresponding command-line flag"),
                    ));
                } else {
                    out.push((
                        tracing::Level::INFO,
                        format!("recognized and used environment variable {k}={v}"),
                    ));
                }
            }
        }
    }
    out
}

fn init_logging(debug: bool) {
    use std::io::IsTerminal;
    // openraft narrates every vote and append at INFO; an operator wants
    // Keelson's own lines, so the library is kept at WARN unless debugging.
    let default = if debug { "debug" } else { "info,openraft=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// `keelson kv`: runs a member until SIGTERM/SIGINT, then shuts down
/// gracefully and exits 0.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let (flags, matches) = match parse(args) {
        Parsed::Run(f, m) => (f, m),
        Parsed::Exit(msg, code) => {
            if code == 0 {
                print!("{msg}");
            } else {
                eprintln!("{}", msg.trim_end());
            }
            return ExitCode::from(code);
        }
    };
    if flags.version {
        println!(
            "etcd Version: 3.4.23 (keelson {})",
            env!("CARGO_PKG_VERSION")
        );
        println!("Git SHA: Not provided");
        println!("Go Version: none (Rust)");
        println!(
            "Go OS/Arch: {}/{}",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        return ExitCode::SUCCESS;
    }
    init_logging(flags.debug);
    for (level, msg) in report_environment(&matches) {
        if level == tracing::Level::WARN {
            tracing::warn!("{msg}");
        } else {
            tracing::info!("{msg}");
        }
    }
    let config = match flags.to_config(&matches) {
        Ok(c) => c,
        Err(FlagError(msg)) => {
            eprintln!("error verifying flags, {msg}. See 'etcd --help'.");
            return ExitCode::from(1);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    crate::node_runner::label_threads(&mut builder);
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run_mode(&flags, config))
}

/// Decides what this process is: a proxy (`--proxy`), a member whose
/// cluster is found by discovery, or a member as configured.
async fn run_mode(flags: &KvFlags, mut config: ServerConfig) -> ExitCode {
    if flags.proxy != "off" {
        return match proxy_peers(flags).await {
            Ok(peers) => run_proxy(flags, &config, peers).await,
            Err(msg) => {
                tracing::error!("{msg}");
                eprintln!("{msg}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(durl) = &flags.discovery {
        if member_data_exists(&config.data_dir) {
            tracing::info!("the data directory holds a member already; --discovery is ignored");
        } else if let Some(peers) = keelson_kv::proxy::stored_peers(&config.data_dir) {
            // An earlier start fell back to proxying: stay a proxy.
            return run_proxy(flags, &config, peers).await;
        } else {
            let joined = async {
                let d = Discovery::new(durl, flags.discovery_proxy.as_deref())?;
                let (id, _) = config
                    .validate()
                    .map_err(|e| DiscoveryError::Other(e.to_string()))?;
                d.join_cluster(id, &config.name, &config.initial_advertise_peer_urls)
                    .await
            };
            match joined.await {
                Ok(cluster) => {
                    tracing::info!(initial_cluster = %cluster, "discovery: the cluster is complete");
                    config.initial_cluster = cluster;
                }
                Err(DiscoveryError::Full { peers }) if flags.discovery_fallback == "proxy" => {
                    tracing::warn!("discovery cluster full, falling back to proxy");
                    return run_proxy(flags, &config, peer_urls_of(&peers)).await;
                }
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            }
        }
    }
    run(config).await
}

/// The peer URLs a proxy asks for the member list: discovery, else
/// `--initial-cluster`, else etcd's defaults.
async fn proxy_peers(flags: &KvFlags) -> Result<Vec<String>, String> {
    if let Some(durl) = &flags.discovery {
        let d =
            Discovery::new(durl, flags.discovery_proxy.as_deref()).map_err(|e| e.to_string())?;
        return d
            .peers()
            .await
            .map(|p| peer_urls_of(&p))
            .map_err(|e| e.to_string());
    }
    match &flags.initial_cluster {
        Some(c) if !c.trim().is_empty() => Ok(peer_urls_of(std::slice::from_ref(c))),
        _ => Ok(vec![
            "http://localhost:2380".into(),
            "http://localhost:7001".into(),
        ]),
    }
}

/// Runs a proxy until SIGTERM/SIGINT.
async fn run_proxy(flags: &KvFlags, config: &ServerConfig, peers: Vec<String>) -> ExitCode {
    let pc = ProxyConfig {
        listen_client_urls: config.listen_client_urls.clone(),
        peer_urls: peers,
        readonly: flags.proxy == "readonly",
        refresh_interval: Duration::from_millis(flags.proxy_refresh_interval),
        failure_wait: Duration::from_millis(flags.proxy_failure_wait),
        dial_timeout: Duration::from_millis(flags.proxy_dial_timeout),
        write_timeout: Duration::from_millis(flags.proxy_write_timeout),
        data_dir: Some(config.data_dir.clone()),
    };
    let handle = match keelson_kv::proxy::start(pc).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let what = crate::node_runner::shutdown_signal().await;
    tracing::info!("received {what} signal, shutting down");
    handle.shutdown().await;
    ExitCode::SUCCESS
}

async fn run(config: ServerConfig) -> ExitCode {
    let handle = match KvServer::start(config).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    tokio::select! {
        what = crate::node_runner::shutdown_signal() => tracing::info!("received {what} signal, shutting down"),
        _ = handle.removed() => tracing::warn!("the member has been permanently removed from the cluster. Exiting."),
    }
    match handle.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("shutdown: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn go_style_flags() {
        let Parsed::Run(f, m) = parse(os(&[
            "-name",
            "n1",
            "--data-dir=/d",
            "-debug",
            "-max-wals",
            "3",
        ])) else {
            panic!("should parse");
        };
        assert_eq!(f.name, "n1");
        assert_eq!(f.data_dir, Some(PathBuf::from("/d")));
        assert!(f.debug);
        assert_eq!(f.max_wals, 3);
        let c = f.to_config(&m).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        let Parsed::Run(f, _) = parse(os(&[
            "--debug=false",
            "--root",
            "/r",
            "--data-dir",
            "/var/lib/etcd2",
        ])) else {
            panic!("should parse");
        };
        assert!(!f.debug);
        assert_eq!(
            rooted(&f.root, f.data_dir.as_deref().unwrap()),
            PathBuf::from("/r/var/lib/etcd2")
        );
    }

    #[test]
    fn etcd_errors() {
        match parse(os(&["foo"])) {
            Parsed::Exit(m, 1) => assert_eq!(
                m,
                "error verifying flags, 'foo' is not a valid flag. See 'etcd --help'."
            ),
            _ => panic!("positional must fail"),
        }
        match parse(os(&["--bogus"])) {
            Parsed::Exit(m, 2) => assert_eq!(m, "flag provided but not defined: -bogus"),
            _ => panic!("unknown flag must fail"),
        }
        let Parsed::Run(f, m) = parse(os(&["--listen-client-urls", "http://127.0.0.1:1"])) else {
            panic!("should parse");
        };
        assert_eq!(
            f.to_config(&m).unwrap_err().0,
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        );
    }
}
