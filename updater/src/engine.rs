//! The update engine as a pure state machine.
//!
//! update_engine's behaviour is a handful of timers and a linear pipeline
//! (check → download → verify → finalize → wait for reboot) with an error
//! exit at every step. Here that logic takes explicit inputs, the current time
//! included, and returns [`Action`]s for a driver to perform, the way
//! quinn-proto and etcd's raft are built. Nothing in this module sleeps, reads
//! a clock, or touches the network or a disk, so the check schedule, backoff,
//! rollback detection and the whole event sequence are tested in simulated
//! time.

use rand::{Rng, SeedableRng};

use crate::omaha::{
    CheckOutcome, ErrorCode, Event, Offer, Os, Ping, Request, RequestApp, UpdateCheckRequest,
};
use crate::version::Version;

/// update_engine's `current_operation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Idle,
    CheckingForUpdate,
    UpdateAvailable,
    Downloading,
    Verifying,
    Finalizing,
    UpdatedNeedReboot,
    ReportingErrorEvent,
}

impl Status {
    /// The `UPDATE_STATUS_*` name that `update_engine_client -status` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "UPDATE_STATUS_IDLE",
            Status::CheckingForUpdate => "UPDATE_STATUS_CHECKING_FOR_UPDATE",
            Status::UpdateAvailable => "UPDATE_STATUS_UPDATE_AVAILABLE",
            Status::Downloading => "UPDATE_STATUS_DOWNLOADING",
            Status::Verifying => "UPDATE_STATUS_VERIFYING",
            Status::Finalizing => "UPDATE_STATUS_FINALIZING",
            Status::UpdatedNeedReboot => "UPDATE_STATUS_UPDATED_NEED_REBOOT",
            Status::ReportingErrorEvent => "UPDATE_STATUS_REPORTING_ERROR_EVENT",
        }
    }

    /// Parses an `UPDATE_STATUS_*` name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Status::Idle,
            Status::CheckingForUpdate,
            Status::UpdateAvailable,
            Status::Downloading,
            Status::Verifying,
            Status::Finalizing,
            Status::UpdatedNeedReboot,
            Status::ReportingErrorEvent,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GetStatus()` / the `StatusUpdate` signal.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub last_checked_time: u64,
    pub progress: f64,
    pub current_operation: Status,
    pub new_version: String,
    pub new_size: u64,
}

impl StatusReport {
    /// The block `update_engine_client -status` prints.
    pub fn render(&self) -> String {
        format!(
            "LAST_CHECKED_TIME={}\nPROGRESS={:.6}\nCURRENT_OP={}\nNEW_VERSION={}\nNEW_SIZE={}\n",
            self.last_checked_time,
            self.progress,
            self.current_operation,
            self.new_version,
            self.new_size
        )
    }
}

/// Check timing (flatcar/update_engine `update_check_scheduler.cc`), seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial: u64,
    pub fuzz: u64,
    pub periodic: u64,
    pub max_backoff: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            initial: 7 * 60,
            fuzz: 10 * 60,
            periodic: 45 * 60,
            max_backoff: 4 * 3600,
        }
    }
}

/// Who the machine is and what it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub app_id: String,
    /// The running version.
    pub version: Version,
    /// `GROUP`, sent as `track`.
    pub track: String,
    pub machine_id: String,
    pub boot_id: String,
    pub board: String,
    pub oem: Option<String>,
    pub machine_alias: Option<String>,
}

/// State that survives a restart of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persisted {
    /// The version that was running when an update was installed (durable:
    /// `/var/lib/update_engine/prefs/previous-version`); checked once after boot.
    pub previous_version: Option<Version>,
    /// The version installed and waiting for a reboot (the volatile marker
    /// `/run/update_engine_autoupdate_completed`; a reboot clears it).
    pub need_reboot: Option<(Version, u64)>,
}

/// Why an update check failed before a usable answer arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// Transport error or timeout: nothing was heard from the server.
    Unreachable(String),
    /// An HTTP error status.
    Http(u16),
    /// The answer was empty, malformed or invalid (codes 30, 31, 34).
    BadResponse(ErrorCode, String),
}

/// Everything the engine reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Time passed; the driver calls this at [`Engine::next_wakeup`].
    Tick,
    /// An interactive check (`update_engine_client -check_for_update`).
    CheckNow,
    /// `ResetStatus()`.
    ResetStatus,
    /// The result of [`Action::MarkBootGood`] (health check + slot marking).
    BootMarked(Result<(), String>),
    /// The result of [`Action::SendCheck`].
    CheckCompleted(Result<CheckOutcome, CheckFailure>),
    /// Bytes written so far during [`Action::Download`].
    DownloadProgress(u64),
    /// Download finished: size and hash of the streamed payload verified.
    DownloadCompleted(Result<(), ErrorCode>),
    /// Read-back verification of the written slot finished.
    VerifyCompleted(Result<(), ErrorCode>),
    /// Postinstall (slot flags) finished.
    FinalizeCompleted(Result<(), ErrorCode>),
    /// An [`Action::SendEvent`] was delivered (or given up on).
    EventSent,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run the health check and mark the running slot good (before the first check).
    MarkBootGood,
    /// POST this request; answer with [`Input::CheckCompleted`].
    SendCheck(Request),
    /// POST this event request; answer with [`Input::EventSent`].
    SendEvent(Request),
    /// Verify the signed manifest, then stream the payload into the inactive
    /// slot; report [`Input::DownloadProgress`] and [`Input::DownloadCompleted`].
    Download(Offer),
    /// Read back and hash the written slot; answer [`Input::VerifyCompleted`].
    Verify,
    /// Make the written slot the next boot (tries=1); answer [`Input::FinalizeCompleted`].
    Finalize,
    /// Store this state.
    Persist(Persisted),
    /// The status changed (the D-Bus `StatusUpdate` signal).
    StatusChanged(StatusReport),
}

/// The update engine.
#[derive(Debug)]
pub struct Engine {
    id: Identity,
    timing: Timing,
    persisted: Persisted,
    status: Status,
    progress: f64,
    offer: Option<Offer>,
    last_checked: u64,
    next_check: u64,
    failures: u32,
    boot_marked: bool,
    boot_unhealthy: bool,
    boot_event_pending: bool,
    interactive: bool,
    rng: rand::rngs::StdRng,
}

impl Engine {
    /// Starts at time `now` (seconds since the Unix epoch). The first check
    /// is scheduled `initial ± fuzz/2` later; `seed` drives the jitter.
    pub fn new(id: Identity, timing: Timing, persisted: Persisted, now: u64, seed: u64) -> Self {
        let mut e = Self {
            id,
            timing,
            status: Status::Idle,
            progress: 0.0,
            offer: None,
            last_checked: 0,
            next_check: 0,
            failures: 0,
            boot_marked: false,
            boot_unhealthy: false,
            boot_event_pending: persisted.need_reboot.is_none(),
            interactive: false,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            persisted,
        };
        if let Some((v, size)) = e.persisted.need_reboot.clone() {
            // A restarted daemon comes back waiting for the reboot.
            e.status = Status::UpdatedNeedReboot;
            e.progress = 1.0;
            e.offer = Some(Offer {
                version: v.to_string(),
                urls: vec![],
                size,
                sha256: [0; 32],
                signed_manifest: None,
                disable_payload_backoff: false,
            });
        }
        e.next_check = now + e.fuzzed(e.timing.initial, e.timing.fuzz);
        e
    }

    /// The current status.
    pub fn status(&self) -> StatusReport {
        StatusReport {
            last_checked_time: self.last_checked,
            progress: self.progress,
            current_operation: self.status,
            new_version: self
                .offer
                .as_ref()
                .map(|o| o.version.clone())
                .unwrap_or_else(|| "0.0.0.0".into()),
            new_size: self.offer.as_ref().map(|o| o.size).unwrap_or(0),
        }
    }

    /// Moves the first (or next) scheduled check to `at` (a daemon flag such
    /// as `--first-check-delay`, for tests and impatient operators).
    pub fn schedule_check_at(&mut self, at: u64) {
        self.next_check = at;
    }

    /// When the next periodic check is due.
    pub fn next_wakeup(&self) -> u64 {
        self.next_check
    }

    /// The identity the engine reports.
    pub fn identity(&self) -> &Identity {
        &self.id
    }

    /// The offer being installed, if any.
    pub fn current_offer(&self) -> Option<&Offer> {
        self.offer.as_ref()
    }

    /// The persisted state.
    pub fn persisted(&self) -> &Persisted {
        &self.persisted
    }

    fn fuzzed(&mut self, interval: u64, fuzz: u64) -> u64 {
        let lo = interval.saturating_sub(fuzz / 2);
        lo + self.rng.gen_range(0..=fuzz)
    }

    fn set_status(&mut self, s: Status, out: &mut Vec<Action>) {
        self.status = s;
        out.push(Action::StatusChanged(self.status()));
    }

    fn schedule_periodic(&mut self, now: u64, poll_interval: Option<u64>) {
        let d = match poll_interval {
            Some(p) if p > 0 => p,
            _ => self.fuzzed(self.timing.periodic, self.timing.fuzz),
        };
        self.next_check = now + d;
    }

    /// After an unreachable server or an HTTP error: double the interval per
    /// consecutive failure, cap it, fuzz by ±half, and never go below the
    /// regular period.
    fn schedule_backoff(&mut self, now: u64) {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u64 << self.failures.min(20);
        let interval = self
            .timing
            .periodic
            .saturating_mul(factor)
            .min(self.timing.max_backoff);
        let d = self.fuzzed(interval, interval);
        let d = if d < self.timing.periodic {
            self.fuzzed(self.timing.periodic, self.timing.fuzz)
        } else {
            d
        };
        self.next_check = now + d;
    }

    fn app(&self) -> RequestApp {
        RequestApp {
            app_id: self.id.app_id.clone(),
            version: self.id.version.to_string(),
            track: self.id.track.clone(),
            boot_id: Some(self.id.boot_id.clone()),
            machine_id: Some(self.id.machine_id.clone()),
            machine_alias: self.id.machine_alias.clone(),
            oem: self.id.oem.clone(),
            lang: Some("en-US".into()),
            board: Some(self.id.board.clone()),
            delta_okay: Some("false".into()),
            ..Default::default()
        }
    }

    fn request(&self, app: RequestApp) -> Request {
        Request {
            protocol: "3.0".into(),
            version: Some(format!("keelson-{}", env!("CARGO_PKG_VERSION"))),
            updater_version: Some(format!("keelson-{}", env!("CARGO_PKG_VERSION"))),
            install_source: Some(
                if self.interactive {
                    "ondemandupdate"
                } else {
                    "scheduler"
                }
                .into(),
            ),
            is_machine: Some("1".into()),
            os: Some(Os {
                version: "Chateau".into(),
                platform: "CoreOS".into(),
                sp: format!("{}_{}", self.id.version, arch_of(&self.id.board)),
            }),
            apps: vec![app],
        }
    }

    /// An event-only request.
    pub fn event_request(&self, event: Event) -> Request {
        self.request(RequestApp {
            events: vec![event],
            ..self.app()
        })
    }

    /// The post-reboot event: 3/2, or 3/0 with code 44 when the machine is
    /// still running the version it updated from.
    fn boot_event(&mut self, out: &mut Vec<Action>) -> Option<Event> {
        if !self.boot_event_pending {
            return None;
        }
        self.boot_event_pending = false;
        let prev = self.persisted.previous_version.take()?;
        out.push(Action::Persist(self.persisted.clone()));
        if prev == self.id.version {
            tracing::warn!(version = %prev, "Rollback detected, still running {prev} after update");
            Some(Event::rollback())
        } else {
            Some(Event::rebooted(&prev.to_string()))
        }
    }

    fn start_check(&mut self, out: &mut Vec<Action>) {
        if !self.boot_marked {
            if self.boot_unhealthy {
                return;
            }
            out.push(Action::MarkBootGood);
            return;
        }
        let mut app = self.app();
        app.ping = Some(Ping {
            active: Some("1".into()),
            status: None,
        });
        if let Some(ev) = self.boot_event(out) {
            app.events.push(ev);
        }
        if self.status == Status::UpdatedNeedReboot {
            // Instance-Hold: keep the server's view alive, never a second update.
            out.push(Action::SendCheck(self.request(app)));
            return;
        }
        app.update_check = Some(UpdateCheckRequest::default());
        let req = self.request(app);
        self.set_status(Status::CheckingForUpdate, out);
        out.push(Action::SendCheck(req));
    }

    fn fail(&mut self, now: u64, code: ErrorCode, out: &mut Vec<Action>) {
        tracing::warn!(%code, "update failed");
        self.schedule_periodic(now, None);
        self.set_status(Status::ReportingErrorEvent, out);
        out.push(Action::SendEvent(self.event_request(Event::error(code))));
    }

    fn back_to_idle(&mut self, out: &mut Vec<Action>) {
        self.progress = 0.0;
        self.offer = None;
        self.interactive = false;
        self.set_status(Status::Idle, out);
    }

    /// Feeds one input at time `now` and returns what to do.
    pub fn handle(&mut self, now: u64, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {
                let can = matches!(self.status, Status::Idle | Status::UpdatedNeedReboot);
                if can && now >= self.next_check {
                    self.schedule_periodic(now, None);
                    self.start_check(&mut out);
                }
            }
            Input::CheckNow => {
                if matches!(self.status, Status::Idle) {
                    self.interactive = true;
                    self.start_check(&mut out);
                }
            }
            Input::ResetStatus => {
                if matches!(
                    self.status,
                    Status::UpdatedNeedReboot | Status::ReportingErrorEvent
                ) {
                    self.persisted.need_reboot = None;
                    out.push(Action::Persist(self.persisted.clone()));
                }
                if !matches!(
                    self.status,
                    Status::CheckingForUpdate
                        | Status::Downloading
                        | Status::Verifying
                        | Status::Finalizing
                ) {
                    self.back_to_idle(&mut out);
                }
            }
            Input::BootMarked(Ok(())) => {
                self.boot_marked = true;
                if matches!(self.status, Status::Idle | Status::UpdatedNeedReboot) {
                    self.start_check(&mut out);
                }
            }
            Input::BootMarked(Err(reason)) => {
                // Never update from a slot that did not pass its health check:
                // the next boot falls back to the other slot.
                tracing::error!(%reason, "health check failed; the running slot stays unverified");
                self.boot_unhealthy = true;
            }
            Input::CheckCompleted(result) => self.on_check(now, result, &mut out),
            Input::DownloadProgress(bytes) => {
                if self.status == Status::Downloading {
                    let total = self.offer.as_ref().map(|o| o.size).unwrap_or(0).max(1);
                    self.progress = (bytes as f64 / total as f64).clamp(0.0, 1.0);
                    out.push(Action::StatusChanged(self.status()));
                }
            }
            Input::DownloadCompleted(r) => {
                if self.status == Status::Downloading {
                    match r {
                        Ok(()) => {
                            self.progress = 1.0;
                            out.push(Action::SendEvent(
                                self.event_request(Event::download_finished()),
                            ));
                            self.set_status(Status::Verifying, &mut out);
                            out.push(Action::Verify);
                        }
                        Err(code) => self.fail(now, code, &mut out),
                    }
                }
            }
            Input::VerifyCompleted(r) => {
                if self.status == Status::Verifying {
                    match r {
                        Ok(()) => {
                            self.set_status(Status::Finalizing, &mut out);
                            out.push(Action::Finalize);
                        }
                        Err(code) => self.fail(now, code, &mut out),
                    }
                }
            }
            Input::FinalizeCompleted(r) => {
                if self.status == Status::Finalizing {
                    match r {
                        Ok(()) => {
                            let size = self.offer.as_ref().map(|o| o.size).unwrap_or(0);
                            let new = self
                                .offer
                                .as_ref()
                                .and_then(|o| o.version.parse::<Version>().ok())
                                .unwrap_or_else(Version::zero);
                            self.persisted.previous_version = Some(self.id.version.clone());
                            self.persisted.need_reboot = Some((new, size));
                            out.push(Action::Persist(self.persisted.clone()));
                            out.push(Action::SendEvent(self.event_request(Event::installed())));
                            self.interactive = false;
                            self.set_status(Status::UpdatedNeedReboot, &mut out);
                        }
                        Err(code) => self.fail(now, code, &mut out),
                    }
                }
            }
            Input::EventSent => {
                if self.status == Status::ReportingErrorEvent {
                    self.back_to_idle(&mut out);
                }
            }
        }
        out
    }

    fn on_check(
        &mut self,
        now: u64,
        result: Result<CheckOutcome, CheckFailure>,
        out: &mut Vec<Action>,
    ) {
        if self.status == Status::UpdatedNeedReboot {
            // A ping's answer: only the schedule matters.
            if result.is_ok() {
                self.last_checked = now;
            }
            return;
        }
        if self.status != Status::CheckingForUpdate {
            return;
        }
        match result {
            Ok(CheckOutcome::NoUpdate { poll_interval }) => {
                self.failures = 0;
                self.last_checked = now;
                self.schedule_periodic(now, poll_interval);
                self.back_to_idle(out);
            }
            Ok(CheckOutcome::Update {
                offer,
                poll_interval,
            }) => {
                self.failures = 0;
                self.last_checked = now;
                self.schedule_periodic(now, poll_interval);
                match offer.version.parse::<Version>() {
                    Ok(v) if v > self.id.version => {
                        self.offer = Some(offer.clone());
                        self.set_status(Status::UpdateAvailable, out);
                        out.push(Action::SendEvent(
                            self.event_request(Event::download_started()),
                        ));
                        self.progress = 0.0;
                        self.set_status(Status::Downloading, out);
                        out.push(Action::Download(offer));
                    }
                    Ok(v) => {
                        // Never downgrade: wait until the channel has a newer version.
                        tracing::info!(offered = %v, running = %self.id.version, "ignoring an offer that is not newer");
                        self.back_to_idle(out);
                    }
                    Err(_) => self.fail(now, ErrorCode::OMAHA_RESPONSE_INVALID, out),
                }
            }
            Err(CheckFailure::BadResponse(code, msg)) => {
                tracing::warn!(%code, %msg, "bad Omaha response");
                self.fail(now, code, out);
            }
            Err(CheckFailure::Http(status)) => {
                tracing::warn!(status, "Omaha server answered with an HTTP error");
                self.schedule_backoff(now);
                self.back_to_idle(out);
            }
            Err(CheckFailure::Unreachable(msg)) => {
                tracing::warn!(%msg, "Omaha server unreachable");
                self.schedule_backoff(now);
                self.back_to_idle(out);
            }
        }
    }
}

fn arch_of(board: &str) -> &str {
    match board {
        "arm64-usr" => "aarch64",
        _ => "x86_64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: &str) -> Identity {
        Identity {
            app_id: format!("{{{}}}", crate::omaha::COREOS_APP_ID),
            version: v.parse().unwrap(),
            track: "stable".into(),
            machine_id: "m1".into(),
            boot_id: "b1".into(),
            board: "amd64-usr".into(),
            oem: None,
            machine_alias: None,
        }
    }

    fn offer(v: &str) -> Offer {
        Offer {
            version: v.into(),
            urls: vec!["http://x/update.gz".into()],
            size: 100,
            sha256: [1; 32],
            signed_manifest: None,
            disable_payload_backoff: true,
        }
    }

    fn sent_events(actions: &[Action]) -> Vec<(u32, u32, Option<u32>)> {
        actions
            .iter()
            .flat_map(|a| match a {
                Action::SendEvent(r) | Action::SendCheck(r) => r.apps[0].events.clone(),
                _ => vec![],
            })
            .map(|e| (e.event_type, e.event_result, e.error_code))
            .collect()
    }

    /// Runs mark-good and returns the actions of the first check.
    fn first_check(e: &mut Engine, now: u64) -> Vec<Action> {
        let a = e.handle(now, Input::Tick);
        assert_eq!(a, vec![Action::MarkBootGood]);
        e.handle(now, Input::BootMarked(Ok(())))
    }

    #[test]
    fn first_check_is_2_to_12_minutes_after_start() {
        for seed in 0..200 {
            let e = Engine::new(
                id("723.3.0"),
                Timing::default(),
                Persisted::default(),
                1000,
                seed,
            );
            let d = e.next_wakeup() - 1000;
            assert!((120..=720).contains(&d), "{d}");
        }
        let mut e = Engine::new(id("723.3.0"), Timing::default(), Persisted::default(), 0, 1);
        assert!(e.handle(60, Input::Tick).is_empty(), "not due yet");
    }

    #[test]
    fn full_update_sequence() {
        let mut e = Engine::new(id("723.3.0"), Timing::default(), Persisted::default(), 0, 7);
        let t = e.next_wakeup();
        let a = first_check(&mut e, t);
        let Some(Action::SendCheck(req)) = a.iter().find(|x| matches!(x, Action::SendCheck(_)))
        else {
            panic!("{a:?}")
        };
        assert!(req.apps[0].update_check.is_some());
        assert!(req.apps[0].ping.is_some());
        assert_eq!(req.install_source.as_deref(), Some("scheduler"));
        assert_eq!(e.status().current_operation, Status::CheckingForUpdate);

        let mut all = Vec::new();
        all.extend(e.handle(
            t + 1,
            Input::CheckCompleted(Ok(CheckOutcome::Update {
                offer: offer("766.3.0"),
                poll_interval: None,
            })),
        ));
        assert!(all.contains(&Action::Download(offer("766.3.0"))));
        assert_eq!(e.status().current_operation, Status::Downloading);
        e.handle(t + 2, Input::DownloadProgress(50));
        assert_eq!(e.status().progress, 0.5);
        all.extend(e.handle(t + 3, Input::DownloadCompleted(Ok(()))));
        assert!(all.contains(&Action::Verify));
        all.extend(e.handle(t + 4, Input::VerifyCompleted(Ok(()))));
        assert!(all.contains(&Action::Finalize));
        all.extend(e.handle(t + 5, Input::FinalizeCompleted(Ok(()))));
        assert_eq!(
            sent_events(&all),
            vec![(13, 1, None), (14, 1, None), (3, 1, None)]
        );
        let st = e.status();
        assert_eq!(st.current_operation, Status::UpdatedNeedReboot);
        assert_eq!(st.new_version, "766.3.0");
        assert_eq!(st.last_checked_time, t + 1);
        assert!(st
            .render()
            .contains("CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\n"));
        assert_eq!(
            e.persisted().previous_version,
            Some("723.3.0".parse().unwrap())
        );

        // periodic checks now only ping
        let n = e.next_wakeup();
        let a = e.handle(n, Input::Tick);
        let Some(Action::SendCheck(req)) = a.iter().find(|x| matches!(x, Action::SendCheck(_)))
        else {
            panic!("{a:?}")
        };
        assert!(req.apps[0].update_check.is_none());
        assert_eq!(e.status().current_operation, Status::UpdatedNeedReboot);

        // a restarted daemon comes back in the same state
        let e2 = Engine::new(
            id("723.3.0"),
            Timing::default(),
            e.persisted().clone(),
            n,
            1,
        );
        assert_eq!(e2.status().current_operation, Status::UpdatedNeedReboot);
        assert_eq!(e2.status().new_version, "766.3.0");
    }

    #[test]
    fn reboot_into_new_version_reports_3_2_and_rollback_reports_44() {
        let p = Persisted {
            previous_version: Some("723.3.0".parse().unwrap()),
            need_reboot: None,
        };
        let mut e = Engine::new(id("766.3.0"), Timing::default(), p.clone(), 0, 1);
        let a = {
            let t = e.next_wakeup();
            first_check(&mut e, t)
        };
        assert_eq!(sent_events(&a), vec![(3, 2, None)]);
        assert!(a.contains(&Action::Persist(Persisted::default())));

        let mut e = Engine::new(id("723.3.0"), Timing::default(), p, 0, 1);
        let a = {
            let t = e.next_wakeup();
            first_check(&mut e, t)
        };
        assert_eq!(sent_events(&a), vec![(3, 0, Some(44))]);
        // only once
        e.handle(
            e.next_wakeup(),
            Input::CheckCompleted(Ok(CheckOutcome::NoUpdate {
                poll_interval: None,
            })),
        );
        let a = e.handle(e.next_wakeup(), Input::Tick);
        assert_eq!(sent_events(&a), vec![]);
    }

    #[test]
    fn never_downgrades() {
        let mut e = Engine::new(id("808.0.0"), Timing::default(), Persisted::default(), 0, 1);
        {
            let t = e.next_wakeup();
            first_check(&mut e, t)
        };
        let a = e.handle(
            1000,
            Input::CheckCompleted(Ok(CheckOutcome::Update {
                offer: offer("766.3.0"),
                poll_interval: None,
            })),
        );
        assert!(!a.iter().any(|x| matches!(x, Action::Download(_))));
        assert_eq!(e.status().current_operation, Status::Idle);
    }

    #[test]
    fn errors_report_an_event_then_go_idle() {
        let mut e = Engine::new(id("723.3.0"), Timing::default(), Persisted::default(), 0, 1);
        {
            let t = e.next_wakeup();
            first_check(&mut e, t)
        };
        e.handle(
            1000,
            Input::CheckCompleted(Ok(CheckOutcome::Update {
                offer: offer("766.3.0"),
                poll_interval: None,
            })),
        );
        let a = e.handle(
            1001,
            Input::DownloadCompleted(Err(ErrorCode::PAYLOAD_HASH_MISMATCH)),
        );
        assert_eq!(sent_events(&a), vec![(3, 0, Some(10))]);
        assert_eq!(e.status().current_operation, Status::ReportingErrorEvent);
        e.handle(1002, Input::EventSent);
        assert_eq!(e.status().current_operation, Status::Idle);
        assert_eq!(e.persisted().previous_version, None);

        // malformed response: error 31 event
        let mut e = Engine::new(id("723.3.0"), Timing::default(), Persisted::default(), 0, 1);
        {
            let t = e.next_wakeup();
            first_check(&mut e, t)
        };
        let a = e.handle(
            1000,
            Input::CheckCompleted(Err(CheckFailure::BadResponse(
                ErrorCode::OMAHA_REQUEST_XML_PARSE,
                "x".into(),
            ))),
        );
        assert_eq!(sent_events(&a), vec![(3, 0, Some(31))]);
        assert_eq!(
            e.status().last_checked_time,
            0,
            "only successful checks count"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut e = Engine::new(id("723.3.0"), Timing::default(), Persisted::default(), 0, 3);
        let mut now = e.next_wakeup();
        first_check(&mut e, now);
        let mut delays = Vec::new();
        for _ in 0..10 {
            e.handle(now, Input::CheckCompleted(Err(CheckFailure::Http(503))));
            let d = e.next_wakeup() - now;
            delays.push(d);
            now = e.next_wakeup();
            e.handle(now, Input::Tick);
        }
        for d in &delays {
            assert!(*d >= 40 * 60 && *d <= 6 * 3600, "{d}");
        }
        // later delays are centred on the 4 h cap: [2 h, 6 h]
        assert!(delays[5..].iter().all(|d| *d >= 2 * 3600), "{delays:?}");
        // success resets
        e.handle(
            now,
            Input::CheckCompleted(Ok(CheckOutcome::NoUpdate {
                poll_interval: None,
            })),
        );
        let d = e.next_wakeup() - now;
        assert!((40 * 60..=50 * 60).contains(&d), "{d}");
    }

    #[test]
    fn poll_interval_replaces_the_period() {
        let mut e = Engine::new(id("723.3.0"), Timing::default(), Persisted::default(), 0, 3);
        let now = e.next_wakeup();
        first_check(&mut e, now);
        e.handle(
            now,
            Input::CheckCompleted(Ok(CheckOutcome::NoUpdate {
                poll_interval: Some(90),
            })),
        );
        assert_eq!(e.next_wakeup(), now + 90);
    }

    #[test]
    fn unhealthy_boot_never_checks() {
        let mut e = Engine::new(id("766.3.0"), Timing::default(), Persisted::default(), 0, 3);
        let now = e.next_wakeup();
        assert_eq!(e.handle(now, Input::Tick), vec![Action::MarkBootGood]);
        assert!(e
            .handle(now, Input::BootMarked(Err("unit failed".into())))
            .is_empty());
        assert!(e.handle(now, Input::CheckNow).is_empty());
        assert!(e.handle(e.next_wakeup(), Input::Tick).is_empty());
    }

    #[test]
    fn interactive_check_and_reset() {
        let mut e = Engine::new(id("723.3.0"), Timing::default(), Persisted::default(), 0, 3);
        assert_eq!(e.handle(5, Input::CheckNow), vec![Action::MarkBootGood]);
        let a = e.handle(5, Input::BootMarked(Ok(())));
        let Some(Action::SendCheck(req)) = a.iter().find(|x| matches!(x, Action::SendCheck(_)))
        else {
            panic!()
        };
        assert_eq!(req.install_source.as_deref(), Some("ondemandupdate"));
        assert_eq!(Status::parse("UPDATE_STATUS_IDLE"), Some(Status::Idle));
        assert_eq!(
            e.status().render(),
            "LAST_CHECKED_TIME=0\nPROGRESS=0.000000\nCURRENT_OP=UPDATE_STATUS_CHECKING_FOR_UPDATE\nNEW_VERSION=0.0.0.0\nNEW_SIZE=0\n"
        );
    }
}
