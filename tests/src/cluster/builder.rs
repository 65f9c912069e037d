//! How a [`TestCluster`] and its agents are started.

use std::path::PathBuf;

use super::TestCluster;
use crate::paths::{binary, staleness_note};

/// How an agent is started.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// `--node-id`; `None` = `agent-<index>`.
    pub node_id: Option<String>,
    /// `--slots`.
    pub slots: u32,
    /// `--enable-sleep-engine`.
    pub sleep_engine: bool,
    /// Read/write the coordinator's artifact folder directly (`--artifacts file://…`)
    /// instead of relaying through the coordinator.
    pub direct_artifacts: bool,
    /// `--shutdown-grace-s`; `None` = the agent's default.
    pub shutdown_grace_s: Option<u64>,
    /// `--fake-gpus N`: advertise N fake GPUs (a test double; no device behind them).
    pub fake_gpus: u32,
    /// More agent flags, as given.
    pub extra_args: Vec<String>,
    /// `--work-dir`; `None` = `<cluster dir>/work/<node id>`.
    pub work_dir: Option<PathBuf>,
}

impl AgentOptions {
    /// An agent offering the sleep engine (and vina, if it is installed).
    pub fn sleep(slots: u32) -> Self {
        AgentOptions {
            node_id: None,
            slots,
            sleep_engine: true,
            direct_artifacts: false,
            shutdown_grace_s: None,
            fake_gpus: 0,
            extra_args: Vec::new(),
            work_dir: None,
        }
    }

    /// An agent offering only the engines it finds (vina); no sleep engine.
    pub fn vina(slots: u32) -> Self {
        AgentOptions {
            node_id: None,
            slots,
            sleep_engine: false,
            direct_artifacts: false,
            shutdown_grace_s: None,
            fake_gpus: 0,
            extra_args: Vec::new(),
            work_dir: None,
        }
    }

    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    pub fn shutdown_grace_s(mut self, s: u64) -> Self {
        self.shutdown_grace_s = Some(s);
        self
    }

    pub fn direct_artifacts(mut self) -> Self {
        self.direct_artifacts = true;
        self
    }

    pub fn fake_gpus(mut self, n: u32) -> Self {
        self.fake_gpus = n;
        self
    }

    pub fn work_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(d.into());
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }
}

/// Builds a [`TestCluster`].
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    pub(super) heartbeat_ms: u64,
    pub(super) lease_ms: u64,
    pub(super) retry_base_ms: u64,
    pub(super) reconcile_grace_ms: u64,
    agents: Vec<AgentOptions>,
    /// More coordinator flags, as given (e.g. `--admin-token-file F`, `--tls-cert F`).
    pub(super) coordinator_args: Vec<String>,
    /// Bearer token the harness's own calls (and `cli`, as DOCKYARD_TOKEN) carry.
    pub(super) token: Option<String>,
    /// The coordinator serves TLS: endpoints are `https://`, verified against this CA.
    pub(super) tls_ca: Option<PathBuf>,
    /// Environment variables of the coordinator and agent processes (e.g. `OTEL_*`).
    pub(super) env: Vec<(String, String)>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            heartbeat_ms: 200,
            lease_ms: 1000,
            retry_base_ms: 100,
            reconcile_grace_ms: 3000,
            agents: Vec::new(),
            coordinator_args: Vec::new(),
            token: None,
            tls_ca: None,
            env: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    pub fn heartbeat_ms(mut self, ms: u64) -> Self {
        self.heartbeat_ms = ms;
        self
    }

    /// Must be at least twice the heartbeat (the coordinator refuses to start otherwise).
    pub fn lease_ms(mut self, ms: u64) -> Self {
        self.lease_ms = ms;
        self
    }

    pub fn retry_base_ms(mut self, ms: u64) -> Self {
        self.retry_base_ms = ms;
        self
    }

    pub fn reconcile_grace_ms(mut self, ms: u64) -> Self {
        self.reconcile_grace_ms = ms;
        self
    }

    /// Adds a coordinator flag (or its value), as given.
    pub fn coordinator_arg(mut self, a: impl Into<String>) -> Self {
        self.coordinator_args.push(a.into());
        self
    }

    /// The bearer token the harness's own calls carry (with authentication on).
    pub fn token(mut self, t: impl Into<String>) -> Self {
        self.token = Some(t.into());
        self
    }

    /// The coordinator serves TLS (pass `--tls-cert/--tls-key` with `coordinator_arg`):
    /// endpoints become `https://`, and the harness's calls verify against `ca` (a PEM file).
    pub fn tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca.into());
        self
    }

    /// Sets an environment variable of every coordinator and agent process.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Adds an agent started with the cluster.
    pub fn agent(mut self, a: AgentOptions) -> Self {
        self.agents.push(a);
        self
    }

    /// Adds `n` agents started with the cluster.
    pub fn agents(mut self, n: usize, a: AgentOptions) -> Self {
        self.agents.extend(std::iter::repeat_n(a, n));
        self
    }

    /// Starts the coordinator, then the agents, and waits until every agent is connected.
    pub async fn start(self) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("dockyard-test-")
            .tempdir()
            .expect("cannot create a temporary folder");
        let coordinator_bin = binary("dockyard-coordinator");
        let agent_bin = binary("dockyard-agent");
        let mut notes = Vec::new();
        notes.extend(staleness_note(&coordinator_bin, &["coordinator", "common", "proto"]));
        notes.extend(staleness_note(&agent_bin, &["node-agent", "common", "proto"]));
        for n in &notes {
            eprintln!("{n}");
        }
        let agents = self.agents.clone();
        let mut c = TestCluster {
            data_dir: dir.path().join("coordinator"),
            dir: Some(dir),
            settings: self,
            coordinator_bin,
            agent_bin,
            coordinator: None,
            addr: None,
            coordinator_starts: 0,
            agents: Vec::new(),
            notes,
        };
        c.start_coordinator("127.0.0.1:0").await;
        for a in agents {
            c.spawn_agent(a);
        }
        let n = c.agents.len();
        if n > 0 {
            c.wait_for_nodes(n).await;
        }
        c
    }
}
