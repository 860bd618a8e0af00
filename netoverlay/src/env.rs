//! Files written on the host: `subnet.env` (reference §5.1) and the Docker
//! options file with `mk-docker-opts.sh` semantics (§5.2).
//!
//! Both are written atomically (a dot-file in the same directory, then
//! `rename`), because a container runtime that reads a half-written file
//! starts containers in the wrong network and nothing tells anyone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cidr::Ipv4Net;

/// The content of `subnet.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetEnv {
    pub network: Ipv4Net,
    /// The lease (its network address); written as the gateway `x.y.z.1/len`.
    pub subnet: Ipv4Net,
    pub mtu: u32,
    pub ip_masq: bool,
}

/// File errors, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Invalid value of FLANNEL_IPMASQ: {0:?} (expected true or false)")]
    InvalidIpMasq(String),
}

impl SubnetEnv {
    /// The file text, variables in flannel's order.
    pub fn render(&self) -> String {
        format!(
            "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}/{}\nFLANNEL_MTU={}\nFLANNEL_IPMASQ={}\n",
            self.network,
            self.subnet.gateway(),
            self.subnet.prefix(),
            self.mtu,
            self.ip_masq
        )
    }

    /// Parses a `subnet.env`; `None` when a required variable is missing or
    /// malformed (a previous run's file is only a hint).
    pub fn parse(text: &str) -> Option<SubnetEnv> {
        let vars = parse_vars(text);
        let network = vars.get("FLANNEL_NETWORK")?.parse().ok()?;
        let sn: Ipv4Net = vars.get("FLANNEL_SUBNET")?.parse().ok()?;
        let mtu = vars
            .get("FLANNEL_MTU")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ip_masq = vars.get("FLANNEL_IPMASQ").is_some_and(|v| v == "true");
        Some(SubnetEnv {
            network,
            subnet: sn,
            mtu,
            ip_masq,
        })
    }

    /// The previous lease named by the file at `path`, if readable.
    pub fn previous_subnet(path: &Path) -> Option<Ipv4Net> {
        let text = std::fs::read_to_string(path).ok()?;
        SubnetEnv::parse(&text).map(|e| e.subnet)
    }

    pub fn write(&self, path: &Path) -> Result<(), EnvError> {
        write_atomic(path, &self.render())
    }
}

/// `KEY=value` lines; `#` comments and blank lines skipped, optional quotes
/// removed.
pub fn parse_vars(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            out.insert(k.trim().to_string(), v.to_string());
        }
    }
    out
}

/// Writes `text` to `path` through `.<name>` and `rename(2)`, creating the
/// directory (0755) if needed.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), EnvError> {
    let err = |source| EnvError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "subnet.env".into());
    let tmp = dir.join(format!(".{name}"));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// `mk-docker-opts.sh` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptsOptions {
    /// `-i`: one variable per option.
    pub individual: bool,
    /// `-c`: one combined variable.
    pub combined: bool,
    /// `-k`: name of the combined variable (`DOCKER_OPTS`).
    pub combined_key: String,
    /// The current value of the combined variable in the environment,
    /// prepended to it.
    pub combined_prefix: String,
    /// `-m`: omit the ip-masq option.
    pub omit_ip_masq: bool,
}

impl Default for DockerOptsOptions {
    fn default() -> Self {
        DockerOptsOptions {
            individual: false,
            combined: false,
            combined_key: "DOCKER_OPTS".into(),
            combined_prefix: String::new(),
            omit_ip_masq: false,
        }
    }
}

/// Default `-f` file.
pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
/// Default `-d` file.
pub const DEFAULT_DOCKER_OPTS_FILE: &str = "/run/docker_opts.env";

/// Converts the text of a `subnet.env` into the Docker options file text.
/// A missing variable just leaves its option out, as the script does.
pub fn docker_opts(subnet_env: &str, opts: &DockerOptsOptions) -> Result<String, EnvError> {
    let vars = parse_vars(subnet_env);
    // Name order, as the script sorts its individual variables.
    let mut individual: BTreeMap<&str, String> = BTreeMap::new();
    if let Some(v) = vars.get("FLANNEL_SUBNET") {
        individual.insert("DOCKER_OPT_BIP", format!("--bip={v}"));
    }
    if !opts.omit_ip_masq {
        if let Some(v) = vars.get("FLANNEL_IPMASQ") {
            let docker = match v.as_str() {
                "true" => "false",
                "false" => "true",
                other => return Err(EnvError::InvalidIpMasq(other.to_string())),
            };
            individual.insert("DOCKER_OPT_IPMASQ", format!("--ip-masq={docker}"));
        }
    }
    if let Some(v) = vars.get("FLANNEL_MTU") {
        individual.insert("DOCKER_OPT_MTU", format!("--mtu={v}"));
    }
    let both = !opts.individual && !opts.combined;
    let mut out = String::new();
    if opts.individual || both {
        for (k, v) in &individual {
            out.push_str(&format!("{k}=\"{v}\"\n"));
        }
    }
    if opts.combined || both {
        // The script's order: bip, ip-masq, mtu after the inherited value.
        let mut parts = vec![opts.combined_prefix.clone()];
        for k in ["DOCKER_OPT_BIP", "DOCKER_OPT_IPMASQ", "DOCKER_OPT_MTU"] {
            if let Some(v) = individual.get(k) {
                parts.push(v.clone());
            }
        }
        out.push_str(&format!(
            "{}=\"{}\"\n",
            opts.combined_key,
            parts.join(" ").trim()
        ));
    }
    Ok(out)
}

/// Reads `subnet_file` (missing = empty) and writes `out_file` atomically.
pub fn write_docker_opts(
    subnet_file: &Path,
    out_file: &Path,
    opts: &DockerOptsOptions,
) -> Result<(), EnvError> {
    let text = match std::fs::read_to_string(subnet_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(EnvError::Read {
                path: subnet_file.to_path_buf(),
                source,
            })
        }
    };
    write_atomic(out_file, &docker_opts(&text, opts)?)
}

/// `path` (absolute or not) placed under `root` (the daemon's `--root`).
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> SubnetEnv {
        SubnetEnv {
            network: "10.1.0.0/16".parse().unwrap(),
            subnet: "10.1.19.0/24".parse().unwrap(),
            mtu: 1450,
            ip_masq: false,
        }
    }

    #[test]
    fn subnet_env_matches_flannel() {
        assert_eq!(
            env().render(),
            "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.19.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
        let back = SubnetEnv::parse(&env().render()).unwrap();
        assert_eq!(back.subnet.to_string(), "10.1.19.0/24");
        assert_eq!(back.mtu, 1450);
        assert!(SubnetEnv::parse("FLANNEL_SUBNET=garbage").is_none());
        assert!(SubnetEnv::parse("").is_none());
    }

    #[test]
    fn atomic_write_creates_dirs_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run/flannel/subnet.env");
        env().write(&p).unwrap();
        assert_eq!(
            SubnetEnv::previous_subnet(&p),
            Some("10.1.19.0/24".parse().unwrap())
        );
        assert!(!d.path().join("run/flannel/.subnet.env").exists());
        assert_eq!(
            under_root(Path::new("/r"), Path::new("/run/x")),
            PathBuf::from("/r/run/x")
        );
    }

    #[test]
    fn docker_opts_individual_like_the_book() {
        let opts = DockerOptsOptions {
            individual: true,
            ..Default::default()
        };
        let mut e = env();
        e.subnet = "10.2.25.0/24".parse().unwrap();
        e.mtu = 8951;
        e.ip_masq = true;
        assert_eq!(
            docker_opts(&e.render(), &opts).unwrap(),
            "DOCKER_OPT_BIP=\"--bip=10.2.25.1/24\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=false\"\nDOCKER_OPT_MTU=\"--mtu=8951\"\n"
        );
        e.ip_masq = false;
        assert!(docker_opts(&e.render(), &opts)
            .unwrap()
            .contains("--ip-masq=true"));
    }

    #[test]
    fn docker_opts_combined_both_omit_and_errors() {
        let c = DockerOptsOptions {
            combined: true,
            combined_prefix: "--debug".into(),
            ..Default::default()
        };
        assert_eq!(
            docker_opts(&env().render(), &c).unwrap(),
            "DOCKER_OPTS=\"--debug --bip=10.1.19.1/24 --ip-masq=true --mtu=1450\"\n"
        );
        let both = docker_opts(&env().render(), &DockerOptsOptions::default()).unwrap();
        assert_eq!(both.lines().count(), 4);
        let m = DockerOptsOptions {
            individual: true,
            omit_ip_masq: true,
            ..Default::default()
        };
        assert!(!docker_opts(&env().render(), &m).unwrap().contains("IPMASQ"));
        let e = docker_opts("FLANNEL_IPMASQ=maybe\n", &m.clone()).map(|_| ());
        assert!(e.is_ok(), "-m skips the check");
        let e = docker_opts("FLANNEL_IPMASQ=maybe\n", &DockerOptsOptions::default()).unwrap_err();
        assert!(e.to_string().contains("Invalid value of FLANNEL_IPMASQ"));
        assert_eq!(
            docker_opts(
                "",
                &DockerOptsOptions {
                    individual: true,
                    ..Default::default()
                }
            )
            .unwrap(),
            ""
        );
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("docker_opts.env");
        write_docker_opts(
            &d.path().join("missing.env"),
            &out,
            &DockerOptsOptions {
                individual: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "");
    }
}
