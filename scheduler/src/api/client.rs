//! The client side of the fleet API: [`ApiClient`] speaks HTTP/1.1 over a
//! unix socket or TCP, and [`RemoteFleet`] offers [`FleetClient`]'s
//! operations through it, which is what `fleetctl --driver api` uses.
//!
//! [`FleetClient`]: crate::FleetClient

use std::path::PathBuf;

use axum::body::Body;
use keelson_unitfile::fleet::ParseOptions;
use keelson_unitfile::{Mode, Unit, UnitName, UnitOption, XFleet};
use serde_json::Value;

use super::{WireJournal, WireMachine, WireOption, WireUnit, WireUnitState};
use crate::client::{MachineInfo, SubmitOptions, UnitFileInfo, UnitStateInfo};
use crate::error::SchedulerError;
use crate::model::DesiredState;

/// What talking to a fleet API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unsupported endpoint {0:?}: expected unix://PATH, http://HOST:PORT")]
    Endpoint(String),
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(String),
    /// The API answered with an error entity.
    #[error("{message}")]
    Status { code: u16, message: String },
    #[error("undecodable answer from the fleet API: {0}")]
    Decode(String),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    Tcp(String),
}

/// An HTTP client for one fleet API endpoint.
#[derive(Debug, Clone)]
pub struct ApiClient {
    target: Target,
    display: String,
}

impl ApiClient {
    /// `unix:///var/run/fleet.sock` or `http://host:port` (a path is ignored).
    pub fn new(endpoint: &str) -> Result<ApiClient, ApiError> {
        let target = if let Some(p) = endpoint.strip_prefix("unix://") {
            Target::Unix(PathBuf::from(p))
        } else if let Some(rest) = endpoint.strip_prefix("http://") {
            let hostport = rest.split('/').next().unwrap_or_default();
            if hostport.is_empty() {
                return Err(ApiError::Endpoint(endpoint.to_owned()));
            }
            let hp = if hostport.contains(':') {
                hostport.to_owned()
            } else {
                format!("{hostport}:80")
            };
            Target::Tcp(hp)
        } else {
            return Err(ApiError::Endpoint(endpoint.to_owned()));
        };
        Ok(ApiClient {
            target,
            display: endpoint.to_owned(),
        })
    }

    /// One request; returns the status and the body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let connect = |e| ApiError::Connect {
            endpoint: self.display.clone(),
            source: e,
        };
        let (host, io): (String, Box<dyn IoStream>) = match &self.target {
            Target::Unix(p) => (
                "fleet".into(),
                Box::new(tokio::net::UnixStream::connect(p).await.map_err(connect)?),
            ),
            Target::Tcp(a) => (
                a.clone(),
                Box::new(tokio::net::TcpStream::connect(a).await.map_err(connect)?),
            ),
        };
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| ApiError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let req = req.body(body).map_err(|e| ApiError::Http(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| ApiError::Http(e.to_string()))?;
        let code = resp.status().as_u16();
        let bytes = axum::body::to_bytes(Body::new(resp.into_body()), 64 << 20)
            .await
            .map_err(|e| ApiError::Http(e.to_string()))?;
        Ok((code, bytes.to_vec()))
    }

    /// A request whose answer must be 2xx; an error entity becomes
    /// [`ApiError::Status`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ApiError> {
        let (code, bytes) = self.request(method, path, body).await?;
        let v: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(e.to_string()))?
        };
        if !(200..300).contains(&code) {
            let message = v
                .pointer("/error/message")
                .and_then(|m| m.as_str())
                .unwrap_or("request failed")
                .to_owned();
            return Err(ApiError::Status { code, message });
        }
        Ok((code, v))
    }

    /// Every item of a paginated collection.
    pub async fn all_pages(&self, path: &str, key: &str) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let p = match &token {
                Some(t) => format!(
                    "{path}{}nextPageToken={t}",
                    if path.contains('?') { "&" } else { "?" }
                ),
                None => path.to_owned(),
            };
            let (_, v) = self.call("GET", &p, None).await?;
            if let Some(items) = v.get(key).and_then(|i| i.as_array()) {
                out.extend(items.iter().cloned());
            }
            match v.get("nextPageToken").and_then(|t| t.as_str()) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> IoStream for T {}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::Decode(e.to_string()))
}

/// Check a unit file locally, as submit does: syntax and `[X-Fleet]`, with
/// the file's line and column.
pub fn validate_unit(name: &str, text: &str, opts: SubmitOptions) -> Result<Unit, SchedulerError> {
    let n = UnitName::parse(name).map_err(|e| SchedulerError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let unit = Unit::parse(text, Mode::Fleet, Some(name))
        .map_err(|e| SchedulerError::InvalidUnit(e.to_string()))?;
    XFleet::parse(
        unit.options(),
        &ParseOptions {
            unit: (!n.is_template()).then_some(&n),
            allow_unknown_keys: opts.allow_unknown_x_fleet,
        },
    )
    .map_err(|e| SchedulerError::InvalidUnit(format!("{name}: {e}")))?;
    Ok(unit)
}

/// [`FleetClient`](crate::FleetClient)'s operations over the fleet API.
pub struct RemoteFleet {
    api: ApiClient,
}

fn unit_path(name: &str) -> String {
    format!("/fleet/v1/units/{name}")
}

impl RemoteFleet {
    pub fn new(api: ApiClient) -> Self {
        RemoteFleet { api }
    }

    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    async fn get_unit(&self, name: &str) -> Result<Option<WireUnit>, ApiError> {
        match self.api.call("GET", &unit_path(name), None).await {
            Ok((_, v)) => Ok(Some(decode(v)?)),
            Err(ApiError::Status { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `fleetctl submit`.
    pub async fn submit(
        &self,
        name: &str,
        text: &str,
        opts: SubmitOptions,
    ) -> Result<(), ApiError> {
        let unit = validate_unit(name, text, opts)?;
        if let Some(existing) = self.get_unit(name).await? {
            let eh = keelson_unitfile::hash_options(&to_options(&existing.options));
            if eh == unit.hash() {
                return Ok(());
            }
            if !opts.replace {
                return Err(SchedulerError::UnitDiffers {
                    name: name.to_owned(),
                }
                .into());
            }
        }
        let options: Vec<WireOption> = unit
            .options()
            .iter()
            .map(|o| WireOption {
                section: o.section.clone(),
                name: o.name.clone(),
                value: o.value.clone(),
            })
            .collect();
        let body =
            serde_json::json!({"name": name, "desiredState": "inactive", "options": options});
        self.api.call("PUT", &unit_path(name), Some(body)).await?;
        Ok(())
    }

    async fn ensure(
        &self,
        name: &str,
        text: Option<&str>,
        opts: SubmitOptions,
    ) -> Result<(), ApiError> {
        if let Some(t) = text {
            return self.submit(name, t, opts).await;
        }
        if self.get_unit(name).await?.is_some() {
            return Ok(());
        }
        let template = UnitName::parse(name).ok().and_then(|n| n.template());
        if let Some(t) = template {
            if let Some(tu) = self.get_unit(t.as_str()).await? {
                let text = super::options_to_text(&tu.options);
                return self.submit(name, &text, opts).await;
            }
        }
        Err(SchedulerError::UnitNotFound(name.to_owned()).into())
    }

    /// Set a unit's desired state.
    pub async fn set_desired(&self, name: &str, state: DesiredState) -> Result<(), ApiError> {
        let body = serde_json::json!({"desiredState": state.as_str()});
        match self.api.call("PUT", &unit_path(name), Some(body)).await {
            Err(ApiError::Status { code: 409, .. }) => {
                Err(SchedulerError::UnitNotFound(name.to_owned()).into())
            }
            r => r.map(|_| ()),
        }
    }

    /// `fleetctl load`.
    pub async fn load(
        &self,
        name: &str,
        text: Option<&str>,
        opts: SubmitOptions,
    ) -> Result<(), ApiError> {
        self.ensure(name, text, opts).await?;
        self.set_desired(name, DesiredState::Loaded).await
    }

    /// `fleetctl start`.
    pub async fn start(
        &self,
        name: &str,
        text: Option<&str>,
        opts: SubmitOptions,
    ) -> Result<(), ApiError> {
        self.ensure(name, text, opts).await?;
        self.set_desired(name, DesiredState::Launched).await
    }

    /// `fleetctl stop`.
    pub async fn stop(&self, name: &str) -> Result<(), ApiError> {
        match self.get_unit(name).await? {
            None => Err(SchedulerError::UnitNotFound(name.to_owned()).into()),
            Some(u) if u.desired_state == "inactive" => Err(SchedulerError::InvalidTransition {
                verb: "stop",
                name: name.to_owned(),
                state: "inactive".to_owned(),
            }
            .into()),
            Some(_) => self.set_desired(name, DesiredState::Loaded).await,
        }
    }

    /// `fleetctl unload`.
    pub async fn unload(&self, name: &str) -> Result<(), ApiError> {
        self.set_desired(name, DesiredState::Inactive).await
    }

    /// `fleetctl destroy`.
    pub async fn destroy(&self, name: &str) -> Result<(), ApiError> {
        match self.api.call("DELETE", &unit_path(name), None).await {
            Err(ApiError::Status { code: 404, .. }) => {
                Err(SchedulerError::UnitNotFound(name.to_owned()).into())
            }
            r => r.map(|_| ()),
        }
    }

    /// `list-machines`.
    pub async fn list_machines(&self) -> Result<Vec<MachineInfo>, ApiError> {
        let mut out = Vec::new();
        for v in self.api.all_pages("/fleet/v1/machines", "machines").await? {
            let m: WireMachine = decode(v)?;
            out.push(MachineInfo {
                id: m.id,
                public_ip: m.primary_ip,
                metadata: m.metadata,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// `list-unit-files`.
    pub async fn list_unit_files(&self) -> Result<Vec<UnitFileInfo>, ApiError> {
        let machines = self.list_machines().await?;
        let mut out = Vec::new();
        for v in self.api.all_pages("/fleet/v1/units", "units").await? {
            let u: WireUnit = decode(v)?;
            out.push(unit_info(u, &machines));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One unit file.
    pub async fn unit(&self, name: &str) -> Result<Option<UnitFileInfo>, ApiError> {
        let machines = self.list_machines().await?;
        Ok(self.get_unit(name).await?.map(|u| unit_info(u, &machines)))
    }

    /// `list-units`.
    pub async fn list_units(&self) -> Result<Vec<UnitStateInfo>, ApiError> {
        let machines = self.list_machines().await?;
        let mut out = Vec::new();
        for v in self.api.all_pages("/fleet/v1/state", "states").await? {
            let s: WireUnitState = decode(v)?;
            let ip = machines
                .iter()
                .find(|m| m.id == s.machine_id)
                .map(|m| m.public_ip.clone())
                .unwrap_or_default();
            out.push(UnitStateInfo {
                name: s.name,
                machine_id: s.machine_id,
                public_ip: ip,
                load: s.load,
                active: s.active,
                sub: s.sub,
                hash: s.hash,
            });
        }
        out.sort_by(|a, b| (&a.name, &a.machine_id).cmp(&(&b.name, &b.machine_id)));
        Ok(out)
    }

    /// Mark `machine` draining, or lift the mark (Keelson's drain resource).
    pub async fn set_draining(&self, machine: &str, draining: bool) -> Result<(), ApiError> {
        let method = if draining { "PUT" } else { "DELETE" };
        self.api
            .call(method, &format!("/fleet/v1/keelson/drain/{machine}"), None)
            .await
            .map(drop)
    }

    /// Whether `machine` is marked draining.
    pub async fn is_draining(&self, machine: &str) -> Result<bool, ApiError> {
        let (_, v) = self
            .api
            .call("GET", &format!("/fleet/v1/keelson/drain/{machine}"), None)
            .await?;
        v.get("draining")
            .and_then(Value::as_bool)
            .ok_or_else(|| ApiError::Decode(format!("no \"draining\" in {v}")))
    }

    /// Drain `machine`: mark it, then wait until every non-global unit it ran
    /// is active elsewhere (or stopped, when no other machine can take it),
    /// polling every `poll`, for at most `timeout`. The mark stays either way;
    /// lift it with [`set_draining`](Self::set_draining) once the machine is
    /// back.
    pub async fn drain(
        &self,
        machine: &str,
        timeout: std::time::Duration,
        poll: std::time::Duration,
    ) -> Result<crate::drain::DrainOutcome, ApiError> {
        use crate::drain::{pending, units_on, DrainOutcome};
        let deadline = tokio::time::Instant::now() + timeout;
        let moving = units_on(
            machine,
            &self.list_unit_files().await?,
            &self.list_units().await?,
        );
        self.set_draining(machine, true).await?;
        loop {
            let files = self.list_unit_files().await?;
            let states = self.list_units().await?;
            let left = pending(machine, &moving, &files, &states);
            if left.is_empty() {
                return Ok(DrainOutcome::Drained { moved: moving });
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(DrainOutcome::TimedOut { pending: left });
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The last `lines` lines of a unit's log, from the machine that runs it.
    pub async fn journal(
        &self,
        name: &str,
        lines: usize,
        machine: Option<&str>,
    ) -> Result<WireJournal, ApiError> {
        let mut path = format!("/fleet/v1/keelson/journal/{name}?lines={lines}");
        if let Some(m) = machine {
            path.push_str(&format!("&machineID={m}"));
        }
        let (_, v) = self.api.call("GET", &path, None).await?;
        decode(v)
    }
}

fn to_options(w: &[WireOption]) -> Vec<UnitOption> {
    w.iter()
        .map(|o| UnitOption {
            section: o.section.clone(),
            name: o.name.clone(),
            value: o.value.clone(),
            line: 0,
            column: 0,
        })
        .collect()
}

fn unit_info(u: WireUnit, machines: &[MachineInfo]) -> UnitFileInfo {
    let options = to_options(&u.options);
    let global = options
        .iter()
        .rev()
        .find(|o| o.section == "X-Fleet" && o.name == "Global")
        .is_some_and(|o| o.value.trim().eq_ignore_ascii_case("true"));
    let description = options
        .iter()
        .rev()
        .find(|o| o.section == "Unit" && o.name == "Description")
        .map(|o| o.value.clone());
    let target = (!global && !u.machine_id.is_empty()).then(|| u.machine_id.clone());
    UnitFileInfo {
        hash: keelson_unitfile::hash_options(&options).to_string(),
        desired: u.desired_state.parse().ok(),
        current: if global {
            None
        } else {
            u.current_state.parse().ok()
        },
        target_ip: target.as_ref().and_then(|t| {
            machines
                .iter()
                .find(|m| &m.id == t)
                .map(|m| m.public_ip.clone())
        }),
        target,
        global,
        description,
        reason: (!u.reason.is_empty()).then_some(u.reason),
        options,
        name: u.name,
    }
}
