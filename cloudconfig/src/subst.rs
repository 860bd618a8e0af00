//! `$public_ipv4`-style substitution (reference §2.3).
//!
//! coreos-cloudinit replaced these tokens in the raw text before parsing and
//! silently used the empty string for a value it did not know, so
//! `http://$public_ipv4:2379` became `http://:2379`. Keelson refuses instead
//! and names the variable and the line — unless the token only occurs in a
//! comment, where the empty string harms nobody.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::yaml::{self, Node, NodeKind};

/// The tokens, in the order their values are looked up.
pub const VARIABLES: [&str; 4] = ["public_ipv4", "private_ipv4", "public_ipv6", "private_ipv6"];

/// What the platform knows about this machine: the values substituted for
/// `$public_ipv4`, `$private_ipv4`, `$public_ipv6`, `$private_ipv6`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub public_ipv4: Option<String>,
    pub private_ipv4: Option<String>,
    pub public_ipv6: Option<String>,
    pub private_ipv6: Option<String>,
}

impl Metadata {
    /// Both IPv4 tokens with one address, as in Vagrant (`eth1`).
    pub fn ipv4(addr: &str) -> Metadata {
        Metadata {
            public_ipv4: Some(addr.to_string()),
            private_ipv4: Some(addr.to_string()),
            ..Metadata::default()
        }
    }

    /// The fallback coreos-cloudinit used without platform metadata:
    /// `COREOS_PUBLIC_IPV4`, `COREOS_PRIVATE_IPV4`, `COREOS_PUBLIC_IPV6`,
    /// `COREOS_PRIVATE_IPV6`.
    pub fn from_env() -> Metadata {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Metadata::from_env`] with an explicit lookup (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Metadata {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        Metadata {
            public_ipv4: get("COREOS_PUBLIC_IPV4"),
            private_ipv4: get("COREOS_PRIVATE_IPV4"),
            public_ipv6: get("COREOS_PUBLIC_IPV6"),
            private_ipv6: get("COREOS_PRIVATE_IPV6"),
        }
    }

    /// The value of a token name (`public_ipv4`), if known and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        let v = match name {
            "public_ipv4" => &self.public_ipv4,
            "private_ipv4" => &self.private_ipv4,
            "public_ipv6" => &self.public_ipv6,
            "private_ipv6" => &self.private_ipv6,
            _ => &None,
        };
        v.as_deref().filter(|s| !s.is_empty())
    }

    /// The `/etc/environment` variables these values become, sorted.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = VARIABLES
            .iter()
            .filter_map(|n| {
                self.get(n)
                    .map(|v| (format!("COREOS_{}", n.to_uppercase()), v.to_string()))
            })
            .collect();
        out.sort();
        out
    }
}

enum Piece<'a> {
    Text(&'a str),
    /// `\$name`: the literal token.
    Escaped(&'static str),
    Token(&'static str),
}

fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            if let Some(name) = VARIABLES.iter().find(|n| text[i + 1..].starts_with(**n)) {
                let escaped = i > 0 && bytes[i - 1] == b'\\';
                let text_end = if escaped { i - 1 } else { i };
                if start < text_end {
                    out.push(Piece::Text(&text[start..text_end]));
                }
                out.push(if escaped {
                    Piece::Escaped(name)
                } else {
                    Piece::Token(name)
                });
                i += 1 + name.len();
                start = i;
                continue;
            }
        }
        i += 1;
    }
    if start < text.len() {
        out.push(Piece::Text(&text[start..]));
    }
    out
}

/// Tokens that have no value, with the line of the YAML value they occur in;
/// tokens only in comments are not reported. Text that is not valid YAML
/// reports nothing here (its syntax error is reported elsewhere).
pub fn unresolved(text: &str, metadata: &Metadata) -> Vec<(usize, String)> {
    let missing: Vec<&str> = pieces(text)
        .iter()
        .filter_map(|p| match p {
            Piece::Token(n) if metadata.get(n).is_none() => Some(*n),
            _ => None,
        })
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let Ok(Some(doc)) = yaml::parse(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    scan(&doc, &missing, &mut found);
    found
}

fn scan(node: &Node, missing: &[&str], found: &mut Vec<(usize, String)>) {
    match &node.kind {
        NodeKind::Map(entries) => entries.iter().for_each(|e| scan(&e.value, missing, found)),
        NodeKind::Seq(items) => items.iter().for_each(|n| scan(n, missing, found)),
        NodeKind::Scalar(s) => {
            let mut offset = 0;
            for p in pieces(&s.text) {
                match p {
                    Piece::Text(t) => offset += t.matches('\n').count(),
                    Piece::Token(n)
                        if missing.contains(&n) && !found.iter().any(|(_, f)| f == n) =>
                    {
                        // A literal block's position is its first
                        // non-blank text line; one text line per line.
                        let leading = s.text.len() - s.text.trim_start_matches('\n').len();
                        let line = if s.literal {
                            node.line + offset.saturating_sub(leading)
                        } else {
                            node.line
                        };
                        found.push((line, n.to_string()));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Replace every token by its value (`\$token` by the literal `$token`).
/// A token without a value inside a YAML value is an error naming it and
/// its line.
pub fn substitute(text: &str, metadata: &Metadata) -> Result<String, Error> {
    if let Some((line, name)) = unresolved(text, metadata).into_iter().next() {
        return Err(Error::Unresolved { line, name });
    }
    let mut out = String::with_capacity(text.len());
    for p in pieces(text) {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Escaped(n) => {
                out.push('$');
                out.push_str(n);
            }
            Piece::Token(n) => out.push_str(metadata.get(n).unwrap_or("")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_tokens_and_keeps_escaped_ones() {
        let md = Metadata::ipv4("10.0.0.5");
        let out = substitute(
            "a: http://$public_ipv4:2379\nb: \\$private_ipv4\nc: ${COREOS_PUBLIC_IPV4}\n",
            &md,
        )
        .unwrap();
        assert_eq!(
            out,
            "a: http://10.0.0.5:2379\nb: $private_ipv4\nc: ${COREOS_PUBLIC_IPV4}\n"
        );
    }

    #[test]
    fn missing_value_names_variable_and_line() {
        let md = Metadata {
            private_ipv4: Some("10.0.0.5".into()),
            ..Metadata::default()
        };
        let err = substitute(
            "#cloud-config\n# uses $public_ipv4\nx: 1\ny: http://$public_ipv4:2379\n",
            &md,
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::Unresolved {
                line: 4,
                name: "public_ipv4".into()
            }
        );
        assert!(err.to_string().contains("$public_ipv4"));
    }

    #[test]
    fn missing_value_inside_a_block_scalar_names_its_own_line() {
        let err = substitute(
            "#cloud-config\nwrite_files:\n  - path: /etc/x\n    content: |\n\n      a\n      IP=$private_ipv4\n",
            &Metadata::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::Unresolved {
                line: 7,
                name: "private_ipv4".into()
            }
        );
    }

    #[test]
    fn token_only_in_a_comment_is_not_an_error() {
        let out = substitute("# $public_ipv4\na: b\n", &Metadata::default()).unwrap();
        assert_eq!(out, "# \na: b\n");
    }

    #[test]
    fn environment_is_sorted() {
        let md = Metadata::ipv4("172.17.8.101");
        assert_eq!(
            md.environment(),
            vec![
                (
                    "COREOS_PRIVATE_IPV4".to_string(),
                    "172.17.8.101".to_string()
                ),
                ("COREOS_PUBLIC_IPV4".to_string(), "172.17.8.101".to_string()),
            ]
        );
    }
}
