//! `keelson`: Keelson's daemons. `keelson kv` runs a kv member with etcd's
//! flags; called through a symlink named `etcd` or `etcd2` it is `keelson kv`.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: keelson <command> [flags]\n\ncommands:\n  certs  make a cluster CA and server, peer and client certificates (keelson certs --help)\n  fleet  run fleetd: agent, engine and fleet API (fleetd's options, FLEET_* variables, fleet.conf)\n  install-aliases DIR  symlinks under the original tools' names (etcd, etcdctl, fleetctl, ...)\n  kv    run a key-value member (etcd's flags and ETCD_* variables)\n  locksmith  run the reboot coordinator (locksmithd's flags and LOCKSMITHD_* variables)\n  node  run several of a machine's services in one process (keelson node --help)\n  overlay  run the overlay network daemon (flanneld's flags and FLANNELD_* variables); overlay mk-docker-opts\n  update-engine  run the update engine of a node (check, download, verify, install)\n  update-server  run an Omaha update server with its admin API\n  up    start a local cluster of N nodes and show its status (keelson up --help)\n";

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args.first().cloned().unwrap_or_default();
    let prog = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if prog == "fleetd" {
        return keelson_cli::fleet_daemon::main(args.split_off(1));
    }
    if prog == "etcd" || prog == "etcd2" {
        return keelson_cli::kv_daemon::main(args.split_off(1));
    }
    if prog == "flanneld" {
        return keelson_cli::overlay_daemon::main(args.split_off(1));
    }
    if prog == "mk-docker-opts.sh" || prog == "mk-docker-opts" {
        return keelson_cli::overlay_daemon::mk_docker_opts_main(args.split_off(1));
    }
    if prog == "locksmithd" {
        return keelson_cli::locksmith::daemon::main(args.split_off(1));
    }
    if prog == "coreos-cloudinit" {
        return keelson_cli::node::cloudinit_main(args.split_off(1));
    }
    if prog == "update_engine" {
        return keelson_cli::update::engine_daemon::main(args.split_off(1));
    }
    match args
        .get(1)
        .map(|a| a.to_string_lossy().into_owned())
        .as_deref()
    {
        Some("kv") => keelson_cli::kv_daemon::main(args.split_off(2)),
        Some("certs") => keelson_cli::certs::main(args.split_off(2)),
        Some("fleet") => keelson_cli::fleet_daemon::main(args.split_off(2)),
        Some("overlay") => keelson_cli::overlay_daemon::main(args.split_off(2)),
        Some("locksmith") => keelson_cli::locksmith::daemon::main(args.split_off(2)),
        Some("update-engine") => keelson_cli::update::engine_daemon::main(args.split_off(2)),
        Some("update-server") => keelson_cli::update::server_daemon::main(args.split_off(2)),
        Some("up") => keelson_cli::up::main(args.split_off(2)),
        Some("install-aliases") => keelson_cli::aliases::main(args.split_off(2)),
        Some("node") if keelson_cli::node::wants_validate(&args[2..]) => {
            keelson_cli::node::validate_main(args.split_off(2))
        }
        Some("node") if keelson_cli::node::wants_cloud_config(&args[2..]) => {
            keelson_cli::node::cloud_config_main(args.split_off(2))
        }
        Some("node") => keelson_cli::node_runner::main(args.split_off(2)),
        Some("--version") | Some("version") => {
            println!("keelson {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
