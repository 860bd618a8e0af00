//! [`HttpKvClient`]: the v2 HTTP API over `reqwest`, against a list of
//! endpoints with failover, the way etcd's own v2 client does it.
//!
//! Requests are encoded exactly as etcd's Go client encodes them (query
//! parameters sorted, `quorum`/`recursive`/`sorted` always explicit on reads,
//! values form-encoded in the body, keys escaped like Go's `url.URL`), so that
//! `kvctl --debug` prints the same cURL lines as `etcdctl --debug` and a
//! server sees the same requests from both.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{
    clean_key, CreateInOrderOptions, DeleteOptions, GetOptions, KvClient, KvError, KvFuture,
    KvResponse, PrevExist, SetOptions, WatchOptions,
};
use crate::v2::{ErrorBody, ErrorCode, Response, V2Error};
use rand::seq::SliceRandom;

/// Why one endpoint could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    pub endpoint: String,
    /// Text in the style of Go's net errors
    /// (`dial tcp 127.0.0.1:1: connect: connection refused`).
    pub message: String,
    /// Nothing was sent: the connection could not be made (or timed out).
    pub connect: bool,
}

/// A cluster member as `/v2/members` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// Empty for a member that was added but has not started.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
}

#[derive(Deserialize)]
struct MemberList {
    #[serde(default)]
    members: Vec<Member>,
}

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub etcdserver: String,
    pub etcdcluster: String,
}

type Observer = Arc<dyn Fn(&str) + Send + Sync>;

/// Builds an [`HttpKvClient`].
#[derive(Default)]
pub struct HttpKvClientBuilder {
    endpoints: Vec<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    credentials: Option<(String, String)>,
    request_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    observer: Option<Observer>,
}

impl HttpKvClientBuilder {
    /// Add an endpoint (`http://host:port`; `host:port` gets `http://`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoints.push(url.into());
        self
    }

    /// Add several endpoints.
    pub fn endpoints<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints.extend(urls.into_iter().map(Into::into));
        self
    }

    /// CA bundle (PEM) to verify servers with, in addition to the system roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Client certificate and key (PEM) for mutual TLS.
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// HTTP basic credentials (v2 auth).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Deadline of each non-watch request.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = Some(t);
        self
    }

    /// Deadline for establishing a connection.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = Some(t);
        self
    }

    /// Called with the cURL equivalent of every request before it is sent
    /// (`etcdctl --debug`).
    pub fn observer(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    pub fn build(self) -> Result<HttpKvClient, KvError> {
        if self.endpoints.is_empty() {
            return Err(KvError::NoEndpoints);
        }
        let endpoints = self
            .endpoints
            .iter()
            .map(|e| normalise_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut b = reqwest::Client::builder();
        if let Some(t) = self.connect_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(ca) = &self.ca_file {
            let pem = read_file(ca)?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| KvError::Config(format!("{}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file(cert)?;
                pem.push(b'\n');
                pem.extend(read_file(key)?);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| KvError::Config(format!("{}: {e}", cert.display())))?;
                b = b.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(KvError::Config(
                    "a client certificate needs both a certificate file and a key file".into(),
                ))
            }
        }
        let http = b
            .build()
            .map_err(|e| KvError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpKvClient {
            http,
            endpoints: RwLock::new(endpoints),
            pinned: AtomicUsize::new(0),
            credentials: self.credentials,
            request_timeout: self.request_timeout,
            observer: self.observer,
        })
    }
}

fn read_file(p: &PathBuf) -> Result<Vec<u8>, KvError> {
    std::fs::read(p).map_err(|e| KvError::Config(format!("open {}: {e}", p.display())))
}

fn normalise_endpoint(e: &str) -> Result<String, KvError> {
    let with_scheme = if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|err| KvError::Config(format!("parse {e:?}: {err}")))?;
    if url.host_str().is_none() {
        return Err(KvError::Config(format!("parse {e:?}: missing host")));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

/// The v2 API over HTTP, with failover across endpoints.
pub struct HttpKvClient {
    http: reqwest::Client,
    endpoints: RwLock<Vec<String>>,
    /// Index of the endpoint that answered last; requests start there.
    pinned: AtomicUsize,
    credentials: Option<(String, String)>,
    request_timeout: Option<Duration>,
    observer: Option<Observer>,
}

struct Request {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<(&'static str, String)>,
    wait: bool,
    /// Not retried on another member after a 5xx (etcd's client marks
    /// creates with `prevExist=false` so: a retry could see its own
    /// write and report "Key already exists").
    one_shot: bool,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    endpoint: String,
}

impl HttpKvClient {
    pub fn builder() -> HttpKvClientBuilder {
        HttpKvClientBuilder::default()
    }

    /// The endpoints in use, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.read().map(|e| e.clone()).unwrap_or_default()
    }

    /// Replace the endpoints by the client URLs the cluster advertises
    /// (`etcdctl` does this unless `--no-sync`).
    pub async fn sync(&self) -> Result<(), KvError> {
        let members = self.members().await?;
        let mut urls: Vec<String> = Vec::new();
        for m in &members {
            for u in &m.client_urls {
                let u = normalise_endpoint(u)?;
                if !urls.contains(&u) {
                    urls.push(u);
                }
            }
        }
        if urls.is_empty() {
            return Err(KvError::NoEndpoints);
        }
        // etcd's client shuffles the synced endpoints (its default random
        // selection), so clients spread over the members and one member
        // that is cut off (or stale) is not everyone's first choice.
        urls.shuffle(&mut rand::thread_rng());
        if let Ok(mut eps) = self.endpoints.write() {
            *eps = urls;
        }
        self.pinned.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// `GET /v2/members`.
    pub async fn members(&self) -> Result<Vec<Member>, KvError> {
        let ans = self
            .send(Request::new(Method::GET, "/v2/members".into()))
            .await?;
        if ans.status != 200 {
            return Err(api_error(&ans));
        }
        let list: MemberList = decode(&ans)?;
        Ok(list.members)
    }

    /// `GET /v2/members/leader`.
    pub async fn leader(&self) -> Result<Member, KvError> {
        let ans = self
            .send(Request::new(Method::GET, "/v2/members/leader".into()))
            .await?;
        if ans.status != 200 {
            return Err(api_error(&ans));
        }
        decode(&ans)
    }

    /// `POST /v2/members`: add a member by its peer URLs.
    pub async fn add_member(&self, peer_urls: &[String]) -> Result<Member, KvError> {
        let mut req = Request::new(Method::POST, "/v2/members".into());
        req.body = Some(("application/json", peer_urls_json(peer_urls)));
        let ans = self.send(req).await?;
        if ans.status != 201 {
            return Err(api_error(&ans));
        }
        decode(&ans)
    }

    /// `DELETE /v2/members/<id>`.
    pub async fn remove_member(&self, id: &str) -> Result<(), KvError> {
        let req = Request::new(
            Method::DELETE,
            format!("/v2/members/{}", go_path_escape(id)),
        );
        let ans = self.send(req).await?;
        if ans.status != 204 {
            return Err(api_error(&ans));
        }
        Ok(())
    }

    /// `PUT /v2/members/<id>`: change a member's peer URLs.
    pub async fn update_member(&self, id: &str, peer_urls: &[String]) -> Result<(), KvError> {
        let mut req = Request::new(Method::PUT, format!("/v2/members/{}", go_path_escape(id)));
        req.body = Some(("application/json", peer_urls_json(peer_urls)));
        let ans = self.send(req).await?;
        if ans.status != 204 {
            return Err(api_error(&ans));
        }
        Ok(())
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<VersionInfo, KvError> {
        let ans = self
            .send(Request::new(Method::GET, "/version".into()))
            .await?;
        if ans.status != 200 {
            return Err(api_error(&ans));
        }
        decode(&ans)
    }

    /// `GET /v2/stats/<kind>` (`self`, `leader`, `store`), as raw JSON.
    pub async fn stats(&self, kind: &str) -> Result<serde_json::Value, KvError> {
        let req = Request::new(Method::GET, format!("/v2/stats/{}", go_path_escape(kind)));
        let ans = self.send(req).await?;
        if ans.status != 200 {
            return Err(api_error(&ans));
        }
        decode(&ans)
    }

    /// `GET <client_url>/health` on one member, without failover. Accepts
    /// `{"health":"true"}`, `{"health": "true"}` and `{"health":true}`.
    pub async fn health(&self, client_url: &str) -> Result<bool, KvError> {
        let url = format!("{client_url}/health");
        let mut rb = self.http.get(&url);
        if let Some(t) = self.request_timeout {
            rb = rb.timeout(t);
        }
        let fail = |e: reqwest::Error| {
            let inner = go_net_error(&e, &url);
            KvError::Transport(EndpointError {
                endpoint: client_url.to_string(),
                message: format!("Get {url:?}: {inner}"),
                connect: e.is_connect() || e.is_timeout(),
            })
        };
        let resp = rb.send().await.map_err(fail)?;
        let body = resp.bytes().await.map_err(fail)?;
        #[derive(Deserialize)]
        struct H {
            health: serde_json::Value,
        }
        let h: H = serde_json::from_slice(&body).map_err(|e| KvError::Decode {
            endpoint: client_url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(match h.health {
            serde_json::Value::String(s) => s == "true",
            serde_json::Value::Bool(b) => b,
            _ => false,
        })
    }

    async fn send(&self, req: Request) -> Result<Answer, KvError> {
        let eps = self.endpoints();
        if eps.is_empty() {
            return Err(KvError::NoEndpoints);
        }
        let start = self.pinned.load(Ordering::Relaxed) % eps.len();
        let mut errors = Vec::new();
        for i in 0..eps.len() {
            let idx = (start + i) % eps.len();
            let ep = &eps[idx];
            let url = req.url(ep);
            if let Some(obs) = &self.observer {
                obs(&req.curl(&url));
            }
            let mut rb = self.http.request(req.method.clone(), &url);
            if let Some((user, pass)) = &self.credentials {
                rb = rb.basic_auth(user, Some(pass));
            }
            if let Some((ctype, body)) = &req.body {
                rb = rb.header(CONTENT_TYPE, *ctype).body(body.clone());
            }
            if !req.wait {
                if let Some(t) = self.request_timeout {
                    rb = rb.timeout(t);
                }
            }
            let result = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    resp.bytes().await.map(|b| (status, headers, b.to_vec()))
                }
                Err(e) => Err(e),
            };
            match result {
                // Like etcd's client: a member that answers 500 or 503 has
                // no leader (it is partitioned, or an election is on), so
                // the next member is asked; other 5xx are server errors.
                Ok((status, _, _)) if status / 100 == 5 => {
                    let message = if status == 500 || status == 503 {
                        format!("client: etcd member {ep} has no leader")
                    } else {
                        let text = reqwest::StatusCode::from_u16(status)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("");
                        format!("client: etcd member {ep} returns server error [{text}]")
                    };
                    tracing::debug!(endpoint = %ep, status, "kv member answered with a server error");
                    let err = EndpointError {
                        endpoint: ep.clone(),
                        message,
                        connect: false,
                    };
                    if req.one_shot {
                        self.pinned.store((idx + 1) % eps.len(), Ordering::Relaxed);
                        return Err(KvError::Transport(err));
                    }
                    errors.push(err);
                }
                Ok((status, headers, body)) => {
                    self.pinned.store(idx, Ordering::Relaxed);
                    return Ok(Answer {
                        status,
                        headers,
                        body,
                        endpoint: ep.clone(),
                    });
                }
                Err(e) => {
                    let message = if e.is_timeout() {
                        format!("client: endpoint {ep} exceeded header timeout")
                    } else {
                        go_net_error(&e, &url)
                    };
                    // A refused handshake sent no request (safe to try the
                    // next member) but is not a connection error for
                    // etcdctl's exit status: Go reports it as x509/tls.
                    let tls =
                        message.starts_with("x509: ") || message.starts_with("remote error: tls");
                    let connect = !tls && (e.is_connect() || (e.is_timeout() && !req.wait));
                    tracing::debug!(endpoint = %ep, error = %message, "kv request failed");
                    errors.push(EndpointError {
                        endpoint: ep.clone(),
                        message,
                        connect,
                    });
                    // A request that may have reached the server is not
                    // retried elsewhere: it could be applied twice.
                    if !connect && !tls {
                        break;
                    }
                }
            }
        }
        Err(KvError::Cluster(errors))
    }

    async fn key_request(&self, req: Request) -> Result<KvResponse, KvError> {
        let ans = self.send(req).await?;
        match key_answer(&ans)? {
            Some(r) => Ok(r),
            None => Err(KvError::Decode {
                endpoint: ans.endpoint,
                reason: "empty body".into(),
            }),
        }
    }
}

impl Request {
    fn new(method: Method, path: String) -> Self {
        Request {
            method,
            path,
            query: Vec::new(),
            body: None,
            wait: false,
            one_shot: false,
        }
    }

    fn keys(method: Method, key: &str) -> Self {
        let key = clean_key(key);
        let path = if key == "/" {
            "/v2/keys".to_string()
        } else {
            format!("/v2/keys{}", go_path_escape(&key))
        };
        Request::new(method, path)
    }

    fn url(&self, endpoint: &str) -> String {
        let mut url = format!("{endpoint}{}", self.path);
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&encode_values(&self.query));
        }
        url
    }

    fn curl(&self, url: &str) -> String {
        let mut s = format!("curl -X {} {url}", self.method);
        if let Some((_, body)) = &self.body {
            s.push_str(" -d ");
            s.push_str(&go_quote(body));
        }
        s
    }
}

/// Go's `url.Values.Encode`: sorted by name, query-escaped.
fn encode_values(values: &[(&'static str, String)]) -> String {
    let mut v: Vec<&(&str, String)> = values.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.iter()
        .map(|(k, val)| format!("{}={}", go_query_escape(k), go_query_escape(val)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Escape a path like Go's `url.URL.EscapedPath`: unreserved characters and
/// `$&+,/:;=@` stay, everything else becomes `%XX`.
pub fn go_path_escape(s: &str) -> String {
    escape(
        s,
        |c| c.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&c),
        false,
    )
}

/// Escape a form or query value like Go's `url.QueryEscape` (space is `+`).
pub fn go_query_escape(s: &str) -> String {
    escape(
        s,
        |c| c.is_ascii_alphanumeric() || b"-_.~".contains(&c),
        true,
    )
}

fn escape(s: &str, keep: impl Fn(u8) -> bool, space_plus: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if keep(c) {
            out.push(c as char);
        } else if c == b' ' && space_plus {
            out.push('+');
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Go's `%q` for the strings we print (ASCII form bodies and JSON).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn peer_urls_json(urls: &[String]) -> String {
    serde_json::json!({ "peerURLs": urls }).to_string()
}

/// Describe a transport failure the way Go's net package does, so that
/// tools print what etcd's client prints.
fn go_net_error(e: &reqwest::Error, url: &str) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io_kind = None;
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
            break;
        }
        src = err.source();
    }
    let hostport = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            let port = u.port_or_known_default()?;
            Some(format!("{host}:{port}"))
        })
        .unwrap_or_default();
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            format!("dial tcp {hostport}: connect: connection refused")
        }
        Some(std::io::ErrorKind::ConnectionReset) => {
            format!("read tcp {hostport}: read: connection reset by peer")
        }
        _ => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            // TLS failures in Go's words, as etcdctl prints them.
            if msg.contains("CertificateRequired") {
                "remote error: tls: certificate required".into()
            } else if msg.contains("UnknownIssuer") || msg.contains("BadSignature") {
                "x509: certificate signed by unknown authority".into()
            } else if msg.contains("NotValidForName") {
                format!("x509: certificate is valid for other names, not {hostport}")
            } else if msg.contains("Expired") {
                "x509: certificate has expired or is not yet valid".into()
            } else if msg.contains("received fatal alert") {
                let alert = msg.rsplit("received fatal alert: ").next().unwrap_or("");
                format!("remote error: tls: {}", alert.to_ascii_lowercase())
            } else {
                msg
            }
        }
    }
}

fn header_u64(h: &HeaderMap, name: &str) -> u64 {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Decode a `/v2/keys` answer. `Ok(None)` is a 2xx with an empty body: a
/// watch the server closed without an event.
fn key_answer(ans: &Answer) -> Result<Option<KvResponse>, KvError> {
    let etcd_index = header_u64(&ans.headers, "x-etcd-index");
    if (200..300).contains(&ans.status) {
        if ans.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let event: Response = serde_json::from_slice(&ans.body).map_err(|e| KvError::Decode {
            endpoint: ans.endpoint.clone(),
            reason: e.to_string(),
        })?;
        return Ok(Some(KvResponse {
            event,
            etcd_index,
            raft_index: header_u64(&ans.headers, "x-raft-index"),
            raft_term: header_u64(&ans.headers, "x-raft-term"),
        }));
    }
    match serde_json::from_slice::<ErrorBody>(&ans.body) {
        Ok(body) => match ErrorCode::from_code(body.error_code) {
            Some(code) => Err(KvError::Key(V2Error::new(code, body.cause, body.index))),
            None => Err(KvError::UnknownCode(body)),
        },
        Err(_) => Err(api_error(ans)),
    }
}

fn api_error(ans: &Answer) -> KvError {
    #[derive(Deserialize)]
    struct Msg {
        message: String,
    }
    let message = match serde_json::from_slice::<Msg>(&ans.body) {
        Ok(m) => m.message,
        Err(_) => format!("unexpected status code {}", ans.status),
    };
    KvError::Api {
        status: ans.status,
        message,
    }
}

fn decode<T: serde::de::DeserializeOwned>(ans: &Answer) -> Result<T, KvError> {
    serde_json::from_slice(&ans.body).map_err(|e| KvError::Decode {
        endpoint: ans.endpoint.clone(),
        reason: e.to_string(),
    })
}

fn bool_str(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

impl KvClient for HttpKvClient {
    fn get<'a>(&'a self, key: &'a str, opts: GetOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            let mut req = Request::keys(Method::GET, key);
            req.query = vec![
                ("quorum", bool_str(opts.quorum)),
                ("recursive", bool_str(opts.recursive)),
                ("sorted", bool_str(opts.sorted)),
            ];
            self.key_request(req).await
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        opts: SetOptions,
    ) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            let mut req = Request::keys(Method::PUT, key);
            let mut form: Vec<(&'static str, String)> = Vec::new();
            if opts.dir {
                req.query.push(("dir", "true".into()));
            } else {
                if let Some(v) = &opts.prev.value {
                    req.query.push(("prevValue", v.clone()));
                }
                form.push(("value", value.to_string()));
            }
            if let Some(i) = opts.prev.index.filter(|i| *i != 0) {
                req.query.push(("prevIndex", i.to_string()));
            }
            match opts.prev_exist {
                PrevExist::Ignore => {}
                PrevExist::Exists => req.query.push(("prevExist", "true".into())),
                PrevExist::NotExists => {
                    req.query.push(("prevExist", "false".into()));
                    req.one_shot = true;
                }
            }
            if let Some(ttl) = opts.ttl {
                form.push(("ttl", ttl.to_string()));
            }
            if opts.refresh {
                form.push(("refresh", "true".into()));
            }
            if opts.no_value_on_success {
                req.query.push(("noValueOnSuccess", "true".into()));
            }
            req.body = Some(("application/x-www-form-urlencoded", encode_values(&form)));
            self.key_request(req).await
        })
    }

    fn create_in_order<'a>(
        &'a self,
        dir: &'a str,
        value: &'a str,
        opts: CreateInOrderOptions,
    ) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            let mut req = Request::keys(Method::POST, dir);
            let mut form = vec![("value", value.to_string())];
            if let Some(ttl) = opts.ttl {
                form.push(("ttl", ttl.to_string()));
            }
            req.body = Some(("application/x-www-form-urlencoded", encode_values(&form)));
            self.key_request(req).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str, opts: DeleteOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            let mut req = Request::keys(Method::DELETE, key);
            if let Some(v) = &opts.prev.value {
                req.query.push(("prevValue", v.clone()));
            }
            if let Some(i) = opts.prev.index.filter(|i| *i != 0) {
                req.query.push(("prevIndex", i.to_string()));
            }
            if opts.dir {
                req.query.push(("dir", "true".into()));
            }
            if opts.recursive {
                req.query.push(("recursive", "true".into()));
            }
            self.key_request(req).await
        })
    }

    fn watch_once<'a>(&'a self, key: &'a str, opts: WatchOptions) -> KvFuture<'a, KvResponse> {
        Box::pin(async move {
            loop {
                let mut req = Request::keys(Method::GET, key);
                req.wait = true;
                req.query = vec![
                    ("recursive", bool_str(opts.recursive)),
                    ("wait", "true".into()),
                    ("waitIndex", opts.wait_index.unwrap_or(0).to_string()),
                ];
                let ans = self.send(req).await?;
                // An empty 200 means the server let go of the watch without
                // an event (restart, proxy): watch again from the same index.
                if let Some(r) = key_answer(&ans)? {
                    return Ok(r);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_go() {
        assert_eq!(go_query_escape("a b&c"), "a+b%26c");
        assert_eq!(go_query_escape("é/~"), "%C3%A9%2F~");
        assert_eq!(go_path_escape("/sp ace/x?y#z"), "/sp%20ace/x%3Fy%23z");
        assert_eq!(go_path_escape("/a:b@c$d&e+f,g;h=i"), "/a:b@c$d&e+f,g;h=i");
        assert_eq!(go_path_escape("/a!'()*%"), "/a%21%27%28%29%2A%25");
    }

    #[test]
    fn requests_encode_like_the_go_client() {
        let mut r = Request::keys(Method::GET, "w/b");
        r.query = vec![
            ("sorted", "false".into()),
            ("quorum", "false".into()),
            ("recursive", "false".into()),
        ];
        assert_eq!(
            r.curl(&r.url("http://127.0.0.1:2379")),
            "curl -X GET http://127.0.0.1:2379/v2/keys/w/b?quorum=false&recursive=false&sorted=false"
        );
        let mut r = Request::keys(Method::POST, "/w/q");
        r.body = Some((
            "application/x-www-form-urlencoded",
            encode_values(&[("value", "x".into()), ("ttl", "5".into())]),
        ));
        assert_eq!(
            r.curl(&r.url("http://h:1")),
            "curl -X POST http://h:1/v2/keys/w/q -d \"ttl=5&value=x\""
        );
        assert_eq!(
            Request::keys(Method::GET, "/").url("http://h:1"),
            "http://h:1/v2/keys"
        );
    }

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(
            normalise_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(normalise_endpoint("https://a:1/").unwrap(), "https://a:1");
        assert!(normalise_endpoint("http://").is_err());
    }

    fn answer(status: u16, body: &str, index: &str) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert("X-Etcd-Index", index.parse().unwrap());
        Answer {
            status,
            headers,
            body: body.as_bytes().to_vec(),
            endpoint: "http://h:1".into(),
        }
    }

    #[test]
    fn error_bodies_become_v2_errors() {
        let a = answer(
            404,
            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/foo\",\"index\":4}\n",
            "4",
        );
        let e = key_answer(&a).unwrap_err();
        assert_eq!(e.to_string(), "100: Key not found (/foo) [4]");
        assert!(e.is_code(ErrorCode::KeyNotFound));
        let a = answer(
            400,
            "{\"errorCode\":999,\"message\":\"new\",\"index\":1}",
            "1",
        );
        assert!(matches!(key_answer(&a), Err(KvError::UnknownCode(_))));
        let a = answer(500, "garbage", "0");
        assert_eq!(
            key_answer(&a).unwrap_err().to_string(),
            "unexpected status code 500"
        );
        let a = answer(200, "", "7");
        assert!(key_answer(&a).unwrap().is_none());
        let a = answer(200, "{\"action\":\"get\",\"node\":{\"dir\":true}}\n", "7");
        let r = key_answer(&a).unwrap().unwrap();
        assert_eq!(r.etcd_index, 7);
        assert!(r.node().unwrap().dir);
        let a = answer(200, "{not json", "7");
        assert!(matches!(key_answer(&a), Err(KvError::Decode { .. })));
    }
}
