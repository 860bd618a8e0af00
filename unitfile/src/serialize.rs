//! go-systemd's `unit.Serialize` and fleet's unit hash.
//!
//! fleet never hashes the bytes a user submitted: it parses them, writes
//! them back with `Serialize`, and hashes that (reference `unitfile.md` §11).
//! The writer is therefore part of the wire format and is reproduced exactly:
//! sections in order of first appearance, a repeated section merged into its
//! first position, `Name=Value` with the value raw, one blank line between
//! sections and none at the end. The hash streams the same bytes into SHA-1
//! without building the string.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

use crate::error::ParseError;
use crate::parse;
use crate::UnitOption;

/// fleet's hash of a unit file, straight from its bytes: the same result as
/// `Unit::parse(input, Mode::Fleet, None)?.hash()`, without keeping the unit
/// (the fast path for registries and `keelctl unit hash`).
pub fn fleet_hash(input: impl AsRef<[u8]>) -> Result<UnitHash, ParseError> {
    let text = parse::check_utf8(input.as_ref())?;
    let (_, options) = parse::gosystemd::lex(text)?;
    Ok(hash_fields(&options))
}

/// The normalised (go-systemd `unit.Serialize`) form of a unit file, straight
/// from its bytes; see [`fleet_hash`].
pub fn fleet_normalize(input: impl AsRef<[u8]>) -> Result<String, ParseError> {
    let text = parse::check_utf8(input.as_ref())?;
    let (_, options) = parse::gosystemd::lex(text)?;
    Ok(normalize_fields(&options))
}

/// Something the normalised form can be written to.
trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

/// What the writer needs of an option; implemented by [`UnitOption`] and by
/// the fleet lexer's borrowed options.
pub(crate) trait OptionFields {
    fn section(&self) -> &str;
    fn name(&self) -> &str;
    /// The value as up to two pieces to write one after the other.
    fn value_parts(&self) -> (&str, &str);
}

impl OptionFields for UnitOption {
    fn section(&self) -> &str {
        &self.section
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn value_parts(&self) -> (&str, &str) {
        (&self.value, "")
    }
}

/// The normalised form of `options`, exactly as go-systemd's
/// `unit.Serialize` writes it. An empty list gives an empty string.
pub fn normalize(options: &[UnitOption]) -> String {
    normalize_fields(options)
}

pub(crate) fn normalize_fields<T: OptionFields>(options: &[T]) -> String {
    let size: usize = options
        .iter()
        .map(|o| o.name().len() + o.value_parts().0.len() + o.section().len() + 6)
        .sum();
    let mut out = String::with_capacity(size);
    write(options, &mut out);
    out
}

/// fleet's hash of `options`: SHA-1 of [`normalize`]`(options)`.
pub fn hash_options(options: &[UnitOption]) -> UnitHash {
    hash_fields(options)
}

pub(crate) fn hash_fields<T: OptionFields>(options: &[T]) -> UnitHash {
    // One contiguous buffer hashes faster than dozens of small updates.
    UnitHash(Sha1::digest(normalize_fields(options).as_bytes()).into())
}

/// Section names in order of first appearance.
pub(crate) fn section_order<T: OptionFields>(options: &[T]) -> Vec<&str> {
    let mut order: Vec<&str> = Vec::new();
    if options.len() <= 64 {
        for o in options {
            if !order.contains(&o.section()) {
                order.push(o.section());
            }
        }
    } else {
        let mut seen = std::collections::HashSet::new();
        for o in options {
            if seen.insert(o.section()) {
                order.push(o.section());
            }
        }
    }
    order
}

fn write_option<T: OptionFields>(o: &T, sink: &mut impl Sink) {
    let (value, tail) = o.value_parts();
    sink.put(o.name());
    sink.put("=");
    sink.put(value);
    sink.put(tail);
    sink.put("\n");
}

fn write_header(section: &str, first: bool, sink: &mut impl Sink) {
    sink.put(if first { "[" } else { "\n[" });
    sink.put(section);
    sink.put("]\n");
}

fn write<T: OptionFields>(options: &[T], sink: &mut impl Sink) {
    // Common case: every section is one contiguous block, so file order is
    // already the output order.
    let mut contiguous = true;
    let mut blocks: Vec<&str> = Vec::new();
    for (i, o) in options.iter().enumerate() {
        if i == 0 || options[i - 1].section() != o.section() {
            if blocks.len() >= 64 || blocks.contains(&o.section()) {
                contiguous = false;
                break;
            }
            blocks.push(o.section());
        }
    }
    if contiguous {
        for (i, o) in options.iter().enumerate() {
            if i == 0 || options[i - 1].section() != o.section() {
                write_header(o.section(), i == 0, sink);
            }
            write_option(o, sink);
        }
        return;
    }
    // General case: group by section, keeping first-appearance order.
    let order = section_order(options);
    let mut groups: Vec<Vec<&T>> = (0..order.len()).map(|_| Vec::new()).collect();
    let index: std::collections::HashMap<&str, usize> =
        order.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    for o in options {
        if let Some(&i) = index.get(o.section()) {
            groups[i].push(o);
        }
    }
    for (i, (section, group)) in order.iter().zip(&groups).enumerate() {
        write_header(section, i == 0, sink);
        for o in group {
            write_option(*o, sink);
        }
    }
}

/// fleet's unit hash: the SHA-1 of a unit's normalised form.
///
/// `Display` gives the 40 lowercase hex digits (`fleetctl list-unit-files
/// --full`, the `unit/<hash>` registry key), [`UnitHash::short`] the 7-digit
/// prefix of the HASH column, [`UnitHash::as_bytes`] the 20 bytes fleet
/// writes as a JSON array in `job/<unit>/object`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitHash([u8; 20]);

impl UnitHash {
    /// Wraps 20 raw bytes.
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        UnitHash(bytes)
    }

    /// The 20 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The first 7 hex digits, as fleetctl shows them.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(7);
        s
    }
}

impl fmt::Display for UnitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for UnitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitHash({self})")
    }
}

/// A string that is not 40 hex digits was given as a unit hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid unit hash {0:?}: expected 40 hex digits")]
pub struct InvalidUnitHash(pub String);

impl FromStr for UnitHash {
    type Err = InvalidUnitHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| InvalidUnitHash(s.to_owned()))?;
        Ok(UnitHash(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(s: &str, n: &str, v: &str) -> UnitOption {
        UnitOption::new(s, n, v)
    }

    #[test]
    fn empty_list_is_empty() {
        assert_eq!(normalize(&[]), "");
        assert_eq!(
            hash_options(&[]).to_string(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn interleaved_sections_merge_at_first_position() {
        let o = [
            opt("Unit", "Description", "a"),
            opt("Service", "ExecStart", "/bin/true"),
            opt("Unit", "After", "b.service"),
        ];
        let want = "[Unit]\nDescription=a\nAfter=b.service\n\n[Service]\nExecStart=/bin/true\n";
        assert_eq!(normalize(&o), want);
        let mut sha = Sha1::new();
        sha.update(want.as_bytes());
        assert_eq!(hash_options(&o).as_bytes()[..], sha.finalize()[..]);
    }

    #[test]
    fn many_sections_take_the_general_path() {
        let mut o = Vec::new();
        for i in 0..100 {
            o.push(opt(&format!("S{}", i % 70), "K", &i.to_string()));
        }
        let text = normalize(&o);
        assert!(text.starts_with("[S0]\nK=0\nK=70\n\n[S1]\nK=1\nK=71\n"));
        assert_eq!(text.matches('[').count(), 70);
    }

    #[test]
    fn hash_round_trips_through_hex() {
        let h = hash_options(&[opt("A", "B", "C")]);
        assert_eq!(h.to_string().parse::<UnitHash>(), Ok(h));
        assert_eq!(h.short().len(), 7);
        assert!("xyz".parse::<UnitHash>().is_err());
    }
}
