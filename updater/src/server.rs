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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde::Serialize;

use crate::omaha::{
    self, event_result, event_type, normalize_app_id, Action as OmahaAction, Actions, ErrorCode,
    EventAck, Manifest, Package, Packages, Ping, Request, Response, ResponseApp,
    UpdateCheckResponse, Url, Urls,
};
use crate::payload::{inspect_manifest, PayloadError, TrustedKeys, VerifiedManifest};
use crate::rollout::{Decision, GroupRollout, Outcome, Policy, PolicyError, Refusal};
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
    #[error("no package with version {0}; upload it first")]
    NoPackage(Version),
    #[error("no group {0:?}; create it first")]
    NoGroup(String),
    #[error("group {0:?} already exists")]
    GroupExists(String),
    #[error("bad group id {0:?}: use letters, digits, '-', '_' and '.'")]
    BadGroupId(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("rejected upload: {0}")]
    Upload(String),
    #[error("the server has no data directory; start it with --data-dir to accept uploads")]
    NoDataDir,
    #[error("I/O error {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("cannot load server state {path}: {reason}; fix or move the file")]
    State { path: PathBuf, reason: String },
}

impl ServerError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| ServerError::Io { context, source }
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    /// Newer version available, but the group's rollout policy refused it for now.
    OnHold,
}

/// A machine, as the server sees it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    /// Why the last check was refused by the rollout policy.
    pub hold_reason: Option<Refusal>,
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
    groups: BTreeMap<String, GroupRollout>,
    packages: BTreeMap<Version, HostedPackage>,
    instances: BTreeMap<String, Instance>,
    faults: Faults,
    data_dir: Option<PathBuf>,
    upload_keys: Option<TrustedKeys>,
}

/// A group as the admin API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct GroupView {
    pub id: String,
    pub version: Option<String>,
    pub policy: Policy,
    pub paused_reason: Option<String>,
    pub updates_in_progress: u32,
    pub updates_timed_out: u32,
    pub updates_attempted: u32,
}

/// A package as the admin API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PackageView {
    pub version: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Serialize, serde::Deserialize, Default)]
struct SavedState {
    groups: BTreeMap<String, GroupRollout>,
}

const STATE_FILE: &str = "state.json";
const PACKAGES_DIR: &str = "packages";

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

fn group_view(id: &str, g: &GroupRollout) -> GroupView {
    GroupView {
        id: id.to_string(),
        version: g.version.as_ref().map(ToString::to_string),
        policy: g.policy.clone(),
        paused_reason: g.paused_reason.clone(),
        updates_in_progress: g.in_progress(),
        updates_timed_out: g.timed_out(),
        updates_attempted: u32::try_from(g.attempts.len()).unwrap_or(u32::MAX),
    }
}

fn package_view(p: &HostedPackage) -> PackageView {
    PackageView {
        version: p.manifest.release.to_string(),
        name: p.manifest.name.clone(),
        size: p.manifest.length,
        sha256: hex::encode(p.manifest.sha256),
    }
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

    /// Points a group (channel) at a package version, creating the group with
    /// the default policy if needed.
    pub fn set_group(&self, group: &str, version: &Version) -> Result<(), ServerError> {
        let mut m = self.model();
        if !m.packages.contains_key(version) {
            return Err(ServerError::NoPackage(version.clone()));
        }
        m.groups
            .entry(group.to_string())
            .or_default()
            .promote(version.clone());
        m.save()
    }

    /// A server keeping packages and groups in `data_dir` (loaded now, saved on
    /// every change), so a restart loses nothing.
    pub fn open(data_dir: &Path, app_id: &str, base_url: &str) -> Result<Self, ServerError> {
        let srv = Self::new(app_id, base_url);
        let pkgs = data_dir.join(PACKAGES_DIR);
        std::fs::create_dir_all(&pkgs)
            .map_err(ServerError::io(format!("creating {}", pkgs.display())))?;
        let state_path = data_dir.join(STATE_FILE);
        let saved: SavedState = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ServerError::State {
                path: state_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedState::default(),
            Err(e) => return Err(ServerError::io(format!("reading {}", state_path.display()))(e)),
        };
        let mut manifests = Vec::new();
        for v in std::fs::read_dir(&pkgs)
            .map_err(ServerError::io(format!("reading {}", pkgs.display())))?
            .flatten()
        {
            let Ok(entries) = std::fs::read_dir(v.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.to_string_lossy().ends_with(".manifest.json") {
                    manifests.push(p);
                }
            }
        }
        manifests.sort();
        for mpath in manifests {
            let bytes = std::fs::read(&mpath)
                .map_err(ServerError::io(format!("reading {}", mpath.display())))?;
            let man = inspect_manifest(&bytes).map_err(|e| ServerError::State {
                path: mpath.clone(),
                reason: e.to_string(),
            })?;
            let payload = mpath.with_file_name(&man.name);
            srv.add_package(payload, bytes)?;
        }
        {
            let mut m = srv.model();
            m.groups = saved.groups;
            m.data_dir = Some(data_dir.to_path_buf());
        }
        Ok(srv)
    }

    /// Accept uploads only when their manifest verifies with one of these keys.
    pub fn require_upload_signatures(&self, keys: TrustedKeys) {
        self.model().upload_keys = Some(keys);
    }

    /// Every hosted package, oldest version first.
    pub fn packages(&self) -> Vec<PackageView> {
        self.model().packages.values().map(package_view).collect()
    }

    /// Every group.
    pub fn groups(&self) -> Vec<GroupView> {
        let now = crate::driver::unix_now();
        let mut m = self.model();
        m.groups.values_mut().for_each(|g| g.sweep(now));
        m.groups.iter().map(|(id, g)| group_view(id, g)).collect()
    }

    /// One group.
    pub fn group(&self, id: &str) -> Result<GroupView, ServerError> {
        let now = crate::driver::unix_now();
        self.with_group(id, |g, _| {
            g.sweep(now);
            Ok(())
        })
    }

    /// Creates a group (no version yet) with `policy` (default: Nebraska's
    /// seed values with safe mode on).
    pub fn create_group(&self, id: &str, policy: Option<Policy>) -> Result<GroupView, ServerError> {
        if !valid_id(id) {
            return Err(ServerError::BadGroupId(id.into()));
        }
        let policy = policy.unwrap_or_default();
        policy.validate()?;
        let mut m = self.model();
        if m.groups.contains_key(id) {
            return Err(ServerError::GroupExists(id.into()));
        }
        let g = GroupRollout::new(policy);
        let view = group_view(id, &g);
        m.groups.insert(id.to_string(), g);
        m.save()?;
        Ok(view)
    }

    fn with_group(
        &self,
        id: &str,
        f: impl FnOnce(&mut GroupRollout, &BTreeMap<Version, HostedPackage>) -> Result<(), ServerError>,
    ) -> Result<GroupView, ServerError> {
        let mut m = self.model();
        let Model {
            groups, packages, ..
        } = &mut *m;
        let g = groups
            .get_mut(id)
            .ok_or_else(|| ServerError::NoGroup(id.into()))?;
        f(g, packages)?;
        let view = group_view(id, g);
        m.save()?;
        Ok(view)
    }

    /// Replaces a group's policy; enabling updates clears a safe-mode pause.
    pub fn set_policy(&self, id: &str, policy: Policy) -> Result<GroupView, ServerError> {
        self.with_group(id, |g, _| Ok(g.set_policy(policy)?))
    }

    /// Switches a group's updates off (or back on).
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<GroupView, ServerError> {
        self.with_group(id, |g, _| {
            if paused {
                g.pause("paused by an operator");
            } else {
                let p = Policy {
                    updates_enabled: true,
                    ..g.policy.clone()
                };
                g.set_policy(p)?;
            }
            Ok(())
        })
    }

    /// Points an existing group at an uploaded version.
    pub fn promote(&self, id: &str, version: &Version) -> Result<GroupView, ServerError> {
        self.with_group(id, |g, packages| {
            if !packages.contains_key(version) {
                return Err(ServerError::NoPackage(version.clone()));
            }
            g.promote(version.clone());
            Ok(())
        })
    }

    /// Stores an uploaded payload with its signed manifest in the data
    /// directory. The stream must match the manifest's size and SHA-256 (and,
    /// with [`Self::require_upload_signatures`], its signature must verify);
    /// otherwise nothing is kept.
    pub async fn upload<S, E>(
        &self,
        manifest_bytes: Vec<u8>,
        mut body: S,
    ) -> Result<PackageView, ServerError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures::StreamExt;
        use std::io::Write;
        let (dir, keys) = {
            let m = self.model();
            (m.data_dir.clone(), m.upload_keys.clone())
        };
        let dir = dir.ok_or(ServerError::NoDataDir)?;
        let man = match &keys {
            Some(k) => k.verify_manifest(&manifest_bytes)?,
            None => inspect_manifest(&manifest_bytes)?,
        };
        if !valid_id(&man.name) {
            return Err(ServerError::Upload(format!(
                "payload name {:?} is not a plain file name",
                man.name
            )));
        }
        let vdir = dir.join(PACKAGES_DIR).join(man.release.to_string());
        std::fs::create_dir_all(&vdir)
            .map_err(ServerError::io(format!("creating {}", vdir.display())))?;
        let tmp = vdir.join(format!(".upload-{:016x}", rand::random::<u64>()));
        let result: Result<(), ServerError> = async {
            let mut f = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&tmp)
                    .map_err(ServerError::io(format!("creating {}", tmp.display())))?,
            );
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut n = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| ServerError::Upload(format!("upload interrupted: {e}")))?;
                n += chunk.len() as u64;
                if n > man.length {
                    return Err(ServerError::Upload(format!(
                        "payload is larger than the {} bytes its manifest says",
                        man.length
                    )));
                }
                ctx.update(&chunk);
                f.write_all(&chunk)
                    .map_err(ServerError::io(format!("writing {}", tmp.display())))?;
            }
            if n != man.length {
                return Err(ServerError::Upload(format!(
                    "payload is {n} bytes but its manifest says {}",
                    man.length
                )));
            }
            if ctx.finish().as_ref() != man.sha256 {
                return Err(ServerError::Upload(
                    "payload SHA-256 differs from its manifest's".into(),
                ));
            }
            f.into_inner()
                .map_err(|e| ServerError::io(format!("writing {}", tmp.display()))(e.into_error()))?
                .sync_all()
                .map_err(ServerError::io(format!("syncing {}", tmp.display())))?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let payload = vdir.join(&man.name);
        std::fs::rename(&tmp, &payload)
            .map_err(ServerError::io(format!("storing {}", payload.display())))?;
        let mpath = vdir.join(format!("{}.manifest.json", man.name));
        std::fs::write(&mpath, &manifest_bytes)
            .map_err(ServerError::io(format!("writing {}", mpath.display())))?;
        let version = self.add_package(payload, manifest_bytes)?;
        let m = self.model();
        m.packages
            .get(&version)
            .map(package_view)
            .ok_or(ServerError::NoPackage(version))
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
        self.handle_omaha_at(body, crate::driver::unix_now())
    }

    /// [`Self::handle_omaha`] at time `now` (Unix seconds), for rollout
    /// policies in simulated time.
    pub fn handle_omaha_at(&self, body: &str, now: u64) -> Result<Response, omaha::OmahaError> {
        let req = Request::from_xml(body)?;
        let mut m = self.model();
        let mut apps = Vec::new();
        for app in &req.apps {
            apps.push(m.answer(app, now));
        }
        if let Err(e) = m.save() {
            tracing::error!(error = %e, "cannot save the rollout state");
        }
        Ok(Response {
            apps,
            ..Response::for_app(ResponseApp::default())
        })
    }

    /// The HTTP router: `POST /v1/update/`, `GET /packages/{version}/{name}`
    /// (and `….manifest.json`), and the JSON admin API under `/api/`
    /// ([`crate::admin`]).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/update", post(omaha_handler))
            .route("/v1/update/", post(omaha_handler))
            .route("/packages/{version}/{name}", get(payload_handler))
            .merge(crate::admin::routes())
            .with_state(self.clone())
    }
}

impl Model {
    fn save(&self) -> Result<(), ServerError> {
        let Some(dir) = &self.data_dir else {
            return Ok(());
        };
        let state = SavedState {
            groups: self.groups.clone(),
        };
        let body = serde_json::to_vec_pretty(&state).map_err(|e| ServerError::State {
            path: dir.join(STATE_FILE),
            reason: e.to_string(),
        })?;
        let tmp = dir.join(".state.json.tmp");
        std::fs::write(&tmp, body)
            .map_err(ServerError::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join(STATE_FILE)).map_err(ServerError::io(format!(
            "replacing {}",
            dir.join(STATE_FILE).display()
        )))
    }

    fn answer(&mut self, app: &omaha::RequestApp, now: u64) -> ResponseApp {
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
                hold_reason: None,
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
            let outcome = match (ev.event_type, ev.event_result) {
                (event_type::UPDATE_COMPLETE, event_result::SUCCESS) => Some(Outcome::Installed),
                (event_type::UPDATE_COMPLETE, event_result::SUCCESS_REBOOT) => {
                    Some(Outcome::Succeeded)
                }
                (_, event_result::ERROR) => Some(Outcome::Failed),
                _ => None,
            };
            if let (Some(o), Some(g)) = (outcome, self.groups.get_mut(&app.track)) {
                g.report(&inst.id, o, now);
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
                .and_then(|g| g.version.as_ref())
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
            // The rollout policy has the last word on a newer version.
            let offer = match (offer, app.instance_id(), self.groups.get_mut(&app.track)) {
                (Some(p), Some(id), Some(g)) => match g.decide(id, now) {
                    Decision::Grant => {
                        if let Some(inst) = self.instances.get_mut(id) {
                            inst.hold_reason = None;
                        }
                        Some(p)
                    }
                    Decision::Refuse(r) => {
                        tracing::info!(instance = id, group = %app.track, reason = %r, "update held by the rollout policy");
                        if let Some(inst) = self.instances.get_mut(id) {
                            inst.status = InstanceStatus::OnHold;
                            inst.hold_reason = Some(r);
                        }
                        None
                    }
                },
                _ => None,
            };
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
