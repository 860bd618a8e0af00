//! keelson-scheduler: fleet rebuilt on the Keelson kv.
//!
//! The registry lives in the kv under fleet's key layout ([`keys`]) and is
//! mirrored in memory by [`Registry`], which follows one recursive watch.
//! Decisions are pure: [`placement::plan`] says where every unit runs,
//! [`reconcile::reconcile`] what an agent must do locally; [`Engine`],
//! [`Agent`] and [`Fleetd`] are the thin drivers that feed them and perform
//! the results through a [`keelson_kv::client::KvClient`] and an
//! [`InitSystem`] (the built-in [`Supervisor`] or the in-memory [`MemInit`]).
//! [`FleetClient`] is what fleetctl and the fleet API call.
//!
//! ```
//! use std::sync::Arc;
//! use keelson_scheduler::placement::{plan, MachineInput, PlacementInput, UnitInput};
//! use keelson_scheduler::DesiredState;
//!
//! let machines = vec![
//!     MachineInput { id: "1".repeat(32), metadata: Default::default(), draining: false },
//!     MachineInput { id: "2".repeat(32), metadata: Default::default(), draining: false },
//! ];
//! let units = vec![UnitInput::plain("a.service", DesiredState::Launched),
//!                  UnitInput::plain("b.service", DesiredState::Launched)];
//! let p = plan(&PlacementInput { machines, units });
//! assert_eq!(p.placement["a.service"], "1".repeat(32));
//! assert_eq!(p.placement["b.service"], "2".repeat(32)); // least-loaded
//! ```

pub mod agent;
pub mod api;
pub mod client;
pub mod cluster;
pub mod drain;
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
