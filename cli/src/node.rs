//! `keelson node --validate FILE` and the `coreos-cloudinit` alias's
//! `-validate -from-file FILE`: coreos-cloudinit's validator report, with
//! its exit status (1 if there is any entry, even a warning; 0 otherwise).
//!
//! The report lines are exactly coreos-cloudinit's (`line 38: error: …`),
//! so scripts that read them keep working; Keelson's extras — the file, the
//! column and a one-line hint for the common indentation slips — go to
//! stderr, apart from them. Called as `coreos-cloudinit`, the entries are
//! logged the way the original's Go logger printed them: on stderr, each
//! prefixed with the local date and time.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::os::unix::fs::PermissionsExt;

use clap::Parser;
use keelson_cloudconfig::{validate_bytes, CloudConfig, Metadata, Plan, Report, RootDir};

use crate::kv_daemon::rooted;
use crate::node_runner::{run_services, ServiceKind, ServiceSpec};

/// `keelson node --validate [FILE]`.
#[derive(Debug, Parser)]
#[command(
    name = "keelson node --validate",
    about = "Validate a cloud-config as coreos-cloudinit --validate does: print each problem as `line N: kind: message` and exit 1 if there is any"
)]
struct ValidateFlags {
    /// The cloud-config to validate (or give it with --cloud-config).
    #[arg(long = "validate", value_name = "FILE", num_args = 0..=1)]
    validate: Option<Option<PathBuf>>,
    /// The cloud-config file (as `keelson node --cloud-config FILE` takes it).
    #[arg(long = "cloud-config", alias = "from-file", value_name = "FILE")]
    cloud_config: Option<PathBuf>,
    /// Print the report as coreos-cloudinit's JSON entries instead.
    #[arg(long)]
    json: bool,
    /// Leave out the hints on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Whether `keelson node ARGS` asks for validation (`--validate`,
/// `-validate`, `--validate=FILE`).
pub fn wants_validate(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == "--validate" || a == "-validate" || a.starts_with("--validate=")
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Keelson's extras for each entry: `FILE:LINE:COL: hint`, on stderr.
fn print_hints(file: &Path, report: &Report) {
    for e in report.entries() {
        if let Some(hint) = &e.hint {
            match e.column {
                Some(col) => eprintln!("{}:{}:{}: hint: {hint}", file.display(), e.line, col),
                None => eprintln!("{}:{}: hint: {hint}", file.display(), e.line),
            }
        }
    }
}

/// `keelson node --validate FILE`: the report on stdout, hints on stderr,
/// exit 1 if there is any entry.
pub fn validate_main(args: Vec<OsString>) -> ExitCode {
    let mut argv = vec![OsString::from("keelson node")];
    // `-validate` (Go style) is accepted as `--validate`.
    argv.extend(args.into_iter().map(|a| {
        if a == "-validate" {
            OsString::from("--validate")
        } else {
            a
        }
    }));
    let flags = match ValidateFlags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let file = match (flags.validate.flatten(), flags.cloud_config) {
        (Some(f), None) | (None, Some(f)) => f,
        (Some(_), Some(_)) => {
            eprintln!(
                "keelson node: give the file once, either --validate FILE or --cloud-config FILE"
            );
            return ExitCode::from(2);
        }
        (None, None) => {
            eprintln!("keelson node: --validate needs a file: keelson node --validate FILE");
            return ExitCode::from(2);
        }
    };
    let data = match read(&file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("keelson node: {e}");
            return ExitCode::from(1);
        }
    };
    let report = validate_bytes(&data);
    if flags.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("keelson node: cannot encode the report: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{report}");
    }
    if !flags.quiet {
        print_hints(&file, &report);
    }
    ExitCode::from(report.exit_code())
}

/// Flags of `coreos-cloudinit` (v1.8), Go `flag` style: `-name`,
/// `--name`, `-name=value`, `-name value`.
#[derive(Debug, Default)]
struct CloudinitFlags {
    validate: bool,
    version: bool,
    from_file: Option<String>,
    /// Data sources this alias cannot read.
    other_source: Option<String>,
}

const CLOUDINIT_BOOL_FLAGS: [&str; 5] = [
    "validate",
    "version",
    "ignore-failure",
    "from-proc-cmdline",
    "from-metadata-service",
];
const CLOUDINIT_VALUE_FLAGS: [&str; 11] = [
    "from-file",
    "from-configdrive",
    "from-url",
    "from-ec2-metadata",
    "from-cloudsigma-metadata",
    "from-digitalocean-metadata",
    "from-packet-metadata",
    "from-waagent",
    "oem",
    "workspace",
    "ssh-key-name",
];

const CLOUDINIT_USAGE: &str = "Usage of coreos-cloudinit:\n  -from-file string\n    \tRead user-data from provided file\n  -validate\n    \t[EXPERIMENTAL] Validate the user-data but do not apply it to the system\n  -version\n    \tPrint the version and exit\n";

fn parse_cloudinit_flags(args: &[OsString]) -> Result<CloudinitFlags, String> {
    let mut flags = CloudinitFlags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            // Go's flag package stops at the first non-flag argument.
            break;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        if CLOUDINIT_BOOL_FLAGS.contains(&name.as_str()) {
            let on = match inline.as_deref() {
                None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE")
                | Some("True") => true,
                Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE")
                | Some("False") => false,
                Some(v) => {
                    return Err(format!(
                        "invalid boolean value {v:?} for -{name}: parse error"
                    ))
                }
            };
            match name.as_str() {
                "validate" => flags.validate = on,
                "version" => flags.version = on,
                "from-proc-cmdline" | "from-metadata-service" if on => {
                    flags.other_source = Some(name.clone())
                }
                _ => {}
            }
        } else if CLOUDINIT_VALUE_FLAGS.contains(&name.as_str()) {
            let value = match inline {
                Some(v) => v,
                None => {
                    let Some(v) = args.get(i) else {
                        return Err(format!("flag needs an argument: -{name}"));
                    };
                    i += 1;
                    v.to_string_lossy().into_owned()
                }
            };
            match name.as_str() {
                "from-file" => flags.from_file = Some(value),
                n if n.starts_with("from-") && !value.is_empty() => {
                    flags.other_source = Some(n.to_string())
                }
                _ => {}
            }
        } else if name == "h" || name == "help" {
            return Err(String::new());
        } else {
            return Err(format!("flag provided but not defined: -{name}"));
        }
    }
    Ok(flags)
}

fn log_line(message: &str) {
    // Go's log.Println: "2006/01/02 15:04:05 message" on stderr.
    eprintln!(
        "{} {message}",
        chrono::Local::now().format("%Y/%m/%d %H:%M:%S")
    );
}

/// `keelson` called as `coreos-cloudinit`: `-validate -from-file FILE`.
pub fn cloudinit_main(args: Vec<OsString>) -> ExitCode {
    let flags = match parse_cloudinit_flags(&args) {
        Ok(f) => f,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprint!("{CLOUDINIT_USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    if flags.version {
        println!(
            "coreos-cloudinit version keelson-{}",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if let Some(source) = &flags.other_source {
        eprintln!(
            "coreos-cloudinit (keelson): -{source} is not supported; save the user data to a file and use -from-file FILE"
        );
        return ExitCode::from(2);
    }
    let Some(file) = flags.from_file else {
        println!("Provide at least one of --from-file, --from-configdrive, --from-ec2-metadata, --from-cloudsigma-metadata, --from-packet-metadata, --from-digitalocean-metadata, --from-waagent, --from-url or --from-proc-cmdline");
        return ExitCode::from(2);
    };
    if !flags.validate {
        eprintln!(
            "coreos-cloudinit (keelson): only -validate is available under this name; apply user data with `keelson node --cloud-config {file}`"
        );
        return ExitCode::from(2);
    }
    let data = match read(Path::new(&file)) {
        Ok(d) => d,
        Err(e) => {
            log_line(&format!("Failed fetching user-data from datasource: {e}"));
            return ExitCode::from(1);
        }
    };
    let report = validate_bytes(&data);
    for e in report.entries() {
        log_line(&e.to_string());
    }
    ExitCode::from(report.exit_code())
}

// ------------------------------------------------- keelson node --cloud-config

/// `keelson node --cloud-config FILE`.
#[derive(Debug, Parser)]
#[command(
    name = "keelson node --cloud-config",
    about = "Apply a cloud-config under --root and run, in this process, the services it starts",
    long_about = "Apply a cloud-config under --root and run, in this process, the services it starts.\n\n\
The file is validated first (as coreos-cloudinit --validate; errors stop the node). \
write_files, the hostname, the core user's SSH keys, /etc/coreos/update.conf, the \
20-cloudinit.conf drop-ins and the coreos.units files and links are written under --root. \
Then the units the config starts become services of this process: etcd2.service (or \
etcd.service) the kv member with the coreos.etcd2 settings, fleet.service fleet, \
flanneld.service the overlay, update-engine.service and locksmithd.service the update engine \
and locksmith (started when coreos.update or coreos.locksmith is present, as CoreOS runs them \
by default; not with reboot-strategy off); every other started unit runs under the node's \
built-in supervisor. SIGTERM or SIGINT stops them all."
)]
struct CloudConfigFlags {
    /// The cloud-config file.
    #[arg(long = "cloud-config", alias = "from-file", value_name = "FILE")]
    cloud_config: PathBuf,
    /// Prefix for every absolute path the node reads and writes.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The node's name in log lines (default: the config's hostname).
    #[arg(long)]
    name: Option<String>,
    /// `$public_ipv4` (default: COREOS_PUBLIC_IPV4).
    #[arg(long = "public-ipv4", env = "COREOS_PUBLIC_IPV4")]
    public_ipv4: Option<String>,
    /// `$private_ipv4` (default: COREOS_PRIVATE_IPV4).
    #[arg(long = "private-ipv4", env = "COREOS_PRIVATE_IPV4")]
    private_ipv4: Option<String>,
    /// Print what would be written and run, then exit without doing it.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

/// Whether `keelson node ARGS` is given a cloud-config to run.
pub fn wants_cloud_config(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == "--cloud-config"
            || a == "-cloud-config"
            || a.starts_with("--cloud-config=")
            || a == "--from-file"
    })
}

/// The Keelson service a CoreOS unit name stands for.
fn service_for_unit(unit: &str) -> Option<ServiceKind> {
    match unit {
        "etcd2.service" | "etcd.service" => Some(ServiceKind::Kv),
        "fleet.service" => Some(ServiceKind::Fleet),
        "flanneld.service" => Some(ServiceKind::Overlay),
        "update-engine.service" => Some(ServiceKind::UpdateEngine),
        "locksmithd.service" => Some(ServiceKind::Locksmith),
        _ => None,
    }
}

/// The cloud-config section whose variables a service reads.
fn section_for(kind: ServiceKind, cfg: &CloudConfig) -> Option<&'static str> {
    match kind {
        ServiceKind::Kv => Some(
            if cfg.coreos.etcd2.is_empty() && !cfg.coreos.etcd.is_empty() {
                "etcd"
            } else {
                "etcd2"
            },
        ),
        ServiceKind::Fleet => Some("fleet"),
        ServiceKind::Overlay => Some("flannel"),
        ServiceKind::Locksmith => Some("locksmith"),
        ServiceKind::UpdateEngine | ServiceKind::Units => None,
    }
}

/// What a node runs for a parsed config and its plan: Keelson's services
/// with their variables, plus the node's other started units.
pub fn node_services(cfg: &CloudConfig, plan: &Plan) -> Vec<ServiceSpec> {
    let mut kinds: Vec<ServiceKind> = Vec::new();
    let mut units: Vec<String> = Vec::new();
    let mut stopped: Vec<String> = Vec::new();
    for (verb, unit) in plan.units.commands() {
        let runs = !matches!(verb, "stop");
        match service_for_unit(unit) {
            Some(k) if runs && !kinds.contains(&k) => kinds.push(k),
            Some(_) => {}
            None if runs && !units.iter().any(|u| u == unit) => units.push(unit.to_owned()),
            None => {}
        }
        if !runs {
            stopped.push(unit.to_owned());
        }
    }
    // update-engine and locksmithd are on by default on CoreOS; a node runs
    // them when the config speaks of updates, unless reboots are off.
    let strategy_off = plan
        .file("/etc/coreos/update.conf")
        .is_some_and(|f| f.text().lines().any(|l| l.trim() == "REBOOT_STRATEGY=off"));
    let wants_updates = !cfg.coreos.update.is_empty() || !cfg.coreos.locksmith.is_empty();
    if wants_updates {
        for k in [ServiceKind::UpdateEngine, ServiceKind::Locksmith] {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    if strategy_off || stopped.iter().any(|u| u == "locksmithd.service") {
        kinds.retain(|k| *k != ServiceKind::Locksmith);
    }
    // Start order: the kv first (the others keep their state in it).
    kinds.sort_by_key(|k| ServiceKind::ALL.iter().position(|a| a == k));
    let mut specs: Vec<ServiceSpec> = kinds
        .into_iter()
        .map(|kind| {
            let mut spec = ServiceSpec::new(kind);
            if let Some(section) = section_for(kind, cfg) {
                spec.env = plan
                    .services
                    .iter()
                    .filter(|s| s.section == section)
                    .flat_map(|s| s.vars.iter().map(|v| (v.name.clone(), v.value.clone())))
                    .collect();
            }
            // `%H` in fleet's units is the machine's host name.
            if let (ServiceKind::Fleet, Some(h)) = (kind, &cfg.hostname) {
                spec.args.push(format!("--host-name={h}").into());
            }
            // As CoreOS's etcd2.service sets it.
            if kind == ServiceKind::Kv && !spec.env.iter().any(|(k, _)| k == "ETCD_DATA_DIR") {
                let dir = if section_for(kind, cfg) == Some("etcd") {
                    "/var/lib/etcd"
                } else {
                    "/var/lib/etcd2"
                };
                spec.env.push(("ETCD_DATA_DIR".into(), dir.into()));
            }
            spec
        })
        .collect();
    if !units.is_empty() {
        let mut spec = ServiceSpec::new(ServiceKind::Units);
        for u in units {
            spec.args.push("--start".into());
            spec.args.push(u.into());
        }
        if let Some(h) = &cfg.hostname {
            spec.args.push(format!("--hostname={h}").into());
        }
        specs.push(spec);
    }
    specs
}

/// Carries out the file side of `plan` under `root`: files, unit files and
/// drop-ins, mask/enable links, the hostname and the core user's keys.
fn apply_plan(root: &Path, plan: &Plan) -> anyhow::Result<()> {
    use keelson_cloudconfig::{write_file, Step};
    std::fs::create_dir_all(root)
        .map_err(|e| anyhow::anyhow!("creating the root {}: {e}", root.display()))?;
    for f in &plan.files {
        write_file(root, f)?;
        tracing::info!(path = %f.path.display(), "wrote");
    }
    let link = |l: &keelson_cloudconfig::Link| -> anyhow::Result<()> {
        let at = rooted(root, &l.path);
        if let Some(d) = at.parent() {
            std::fs::create_dir_all(d)?;
        }
        if at.symlink_metadata().is_ok() {
            std::fs::remove_file(&at)?;
        }
        std::os::unix::fs::symlink(&l.target, &at)
            .map_err(|e| anyhow::anyhow!("linking {}: {e}", at.display()))?;
        Ok(())
    };
    for step in &plan.units.steps {
        match step {
            Step::Write(f) => {
                write_file(root, f)?;
                tracing::info!(path = %f.path.display(), "wrote");
            }
            Step::Mask {
                unit,
                remove,
                link: l,
                ..
            } => {
                if let Some(r) = remove {
                    let _ = std::fs::remove_file(rooted(root, r));
                }
                link(l)?;
                tracing::info!(%unit, "masked");
            }
            Step::Unmask { unit, path } => {
                let _ = std::fs::remove_file(rooted(root, path));
                tracing::info!(%unit, "unmasked");
            }
            Step::Enable { unit, links, .. } => {
                for l in links {
                    link(l)?;
                }
                tracing::info!(%unit, "enabled");
            }
            // No systemd here: the node reads the files when it starts them.
            Step::DaemonReload | Step::RestartNetworkd | Step::Command { .. } => {}
        }
    }
    if let Some(h) = &plan.hostname {
        let p = rooted(root, Path::new("/etc/hostname"));
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&p, format!("{h}\n"))?;
        tracing::info!(hostname = %h, "wrote /etc/hostname");
    }
    if !plan.ssh_authorized_keys.is_empty() {
        let dir = rooted(root, Path::new("/home/core/.ssh/authorized_keys.d"));
        std::fs::create_dir_all(&dir)?;
        let keys = plan.ssh_authorized_keys.join("\n") + "\n";
        std::fs::write(dir.join("coreos-cloudinit"), &keys)?;
        let all = rooted(root, Path::new("/home/core/.ssh/authorized_keys"));
        std::fs::write(&all, &keys)?;
        std::fs::set_permissions(&all, std::fs::Permissions::from_mode(0o600))?;
        tracing::info!(
            keys = plan.ssh_authorized_keys.len(),
            "installed the core user's SSH keys"
        );
    }
    for u in &plan.users {
        tracing::warn!(user = %u.name, "users are not created by keelson node (no useradd under --root); create them with the image");
    }
    for n in &plan.notes {
        tracing::info!("{n}");
    }
    Ok(())
}

/// `keelson node --cloud-config FILE [--root DIR]`.
pub fn cloud_config_main(args: Vec<OsString>) -> ExitCode {
    let mut argv = vec![OsString::from("keelson node")];
    argv.extend(args.into_iter().map(|a| {
        if a == "-cloud-config" {
            OsString::from("--cloud-config")
        } else {
            a
        }
    }));
    let flags = match CloudConfigFlags::try_parse_from(argv) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let data = match read(&flags.cloud_config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("keelson node: {e}");
            return ExitCode::from(1);
        }
    };
    let report = validate_bytes(&data);
    if report.has_errors() {
        eprint!("{report}");
        print_hints(&flags.cloud_config, &report);
        eprintln!(
            "keelson node: {} is not a valid cloud-config; nothing was applied",
            flags.cloud_config.display()
        );
        return ExitCode::from(1);
    }
    if !report.is_empty() {
        eprint!("{report}");
    }
    let mut md = Metadata::from_env();
    if let Some(ip) = &flags.public_ipv4 {
        md.public_ipv4 = Some(ip.clone());
    }
    if let Some(ip) = &flags.private_ipv4 {
        md.private_ipv4 = Some(ip.clone());
    }
    let text = match keelson_cloudconfig::maybe_gunzip(&data)
        .map_err(|e| e.to_string())
        .and_then(|b| String::from_utf8(b.into_owned()).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "keelson node: cannot read {}: {e}",
                flags.cloud_config.display()
            );
            return ExitCode::from(1);
        }
    };
    let cfg = match CloudConfig::parse_with(&text, &md) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keelson node: {}: {e}", flags.cloud_config.display());
            return ExitCode::from(1);
        }
    };
    let plan = match keelson_cloudconfig::plan(&cfg, &md, &RootDir(flags.root.clone())) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("keelson node: {}: {e}", flags.cloud_config.display());
            return ExitCode::from(1);
        }
    };
    let specs = node_services(&cfg, &plan);
    let name = flags
        .name
        .clone()
        .or_else(|| cfg.hostname.clone())
        .unwrap_or_else(|| "node".to_owned());
    if flags.dry_run {
        for line in plan.units.describe() {
            println!("{line}");
        }
        for f in &plan.files {
            println!("write {}", f.path.display());
        }
        for s in &specs {
            let (args, _) = crate::node_runner::effective_args(s, &flags.root);
            let args: Vec<String> = args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            println!("run {} {}", s.kind, args.join(" "));
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = apply_plan(&flags.root, &plan) {
        eprintln!(
            "keelson node: applying {}: {e:#}",
            flags.cloud_config.display()
        );
        return ExitCode::from(1);
    }
    if specs.is_empty() {
        eprintln!(
            "keelson node: the cloud-config starts no services; files were written under {}",
            flags.root.display()
        );
        return ExitCode::SUCCESS;
    }
    run_services(&name, &flags.root, specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    type Described = (String, Vec<String>, Vec<(String, String)>);

    fn services_of(text: &str) -> Vec<Described> {
        let md = Metadata::ipv4("10.0.0.5");
        let cfg = CloudConfig::parse_with(text, &md).unwrap();
        let plan = keelson_cloudconfig::plan(&cfg, &md, &keelson_cloudconfig::NoFiles).unwrap();
        node_services(&cfg, &plan)
            .into_iter()
            .map(|s| {
                let args = s
                    .args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                (s.kind.name().to_owned(), args, s.env)
            })
            .collect()
    }

    #[test]
    fn units_and_sections_become_services() {
        let s = services_of(
            "#cloud-config\nhostname: h1\ncoreos:\n  etcd2:\n    name: n1\n    proxy: on\n  flannel:\n    interface: $public_ipv4\n  units:\n    - name: flanneld.service\n      command: start\n    - name: etcd2.service\n      command: start\n    - name: x.service\n      command: start\n      content: |\n        [Service]\n        ExecStart=/bin/true\n    - name: y.service\n      command: stop\n",
        );
        let kinds: Vec<&str> = s.iter().map(|(k, _, _)| k.as_str()).collect();
        // The kv first, whatever the config's order; stopped units are not run.
        assert_eq!(kinds, ["kv", "overlay", "units"]);
        assert!(
            s[0].2.contains(&("ETCD_PROXY".into(), "on".into())),
            "{:?}",
            s[0].2
        );
        assert!(s[0]
            .2
            .contains(&("ETCD_DATA_DIR".into(), "/var/lib/etcd2".into())));
        assert!(
            s[1].2
                .contains(&("FLANNELD_IFACE".into(), "10.0.0.5".into())),
            "{:?}",
            s[1].2
        );
        assert_eq!(s[2].1, ["--start", "x.service", "--hostname=h1"]);
    }

    #[test]
    fn fleet_gets_the_configs_host_name_for_percent_h() {
        let s = services_of(
            "#cloud-config\nhostname: core-02\ncoreos:\n  units:\n    - name: fleet.service\n      command: start\n",
        );
        assert_eq!(s[0].0, "fleet");
        assert!(
            s[0].1.contains(&"--host-name=core-02".to_owned()),
            "{:?}",
            s[0].1
        );
    }

    #[test]
    fn update_sections_start_the_update_engine_and_locksmith_unless_off() {
        let on = services_of(
            "#cloud-config\ncoreos:\n  update:\n    reboot-strategy: etcd-lock\n  locksmith:\n    group: web\n",
        );
        let kinds: Vec<&str> = on.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(kinds, ["update-engine", "locksmith"]);
        assert!(
            on[1].2.contains(&("LOCKSMITHD_GROUP".into(), "web".into())),
            "{:?}",
            on[1].2
        );
        let off = services_of("#cloud-config\ncoreos:\n  update:\n    reboot-strategy: off\n");
        let kinds: Vec<&str> = off.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(kinds, ["update-engine"]);
        assert!(services_of("#cloud-config\nhostname: bare\n").is_empty());
    }

    #[test]
    fn go_style_flags() {
        let f = parse_cloudinit_flags(&os(&["-validate", "-from-file", "a.yaml"])).unwrap();
        assert!(f.validate);
        assert_eq!(f.from_file.as_deref(), Some("a.yaml"));
        let f = parse_cloudinit_flags(&os(&["--validate=true", "--from-file=b.yaml"])).unwrap();
        assert!(f.validate);
        assert_eq!(f.from_file.as_deref(), Some("b.yaml"));
        let f = parse_cloudinit_flags(&os(&["--from-file", "c", "-validate=false"])).unwrap();
        assert!(!f.validate);
        let f = parse_cloudinit_flags(&os(&["-from-url", "http://x/", "-validate"])).unwrap();
        assert_eq!(f.other_source.as_deref(), Some("from-url"));
        assert_eq!(
            parse_cloudinit_flags(&os(&["-bogus"])).unwrap_err(),
            "flag provided but not defined: -bogus"
        );
        assert_eq!(
            parse_cloudinit_flags(&os(&["-from-file"])).unwrap_err(),
            "flag needs an argument: -from-file"
        );
    }

    #[test]
    fn validate_requested() {
        assert!(wants_validate(&os(&["--validate", "f"])));
        assert!(wants_validate(&os(&["-validate", "f"])));
        assert!(wants_validate(&os(&["--validate=f"])));
        assert!(!wants_validate(&os(&["--cloud-config", "f"])));
    }
}
