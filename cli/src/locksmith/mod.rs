//! locksmith's command lines: `keelson locksmith` (also `locksmithd` through
//! a symlink), the reboot coordinator daemon, and `keelctl locksmith` (also
//! `locksmithctl`), which inspects and edits the reboot semaphore. The
//! decisions and the semaphore live in `keelson_updater::locksmith`; this
//! module maps locksmith's flags and environment onto them.

pub mod ctl;
pub mod daemon;

use std::sync::Arc;

use keelson_kv::client::{HttpKvClient, KvClient};

/// The store endpoints locksmith uses when none is given.
pub const DEFAULT_ENDPOINTS: [&str; 2] = ["http://127.0.0.1:2379", "http://127.0.0.1:4001"];

/// The `-etcd-*` flags shared by the daemon and the CLI.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub cafile: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// An empty value (an empty `LOCKSMITH*_…` variable) counts as unset.
pub(crate) fn non_empty(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

impl EtcdOptions {
    /// The endpoints given (comma-separated or repeated), or the defaults.
    pub fn endpoints(&self) -> Vec<String> {
        let e: Vec<String> = self
            .endpoints
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if e.is_empty() {
            DEFAULT_ENDPOINTS.map(String::from).to_vec()
        } else {
            e
        }
    }

    /// An HTTP client for the store with the TLS material and credentials.
    pub fn client(&self) -> anyhow::Result<Arc<dyn KvClient>> {
        let mut b = HttpKvClient::builder().endpoints(self.endpoints());
        if let Some(ca) = non_empty(&self.cafile) {
            b = b.ca_file(ca);
        }
        match (non_empty(&self.certfile), non_empty(&self.keyfile)) {
            (Some(cert), Some(key)) => b = b.client_cert(cert, key),
            (None, None) => {}
            _ => anyhow::bail!("-etcd-certfile and -etcd-keyfile must be given together"),
        }
        if let Some(user) = non_empty(&self.username) {
            b = b.credentials(user, self.password.clone().unwrap_or_default());
        }
        Ok(Arc::new(b.build()?))
    }
}
