//! fleet's HTTP API v1 (scheduler.md §11), served by every fleetd.
//!
//! fleetctl's default driver and scripts (`curl --unix-socket
//! /var/run/fleet.sock http://x/fleet/v1/units`) talk to this API rather than
//! to the kv, so its JSON shapes, status codes and pagination tokens follow
//! fleet's exactly. The handlers are thin: every operation is a
//! [`FleetClient`] call. Keelson adds one resource, `GET
//! /fleet/v1/keelson/journal/<unit>`, so that `fleetctl status`/`journal`
//! reach the agent that runs a unit through the cluster instead of over SSH:
//! each fleetd publishes its API address at `<prefix>keelson/api/<machine>`,
//! and a request for a unit running elsewhere is forwarded there.

pub mod client;

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use keelson_kv::client::KvClient;
use keelson_unitfile::{UnitName, UnitOption};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::{FleetClient, MachineInfo, SubmitOptions, UnitFileInfo, UnitStateInfo};
use crate::error::SchedulerError;
use crate::init::InitSystem;
use crate::keys::Keys;
use crate::model::DesiredState;

pub use client::{ApiClient, ApiError, RemoteFleet};

/// fleet's default page size (`token_limit`).
pub const DEFAULT_TOKEN_LIMIT: u16 = 100;

/// The version fleetd reports in `Server:`.
pub const FLEETD_VERSION: &str = "1.0.0";

/// The machine this API runs on, for the journal resource.
#[derive(Clone)]
pub struct LocalAgent {
    pub machine_id: String,
    pub init: Arc<dyn InitSystem>,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    client: Arc<FleetClient>,
    local: Option<LocalAgent>,
    token_limit: u16,
}

impl ApiState {
    pub fn new(client: Arc<FleetClient>, local: Option<LocalAgent>) -> Self {
        ApiState {
            client,
            local,
            token_limit: DEFAULT_TOKEN_LIMIT,
        }
    }

    /// Page size (fleetd's `token_limit`).
    pub fn with_token_limit(mut self, limit: u16) -> Self {
        self.token_limit = limit.max(1);
        self
    }
}

/// The kv key where a machine's API address is published.
pub fn endpoint_key(keys: &Keys, machine: &str) -> String {
    format!("{}keelson/api/{machine}", keys.prefix())
}

/// Publish this machine's API address (`unix:///path` or `http://addr`) so
/// other fleetds can forward journal requests to it.
pub async fn publish_endpoint(
    kv: &Arc<dyn KvClient>,
    keys: &Keys,
    machine: &str,
    url: &str,
) -> Result<(), SchedulerError> {
    kv.set(&endpoint_key(keys, machine), url, Default::default())
        .await?;
    Ok(())
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code.as_u16(), "message": message.into()}});
    (code, Json(body)).into_response()
}

fn sched_error(e: SchedulerError) -> Response {
    match e {
        SchedulerError::UnitNotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        SchedulerError::Kv(_) | SchedulerError::Init(_) | SchedulerError::Malformed { .. } => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        _ => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// The router: `/fleet/v1` and its alias `/v1-alpha`.
pub fn router(state: ApiState) -> Router {
    let not_allowed = || async {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET, PUT and DELETE supported against this resource",
        )
    };
    let v1 = Router::new()
        .route("/units", get(list_units).fallback(not_allowed))
        .route(
            "/units/{name}",
            get(get_unit)
                .put(put_unit)
                .delete(delete_unit)
                .fallback(not_allowed),
        )
        .route("/state", get(list_states).fallback(not_allowed))
        .route("/state/{name}", get(get_state).fallback(not_allowed))
        .route(
            "/machines",
            get(list_machines)
                .patch(patch_machines)
                .fallback(not_allowed),
        )
        .route("/discovery", get(discovery).fallback(not_allowed))
        .route("/discovery.json", get(discovery).fallback(not_allowed))
        .route(
            "/keelson/journal/{name}",
            get(journal).fallback(not_allowed),
        )
        .route(
            "/keelson/drain/{machine}",
            get(get_drain)
                .put(put_drain)
                .delete(delete_drain)
                .fallback(not_allowed),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") });
    Router::new()
        .nest("/fleet/v1", v1.clone())
        .nest("/v1-alpha", v1)
        .route("/metrics", get(metrics).fallback(not_allowed))
        .route("/health", get(health).fallback(not_allowed))
        .route(
            "/",
            axum::routing::any(|| async {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::map_response(server_header))
        .with_state(state)
}

async fn server_header(mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("fleetd/{FLEETD_VERSION}")) {
        resp.headers_mut().insert(header::SERVER, v);
    }
    resp
}

/// Serve on a unix socket (a stale socket file is replaced; mode 0660).
pub async fn serve_unix(
    path: &Path,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serve on TCP.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

// ---- wire shapes -------------------------------------------------------

/// One option of a unit, as the API sends it (`value` omitted when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOption {
    pub section: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// fleet's Unit entity, plus Keelson's `reason`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUnit {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<WireOption>,
    #[serde(
        default,
        rename = "desiredState",
        skip_serializing_if = "String::is_empty"
    )]
    pub desired_state: String,
    #[serde(
        default,
        rename = "currentState",
        skip_serializing_if = "String::is_empty"
    )]
    pub current_state: String,
    #[serde(
        default,
        rename = "machineID",
        skip_serializing_if = "String::is_empty"
    )]
    pub machine_id: String,
    /// Keelson: why the engine could not place the unit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// fleet's UnitState entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUnitState {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(
        default,
        rename = "machineID",
        skip_serializing_if = "String::is_empty"
    )]
    pub machine_id: String,
    #[serde(
        default,
        rename = "systemdLoadState",
        skip_serializing_if = "String::is_empty"
    )]
    pub load: String,
    #[serde(
        default,
        rename = "systemdActiveState",
        skip_serializing_if = "String::is_empty"
    )]
    pub active: String,
    #[serde(
        default,
        rename = "systemdSubState",
        skip_serializing_if = "String::is_empty"
    )]
    pub sub: String,
}

/// fleet's Machine entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMachine {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(
        default,
        rename = "primaryIP",
        skip_serializing_if = "String::is_empty"
    )]
    pub primary_ip: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Keelson's journal answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireJournal {
    #[serde(default, rename = "machineID")]
    pub machine_id: String,
    #[serde(default)]
    pub lines: Vec<String>,
}

pub(crate) fn wire_unit(u: &UnitFileInfo) -> WireUnit {
    let desired = u.desired.map(|d| d.as_str().to_owned()).unwrap_or_default();
    WireUnit {
        name: u.name.clone(),
        options: u
            .options
            .iter()
            .map(|o| WireOption {
                section: o.section.clone(),
                name: o.name.clone(),
                value: o.value.clone(),
            })
            .collect(),
        current_state: if u.global {
            desired.clone()
        } else {
            u.current.map(|d| d.as_str().to_owned()).unwrap_or_default()
        },
        desired_state: desired,
        machine_id: u.target.clone().unwrap_or_default(),
        reason: u.reason.clone().unwrap_or_default(),
    }
}

pub(crate) fn wire_state(s: &UnitStateInfo) -> WireUnitState {
    WireUnitState {
        name: s.name.clone(),
        hash: s.hash.clone(),
        machine_id: s.machine_id.clone(),
        load: s.load.clone(),
        active: s.active.clone(),
        sub: s.sub.clone(),
    }
}

pub(crate) fn wire_machine(m: &MachineInfo) -> WireMachine {
    WireMachine {
        id: m.id.clone(),
        primary_ip: m.public_ip.clone(),
        metadata: m.metadata.clone(),
    }
}

/// Options back into unit file text (fleet's serialization).
pub fn options_to_text(options: &[WireOption]) -> String {
    let opts: Vec<UnitOption> = options
        .iter()
        .map(|o| UnitOption {
            section: o.section.clone(),
            name: o.name.clone(),
            value: o.value.clone(),
            line: 0,
            column: 0,
        })
        .collect();
    keelson_unitfile::normalize(&opts)
}

// ---- pagination ---------------------------------------------------------

/// fleet's page token: URL-safe base64 of limit and page, u16 little-endian.
pub fn encode_token(limit: u16, page: u16) -> String {
    let mut b = Vec::with_capacity(4);
    b.extend_from_slice(&limit.to_le_bytes());
    b.extend_from_slice(&page.to_le_bytes());
    base64::engine::general_purpose::URL_SAFE.encode(b)
}

/// Decode and check a token against the server's limit; returns the page.
pub fn decode_token(token: &str, limit: u16) -> Result<u16, String> {
    let b = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|e| format!("invalid token: {e}"))?;
    if b.len() != 4 {
        return Err("invalid token: wrong length".into());
    }
    let l = u16::from_le_bytes([b[0], b[1]]);
    let p = u16::from_le_bytes([b[2], b[3]]);
    if l != limit {
        return Err(format!("token limit must be {limit}"));
    }
    if p == 0 {
        return Err("token page must be greater than zero".into());
    }
    Ok(p)
}

fn paginate<T>(
    items: Vec<T>,
    token: Option<&str>,
    limit: u16,
) -> Result<(Vec<T>, Option<String>), String> {
    let page = match token {
        None | Some("") => 1,
        Some(t) => decode_token(t, limit)?,
    };
    let start = (page as usize - 1) * limit as usize;
    let more = items.len() > start + limit as usize;
    let out: Vec<T> = items.into_iter().skip(start).take(limit as usize).collect();
    Ok((out, more.then(|| encode_token(limit, page + 1))))
}

fn page_body(key: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut m = serde_json::Map::new();
    if !items.is_empty() {
        m.insert(key.to_owned(), Value::Array(items));
    }
    if let Some(n) = next {
        m.insert("nextPageToken".into(), Value::String(n));
    }
    Value::Object(m)
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
    #[serde(rename = "machineID")]
    machine_id: Option<String>,
    #[serde(rename = "unitName")]
    unit_name: Option<String>,
}

// ---- handlers -----------------------------------------------------------

async fn list_units(State(st): State<ApiState>, Query(q): Query<PageQuery>) -> Response {
    let units: Vec<Value> = st
        .client
        .list_unit_files()
        .iter()
        .map(|u| serde_json::to_value(wire_unit(u)).unwrap_or(Value::Null))
        .collect();
    match paginate(units, q.next_page_token.as_deref(), st.token_limit) {
        Ok((items, next)) => Json(page_body("units", items, next)).into_response(),
        Err(m) => error(StatusCode::BAD_REQUEST, m),
    }
}

async fn get_unit(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> Response {
    match st.client.unit(&name) {
        Some(u) => Json(wire_unit(&u)).into_response(),
        None => error(StatusCode::NOT_FOUND, "unit does not exist"),
    }
}

fn json_content_type(headers: &HeaderMap) -> bool {
    let all: Vec<_> = headers.get_all(header::CONTENT_TYPE).iter().collect();
    if all.len() != 1 {
        return false;
    }
    all[0]
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn put_unit(
    State(st): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !json_content_type(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    if let Err(e) = UnitName::parse(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid unit name {name:?}: {e}"),
        );
    }
    let su: WireUnit = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unable to decode body: {e}"),
            )
        }
    };
    if !su.name.is_empty() && su.name != name {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "name in URL {name:?} differs from unit name in request body {:?}",
                su.name
            ),
        );
    }
    let desired = if su.desired_state.is_empty() {
        None
    } else {
        match su.desired_state.parse::<DesiredState>() {
            Ok(d) => Some(d),
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    };
    let existing = st.client.unit(&name);
    let text = (!su.options.is_empty()).then(|| options_to_text(&su.options));
    let same = match (&existing, &text) {
        (Some(e), Some(t)) => {
            keelson_unitfile::Unit::parse(t, keelson_unitfile::Mode::Fleet, Some(&name))
                .is_ok_and(|u| u.hash().to_string() == e.hash)
        }
        (Some(_), None) => true,
        _ => false,
    };
    if existing.is_some() && same {
        let Some(d) = desired else {
            return error(
                StatusCode::CONFLICT,
                "must provide DesiredState to update existing unit",
            );
        };
        return match st.client.set_desired(&name, d).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => sched_error(e),
        };
    }
    let Some(text) = text else {
        return error(
            StatusCode::CONFLICT,
            "unit does not exist and options field empty",
        );
    };
    let d = desired.unwrap_or(DesiredState::Inactive);
    if d != DesiredState::Inactive && UnitName::parse(&name).is_ok_and(|n| n.is_template()) {
        return error(StatusCode::BAD_REQUEST, "cannot activate template");
    }
    let opts = SubmitOptions {
        replace: true,
        allow_unknown_x_fleet: false,
    };
    if let Err(e) = st.client.submit(&name, &text, opts).await {
        return sched_error(e);
    }
    if let Err(e) = st.client.set_desired(&name, d).await {
        return sched_error(e);
    }
    StatusCode::CREATED.into_response()
}

async fn delete_unit(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> Response {
    match st.client.destroy(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sched_error(e),
    }
}

async fn list_states(State(st): State<ApiState>, Query(q): Query<PageQuery>) -> Response {
    let states: Vec<Value> = st
        .client
        .list_units()
        .iter()
        .filter(|s| q.machine_id.as_ref().is_none_or(|m| &s.machine_id == m))
        .filter(|s| q.unit_name.as_ref().is_none_or(|u| &s.name == u))
        .map(|s| serde_json::to_value(wire_state(s)).unwrap_or(Value::Null))
        .collect();
    match paginate(states, q.next_page_token.as_deref(), st.token_limit) {
        Ok((items, next)) => Json(page_body("states", items, next)).into_response(),
        Err(m) => error(StatusCode::BAD_REQUEST, m),
    }
}

async fn get_state(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> Response {
    match st.client.list_units().iter().find(|s| s.name == name) {
        Some(s) => Json(wire_state(s)).into_response(),
        None => error(StatusCode::NOT_FOUND, "unit state does not exist"),
    }
}

async fn list_machines(State(st): State<ApiState>, Query(q): Query<PageQuery>) -> Response {
    let ms: Vec<Value> = st
        .client
        .list_machines()
        .iter()
        .map(|m| serde_json::to_value(wire_machine(m)).unwrap_or(Value::Null))
        .collect();
    match paginate(ms, q.next_page_token.as_deref(), st.token_limit) {
        Ok((items, next)) => Json(page_body("machines", items, next)).into_response(),
        Err(m) => error(StatusCode::BAD_REQUEST, m),
    }
}

#[derive(Deserialize)]
struct PatchOp {
    #[serde(default)]
    op: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    value: Option<Value>,
}

/// Validate one metadata patch: `(machine, key, Some(value) | None)`.
fn check_patch(op: &PatchOp) -> Result<(String, String, Option<String>), &'static str> {
    if !matches!(op.op.as_str(), "add" | "remove" | "replace") {
        return Err("invalid op: expect add, remove, or replace");
    }
    let parts: Vec<&str> = op.path.split('/').collect();
    let ok_name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    let (machine, key) = match parts.as_slice() {
        ["", m, "metadata", k] if !m.is_empty() && ok_name(k) => (*m, *k),
        _ => return Err("machine metadata path invalid"),
    };
    if op.op == "remove" {
        return Ok((machine.into(), key.into(), None));
    }
    match &op.value {
        Some(Value::String(v)) if !v.is_empty() => {
            Ok((machine.into(), key.into(), Some(v.clone())))
        }
        _ => Err("invalid value: add and replace require a value"),
    }
}

async fn patch_machines(State(st): State<ApiState>, body: axum::body::Bytes) -> Response {
    let ops: Vec<PatchOp> = match serde_json::from_slice(&body) {
        Ok(o) => o,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unable to decode body: {e}"),
            )
        }
    };
    let mut checked = Vec::new();
    for op in &ops {
        match check_patch(op) {
            Ok(c) => checked.push(c),
            Err(m) => return error(StatusCode::BAD_REQUEST, m),
        }
    }
    for (m, k, v) in checked {
        if let Err(e) = st.client.set_machine_metadata(&m, &k, v.as_deref()).await {
            return sched_error(e);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Why a machine ID is refused by the drain resource (fleet's IDs are hex,
/// but `--machine-id` may be any alphanumeric string).
fn bad_machine(m: &str) -> Option<Response> {
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            format!("invalid machine ID {m:?}: expected letters and digits"),
        ));
    }
    None
}

/// `GET /fleet/v1/keelson/drain/<machine>`: `{"machineID":…,"draining":bool}`.
async fn get_drain(State(st): State<ApiState>, UrlPath(machine): UrlPath<String>) -> Response {
    if let Some(r) = bad_machine(&machine) {
        return r;
    }
    let draining = st.client.is_draining(&machine);
    Json(json!({"machineID": machine, "draining": draining})).into_response()
}

/// `PUT`: mark the machine draining; the engine moves its units away.
async fn put_drain(State(st): State<ApiState>, UrlPath(machine): UrlPath<String>) -> Response {
    if let Some(r) = bad_machine(&machine) {
        return r;
    }
    match st.client.set_draining(&machine, true).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sched_error(e),
    }
}

/// `DELETE`: lift the mark (nothing moves back).
async fn delete_drain(State(st): State<ApiState>, UrlPath(machine): UrlPath<String>) -> Response {
    if let Some(r) = bad_machine(&machine) {
        return r;
    }
    match st.client.set_draining(&machine, false).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sched_error(e),
    }
}

#[derive(Deserialize)]
struct JournalQuery {
    lines: Option<usize>,
    #[serde(rename = "machineID")]
    machine_id: Option<String>,
}

/// Which machine runs `name`: the target, else the first machine reporting it.
fn machine_of(client: &FleetClient, name: &str) -> Option<String> {
    client.unit(name).and_then(|u| u.target).or_else(|| {
        client
            .list_units()
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.machine_id)
    })
}

async fn journal(
    State(st): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<JournalQuery>,
) -> Response {
    let lines = q.lines.unwrap_or(10);
    let Some(machine) = q.machine_id.or_else(|| machine_of(&st.client, &name)) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("Unit {name} does not appear to be loaded."),
        );
    };
    if let Some(local) = st.local.as_ref().filter(|l| l.machine_id == machine) {
        return match local.init.journal(&name, lines) {
            Ok(lines) => Json(WireJournal {
                machine_id: machine,
                lines,
            })
            .into_response(),
            Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
        };
    }
    // Forward to the machine that runs it.
    let registry = st.client.registry();
    let key = endpoint_key(registry.keys(), &machine);
    let url = match registry.kv().get(&key, Default::default()).await {
        Ok(r) => r.node().and_then(|n| n.value.clone()),
        Err(_) => None,
    };
    let Some(url) = url else {
        return error(
            StatusCode::BAD_GATEWAY,
            format!("machine {machine} has not published an API endpoint"),
        );
    };
    let remote = match ApiClient::new(&url) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let path = format!("/fleet/v1/keelson/journal/{name}?lines={lines}&machineID={machine}");
    match remote.request("GET", &path, None).await {
        Ok((code, body)) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn discovery() -> Response {
    Json(discovery_document()).into_response()
}

/// The Google API discovery document of fleet's v1 API.
pub fn discovery_document() -> Value {
    let opt = json!({"type":"object","properties":{
        "section":{"type":"string"},"name":{"type":"string"},"value":{"type":"string"}}});
    json!({
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "fleet:v1",
        "name": "schema",
        "version": "v1",
        "title": "fleet API",
        "description": "",
        "documentationLink": "http://github.com/coreos/fleet",
        "protocol": "rest",
        "labels": [],
        "baseUrl": "$ENDPOINT/fleet/v1/",
        "basePath": "/fleet/v1/",
        "rootUrl": "$ENDPOINT/",
        "servicePath": "fleet/v1/",
        "batchPath": "batch",
        "parameters": {"alt": {"type": "string", "description": "Data format for the response.",
            "default": "json", "enum": ["json"], "location": "query"}},
        "auth": {},
        "schemas": {
            "Machine": {"id": "Machine", "type": "object", "properties": {
                "id": {"type": "string"}, "primaryIP": {"type": "string"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "MachinePage": {"id": "MachinePage", "type": "object", "properties": {
                "machines": {"type": "array", "items": {"$ref": "Machine"}},
                "nextPageToken": {"type": "string"}}},
            "UnitOption": opt,
            "Unit": {"id": "Unit", "type": "object", "properties": {
                "name": {"type": "string"},
                "options": {"type": "array", "items": {"$ref": "UnitOption"}},
                "desiredState": {"type": "string", "enum": ["inactive", "loaded", "launched"]},
                "currentState": {"type": "string", "enum": ["inactive", "loaded", "launched"]},
                "machineID": {"type": "string"}}},
            "UnitPage": {"id": "UnitPage", "type": "object", "properties": {
                "units": {"type": "array", "items": {"$ref": "Unit"}},
                "nextPageToken": {"type": "string"}}},
            "UnitState": {"id": "UnitState", "type": "object", "properties": {
                "name": {"type": "string"}, "hash": {"type": "string"},
                "machineID": {"type": "string"}, "systemdLoadState": {"type": "string"},
                "systemdActiveState": {"type": "string"}, "systemdSubState": {"type": "string"}}},
            "UnitStatePage": {"id": "UnitStatePage", "type": "object", "properties": {
                "states": {"type": "array", "items": {"$ref": "UnitState"}},
                "nextPageToken": {"type": "string"}}}
        },
        "resources": {
            "Machines": {"methods": {
                "List": {"id": "fleet.Machine.List", "path": "machines", "httpMethod": "GET",
                    "parameters": {"nextPageToken": {"type": "string", "location": "query"}},
                    "response": {"$ref": "MachinePage"}}}},
            "Units": {"methods": {
                "List": {"id": "fleet.Unit.List", "path": "units", "httpMethod": "GET",
                    "response": {"$ref": "UnitPage"}},
                "Get": {"id": "fleet.Unit.Get", "path": "units/{unitName}", "httpMethod": "GET",
                    "response": {"$ref": "Unit"}},
                "Delete": {"id": "fleet.Unit.Delete", "path": "units/{unitName}",
                    "httpMethod": "DELETE"},
                "Set": {"id": "fleet.Unit.Set", "path": "units/{unitName}", "httpMethod": "PUT",
                    "request": {"$ref": "Unit"}}}},
            "UnitState": {"methods": {
                "List": {"id": "fleet.UnitState.List", "path": "state", "httpMethod": "GET",
                    "response": {"$ref": "UnitStatePage"}}}}
        }
    })
}

/// `GET /metrics`: the cluster as this fleetd's registry sees it, and this
/// machine's units, in Prometheus text format.
async fn metrics(State(st): State<ApiState>) -> Response {
    use keelson_kv::metrics::{Exposition, Kind};
    use std::collections::BTreeMap;
    let mut e = Exposition::new();
    let (machines, index, leader, draining) = st.client.registry().with(|c| {
        (
            c.machines.len(),
            c.index,
            c.lease.as_ref().map(|(l, _)| l.machine_id.clone()),
            c.draining.len(),
        )
    });
    e.single(
        "keelson_fleet_machines",
        Kind::Gauge,
        "Machines registered in the cluster.",
        machines as f64,
    );
    e.single(
        "keelson_fleet_machines_draining",
        Kind::Gauge,
        "Machines marked draining.",
        draining as f64,
    );
    e.single(
        "keelson_fleet_registry_index",
        Kind::Gauge,
        "The kv index the registry view reflects.",
        index as f64,
    );
    let me = st.local.as_ref().map(|l| l.machine_id.clone());
    e.single(
        "keelson_fleet_engine_leader",
        Kind::Gauge,
        "1 when this machine holds the engine lease.",
        f64::from(u8::from(leader.is_some() && leader == me)),
    );
    let mut desired: BTreeMap<&'static str, usize> =
        [("inactive", 0), ("loaded", 0), ("launched", 0)].into();
    let files = st.client.list_unit_files();
    for f in &files {
        if let Some(d) = f.desired {
            *desired.entry(d.as_str()).or_default() += 1;
        }
    }
    e.family(
        "keelson_fleet_units",
        Kind::Gauge,
        "Units in the registry, by desired state.",
    );
    for (state, n) in &desired {
        e.sample("keelson_fleet_units", &[("desired", state)], *n as f64);
    }
    let mut active: BTreeMap<String, usize> = BTreeMap::new();
    for u in st.client.list_units() {
        *active.entry(u.active).or_default() += 1;
    }
    e.family(
        "keelson_fleet_unit_states",
        Kind::Gauge,
        "Reported unit states across machines, by active state.",
    );
    for (state, n) in &active {
        e.sample("keelson_fleet_unit_states", &[("active", state)], *n as f64);
    }
    if let Some(local) = &st.local {
        let mut here: BTreeMap<String, usize> = BTreeMap::new();
        for u in local.init.units() {
            *here.entry(u.state.active.clone()).or_default() += 1;
        }
        e.family(
            "keelson_fleet_local_units",
            Kind::Gauge,
            "Units loaded on this machine, by active state.",
        );
        for (state, n) in &here {
            e.sample("keelson_fleet_local_units", &[("active", state)], *n as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, keelson_kv::metrics::CONTENT_TYPE)],
        e.finish(),
    )
        .into_response()
}

/// `GET /health`: `{"health":"true"}` while the kv that holds the registry
/// answers, 503 with the reason otherwise (etcd's health shape).
async fn health(State(st): State<ApiState>) -> Response {
    let kv = st.client.registry().kv().clone();
    let key = st.client.registry().keys().prefix().to_owned();
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        kv.get(&key, Default::default()),
    )
    .await;
    match probe {
        Ok(Ok(_)) => Json(json!({"health": "true"})).into_response(),
        Ok(Err(e)) if e.v2().is_some() => Json(json!({"health": "true"})).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"health": "false", "reason": e.to_string()})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"health": "false", "reason": "the kv did not answer within 3s"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_checked() {
        let t = encode_token(100, 2);
        assert_eq!(t, "ZAACAA==");
        assert_eq!(decode_token(&t, 100), Ok(2));
        assert_eq!(
            decode_token(&encode_token(50, 2), 100).unwrap_err(),
            "token limit must be 100"
        );
        assert_eq!(
            decode_token(&encode_token(100, 0), 100).unwrap_err(),
            "token page must be greater than zero"
        );
        assert!(decode_token("!!", 100).is_err());
    }

    #[test]
    fn patch_validation() {
        let p = |op: &str, path: &str, v: Option<&str>| PatchOp {
            op: op.into(),
            path: path.into(),
            value: v.map(|s| Value::String(s.into())),
        };
        assert!(check_patch(&p("add", "/m1/metadata/role", Some("web"))).is_ok());
        assert_eq!(
            check_patch(&p("move", "/m1/metadata/role", Some("x"))).unwrap_err(),
            "invalid op: expect add, remove, or replace"
        );
        assert_eq!(
            check_patch(&p("add", "/m1/meta/role", Some("x"))).unwrap_err(),
            "machine metadata path invalid"
        );
        assert_eq!(
            check_patch(&p("replace", "/m1/metadata/role", None)).unwrap_err(),
            "invalid value: add and replace require a value"
        );
        assert_eq!(
            check_patch(&p("remove", "/m1/metadata/role", None)).unwrap(),
            ("m1".into(), "role".into(), None)
        );
    }
}
