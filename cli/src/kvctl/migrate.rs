//! `kvctl migrate --from URL --to URL [--prefix /] [--hidden KEY,...]`:
//! copies a live etcd v2 keyspace into a Keelson cluster (or any v2
//! endpoint): directories, values, hidden keys and remaining TTLs.
//!
//! A v2 listing never shows hidden (`_`-prefixed) nodes, so they are found
//! three ways: the well-known CoreOS roots (`/_coreos.com`), the names
//! given with `--hidden`, and the source's event history (etcd's
//! `waitIndex` scan reports hidden keys), which covers the last 1000
//! changes.

use std::collections::BTreeSet;

use keelson_kv::client::{GetOptions, HttpKvClient, KvClient, KvError, SetOptions, WatchOptions};
use keelson_kv::v2::Node;

/// What the copy did.
#[derive(Debug, Default)]
pub struct Report {
    pub keys: usize,
    pub dirs: usize,
    pub with_ttl: usize,
}

fn client(url: &str) -> Result<HttpKvClient, KvError> {
    HttpKvClient::builder()
        .endpoints(url.split(',').map(str::trim).filter(|s| !s.is_empty()))
        .build()
}

/// Hidden roots below `prefix` named by a key path: every prefix that
/// ends in a `_` component.
fn hidden_roots(key: &str, prefix: &str, out: &mut BTreeSet<String>) {
    let mut acc = String::new();
    for part in key.split('/').filter(|p| !p.is_empty()) {
        acc.push('/');
        acc.push_str(part);
        if part.starts_with('_') && acc.starts_with(prefix) {
            out.insert(acc.clone());
        }
    }
}

/// Copies `prefix` from `from` to `to`.
pub async fn migrate(
    from: &str,
    to: &str,
    prefix: &str,
    hidden: &[String],
) -> Result<Report, KvError> {
    let src = client(from)?;
    let dst = client(to)?;
    let prefix = if prefix.is_empty() { "/" } else { prefix };
    let mut report = Report::default();
    let mut roots: BTreeSet<String> = BTreeSet::new();
    roots.insert(prefix.to_owned());
    let norm = |p: &str| format!("/{}", p.trim_matches('/'));
    for h in hidden
        .iter()
        .map(|h| norm(h))
        .chain(["/_coreos.com".to_owned()])
    {
        if h.starts_with(prefix) {
            roots.insert(h);
        }
    }
    // Hidden keys from the event history.
    let head = src.get(prefix, GetOptions::default()).await?.etcd_index;
    let mut i = head.saturating_sub(998).max(1);
    while i <= head {
        let opts = WatchOptions {
            recursive: true,
            wait_index: Some(i),
        };
        match src.watch_once("/", opts).await {
            Ok(r) => {
                let Some(n) = r.node() else { break };
                if let Some(k) = &n.key {
                    hidden_roots(k, prefix, &mut roots);
                }
                i = n.modified_index.max(i) + 1;
            }
            Err(_) => break,
        }
    }
    for root in &roots {
        let got = match src
            .get(
                root,
                GetOptions {
                    recursive: true,
                    sorted: true,
                    quorum: false,
                },
            )
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_code(keelson_kv::v2::ErrorCode::KeyNotFound) => continue,
            Err(e) => return Err(e),
        };
        if let Some(n) = got.node() {
            copy(&dst, n, &mut report).await?;
        }
    }
    Ok(report)
}

fn ttl_of(n: &Node) -> Option<u64> {
    (n.ttl > 0).then_some(n.ttl as u64)
}

async fn copy(dst: &HttpKvClient, n: &Node, report: &mut Report) -> Result<(), KvError> {
    let mut stack = vec![n.clone()];
    while let Some(n) = stack.pop() {
        let key = n.key.clone().unwrap_or_else(|| "/".into());
        if n.ttl > 0 {
            report.with_ttl += 1;
        }
        if n.dir {
            if key != "/" {
                let opts = SetOptions {
                    dir: true,
                    ttl: ttl_of(&n),
                    ..SetOptions::default()
                };
                match dst.set(&key, "", opts).await {
                    Ok(_) => {}
                    // An existing directory: update its TTL only.
                    Err(e) if e.is_code(keelson_kv::v2::ErrorCode::NotFile) => {
                        if let Some(ttl) = ttl_of(&n) {
                            let opts = SetOptions {
                                dir: true,
                                ttl: Some(ttl),
                                prev_exist: keelson_kv::client::PrevExist::Exists,
                                ..SetOptions::default()
                            };
                            dst.set(&key, "", opts).await?;
                        }
                    }
                    Err(e) => return Err(e),
                }
                report.dirs += 1;
            }
            stack.extend(n.nodes.clone().unwrap_or_default());
        } else {
            let opts = SetOptions {
                ttl: ttl_of(&n),
                ..SetOptions::default()
            };
            dst.set(&key, n.value.as_deref().unwrap_or(""), opts)
                .await?;
            report.keys += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hidden_roots() {
        let mut s = BTreeSet::new();
        hidden_roots("/a/_b/c/_d", "/", &mut s);
        hidden_roots("/plain/key", "/", &mut s);
        assert_eq!(
            s.into_iter().collect::<Vec<_>>(),
            vec!["/a/_b".to_string(), "/a/_b/c/_d".to_string()]
        );
    }
}
