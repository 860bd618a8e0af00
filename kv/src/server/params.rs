//! `/v2/keys` request parameters, parsed the way etcd's Go server parses
//! them (kv.md §3.1): Go's `url.ParseQuery` rules and error texts, form body
//! values before query values (so the body wins), first value of a repeated
//! name, `strconv.ParseBool`/`ParseUint` syntax, and etcd's checks in
//! etcd's order, so that a malformed request gets the same error as from
//! the oracle.

use crate::v2::{ErrorCode, V2Error};

/// The largest form body read (Go's `http: POST too large` limit).
pub const MAX_FORM_BYTES: usize = 10 << 20;

/// Decoded parameters in Go's `r.Form` order: body values, then query.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Builds `r.Form` from a raw query and an optional form body; the
    /// error is Go's text (`invalid URL escape "%zz"`), body errors first.
    pub fn parse(query: &str, body: Option<&[u8]>) -> Result<Form, String> {
        let mut pairs = Vec::new();
        let mut err = None;
        if let Some(b) = body {
            let s = String::from_utf8_lossy(b);
            if let Err(e) = parse_query(&s, &mut pairs) {
                err = Some(e);
            }
        }
        if let Err(e) = parse_query(query, &mut pairs) {
            err.get_or_insert(e);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(Form { pairs }),
        }
    }

    /// The first value of `name` (`r.Form.Get`), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `r.FormValue`: the first value, or `""`.
    pub fn value(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Go's `url.ParseQuery` (Go ≥ 1.17: `;` is rejected).
fn parse_query(query: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut err: Option<String> = None;
    for part in query.split('&') {
        if part.contains(';') {
            err = Some("invalid semicolon separator in query".into());
            continue;
        }
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = match query_unescape(k) {
            Ok(k) => k,
            Err(e) => {
                err.get_or_insert(e);
                continue;
            }
        };
        let v = match query_unescape(v) {
            Ok(v) => v,
            Err(e) => {
                err.get_or_insert(e);
                continue;
            }
        };
        out.push((k, v));
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go's `url.QueryUnescape` (`+` is a space).
pub fn query_unescape(s: &str) -> Result<String, String> {
    unescape(s, true)
}

/// Go's `url.PathUnescape` (`+` stays).
pub fn path_unescape(s: &str) -> Result<String, String> {
    unescape(s, false)
}

fn unescape(s: &str, plus_is_space: bool) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_val);
                let lo = b.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                    }
                    _ => {
                        let end = (i + 3).min(b.len());
                        let bad = String::from_utf8_lossy(&b[i..end]);
                        return Err(format!("invalid URL escape {bad:?}"));
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)`.
pub fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A parsed `/v2/keys` request (etcd's `parseKeyRequest`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyParams {
    pub value: String,
    pub dir: bool,
    pub prev_value: Option<String>,
    pub prev_index: u64,
    pub prev_exist: Option<bool>,
    pub wait: bool,
    pub wait_index: u64,
    pub recursive: bool,
    pub sorted: bool,
    pub quorum: bool,
    pub stream: bool,
    pub refresh: bool,
    pub ttl: Option<u64>,
    pub no_value_on_success: bool,
}

fn field_error(code: ErrorCode, cause: &str) -> V2Error {
    V2Error::new(code, cause, 0)
}

fn get_bool(form: &Form, name: &str) -> Result<bool, V2Error> {
    match form.get(name) {
        None => Ok(false),
        Some(v) => parse_bool(v).ok_or_else(|| {
            field_error(
                ErrorCode::InvalidField,
                &format!("invalid value for \"{name}\""),
            )
        }),
    }
}

fn get_uint(form: &Form, name: &str, code: ErrorCode) -> Result<u64, V2Error> {
    match form.get(name) {
        None => Ok(0),
        Some(v) => {
            parse_uint(v).ok_or_else(|| field_error(code, &format!("invalid value for \"{name}\"")))
        }
    }
}

impl KeyParams {
    /// etcd's checks, in etcd's order; every error has index 0.
    pub fn parse(form: &Form, method: &str) -> Result<KeyParams, V2Error> {
        let prev_index = get_uint(form, "prevIndex", ErrorCode::IndexNaN)?;
        let wait_index = get_uint(form, "waitIndex", ErrorCode::IndexNaN)?;
        let recursive = get_bool(form, "recursive")?;
        let sorted = get_bool(form, "sorted")?;
        let wait = get_bool(form, "wait")?;
        let dir = get_bool(form, "dir")?;
        let quorum = get_bool(form, "quorum")?;
        let stream = get_bool(form, "stream")?;
        if wait && method != "GET" {
            return Err(field_error(
                ErrorCode::InvalidField,
                "\"wait\" can only be used with GET requests",
            ));
        }
        let prev_value = form.get("prevValue");
        if prev_value == Some("") {
            return Err(field_error(
                ErrorCode::PrevValueRequired,
                "\"prevValue\" cannot be empty",
            ));
        }
        let no_value_on_success = get_bool(form, "noValueOnSuccess")?;
        let ttl = if form.value("ttl").is_empty() {
            None
        } else {
            Some(get_uint(form, "ttl", ErrorCode::TtlNaN)?)
        };
        let prev_exist = match form.get("prevExist") {
            None => None,
            Some(v) => Some(parse_bool(v).ok_or_else(|| {
                field_error(ErrorCode::InvalidField, "invalid value for prevExist")
            })?),
        };
        let refresh = match form.get("refresh") {
            None => false,
            Some(v) => {
                let r = parse_bool(v).ok_or_else(|| {
                    field_error(ErrorCode::InvalidField, "invalid value for refresh")
                })?;
                if r {
                    if !form.value("value").is_empty() {
                        return Err(field_error(
                            ErrorCode::RefreshValue,
                            "A value was provided on a refresh",
                        ));
                    }
                    if ttl.is_none() {
                        return Err(field_error(
                            ErrorCode::RefreshTtlRequired,
                            "No TTL value set",
                        ));
                    }
                }
                r
            }
        };
        Ok(KeyParams {
            value: form.value("value").to_owned(),
            dir,
            prev_value: prev_value.map(str::to_owned),
            prev_index,
            prev_exist,
            wait,
            wait_index,
            recursive,
            sorted,
            quorum,
            stream,
            refresh,
            ttl,
            no_value_on_success,
        })
    }
}

/// Go's `cleanPath` from `net/http`'s mux: `path.Clean`, keeping a
/// trailing slash.
pub fn mux_clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".into();
    }
    let p = if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("/{p}")
    };
    let mut np = go_path_clean(&p);
    if p.ends_with('/') && np != "/" {
        np.push('/');
    }
    np
}

/// Go's `path.Clean` for a rooted path.
fn go_path_clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `url.URL{Path: p}.EscapedPath()` for a redirect `Location`.
pub fn escape_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for &c in p.as_bytes() {
        let keep = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'_'
                    | b'.'
                    | b'~'
                    | b'$'
                    | b'&'
                    | b'+'
                    | b','
                    | b'/'
                    | b':'
                    | b';'
                    | b'='
                    | b'@'
            );
        if keep {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_wins_and_first_value_counts() {
        let f = Form::parse("value=q&value=q2&a=1", Some(b"value=b")).unwrap();
        assert_eq!(f.get("value"), Some("b"));
        assert_eq!(f.get("a"), Some("1"));
        let f = Form::parse("x=a+b%20c", None).unwrap();
        assert_eq!(f.get("x"), Some("a b c"));
    }

    #[test]
    fn go_query_errors() {
        assert_eq!(
            Form::parse("value=%zz", None).unwrap_err(),
            "invalid URL escape \"%zz\""
        );
        assert_eq!(
            Form::parse("v=%4", None).unwrap_err(),
            "invalid URL escape \"%4\""
        );
        assert_eq!(
            Form::parse("a=1;b=2", None).unwrap_err(),
            "invalid semicolon separator in query"
        );
    }

    #[test]
    fn etcd_parameter_errors() {
        let p = |q: &str, m: &str| KeyParams::parse(&Form::parse(q, None).unwrap(), m);
        let e = p("recursive=maybe", "GET").unwrap_err();
        assert_eq!(
            (e.code, e.cause.as_str(), e.index),
            (
                ErrorCode::InvalidField,
                "invalid value for \"recursive\"",
                0
            )
        );
        assert_eq!(p("ttl=-1", "PUT").unwrap_err().code, ErrorCode::TtlNaN);
        assert_eq!(p("ttl=", "PUT").unwrap().ttl, None);
        assert_eq!(
            p("prevIndex=", "PUT").unwrap_err().code,
            ErrorCode::IndexNaN
        );
        assert_eq!(
            p("prevValue=", "PUT").unwrap_err().code,
            ErrorCode::PrevValueRequired
        );
        assert_eq!(
            p("wait=true", "PUT").unwrap_err().cause,
            "\"wait\" can only be used with GET requests"
        );
        assert_eq!(
            p("prevExist=x", "PUT").unwrap_err().cause,
            "invalid value for prevExist"
        );
        assert_eq!(
            p("refresh=true", "PUT").unwrap_err().code,
            ErrorCode::RefreshTtlRequired
        );
        assert_eq!(
            p("refresh=true&ttl=1&value=x", "PUT").unwrap_err().code,
            ErrorCode::RefreshValue
        );
        assert!(p("refresh=true&ttl=1&value=", "PUT").unwrap().refresh);
        assert_eq!(p("prevExist=F", "PUT").unwrap().prev_exist, Some(false));
    }

    #[test]
    fn mux_cleaning() {
        assert_eq!(mux_clean_path("/v2/keys//a"), "/v2/keys/a");
        assert_eq!(mux_clean_path("/v2/keys/a/"), "/v2/keys/a/");
        assert_eq!(mux_clean_path("/v2/keys/./a/../b"), "/v2/keys/b");
        assert_eq!(escape_path("/v2/keys/a b"), "/v2/keys/a%20b");
    }
}
