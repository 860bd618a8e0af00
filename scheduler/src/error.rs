//! The crate's error type.

use keelson_kv::client::KvError;

use crate::init::InitError;

/// Everything the scheduler's operations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("registry: {0}")]
    Kv(#[from] KvError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("invalid unit name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// The unit file does not parse or its `[X-Fleet]` section is invalid;
    /// the text carries file, line and column.
    #[error("{0}")]
    InvalidUnit(String),
    #[error("unit {0} does not exist")]
    UnitNotFound(String),
    #[error("Unit {name} in registry differs from local unit file; add --replace to override")]
    UnitDiffers { name: String },
    #[error("cannot activate template {0}: only its instances can be loaded or started")]
    TemplateActivation(String),
    #[error("Unable to {verb} unit {name} in state {state}")]
    InvalidTransition {
        verb: &'static str,
        name: String,
        state: String,
    },
    #[error("registry value at {key} is malformed: {reason}")]
    Malformed { key: String, reason: String },
}
