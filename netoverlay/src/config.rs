//! The network configuration document stored at `<prefix>/config`.
//!
//! flannel decodes it with Go's `encoding/json`, so real-world documents rely
//! on keys matching case-insensitively (`"network"` works), unknown keys being
//! ignored and, when two keys map to one field, the last one winning. The
//! decoder here reproduces exactly that: keys are lower-cased in document
//! order, later ones overwrite earlier ones. Validation follows modern flannel
//! (`CheckNetworkConfig`) and uses its messages, so search results for an
//! error text lead to the right explanation.

use std::fmt;
use std::net::Ipv4Addr;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::cidr::Ipv4Net;

/// Default udp port (flannel `backend/udp`).
pub const DEFAULT_UDP_PORT: u16 = 8285;
/// Default VXLAN network identifier.
pub const DEFAULT_VNI: u32 = 1;

/// A backend kind as named in `Backend.Type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendType {
    Udp,
    Vxlan,
    HostGw,
    /// Allocate a lease and forward nothing.
    Alloc,
    /// Any other name (`aws-vpc`, `gce`, `ipip`, ...): parsed so that the
    /// document is accepted and listed, refused when a daemon must run it.
    Other(String),
}

impl BackendType {
    pub fn parse(s: &str) -> BackendType {
        match s.to_ascii_lowercase().as_str() {
            "udp" => BackendType::Udp,
            "vxlan" => BackendType::Vxlan,
            "host-gw" => BackendType::HostGw,
            "alloc" => BackendType::Alloc,
            _ => BackendType::Other(s.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            BackendType::Udp => "udp",
            BackendType::Vxlan => "vxlan",
            BackendType::HostGw => "host-gw",
            BackendType::Alloc => "alloc",
            BackendType::Other(s) => s,
        }
    }

    /// Bytes of encapsulation overhead subtracted from the external MTU
    /// (reference §6.8).
    pub fn mtu_overhead(&self) -> u32 {
        match self {
            BackendType::Udp => 28,
            BackendType::Vxlan => 50,
            _ => 0,
        }
    }
}

impl fmt::Display for BackendType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `Backend` object: its type, the options Keelson implements, and the
/// raw document for anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub kind: BackendType,
    /// udp: `Port` (8285). vxlan: `Port` (0 = kernel default, 8472).
    pub port: u16,
    /// vxlan `VNI` (1).
    pub vni: u32,
    /// vxlan `Learning` (false).
    pub learning: bool,
    /// vxlan `GBP` (false).
    pub gbp: bool,
    /// vxlan `DirectRouting` (false): accepted, routes via vxlan regardless.
    pub direct_routing: bool,
    /// vxlan `MTU`: device MTU override (0 = external MTU − 50).
    pub mtu: u32,
    /// Keelson: vxlan `DisableTxChecksum` (reference §6.3, issue 1279).
    pub disable_tx_checksum: bool,
    /// The object as written, keys lower-cased, last wins.
    pub raw: serde_json::Map<String, Value>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig::for_kind(BackendType::Udp)
    }
}

impl BackendConfig {
    pub fn for_kind(kind: BackendType) -> BackendConfig {
        let port = match kind {
            BackendType::Udp => DEFAULT_UDP_PORT,
            _ => 0,
        };
        BackendConfig {
            kind,
            port,
            vni: DEFAULT_VNI,
            learning: false,
            gbp: false,
            direct_routing: false,
            mtu: 0,
            disable_tx_checksum: false,
            raw: serde_json::Map::new(),
        }
    }

    /// The UDP port peers must be reached on (vxlan 0 means the kernel's 8472).
    pub fn effective_port(&self) -> u16 {
        match (&self.kind, self.port) {
            (BackendType::Vxlan, 0) => 8472,
            (_, p) => p,
        }
    }
}

/// A validated network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub network: Ipv4Net,
    pub subnet_len: u8,
    pub subnet_min: Ipv4Addr,
    pub subnet_max: Ipv4Addr,
    pub backend: BackendConfig,
}

/// What is wrong with a configuration document, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("network config is not valid JSON: {0}")]
    Json(String),
    #[error("network config must be a JSON object such as {{\"Network\": \"10.1.0.0/16\"}}")]
    NotObject,
    #[error("network config has no \"Network\": add one, e.g. {{\"Network\": \"10.1.0.0/16\"}}")]
    MissingNetwork,
    #[error("{field}: expected {expected}, got {got}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("{field}: {value:?} is not {expected}")]
    BadValue {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("network is too small. Minimum useful network prefix is /28 (got {0})")]
    NetworkTooSmall(Ipv4Net),
    #[error("SubnetLen must be less than /31 (got /{0})")]
    SubnetLenTooLong(u8),
    #[error("network must be able to accommodate at least four subnets: SubnetLen /{len} needs a Network of /{} or larger (got {network})", .len.saturating_sub(2))]
    TooFewSubnets { network: Ipv4Net, len: u8 },
    #[error("{field} is not in the range of the Network ({value} is outside {network})")]
    OutOfRange {
        field: &'static str,
        value: Ipv4Addr,
        network: Ipv4Net,
    },
    #[error("{field} is not on a SubnetLen boundary: {value} (leases are /{len})")]
    Misaligned {
        field: &'static str,
        value: Ipv4Addr,
        len: u8,
    },
    #[error("SubnetMin {min} is above SubnetMax {max}: no lease can be handed out")]
    EmptyRange { min: Ipv4Addr, max: Ipv4Addr },
}

/// A JSON value whose objects keep their keys in document order (serde_json
/// maps are sorted, which would lose "last wins").
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Other(Value),
}

impl Ordered {
    fn into_value(self) -> Value {
        match self {
            Ordered::Other(v) => v,
            Ordered::Object(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries {
                    m.insert(k, v.into_value());
                }
                Value::Object(m)
            }
        }
    }

    fn type_name(&self) -> String {
        match self {
            Ordered::Object(_) => "an object".into(),
            Ordered::Other(v) => json_type(v),
        }
    }
}

fn json_type(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Ordered, E> {
                Ok(Ordered::Other(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Ordered, E> {
                Ok(Ordered::Other(Value::from(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Ordered, E> {
                Ok(Ordered::Other(Value::from(n)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Ordered, E> {
                Ok(Ordered::Other(
                    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_str<E>(self, s: &str) -> Result<Ordered, E> {
                Ok(Ordered::Other(Value::String(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Ordered, E> {
                Ok(Ordered::Other(Value::String(s)))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Other(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Other(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Ordered>()? {
                    out.push(v.into_value());
                }
                Ok(Ordered::Other(Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
                    out.push((k, v));
                }
                Ok(Ordered::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Lower-cases keys, last wins; `null` values count as absent (Go leaves the
/// field at its zero value).
fn fold(entries: Vec<(String, Ordered)>) -> Vec<(String, Ordered)> {
    let mut out: Vec<(String, Ordered)> = Vec::new();
    for (k, v) in entries {
        let k = k.to_ascii_lowercase();
        out.retain(|(e, _)| *e != k);
        if !matches!(v, Ordered::Other(Value::Null)) {
            out.push((k, v));
        }
    }
    out
}

fn take(entries: &mut Vec<(String, Ordered)>, key: &str) -> Option<Ordered> {
    let i = entries.iter().position(|(k, _)| k == key)?;
    Some(entries.remove(i).1)
}

fn string_field(
    v: Ordered,
    field: &'static str,
    expected: &'static str,
) -> Result<String, ConfigError> {
    match v {
        Ordered::Other(Value::String(s)) => Ok(s),
        other => Err(ConfigError::WrongType {
            field,
            expected,
            got: other.type_name(),
        }),
    }
}

fn uint_field(v: Ordered, field: &'static str, max: u64) -> Result<u64, ConfigError> {
    match &v {
        Ordered::Other(Value::Number(n)) => match n.as_u64() {
            Some(x) if x <= max => Ok(x),
            _ => Err(ConfigError::BadValue {
                field,
                value: n.to_string(),
                expected: "a non-negative integer in range",
            }),
        },
        other => Err(ConfigError::WrongType {
            field,
            expected: "a number",
            got: other.type_name(),
        }),
    }
}

fn bool_field(v: Ordered, field: &'static str) -> Result<bool, ConfigError> {
    match v {
        Ordered::Other(Value::Bool(b)) => Ok(b),
        other => Err(ConfigError::WrongType {
            field,
            expected: "true or false",
            got: other.type_name(),
        }),
    }
}

fn addr_field(v: Ordered, field: &'static str) -> Result<Ipv4Addr, ConfigError> {
    let s = string_field(v, field, "a string IPv4 address such as \"10.1.10.0\"")?;
    s.parse().map_err(|_| ConfigError::BadValue {
        field,
        value: s,
        expected: "an IPv4 address such as \"10.1.10.0\"",
    })
}

impl NetworkConfig {
    /// Parses and validates a configuration document.
    pub fn parse(text: &str) -> Result<NetworkConfig, ConfigError> {
        let doc: Ordered =
            serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
        let Ordered::Object(entries) = doc else {
            return Err(ConfigError::NotObject);
        };
        let mut top = fold(entries);

        let network = match take(&mut top, "network") {
            None => return Err(ConfigError::MissingNetwork),
            Some(v) => {
                let s = string_field(v, "Network", "a string CIDR such as \"10.1.0.0/16\"")?;
                s.parse::<Ipv4Net>().map_err(|_| ConfigError::BadValue {
                    field: "Network",
                    value: s,
                    expected: "an IPv4 CIDR such as \"10.1.0.0/16\"",
                })?
            }
        };
        let subnet_len = take(&mut top, "subnetlen")
            .map(|v| uint_field(v, "SubnetLen", 32))
            .transpose()?
            .map(|v| v as u8);
        let subnet_min = take(&mut top, "subnetmin")
            .map(|v| addr_field(v, "SubnetMin"))
            .transpose()?;
        let subnet_max = take(&mut top, "subnetmax")
            .map(|v| addr_field(v, "SubnetMax"))
            .transpose()?;
        let backend = match take(&mut top, "backend") {
            None => BackendConfig::default(),
            Some(Ordered::Object(b)) => parse_backend(fold(b))?,
            Some(other) => {
                return Err(ConfigError::WrongType {
                    field: "Backend",
                    expected: "an object such as {\"Type\": \"vxlan\"}",
                    got: other.type_name(),
                })
            }
        };
        NetworkConfig::validate(network, subnet_len, subnet_min, subnet_max, backend)
    }

    /// Applies defaults and modern flannel's checks (reference §2.4).
    pub fn validate(
        network: Ipv4Net,
        subnet_len: Option<u8>,
        subnet_min: Option<Ipv4Addr>,
        subnet_max: Option<Ipv4Addr>,
        backend: BackendConfig,
    ) -> Result<NetworkConfig, ConfigError> {
        let p = network.prefix();
        if p > 28 {
            return Err(ConfigError::NetworkTooSmall(network));
        }
        let len = match subnet_len {
            // Go's zero value: an explicit 0 is the same as absent.
            None | Some(0) => {
                if p <= 22 {
                    24
                } else {
                    p + 2
                }
            }
            Some(l) => {
                if l > 30 {
                    return Err(ConfigError::SubnetLenTooLong(l));
                }
                if l < p + 2 {
                    return Err(ConfigError::TooFewSubnets { network, len: l });
                }
                l
            }
        };
        let size = 1u32 << (32 - u32::from(len));
        let check = |field: &'static str, a: Ipv4Addr| -> Result<Ipv4Addr, ConfigError> {
            if !network.contains(a) {
                return Err(ConfigError::OutOfRange {
                    field,
                    value: a,
                    network,
                });
            }
            if u32::from(a) % size != 0 {
                return Err(ConfigError::Misaligned {
                    field,
                    value: a,
                    len,
                });
            }
            Ok(a)
        };
        let min = match subnet_min {
            Some(a) => check("SubnetMin", a)?,
            None => Ipv4Addr::from(u32::from(network.addr()) + size),
        };
        let max = match subnet_max {
            Some(a) => check("SubnetMax", a)?,
            None => Ipv4Addr::from(u32::from(network.broadcast()) - size + 1),
        };
        if u32::from(min) > u32::from(max) {
            return Err(ConfigError::EmptyRange { min, max });
        }
        Ok(NetworkConfig {
            network,
            subnet_len: len,
            subnet_min: min,
            subnet_max: max,
            backend,
        })
    }

    /// Number of lease-sized blocks from `SubnetMin` to `SubnetMax`.
    pub fn capacity(&self) -> u64 {
        let size = 1u64 << (32 - u32::from(self.subnet_len));
        (u64::from(u32::from(self.subnet_max)) - u64::from(u32::from(self.subnet_min))) / size + 1
    }

    /// Whether a lease fits this configuration (flannel's "compatible": inside
    /// SubnetMin..SubnetMax with the configured length).
    pub fn is_compatible(&self, subnet: &Ipv4Net) -> bool {
        subnet.prefix() == self.subnet_len
            && u32::from(subnet.addr()) >= u32::from(self.subnet_min)
            && u32::from(subnet.addr()) <= u32::from(self.subnet_max)
    }

    /// The MTU containers must use given the external interface's MTU.
    pub fn mtu_for(&self, external_mtu: u32) -> u32 {
        if self.backend.kind == BackendType::Vxlan && self.backend.mtu > 0 {
            return self.backend.mtu;
        }
        external_mtu.saturating_sub(self.backend.kind.mtu_overhead())
    }
}

fn parse_backend(mut b: Vec<(String, Ordered)>) -> Result<BackendConfig, ConfigError> {
    let kind = match take(&mut b, "type") {
        None => BackendType::Udp,
        Some(v) => BackendType::parse(&string_field(
            v,
            "Backend.Type",
            "a string such as \"vxlan\"",
        )?),
    };
    let mut cfg = BackendConfig::for_kind(kind);
    let mut raw = serde_json::Map::new();
    raw.insert("type".into(), Value::String(cfg.kind.as_str().into()));
    for (k, v) in b {
        match k.as_str() {
            "port" => {
                let p = uint_field(v, "Backend.Port", u64::from(u16::MAX))? as u16;
                raw.insert(k, Value::from(p));
                if p != 0 || cfg.kind != BackendType::Udp {
                    cfg.port = p;
                }
            }
            "vni" => {
                let n = uint_field(v, "Backend.VNI", (1 << 24) - 1)? as u32;
                raw.insert(k, Value::from(n));
                if n != 0 {
                    cfg.vni = n;
                }
            }
            "learning" => cfg.learning = bool_field(v, "Backend.Learning")?,
            "gbp" => cfg.gbp = bool_field(v, "Backend.GBP")?,
            "directrouting" => cfg.direct_routing = bool_field(v, "Backend.DirectRouting")?,
            "disabletxchecksum" => {
                cfg.disable_tx_checksum = bool_field(v, "Backend.DisableTxChecksum")?
            }
            "mtu" => cfg.mtu = uint_field(v, "Backend.MTU", 65535)? as u32,
            _ => {
                raw.insert(k, v.into_value());
            }
        }
    }
    cfg.raw = raw;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn book_defaults() {
        let c = NetworkConfig::parse(r#"{ "Network": "10.1.0.0/16" }"#).unwrap();
        assert_eq!(c.network.to_string(), "10.1.0.0/16");
        assert_eq!(c.subnet_len, 24);
        assert_eq!(c.subnet_min, ip("10.1.1.0"));
        assert_eq!(c.subnet_max, ip("10.1.255.0"));
        assert_eq!(c.capacity(), 255);
        assert_eq!(c.backend.kind, BackendType::Udp);
        assert_eq!(c.backend.port, 8285);
        assert_eq!(c.mtu_for(1500), 1472);
    }

    #[test]
    fn every_reference_example_parses() {
        let docs = [
            r#"{ "Network": "10.1.0.0/16" }"#,
            r#"{ "Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}}"#,
            r#"{ "network": "10.1.0.0/16" }"#,
            r#"{ "Network": "10.1.0.0/16", "Backend": { "Type": "vxlan", "VNI": 2 } }"#,
            r#"{ "Network": "10.1.0.0/16", "Backend": {"Type": "aws-vpc"} }"#,
            r#"{ "Network": "10.0.0.0/8", "SubnetLen": 20, "SubnetMin": "10.10.0.0",
                 "SubnetMax": "10.99.0.0", "Backend": { "Type": "udp", "Port": 7890 } }"#,
        ];
        for d in docs {
            NetworkConfig::parse(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
        let c = NetworkConfig::parse(docs[5]).unwrap();
        assert_eq!((c.subnet_len, c.backend.port), (20, 7890));
        assert_eq!(c.subnet_min, ip("10.10.0.0"));
        let c = NetworkConfig::parse(docs[3]).unwrap();
        assert_eq!(
            (c.backend.kind.clone(), c.backend.vni),
            (BackendType::Vxlan, 2)
        );
        assert_eq!(c.backend.effective_port(), 8472);
        assert_eq!(c.mtu_for(1500), 1450);
        let c = NetworkConfig::parse(docs[4]).unwrap();
        assert_eq!(c.backend.kind, BackendType::Other("aws-vpc".into()));
    }

    #[test]
    fn coreos_docs_example_and_small_networks() {
        let c = NetworkConfig::parse(
            r#"{"Network":"10.1.0.0/16","SubnetLen":28,"SubnetMin":"10.1.10.0","SubnetMax":"10.1.50.0"}"#,
        )
        .unwrap();
        assert_eq!(c.subnet_len, 28);
        // Keelson (modern): a /24 network gets /26 leases, not /25.
        let c = NetworkConfig::parse(r#"{"Network":"10.1.0.0/24"}"#).unwrap();
        assert_eq!(c.subnet_len, 26);
        assert_eq!(c.subnet_min, ip("10.1.0.64"));
        assert_eq!(c.subnet_max, ip("10.1.0.192"));
        // Explicit SubnetMin at the network address is accepted.
        let c =
            NetworkConfig::parse(r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.0.0"}"#).unwrap();
        assert_eq!(c.subnet_min, ip("10.1.0.0"));
    }

    #[test]
    fn keys_case_insensitive_last_wins_unknown_ignored() {
        let c = NetworkConfig::parse(
            r#"{"network":"10.2.0.0/16","Network":"10.3.0.0/16","Whatever":1,
                "backend":{"TYPE":"vxlan","vni":7,"VNI":9,"Extra":"x"}}"#,
        )
        .unwrap();
        assert_eq!(c.network.to_string(), "10.3.0.0/16");
        assert_eq!(c.backend.vni, 9);
        assert_eq!(c.backend.raw.get("extra"), Some(&Value::String("x".into())));
        // Network is masked.
        let c = NetworkConfig::parse(r#"{"Network":"10.1.2.3/16"}"#).unwrap();
        assert_eq!(c.network.to_string(), "10.1.0.0/16");
        // null counts as absent.
        let c =
            NetworkConfig::parse(r#"{"Network":"10.1.0.0/16","SubnetLen":null,"Backend":null}"#)
                .unwrap();
        assert_eq!(c.subnet_len, 24);
    }

    #[test]
    fn errors_say_what_to_fix() {
        let cases = [
            ("", "not valid JSON"),
            ("[1]", "must be a JSON object"),
            ("{}", "has no \"Network\""),
            (r#"{"Network":16}"#, "Network: expected a string CIDR"),
            (r#"{"Network":"10.1.0.0"}"#, "is not an IPv4 CIDR"),
            (
                r#"{"Network":"10.1.0.0/16","SubnetLen":"24"}"#,
                "SubnetLen: expected a number",
            ),
            (
                r#"{"Network":"10.1.0.0/29"}"#,
                "Minimum useful network prefix is /28",
            ),
            (
                r#"{"Network":"10.1.0.0/16","SubnetLen":31}"#,
                "SubnetLen must be less than /31",
            ),
            (
                r#"{"Network":"10.1.0.0/16","SubnetLen":17}"#,
                "at least four subnets",
            ),
            (
                r#"{"Network":"10.1.0.0/16","SubnetMin":"10.2.0.0"}"#,
                "SubnetMin is not in the range of the Network",
            ),
            (
                r#"{"Network":"10.1.0.0/16","SubnetMax":"10.1.3.5"}"#,
                "SubnetMax is not on a SubnetLen boundary: 10.1.3.5",
            ),
            (
                r#"{"Network":"10.1.0.0/16","SubnetMin":"10.1.9.0","SubnetMax":"10.1.3.0"}"#,
                "above SubnetMax",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":"vxlan"}"#,
                "Backend: expected an object",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":"1"}}"#,
                "Backend.VNI: expected a number",
            ),
            (
                r#"{"Network":"10.1.0.0/16","Backend":{"Type":"udp","Port":70000}}"#,
                "Backend.Port",
            ),
            (
                r#"{"Network":"10.1.0.0/16","SubnetMin":"x"}"#,
                "SubnetMin: \"x\" is not an IPv4 address",
            ),
        ];
        for (doc, want) in cases {
            let e = NetworkConfig::parse(doc).expect_err(doc).to_string();
            assert!(e.contains(want), "{doc}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,200}") {
            let _ = NetworkConfig::parse(&s);
        }

        #[test]
        fn defaults_are_always_compatible(a in proptest::prelude::any::<u32>(), p in 8u8..=28) {
            let n = Ipv4Net::new(Ipv4Addr::from(a), p);
            let c = NetworkConfig::validate(n, None, None, None, BackendConfig::default()).unwrap();
            proptest::prop_assert!(c.is_compatible(&Ipv4Net::new(c.subnet_min, c.subnet_len)));
            proptest::prop_assert!(c.is_compatible(&Ipv4Net::new(c.subnet_max, c.subnet_len)));
            proptest::prop_assert!(!c.is_compatible(&Ipv4Net::new(n.addr(), c.subnet_len)));
            proptest::prop_assert!(c.capacity() >= 3);
        }
    }
}
