//! [`Fleetd`]: one machine's daemon, the agent plus (unless
//! `disable_engine`) an engine, over one registry view.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use keelson_kv::client::KvClient;

use crate::agent::{Agent, AgentConfig};
use crate::engine::{Engine, EngineConfig};
use crate::error::SchedulerError;
use crate::init::InitSystem;
use crate::keys::{Keys, DEFAULT_PREFIX};
use crate::registry::Registry;

/// fleetd's options (scheduler.md §12) that the daemon itself uses.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The machine's ID (32 hex digits; `/etc/machine-id` by default).
    pub machine_id: String,
    pub etcd_key_prefix: String,
    pub metadata: BTreeMap<String, String>,
    pub public_ip: String,
    pub agent_ttl: Duration,
    pub engine_reconcile_interval: Duration,
    pub units_directory: String,
    pub disable_engine: bool,
    /// The agent's periodic reconcile (fleet: 5 s, fixed).
    pub agent_reconcile_interval: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            machine_id: String::new(),
            etcd_key_prefix: DEFAULT_PREFIX.to_owned(),
            metadata: BTreeMap::new(),
            public_ip: String::new(),
            agent_ttl: Duration::from_secs(30),
            engine_reconcile_interval: Duration::from_secs(2),
            units_directory: "/run/fleet/units/".to_owned(),
            disable_engine: false,
            agent_reconcile_interval: Duration::from_secs(5),
        }
    }
}

/// One fleetd.
pub struct Fleetd;

impl Fleetd {
    /// Run agent and engine until `shutdown`, then shut both down gracefully
    /// (units unloaded, lease released, machine deregistered).
    pub async fn run(
        kv: Arc<dyn KvClient>,
        init: Arc<dyn InitSystem>,
        cfg: FleetConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SchedulerError> {
        let registry = Arc::new(Registry::open(kv, Keys::new(&cfg.etcd_key_prefix)).await?);
        let agent = Agent::new(
            registry.clone(),
            init,
            AgentConfig {
                machine_id: cfg.machine_id.clone(),
                public_ip: cfg.public_ip.clone(),
                metadata: cfg.metadata.clone(),
                agent_ttl: cfg.agent_ttl,
                reconcile_interval: cfg.agent_reconcile_interval,
                disable_engine: cfg.disable_engine,
            },
        );
        let shutdown = shutdown.shared();
        let agent_run = agent.run(shutdown.clone());
        if cfg.disable_engine {
            return agent_run.await;
        }
        let engine = Engine::new(
            registry,
            EngineConfig {
                machine_id: cfg.machine_id.clone(),
                reconcile_interval: cfg.engine_reconcile_interval,
            },
        );
        let (a, e) = tokio::join!(agent_run, engine.run(shutdown));
        a.and(e)
    }
}
