//! etcdctl's command line, parsed the way etcdctl parses it.
//!
//! etcdctl is built on urfave/cli v1 and Go's `flag` package, whose rules
//! scripts depend on without knowing it: `-flag` and `--flag` are the same,
//! `-flag=value` and `-flag value` both work, flags stop at the first
//! argument that is not one, and command flags written after the arguments
//! are moved in front of them first (only flags the command knows; a bool flag
//! drags the next non-flag word along, which is why `watch -r /k -f` does not
//! watch forever). [`normalise`] applies exactly those rules and produces a
//! canonical argument list that the clap definitions below then parse, so the
//! flags have one typed definition with their environment variables.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Str,
    Int,
    Duration,
}

struct Flag {
    names: &'static [&'static str],
    kind: Kind,
}

const fn f(names: &'static [&'static str], kind: Kind) -> Flag {
    Flag { names, kind }
}

const HELP: Flag = f(&["help", "h"], Kind::Bool);

const GLOBAL_FLAGS: &[Flag] = &[
    f(&["debug"], Kind::Bool),
    f(&["no-sync"], Kind::Bool),
    f(&["output", "o"], Kind::Str),
    f(&["discovery-srv", "D"], Kind::Str),
    f(&["insecure-discovery"], Kind::Bool),
    f(&["peers", "C"], Kind::Str),
    f(&["endpoint"], Kind::Str),
    f(&["endpoints"], Kind::Str),
    f(&["cert-file"], Kind::Str),
    f(&["key-file"], Kind::Str),
    f(&["ca-file"], Kind::Str),
    f(&["username", "u"], Kind::Str),
    f(&["timeout"], Kind::Duration),
    f(&["total-timeout"], Kind::Duration),
    HELP,
    f(&["version", "v"], Kind::Bool),
];

const TTL: Flag = f(&["ttl"], Kind::Int);
const GET_FLAGS: &[Flag] = &[
    f(&["sort"], Kind::Bool),
    f(&["quorum", "q"], Kind::Bool),
    HELP,
];
const LS_FLAGS: &[Flag] = &[
    f(&["sort"], Kind::Bool),
    f(&["recursive", "r"], Kind::Bool),
    f(&["p"], Kind::Bool),
    f(&["quorum", "q"], Kind::Bool),
    HELP,
];
const SET_FLAGS: &[Flag] = &[
    TTL,
    f(&["swap-with-value"], Kind::Str),
    f(&["swap-with-index"], Kind::Int),
    HELP,
];
const MK_FLAGS: &[Flag] = &[f(&["in-order"], Kind::Bool), TTL, HELP];
const TTL_FLAGS: &[Flag] = &[TTL, HELP];
const RM_FLAGS: &[Flag] = &[
    f(&["dir"], Kind::Bool),
    f(&["recursive", "r"], Kind::Bool),
    f(&["with-value"], Kind::Str),
    f(&["with-index"], Kind::Int),
    HELP,
];
const HELP_ONLY: &[Flag] = &[HELP];
const WATCH_FLAGS: &[Flag] = &[
    f(&["forever", "f"], Kind::Bool),
    f(&["after-index"], Kind::Int),
    f(&["recursive", "r"], Kind::Bool),
    HELP,
];
const EXEC_WATCH_FLAGS: &[Flag] = &[
    f(&["after-index"], Kind::Int),
    f(&["recursive", "r"], Kind::Bool),
    HELP,
];
const HEALTH_FLAGS: &[Flag] = &[f(&["forever", "f"], Kind::Bool), HELP];
const BACKUP_FLAGS: &[Flag] = &[
    f(&["data-dir"], Kind::Str),
    f(&["wal-dir"], Kind::Str),
    f(&["backup-dir"], Kind::Str),
    f(&["backup-wal-dir"], Kind::Str),
    f(&["with-v3"], Kind::Bool),
    HELP,
];
const MIGRATE_FLAGS: &[Flag] = &[
    f(&["from"], Kind::Str),
    f(&["to"], Kind::Str),
    f(&["prefix"], Kind::Str),
    f(&["hidden"], Kind::Str),
    HELP,
];

/// The flags of each command (urfave adds `--help, -h` to all of them).
fn command_flags(cmd: &str) -> Option<&'static [Flag]> {
    Some(match cmd {
        "get" => GET_FLAGS,
        "ls" => LS_FLAGS,
        "set" => SET_FLAGS,
        "mk" => MK_FLAGS,
        "mkdir" | "setdir" | "update" | "updatedir" => TTL_FLAGS,
        "rm" => RM_FLAGS,
        "watch" => WATCH_FLAGS,
        "exec-watch" => EXEC_WATCH_FLAGS,
        "cluster-health" => HEALTH_FLAGS,
        "backup" => BACKUP_FLAGS,
        "migrate" => MIGRATE_FLAGS,
        "rmdir" | "member" | "member list" | "member add" | "member remove" | "member update" => {
            HELP_ONLY
        }
        _ => return None,
    })
}

/// Commands etcdctl has that kvctl does not implement (yet).
pub const UNSUPPORTED: &[&str] = &["user", "role", "auth", "import"];

/// The result of reading the command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Normalised {
    /// Canonical arguments for [`Cli`] (program name first).
    Run(Vec<String>),
    /// Print the global help (`None`) or a command's help, exit 0.
    Help(Option<String>),
    /// Print the version, exit 0.
    Version,
    /// Print `stdout` and `stderr` and exit with `code` (usage errors).
    Exit {
        stdout: String,
        stderr: String,
        code: u8,
    },
}

/// One parsed flag: canonical long name and value (`None` for bools).
type Parsed = Vec<(&'static str, Option<String>)>;

enum GoFlagError {
    Help,
    Usage(String),
}

/// Go's `flag.FlagSet.Parse`: flags up to the first non-flag (a `--` is
/// consumed), returning them and the remaining arguments.
fn go_parse(flags: &[Flag], args: &[String]) -> Result<(Parsed, Vec<String>), GoFlagError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        if s.len() < 2 || !s.starts_with('-') {
            break;
        }
        let mut name = &s[1..];
        if let Some(rest) = name.strip_prefix('-') {
            if rest.is_empty() {
                i += 1;
                break;
            }
            name = rest;
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(GoFlagError::Usage(format!("bad flag syntax: {s}")));
        }
        i += 1;
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        let Some(flag) = flags.iter().find(|f| f.names.contains(&name)) else {
            return Err(GoFlagError::Usage(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let canonical = flag.names[0];
        if flag.kind == Kind::Bool {
            let on = match inline.as_deref() {
                None => true,
                Some(v) => parse_go_bool(v).ok_or_else(|| {
                    GoFlagError::Usage(format!(
                        "invalid boolean value {} for -{name}: parse error",
                        go_quote(v)
                    ))
                })?,
            };
            if canonical == "help" && on {
                return Err(GoFlagError::Help);
            }
            if on {
                out.push((canonical, None));
            } else {
                out.retain(|(n, _)| *n != canonical);
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None if i < args.len() => {
                i += 1;
                args[i - 1].clone()
            }
            None => {
                return Err(GoFlagError::Usage(format!(
                    "flag needs an argument: -{name}"
                )))
            }
        };
        let bad = || {
            GoFlagError::Usage(format!(
                "invalid value {} for flag -{name}: parse error",
                go_quote(&value)
            ))
        };
        let value = match flag.kind {
            Kind::Int => parse_go_int(&value).ok_or_else(bad)?.to_string(),
            Kind::Duration => {
                parse_go_duration(&value).map_err(|_| bad())?;
                value.clone()
            }
            _ => value.clone(),
        };
        out.retain(|(n, _)| *n != canonical);
        out.push((canonical, Some(value)));
    }
    Ok((out, args[i..].to_vec()))
}

/// urfave/cli 1.22 `reorderArgs`: known flags (and a following non-flag
/// word) move in front of the other arguments; `--` stops the reordering.
fn reorder(flags: &[Flag], args: &[String]) -> Vec<String> {
    let mut reordered = Vec::new();
    let mut remaining = Vec::new();
    let mut next_may_be_value = false;
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            remaining.extend_from_slice(&args[i..]);
            break;
        } else if next_may_be_value && !arg.starts_with('-') {
            next_may_be_value = false;
            reordered.push(arg.clone());
        } else if is_known_flag(flags, arg) {
            reordered.push(arg.clone());
            next_may_be_value = !arg.contains('=');
        } else {
            remaining.push(arg.clone());
        }
    }
    reordered.extend(remaining);
    reordered
}

fn is_known_flag(flags: &[Flag], arg: &str) -> bool {
    if arg == "-" || arg == "--" || !arg.starts_with('-') {
        return false;
    }
    let name = arg.strip_prefix("--").unwrap_or(&arg[1..]);
    let name = name.split('=').next().unwrap_or("");
    flags.iter().any(|f| f.names.contains(&name))
}

fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/`0`
/// prefixes, underscores only with a prefix.
pub fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.replace('_', ""))
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.replace('_', ""))
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.replace('_', ""))
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].replace('_', ""))
    } else {
        if lower.contains('_') {
            return None;
        }
        (10, lower)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Go's `time.ParseDuration` (`2s`, `1m30s`, `500ms`, `1.5h`, `0`).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration {}", go_quote(s));
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let num: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_end..];
        total += num * unit;
    }
    if neg {
        return Ok(Duration::ZERO);
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// Go's `%q` for the ASCII strings that appear in usage errors.
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// Read etcdctl's command line. `prog` is the name to print in messages.
pub fn normalise(prog: &str, args: &[String]) -> Normalised {
    let usage_err = |msg: String, help: String, dot: bool| Normalised::Exit {
        stdout: format!(
            "Incorrect Usage{} {msg}\n\n{help}",
            if dot { "." } else { ":" }
        ),
        stderr: format!("{msg}\n"),
        code: 1,
    };
    let global_help = || super::help::global_help(prog);
    let (globals, rest) = match go_parse(GLOBAL_FLAGS, args) {
        Ok(x) => x,
        Err(GoFlagError::Help) => return Normalised::Help(None),
        Err(GoFlagError::Usage(m)) => return usage_err(m, global_help(), true),
    };
    if globals.iter().any(|(n, _)| *n == "version") {
        return Normalised::Version;
    }
    let Some(cmd) = rest.first() else {
        return Normalised::Help(None);
    };
    let mut cmd = cmd.clone();
    let mut cmd_args = &rest[1..];
    match cmd.as_str() {
        "help" | "h" => {
            return match cmd_args.first() {
                None => Normalised::Help(None),
                Some(c) if command_flags(c).is_some() => Normalised::Help(Some(c.clone())),
                Some(c) => no_topic(c),
            };
        }
        "member" => {
            // `member` is an app of its own: its flags, then a subcommand.
            let (_, sub_rest) = match go_parse(HELP_ONLY, cmd_args) {
                Ok(x) => x,
                Err(GoFlagError::Help) => return Normalised::Help(Some(cmd)),
                Err(GoFlagError::Usage(m)) => {
                    return usage_err(m, super::help::command_help_for(prog, "member"), false)
                }
            };
            match sub_rest.first().map(String::as_str) {
                None => return Normalised::Help(Some(cmd)),
                Some(sub @ ("list" | "add" | "remove" | "update")) => {
                    cmd = format!("member {sub}");
                    let pos = args.len() - sub_rest.len() + 1;
                    cmd_args = &args[pos..];
                }
                Some("help" | "h") => return Normalised::Help(Some(cmd)),
                Some(other) => return no_topic(other),
            }
        }
        c if UNSUPPORTED.contains(&c) => {
            return Normalised::Exit {
                stdout: String::new(),
                stderr: format!("Error:  the {c:?} command is not supported by {prog}\n"),
                code: 1,
            }
        }
        _ => {}
    }
    let Some(flags) = command_flags(&cmd) else {
        return no_topic(&cmd);
    };
    let reordered = reorder(flags, cmd_args);
    let (cflags, positional) = match go_parse(flags, &reordered) {
        Ok(x) => x,
        Err(GoFlagError::Help) => return Normalised::Help(Some(cmd)),
        Err(GoFlagError::Usage(m)) => {
            return usage_err(m, super::help::command_help_for(prog, &cmd), false)
        }
    };
    let mut out = vec![prog.to_string()];
    push_flags(&mut out, &globals);
    out.extend(cmd.split(' ').map(str::to_string));
    push_flags(&mut out, &cflags);
    out.push("--".into());
    out.extend(positional);
    Normalised::Run(out)
}

fn no_topic(c: &str) -> Normalised {
    Normalised::Exit {
        stdout: String::new(),
        stderr: format!("No help topic for '{c}'\n"),
        code: 3,
    }
}

fn push_flags(out: &mut Vec<String>, flags: &Parsed) {
    for (name, value) in flags {
        match value {
            // `-p` is etcdctl's only one-letter flag without a long name.
            None if name.len() == 1 => out.push(format!("-{name}")),
            None => out.push(format!("--{name}")),
            Some(v) => out.push(format!("--{name}={v}")),
        }
    }
}

fn go_duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s)
}

/// The canonical command line (see [`normalise`]).
#[derive(Debug, Parser)]
#[command(
    name = "kvctl",
    about = "A simple command line client for etcd (v2 API).",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Output cURL commands which can be used to reproduce the request.
    #[arg(long)]
    pub debug: bool,
    /// Don't synchronize cluster information before sending request.
    #[arg(long)]
    pub no_sync: bool,
    /// Output response in the given format (simple, extended or json).
    #[arg(long, short = 'o', default_value = "simple")]
    pub output: String,
    /// Domain name to query for SRV records describing cluster endpoints.
    #[arg(long, short = 'D', env = "ETCDCTL_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    /// Accept insecure SRV records describing cluster endpoints.
    #[arg(long)]
    pub insecure_discovery: bool,
    /// Deprecated: use --endpoints.
    #[arg(long, short = 'C', env = "ETCDCTL_PEERS")]
    pub peers: Option<String>,
    /// Deprecated: use --endpoints.
    #[arg(long, env = "ETCDCTL_ENDPOINT")]
    pub endpoint: Option<String>,
    /// A comma-delimited list of machine addresses in the cluster.
    #[arg(long, env = "ETCDCTL_ENDPOINTS")]
    pub endpoints: Option<String>,
    /// Identify HTTPS client using this SSL certificate file.
    #[arg(long, env = "ETCDCTL_CERT_FILE")]
    pub cert_file: Option<String>,
    /// Identify HTTPS client using this SSL key file.
    #[arg(long, env = "ETCDCTL_KEY_FILE")]
    pub key_file: Option<String>,
    /// Verify certificates of HTTPS-enabled servers using this CA bundle.
    #[arg(long, env = "ETCDCTL_CA_FILE")]
    pub ca_file: Option<String>,
    /// Provide username[:password] and prompt if password is not supplied.
    #[arg(long, short = 'u', env = "ETCDCTL_USERNAME")]
    pub username: Option<String>,
    /// Connection timeout per request.
    #[arg(long, default_value = "2s", value_parser = go_duration)]
    pub timeout: Duration,
    /// Timeout for the command execution (except watch).
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub total_timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Retrieve the value of a key.
    Get(GetArgs),
    /// Retrieve a directory.
    Ls(LsArgs),
    /// Set the value of a key.
    Set(SetArgs),
    /// Make a new key with a given value.
    Mk(MkArgs),
    /// Make a new directory.
    Mkdir(TtlArgs),
    /// Create a new directory or update an existing directory TTL.
    Setdir(TtlArgs),
    /// Update an existing key with a given value.
    Update(TtlArgs),
    /// Update an existing directory.
    Updatedir(TtlArgs),
    /// Remove a key or a directory.
    Rm(RmArgs),
    /// Removes the key if it is an empty directory or a key-value pair.
    Rmdir(Positional),
    /// Watch a key for changes.
    Watch(WatchArgs),
    /// Watch a key for changes and exec an executable.
    ExecWatch(ExecWatchArgs),
    /// Member add, remove and list subcommands.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Check the health of the etcd cluster.
    ClusterHealth(ClusterHealthArgs),
    /// Backup an etcd directory.
    Backup(BackupArgs),
    /// Copy a live etcd v2 keyspace (TTLs, hidden keys) into another cluster.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Client URL(s) of the source etcd.
    #[arg(long, default_value = "")]
    pub from: String,
    /// Client URL(s) of the destination cluster.
    #[arg(long, default_value = "")]
    pub to: String,
    /// Copy only this subtree.
    #[arg(long, default_value = "/")]
    pub prefix: String,
    /// Extra hidden keys or directories to copy (comma-separated).
    #[arg(long, default_value = "")]
    pub hidden: String,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Enumerate existing cluster members.
    List(Positional),
    /// Add a new member to the etcd cluster.
    Add(Positional),
    /// Remove an existing member from the etcd cluster.
    Remove(Positional),
    /// Update an existing member in the etcd cluster.
    Update(Positional),
}

#[derive(Debug, Args)]
pub struct Positional {
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[arg(long)]
    pub sort: bool,
    #[arg(long, short = 'q')]
    pub quorum: bool,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(long)]
    pub sort: bool,
    #[arg(long, short = 'r')]
    pub recursive: bool,
    #[arg(short = 'p')]
    pub p: bool,
    #[arg(long, short = 'q')]
    pub quorum: bool,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub ttl: i64,
    #[arg(long, default_value = "")]
    pub swap_with_value: String,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub swap_with_index: i64,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MkArgs {
    #[arg(long)]
    pub in_order: bool,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub ttl: i64,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TtlArgs {
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub ttl: i64,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(long)]
    pub dir: bool,
    #[arg(long, short = 'r')]
    pub recursive: bool,
    #[arg(long, default_value = "")]
    pub with_value: String,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub with_index: i64,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[arg(long, short = 'f')]
    pub forever: bool,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub after_index: i64,
    #[arg(long, short = 'r')]
    pub recursive: bool,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecWatchArgs {
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub after_index: i64,
    #[arg(long, short = 'r')]
    pub recursive: bool,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Path to the etcd data dir.
    #[arg(long, default_value = "")]
    pub data_dir: String,
    /// Path to the etcd wal dir.
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Path to the backup dir.
    #[arg(long, default_value = "")]
    pub backup_dir: String,
    /// Path to the backup wal dir.
    #[arg(long, default_value = "")]
    pub backup_wal_dir: String,
    /// Backup v3 backend data (Keelson has none: accepted and ignored).
    #[arg(long)]
    pub with_v3: bool,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ClusterHealthArgs {
    #[arg(long, short = 'f')]
    pub forever: bool,
    #[arg(allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn run(args: &[&str]) -> Vec<String> {
        match normalise("etcdctl", &v(args)) {
            Normalised::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_style_flags_become_canonical() {
        assert_eq!(
            run(&[
                "-endpoints",
                "http://a:1",
                "-no-sync",
                "get",
                "-quorum",
                "/k"
            ]),
            v(&[
                "etcdctl",
                "--endpoints=http://a:1",
                "--no-sync",
                "get",
                "--quorum",
                "--",
                "/k"
            ])
        );
        assert_eq!(
            run(&["-o=json", "set", "/k", "v", "-ttl", "0x10"]),
            v(&[
                "etcdctl",
                "--output=json",
                "set",
                "--ttl=16",
                "--",
                "/k",
                "v"
            ])
        );
    }

    #[test]
    fn command_flags_after_arguments_are_reordered_like_urfave() {
        assert_eq!(
            run(&["ls", "/", "--recursive"]),
            v(&["etcdctl", "ls", "--recursive", "--", "/"])
        );
        // A bool flag drags the next word along, and flag parsing stops there.
        assert_eq!(
            run(&["watch", "-r", "/w", "-f", "--after-index", "33"]),
            v(&[
                "etcdctl",
                "watch",
                "--recursive",
                "--",
                "/w",
                "-f",
                "--after-index",
                "33"
            ])
        );
        // Unknown flags after the arguments stay arguments.
        assert_eq!(
            run(&["set", "/k", "v", "--bogus"]),
            v(&["etcdctl", "set", "--", "/k", "v", "--bogus"])
        );
        assert_eq!(
            run(&["set", "--", "/neg", "-5"]),
            v(&["etcdctl", "set", "--", "/neg", "-5"])
        );
        assert_eq!(
            run(&["exec-watch", "-r", "/w", "--", "sh", "-c", "x"]),
            v(&[
                "etcdctl",
                "exec-watch",
                "--recursive",
                "--",
                "/w",
                "--",
                "sh",
                "-c",
                "x"
            ])
        );
        assert_eq!(
            run(&["member", "list"]),
            v(&["etcdctl", "member", "list", "--"])
        );
    }

    #[test]
    fn usage_errors_match_etcdctl() {
        match normalise("etcdctl", &v(&["--bogus", "get"])) {
            Normalised::Exit {
                stdout,
                stderr,
                code,
            } => {
                assert_eq!(code, 1);
                assert_eq!(stderr, "flag provided but not defined: -bogus\n");
                assert!(stdout.starts_with(
                    "Incorrect Usage. flag provided but not defined: -bogus\n\nNAME:\n"
                ));
            }
            other => panic!("{other:?}"),
        }
        match normalise("etcdctl", &v(&["set", "/k", "v", "--ttl", "abc"])) {
            Normalised::Exit { stderr, code, .. } => {
                assert_eq!(code, 1);
                assert_eq!(stderr, "invalid value \"abc\" for flag -ttl: parse error\n");
            }
            other => panic!("{other:?}"),
        }
        match normalise("etcdctl", &v(&["get", "---x"])) {
            Normalised::Exit { stderr, .. } => assert_eq!(stderr, "bad flag syntax: ---x\n"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            normalise("etcdctl", &v(&["bogus"])),
            Normalised::Exit {
                stdout: String::new(),
                stderr: "No help topic for 'bogus'\n".into(),
                code: 3
            }
        );
        assert_eq!(normalise("etcdctl", &v(&[])), Normalised::Help(None));
        assert_eq!(normalise("etcdctl", &v(&["-v"])), Normalised::Version);
        assert_eq!(
            normalise("etcdctl", &v(&["get", "-h"])),
            Normalised::Help(Some("get".into()))
        );
    }

    #[test]
    fn canonical_args_parse_with_clap() {
        let cli = Cli::try_parse_from(run(&["-C", "http://a:1", "rm", "/k", "--with-index", "7"]))
            .unwrap();
        assert_eq!(cli.peers.as_deref(), Some("http://a:1"));
        match cli.command {
            Command::Rm(rm) => {
                assert_eq!(rm.with_index, 7);
                assert_eq!(rm.args, vec!["/k".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(run(&["exec-watch", "/w", "--", "sh", "-c", "--"])).unwrap();
        match cli.command {
            Command::ExecWatch(e) => assert_eq!(e.args, v(&["/w", "--", "sh", "-c", "--"])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_numbers_and_durations() {
        assert_eq!(parse_go_int("0x10"), Some(16));
        assert_eq!(parse_go_int("010"), Some(8));
        assert_eq!(parse_go_int("-5"), Some(-5));
        assert_eq!(parse_go_int("1_000"), None);
        assert_eq!(parse_go_int("abc"), None);
        assert_eq!(parse_go_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(parse_go_duration("1x").is_err());
        assert!(parse_go_duration("5").is_err());
    }
}
