//! The engine's local API: a unix socket speaking line-delimited JSON.
//!
//! update_engine served `com.coreos.update1` on the system D-Bus, and
//! locksmithd and `update_engine_client` were its only callers. Keelson nodes
//! often run without a system bus (simulated nodes share one host), so the
//! same operations are served on a unix socket, by default
//! `/var/run/update-engine.sock` under `--root`: one JSON request per line,
//! one JSON reply per line; `watch` keeps the connection open and sends a
//! status line on every change, like the `StatusUpdate` signal.
//!
//! ```text
//! → {"method":"status"}
//! ← {"reply":"status","last_checked_time":1442857473,"progress":0.0,
//!    "current_operation":"UPDATE_STATUS_IDLE","new_version":"0.0.0.0","new_size":0}
//! → {"method":"check-for-update"}      ← {"reply":"accepted"}
//! → {"method":"reset-status"}          ← {"reply":"accepted"}
//! → {"method":"reboot-needed"}         ← {"reply":"reboot-needed","reboot_needed":false,…}
//! → {"method":"send-need-reboot"}      ← {"reply":"accepted"}
//! → {"method":"watch"}                 ← {"reply":"status",…} (now, then on every change)
//! ```
//!
//! `send-need-reboot` is what `locksmithctl send-need-reboot` did over D-Bus:
//! it tells watchers (locksmithd) that a reboot is needed without touching
//! the engine's own state. Errors are `{"reply":"error","message":"…"}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

use crate::driver::Command;
use crate::engine::{Status, StatusReport};

/// The default socket path, relative to `--root`.
pub const DEFAULT_SOCKET: &str = "/var/run/update-engine.sock";

/// Longest request line accepted.
const MAX_LINE: u64 = 64 * 1024;

/// A request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum ApiRequest {
    /// `GetStatus()`.
    Status,
    /// `AttemptUpdate()`: an interactive check, now.
    CheckForUpdate,
    /// `ResetStatus()`.
    ResetStatus,
    /// The current status, then every change (`StatusUpdate`).
    Watch,
    /// Whether a reboot is needed (for locksmithd).
    RebootNeeded,
    /// Announce to watchers that a reboot is needed (`locksmithctl send-need-reboot`).
    SendNeedReboot,
}

/// The status as it crosses the socket (D-Bus `GetStatus` values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireStatus {
    pub last_checked_time: u64,
    pub progress: f64,
    pub current_operation: String,
    pub new_version: String,
    pub new_size: u64,
}

impl From<&StatusReport> for WireStatus {
    fn from(s: &StatusReport) -> Self {
        Self {
            last_checked_time: s.last_checked_time,
            progress: s.progress,
            current_operation: s.current_operation.as_str().into(),
            new_version: s.new_version.clone(),
            new_size: s.new_size,
        }
    }
}

impl TryFrom<WireStatus> for StatusReport {
    type Error = ApiError;
    fn try_from(w: WireStatus) -> Result<Self, ApiError> {
        let op = Status::parse(&w.current_operation).ok_or_else(|| {
            ApiError::Protocol(format!("unknown operation {:?}", w.current_operation))
        })?;
        Ok(StatusReport {
            last_checked_time: w.last_checked_time,
            progress: w.progress,
            current_operation: op,
            new_version: w.new_version,
            new_size: w.new_size,
        })
    }
}

/// The answer to `reboot-needed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootNeeded {
    /// An update is installed and waiting, or a reboot was requested.
    pub reboot_needed: bool,
    /// The version that a reboot would boot into (`0.0.0.0` if none).
    pub new_version: String,
    /// Set by `send-need-reboot` rather than by an installed update.
    pub requested: bool,
}

/// A reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum ApiReply {
    Status(WireStatus),
    Accepted,
    RebootNeeded(RebootNeeded),
    Error { message: String },
}

/// What went wrong talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot connect to the update engine at {path}: {source} (is `keelson update-engine` running? set the socket with --socket)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("update engine socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the update engine closed the connection")]
    Closed,
    #[error("bad message from the update engine: {0}")]
    Protocol(String),
    #[error("the update engine refused: {0}")]
    Engine(String),
    #[error("another update engine is already serving {0}")]
    InUse(PathBuf),
}

/// Serves the local API for a running [`crate::driver::Driver`].
#[derive(Clone)]
pub struct ApiServer {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<StatusReport>,
    requested: Arc<watch::Sender<bool>>,
}

impl ApiServer {
    /// Forwards operations to `commands` (the driver's command channel) and
    /// reads the status from `status` ([`crate::driver::Driver::subscribe`]),
    /// so status and watch answer even while the driver is busy downloading.
    pub fn new(commands: mpsc::Sender<Command>, status: watch::Receiver<StatusReport>) -> Self {
        Self {
            commands,
            status,
            requested: Arc::new(watch::channel(false).0),
        }
    }

    /// Binds `path`, replacing a stale socket file but never a live engine's.
    pub async fn bind(path: &Path) -> Result<UnixListener, ApiError> {
        let io = |source| ApiError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ApiError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        UnixListener::bind(path).map_err(io)
    }

    /// Accepts connections until the listener fails.
    pub async fn serve(self, listener: UnixListener) -> std::io::Result<()> {
        loop {
            let (conn, _) = listener.accept().await?;
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.connection(conn).await {
                    tracing::debug!(error = %e, "api connection ended");
                }
            });
        }
    }

    /// The answer to one request (everything but `watch`).
    pub fn answer(&self, req: ApiRequest) -> ApiReply {
        let send = |c: Command| match self.commands.try_send(c) {
            // A full queue means checks are already pending: accepted all the same.
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => ApiReply::Accepted,
            Err(mpsc::error::TrySendError::Closed(_)) => ApiReply::Error {
                message: "the update engine has stopped".into(),
            },
        };
        match req {
            ApiRequest::Status | ApiRequest::Watch => {
                ApiReply::Status(WireStatus::from(&*self.status.borrow()))
            }
            ApiRequest::CheckForUpdate => send(Command::CheckNow),
            ApiRequest::ResetStatus => {
                self.requested.send_replace(false);
                send(Command::ResetStatus)
            }
            ApiRequest::RebootNeeded => {
                let s = self.status.borrow();
                let installed = s.current_operation == Status::UpdatedNeedReboot;
                let requested = *self.requested.borrow();
                ApiReply::RebootNeeded(RebootNeeded {
                    reboot_needed: installed || requested,
                    new_version: s.new_version.clone(),
                    requested: requested && !installed,
                })
            }
            ApiRequest::SendNeedReboot => {
                self.requested.send_replace(true);
                ApiReply::Accepted
            }
        }
    }

    async fn connection(self, conn: UnixStream) -> std::io::Result<()> {
        let (r, mut w) = conn.into_split();
        let mut r = BufReader::new(r);
        loop {
            let mut line = String::new();
            let n = (&mut r).take(MAX_LINE).read_line(&mut line).await?;
            if n == 0 {
                return Ok(());
            }
            if !line.ends_with('\n') && n as u64 >= MAX_LINE {
                write_line(
                    &mut w,
                    &ApiReply::Error {
                        message: format!("request longer than {MAX_LINE} bytes"),
                    },
                )
                .await?;
                return Ok(());
            }
            if line.trim().is_empty() {
                continue;
            }
            let req: ApiRequest = match serde_json::from_str(line.trim()) {
                Ok(r) => r,
                Err(e) => {
                    write_line(
                        &mut w,
                        &ApiReply::Error {
                            message: format!(
                                "malformed request ({e}); expected {{\"method\":\"status\"}} or check-for-update, reset-status, watch, reboot-needed, send-need-reboot"
                            ),
                        },
                    )
                    .await?;
                    continue;
                }
            };
            write_line(&mut w, &self.answer(req)).await?;
            if req == ApiRequest::Watch {
                return self.watch(r, w).await;
            }
        }
    }

    async fn watch(
        &self,
        mut r: BufReader<tokio::net::unix::OwnedReadHalf>,
        mut w: tokio::net::unix::OwnedWriteHalf,
    ) -> std::io::Result<()> {
        let mut status = self.status.clone();
        let mut requested = self.requested.subscribe();
        status.mark_unchanged();
        requested.mark_unchanged();
        let mut sink = [0u8; 512];
        loop {
            let report = tokio::select! {
                c = status.changed() => {
                    if c.is_err() { return Ok(()); }
                    status.borrow_and_update().clone()
                }
                c = requested.changed() => {
                    if c.is_err() { return Ok(()); }
                    if !*requested.borrow_and_update() { continue; }
                    // As locksmithctl send-need-reboot did: a synthetic signal.
                    StatusReport { current_operation: Status::UpdatedNeedReboot, ..self.status.borrow().clone() }
                }
                n = r.read(&mut sink) => {
                    // The client hung up (or sent something: ignored).
                    if n? == 0 { return Ok(()); }
                    continue;
                }
            };
            write_line(&mut w, &ApiReply::Status(WireStatus::from(&report))).await?;
        }
    }
}

async fn write_line(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    reply: &ApiReply,
) -> std::io::Result<()> {
    let mut b = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    b.push(b'\n');
    w.write_all(&b).await
}

/// A client of the local API (`keelctl update`, `update_engine_client`, locksmithd).
#[derive(Debug, Clone)]
pub struct ApiClient {
    path: PathBuf,
}

/// An open `watch`: the status now, then every change.
pub struct Watch {
    path: PathBuf,
    lines: tokio::io::Lines<BufReader<UnixStream>>,
}

impl Watch {
    /// The next status; `None` when the engine went away.
    pub async fn next(&mut self) -> Result<Option<StatusReport>, ApiError> {
        let line = self
            .lines
            .next_line()
            .await
            .map_err(|source| ApiError::Io {
                path: self.path.clone(),
                source,
            })?;
        match line {
            None => Ok(None),
            Some(l) => match parse_reply(&l)? {
                ApiReply::Status(s) => Ok(Some(s.try_into()?)),
                other => Err(unexpected(other)),
            },
        }
    }
}

fn parse_reply(line: &str) -> Result<ApiReply, ApiError> {
    let r: ApiReply =
        serde_json::from_str(line).map_err(|e| ApiError::Protocol(format!("{e}: {line:?}")))?;
    if let ApiReply::Error { message } = r {
        return Err(ApiError::Engine(message));
    }
    Ok(r)
}

fn unexpected(r: ApiReply) -> ApiError {
    ApiError::Protocol(format!("unexpected reply {r:?}"))
}

impl ApiClient {
    /// A client for the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The socket under `root` at the default place.
    pub fn under_root(root: &Path) -> Self {
        Self::new(crate::config::rooted(root, DEFAULT_SOCKET))
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn open(&self, req: ApiRequest) -> Result<BufReader<UnixStream>, ApiError> {
        let mut s = UnixStream::connect(&self.path)
            .await
            .map_err(|source| ApiError::Connect {
                path: self.path.clone(),
                source,
            })?;
        let mut b = serde_json::to_vec(&req).map_err(|e| ApiError::Protocol(e.to_string()))?;
        b.push(b'\n');
        s.write_all(&b).await.map_err(|source| ApiError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(BufReader::new(s))
    }

    async fn call(&self, req: ApiRequest) -> Result<ApiReply, ApiError> {
        let mut r = self.open(req).await?;
        let mut line = String::new();
        let n = r
            .read_line(&mut line)
            .await
            .map_err(|source| ApiError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ApiError::Closed);
        }
        parse_reply(line.trim_end())
    }

    async fn accepted(&self, req: ApiRequest) -> Result<(), ApiError> {
        match self.call(req).await? {
            ApiReply::Accepted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// `GetStatus()`.
    pub async fn status(&self) -> Result<StatusReport, ApiError> {
        match self.call(ApiRequest::Status).await? {
            ApiReply::Status(s) => s.try_into(),
            other => Err(unexpected(other)),
        }
    }

    /// `AttemptUpdate()`.
    pub async fn check_for_update(&self) -> Result<(), ApiError> {
        self.accepted(ApiRequest::CheckForUpdate).await
    }

    /// `ResetStatus()`.
    pub async fn reset_status(&self) -> Result<(), ApiError> {
        self.accepted(ApiRequest::ResetStatus).await
    }

    /// Whether a reboot is needed.
    pub async fn reboot_needed(&self) -> Result<RebootNeeded, ApiError> {
        match self.call(ApiRequest::RebootNeeded).await? {
            ApiReply::RebootNeeded(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Tells watchers a reboot is needed.
    pub async fn send_need_reboot(&self) -> Result<(), ApiError> {
        self.accepted(ApiRequest::SendNeedReboot).await
    }

    /// Opens a watch: the first [`Watch::next`] is the current status.
    pub async fn watch(&self) -> Result<Watch, ApiError> {
        let r = self.open(ApiRequest::Watch).await?;
        Ok(Watch {
            path: self.path.clone(),
            lines: r.lines(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(op: Status, progress: f64) -> StatusReport {
        StatusReport {
            last_checked_time: 7,
            progress,
            current_operation: op,
            new_version: "766.3.0".into(),
            new_size: 42,
        }
    }

    async fn start() -> (
        tempfile::TempDir,
        ApiClient,
        watch::Sender<StatusReport>,
        mpsc::Receiver<Command>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/update-engine.sock");
        let (tx, rx) = mpsc::channel(8);
        let (stx, srx) = watch::channel(report(Status::Idle, 0.0));
        let l = ApiServer::bind(&path).await.unwrap();
        tokio::spawn(ApiServer::new(tx, srx).serve(l));
        (dir, ApiClient::new(path), stx, rx)
    }

    #[tokio::test]
    async fn operations_round_trip() {
        let (_d, c, stx, mut rx) = start().await;
        let s = c.status().await.unwrap();
        assert_eq!(s, report(Status::Idle, 0.0));
        c.check_for_update().await.unwrap();
        assert!(matches!(rx.recv().await, Some(Command::CheckNow)));
        c.reset_status().await.unwrap();
        assert!(matches!(rx.recv().await, Some(Command::ResetStatus)));

        let r = c.reboot_needed().await.unwrap();
        assert!(!r.reboot_needed);
        stx.send_replace(report(Status::UpdatedNeedReboot, 1.0));
        let r = c.reboot_needed().await.unwrap();
        assert!(r.reboot_needed && !r.requested);
        assert_eq!(r.new_version, "766.3.0");
    }

    #[tokio::test]
    async fn watch_streams_changes_and_send_need_reboot() {
        let (_d, c, stx, _rx) = start().await;
        let mut w = c.watch().await.unwrap();
        assert_eq!(
            w.next().await.unwrap().unwrap().current_operation,
            Status::Idle
        );
        stx.send_replace(report(Status::Downloading, 0.5));
        let s = w.next().await.unwrap().unwrap();
        assert_eq!(
            (s.current_operation, s.progress),
            (Status::Downloading, 0.5)
        );
        stx.send_replace(report(Status::Idle, 0.0));
        assert_eq!(
            w.next().await.unwrap().unwrap().current_operation,
            Status::Idle
        );

        c.send_need_reboot().await.unwrap();
        let s = w.next().await.unwrap().unwrap();
        assert_eq!(s.current_operation, Status::UpdatedNeedReboot);
        let r = c.reboot_needed().await.unwrap();
        assert!(r.reboot_needed && r.requested);
        // The engine's own status is untouched.
        assert_eq!(c.status().await.unwrap().current_operation, Status::Idle);
        c.reset_status().await.unwrap();
        assert!(!c.reboot_needed().await.unwrap().reboot_needed);

        // The engine going away ends the watch.
        drop(stx);
        assert!(w.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn malformed_requests_get_clear_errors() {
        let (_d, c, _stx, _rx) = start().await;
        let mut s = UnixStream::connect(c.path()).await.unwrap();
        s.write_all(b"{\"method\":\"reboot-now\"}\nnot json\n\n{\"method\":\"status\"}\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(s).lines();
        for _ in 0..2 {
            let l = lines.next_line().await.unwrap().unwrap();
            assert!(
                matches!(parse_reply(&l), Err(ApiError::Engine(m)) if m.contains("malformed request")),
                "{l}"
            );
        }
        let l = lines.next_line().await.unwrap().unwrap();
        assert!(matches!(parse_reply(&l), Ok(ApiReply::Status(_))), "{l}");

        // An over-long line is refused and the connection closed.
        let mut s = UnixStream::connect(c.path()).await.unwrap();
        s.write_all(&vec![b'x'; MAX_LINE as usize + 10])
            .await
            .unwrap();
        let mut lines = BufReader::new(s).lines();
        let l = lines.next_line().await.unwrap().unwrap();
        assert!(l.contains("longer than"), "{l}");
    }

    #[tokio::test]
    async fn stopped_engine_and_missing_socket() {
        let (d, c, _stx, rx) = start().await;
        drop(rx);
        assert!(
            matches!(c.check_for_update().await, Err(ApiError::Engine(m)) if m.contains("stopped"))
        );
        let missing = ApiClient::new(d.path().join("nope.sock"));
        let e = missing.status().await.unwrap_err();
        assert!(e.to_string().contains("keelson update-engine"), "{e}");
    }

    #[tokio::test]
    async fn bind_replaces_stale_socket_but_not_a_live_one() {
        let (d, c, _stx, _rx) = start().await;
        assert!(matches!(
            ApiServer::bind(c.path()).await,
            Err(ApiError::InUse(_))
        ));
        let stale = d.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        ApiServer::bind(&stale).await.unwrap();
    }
}
