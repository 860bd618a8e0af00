//! Subnet leases as stored in the kv: key `<prefix>/subnets/10.1.15.0-24`,
//! value `{"PublicIP":"…","BackendType":"…","BackendData":{…}}`, a 24 h TTL,
//! or no TTL for a reservation (reference §3, §4.2).

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use keelson_kv::v2::Node;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cidr::Ipv4Net;

/// Lease TTL in seconds (flannel `subnetTTL`, 24 h).
pub const LEASE_TTL_SECS: u64 = 24 * 60 * 60;

/// What a host publishes about itself. Field names and omission rules are
/// flannel's; unknown fields are ignored on read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAttrs {
    #[serde(rename = "PublicIP")]
    pub public_ip: Ipv4Addr,
    /// Absent for udp (which writes none).
    #[serde(
        rename = "BackendType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub backend_type: String,
    #[serde(rename = "BackendData", default, skip_serializing_if = "is_empty_data")]
    pub backend_data: Value,
}

fn is_empty_data(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

impl LeaseAttrs {
    pub fn new(public_ip: Ipv4Addr) -> LeaseAttrs {
        LeaseAttrs {
            public_ip,
            backend_type: String::new(),
            backend_data: Value::Null,
        }
    }

    /// The backend type readers must assume: a missing one means udp.
    pub fn effective_backend(&self) -> &str {
        if self.backend_type.is_empty() {
            "udp"
        } else {
            &self.backend_type
        }
    }

    /// The vxlan `BackendData.VtepMAC`, if present and well-formed.
    pub fn vtep_mac(&self) -> Option<[u8; 6]> {
        let s = self.backend_data.get("VtepMAC")?.as_str()?;
        parse_mac(s)
    }

    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<LeaseAttrs, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A lease as read from the kv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub subnet: Ipv4Net,
    pub attrs: LeaseAttrs,
    /// The stored value, byte for byte (for compare-and-swap).
    pub value: String,
    /// `None` for a reservation (no TTL).
    pub expiration: Option<DateTime<Utc>>,
    pub modified_index: u64,
}

/// Why a kv node is not a lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseParseError {
    #[error("{0}: key is not of the form <a.b.c.d>-<len>")]
    Key(String),
    #[error("{key}: value is not a lease ({reason})")]
    Value { key: String, reason: String },
}

impl Lease {
    pub fn is_reservation(&self) -> bool {
        self.expiration.is_none()
    }

    /// Decodes one node of a `subnets` listing or watch event.
    pub fn from_node(node: &Node) -> Result<Lease, LeaseParseError> {
        let key = node.key.clone().unwrap_or_default();
        let subnet = Ipv4Net::from_key(&key).ok_or_else(|| LeaseParseError::Key(key.clone()))?;
        let value = node.value.clone().unwrap_or_default();
        let attrs = LeaseAttrs::from_json(&value).map_err(|e| LeaseParseError::Value {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let expiration = node
            .expiration
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(Lease {
            subnet,
            attrs,
            value,
            expiration,
            modified_index: node.modified_index,
        })
    }

    /// Decodes every lease of a recursive listing of `<prefix>/subnets`,
    /// returning the bad entries separately (they are skipped, not fatal).
    pub fn from_listing(dir: &Node) -> (Vec<Lease>, Vec<LeaseParseError>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for n in dir.nodes.iter().flatten() {
            if n.dir {
                continue;
            }
            match Lease::from_node(n) {
                Ok(l) => ok.push(l),
                Err(e) => bad.push(e),
            }
        }
        (ok, bad)
    }
}

/// `<prefix>/subnets` for a network (`name` empty = the default network).
pub fn subnets_dir(prefix: &str, network: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if network.is_empty() {
        format!("{p}/subnets")
    } else {
        format!("{p}/{network}/subnets")
    }
}

/// `<prefix>/config` or `<prefix>/<name>/config`.
pub fn config_key(prefix: &str, network: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if network.is_empty() {
        format!("{p}/config")
    } else {
        format!("{p}/{network}/config")
    }
}

/// The key of one lease.
pub fn lease_key(prefix: &str, network: &str, subnet: &Ipv4Net) -> String {
    format!("{}/{}", subnets_dir(prefix, network), subnet.key_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exactly_flannels_shapes() {
        let mut a = LeaseAttrs::new("172.17.8.101".parse().unwrap());
        assert_eq!(a.to_json(), r#"{"PublicIP":"172.17.8.101"}"#);
        a.backend_type = "host-gw".into();
        assert_eq!(
            a.to_json(),
            r#"{"PublicIP":"172.17.8.101","BackendType":"host-gw"}"#
        );
        a.backend_type = "vxlan".into();
        a.backend_data = serde_json::json!({"VtepMAC": "de:71:6e:55:36:75"});
        assert_eq!(
            a.to_json(),
            r#"{"PublicIP":"172.17.8.101","BackendType":"vxlan","BackendData":{"VtepMAC":"de:71:6e:55:36:75"}}"#
        );
        assert_eq!(a.vtep_mac(), Some([0xde, 0x71, 0x6e, 0x55, 0x36, 0x75]));
    }

    #[test]
    fn reads_every_era_and_ignores_unknown_fields() {
        let modern = r#"{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;
        let a = LeaseAttrs::from_json(modern).unwrap();
        assert_eq!(a.effective_backend(), "vxlan");
        assert!(a.vtep_mac().is_some());
        let a = LeaseAttrs::from_json(r#"{"PublicIP":"172.17.8.101"}"#).unwrap();
        assert_eq!(a.effective_backend(), "udp");
        assert!(LeaseAttrs::from_json(r#"{"PublicIP":"nope"}"#).is_err());
        assert!(LeaseAttrs::from_json("garbage").is_err());
    }

    #[test]
    fn listing_skips_bad_entries() {
        let dir = Node {
            key: Some("/coreos.com/network/subnets".into()),
            dir: true,
            nodes: Some(vec![
                Node {
                    key: Some("/coreos.com/network/subnets/10.1.15.0-24".into()),
                    value: Some(r#"{"PublicIP":"10.88.0.11"}"#.into()),
                    expiration: Some("2026-11-21T20:53:15.029553333Z".into()),
                    ttl: 100,
                    modified_index: 7,
                    created_index: 7,
                    ..Node::default()
                },
                Node {
                    key: Some("/coreos.com/network/subnets/junk".into()),
                    value: Some("{}".into()),
                    ..Node::default()
                },
                Node {
                    key: Some("/coreos.com/network/subnets/10.1.16.0-24".into()),
                    value: Some("not json".into()),
                    ..Node::default()
                },
            ]),
            ..Node::default()
        };
        let (ok, bad) = Lease::from_listing(&dir);
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 2);
        assert_eq!(ok[0].subnet.to_string(), "10.1.15.0/24");
        assert!(!ok[0].is_reservation());
    }

    #[test]
    fn keys() {
        let s: Ipv4Net = "10.1.15.0/24".parse().unwrap();
        assert_eq!(
            lease_key("/coreos.com/network", "", &s),
            "/coreos.com/network/subnets/10.1.15.0-24"
        );
        assert_eq!(
            lease_key("/coreos.com/network/", "blue", &s),
            "/coreos.com/network/blue/subnets/10.1.15.0-24"
        );
        assert_eq!(
            config_key("/coreos.com/network", "blue"),
            "/coreos.com/network/blue/config"
        );
    }
}
