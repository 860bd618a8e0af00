//! A positioned YAML tree with YAML 1.1 scalar resolution.
//!
//! coreos-cloudinit read cloud-config with go-yaml v1 (YAML 1.1): `on`/`off`
//! and `yes`/`no` are booleans, `0644` is an octal integer. But its typed
//! fields keep a scalar's text when the field is a string (`proxy: on`
//! configures `ETCD_PROXY=on`). So this module keeps every scalar's raw text,
//! its style and its position, and resolves the YAML 1.1 type only on request;
//! the decoder and the validator decide per field which reading applies.
//! Keys are normalised (`-` → `_`) here, once, with the raw spelling kept for
//! messages.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

/// Documents nested deeper than this are refused, so that walking the tree
/// can never exhaust the stack.
const MAX_DEPTH: usize = 256;
/// Upper bound on nodes after alias expansion ("billion laughs").
const MAX_NODES: usize = 200_000;

/// A YAML syntax error at a position (1-based line, 1-based column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    /// The parser's problem, in libyaml's words (as go-yaml reported it).
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line of the node's first character.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Scalar(Scalar),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key as written.
    pub raw_key: String,
    /// The key with every `-` replaced by `_`.
    pub key: String,
    pub key_line: usize,
    pub key_column: usize,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted, not a block scalar): only these resolve to
    /// non-string types.
    pub plain: bool,
    /// A literal (`|`) block scalar: its text starts on the line after the
    /// node's, one text line per source line.
    pub literal: bool,
    /// The tag's suffix when the tag is a core-schema one (`!!binary` →
    /// `binary`), or the full tag otherwise.
    pub tag: Option<String>,
}

/// What a scalar resolves to under YAML 1.1 (go-yaml v1's rules).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

impl Scalar {
    pub fn resolve(&self) -> Resolved {
        match self.tag.as_deref() {
            Some("str") | Some("binary") => return Resolved::Str,
            Some("bool") => {
                return parse_bool(&self.text).map_or(Resolved::Str, Resolved::Bool);
            }
            Some("int") => return parse_int(&self.text).map_or(Resolved::Str, Resolved::Int),
            Some("float") => {
                return parse_float(&self.text).map_or(Resolved::Str, Resolved::Float);
            }
            Some("null") => return Resolved::Null,
            _ => {}
        }
        if !self.plain {
            return Resolved::Str;
        }
        let t = self.text.as_str();
        if matches!(t, "" | "~" | "null" | "Null" | "NULL") {
            return Resolved::Null;
        }
        if let Some(b) = parse_bool(t) {
            return Resolved::Bool(b);
        }
        if let Some(i) = parse_int(t) {
            return Resolved::Int(i);
        }
        if let Some(f) = parse_float(t) {
            return Resolved::Float(f);
        }
        Resolved::Str
    }
}

/// YAML 1.1 booleans as go-yaml v1 resolves them.
pub fn parse_bool(t: &str) -> Option<bool> {
    match t {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// Integers as go-yaml v1 resolves them (`strconv.ParseInt(s, 0, 64)` after
/// removing `_`): decimal, `0x` hex, `0b` binary, leading-zero octal.
pub fn parse_int(t: &str) -> Option<i64> {
    let s: String = t.chars().filter(|&c| c != '_').collect();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    if digits.is_empty() {
        return None;
    }
    let (radix, body) = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, h)
    } else if let Some(b) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, b)
    } else if let Some(o) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, o)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i64::from_str_radix(body, radix).ok()?;
    Some(if neg { v.checked_neg()? } else { v })
}

/// Floats in YAML 1.1's plain forms, `.inf` and `.nan` included.
pub fn parse_float(t: &str) -> Option<f64> {
    let s: String = t.chars().filter(|&c| c != '_').collect();
    let unsigned = s
        .strip_prefix('-')
        .or_else(|| s.strip_prefix('+'))
        .unwrap_or(&s);
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // Digits, at most one '.', optional exponent; at least one digit.
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    if mantissa.is_empty()
        || !mantissa.chars().any(|c| c.is_ascii_digit())
        || !mantissa.chars().all(|c| c.is_ascii_digit() || c == '.')
        || mantissa.matches('.').count() > 1
    {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        if e.is_empty() || !e.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    s.parse::<f64>().ok()
}

impl Node {
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// A null scalar (`key:` with nothing after it, `~`, `null`).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s) if s.resolve() == Resolved::Null)
    }

    /// The last entry with this normalised key: go-yaml lets a later
    /// duplicate win.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    fn count(&self) -> usize {
        match &self.kind {
            NodeKind::Map(m) => 1 + m.iter().map(|e| e.value.count()).sum::<usize>(),
            NodeKind::Seq(s) => 1 + s.iter().map(Node::count).sum::<usize>(),
            NodeKind::Scalar(_) => 1,
        }
    }
}

pub fn normalize_key(key: &str) -> String {
    key.replace('-', "_")
}

enum Frame {
    Map {
        line: usize,
        column: usize,
        anchor: usize,
        entries: Vec<Entry>,
        pending_key: Option<(String, usize, usize)>,
    },
    Seq {
        line: usize,
        column: usize,
        anchor: usize,
        items: Vec<Node>,
    },
}

fn scan_error(e: &ScanError) -> YamlError {
    // saphyr prefixes libyaml's context ("while parsing a block mapping, ");
    // go-yaml reported the problem only, which is what users compare.
    let info = e.info();
    let message = match info.strip_prefix("while ") {
        Some(rest) => rest
            .split_once(", ")
            .map_or(info.to_string(), |(_, p)| p.to_string()),
        None => info.to_string(),
    };
    // libyaml (and so go-yaml) words a tab in indentation this way.
    let message = if message.starts_with("tabs disallowed") {
        "found character that cannot start any token".to_string()
    } else {
        message
    };
    YamlError {
        line: e.marker().line().max(1),
        column: e.marker().col() + 1,
        message,
    }
}

/// Render a non-scalar key the way it would read in a message.
fn key_text(node: &Node) -> String {
    match &node.kind {
        NodeKind::Scalar(s) => s.text.clone(),
        NodeKind::Map(_) => "{...}".to_string(),
        NodeKind::Seq(_) => "[...]".to_string(),
    }
}

/// Parse the first YAML document of `text`. `Ok(None)` for a stream with no
/// document (only comments).
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut total = 0usize;
    loop {
        let (event, span) = match parser.next_event() {
            None => return Ok(None),
            Some(Err(e)) => return Err(scan_error(&e)),
            Some(Ok(ev)) => ev,
        };
        let line = span.start.line().max(1);
        let column = span.start.col() + 1;
        let finished: Option<(Node, usize)> = match event {
            Event::StreamEnd => return Ok(None),
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd => {
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    total += n.count();
                    Some((n.clone(), 0))
                }
                None => {
                    return Err(YamlError {
                        line,
                        column,
                        message: "unknown anchor".to_string(),
                    })
                }
            },
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| {
                    if t.is_yaml_core_schema() {
                        t.suffix.clone()
                    } else {
                        format!("{}{}", t.handle, t.suffix)
                    }
                });
                Some((
                    Node {
                        line,
                        column,
                        kind: NodeKind::Scalar(Scalar {
                            text: value.into_owned(),
                            plain: style == ScalarStyle::Plain,
                            literal: style == ScalarStyle::Literal,
                            tag,
                        }),
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq {
                    line,
                    column,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map {
                    line,
                    column,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    line,
                    column,
                    anchor,
                    items,
                }) => Some((
                    Node {
                        line,
                        column,
                        kind: NodeKind::Seq(items),
                    },
                    anchor,
                )),
                Some(Frame::Map {
                    line,
                    column,
                    anchor,
                    entries,
                    ..
                }) => Some((
                    Node {
                        line,
                        column,
                        kind: NodeKind::Map(entries),
                    },
                    anchor,
                )),
                None => None,
            },
        };
        if stack.len() > MAX_DEPTH {
            return Err(YamlError {
                line,
                column,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let Some((node, anchor)) = finished else {
            continue;
        };
        total += 1;
        if total > MAX_NODES {
            return Err(YamlError {
                line,
                column,
                message: format!("document expands to more than {MAX_NODES} nodes"),
            });
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => return Ok(Some(node)),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some((key_text(&node), node.line, node.column)),
                Some((raw_key, key_line, key_column)) => entries.push(Entry {
                    key: normalize_key(&raw_key),
                    raw_key,
                    key_line,
                    key_column,
                    value: node,
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_resolution() {
        let s = |t: &str| Scalar {
            text: t.to_string(),
            plain: true,
            literal: false,
            tag: None,
        };
        assert_eq!(s("on").resolve(), Resolved::Bool(true));
        assert_eq!(s("No").resolve(), Resolved::Bool(false));
        assert_eq!(s("0644").resolve(), Resolved::Int(420));
        assert_eq!(s("0x1f").resolve(), Resolved::Int(31));
        assert_eq!(s("-12").resolve(), Resolved::Int(-12));
        assert_eq!(s("0.5").resolve(), Resolved::Float(0.5));
        assert_eq!(s("1e3").resolve(), Resolved::Float(1000.0));
        assert_eq!(s("role=master").resolve(), Resolved::Str);
        assert_eq!(s("").resolve(), Resolved::Null);
        assert_eq!(s("~").resolve(), Resolved::Null);
        assert_eq!(s("1h30m").resolve(), Resolved::Str);
        assert_eq!(s(".").resolve(), Resolved::Str);
        let quoted = Scalar {
            text: "true".into(),
            plain: false,
            literal: false,
            tag: None,
        };
        assert_eq!(quoted.resolve(), Resolved::Str);
    }

    #[test]
    fn positions_and_normalised_keys() {
        let doc = parse("a:\n  reboot-strategy: off\n  list:\n    - x\n").unwrap();
        let doc = doc.unwrap();
        let a = doc.get("a").unwrap();
        let map = a.as_map().unwrap();
        assert_eq!(map[0].raw_key, "reboot-strategy");
        assert_eq!(map[0].key, "reboot_strategy");
        assert_eq!((map[0].key_line, map[0].key_column), (2, 3));
        assert_eq!(map[0].value.as_scalar().unwrap().text, "off");
        assert_eq!(map[1].value.line, 4);
    }

    #[test]
    fn errors_carry_libyaml_problem_and_line() {
        let e = parse("a:\n  b: c\n   d: e\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.message, "mapping values are not allowed in this context");
    }

    #[test]
    fn later_duplicate_wins() {
        let doc = parse("a: 1\na: 2\n").unwrap().unwrap();
        assert_eq!(doc.get("a").unwrap().as_scalar().unwrap().text, "2");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = "[".repeat(5000);
        assert!(parse(&text).is_err());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&text).is_err());
    }
}
