//! etcdctl's output formats: `simple`, `extended` and `json`.
//!
//! `-o json` prints the Go client library's response object re-encoded by Go's
//! `encoding/json`, not the server's bytes: `value` and `nodes` are always
//! present, `createdIndex` comes before `modifiedIndex`, `prevNode` is `null`
//! when absent, and `<`, `>`, `&` are escaped as `\u003c` and friends. Scripts
//! compare these bytes, so they are reproduced here exactly.

use std::fmt::Write as _;

use keelson_kv::client::KvResponse;
use keelson_kv::v2::{Action, Node};

/// Where a formatted answer goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// etcdctl's `printResponseKey`.
pub fn response_key(resp: &KvResponse, format: &str) -> Output {
    let mut o = Output::default();
    let ev = &resp.event;
    let empty = Node::default();
    let node = ev.node.as_ref().unwrap_or(&empty);
    let value = |n: &Node| n.value.clone().unwrap_or_default();
    match format {
        "simple" => {
            if ev.action != Action::Delete {
                let _ = writeln!(o.stdout, "{}", value(node));
            } else {
                let prev = ev.prev_node.as_ref().map(value).unwrap_or_default();
                let _ = writeln!(o.stdout, "PrevNode.Value: {prev}");
            }
        }
        "extended" => {
            let _ = writeln!(o.stdout, "Key: {}", node.key.as_deref().unwrap_or(""));
            let _ = writeln!(o.stdout, "Created-Index: {}", node.created_index);
            let _ = writeln!(o.stdout, "Modified-Index: {}", node.modified_index);
            if let Some(prev) = &ev.prev_node {
                let _ = writeln!(o.stdout, "PrevNode.Value: {}", value(prev));
            }
            let _ = writeln!(o.stdout, "TTL: {}", node.ttl);
            let _ = writeln!(o.stdout, "Index: {}", resp.etcd_index);
            if ev.action != Action::Delete {
                let _ = writeln!(o.stdout);
                let _ = writeln!(o.stdout, "{}", value(node));
            }
        }
        "json" => {
            o.stdout = go_response_json(resp);
            o.stdout.push('\n');
        }
        other => {
            let _ = writeln!(o.stderr, "Unsupported output format: {other}");
        }
    }
    o
}

/// The Go client's `Response` as Go's `json.Marshal` writes it.
pub fn go_response_json(resp: &KvResponse) -> String {
    let mut s = String::from("{\"action\":");
    go_string(&mut s, resp.event.action.as_str());
    s.push_str(",\"node\":");
    match &resp.event.node {
        Some(n) => go_node(&mut s, n),
        None => s.push_str("null"),
    }
    s.push_str(",\"prevNode\":");
    match &resp.event.prev_node {
        Some(n) => go_node(&mut s, n),
        None => s.push_str("null"),
    }
    s.push('}');
    s
}

fn go_node(s: &mut String, n: &Node) {
    s.push_str("{\"key\":");
    go_string(s, n.key.as_deref().unwrap_or(""));
    if n.dir {
        s.push_str(",\"dir\":true");
    }
    s.push_str(",\"value\":");
    go_string(s, n.value.as_deref().unwrap_or(""));
    s.push_str(",\"nodes\":");
    match &n.nodes {
        Some(children) => {
            s.push('[');
            for (i, c) in children.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                go_node(s, c);
            }
            s.push(']');
        }
        None => s.push_str("null"),
    }
    let _ = write!(
        s,
        ",\"createdIndex\":{},\"modifiedIndex\":{}",
        n.created_index, n.modified_index
    );
    if let Some(exp) = &n.expiration {
        s.push_str(",\"expiration\":");
        go_string(s, exp);
    }
    if n.ttl != 0 {
        let _ = write!(s, ",\"ttl\":{}", n.ttl);
    }
    s.push('}');
}

/// A JSON string as Go's `encoding/json` (HTML-safe, Go 1.19) writes it.
pub fn go_string(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_kv::v2::Response;

    fn resp(action: Action, node: Node, prev: Option<Node>, index: u64) -> KvResponse {
        KvResponse {
            event: Response {
                action,
                node: Some(node),
                prev_node: prev,
            },
            etcd_index: index,
            raft_index: 0,
            raft_term: 0,
        }
    }

    fn key(k: &str, v: Option<&str>, c: u64, m: u64) -> Node {
        Node {
            key: Some(k.into()),
            value: v.map(str::to_string),
            created_index: c,
            modified_index: m,
            ..Node::default()
        }
    }

    #[test]
    fn json_matches_etcdctl() {
        // Oracle: etcdctl -o json set /t/a v2 (over hello)
        let r = resp(
            Action::Set,
            key("/t/a", Some("v2"), 6, 6),
            Some(key("/t/a", Some("hello"), 4, 4)),
            6,
        );
        assert_eq!(
            go_response_json(&r),
            r#"{"action":"set","node":{"key":"/t/a","value":"v2","nodes":null,"createdIndex":6,"modifiedIndex":6},"prevNode":{"key":"/t/a","value":"hello","nodes":null,"createdIndex":4,"modifiedIndex":4}}"#
        );
        let mut d = key("/t/d2", None, 9, 9);
        d.dir = true;
        assert_eq!(
            go_response_json(&resp(Action::Create, d, None, 9)),
            r#"{"action":"create","node":{"key":"/t/d2","dir":true,"value":"","nodes":null,"createdIndex":9,"modifiedIndex":9},"prevNode":null}"#
        );
        let mut t = key("/u/ttl", Some("v"), 28, 28);
        t.expiration = Some("2026-11-21T21:25:37.911004013Z".into());
        t.ttl = 100;
        assert_eq!(
            go_response_json(&resp(Action::Get, t, None, 28)),
            r#"{"action":"get","node":{"key":"/u/ttl","value":"v","nodes":null,"createdIndex":28,"modifiedIndex":28,"expiration":"2026-11-21T21:25:37.911004013Z","ttl":100},"prevNode":null}"#
        );
        let odd = key("/u/k", Some("<a&b> \"q\" \\ é \ttab\u{1}"), 29, 29);
        assert_eq!(
            go_response_json(&resp(Action::Set, odd, None, 29)),
            "{\"action\":\"set\",\"node\":{\"key\":\"/u/k\",\"value\":\"\\u003ca\\u0026b\\u003e \\\"q\\\" \\\\ é \\ttab\\u0001\",\"nodes\":null,\"createdIndex\":29,\"modifiedIndex\":29},\"prevNode\":null}"
        );
    }

    #[test]
    fn simple_and_extended_match_etcdctl() {
        let r = resp(
            Action::Set,
            key("/t/a", Some("v3"), 7, 7),
            Some(key("/t/a", Some("v2"), 6, 6)),
            7,
        );
        assert_eq!(response_key(&r, "simple").stdout, "v3\n");
        assert_eq!(
            response_key(&r, "extended").stdout,
            "Key: /t/a\nCreated-Index: 7\nModified-Index: 7\nPrevNode.Value: v2\nTTL: 0\nIndex: 7\n\nv3\n"
        );
        let del = resp(
            Action::Delete,
            key("/t/b", None, 5, 11),
            Some(key("/t/b", Some("x y"), 5, 5)),
            11,
        );
        assert_eq!(response_key(&del, "simple").stdout, "PrevNode.Value: x y\n");
        assert_eq!(
            response_key(&del, "extended").stdout,
            "Key: /t/b\nCreated-Index: 5\nModified-Index: 11\nPrevNode.Value: x y\nTTL: 0\nIndex: 11\n"
        );
        assert_eq!(
            response_key(&del, "yaml"),
            Output {
                stdout: String::new(),
                stderr: "Unsupported output format: yaml\n".into()
            }
        );
    }
}
