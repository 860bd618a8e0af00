//! keelson-scheduler: fleet rebuilt on the Keelson kv.
//!
//! This crate will hold the unit registry (fleet's key layout under
//! `/_coreos.com/fleet/`, kept current from watches), the engine (placement as a
//! pure function of cluster state, honouring every `[X-Fleet]` option), the agent
//! (which reconciles the units placed on its machine through the `InitSystem`
//! trait), and fleet's HTTP API v1. It talks to the kv only through `KvClient`.
//!
//! Nothing is implemented yet; see the scheduler issue.
