//! The etcd v2 discovery protocol (kv.md §10.3), spoken against any v2
//! endpoint: a Keelson member, a real etcd, or a discovery service.
//!
//! A discovery URL names a directory `…/v2/keys/_etcd/registry/<token>`
//! holding `_config/size`; every starting member registers
//! `<member-id-hex>` = `name=peerURL[,…]` with `prevExist=false` and waits
//! (by watching the directory) until `size` members have registered. The
//! first `size` registrations by `createdIndex` form the initial cluster;
//! later ones find the cluster full and fall back to proxying or exit.

use std::time::Duration;

use serde::Deserialize;

/// Why discovery failed; texts are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery: size key not found")]
    SizeNotFound,
    #[error("discovery: size key is bad")]
    BadSize,
    #[error("discovery: found duplicate id")]
    DuplicateId,
    #[error("discovery: found duplicate name")]
    DuplicateName,
    /// The cluster is full; carries the registered peers (`name=url,…`
    /// pairs of the first `size` registrations) for a proxy fallback.
    #[error("discovery: cluster is full")]
    Full { peers: Vec<String> },
    #[error("discovery: invalid discovery URL {0:?}")]
    BadUrl(String),
    #[error("discovery: {0}")]
    Other(String),
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    node: Option<Node>,
    #[serde(rename = "errorCode", default)]
    error_code: Option<u64>,
}

#[derive(Debug, Deserialize, Clone)]
struct Node {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    nodes: Vec<Node>,
    #[serde(rename = "createdIndex", default)]
    created_index: u64,
}

/// A transient failure (retried with back-off) or a final one.
enum Step {
    Retry(String),
    Fail(DiscoveryError),
}

impl From<reqwest::Error> for Step {
    fn from(e: reqwest::Error) -> Self {
        Step::Retry(e.to_string())
    }
}

/// One member's side of the protocol.
pub struct Discovery {
    url: String,
    client: reqwest::Client,
    /// First back-off delay (etcd: 2 s, doubling, capped at 256 s).
    pub retry_base: Duration,
    /// Give up after this many consecutive transient failures.
    pub max_retries: u32,
}

impl Discovery {
    /// `url` is the discovery URL (`<base>/v2/keys/_etcd/registry/<token>`);
    /// `proxy` an optional HTTP proxy (`--discovery-proxy`).
    pub fn new(url: &str, proxy: Option<&str>) -> Result<Discovery, DiscoveryError> {
        let url = url.trim().trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(DiscoveryError::BadUrl(url));
        }
        let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(2));
        if let Some(p) = proxy.filter(|p| !p.is_empty()) {
            let p = reqwest::Proxy::all(p).map_err(|_| DiscoveryError::BadUrl(p.to_owned()))?;
            b = b.proxy(p);
        }
        let client = b
            .build()
            .map_err(|e| DiscoveryError::Other(e.to_string()))?;
        Ok(Discovery {
            url,
            client,
            retry_base: Duration::from_secs(2),
            max_retries: 8,
        })
    }

    /// Registers `id` as `name=urls` and waits for the cluster to fill.
    /// Returns the initial cluster (`name=url,…` in registration order).
    pub async fn join_cluster(
        &self,
        id: u64,
        name: &str,
        peer_urls: &[String],
    ) -> Result<String, DiscoveryError> {
        let mut urls = peer_urls.to_vec();
        urls.sort();
        let value = urls
            .iter()
            .map(|u| format!("{name}={u}"))
            .collect::<Vec<_>>()
            .join(",");
        let key = format!("{id:x}");
        let mut delay = self.retry_base;
        let mut failures = 0;
        let mut registered = false;
        loop {
            match self.attempt(&key, name, &value, &mut registered).await {
                Ok(c) => return Ok(c),
                Err(Step::Fail(e)) => return Err(e),
                Err(Step::Retry(why)) => {
                    failures += 1;
                    if failures > self.max_retries {
                        return Err(DiscoveryError::Other(why));
                    }
                    tracing::warn!(error = %why, retry_in = ?delay, "discovery: transient failure");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(256));
                }
            }
        }
    }

    /// The registered peers (`name=url,…` entries), without registering:
    /// what a proxy started with `--discovery` forwards to.
    pub async fn peers(&self) -> Result<Vec<String>, DiscoveryError> {
        let size = self.size().await.map_err(step_err)?;
        let (_, nodes) = self.list().await.map_err(step_err)?;
        Ok(nodes
            .into_iter()
            .take(size)
            .filter_map(|n| n.value)
            .collect())
    }

    async fn attempt(
        &self,
        key: &str,
        name: &str,
        value: &str,
        registered: &mut bool,
    ) -> Result<String, Step> {
        let size = self.size().await?;
        if !*registered {
            // The fast "full" check before registering.
            let (_, nodes) = self.list().await?;
            if nodes.len() >= size && !nodes.iter().any(|n| base(&n.key) == key) {
                return Err(Step::Fail(DiscoveryError::Full {
                    peers: nodes
                        .into_iter()
                        .take(size)
                        .filter_map(|n| n.value)
                        .collect(),
                }));
            }
            let r = self
                .client
                .put(format!("{}/{key}?prevExist=false", self.url))
                .form(&[("value", value)])
                .send()
                .await?;
            let status = r.status();
            let a: Answer = r.json().await.map_err(|e| Step::Retry(e.to_string()))?;
            if a.error_code == Some(105) {
                return Err(Step::Fail(DiscoveryError::DuplicateId));
            }
            if !status.is_success() {
                return Err(Step::Retry(format!("registering: {status}")));
            }
            *registered = true;
        }
        loop {
            let (index, nodes) = self.list().await?;
            let first: Vec<&Node> = nodes.iter().take(size).collect();
            if !nodes.iter().any(|n| base(&n.key) == key) {
                return Err(Step::Retry("own registration not visible yet".into()));
            }
            if !first.iter().any(|n| base(&n.key) == key) {
                return Err(Step::Fail(DiscoveryError::Full {
                    peers: first.iter().filter_map(|n| n.value.clone()).collect(),
                }));
            }
            let dup = first.iter().any(|n| {
                base(&n.key) != key
                    && n.value
                        .as_deref()
                        .is_some_and(|v| v.split(',').any(|p| p.split('=').next() == Some(name)))
            });
            if dup {
                return Err(Step::Fail(DiscoveryError::DuplicateName));
            }
            if first.len() >= size {
                let cluster: Vec<String> = first.iter().filter_map(|n| n.value.clone()).collect();
                return Ok(cluster.join(","));
            }
            tracing::info!(
                "found {} peer(s), waiting for {} more",
                first.len(),
                size - first.len()
            );
            // Long poll for the next change, then list again.
            let _ = self
                .client
                .get(format!(
                    "{}?wait=true&recursive=true&waitIndex={}",
                    self.url,
                    index + 1
                ))
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .and_then(|r| r.error_for_status());
        }
    }

    async fn size(&self) -> Result<usize, Step> {
        let r = self
            .client
            .get(format!("{}/_config/size", self.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Step::Fail(DiscoveryError::SizeNotFound));
        }
        if !r.status().is_success() {
            return Err(Step::Retry(format!("reading the size: {}", r.status())));
        }
        let a: Answer = r.json().await.map_err(|e| Step::Retry(e.to_string()))?;
        a.node
            .and_then(|n| n.value)
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|s| *s > 0)
            .ok_or(Step::Fail(DiscoveryError::BadSize))
    }

    /// The registrations sorted by `createdIndex`, and the `X-Etcd-Index`.
    async fn list(&self) -> Result<(u64, Vec<Node>), Step> {
        let r = self
            .client
            .get(self.url.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(Step::Retry(format!("listing: {}", r.status())));
        }
        let index = r
            .headers()
            .get("x-etcd-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let a: Answer = r.json().await.map_err(|e| Step::Retry(e.to_string()))?;
        let mut nodes: Vec<Node> = a
            .node
            .map(|n| n.nodes)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !base(&n.key).starts_with('_'))
            .collect();
        nodes.sort_by_key(|n| n.created_index);
        Ok((index, nodes))
    }
}

fn base(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

fn step_err(s: Step) -> DiscoveryError {
    match s {
        Step::Fail(e) => e,
        Step::Retry(why) => DiscoveryError::Other(why),
    }
}

/// The peer URLs in `name=url,…` registrations.
pub fn peer_urls_of(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|e| e.split(','))
        .filter_map(|p| p.split_once('=').map(|(_, u)| u.trim().to_owned()))
        .collect()
}

/// Whether `data_dir` already holds a member's data: discovery runs only
/// at first start, as in etcd.
pub fn member_data_exists(data_dir: &std::path::Path) -> bool {
    data_dir.join(crate::server::IDENTITY_FILE).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registrations() {
        assert_eq!(
            peer_urls_of(&["a=http://1:2".into(), "b=http://3:4,b=http://5:6".into()]),
            vec!["http://1:2", "http://3:4", "http://5:6"]
        );
        assert_eq!(base("/_etcd/registry/t/abc"), "abc");
        assert!(Discovery::new("ftp://x", None).is_err());
    }
}
