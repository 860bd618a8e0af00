//! An Omaha update server (`keelson update-server`).
//!
//! It keeps CoreUpdate's vocabulary: groups (a track such as `stable`, or any
//! custom id) point at a package version; packages are hosted payloads with
//! their signed manifests; instances are machines, identified by `machineid`
//! (falling back to `bootid`), whose progress is recorded from their events.
//! An instance is offered a package only when its version is older and it is
//! not already mid-update. Payloads are served with HTTP Range support so
//! clients can resume, streamed from disk in bounded chunks.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Serialize;

use crate::omaha::{
    self, event_result, event_type, normalize_app_id, Action as OmahaAction, Actions, ErrorCode,
    EventAck, Manifest, Package, Packages, Ping, Request, Response, ResponseApp,
    UpdateCheckResponse, Url, Urls,
};
use crate::payload::{inspect_manifest, PayloadError, VerifiedManifest};
use crate::version::Version;

/// Errors managing the server's model.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("package manifest: {0}")]
    Manifest(#[from] PayloadError),
    #[error("cannot read payload {path}: {source}")]
    Payload {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("payload {path} is {actual} bytes but its manifest says {expected}")]
    PayloadSize {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("no package with version {0}")]
    NoPackage(Version),
}

/// A hosted package.
#[derive(Debug, Clone)]
pub struct HostedPackage {
    pub manifest: VerifiedManifest,
    pub manifest_bytes: Vec<u8>,
    pub payload: PathBuf,
    /// base64 SHA-1, for the `<package hash=…>` attribute.
    pub sha1: String,
}

/// What the server knows about a machine's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceStatus {
    /// Seen, nothing in progress.
    Idle,
    /// Offered an update.
    Granted,
    Downloading,
    Downloaded,
    /// Installed, waiting for reboot.
    Installed,
    /// Rebooted into the new version.
    Complete,
    /// Reported an error.
    Error,
    /// Booted back into the old version (error 44).
    RolledBack,
}

/// A machine, as the server sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub version: String,
    pub group: String,
    pub status: InstanceStatus,
    /// The version it was last granted.
    pub granted: Option<String>,
    /// The last error code reported (flag bits masked off).
    pub last_error: Option<u32>,
    /// Every event received: (type, result, errorcode).
    pub events: Vec<(u32, u32, Option<u32>)>,
}

/// Injected faults for tests of the client's error handling.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Cut the next payload response after this many bytes (then clear).
    pub cut_payload_after: Option<u64>,
    /// Answer Omaha requests with this HTTP status.
    pub omaha_status: Option<u16>,
    /// Answer Omaha requests with this body instead of a real response.
    pub omaha_body: Option<String>,
}

#[derive(Debug, Default)]
struct Model {
    app_id: String,
    base_url: String,
    groups: BTreeMap<String, Version>,
    packages: BTreeMap<Version, HostedPackage>,
    instances: BTreeMap<String, Instance>,
    faults: Faults,
}

/// The update server's state; cheap to clone, shared with the HTTP handlers.
#[derive(Debug, Clone)]
pub struct UpdateServer {
    inner: Arc<Mutex<Model>>,
}

impl UpdateServer {
    /// A server for `app_id` (with or without braces) whose payload URLs start
    /// with `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(app_id: &str, base_url: &str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Model {
                app_id: normalize_app_id(app_id),
                base_url: base_url.trim_end_matches('/').to_string(),
                ..Default::default()
            })),
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        // A panic while holding the lock leaves plain data; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the public base URL (after binding to a port).
    pub fn set_base_url(&self, base_url: &str) {
        self.model().base_url = base_url.trim_end_matches('/').to_string();
    }

    /// Hosts a payload file with its signed manifest. The payload is not
    /// checked against the manifest (clients verify it, and tests host
    /// tampered payloads on purpose).
    pub fn add_package(
        &self,
        payload: PathBuf,
        manifest_bytes: Vec<u8>,
    ) -> Result<Version, ServerError> {
        let manifest = inspect_manifest(&manifest_bytes)?;
        let io = |source| ServerError::Payload {
            path: payload.clone(),
            source,
        };
        let f = std::fs::File::open(&payload).map_err(io)?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        let mut buf = vec![0u8; 1 << 16];
        let mut reader = std::io::BufReader::new(f);
        loop {
            let n = reader.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        let version = manifest.release.clone();
        self.model().packages.insert(
            version.clone(),
            HostedPackage {
                manifest,
                manifest_bytes,
                payload,
                sha1: base64::engine::general_purpose::STANDARD.encode(ctx.finish()),
            },
        );
        Ok(version)
    }

    /// Points a group (channel) at a package version (promote).
    pub fn set_group(&self, group: &str, version: &Version) -> Result<(), ServerError> {
        let mut m = self.model();
        if !m.packages.contains_key(version) {
            return Err(ServerError::NoPackage(version.clone()));
        }
        m.groups.insert(group.to_string(), version.clone());
        Ok(())
    }

    /// Every instance seen.
    pub fn instances(&self) -> Vec<Instance> {
        self.model().instances.values().cloned().collect()
    }

    /// One instance.
    pub fn instance(&self, id: &str) -> Option<Instance> {
        self.model().instances.get(id).cloned()
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.model().faults = faults;
    }

    /// Handles one Omaha request document; returns the response document.
    pub fn handle_omaha(&self, body: &str) -> Result<Response, omaha::OmahaError> {
        let req = Request::from_xml(body)?;
        let mut m = self.model();
        let mut apps = Vec::new();
        for app in &req.apps {
            apps.push(m.answer(app));
        }
        Ok(Response {
            apps,
            ..Response::for_app(ResponseApp::default())
        })
    }

    /// The HTTP router: `POST /v1/update/`, `GET /packages/{version}/{name}`
    /// (and `….manifest.json`), `GET /api/instances`, `GET /api/groups`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/update", post(omaha_handler))
            .route("/v1/update/", post(omaha_handler))
            .route("/packages/{version}/{name}", get(payload_handler))
            .route("/api/instances", get(instances_handler))
            .route("/api/groups", get(groups_handler))
            .with_state(self.clone())
    }
}

impl Model {
    fn answer(&mut self, app: &omaha::RequestApp) -> ResponseApp {
        let mut out = ResponseApp {
            app_id: app.app_id.clone(),
            status: "ok".into(),
            ..Default::default()
        };
        if app.normalized_app_id() != self.app_id {
            out.status = "error-unknownApplication".into();
            return out;
        }
        let Some(id) = app.instance_id().map(str::to_string) else {
            out.status = "error-invalidAppId".into();
            return out;
        };
        let inst = self
            .instances
            .entry(id.clone())
            .or_insert_with(|| Instance {
                id,
                version: app.version.clone(),
                group: app.track.clone(),
                status: InstanceStatus::Idle,
                granted: None,
                last_error: None,
                events: vec![],
            });
        inst.version = app.version.clone();
        inst.group = app.track.clone();
        if app.ping.is_some() {
            out.ping = Some(Ping {
                active: None,
                status: Some("ok".into()),
            });
        }
        for ev in &app.events {
            let code = ev.error_code.map(|c| ErrorCode(c).base().0);
            inst.events.push((ev.event_type, ev.event_result, code));
            inst.status = match (ev.event_type, ev.event_result) {
                (event_type::UPDATE_DOWNLOAD_STARTED, _) => InstanceStatus::Downloading,
                (event_type::UPDATE_DOWNLOAD_FINISHED, _) => InstanceStatus::Downloaded,
                (event_type::UPDATE_COMPLETE, event_result::SUCCESS) => InstanceStatus::Installed,
                (event_type::UPDATE_COMPLETE, event_result::SUCCESS_REBOOT) => {
                    InstanceStatus::Complete
                }
                (_, event_result::ERROR) if code == Some(ErrorCode::ROLLBACK.0) => {
                    InstanceStatus::RolledBack
                }
                (_, event_result::ERROR) => InstanceStatus::Error,
                _ => inst.status,
            };
            if ev.event_result == event_result::ERROR {
                inst.last_error = code;
            }
            out.events.push(EventAck {
                status: "ok".into(),
            });
        }
        if app.update_check.is_some() {
            let inst_status = inst.status;
            let inst_version = app.version.parse::<Version>().ok();
            let offer = self
                .groups
                .get(&app.track)
                .and_then(|v| self.packages.get(v))
                .filter(|p| {
                    inst_version
                        .as_ref()
                        .is_some_and(|iv| *iv < p.manifest.release)
                })
                .filter(|_| {
                    !matches!(
                        inst_status,
                        InstanceStatus::Downloading
                            | InstanceStatus::Downloaded
                            | InstanceStatus::Installed
                    )
                });
            out.update_check = Some(match offer {
                None => UpdateCheckResponse {
                    status: "noupdate".into(),
                    ..Default::default()
                },
                Some(p) => {
                    let v = p.manifest.release.to_string();
                    if let Some(inst) = app.instance_id().and_then(|i| self.instances.get_mut(i)) {
                        inst.status = InstanceStatus::Granted;
                        inst.granted = Some(v.clone());
                    }
                    UpdateCheckResponse {
                        status: "ok".into(),
                        poll_interval: None,
                        urls: Some(Urls {
                            urls: vec![Url {
                                codebase: format!("{}/packages/{v}/", self.base_url),
                            }],
                        }),
                        manifest: Some(Manifest {
                            version: v,
                            packages: Packages {
                                packages: vec![Package {
                                    hash: p.sha1.clone(),
                                    name: p.manifest.name.clone(),
                                    size: p.manifest.length.to_string(),
                                    required: Some("false".into()),
                                }],
                            },
                            actions: Actions {
                                actions: vec![OmahaAction {
                                    event: "postinstall".into(),
                                    sha256: Some(omaha::encode_sha256(&p.manifest.sha256)),
                                    needs_admin: Some("false".into()),
                                    is_delta: Some("false".into()),
                                    disable_payload_backoff: Some("true".into()),
                                    keelson_manifest: Some(
                                        base64::engine::general_purpose::STANDARD
                                            .encode(&p.manifest_bytes),
                                    ),
                                    ..Default::default()
                                }],
                            },
                        }),
                    }
                }
            });
        }
        out
    }
}

fn xml_reply(status: StatusCode, body: String) -> HttpResponse {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn omaha_handler(State(srv): State<UpdateServer>, body: String) -> HttpResponse {
    let faults = srv.model().faults.clone();
    if let Some(s) = faults.omaha_status {
        return xml_reply(
            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            String::new(),
        );
    }
    if let Some(b) = faults.omaha_body {
        return xml_reply(StatusCode::OK, b);
    }
    match srv.handle_omaha(&body).and_then(|r| r.to_xml()) {
        Ok(xml) => xml_reply(StatusCode::OK, xml),
        Err(e) => {
            tracing::warn!(error = %e, "bad Omaha request");
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
    }
}

async fn instances_handler(State(srv): State<UpdateServer>) -> Json<Vec<Instance>> {
    Json(srv.instances())
}

async fn groups_handler(State(srv): State<UpdateServer>) -> Json<BTreeMap<String, String>> {
    Json(
        srv.model()
            .groups
            .iter()
            .map(|(g, v)| (g.clone(), v.to_string()))
            .collect(),
    )
}

fn parse_range(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = v.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    if !end.is_empty() {
        return None; // only open-ended ranges, which is what resuming sends
    }
    start.parse().ok()
}

async fn payload_handler(
    State(srv): State<UpdateServer>,
    UrlPath((version, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> HttpResponse {
    let Ok(version) = version.parse::<Version>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (pkg, cut) = {
        let mut m = srv.model();
        let Some(p) = m.packages.get(&version).cloned() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        (p, m.faults.cut_payload_after.take())
    };
    if name == format!("{}.manifest.json", pkg.manifest.name) {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            pkg.manifest_bytes.clone(),
        )
            .into_response();
    }
    if name != pkg.manifest.name {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut file = match std::fs::File::open(&pkg.payload) {
        Ok(f) => f,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = parse_range(&headers);
    let from = start.unwrap_or(0);
    if from >= len && start.is_some() {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response();
    }
    if file.seek(SeekFrom::Start(from)).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body_len = len - from;
    let limit = cut.map(|c| c.min(body_len)).unwrap_or(body_len);
    let stream = futures::stream::unfold(
        (file, limit, cut.is_some()),
        |(mut f, left, cut)| async move {
            if left == 0 {
                if cut {
                    // Drop the connection mid-body, as a flaky network would.
                    return Some((Err(std::io::Error::other("injected cut")), (f, 0, false)));
                }
                return None;
            }
            let mut buf = vec![0u8; usize::try_from(left).unwrap_or(1 << 16).min(1 << 16)];
            match f.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), (f, left - n as u64, cut)))
                }
                Err(e) => Some((Err(e), (f, 0, false))),
            }
        },
    );
    let mut resp = HttpResponse::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, body_len.into());
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    if start.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = format!("bytes {from}-{}/{len}", len - 1).parse() {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// Serves the router on `listener` until the future is dropped.
pub async fn serve(server: UpdateServer, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, server.router()).await
}
