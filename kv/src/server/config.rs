//! [`ServerConfig`]: one member's settings, named after etcd's flags
//! (kv.md §11.2), with etcd 3.4's defaults and start-up checks, and the
//! member and cluster IDs derived the way etcd derives them, so that a
//! Keelson member started with the same flags as an etcd member reports the
//! same IDs.

use std::path::PathBuf;
use std::time::Duration;

use sha1::{Digest, Sha1};

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterState {
    #[default]
    New,
    Existing,
}

/// Why a configuration cannot start a member; texts follow etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(s.into())
}

/// A member's configuration; field names follow etcd's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--wal-dir`.
    pub wal_dir: Option<PathBuf>,
    /// `--listen-client-urls`. Empty: no HTTP listener (embedded use).
    pub listen_client_urls: Vec<String>,
    /// `--advertise-client-urls`.
    pub advertise_client_urls: Vec<String>,
    /// `--listen-peer-urls`.
    pub listen_peer_urls: Vec<String>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster` (`name=url,name=url`); empty means
    /// `<name>=<initial-advertise-peer-urls>`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--initial-cluster-state`.
    pub initial_cluster_state: ClusterState,
    /// `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`:
    /// TLS for the https client URLs.
    pub client_tls: Option<crate::tls::TlsInfo>,
    /// The `--peer-*` equivalents: TLS for https peer URLs, both ways.
    pub peer_tls: Option<crate::tls::TlsInfo>,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// `--experimental-snapshot-catchup-entries` (etcd 3.5): log entries
    /// kept behind a snapshot so a slow follower catches up from the log.
    pub snapshot_catchup_entries: u64,
    /// `--max-wals` (0 = unlimited).
    pub max_wals: usize,
    /// `--max-snapshots` (0 = unlimited).
    pub max_snapshots: usize,
    /// `--quota-backend-bytes` (0 = default).
    pub quota_backend_bytes: u64,
    /// `--heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// `--cors`: allowed origins; `*` allows all (etcd 3.4's default).
    pub cors: Vec<String>,
    /// Events kept for `waitIndex` (etcd: 1000).
    pub watch_history: usize,
    /// `--force-new-cluster`: start as a one-member cluster with a new
    /// member and cluster ID, keeping every key (restore from `kvctl
    /// backup`, or recovery after losing quorum). Remove it afterwards.
    pub force_new_cluster: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "default".into(),
            data_dir: PathBuf::from("default.etcd"),
            wal_dir: None,
            listen_client_urls: vec!["http://localhost:2379".into()],
            advertise_client_urls: vec!["http://localhost:2379".into()],
            listen_peer_urls: vec!["http://localhost:2380".into()],
            initial_advertise_peer_urls: vec!["http://localhost:2380".into()],
            initial_cluster: String::new(),
            initial_cluster_token: "etcd-cluster".into(),
            initial_cluster_state: ClusterState::New,
            client_tls: None,
            peer_tls: None,
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5000,
            max_wals: 5,
            max_snapshots: 5,
            quota_backend_bytes: 0,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            cors: vec!["*".into()],
            watch_history: crate::store::DEFAULT_HISTORY_CAPACITY,
            force_new_cluster: false,
        }
    }
}

/// A parsed `http://host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Parses a listen/advertise URL with etcd's rules: scheme `http` (or
/// `https`), `host:port` required, no path.
pub fn parse_url(u: &str) -> Result<HostPort, ConfigError> {
    let u = u.trim();
    let (scheme, rest) = u.split_once("://").ok_or_else(|| {
        invalid(format!(
            "URL scheme must be http, https, unix, or unixs: {u}"
        ))
    })?;
    if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
        return Err(invalid(format!(
            "URL scheme must be http, https, unix, or unixs: {u}"
        )));
    }
    if matches!(scheme, "unix" | "unixs") {
        return Err(invalid(format!("unix sockets are not supported yet: {u}")));
    }
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.contains('/') || hostport.contains('?') || hostport.contains('#') {
        return Err(invalid(format!("URL must not contain a path: {u}")));
    }
    let (host, port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], &hostport[i + 1..]),
        _ => {
            return Err(invalid(format!(
                "URL address does not have the form \"host:port\": {u}"
            )))
        }
    };
    let port: u16 = port.parse().map_err(|_| {
        invalid(format!(
            "URL address does not have the form \"host:port\": {u}"
        ))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid(format!(
            "URL address does not have the form \"host:port\": {u}"
        )));
    }
    Ok(HostPort {
        scheme: scheme.into(),
        host: host.into(),
        port,
    })
}

/// Splits a comma-separated URL list (spaces around commas tolerated),
/// checks every URL, and sorts the list as etcd does.
pub fn parse_url_list(s: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for u in s.split(',') {
        let u = u.trim();
        if u.is_empty() {
            continue;
        }
        parse_url(u)?;
        out.push(u.to_owned());
    }
    out.sort();
    Ok(out)
}

/// etcd's member ID: the first 8 bytes (big-endian) of SHA-1 over the
/// sorted peer URLs concatenated, then the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// etcd's cluster ID: SHA-1 over the sorted member IDs (8 bytes
/// big-endian each), first 8 bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

/// A fresh, non-zero, unpredictable ID (for identities that must not
/// collide with the ones the data was written under: backups and
/// `--force-new-cluster`).
pub fn random_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha1::new();
    h.update(now.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    // Stack address: differs between runs with ASLR.
    let local = 0u8;
    h.update((std::ptr::addr_of!(local) as usize).to_le_bytes());
    first_u64(&h.finalize()).max(1)
}

fn first_u64(d: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

impl ServerConfig {
    /// The initial cluster as `(name, peer URLs)` in the given order.
    pub fn initial_members(&self) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
        if self.initial_cluster.trim().is_empty() {
            return Ok(vec![(
                self.name.clone(),
                self.initial_advertise_peer_urls.clone(),
            )]);
        }
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for part in self.initial_cluster.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("{part} is not a valid name=url pair")))?;
            parse_url(url)?;
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url.trim().to_owned()),
                None => out.push((name.to_owned(), vec![url.trim().to_owned()])),
            }
        }
        for (_, urls) in out.iter_mut() {
            urls.sort();
        }
        Ok(out)
    }

    /// Checks the configuration with etcd's messages and returns this
    /// member's ID and the cluster ID.
    pub fn validate(&self) -> Result<(u64, u64), ConfigError> {
        let hb = self.heartbeat_interval.as_millis();
        let et = self.election_timeout.as_millis();
        if et < 5 * hb {
            return Err(invalid(format!(
                "--election-timeout[{et}ms] should be at least as 5 times as --heartbeat-interval[{hb}ms]"
            )));
        }
        if et > 50_000 {
            return Err(invalid(format!(
                "--election-timeout[{et}ms] is too long, and should be set less than 50000ms"
            )));
        }
        for u in self
            .listen_client_urls
            .iter()
            .chain(&self.advertise_client_urls)
            .chain(&self.listen_peer_urls)
            .chain(&self.initial_advertise_peer_urls)
        {
            parse_url(u)?;
        }
        for u in &self.listen_client_urls {
            if u.starts_with("https://") && self.client_tls.is_none() {
                return Err(invalid(format!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for client url {u} with HTTPS scheme"
                )));
            }
        }
        for u in &self.listen_peer_urls {
            if u.starts_with("https://") && self.peer_tls.is_none() {
                return Err(invalid(format!(
                    "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {u} with HTTPS scheme"
                )));
            }
        }
        let members = self.initial_members()?;
        let Some((_, my_urls)) = members.iter().find(|(n, _)| *n == self.name) else {
            return Err(invalid(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            )));
        };
        let mut advertised = self.initial_advertise_peer_urls.clone();
        advertised.sort();
        if *my_urls != advertised {
            return Err(invalid(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != \"{}\"(resolved from {:?}))",
                self.name,
                my_urls.join(","),
                advertised.join(","),
                advertised.join(","),
                advertised,
                my_urls.join(","),
                my_urls
            )));
        }
        let ids: Vec<u64> = members
            .iter()
            .map(|(_, urls)| member_id(urls, &self.initial_cluster_token))
            .collect();
        let me = member_id(my_urls, &self.initial_cluster_token);
        Ok((me, cluster_id(&ids)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd() {
        // Observed on etcd 3.4.23 started with these flags.
        let m = member_id(&["http://127.0.0.1:23800".into()], "etcd-cluster");
        assert_eq!(format!("{m:x}"), "2e1259d415f2a040");
        assert_eq!(format!("{:x}", cluster_id(&[m])), "48276a8f75b6a87");
    }

    #[test]
    fn validation_messages() {
        let c = ServerConfig {
            heartbeat_interval: Duration::from_millis(300),
            ..ServerConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
        );
        let c = ServerConfig {
            initial_cluster: "other=http://localhost:2380".into(),
            ..ServerConfig::default()
        };
        assert!(c.validate().is_err());
        assert!(ServerConfig::default().validate().is_ok());
        assert!(parse_url("http://127.0.0.1").is_err());
        assert!(parse_url("ftp://127.0.0.1:1").is_err());
        assert!(parse_url("http://127.0.0.1:1/path").is_err());
        assert_eq!(parse_url("http://[::1]:2379").unwrap().host, "::1");
        assert_eq!(
            parse_url_list("http://b:1, http://a:1").unwrap(),
            vec!["http://a:1".to_string(), "http://b:1".to_string()]
        );
    }
}
