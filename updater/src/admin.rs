//! The update server's JSON admin API, and a client for it.
//!
//! CoreUpdate had `updatectl` and Nebraska a web UI over the same model:
//! packages are uploaded with their signed manifest, groups are created with a
//! rollout policy, and a version is promoted to a group. Keelson exposes that
//! model as a small JSON HTTP API under `/api/` so `keelctl update server`
//! (and any script with curl) can drive it:
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /api/packages` | | `[PackageView]` |
//! | `POST /api/packages` | the payload; header `X-Keelson-Manifest: <base64 manifest>` | `201 PackageView` |
//! | `GET /api/groups` | | `[GroupView]` |
//! | `POST /api/groups` | `{"id":"stable","policy":{…}}` (policy optional) | `201 GroupView` |
//! | `GET /api/groups/{id}` | | `GroupView` |
//! | `PUT /api/groups/{id}/policy` | a [`Policy`] (missing fields take defaults) | `GroupView` |
//! | `POST /api/groups/{id}/promote` | `{"version":"766.3.0"}` | `GroupView` |
//! | `POST /api/groups/{id}/pause`, `/resume` | | `GroupView` |
//! | `GET /api/instances` | | `[Instance]` |
//!
//! Errors are `{"error":"…"}` with 400 (bad input), 404 (no such group or
//! package), 409 (group exists) or 500.

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::rollout::Policy;
use crate::server::{GroupView, Instance, PackageView, ServerError, UpdateServer};
use crate::version::Version;

/// The header carrying the base64 of the signed manifest on upload.
pub const MANIFEST_HEADER: &str = "x-keelson-manifest";

/// `POST /api/groups` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateGroup {
    pub id: String,
    #[serde(default)]
    pub policy: Option<Policy>,
}

/// `POST /api/groups/{id}/promote` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Promote {
    pub version: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        status,
        Json(ErrorBody {
            error: msg.to_string(),
        }),
    )
        .into_response()
}

fn server_error(e: ServerError) -> Response {
    let status = match &e {
        ServerError::NoGroup(_) | ServerError::NoPackage(_) => StatusCode::NOT_FOUND,
        ServerError::GroupExists(_) => StatusCode::CONFLICT,
        ServerError::Io { .. } | ServerError::State { .. } | ServerError::Payload { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        ServerError::NoDataDir => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e)
}

fn reply<T: Serialize>(status: StatusCode, r: Result<T, ServerError>) -> Response {
    match r {
        Ok(v) => (status, Json(v)).into_response(),
        Err(e) => server_error(e),
    }
}

/// Parses a JSON body with a clear error instead of axum's rejection text.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed JSON body: {e}"))
}

pub(crate) fn routes() -> Router<UpdateServer> {
    Router::new()
        .route("/api/instances", get(instances))
        .route("/api/packages", get(packages).post(upload))
        .route("/api/groups", get(groups).post(create_group))
        .route("/api/groups/{id}", get(group))
        .route("/api/groups/{id}/policy", put(set_policy))
        .route("/api/groups/{id}/promote", post(promote))
        .route("/api/groups/{id}/pause", post(pause))
        .route("/api/groups/{id}/resume", post(resume))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
}

/// `GET /health`: the server answers once its state is loaded.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"health": "true"}))
}

/// `GET /metrics`: instances by status and version, and each group's
/// rollout, in Prometheus text format.
async fn metrics(State(srv): State<UpdateServer>) -> Response {
    use keelson_kv::metrics::{Exposition, Kind};
    use std::collections::BTreeMap;
    let mut e = Exposition::new();
    let instances = srv.instances();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_version: BTreeMap<(String, String), usize> = BTreeMap::new();
    for i in &instances {
        let status = serde_json::to_value(i.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *by_status.entry(status).or_default() += 1;
        *by_version
            .entry((i.group.clone(), i.version.clone()))
            .or_default() += 1;
    }
    e.family(
        "keelson_update_server_instances",
        Kind::Gauge,
        "Machines that have checked in, by their last reported status.",
    );
    for (status, n) in &by_status {
        e.sample(
            "keelson_update_server_instances",
            &[("status", status)],
            *n as f64,
        );
    }
    e.family(
        "keelson_update_server_instance_versions",
        Kind::Gauge,
        "Machines by group and running version.",
    );
    for ((group, version), n) in &by_version {
        e.sample(
            "keelson_update_server_instance_versions",
            &[("group", group), ("version", version)],
            *n as f64,
        );
    }
    e.family(
        "keelson_update_server_group_updates_in_progress",
        Kind::Gauge,
        "Updates granted and not yet complete, by group.",
    );
    let groups = srv.groups();
    for g in &groups {
        e.sample(
            "keelson_update_server_group_updates_in_progress",
            &[("group", &g.id)],
            f64::from(g.updates_in_progress),
        );
    }
    e.family(
        "keelson_update_server_group_paused",
        Kind::Gauge,
        "1 when a group's rollout is paused.",
    );
    for g in &groups {
        e.sample(
            "keelson_update_server_group_paused",
            &[("group", &g.id)],
            f64::from(u8::from(g.paused_reason.is_some())),
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            keelson_kv::metrics::CONTENT_TYPE,
        )],
        e.finish(),
    )
        .into_response()
}

async fn instances(State(srv): State<UpdateServer>) -> Json<Vec<Instance>> {
    Json(srv.instances())
}

async fn packages(State(srv): State<UpdateServer>) -> Json<Vec<PackageView>> {
    Json(srv.packages())
}

async fn groups(State(srv): State<UpdateServer>) -> Json<Vec<GroupView>> {
    Json(srv.groups())
}

async fn group(State(srv): State<UpdateServer>, UrlPath(id): UrlPath<String>) -> Response {
    reply(StatusCode::OK, srv.group(&id))
}

async fn create_group(State(srv): State<UpdateServer>, body: axum::body::Bytes) -> Response {
    match parse_json::<CreateGroup>(&body) {
        Ok(c) => reply(StatusCode::CREATED, srv.create_group(&c.id, c.policy)),
        Err(m) => error(StatusCode::BAD_REQUEST, m),
    }
}

async fn set_policy(
    State(srv): State<UpdateServer>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    match parse_json::<Policy>(&body) {
        Ok(p) => reply(StatusCode::OK, srv.set_policy(&id, p)),
        Err(m) => error(StatusCode::BAD_REQUEST, m),
    }
}

async fn promote(
    State(srv): State<UpdateServer>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let p = match parse_json::<Promote>(&body) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    match p.version.parse::<Version>() {
        Ok(v) => reply(StatusCode::OK, srv.promote(&id, &v)),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn pause(State(srv): State<UpdateServer>, UrlPath(id): UrlPath<String>) -> Response {
    reply(StatusCode::OK, srv.set_paused(&id, true))
}

async fn resume(State(srv): State<UpdateServer>, UrlPath(id): UrlPath<String>) -> Response {
    reply(StatusCode::OK, srv.set_paused(&id, false))
}

async fn upload(State(srv): State<UpdateServer>, headers: HeaderMap, req: Request) -> Response {
    let Some(m) = headers.get(MANIFEST_HEADER).and_then(|v| v.to_str().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("missing {MANIFEST_HEADER} header (base64 of the signed manifest)"),
        );
    };
    let Ok(manifest) = base64::engine::general_purpose::STANDARD.decode(m.trim()) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{MANIFEST_HEADER} is not base64"),
        );
    };
    let stream = req.into_body().into_data_stream();
    reply(StatusCode::CREATED, srv.upload(manifest, stream).await)
}

/// Errors talking to the admin API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the update server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the update server said {status}: {message}")]
    Server { status: u16, message: String },
    #[error("unexpected answer from the update server: {0}")]
    BadAnswer(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A client for the admin API (`keelctl update server …`).
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T, AdminError> {
        let resp = req.send().await.map_err(|e| AdminError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| AdminError::Unreachable {
            url,
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(AdminError::Server {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| AdminError::BadAnswer(e.to_string()))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, AdminError> {
        let url = self.url(path);
        self.send(self.http.get(&url), url).await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, AdminError> {
        let url = self.url(path);
        self.send(self.http.post(&url).json(body), url).await
    }

    /// Uploads `payload` with its signed manifest file, streaming the payload.
    pub async fn upload(
        &self,
        payload: &std::path::Path,
        manifest: &std::path::Path,
    ) -> Result<PackageView, AdminError> {
        let file_err = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| AdminError::File { path, source }
        };
        let m = std::fs::read(manifest).map_err(file_err(manifest))?;
        let f = tokio::fs::File::open(payload)
            .await
            .map_err(file_err(payload))?;
        let len = f.metadata().await.map_err(file_err(payload))?.len();
        let stream = tokio_util_stream(f);
        let url = self.url("/api/packages");
        let req = self
            .http
            .post(&url)
            .header(
                MANIFEST_HEADER,
                base64::engine::general_purpose::STANDARD.encode(m),
            )
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        self.send(req, url).await
    }

    /// Every package.
    pub async fn packages(&self) -> Result<Vec<PackageView>, AdminError> {
        self.get("/api/packages").await
    }

    /// Every group.
    pub async fn groups(&self) -> Result<Vec<GroupView>, AdminError> {
        self.get("/api/groups").await
    }

    /// Creates a group.
    pub async fn create_group(
        &self,
        id: &str,
        policy: Option<Policy>,
    ) -> Result<GroupView, AdminError> {
        self.post(
            "/api/groups",
            &CreateGroup {
                id: id.into(),
                policy,
            },
        )
        .await
    }

    /// Replaces a group's policy.
    pub async fn set_policy(&self, id: &str, policy: &Policy) -> Result<GroupView, AdminError> {
        let url = self.url(&format!("/api/groups/{id}/policy"));
        self.send(self.http.put(&url).json(policy), url).await
    }

    /// Reads a group.
    pub async fn group(&self, id: &str) -> Result<GroupView, AdminError> {
        self.get(&format!("/api/groups/{id}")).await
    }

    /// Promotes `version` to group `id`.
    pub async fn promote(&self, id: &str, version: &str) -> Result<GroupView, AdminError> {
        self.post(
            &format!("/api/groups/{id}/promote"),
            &Promote {
                version: version.into(),
            },
        )
        .await
    }

    /// Pauses or resumes a group's updates.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<GroupView, AdminError> {
        let verb = if paused { "pause" } else { "resume" };
        self.post(&format!("/api/groups/{id}/{verb}"), &serde_json::json!({}))
            .await
    }

    /// Every instance.
    pub async fn instances(&self) -> Result<Vec<Instance>, AdminError> {
        self.get("/api/instances").await
    }
}

/// A file as a stream of 1 MiB chunks (bounded memory on upload).
fn tokio_util_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}
