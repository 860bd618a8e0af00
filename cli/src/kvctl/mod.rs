//! `kvctl`: etcdctl v2 for Keelson (reference kv.md §13).
//!
//! Compatibility is the contract: the same flags (Go-style single-dash long
//! flags included), the same output bytes in every format, the same error
//! lines and exit codes as etcdctl 3.4 with `ETCDCTL_API=2`. The binary answers
//! to `etcdctl` when called through a symlink of that name; the only
//! difference is the program name in help texts.
//!
//! Everything here is wiring: requests go through
//! [`keelson_kv::client::HttpKvClient`], which is also what the other Keelson
//! components use.

pub mod args;
pub mod format;
pub mod help;
pub mod migrate;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use keelson_kv::client::{
    CreateInOrderOptions, DeleteOptions, GetOptions, HttpKvClient, KvClient, KvError, KvResponse,
    Member, Precondition, PrevExist, SetOptions, WatchEvent, Watcher, WatcherOptions,
};
use keelson_kv::v2::Node;

use args::{Cli, Command, MemberCommand, Normalised};

/// etcdctl's exit codes (reference kv.md §13.7).
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const BAD_ARGS: u8 = 1;
    pub const BAD_CONNECTION: u8 = 2;
    pub const SERVER_ERROR: u8 = 4;
    pub const CLUSTER_NOT_HEALTHY: u8 = 5;
}

/// A command that ends the process with this code.
struct Exit(u8);

type Outcome = Result<(), Exit>;

/// The program name to present: `etcdctl` when called by that name.
pub fn program_name(argv0: Option<&OsString>) -> &'static str {
    let base = argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("kvctl");
    if base == "etcdctl" || base.starts_with("etcdctl.") {
        "etcdctl"
    } else {
        "kvctl"
    }
}

/// Run kvctl with the process arguments.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let prog = program_name(argv.first());
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let canonical = match args::normalise(prog, &args) {
        Normalised::Run(c) => c,
        Normalised::Help(None) => {
            print!("{}", help::global_help(prog));
            return ExitCode::SUCCESS;
        }
        Normalised::Help(Some(cmd)) => {
            print!("{}", help::command_help_for(prog, &cmd));
            return ExitCode::SUCCESS;
        }
        Normalised::Version => {
            println!("{prog} version: {}", env!("CARGO_PKG_VERSION"));
            println!("API version: 2");
            return ExitCode::SUCCESS;
        }
        Normalised::Exit {
            stdout,
            stderr,
            code,
        } => {
            print!("{stdout}");
            eprint!("{stderr}");
            return ExitCode::from(code);
        }
    };
    let cli = match Cli::try_parse_from(&canonical) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::BAD_ARGS);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error:  {e}");
            return ExitCode::from(exit::BAD_ARGS);
        }
    };
    let code = rt.block_on(async move {
        tokio::select! {
            r = execute(prog, cli) => match r { Ok(()) => exit::SUCCESS, Err(Exit(c)) => c },
            // etcdctl exits 0 on Ctrl-C (the watch loops rely on it).
            _ = tokio::signal::ctrl_c() => exit::SUCCESS,
        }
    });
    let _ = std::io::stdout().flush();
    ExitCode::from(code)
}

/// Go's `err.Error()` for the errors etcdctl prints.
fn go_error(e: &KvError) -> String {
    match e {
        // Go's ClusterError ends every "; error #N: ..." part with a newline.
        KvError::Cluster(_) => format!("{e}\n"),
        other => other.to_string(),
    }
}

/// etcdctl's `handleError`: `Error:  <err>` (plus the cluster detail) on
/// stderr and the exit code.
fn handle_error(code: u8, e: &KvError) -> Exit {
    let mut s = format!("Error:  {}\n", go_error(e));
    if let KvError::Cluster(errs) = e {
        for (i, ee) in errs.iter().enumerate() {
            s.push_str(&format!("error #{i}: {}\n", ee.message));
        }
        s.push('\n');
    }
    eprint!("{s}");
    Exit(code)
}

fn bad_args(msg: &str) -> Exit {
    eprintln!("Error:  {msg}");
    Exit(exit::BAD_ARGS)
}

fn out(o: format::Output) {
    if !o.stdout.is_empty() {
        print!("{}", o.stdout);
        let _ = std::io::stdout().flush();
    }
    if !o.stderr.is_empty() {
        eprint!("{}", o.stderr);
    }
}

/// Go's `url.Parse` plus etcdctl's "no scheme means http" rule.
fn parse_endpoint(ep: &str) -> Result<String, String> {
    if ep.contains("://") {
        return Ok(ep.to_string());
    }
    let first_seg = ep.split('/').next().unwrap_or("");
    if let Some((scheme, _)) = first_seg.split_once(':') {
        let is_scheme = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !is_scheme {
            return Err(format!(
                "parse {ep:?}: first path segment in URL cannot contain colon"
            ));
        }
        return Err(format!("unsupported protocol scheme {scheme:?}"));
    }
    Ok(format!("http://{ep}"))
}

struct Ctx {
    prog: &'static str,
    cli: Cli,
}

impl Ctx {
    fn output(&self) -> &str {
        &self.cli.output
    }

    fn endpoints(&self) -> Vec<String> {
        let c = &self.cli;
        let s = [&c.endpoints, &c.endpoint, &c.peers]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:2379,http://127.0.0.1:4001".to_string());
        s.split(',').map(str::to_string).collect()
    }

    /// etcdctl's `newClient`.
    fn new_client(&self) -> Result<HttpKvClient, Exit> {
        if self
            .cli
            .discovery_srv
            .as_deref()
            .is_some_and(|d| !d.is_empty())
        {
            eprintln!("Error:  DNS SRV discovery (--discovery-srv) is not supported by {} yet; pass --endpoints", self.prog);
            return Err(Exit(exit::BAD_ARGS));
        }
        let eps = self
            .endpoints()
            .iter()
            .map(|e| parse_endpoint(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                eprintln!("{e}");
                Exit(exit::BAD_ARGS)
            })?;
        let c = &self.cli;
        let dial = Duration::from_secs(30).min(if c.total_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            c.total_timeout
        });
        let mut b = HttpKvClient::builder().endpoints(eps).connect_timeout(dial);
        if !c.timeout.is_zero() {
            b = b.request_timeout(c.timeout);
        }
        if let Some(ca) = c.ca_file.as_deref().filter(|s| !s.is_empty()) {
            b = b.ca_file(ca);
        }
        match (
            c.cert_file.as_deref().filter(|s| !s.is_empty()),
            c.key_file.as_deref().filter(|s| !s.is_empty()),
        ) {
            (Some(cert), Some(key)) => b = b.client_cert(cert, key),
            (None, None) => {}
            _ => {
                eprintln!("both --cert-file and --key-file must be given");
                return Err(Exit(exit::BAD_ARGS));
            }
        }
        if let Some(u) = c.username.as_deref().filter(|s| !s.is_empty()) {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user.to_string(), pass.to_string()),
                None => (u.to_string(), prompt_password()?),
            };
            b = b.credentials(user, pass);
        }
        if c.debug {
            b = b.observer(|curl| eprintln!("cURL Command: {curl}"));
        }
        b.build().map_err(|e| {
            eprintln!("{e}");
            Exit(exit::BAD_ARGS)
        })
    }

    /// etcdctl's `mustNewClient`: build, then sync the endpoints to the
    /// cluster's advertised client URLs unless `--no-sync`.
    async fn client(&self) -> Result<Arc<HttpKvClient>, Exit> {
        let hc = self.new_client()?;
        let debug = self.cli.debug;
        if !self.cli.no_sync {
            if debug {
                eprintln!(
                    "start to sync cluster using endpoints({})",
                    hc.endpoints().join(",")
                );
            }
            let r = self.with_total_timeout(hc.sync()).await;
            match r {
                Err(KvError::NoEndpoints) => {
                    eprintln!("etcd cluster has no published client endpoints.");
                    eprintln!(
                        "Try '--no-sync' if you want to access non-published client endpoints({}).",
                        hc.endpoints().join(",")
                    );
                    return Err(handle_error(exit::SERVER_ERROR, &KvError::NoEndpoints));
                }
                Err(e) if e.is_connection_error() => {
                    return Err(handle_error(exit::BAD_CONNECTION, &e));
                }
                _ => {}
            }
            if debug {
                eprintln!("got endpoints({}) after sync", hc.endpoints().join(","));
            }
        }
        if debug {
            eprintln!("Cluster-Endpoints: {}", hc.endpoints().join(", "));
        }
        Ok(Arc::new(hc))
    }

    async fn with_total_timeout<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        if self.cli.total_timeout.is_zero() {
            // Go: a zero timeout context is already expired.
            return Err(KvError::Timeout);
        }
        match tokio::time::timeout(self.cli.total_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(KvError::Timeout),
        }
    }

    /// Run a key request under the total timeout; errors exit 4.
    async fn key_op(
        &self,
        f: impl std::future::Future<Output = Result<KvResponse, KvError>>,
    ) -> Result<KvResponse, Exit> {
        self.with_total_timeout(f)
            .await
            .map_err(|e| handle_error(exit::SERVER_ERROR, &e))
    }
}

fn prompt_password() -> Result<String, Exit> {
    print!("Password: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| {
        eprintln!("{e}");
        Exit(exit::BAD_ARGS)
    })?;
    println!();
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// etcdctl's `argOrStdin`: the argument, or all of stdin when it is missing.
fn arg_or_stdin(args: &[String], i: usize) -> Option<String> {
    if let Some(a) = args.get(i) {
        return Some(a.clone());
    }
    let mut buf = String::new();
    match std::io::stdin().read_to_string(&mut buf) {
        Ok(_) if !buf.is_empty() => Some(buf),
        _ => None,
    }
}

fn ttl_opt(ttl: i64) -> Option<u64> {
    u64::try_from(ttl).ok().filter(|t| *t > 0)
}

fn precondition(value: &str, index: i64) -> Precondition {
    Precondition {
        value: (!value.is_empty()).then(|| value.to_string()),
        index: u64::try_from(index).ok().filter(|i| *i != 0),
    }
}

async fn execute(prog: &'static str, mut cli: Cli) -> Outcome {
    // Take the command out so that the rest of the flags can be shared.
    let command = std::mem::replace(
        &mut cli.command,
        Command::Rmdir(args::Positional { args: Vec::new() }),
    );
    let ctx = Ctx { prog, cli };
    run_command(&ctx, command).await
}

async fn run_command(ctx: &Ctx, command: Command) -> Outcome {
    match command {
        Command::Get(a) => {
            let key = a.args.first().ok_or_else(|| bad_args("key required"))?;
            let ki = ctx.client().await?;
            let opts = GetOptions {
                sorted: a.sort,
                quorum: a.quorum,
                recursive: false,
            };
            let resp = ctx.key_op(ki.get(key, opts)).await?;
            if resp.node().is_some_and(|n| n.dir) {
                let k = resp.node().and_then(|n| n.key.clone()).unwrap_or_default();
                eprintln!("{k}: is a directory");
                return Err(Exit(exit::BAD_ARGS));
            }
            out(format::response_key(&resp, ctx.output()));
        }
        Command::Ls(a) => {
            let key = a.args.first().map(String::as_str).unwrap_or("/");
            let ki = ctx.client().await?;
            let opts = GetOptions {
                sorted: a.sort,
                quorum: a.quorum,
                recursive: a.recursive,
            };
            let resp = ctx.key_op(ki.get(key, opts)).await?;
            let mut s = String::new();
            if let Some(node) = resp.node() {
                if !node.dir {
                    s.push_str(node.key.as_deref().unwrap_or(""));
                    s.push('\n');
                }
                for c in node.nodes.iter().flatten() {
                    ls_print(&mut s, c, a.p);
                }
            }
            print!("{s}");
        }
        Command::Set(a) => {
            let key = a.args.first().ok_or_else(|| bad_args("key required"))?;
            let value = arg_or_stdin(&a.args, 1).ok_or_else(|| bad_args("value required"))?;
            let ki = ctx.client().await?;
            let opts = SetOptions {
                ttl: ttl_opt(a.ttl),
                prev: precondition(&a.swap_with_value, a.swap_with_index),
                ..SetOptions::default()
            };
            let resp = ctx.key_op(ki.set(key, &value, opts)).await?;
            out(format::response_key(&resp, ctx.output()));
        }
        Command::Mk(a) => {
            let key = a.args.first().ok_or_else(|| bad_args("key required"))?;
            let value = arg_or_stdin(&a.args, 1).ok_or_else(|| bad_args("value required"))?;
            let ki = ctx.client().await?;
            let ttl = ttl_opt(a.ttl);
            let resp = if a.in_order {
                ctx.key_op(ki.create_in_order(key, &value, CreateInOrderOptions { ttl }))
                    .await?
            } else {
                ctx.key_op(ki.create(key, &value, ttl)).await?
            };
            out(format::response_key(&resp, ctx.output()));
        }
        Command::Mkdir(a) => dir_write(ctx, a, PrevExist::NotExists).await?,
        Command::Setdir(a) => dir_write(ctx, a, PrevExist::Ignore).await?,
        Command::Updatedir(a) => dir_write(ctx, a, PrevExist::Exists).await?,
        Command::Update(a) => {
            let key = a.args.first().ok_or_else(|| bad_args("key required"))?;
            let value = arg_or_stdin(&a.args, 1).ok_or_else(|| bad_args("value required"))?;
            let ki = ctx.client().await?;
            let resp = ctx.key_op(ki.update(key, &value, ttl_opt(a.ttl))).await?;
            out(format::response_key(&resp, ctx.output()));
        }
        Command::Rm(a) => {
            let key = a.args.first().ok_or_else(|| bad_args("key required"))?;
            let ki = ctx.client().await?;
            let opts = DeleteOptions {
                dir: a.dir,
                recursive: a.recursive,
                prev: precondition(&a.with_value, a.with_index),
            };
            let resp = ctx.key_op(ki.delete(key, opts)).await?;
            if !resp.node().is_some_and(|n| n.dir) || ctx.output() != "simple" {
                out(format::response_key(&resp, ctx.output()));
            }
        }
        Command::Rmdir(a) => {
            let key = a.args.first().ok_or_else(|| bad_args("key required"))?;
            let ki = ctx.client().await?;
            let opts = DeleteOptions {
                dir: true,
                ..DeleteOptions::default()
            };
            let resp = ctx.key_op(ki.delete(key, opts)).await?;
            if !resp.node().is_some_and(|n| n.dir) || ctx.output() != "simple" {
                out(format::response_key(&resp, ctx.output()));
            }
        }
        Command::Watch(a) => {
            let key = a.args.first().ok_or_else(|| bad_args("key required"))?;
            let ki = ctx.client().await?;
            let mut w = Watcher::new(
                ki,
                key.clone(),
                WatcherOptions {
                    after_index: u64::try_from(a.after_index).unwrap_or(0),
                    recursive: a.recursive,
                    resync_on_cleared: false,
                },
            );
            loop {
                let resp = next_event(&mut w).await?;
                let Some(node) = resp.node() else { continue };
                if node.dir {
                    continue;
                }
                if a.recursive {
                    println!(
                        "[{}] {}",
                        resp.event.action.as_str(),
                        node.key.as_deref().unwrap_or("")
                    );
                }
                out(format::response_key(&resp, ctx.output()));
                if !a.forever {
                    break;
                }
            }
        }
        Command::ExecWatch(a) => exec_watch(ctx, a).await?,
        Command::Member(m) => member(ctx, m).await?,
        Command::ClusterHealth(a) => cluster_health(ctx, a.forever).await?,
        Command::Backup(a) => backup(a).await?,
        Command::Migrate(a) => migrate_cmd(a).await?,
    }
    Ok(())
}

/// `migrate`: copies a keyspace; a summary on stdout.
async fn migrate_cmd(a: args::MigrateArgs) -> Outcome {
    if a.from.is_empty() || a.to.is_empty() {
        eprintln!("Error:  migrate needs --from and --to");
        return Err(Exit(exit::BAD_ARGS));
    }
    let hidden: Vec<String> = a
        .hidden
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    match migrate::migrate(&a.from, &a.to, &a.prefix, &hidden).await {
        Ok(r) => {
            println!(
                "migrated {} keys and {} directories ({} with a TTL) from {} to {}",
                r.keys, r.dirs, r.with_ttl, a.from, a.to
            );
            Ok(())
        }
        Err(e) => Err(handle_error(exit::SERVER_ERROR, &e)),
    }
}

/// `backup`: local files only, nothing on stdout; errors go to stderr with
/// exit 1 as etcdctl's `log.Fatal` does.
async fn backup(a: args::BackupArgs) -> Outcome {
    use keelson_kv::backup::{backup, BackupOptions};
    let dir = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
    let opts = BackupOptions {
        data_dir: std::path::PathBuf::from(&a.data_dir),
        wal_dir: dir(&a.wal_dir),
        backup_dir: std::path::PathBuf::from(&a.backup_dir),
        backup_wal_dir: dir(&a.backup_wal_dir),
    };
    if a.with_v3 {
        eprintln!("--with-v3: Keelson keeps no v3 backend; only the v2 data is copied");
    }
    match tokio::task::spawn_blocking(move || backup(&opts)).await {
        Ok(Ok(r)) => {
            eprintln!(
                "backup: copied snapshot {} and {} log entries as member {:x} of cluster {:x}",
                r.snapshot_index
                    .map_or_else(|| "(none)".to_string(), |i| i.to_string()),
                r.entries,
                r.member_id,
                r.cluster_id
            );
            Ok(())
        }
        Ok(Err(e)) => {
            eprintln!("Error:  {e}");
            Err(Exit(exit::BAD_ARGS))
        }
        Err(e) => {
            eprintln!("Error:  {e}");
            Err(Exit(exit::BAD_ARGS))
        }
    }
}

async fn next_event(w: &mut Watcher) -> Result<KvResponse, Exit> {
    match w.next().await {
        Ok(WatchEvent::Event(r)) => Ok(r),
        // resync_on_cleared is off: the watcher reports 401 as an error.
        Ok(WatchEvent::Resync { .. }) => Err(Exit(exit::SERVER_ERROR)),
        Err(e) => Err(handle_error(exit::SERVER_ERROR, &e)),
    }
}

fn ls_print(s: &mut String, n: &Node, slash: bool) {
    s.push_str(n.key.as_deref().unwrap_or(""));
    if n.dir && slash {
        s.push('/');
    }
    s.push('\n');
    for c in n.nodes.iter().flatten() {
        ls_print(s, c, slash);
    }
}

async fn dir_write(ctx: &Ctx, a: args::TtlArgs, prev_exist: PrevExist) -> Outcome {
    let key = a.args.first().ok_or_else(|| bad_args("key required"))?;
    let ki = ctx.client().await?;
    let opts = SetOptions {
        ttl: ttl_opt(a.ttl),
        dir: true,
        prev_exist,
        ..SetOptions::default()
    };
    let resp = ctx.key_op(ki.set(key, "", opts)).await?;
    if ctx.output() != "simple" {
        out(format::response_key(&resp, ctx.output()));
    }
    Ok(())
}

async fn exec_watch(ctx: &Ctx, a: args::ExecWatchArgs) -> Outcome {
    let args = &a.args;
    if args.len() < 2 {
        return Err(bad_args("key and command to exec required"));
    }
    let found_sep = args.iter().enumerate().any(|(i, s)| s == "--" && i != 0);
    // etcdctl's own rule, quirks included: with a `--` anywhere after the
    // key the command starts at the third argument; without one the *last*
    // argument is the key.
    let (key, cmd_args) = if found_sep {
        (args[0].clone(), args[2..].to_vec())
    } else {
        (
            args[args.len() - 1].clone(),
            args[..args.len() - 1].to_vec(),
        )
    };
    let ki = ctx.client().await?;
    let mut w = Watcher::new(
        ki,
        key,
        WatcherOptions {
            after_index: u64::try_from(a.after_index).unwrap_or(0),
            recursive: a.recursive,
            resync_on_cleared: false,
        },
    );
    loop {
        let resp = next_event(&mut w).await?;
        let Some(node) = resp.node() else { continue };
        let key = node.key.clone().unwrap_or_default();
        if node.dir {
            eprintln!("Ignored dir {key} change");
            continue;
        }
        let Some((program, rest)) = cmd_args.split_first() else {
            eprint!("exec: no command");
            return Err(Exit(exit::BAD_ARGS));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(rest)
            .env("ETCD_WATCH_ACTION", resp.event.action.as_str())
            .env("ETCD_WATCH_MODIFIED_INDEX", node.modified_index.to_string())
            .env("ETCD_WATCH_KEY", &key)
            .env("ETCD_WATCH_VALUE", node.value.clone().unwrap_or_default());
        match cmd.spawn() {
            Ok(mut child) => {
                // Commands run asynchronously, as in etcdctl; reap them.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(e) => {
                if e.kind() == std::io::ErrorKind::NotFound && !program.contains('/') {
                    eprint!("exec: {program:?}: executable file not found in $PATH");
                } else {
                    eprint!("fork/exec {program}: {}", go_errno_text(&e));
                }
                return Err(Exit(exit::BAD_ARGS));
            }
        }
    }
}

fn go_errno_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

async fn member(ctx: &Ctx, m: MemberCommand) -> Outcome {
    let fail = |e: &KvError| {
        eprintln!("{}", go_error(e));
        Exit(exit::BAD_ARGS)
    };
    match m {
        MemberCommand::List(a) => {
            if !a.args.is_empty() {
                eprintln!("No arguments accepted");
                return Err(Exit(exit::BAD_ARGS));
            }
            let mc = ctx.client().await?;
            let members = ctx
                .with_total_timeout(mc.members())
                .await
                .map_err(|e| fail(&e))?;
            let leader = ctx.with_total_timeout(mc.leader()).await.map_err(|e| {
                eprintln!("Failed to get leader:  {}", go_error(&e));
                Exit(exit::BAD_ARGS)
            })?;
            let mut s = String::new();
            for m in &members {
                if m.name.is_empty() {
                    s.push_str(&format!(
                        "{}[unstarted]: peerURLs={}\n",
                        m.id,
                        m.peer_urls.join(",")
                    ));
                } else {
                    s.push_str(&format!(
                        "{}: name={} peerURLs={} clientURLs={} isLeader={}\n",
                        m.id,
                        m.name,
                        m.peer_urls.join(","),
                        m.client_urls.join(","),
                        m.id == leader.id
                    ));
                }
            }
            print!("{s}");
        }
        MemberCommand::Add(a) => {
            if a.args.len() != 2 {
                eprintln!("Provide a name and a single member peerURL");
                return Err(Exit(exit::BAD_ARGS));
            }
            let (name, url) = (&a.args[0], &a.args[1]);
            let mc = ctx.client().await?;
            if let Err(msg) = check_peer_url(url) {
                eprintln!("{msg}");
                return Err(Exit(exit::BAD_ARGS));
            }
            let added = ctx
                .with_total_timeout(mc.add_member(std::slice::from_ref(url)))
                .await
                .map_err(|e| fail(&members_api_error(e, &[409])))?;
            println!("Added member named {name} with ID {} to cluster", added.id);
            let members = ctx
                .with_total_timeout(mc.members())
                .await
                .map_err(|e| fail(&e))?;
            println!();
            println!("ETCD_NAME={name:?}");
            println!(
                "ETCD_INITIAL_CLUSTER={:?}",
                initial_cluster(&members, &added.id, name)
            );
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        MemberCommand::Remove(a) => {
            if a.args.len() != 1 {
                eprintln!("Provide a single member ID");
                return Err(Exit(exit::BAD_ARGS));
            }
            let id = &a.args[0];
            let mc = ctx.client().await?;
            let members = ctx.with_total_timeout(mc.members()).await.map_err(|e| {
                eprintln!(
                    "Error while verifying ID against known members: {}",
                    go_error(&e)
                );
                Exit(exit::BAD_ARGS)
            })?;
            let mut found = false;
            for m in &members {
                if &m.id == id {
                    found = true;
                }
                if &m.name == id {
                    eprint!(
                        "Found a member named {}; if this is correct, please use its ID, eg:\n\t{} member remove {}\n",
                        m.name, ctx.prog, m.id
                    );
                    eprint!("For more details, read the documentation at https://github.com/etcd-io/etcd/blob/master/Documentation/runtime-configuration.md#remove-a-member\n\n");
                }
            }
            if !found {
                eprintln!("Couldn't find a member in the cluster with an ID of {id}.");
                return Err(Exit(exit::BAD_ARGS));
            }
            match ctx.with_total_timeout(mc.remove_member(id)).await {
                Ok(()) => {}
                // Go's client treats 410 Gone (already removed) as success.
                Err(KvError::Api { status: 410, .. }) => {}
                Err(e) => {
                    eprint!(
                        "Received an error trying to remove member {id}: {}",
                        go_error(&members_api_error(e, &[]))
                    );
                    return Err(Exit(exit::BAD_ARGS));
                }
            }
            println!("Removed member {id} from cluster");
        }
        MemberCommand::Update(a) => {
            if a.args.len() != 2 {
                eprintln!("Provide an ID and a list of comma separated peerURL (0xabcd http://example.com,http://example1.com)");
                return Err(Exit(exit::BAD_ARGS));
            }
            let id = &a.args[0];
            let urls: Vec<String> = a.args[1].split(',').map(str::to_string).collect();
            let mc = ctx.client().await?;
            ctx.with_total_timeout(mc.update_member(id, &urls))
                .await
                .map_err(|e| fail(&members_api_error(e, &[404, 409])))?;
            println!("Updated member with ID {id} in cluster");
        }
    }
    Ok(())
}

/// The Go members API only reads the server's message for some statuses;
/// for the others it says `unexpected status code N`.
fn members_api_error(e: KvError, with_message: &[u16]) -> KvError {
    match e {
        KvError::Api { status, .. } if !with_message.contains(&status) => KvError::Api {
            status,
            message: format!("unexpected status code {status}"),
        },
        other => other,
    }
}

fn check_peer_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if !["http", "https", "unix", "unixs"].contains(&scheme) {
        return Err(format!(
            "URL scheme must be http, https, unix, or unixs: {url}"
        ));
    }
    Ok(())
}

fn initial_cluster(members: &[Member], new_id: &str, new_name: &str) -> String {
    let mut conf = Vec::new();
    for m in members {
        for u in &m.peer_urls {
            let n = if m.id == new_id { new_name } else { &m.name };
            conf.push(format!("{n}={u}"));
        }
    }
    conf.join(",")
}

async fn cluster_health(ctx: &Ctx, forever: bool) -> Outcome {
    let hc = ctx.new_client()?;
    if ctx.cli.debug {
        eprintln!("Cluster-Endpoints: {}", hc.endpoints().join(", "));
    }
    let members = match hc.members().await {
        Ok(m) => m,
        Err(e) => {
            println!("cluster may be unhealthy: failed to list members");
            return Err(handle_error(exit::SERVER_ERROR, &e));
        }
    };
    loop {
        let mut healthy = 0usize;
        for m in &members {
            if m.client_urls.is_empty() {
                println!(
                    "member {} is unreachable: no available published client urls",
                    m.id
                );
                continue;
            }
            let mut checked = false;
            for url in &m.client_urls {
                match hc.health(url).await {
                    Ok(ok) => {
                        checked = true;
                        if ok {
                            healthy += 1;
                            println!("member {} is healthy: got healthy result from {url}", m.id);
                        } else {
                            println!(
                                "member {} is unhealthy: got unhealthy result from {url}",
                                m.id
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        println!(
                            "failed to check the health of member {} on {url}: {e}",
                            m.id
                        );
                    }
                }
            }
            if !checked {
                println!(
                    "member {} is unreachable: [{}] are all unreachable",
                    m.id,
                    m.client_urls.join(" ")
                );
            }
        }
        if healthy == members.len() {
            println!("cluster is healthy");
        } else if healthy == 0 {
            println!("cluster is unavailable");
        } else {
            println!("cluster is degraded");
        }
        let _ = std::io::stdout().flush();
        if !forever {
            return if healthy == members.len() {
                Ok(())
            } else {
                Err(Exit(exit::CLUSTER_NOT_HEALTHY))
            };
        }
        print!("\nnext check after 10 second...\n\n");
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_name_follows_argv0() {
        assert_eq!(
            program_name(Some(&OsString::from("/usr/local/bin/etcdctl"))),
            "etcdctl"
        );
        assert_eq!(program_name(Some(&OsString::from("kvctl"))), "kvctl");
        assert_eq!(program_name(None), "kvctl");
    }

    #[test]
    fn endpoints_parse_like_go() {
        assert_eq!(parse_endpoint("http://a:1").unwrap(), "http://a:1");
        assert_eq!(parse_endpoint("a").unwrap(), "http://a");
        assert_eq!(
            parse_endpoint("127.0.0.1:23791").unwrap_err(),
            "parse \"127.0.0.1:23791\": first path segment in URL cannot contain colon"
        );
    }

    #[test]
    fn cluster_errors_print_like_etcdctl() {
        let e = KvError::Cluster(vec![keelson_kv::client::EndpointError {
            endpoint: "http://127.0.0.1:1".into(),
            message: "dial tcp 127.0.0.1:1: connect: connection refused".into(),
            connect: true,
        }]);
        assert_eq!(
            go_error(&e),
            "client: etcd cluster is unavailable or misconfigured; error #0: dial tcp 127.0.0.1:1: connect: connection refused\n"
        );
    }
}
