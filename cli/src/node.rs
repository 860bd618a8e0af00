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

use clap::Parser;
use keelson_cloudconfig::{validate_bytes, Report};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
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
