//! Omaha v3 as CoreOS and Flatcar speak it.
//!
//! update_engine and CoreUpdate/Nebraska exchange small XML documents: a
//! `<request>` with one `<app>` carrying a ping, an optional update check and
//! an optional event, and a `<response>` answering each part. The types here
//! mirror those documents attribute for attribute so that a Keelson node can
//! talk to Nebraska and a Flatcar machine can talk to Keelson's server. Parsing
//! is strict where the client's decisions depend on a value (status, URLs,
//! size, sha256) and lenient elsewhere: unknown attributes are ignored, as the
//! original ignores Chrome OS leftovers.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The Container Linux application id, without braces.
pub const COREOS_APP_ID: &str = "e96281a6-d1af-4bde-9a0a-97b76e56dc57";

/// Attribute on the postinstall action carrying Keelson's signed manifest
/// (base64 of its JSON). Other clients ignore unknown attributes.
pub const MANIFEST_ATTR: &str = "KeelsonManifest";

/// Errors reading or writing Omaha documents.
#[derive(Debug, thiserror::Error)]
pub enum OmahaError {
    /// The body was empty (error code 30).
    #[error("empty Omaha response")]
    Empty,
    /// The document is not well-formed XML or does not have the Omaha shape (31).
    #[error("malformed Omaha XML: {0}")]
    Xml(String),
    /// The document parsed but lacks something the client needs (34).
    #[error("invalid Omaha response: {0}")]
    Invalid(String),
    /// Serializing a document failed (a bug: every field is serializable).
    #[error("cannot serialize Omaha document: {0}")]
    Serialize(String),
}

impl OmahaError {
    /// The update_engine error code this maps onto.
    pub fn code(&self) -> ErrorCode {
        match self {
            OmahaError::Empty => ErrorCode::OMAHA_REQUEST_EMPTY_RESPONSE,
            OmahaError::Xml(_) => ErrorCode::OMAHA_REQUEST_XML_PARSE,
            OmahaError::Invalid(_) => ErrorCode::OMAHA_RESPONSE_INVALID,
            OmahaError::Serialize(_) => ErrorCode::ERROR,
        }
    }
}

/// An update_engine action exit code, as sent in `errorcode=` (section 5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub const SUCCESS: Self = Self(0);
    pub const ERROR: Self = Self(1);
    pub const OMAHA_REQUEST_ERROR: Self = Self(2);
    pub const OMAHA_RESPONSE_HANDLER_ERROR: Self = Self(3);
    pub const FILESYSTEM_COPIER_ERROR: Self = Self(4);
    pub const POSTINSTALL_RUNNER_ERROR: Self = Self(5);
    pub const INSTALL_DEVICE_OPEN_ERROR: Self = Self(7);
    pub const DOWNLOAD_TRANSFER_ERROR: Self = Self(9);
    pub const PAYLOAD_HASH_MISMATCH: Self = Self(10);
    pub const PAYLOAD_SIZE_MISMATCH: Self = Self(11);
    pub const DOWNLOAD_PAYLOAD_VERIFICATION: Self = Self(12);
    pub const DOWNLOAD_WRITE_ERROR: Self = Self(14);
    pub const NEW_ROOTFS_VERIFICATION: Self = Self(15);
    pub const SIGNED_DELTA_PAYLOAD_EXPECTED: Self = Self(17);
    pub const DOWNLOAD_PAYLOAD_PUBKEY_VERIFICATION: Self = Self(18);
    pub const OMAHA_REQUEST_EMPTY_RESPONSE: Self = Self(30);
    pub const OMAHA_REQUEST_XML_PARSE: Self = Self(31);
    pub const OMAHA_RESPONSE_INVALID: Self = Self(34);
    pub const UPDATE_IGNORED_PER_POLICY: Self = Self(35);
    pub const UPDATE_DEFERRED_PER_POLICY: Self = Self(36);
    pub const OMAHA_ERROR_IN_HTTP_RESPONSE: Self = Self(37);
    pub const UPDATE_DEFERRED_FOR_BACKOFF: Self = Self(40);
    /// Booted back into the previous version after an update.
    pub const ROLLBACK: Self = Self(44);
    pub const DOWNLOAD_INCOMPLETE: Self = Self(100);
    /// `2000 + N` for HTTP status N.
    pub const HTTP_RESPONSE_BASE: u32 = 2000;

    /// Flag bits a client may OR into a code; servers mask them off.
    pub const FLAG_MASK: u32 = (1 << 31) | (1 << 30) | (1 << 29) | (1 << 28);
    /// Flag: the download was resumed.
    pub const FLAG_RESUMED: u32 = 1 << 30;

    /// The code for HTTP status `status` from the Omaha server.
    pub fn http(status: u16) -> Self {
        Self(Self::HTTP_RESPONSE_BASE + u32::from(status))
    }

    /// The code with the flag bits removed.
    pub fn base(self) -> Self {
        Self(self.0 & !Self::FLAG_MASK)
    }

    /// update_engine's name for the (masked) code.
    pub fn name(self) -> &'static str {
        match self.base().0 {
            0 => "Success",
            1 => "Error",
            2 => "OmahaRequestError",
            3 => "OmahaResponseHandlerError",
            4 => "FilesystemCopierError",
            5 => "PostinstallRunnerError",
            7 => "InstallDeviceOpenError",
            9 => "DownloadTransferError",
            10 => "PayloadHashMismatchError",
            11 => "PayloadSizeMismatchError",
            12 => "DownloadPayloadVerificationError",
            14 => "DownloadWriteError",
            15 => "NewRootfsVerificationError",
            17 => "SignedDeltaPayloadExpectedError",
            18 => "DownloadPayloadPubKeyVerificationError",
            20..=29 => "DownloadPayloadStructureError",
            30 => "OmahaRequestEmptyResponseError",
            31 => "OmahaRequestXMLParseError",
            34 => "OmahaResponseInvalid",
            35 => "OmahaUpdateIgnoredPerPolicy",
            36 => "OmahaUpdateDeferredPerPolicy",
            37 => "OmahaErrorInHTTPResponse",
            40 => "OmahaUpdateDeferredForBackoff",
            42 => "NewPCRPolicyVerificationError",
            43 => "NewPCRPolicyHTTPError",
            44 => "RollbackError",
            100 => "DownloadIncomplete",
            2000..=2999 => "OmahaRequestHTTPResponseBase",
            _ => "Unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// Omaha event types used by update_engine (section 5.3).
pub mod event_type {
    pub const UPDATE_COMPLETE: u32 = 3;
    pub const UPDATE_DOWNLOAD_STARTED: u32 = 13;
    pub const UPDATE_DOWNLOAD_FINISHED: u32 = 14;
    /// CoreUpdate: installed but completion prevented by the instance.
    pub const INSTALL_PREVENTED: u32 = 800;
}

/// Omaha event results.
pub mod event_result {
    pub const ERROR: u32 = 0;
    pub const SUCCESS: u32 = 1;
    pub const SUCCESS_REBOOT: u32 = 2;
    pub const UPDATE_DEFERRED: u32 = 9;
}

/// `<request>`: what a client posts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "request")]
pub struct Request {
    #[serde(rename = "@protocol")]
    pub protocol: String,
    #[serde(rename = "@version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(
        rename = "@updaterversion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub updater_version: Option<String>,
    #[serde(
        rename = "@installsource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub install_source: Option<String>,
    #[serde(
        rename = "@ismachine",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub is_machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Os>,
    #[serde(rename = "app", default)]
    pub apps: Vec<RequestApp>,
}

/// `<os>` in a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Os {
    #[serde(rename = "@version", default)]
    pub version: String,
    #[serde(rename = "@platform", default)]
    pub platform: String,
    #[serde(rename = "@sp", default)]
    pub sp: String,
}

/// `<app>` in a request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RequestApp {
    #[serde(rename = "@appid")]
    pub app_id: String,
    #[serde(rename = "@version")]
    pub version: String,
    #[serde(rename = "@track", default)]
    pub track: String,
    #[serde(rename = "@bootid", default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(rename = "@oem", default, skip_serializing_if = "Option::is_none")]
    pub oem: Option<String>,
    #[serde(
        rename = "@oemversion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub oem_version: Option<String>,
    #[serde(
        rename = "@alephversion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub aleph_version: Option<String>,
    #[serde(
        rename = "@machineid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub machine_id: Option<String>,
    #[serde(
        rename = "@machinealias",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub machine_alias: Option<String>,
    #[serde(rename = "@lang", default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(rename = "@board", default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    #[serde(
        rename = "@hardware_class",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hardware_class: Option<String>,
    #[serde(
        rename = "@delta_okay",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delta_okay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<Ping>,
    #[serde(
        rename = "updatecheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub update_check: Option<UpdateCheckRequest>,
    #[serde(rename = "event", default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

impl RequestApp {
    /// The app id without surrounding braces, lower-cased, as servers compare it.
    pub fn normalized_app_id(&self) -> String {
        normalize_app_id(&self.app_id)
    }

    /// The instance identity: `machineid`, falling back to `bootid` as the
    /// CoreUpdate documentation's minimal example carries only that.
    pub fn instance_id(&self) -> Option<&str> {
        self.machine_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.boot_id.as_deref().filter(|s| !s.is_empty()))
    }
}

/// Strips one pair of braces and lower-cases an app id.
pub fn normalize_app_id(id: &str) -> String {
    let t = id.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(t);
    t.to_ascii_lowercase()
}

/// `<ping>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    #[serde(rename = "@active", default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    #[serde(rename = "@status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `<updatecheck>` in a request (no attributes in CoreOS's client).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateCheckRequest {
    #[serde(
        rename = "@targetversionprefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_version_prefix: Option<String>,
}

/// `<event>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "@eventtype")]
    pub event_type: u32,
    #[serde(rename = "@eventresult")]
    pub event_result: u32,
    #[serde(
        rename = "@errorcode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_code: Option<u32>,
    #[serde(
        rename = "@previousversion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_version: Option<String>,
}

impl Event {
    /// 13/1: download started.
    pub fn download_started() -> Self {
        Self::new(event_type::UPDATE_DOWNLOAD_STARTED, event_result::SUCCESS)
    }
    /// 14/1: download finished.
    pub fn download_finished() -> Self {
        Self::new(event_type::UPDATE_DOWNLOAD_FINISHED, event_result::SUCCESS)
    }
    /// 3/1: installed, reboot pending.
    pub fn installed() -> Self {
        Self::new(event_type::UPDATE_COMPLETE, event_result::SUCCESS)
    }
    /// 3/2: first check after rebooting into a new version.
    pub fn rebooted(previous_version: &str) -> Self {
        Self {
            previous_version: Some(previous_version.to_string()),
            ..Self::new(event_type::UPDATE_COMPLETE, event_result::SUCCESS_REBOOT)
        }
    }
    /// 3/0 with an error code.
    pub fn error(code: ErrorCode) -> Self {
        Self {
            error_code: Some(code.0),
            ..Self::new(event_type::UPDATE_COMPLETE, event_result::ERROR)
        }
    }
    /// 3/0 with error 44: booted back into the old version.
    pub fn rollback() -> Self {
        Self::error(ErrorCode::ROLLBACK)
    }

    fn new(event_type: u32, event_result: u32) -> Self {
        Self {
            event_type,
            event_result,
            error_code: None,
            previous_version: None,
        }
    }
}

/// `<response>`: what a server answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "response")]
pub struct Response {
    #[serde(rename = "@protocol")]
    pub protocol: String,
    #[serde(rename = "@server", default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daystart: Option<DayStart>,
    #[serde(rename = "app", default)]
    pub apps: Vec<ResponseApp>,
}

/// `<daystart>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayStart {
    #[serde(rename = "@elapsed_seconds", default)]
    pub elapsed_seconds: String,
}

/// `<app>` in a response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResponseApp {
    #[serde(rename = "@appid")]
    pub app_id: String,
    #[serde(rename = "@status", default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<Ping>,
    #[serde(
        rename = "updatecheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub update_check: Option<UpdateCheckResponse>,
    #[serde(rename = "event", default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventAck>,
}

/// `<event status="ok"/>` acknowledging an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventAck {
    #[serde(rename = "@status", default)]
    pub status: String,
}

/// `<updatecheck>` in a response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateCheckResponse {
    #[serde(rename = "@status", default)]
    pub status: String,
    #[serde(
        rename = "@PollInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub poll_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Urls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

/// `<urls>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Urls {
    #[serde(rename = "url", default)]
    pub urls: Vec<Url>,
}

/// `<url codebase=…>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Url {
    #[serde(rename = "@codebase", default)]
    pub codebase: String,
}

/// `<manifest version=…>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "@version", default)]
    pub version: String,
    #[serde(default)]
    pub packages: Packages,
    #[serde(default)]
    pub actions: Actions,
}

/// `<packages>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Packages {
    #[serde(rename = "package", default)]
    pub packages: Vec<Package>,
}

/// `<package>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    #[serde(rename = "@hash", default)]
    pub hash: String,
    #[serde(rename = "@name", default)]
    pub name: String,
    #[serde(rename = "@size", default)]
    pub size: String,
    #[serde(rename = "@required", default, skip_serializing_if = "Option::is_none")]
    pub required: Option<String>,
}

/// `<actions>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Actions {
    #[serde(rename = "action", default)]
    pub actions: Vec<Action>,
}

/// `<action event="postinstall" …>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Action {
    #[serde(rename = "@event", default)]
    pub event: String,
    #[serde(rename = "@sha256", default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(
        rename = "@needsadmin",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub needs_admin: Option<String>,
    #[serde(rename = "@IsDelta", default, skip_serializing_if = "Option::is_none")]
    pub is_delta: Option<String>,
    #[serde(
        rename = "@IsDeltaPayload",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub is_delta_payload: Option<String>,
    #[serde(
        rename = "@DisablePayloadBackoff",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_payload_backoff: Option<String>,
    #[serde(
        rename = "@MaxFailureCountPerUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_failure_count_per_url: Option<String>,
    #[serde(
        rename = "@MetadataSignatureRsa",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_signature_rsa: Option<String>,
    #[serde(
        rename = "@MetadataSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_size: Option<String>,
    /// Keelson: base64 of the signed payload manifest (see [`crate::payload`]).
    #[serde(
        rename = "@KeelsonManifest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub keelson_manifest: Option<String>,
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

fn to_xml<T: Serialize>(value: &T) -> Result<String, OmahaError> {
    let body = quick_xml::se::to_string(value).map_err(|e| OmahaError::Serialize(e.to_string()))?;
    Ok(format!("{XML_DECL}{body}"))
}

fn from_xml<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, OmahaError> {
    if text.trim().is_empty() {
        return Err(OmahaError::Empty);
    }
    quick_xml::de::from_str(text).map_err(|e| OmahaError::Xml(e.to_string()))
}

impl Request {
    /// Serializes with the XML declaration.
    pub fn to_xml(&self) -> Result<String, OmahaError> {
        to_xml(self)
    }

    /// Parses a request document; it must have `protocol="3.0"` and one app.
    pub fn from_xml(text: &str) -> Result<Self, OmahaError> {
        let req: Request = from_xml(text)?;
        if req.protocol != "3.0" {
            return Err(OmahaError::Invalid(format!(
                "unsupported protocol {:?}, expected \"3.0\"",
                req.protocol
            )));
        }
        if req.apps.is_empty() {
            return Err(OmahaError::Invalid("request has no <app>".into()));
        }
        Ok(req)
    }
}

impl Response {
    /// Serializes with the XML declaration.
    pub fn to_xml(&self) -> Result<String, OmahaError> {
        to_xml(self)
    }

    /// Parses a response document.
    pub fn from_xml(text: &str) -> Result<Self, OmahaError> {
        let resp: Response = from_xml(text)?;
        if resp.protocol != "3.0" {
            return Err(OmahaError::Invalid(format!(
                "unsupported protocol {:?}, expected \"3.0\"",
                resp.protocol
            )));
        }
        Ok(resp)
    }

    /// A response with one app, `daystart` and the given server name.
    pub fn for_app(app: ResponseApp) -> Self {
        Response {
            protocol: "3.0".into(),
            server: Some("keelson".into()),
            daystart: Some(DayStart {
                elapsed_seconds: "0".into(),
            }),
            apps: vec![app],
        }
    }

    /// Interprets the update check the way update_engine does (section 5.2).
    pub fn update_check_outcome(&self) -> Result<CheckOutcome, OmahaError> {
        let app = self
            .apps
            .first()
            .ok_or_else(|| OmahaError::Invalid("response has no <app>".into()))?;
        let uc = app.update_check.as_ref().ok_or_else(|| {
            OmahaError::Invalid(format!(
                "no <updatecheck> in response (app status {:?})",
                app.status
            ))
        })?;
        let poll_interval = match &uc.poll_interval {
            None => None,
            Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
                OmahaError::Invalid(format!("PollInterval {s:?} is not a number of seconds"))
            })?),
        };
        match uc.status.as_str() {
            "noupdate" => Ok(CheckOutcome::NoUpdate { poll_interval }),
            "ok" => {
                let offer = parse_offer(uc)?;
                Ok(CheckOutcome::Update {
                    offer,
                    poll_interval,
                })
            }
            other => Err(OmahaError::Invalid(format!(
                "update check status {other:?} (app status {:?})",
                app.status
            ))),
        }
    }
}

/// What an update check said.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    /// Nothing newer.
    NoUpdate { poll_interval: Option<u64> },
    /// A payload is offered.
    Update {
        offer: Offer,
        poll_interval: Option<u64>,
    },
}

/// The install plan built from an `ok` update check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// `manifest@version`.
    pub version: String,
    /// Codebase + package name, one per `<url>`.
    pub urls: Vec<String>,
    /// Package size in bytes (> 0).
    pub size: u64,
    /// The payload's SHA-256 (raw 32 bytes).
    pub sha256: [u8; 32],
    /// The signed manifest, if the server embedded one.
    pub signed_manifest: Option<Vec<u8>>,
    /// `DisablePayloadBackoff="true"`.
    pub disable_payload_backoff: bool,
}

fn parse_offer(uc: &UpdateCheckResponse) -> Result<Offer, OmahaError> {
    let invalid = |m: &str| OmahaError::Invalid(m.to_string());
    let manifest = uc
        .manifest
        .as_ref()
        .ok_or_else(|| invalid("<updatecheck status=\"ok\"> without <manifest>"))?;
    let package = manifest
        .packages
        .packages
        .first()
        .ok_or_else(|| invalid("manifest has no <package>"))?;
    if package.name.is_empty() {
        return Err(invalid("package has an empty name"));
    }
    let size: u64 = package.size.trim().parse().map_err(|_| {
        OmahaError::Invalid(format!("package size {:?} is not a number", package.size))
    })?;
    if size == 0 {
        return Err(invalid("package size is 0"));
    }
    let codebases = uc.urls.as_ref().map(|u| u.urls.as_slice()).unwrap_or(&[]);
    if codebases.is_empty() {
        return Err(invalid("no <url> in update check"));
    }
    let mut urls = Vec::new();
    for u in codebases {
        if u.codebase.is_empty() {
            return Err(invalid("empty url codebase"));
        }
        let mut base = u.codebase.clone();
        if !base.ends_with('/') {
            base.push('/');
        }
        urls.push(format!("{base}{}", package.name));
    }
    let action = manifest
        .actions
        .actions
        .iter()
        .find(|a| a.event == "postinstall")
        .ok_or_else(|| invalid("no postinstall action"))?;
    let sha = action
        .sha256
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("postinstall action has no sha256"))?;
    let sha256 = decode_sha256(sha).ok_or_else(|| {
        OmahaError::Invalid(format!(
            "sha256 {sha:?} is neither base64 nor hex of 32 bytes"
        ))
    })?;
    let signed_manifest = match &action.keelson_manifest {
        None => None,
        Some(b) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| invalid("KeelsonManifest is not base64"))?,
        ),
    };
    Ok(Offer {
        version: manifest.version.clone(),
        urls,
        size,
        sha256,
        signed_manifest,
        disable_payload_backoff: action.disable_payload_backoff.as_deref() == Some("true"),
    })
}

/// Real responses carry base64; the CoreOS documentation example shows hex.
pub fn decode_sha256(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(s).ok()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(s).ok()?
    };
    bytes.try_into().ok()
}

/// Base64 of a SHA-256, as update_engine expects it in `sha256=`.
pub fn encode_sha256(hash: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLATCAR_REQUEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">
    <os version="Chateau" platform="CoreOS" sp="2905.2.3_x86_64"></os>
    <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="2905.2.3" track="stable" bootid="{b00t}" oem="openstack" oemversion="0.1.2" alephversion="2765.2.2" machineid="68cf" machinealias="" lang="en-US" board="amd64-usr" hardware_class="" delta_okay="false" >
        <ping active="1"></ping>
        <updatecheck></updatecheck>
        <event eventtype="3" eventresult="2" previousversion="2765.2.2"></event>
    </app>
</request>"#;

    const MINIMAL_REQUEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0">
 <app appid="e96281a6-d1af-4bde-9a0a-97b76e56dc57" version="1.0.0" track="beta" bootid="{fake-client-018}">
  <event eventtype="3" eventresult="2"></event>
 </app>
</request>"#;

    const NOUPDATE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0" server="update.core-os.net">
 <daystart elapsed_seconds="0"></daystart>
 <app appid="e96281a6-d1af-4bde-9a0a-97b76e56dc57" status="ok">
  <updatecheck status="noupdate"></updatecheck>
 </app>
</response>"#;

    const UPDATE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0" server="update.core-os.net">
 <daystart elapsed_seconds="0"></daystart>
 <app appid="e96281a6-d1af-4bde-9a0a-97b76e56dc57" status="ok">
  <updatecheck status="ok">
   <urls>
    <url codebase="http://index.example.com/webapp:1.0.2"></url>
   </urls>
   <manifest version="1.0.2">
    <packages>
     <package hash="fe7374bddde2ddf07f6bfcc728d115d14338964b" name="update.gz" size="23" required="false"></package>
    </packages>
    <actions>
     <action event="postinstall" sha256="b602d630f0a081840d0ca8fc4d35810e42806642b3127bb702d65c3df227d0f5" needsadmin="false" IsDelta="false" DisablePayloadBackoff="true" MetadataSignatureRsa="ixi6Oebo" MetadataSize="190"></action>
    </actions>
   </manifest>
  </updatecheck>
 </app>
</response>"#;

    #[test]
    fn parses_flatcar_request() {
        let r = Request::from_xml(FLATCAR_REQUEST).unwrap();
        assert_eq!(r.install_source.as_deref(), Some("scheduler"));
        assert_eq!(r.os.as_ref().unwrap().platform, "CoreOS");
        let app = &r.apps[0];
        assert_eq!(app.normalized_app_id(), COREOS_APP_ID);
        assert_eq!(app.track, "stable");
        assert_eq!(app.instance_id(), Some("68cf"));
        assert!(app.ping.is_some());
        assert!(app.update_check.is_some());
        assert_eq!(app.events, vec![Event::rebooted("2765.2.2")]);
    }

    #[test]
    fn parses_minimal_request_and_falls_back_to_bootid() {
        let r = Request::from_xml(MINIMAL_REQUEST).unwrap();
        let app = &r.apps[0];
        assert!(app.update_check.is_none());
        assert_eq!(app.instance_id(), Some("{fake-client-018}"));
        assert_eq!(app.events[0].event_result, event_result::SUCCESS_REBOOT);
    }

    #[test]
    fn request_round_trips() {
        let r = Request::from_xml(FLATCAR_REQUEST).unwrap();
        let xml = r.to_xml().unwrap();
        assert!(xml.starts_with("<?xml"));
        assert!(xml.contains("<updatecheck/>"), "{xml}");
        assert_eq!(Request::from_xml(&xml).unwrap(), r);
    }

    #[test]
    fn noupdate_response() {
        let r = Response::from_xml(NOUPDATE).unwrap();
        assert_eq!(
            r.update_check_outcome().unwrap(),
            CheckOutcome::NoUpdate {
                poll_interval: None
            }
        );
        assert_eq!(Response::from_xml(&r.to_xml().unwrap()).unwrap(), r);
    }

    #[test]
    fn update_response_builds_offer() {
        let r = Response::from_xml(UPDATE).unwrap();
        let CheckOutcome::Update { offer, .. } = r.update_check_outcome().unwrap() else {
            panic!("expected update");
        };
        assert_eq!(offer.version, "1.0.2");
        assert_eq!(
            offer.urls,
            vec!["http://index.example.com/webapp:1.0.2/update.gz".to_string()]
        );
        assert_eq!(offer.size, 23);
        assert_eq!(
            hex::encode(offer.sha256),
            "b602d630f0a081840d0ca8fc4d35810e42806642b3127bb702d65c3df227d0f5"
        );
        assert!(offer.disable_payload_backoff);
        let again = Response::from_xml(&r.to_xml().unwrap()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn malformed_xml_is_a_parse_error() {
        for bad in [
            "<response protocol=\"3.0\"><app",
            "<response protocol=\"3.0\"><app appid=\"x\"></response>",
            "not xml at all",
            "<request protocol=\"3.0\"><app version=\"1\"/></request>",
        ] {
            let r = Response::from_xml(bad).and(Request::from_xml(bad).map(|_| unreachable!()));
            let e = r.unwrap_err();
            assert!(
                matches!(e, OmahaError::Xml(_) | OmahaError::Invalid(_)),
                "{bad}: {e:?}"
            );
        }
        assert_eq!(
            Response::from_xml("  ").unwrap_err().code(),
            ErrorCode::OMAHA_REQUEST_EMPTY_RESPONSE
        );
        assert_eq!(
            Response::from_xml("<response").unwrap_err().code(),
            ErrorCode::OMAHA_REQUEST_XML_PARSE
        );
    }

    #[test]
    fn invalid_update_checks_map_to_code_34() {
        let cases = [
            UPDATE.replace(
                "status=\"ok\">\n   <urls>",
                "status=\"error-internal\">\n   <urls>",
            ),
            UPDATE.replace(
                " sha256=\"b602d630f0a081840d0ca8fc4d35810e42806642b3127bb702d65c3df227d0f5\"",
                "",
            ),
            UPDATE.replace("size=\"23\"", "size=\"0\""),
            UPDATE.replace("size=\"23\"", "size=\"lots\""),
            UPDATE.replace("event=\"postinstall\"", "event=\"preinstall\""),
            UPDATE.replace(
                "codebase=\"http://index.example.com/webapp:1.0.2\"",
                "codebase=\"\"",
            ),
            UPDATE.replace("sha256=\"b602", "sha256=\"zz02"),
            NOUPDATE.replace("<updatecheck status=\"noupdate\"></updatecheck>", ""),
        ];
        for doc in cases {
            let r = Response::from_xml(&doc).unwrap();
            let e = r.update_check_outcome().unwrap_err();
            assert_eq!(e.code(), ErrorCode::OMAHA_RESPONSE_INVALID, "{doc}: {e}");
        }
    }

    #[test]
    fn wrong_protocol_is_rejected() {
        let e = Response::from_xml(&NOUPDATE.replace("3.0", "2.0")).unwrap_err();
        assert!(matches!(e, OmahaError::Invalid(_)));
    }

    #[test]
    fn error_codes() {
        assert_eq!(ErrorCode::ROLLBACK.0, 44);
        assert_eq!(ErrorCode::ROLLBACK.name(), "RollbackError");
        assert_eq!(
            ErrorCode(44 | ErrorCode::FLAG_RESUMED).base(),
            ErrorCode::ROLLBACK
        );
        assert_eq!(ErrorCode::http(503).0, 2503);
        assert_eq!(ErrorCode::http(503).name(), "OmahaRequestHTTPResponseBase");
        let ev = Event::rollback();
        assert_eq!(
            (ev.event_type, ev.event_result, ev.error_code),
            (3, 0, Some(44))
        );
    }

    #[test]
    fn sha256_accepts_base64_and_hex() {
        let h = [7u8; 32];
        assert_eq!(decode_sha256(&encode_sha256(&h)), Some(h));
        assert_eq!(decode_sha256(&hex::encode(h)), Some(h));
        assert_eq!(decode_sha256("abc"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in ".{0,200}") {
            let _ = Response::from_xml(&s).map(|r| r.update_check_outcome());
            let _ = Request::from_xml(&s);
        }

        #[test]
        fn events_round_trip(t in 0u32..1000, r in 0u32..10, code in proptest::option::of(0u32..3000), prev in proptest::option::of("[0-9]{1,4}\\.[0-9]\\.[0-9]")) {
            let req = Request {
                protocol: "3.0".into(), version: None, updater_version: None, install_source: None, is_machine: None, os: None,
                apps: vec![RequestApp { app_id: COREOS_APP_ID.into(), version: "1.0.0".into(), track: "stable".into(),
                    events: vec![Event { event_type: t, event_result: r, error_code: code, previous_version: prev }], ..Default::default() }],
            };
            let xml = req.to_xml().unwrap();
            proptest::prop_assert_eq!(Request::from_xml(&xml).unwrap(), req);
        }
    }
}
