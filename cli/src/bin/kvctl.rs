//! `kvctl`: etcdctl v2 for Keelson. Also answers to `etcdctl` through a
//! symlink of that name.

fn main() -> std::process::ExitCode {
    keelson_cli::kvctl::main(std::env::args_os().collect())
}
