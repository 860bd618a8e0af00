//! The I/O around [`Engine`]: Omaha over HTTP, payload streaming into a
//! [`BootSlots`] slot, state files under `--root`.
//!
//! The driver feeds the engine inputs and performs the actions it returns
//! until the engine has nothing left to do. It owns the only network and disk
//! access of an update, so the engine stays a pure function of its inputs.

use std::path::{Path, PathBuf};

use crate::config::rooted;
use crate::engine::{Action, CheckFailure, Engine, Input, Persisted, StatusReport};
use crate::omaha::{CheckOutcome, ErrorCode, Offer, Request, Response};
use crate::payload::{verify_written, PayloadError, PayloadWriter, TrustedKeys};
use crate::slots::{BootSlots, SlotError};
use crate::version::Version;

/// Durable state (`/var/lib/update_engine/prefs/previous-version`).
pub const PREVIOUS_VERSION_FILE: &str = "/var/lib/update_engine/prefs/previous-version";
/// Volatile marker, cleared by a reboot (`/run` is a tmpfs).
pub const NEED_REBOOT_MARKER: &str = "/run/update_engine_autoupdate_completed";

/// Errors of one update step, each mapping to an Omaha error code.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error("downloading {url}: {reason}")]
    Transfer { url: String, reason: String },
    #[error("the update server has no signed manifest at {url} (HTTP {status})")]
    ManifestMissing { url: String, status: u16 },
    #[error("the offer has no URL")]
    NoUrl,
}

impl UpdateError {
    /// The Omaha error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            UpdateError::Payload(e) => e.code(),
            UpdateError::Slot(_) => ErrorCode::INSTALL_DEVICE_OPEN_ERROR,
            UpdateError::Transfer { .. } | UpdateError::NoUrl => ErrorCode::DOWNLOAD_TRANSFER_ERROR,
            UpdateError::ManifestMissing { .. } => ErrorCode::SIGNED_DELTA_PAYLOAD_EXPECTED,
        }
    }
}

/// Reads and writes [`Persisted`] under a root.
#[derive(Debug, Clone)]
pub struct StateStore {
    root: PathBuf,
}

impl StateStore {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// Loads the state; unreadable or malformed files count as absent.
    pub fn load(&self) -> Persisted {
        let prev = std::fs::read_to_string(rooted(&self.root, PREVIOUS_VERSION_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<Version>().ok());
        let marker = std::fs::read_to_string(rooted(&self.root, NEED_REBOOT_MARKER))
            .ok()
            .and_then(|s| {
                let (v, n) = s.trim().split_once(' ')?;
                Some((v.parse().ok()?, n.parse().ok()?))
            });
        Persisted {
            previous_version: prev,
            need_reboot: marker,
        }
    }

    /// Stores the state.
    pub fn save(&self, p: &Persisted) -> std::io::Result<()> {
        let write = |path: &str, content: Option<String>| -> std::io::Result<()> {
            let f = rooted(&self.root, path);
            match content {
                Some(c) => {
                    if let Some(d) = f.parent() {
                        std::fs::create_dir_all(d)?;
                    }
                    std::fs::write(f, c)
                }
                None => match std::fs::remove_file(f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            }
        };
        write(
            PREVIOUS_VERSION_FILE,
            p.previous_version.as_ref().map(|v| format!("{v}\n")),
        )?;
        write(
            NEED_REBOOT_MARKER,
            p.need_reboot.as_ref().map(|(v, n)| format!("{v} {n}\n")),
        )
    }

    /// What a reboot does to the state: the `/run` marker disappears.
    pub fn simulate_reboot(&self) -> std::io::Result<()> {
        match std::fs::remove_file(rooted(&self.root, NEED_REBOOT_MARKER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Where trusted keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// [`crate::payload::TRUSTED_KEY_DIRS`] under the root.
    Root,
    /// These directories.
    Dirs(Vec<PathBuf>),
}

/// A health check run before the booted slot is marked good.
pub type HealthCheck = Box<dyn FnMut() -> Result<(), String> + Send>;

/// Drives an [`Engine`] against a server and a [`BootSlots`].
pub struct Driver<S: BootSlots> {
    engine: Engine,
    slots: S,
    server: String,
    root: PathBuf,
    keys: KeySource,
    http: reqwest::Client,
    store: StateStore,
    health: HealthCheck,
    max_resumes: u32,
    last_error: Option<String>,
    history: Vec<StatusReport>,
    status_tx: tokio::sync::watch::Sender<StatusReport>,
}

impl<S: BootSlots> Driver<S> {
    /// A driver posting to `server` (the `SERVER=` URL), keeping state under `root`.
    pub fn new(engine: Engine, slots: S, server: &str, root: &Path) -> Self {
        let (status_tx, _) = tokio::sync::watch::channel(engine.status());
        Self {
            engine,
            slots,
            server: server.to_string(),
            root: root.to_path_buf(),
            keys: KeySource::Root,
            http: reqwest::Client::new(),
            store: StateStore::new(root),
            health: Box::new(|| Ok(())),
            max_resumes: 5,
            last_error: None,
            history: Vec::new(),
            status_tx,
        }
    }

    /// Uses these key directories instead of the ones under the root.
    pub fn with_keys(mut self, keys: KeySource) -> Self {
        self.keys = keys;
        self
    }

    /// Runs `check` before marking the booted slot good (default: always healthy).
    pub fn with_health_check(mut self, check: HealthCheck) -> Self {
        self.health = check;
        self
    }

    /// How often an interrupted download is resumed before giving up.
    pub fn with_max_resumes(mut self, n: u32) -> Self {
        self.max_resumes = n;
        self
    }

    /// The engine's status.
    pub fn status(&self) -> StatusReport {
        self.engine.status()
    }

    /// Every status change so far.
    pub fn history(&self) -> &[StatusReport] {
        &self.history
    }

    /// Subscribes to status changes (`watch_for_updates`).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<StatusReport> {
        self.status_tx.subscribe()
    }

    /// The last update error, in words.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The slots.
    pub fn slots(&self) -> &S {
        &self.slots
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// When the engine next wants a [`Input::Tick`].
    pub fn next_wakeup(&self) -> u64 {
        self.engine.next_wakeup()
    }

    /// Feeds `Tick` at `now` and performs everything that follows.
    pub async fn tick(&mut self, now: u64) {
        self.feed(now, Input::Tick).await
    }

    /// An interactive check at `now`, performed to the end.
    pub async fn check_now(&mut self, now: u64) {
        self.feed(now, Input::CheckNow).await
    }

    /// `ResetStatus()`.
    pub async fn reset_status(&mut self, now: u64) {
        self.feed(now, Input::ResetStatus).await
    }

    /// Feeds one input and performs the resulting actions until quiet.
    pub async fn feed(&mut self, now: u64, input: Input) {
        let mut queue: std::collections::VecDeque<Action> = self.engine.handle(now, input).into();
        while let Some(action) = queue.pop_front() {
            if let Some(next) = self.perform(now, action).await {
                queue.extend(self.engine.handle(now, next));
            }
        }
    }

    async fn perform(&mut self, now: u64, action: Action) -> Option<Input> {
        match action {
            Action::StatusChanged(s) => {
                self.history.push(s.clone());
                self.status_tx.send_replace(s);
                None
            }
            Action::Persist(p) => {
                if let Err(e) = self.store.save(&p) {
                    tracing::error!(error = %e, "cannot persist update state");
                }
                None
            }
            Action::MarkBootGood => {
                let r = (self.health)()
                    .and_then(|()| self.slots.mark_good().map_err(|e| e.to_string()));
                if let Err(e) = &r {
                    self.last_error = Some(format!("boot not marked good: {e}"));
                }
                Some(Input::BootMarked(r))
            }
            Action::SendCheck(req) => Some(Input::CheckCompleted(self.send_check(&req).await)),
            Action::SendEvent(req) => {
                if let Err(e) = self.post(&req).await {
                    tracing::warn!(error = ?e, "event not delivered");
                }
                Some(Input::EventSent)
            }
            Action::Download(offer) => {
                let r = self.download(now, &offer).await;
                Some(Input::DownloadCompleted(self.record(r)))
            }
            Action::Verify => {
                let r = self
                    .verify_slot(&offer_of(&self.engine))
                    .map_err(UpdateError::from);
                Some(Input::VerifyCompleted(self.record(r)))
            }
            Action::Finalize => {
                let r = self.slots.set_next().map_err(UpdateError::from);
                Some(Input::FinalizeCompleted(self.record(r)))
            }
        }
    }

    fn record(&mut self, r: Result<(), UpdateError>) -> Result<(), ErrorCode> {
        r.map_err(|e| {
            tracing::error!(error = %e, code = %e.code(), "update step failed");
            let code = e.code();
            self.last_error = Some(e.to_string());
            code
        })
    }

    async fn post(&self, req: &Request) -> Result<(u16, String), CheckFailure> {
        let body = req.to_xml().map_err(|e| {
            CheckFailure::BadResponse(ErrorCode::OMAHA_REQUEST_ERROR, e.to_string())
        })?;
        let resp = self
            .http
            .post(&self.server)
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .map_err(|e| CheckFailure::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| CheckFailure::Unreachable(e.to_string()))?;
        Ok((status, text))
    }

    async fn send_check(&self, req: &Request) -> Result<CheckOutcome, CheckFailure> {
        let (status, text) = self.post(req).await?;
        if !(200..300).contains(&status) {
            return Err(CheckFailure::Http(status));
        }
        let bad = |e: crate::omaha::OmahaError| CheckFailure::BadResponse(e.code(), e.to_string());
        let resp = Response::from_xml(&text).map_err(bad)?;
        let asked = req.apps.first().is_some_and(|a| a.update_check.is_some());
        if !asked {
            return Ok(CheckOutcome::NoUpdate {
                poll_interval: None,
            });
        }
        resp.update_check_outcome().map_err(bad)
    }

    fn trusted_keys(&self) -> Result<TrustedKeys, PayloadError> {
        match &self.keys {
            KeySource::Root => TrustedKeys::load(&self.root),
            KeySource::Dirs(d) => TrustedKeys::load_dirs(d),
        }
    }

    async fn fetch_manifest(&self, offer: &Offer) -> Result<Vec<u8>, UpdateError> {
        if let Some(m) = &offer.signed_manifest {
            return Ok(m.clone());
        }
        let url = format!(
            "{}.manifest.json",
            offer.urls.first().ok_or(UpdateError::NoUrl)?
        );
        let transfer = |e: reqwest::Error| UpdateError::Transfer {
            url: url.clone(),
            reason: e.to_string(),
        };
        let resp = self.http.get(&url).send().await.map_err(transfer)?;
        if !resp.status().is_success() {
            return Err(UpdateError::ManifestMissing {
                url: url.clone(),
                status: resp.status().as_u16(),
            });
        }
        Ok(resp.bytes().await.map_err(transfer)?.to_vec())
    }

    /// Verifies the signed manifest (before any byte is written), then streams
    /// the payload into the inactive slot, resuming with `Range` after an
    /// interruption, and checks size and hash.
    async fn download(&mut self, now: u64, offer: &Offer) -> Result<(), UpdateError> {
        let keys = self.trusted_keys()?;
        let manifest = keys.verify_manifest(&self.fetch_manifest(offer).await?)?;
        manifest.check_offer(offer)?;
        let url = offer.urls.first().ok_or(UpdateError::NoUrl)?.clone();

        self.slots.mark_inactive_unbootable()?;
        let region = self.slots.open_slot(self.slots.inactive())?;
        let slot_len = region.len();
        let mut w = PayloadWriter::new(region, manifest.clone(), slot_len)?;
        let mut resumes = 0u32;
        let transfer = |reason: String| UpdateError::Transfer {
            url: url.clone(),
            reason,
        };
        'attempts: while w.written() < manifest.length {
            let mut req = self.http.get(&url);
            if w.written() > 0 {
                req = req.header("range", format!("bytes={}-", w.written()));
            }
            let mut resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    resumes += 1;
                    if resumes > self.max_resumes {
                        return Err(transfer(e.to_string()));
                    }
                    continue;
                }
            };
            match resp.status().as_u16() {
                206 => {}
                200 if w.written() == 0 => {}
                200 => {
                    // The server ignored the range: start over.
                    let region = self.slots.open_slot(self.slots.inactive())?;
                    w = PayloadWriter::new(region, manifest.clone(), slot_len)?;
                }
                // Nothing past what we have: the payload is shorter than signed.
                416 => break,
                s => return Err(transfer(format!("HTTP {s}"))),
            }
            loop {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        w.write_chunk(&c)?;
                        let progress = self
                            .engine
                            .handle(now, Input::DownloadProgress(w.written()));
                        for a in progress {
                            if let Action::StatusChanged(s) = a {
                                self.status_tx.send_replace(s);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        resumes += 1;
                        tracing::warn!(error = %e, written = w.written(), "download interrupted; resuming");
                        if resumes > self.max_resumes {
                            return Err(transfer(format!("interrupted too often: {e}")));
                        }
                        continue 'attempts;
                    }
                }
            }
            if w.written() < manifest.length {
                // The body ended early without an error: try to resume once more.
                resumes += 1;
                if resumes > self.max_resumes {
                    break;
                }
            }
        }
        let region = w.finish()?;
        region.sync().map_err(|e| PayloadError::Io {
            context: "syncing the slot".into(),
            source: e,
        })?;
        Ok(())
    }

    fn verify_slot(&self, offer: &Option<Offer>) -> Result<(), PayloadError> {
        let offer = offer
            .as_ref()
            .ok_or_else(|| PayloadError::BadManifest("no offer to verify against".into()))?;
        let expected = crate::payload::VerifiedManifest {
            release: offer
                .version
                .parse()
                .map_err(|_| PayloadError::BadManifest("bad version".into()))?,
            name: String::new(),
            length: offer.size,
            sha256: offer.sha256,
        };
        let region = self
            .slots
            .open_slot(self.slots.inactive())
            .map_err(|e| PayloadError::Io {
                context: "opening the written slot".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        verify_written(region, &expected)
    }

    /// Runs forever on the real clock, serving `commands`. Returns when the
    /// command channel closes.
    pub async fn run(mut self, mut commands: tokio::sync::mpsc::Receiver<Command>) {
        loop {
            let now = unix_now();
            let wait = self.engine.next_wakeup().saturating_sub(now);
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => self.tick(unix_now()).await,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::CheckNow) => self.check_now(unix_now()).await,
                    Some(Command::ResetStatus) => self.reset_status(unix_now()).await,
                    Some(Command::GetStatus(tx)) => { let _ = tx.send(self.status()); }
                },
            }
        }
    }
}

/// Requests to a running [`Driver::run`] (what the local API forwards).
#[derive(Debug)]
pub enum Command {
    CheckNow,
    ResetStatus,
    GetStatus(tokio::sync::oneshot::Sender<StatusReport>),
}

/// Builds the engine's identity from the files under `root`: the release
/// file (version, board, app id), `/etc/machine-id`, and the configured group.
/// The boot id comes from `/proc/sys/kernel/random/boot_id` under the root,
/// or is made up when absent (simulated nodes).
pub fn load_identity(
    root: &Path,
    config: &crate::config::UpdateConfig,
) -> Result<crate::engine::Identity, crate::config::ConfigError> {
    let release = crate::config::ReleaseInfo::load(root)?;
    let machine_id = crate::config::machine_id(root)?.unwrap_or_else(|| "unknown".into());
    let boot_id = std::fs::read_to_string(rooted(root, "/proc/sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{:016x}", rand::random::<u64>()));
    Ok(crate::engine::Identity {
        app_id: release.app_id,
        version: release.version,
        track: config.group.to_string(),
        machine_id,
        boot_id: format!("{{{boot_id}}}"),
        board: release.board,
        oem: None,
        machine_alias: config.machine_alias.clone(),
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn offer_of(engine: &Engine) -> Option<Offer> {
    let st = engine.status();
    engine
        .current_offer()
        .cloned()
        .filter(|o| o.version == st.new_version)
}
