//! keelson-scheduler: fleet rebuilt on the Keelson kv.
//!
//! Work in progress; see the README.

pub mod agent;
pub mod client;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod fleetd;
pub mod init;
pub mod keys;
pub mod memkv;
pub mod model;
pub mod placement;
pub mod reconcile;
pub mod registry;

pub use agent::{Agent, AgentConfig};
pub use client::{FleetClient, MachineInfo, SubmitOptions, UnitFileInfo, UnitStateInfo};
pub use engine::{Engine, EngineConfig};
pub use error::SchedulerError;
pub use fleetd::{FleetConfig, Fleetd};
pub use init::{InitError, InitSystem, MemInit, Supervisor, SupervisorConfig};
pub use keys::{Keys, DEFAULT_PREFIX};
pub use model::DesiredState;
pub use registry::Registry;
