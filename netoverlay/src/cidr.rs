//! IPv4 prefixes as flannel uses them: a masked network address plus a prefix
//! length, written `10.1.15.0/24` in configs and `10.1.15.0-24` in lease keys.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: `addr` always has the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a prefix did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid CIDR address: {0:?} (expected an IPv4 prefix such as 10.1.0.0/16)")]
    Syntax(String),
    #[error("invalid prefix length in {0:?}: must be 0..=32")]
    Prefix(String),
}

impl Ipv4Net {
    /// The network containing `addr` with `prefix` bits (host bits are masked,
    /// as Go's `ParseCIDR` + `IP.Mask` do). `prefix` above 32 is clamped.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        let prefix = prefix.min(32);
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    /// A host address with a prefix length, unmasked (`10.88.0.11/24`), as
    /// interfaces carry them. Use [`Ipv4Net::network`] for the block.
    pub fn host(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        Ipv4Net {
            addr,
            prefix: prefix.min(32),
        }
    }

    /// The masked block.
    pub fn network(&self) -> Ipv4Net {
        Ipv4Net::new(self.addr, self.prefix)
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses (`2^(32-prefix)`).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The last address of the block.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// The first usable address (network + 1): the bridge gateway address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(1))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The lease key form: `10.1.15.0-24`.
    pub fn key_name(&self) -> String {
        format!("{}-{}", self.addr, self.prefix)
    }

    /// Parses the last path segment of a lease key (`…/10.1.15.0-24`).
    /// Modern dual-stack suffixes (`&fc00::-64`) are ignored.
    pub fn from_key(key: &str) -> Option<Ipv4Net> {
        let last = key.rsplit('/').next()?;
        let v4 = last.split('&').next()?;
        let (ip, len) = v4.rsplit_once('-')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let len: u8 = len.parse().ok()?;
        if len > 32 {
            return None;
        }
        let net = Ipv4Net::new(ip, len);
        // A key whose address has host bits set is not one flannel writes.
        (net.addr == ip).then_some(net)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, len) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(s.to_string()))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| CidrError::Syntax(s.to_string()))?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Syntax(s.to_string()));
        }
        let len: u8 = len.parse().map_err(|_| CidrError::Prefix(s.to_string()))?;
        if len > 32 {
            return Err(CidrError::Prefix(s.to_string()));
        }
        Ok(Ipv4Net::new(ip, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_masks_and_prints() {
        let n: Ipv4Net = "10.1.2.3/16".parse().unwrap();
        assert_eq!(n.to_string(), "10.1.0.0/16");
        assert_eq!(n.size(), 65536);
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 1, 255, 255));
        assert!("10.1.0.0".parse::<Ipv4Net>().is_err());
        assert!("10.1.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.1.0/16".parse::<Ipv4Net>().is_err());
        assert!("10.1.0.0/+1".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn key_names_round_trip_and_reject_garbage() {
        let n = Ipv4Net::from_key("/coreos.com/network/subnets/10.1.15.0-24").unwrap();
        assert_eq!(n.to_string(), "10.1.15.0/24");
        assert_eq!(n.key_name(), "10.1.15.0-24");
        assert_eq!(
            Ipv4Net::from_key("10.5.52.0-24&fc00::-64")
                .unwrap()
                .key_name(),
            "10.5.52.0-24"
        );
        for bad in [
            "x",
            "10.1.15.0",
            "10.1.15.0-",
            "10.1.15.1-24",
            "10.1.15.0-40",
            "a-24",
        ] {
            assert_eq!(Ipv4Net::from_key(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn key_round_trip(a in any::<u32>(), p in 0u8..=32) {
            let n = Ipv4Net::new(Ipv4Addr::from(a), p);
            prop_assert_eq!(Ipv4Net::from_key(&n.key_name()), Some(n));
            prop_assert_eq!(n.to_string().parse::<Ipv4Net>().unwrap(), n);
            prop_assert!(n.contains(Ipv4Addr::from(a)));
        }
    }
}
