//! The client-port HTTP API: `/v2/keys`, members, stats, version, health,
//! metrics, answered byte for byte as etcd 3.4.23 answers them.
//!
//! Requests first pass the layer etcd gets from Go's `net/http`: CORS
//! headers on every answer, `OPTIONS` answered empty, and paths that are not
//! clean (`//`, `.`, `..`) redirected with 301 the way Go's mux does. Then an
//! `axum` router dispatches on the path; each handler checks its own methods
//! so that 405 answers carry etcd's exact `Allow` list. Responses are
//! served with title-case header names (`X-Etcd-Index`), as Go writes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use axum::routing::any;
use axum::Router;
use serde::Serialize;

use super::core::{now, KvCore, Read, Written};
use super::params::{escape_path, mux_clean_path, path_unescape, Form, KeyParams, MAX_FORM_BYTES};
use crate::store::{Command, Event, PutRequest};
use crate::v2::{Action, ErrorCode, Response as V2Response, V2Error};

/// Per-method request counters for `/metrics`.
#[derive(Default)]
pub struct HttpMetrics {
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    post: AtomicU64,
    delete: AtomicU64,
    other: AtomicU64,
}

impl HttpMetrics {
    fn count(&self, m: &Method) {
        let c = match *m {
            Method::GET => &self.get,
            Method::HEAD => &self.head,
            Method::PUT => &self.put,
            Method::POST => &self.post,
            Method::DELETE => &self.delete,
            _ => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every handler needs.
#[derive(Clone)]
pub struct HttpState {
    pub core: Arc<KvCore>,
    pub cors: Arc<Vec<String>>,
    pub metrics: Arc<HttpMetrics>,
}

type Resp = Response<Body>;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

fn response(status: StatusCode, content_type: Option<&str>, body: impl Into<Bytes>) -> Resp {
    let body: Bytes = body.into();
    let mut r = Response::new(Body::from(body.clone()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Some(ct) = content_type {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ct_static(ct)),
        );
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

fn ct_static(ct: &str) -> &'static str {
    match ct {
        JSON => JSON,
        "text/html; charset=utf-8" => "text/html; charset=utf-8",
        _ => TEXT,
    }
}

/// Go's `http.Error`: text body plus newline, `nosniff`.
fn http_error(status: StatusCode, text: &str) -> Resp {
    let mut r = response(status, Some(TEXT), format!("{text}\n"));
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// 405 with etcd's `Allow` list.
fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn not_found() -> Resp {
    http_error(StatusCode::NOT_FOUND, "404 page not found")
}

fn set_u64(h: &mut HeaderMap, name: &'static str, v: u64) {
    h.insert(name, HeaderValue::from(v));
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `v` as JSON plus a newline, serialized once into one buffer (the key
/// API's bodies), instead of `format!("{}\n", to_json(v))`'s two.
fn to_json_line<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    if serde_json::to_writer(&mut out, v).is_err() {
        out.clear();
    }
    out.push(b'\n');
    out
}

/// `{"message":"..."}` errors of the non-key endpoints (no newline).
fn message_error(status: StatusCode, msg: &str) -> Resp {
    #[derive(Serialize)]
    struct M<'a> {
        message: &'a str,
    }
    response(status, Some(JSON), to_json(&M { message: msg }))
}

fn key_error(e: &V2Error) -> Resp {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = response(status, Some(JSON), format!("{}\n", to_json(&e.body())));
    set_u64(r.headers_mut(), "x-etcd-index", e.index);
    r
}

/// The client API as a `Router` (without the outer Go-mux layer, see
/// [`serve_request`]).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v2/keys", any(keys))
        .route("/v2/keys/", any(keys))
        .route("/v2/keys/{*rest}", any(keys))
        .route("/v2/members", any(members))
        .route("/v2/members/", any(members))
        .route("/v2/members/{*rest}", any(members))
        .route("/v2/stats/self", any(stats_self))
        .route("/v2/stats/leader", any(stats_leader))
        .route("/v2/stats/store", any(stats_store))
        .route("/v2/machines", any(machines))
        .route("/version", any(version))
        .route("/health", any(health))
        .route("/metrics", any(metrics))
        .fallback(|| async { not_found() })
        .with_state(state)
}

/// The layer Go's `net/http` and etcd's CORS handler put in front of the
/// mux: CORS headers, `OPTIONS`, unclean-path redirects.
pub async fn serve_request(state: HttpState, router: Router, req: Request) -> Resp {
    use tower::ServiceExt;
    state.metrics.count(req.method());
    // Go's server refuses a request URI whose path has a bad escape before
    // any handler runs (`url.ParseRequestURI`), and closes the connection.
    if path_unescape(req.uri().path()).is_err() {
        let mut r = response(
            StatusCode::BAD_REQUEST,
            Some("text/plain; charset=utf-8"),
            "400 Bad Request",
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let cors = cors_origin(&state.cors, req.headers());
    let mut resp = if req.method() == Method::OPTIONS {
        response(StatusCode::OK, None, Bytes::new())
    } else if let Some(r) = redirect(&req) {
        r
    } else {
        match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    if let Some(origin) = cors {
        let h = resp.headers_mut();
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("accept, content-type, authorization"),
        );
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
        );
        h.insert("access-control-allow-origin", origin);
    }
    resp
}

fn cors_origin(allowed: &[String], headers: &HeaderMap) -> Option<HeaderValue> {
    if allowed.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin = headers.get(header::ORIGIN)?;
    let o = origin.to_str().ok()?;
    allowed.iter().any(|a| a == o).then(|| origin.clone())
}

/// Go's mux: a request whose decoded path is not clean gets a 301 to the
/// clean path (query kept).
fn redirect(req: &Request) -> Option<Resp> {
    let raw = req.uri().path();
    let decoded = path_unescape(raw).unwrap_or_else(|_| raw.to_owned());
    let clean = mux_clean_path(&decoded);
    if clean == decoded {
        return None;
    }
    let mut location = escape_path(&clean);
    if let Some(q) = req.uri().query() {
        location.push('?');
        location.push_str(q);
    }
    let mut r = match *req.method() {
        Method::GET => response(
            StatusCode::MOVED_PERMANENTLY,
            Some("text/html; charset=utf-8"),
            format!(
                "<a href=\"{}\">Moved Permanently</a>.\n\n",
                html_escape(&location)
            ),
        ),
        Method::HEAD => response(
            StatusCode::MOVED_PERMANENTLY,
            Some("text/html; charset=utf-8"),
            Bytes::new(),
        ),
        _ => response(StatusCode::MOVED_PERMANENTLY, None, Bytes::new()),
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Some(r)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn cluster_header(state: &HttpState, h: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", state.core.identity().cluster_id)) {
        h.insert("x-etcd-cluster-id", v);
    }
}

/// Whether the body is a form Go's `ParseForm` would read.
fn is_form(headers: &HeaderMap) -> Result<bool, String> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(false);
    };
    let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.is_empty() {
        return Err("mime: no media type".into());
    }
    Ok(media == "application/x-www-form-urlencoded")
}

async fn read_form(req: Request) -> Result<Form, String> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let body = if matches!(parts.method, Method::PUT | Method::POST | Method::PATCH)
        && is_form(&parts.headers)?
    {
        let b = axum::body::to_bytes(body, MAX_FORM_BYTES + 1)
            .await
            .map_err(|_| "http: POST too large".to_string())?;
        Some(b)
    } else {
        None
    };
    Form::parse(&query, body.as_deref())
}

async fn keys(State(state): State<HttpState>, req: Request) -> Resp {
    // etcd checks the method before it sets the cluster header.
    if !matches!(
        *req.method(),
        Method::HEAD | Method::GET | Method::PUT | Method::POST | Method::DELETE
    ) {
        return method_not_allowed("HEAD,GET,PUT,POST,DELETE");
    }
    let mut resp = keys_inner(&state, req).await;
    cluster_header(&state, resp.headers_mut());
    resp
}

async fn keys_inner(state: &HttpState, req: Request) -> Resp {
    let method = req.method().clone();
    let raw = req.uri().path().to_owned();
    let decoded = path_unescape(&raw).unwrap_or(raw);
    let key = decoded.strip_prefix("/v2/keys").unwrap_or("");
    let key = if key.is_empty() { "/" } else { key }.to_owned();
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(cause) => return key_error(&V2Error::new(ErrorCode::InvalidForm, cause, 0)),
    };
    let p = match KeyParams::parse(&form, method.as_str()) {
        Ok(p) => p,
        Err(e) => return key_error(&e),
    };
    let core = &state.core;
    match method {
        Method::GET if p.wait => watch(core, &key, &p),
        Method::GET | Method::HEAD => {
            let quorum = p.quorum && method == Method::GET;
            match core.get(&key, p.recursive, p.sorted, quorum).await {
                Ok(r) => {
                    let mut resp = read_response(&r);
                    if method == Method::HEAD {
                        *resp.body_mut() = Body::empty();
                    }
                    resp
                }
                Err(e) => {
                    let mut resp = key_error(&e);
                    if method == Method::HEAD {
                        *resp.body_mut() = Body::empty();
                    }
                    resp
                }
            }
        }
        _ => {
            let expiration = p.ttl.map(|t| now().plus_secs(t));
            let cmd = match method {
                Method::PUT => Command::from_put(
                    key,
                    PutRequest {
                        value: p.value.clone(),
                        dir: p.dir,
                        expiration,
                        refresh: p.refresh,
                        prev_exist: p.prev_exist,
                        prev_value: p.prev_value.clone(),
                        prev_index: p.prev_index,
                    },
                ),
                Method::POST => Command::CreateInOrder {
                    parent: key,
                    value: p.value.clone(),
                    dir: p.dir,
                    expiration,
                },
                _ => Command::from_delete(
                    key,
                    p.dir,
                    p.recursive,
                    p.prev_value.clone(),
                    p.prev_index,
                ),
            };
            match core.write(cmd).await {
                Ok(w) => write_response(&w, p.no_value_on_success),
                Err(e) => key_error(&e),
            }
        }
    }
}

fn event_headers(r: &mut Resp, etcd_index: u64, raft_index: u64, raft_term: u64) {
    let h = r.headers_mut();
    set_u64(h, "x-etcd-index", etcd_index);
    set_u64(h, "x-raft-index", raft_index);
    set_u64(h, "x-raft-term", raft_term);
}

fn read_response(r: &Read) -> Resp {
    let body = to_json_line(&r.event);
    let mut resp = response(StatusCode::OK, Some(JSON), body);
    event_headers(&mut resp, r.etcd_index, r.raft_index, r.raft_term);
    resp
}

fn write_response(w: &Written, no_value: bool) -> Resp {
    let ev = &w.event;
    let created =
        ev.action == Action::Create || (ev.action == Action::Set && ev.prev_node.is_none());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = if no_value
        && matches!(
            ev.action,
            Action::Set | Action::CompareAndSwap | Action::Create | Action::Update
        ) {
        to_json_line(&V2Response {
            action: ev.action,
            node: None,
            prev_node: None,
        })
    } else {
        to_json_line(ev)
    };
    let mut resp = response(status, Some(JSON), body);
    event_headers(&mut resp, ev.index(), w.raft_index, w.raft_term);
    resp
}

fn watch(core: &Arc<KvCore>, key: &str, p: &KeyParams) -> Resp {
    let w = match core.watch(key, p.recursive, p.wait_index, p.stream) {
        Ok(w) => w,
        Err(e) => return key_error(&e),
    };
    let (etcd_index, raft_index, raft_term) = (w.etcd_index, w.raft_index, w.raft_term);
    let stream = p.stream;
    let body = futures::stream::unfold(Some(w), move |w| async move {
        let mut w = w?;
        let event = w.next().await?;
        let line = Bytes::from(format!("{}\n", to_json::<Event>(&event)));
        Some((
            Ok::<Bytes, std::io::Error>(line),
            if stream { Some(w) } else { None },
        ))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    event_headers(&mut resp, etcd_index, raft_index, raft_term);
    resp
}

fn hex_id(id: u64) -> String {
    format!("{id:x}")
}

type MemberJson = crate::client::Member;

fn member_list(core: &KvCore) -> Vec<(u64, MemberJson)> {
    super::cluster::member_list(core)
        .into_iter()
        .map(|m| (u64::from_str_radix(&m.id, 16).unwrap_or(0), m))
        .collect()
}

/// `{"peerURLs":[...]}` as etcd's members handler reads it.
fn peer_urls_body(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Req {
        #[serde(rename = "peerURLs", default)]
        peer_urls: Vec<String>,
    }
    let r: Req = serde_json::from_slice(body).map_err(|e| {
        let m = e.to_string();
        if m.starts_with("invalid type: string") {
            "json: cannot unmarshal string into Go struct field .peerURLs of type []string".into()
        } else {
            format!("json: {m}")
        }
    })?;
    for u in &r.peer_urls {
        super::config::parse_url(u).map_err(|e| e.to_string())?;
    }
    Ok(r.peer_urls)
}

async fn member_change(core: &KvCore, op: super::cluster::MemberOp) -> Resp {
    use super::cluster::MemberOutcome;
    let Some(cluster) = core.cluster() else {
        return message_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let deadline = tokio::time::Instant::now() + core.request_timeout();
    match cluster.member_op(core.node(), op, deadline).await {
        MemberOutcome::Added { id, node } => {
            let m = MemberJson {
                id: hex_id(id),
                name: node.name,
                peer_urls: node.peer_urls,
                client_urls: node.client_urls,
            };
            response(
                StatusCode::CREATED,
                Some(JSON),
                format!("{}\n", to_json(&m)),
            )
        }
        MemberOutcome::Done => response(StatusCode::NO_CONTENT, None, Bytes::new()),
        MemberOutcome::Refused { status, message } => message_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &message,
        ),
        MemberOutcome::NotLeader | MemberOutcome::Busy => {
            message_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

async fn members(State(state): State<HttpState>, req: Request) -> Resp {
    if !matches!(
        *req.method(),
        Method::GET | Method::POST | Method::DELETE | Method::PUT
    ) {
        return method_not_allowed("GET,POST,DELETE,PUT");
    }
    let mut resp = members_inner(&state, req).await;
    cluster_header(&state, resp.headers_mut());
    resp
}

async fn members_inner(state: &HttpState, req: Request) -> Resp {
    let core = &state.core;
    let method = req.method().clone();
    let rest = req
        .uri()
        .path()
        .strip_prefix("/v2/members")
        .unwrap_or("")
        .trim_start_matches('/')
        .to_owned();
    match method {
        Method::GET => match rest.as_str() {
            "" => {
                #[derive(Serialize)]
                struct List {
                    members: Vec<MemberJson>,
                }
                let list = List {
                    members: member_list(core).into_iter().map(|(_, m)| m).collect(),
                };
                response(StatusCode::OK, Some(JSON), format!("{}\n", to_json(&list)))
            }
            "leader" => match core.node().leader_id() {
                None => message_error(StatusCode::SERVICE_UNAVAILABLE, "During election"),
                Some(l) => match member_list(core).into_iter().find(|(id, _)| *id == l) {
                    Some((_, m)) => {
                        response(StatusCode::OK, Some(JSON), format!("{}\n", to_json(&m)))
                    }
                    None => message_error(StatusCode::SERVICE_UNAVAILABLE, "During election"),
                },
            },
            _ => message_error(StatusCode::NOT_FOUND, "Not found"),
        },
        Method::POST | Method::PUT => {
            if method == Method::PUT && rest.is_empty() {
                return http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            }
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            if ct != JSON {
                return message_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!("Bad Content-Type {ct}, accept application/json"),
                );
            }
            let is_post = method == Method::POST;
            let id = if is_post {
                0
            } else {
                match u64::from_str_radix(&rest, 16) {
                    Ok(id) => id,
                    Err(_) => {
                        return message_error(
                            StatusCode::NOT_FOUND,
                            &format!("No such member: {rest}"),
                        )
                    }
                }
            };
            let body = match axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES).await {
                Ok(b) => b,
                Err(e) => return message_error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let urls = match peer_urls_body(&body) {
                Ok(u) => u,
                Err(m) => return message_error(StatusCode::BAD_REQUEST, &m),
            };
            let op = if is_post {
                super::cluster::MemberOp::Add { peer_urls: urls }
            } else {
                super::cluster::MemberOp::Update {
                    id,
                    peer_urls: urls,
                }
            };
            member_change(core, op).await
        }
        _ => {
            if rest.is_empty() {
                return http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            }
            let Ok(id) = u64::from_str_radix(&rest, 16) else {
                return message_error(StatusCode::NOT_FOUND, &format!("No such member: {rest}"));
            };
            member_change(core, super::cluster::MemberOp::Remove { id }).await
        }
    }
}

/// Go's `time.Duration.String()`.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    fn frac(v: u128, unit: u128) -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let f = format!("{rest:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 1_000_000));
    }
    let secs_ns = ns % 60_000_000_000;
    let mins = ns / 60_000_000_000;
    let (h, m) = (mins / 60, mins % 60);
    let s = format!("{}s", frac(secs_ns, 1_000_000_000));
    if h > 0 {
        format!("{h}h{m}m{s}")
    } else if m > 0 {
        format!("{m}m{s}")
    } else {
        s
    }
}

async fn stats_self(State(state): State<HttpState>, req: Request) -> Resp {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct LeaderInfo {
        leader: String,
        uptime: String,
        start_time: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SelfStats {
        name: String,
        id: String,
        state: &'static str,
        start_time: String,
        leader_info: LeaderInfo,
        recv_append_request_cnt: u64,
        send_append_request_cnt: u64,
    }
    let core = &state.core;
    let metrics = core.node().raft().metrics().borrow().clone();
    let st = match metrics.state {
        openraft::ServerState::Leader => "StateLeader",
        openraft::ServerState::Candidate => "StateCandidate",
        _ => "StateFollower",
    };
    let leader = core.observe_leader();
    let t = now();
    let leader_info = match leader {
        Some((id, since)) => LeaderInfo {
            leader: hex_id(id),
            uptime: go_duration(Duration::from_nanos(
                u64::try_from(t.unix_nanos().saturating_sub(since.unix_nanos())).unwrap_or(0),
            )),
            start_time: since.to_rfc3339_nano(),
        },
        None => LeaderInfo {
            leader: String::new(),
            uptime: String::new(),
            start_time: "0001-01-01T00:00:00Z".into(),
        },
    };
    let s = SelfStats {
        name: core.identity().name.clone(),
        id: hex_id(core.identity().member_id),
        state: st,
        start_time: core.start_time().to_rfc3339_nano(),
        leader_info,
        recv_append_request_cnt: core
            .cluster()
            .map_or(0, |c| c.transport().stats().received_appends()),
        send_append_request_cnt: core
            .cluster()
            .map_or(0, |c| c.transport().stats().sent_appends()),
    };
    response(StatusCode::OK, Some(JSON), to_json(&s))
}

async fn stats_leader(State(state): State<HttpState>, req: Request) -> Resp {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let core = &state.core;
    if !core.node().is_leader() {
        return message_error(StatusCode::FORBIDDEN, "not current leader");
    }
    #[derive(Serialize)]
    struct LeaderStats {
        leader: String,
        followers: std::collections::BTreeMap<String, crate::raft::http_transport::FollowerStats>,
    }
    let me = core.identity().member_id;
    let followers = core
        .node()
        .members()
        .into_keys()
        .filter(|id| *id != me)
        .filter_map(|id| {
            core.cluster()
                .map(|c| (hex_id(id), c.transport().stats().follower(id)))
        })
        .collect();
    let body = to_json(&LeaderStats {
        leader: hex_id(me),
        followers,
    });
    response(StatusCode::OK, Some(JSON), body)
}

async fn stats_store(State(state): State<HttpState>, req: Request) -> Resp {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    response(
        StatusCode::OK,
        Some(JSON),
        to_json(&state.core.store_stats()),
    )
}

async fn machines(State(state): State<HttpState>, req: Request) -> Resp {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return method_not_allowed("GET,HEAD");
    }
    let urls = member_list(&state.core)
        .into_iter()
        .flat_map(|(_, m)| m.client_urls)
        .collect::<Vec<_>>()
        .join(", ");
    let mut r = response(StatusCode::OK, Some(TEXT), urls);
    if req.method() == Method::HEAD {
        *r.body_mut() = Body::empty();
    }
    r
}

async fn version(req: Request) -> Resp {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let body = format!(
        "{{\"etcdserver\":\"{}\",\"etcdcluster\":\"3.4.0\"}}",
        env!("CARGO_PKG_VERSION")
    );
    response(StatusCode::OK, Some(JSON), body)
}

async fn health(State(state): State<HttpState>, req: Request) -> Resp {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    if state.core.healthy().await {
        response(StatusCode::OK, Some(TEXT), "{\"health\":\"true\"}")
    } else {
        response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(TEXT),
            "{\"health\":\"false\"}\n",
        )
    }
}

async fn metrics(State(state): State<HttpState>, req: Request) -> Resp {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let core = &state.core;
    let m = &state.metrics;
    let (watchers, dropped) = core.watcher_counts();
    let mut out = String::new();
    out.push_str(
        "# HELP keelson_kv_http_requests_total Client HTTP requests received, by method.\n",
    );
    out.push_str("# TYPE keelson_kv_http_requests_total counter\n");
    for (name, c) in [
        ("GET", &m.get),
        ("HEAD", &m.head),
        ("PUT", &m.put),
        ("POST", &m.post),
        ("DELETE", &m.delete),
        ("OTHER", &m.other),
    ] {
        out.push_str(&format!(
            "keelson_kv_http_requests_total{{method=\"{name}\"}} {}\n",
            c.load(Ordering::Relaxed)
        ));
    }
    let gauges: [(&str, &str, &str, u64); 6] = [
        (
            "keelson_kv_watchers",
            "gauge",
            "Registered watchers.",
            watchers as u64,
        ),
        (
            "keelson_kv_watchers_dropped_total",
            "counter",
            "Watchers dropped for falling 100 events behind.",
            dropped,
        ),
        (
            "keelson_kv_store_index",
            "gauge",
            "The etcd index of this member.",
            core.etcd_index(),
        ),
        (
            "keelson_kv_raft_index",
            "gauge",
            "The applied Raft index.",
            core.node().committed_index(),
        ),
        (
            "keelson_kv_raft_term",
            "gauge",
            "The current Raft term.",
            core.node().current_term(),
        ),
        (
            "keelson_kv_is_leader",
            "gauge",
            "1 if this member is the leader.",
            u64::from(core.node().is_leader()),
        ),
    ];
    for (name, kind, help, v) in gauges {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    }
    let mut r = response(StatusCode::OK, Some(TEXT), out);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(
            go_duration(Duration::from_nanos(18_611_993_943)),
            "18.611993943s"
        );
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_secs(120)), "2m0s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
