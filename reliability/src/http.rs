//! A tiny blocking HTTP/1.1 client for the v2 API: one request per
//! connection, hard timeouts, and an answer that says whether the request
//! was ever sent (so a client knows if an operation is indeterminate).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An answer: status, lower-cased headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The v2 `errorCode`, if the body is an error.
    pub fn error_code(&self) -> Option<u64> {
        self.json()["errorCode"].as_u64()
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Never reached the member: no connection, so the request had no effect.
    NotSent,
    /// Sent, but no complete answer: the effect is unknown.
    NoAnswer,
    Answered(Answer),
}

/// One request with a form body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &str,
    timeout: Duration,
) -> Outcome {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return Outcome::NotSent;
    };
    if s.set_read_timeout(Some(timeout)).is_err() || s.set_write_timeout(Some(timeout)).is_err() {
        return Outcome::NotSent;
    }
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return Outcome::NoAnswer;
    }
    let mut out = Vec::new();
    if s.read_to_end(&mut out).is_err() {
        return Outcome::NoAnswer;
    }
    match parse(&out) {
        Some(a) => Outcome::Answered(a),
        None => Outcome::NoAnswer,
    }
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        if let Some(len) = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
        {
            // A body cut short by a dying member is no answer.
            if body.len() < len {
                return None;
            }
        }
        body.to_owned()
    };
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        s = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// Percent-encodes a form or query value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_chunked_and_truncated_answers() {
        let a = parse(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Etcd-Index: 7\r\n\r\n{}")
            .expect("answer");
        assert_eq!((a.status, a.header("x-etcd-index")), (201, Some("7")));
        let c = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .expect("chunked");
        assert_eq!(c.body, "abcde");
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            None
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"),
            None
        );
        assert_eq!(parse(b"garbage"), None);
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
