//! Agent settings: flags, `DOCKYARD_*` environment, TOML file, defaults (that order).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use dockyard_common::cluster::{EtcdSettings, DEFAULT_CLUSTER};
use dockyard_common::config::load_toml;
use dockyard_common::error::DockyardError;
use dockyard_common::ids::NodeId;

use crate::capacity;

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub coordinator: String,
    pub node_id: NodeId,
    pub slots: u32,
    pub memory_bytes: u64,
    pub work_dir: PathBuf,
    pub vina_path: Option<PathBuf>,
    pub smina_path: Option<PathBuf>,
    pub gnina_path: Option<PathBuf>,
    pub enable_sleep_engine: bool,
    /// Read/write the artifact store directly (same URI as the coordinator's) instead of
    /// relaying through the coordinator.
    pub artifacts: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// On SIGTERM, how long running tasks may finish before they are handed back.
    pub shutdown_grace: Duration,
    /// Skip the GPU probe (tests and machines where nvidia-smi hangs).
    pub probe_gpus: bool,
    /// Offer only these GPU indices (None: every GPU nvidia-smi reports).
    pub gpu_filter: Option<Vec<u32>>,
    /// Test double: advertise this many GPUs that do not exist, instead of probing.
    pub fake_gpus: u32,
    /// Cluster mode: register in etcd and find the leading coordinator there.
    pub etcd: Option<EtcdSettings>,
    /// TTL of the agent's etcd membership lease.
    pub etcd_ttl: Duration,
    /// Address-space limit (RLIMIT_AS) of engine runs in bytes: `None` = derived from each
    /// task's memory estimate (see `sandbox::SandboxConfig`), `Some(0)` = none.
    pub engine_memory_limit: Option<u64>,
    /// File-size limit (RLIMIT_FSIZE) of engine runs in bytes; 0 = none.
    pub engine_max_file_bytes: u64,
    /// Between SIGTERM and SIGKILL when an engine run times out or is cancelled.
    pub engine_grace: Duration,
    /// The cluster join token, sent as a bearer token on every AgentService call.
    pub join_token_file: Option<PathBuf>,
    /// PEM CA that signed the coordinator's certificate (https:// coordinators).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for mTLS (the coordinator's --tls-client-ca signed it).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None`: no listener.
    pub metrics_listen: Option<String>,
}

impl AgentConfig {
    pub fn new(coordinator: impl Into<String>, node_id: NodeId, work_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            coordinator: coordinator.into(),
            node_id,
            slots: capacity::cpu_count(),
            memory_bytes: capacity::memory_bytes(),
            work_dir: work_dir.into(),
            vina_path: None,
            smina_path: None,
            gnina_path: None,
            enable_sleep_engine: false,
            artifacts: None,
            labels: BTreeMap::new(),
            shutdown_grace: Duration::from_secs(30),
            probe_gpus: true,
            gpu_filter: None,
            fake_gpus: 0,
            etcd: None,
            etcd_ttl: Duration::from_secs(5),
            engine_memory_limit: None,
            engine_max_file_bytes: DEFAULT_ENGINE_MAX_FILE_MB << 20,
            engine_grace: crate::engine::process::DEFAULT_GRACE,
            join_token_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            metrics_listen: None,
        }
    }

    /// `--coordinator` may name several coordinators, comma-separated.
    pub fn coordinators(&self) -> Vec<String> {
        self.coordinator
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

const ABOUT: &str = "Dockyard node agent: offers this machine's CPUs, memory, GPUs and docking engines to a coordinator.";
const EXAMPLES: &str = "Examples:
  dockyard-agent --coordinator http://10.0.0.5:50051
  dockyard-agent --coordinator http://127.0.0.1:50051 --slots 4 --work-dir /scratch/dockyard --node-id gpu-node-7
  dockyard-agent --coordinator http://127.0.0.1:50051 --enable-sleep-engine   # adds the test-only sleep engine

Every flag can also be set as DOCKYARD_<FLAG> (e.g. DOCKYARD_COORDINATOR) or as a key in the
--config TOML file (e.g. slots = 8); flags win over the environment, which wins over the file.";

#[derive(Parser, Debug, Default)]
#[command(name = "dockyard-agent", version, about = ABOUT, after_help = EXAMPLES)]
pub struct AgentArgs {
    /// TOML config file.
    #[arg(long, env = "DOCKYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Coordinator URL [default: http://127.0.0.1:50051].
    #[arg(long, env = "DOCKYARD_COORDINATOR")]
    pub coordinator: Option<String>,
    /// Tasks run at once [default: number of CPUs].
    #[arg(long, env = "DOCKYARD_SLOTS")]
    pub slots: Option<u32>,
    /// Memory offered, in MB [default: all of it].
    #[arg(long, env = "DOCKYARD_MEMORY_MB")]
    pub memory_mb: Option<u64>,
    /// Scratch folder for inputs, engine runs and the receptor cache [default: ./dockyard-work].
    #[arg(long, env = "DOCKYARD_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Stable node name [default: host name].
    #[arg(long, env = "DOCKYARD_NODE_ID")]
    pub node_id: Option<String>,
    /// GPUs to offer: `none`, or indices like `0,1` [default: all that nvidia-smi reports].
    #[arg(long, env = "DOCKYARD_GPUS")]
    pub gpus: Option<String>,
    /// TEST DOUBLE: advertise N fake GPUs with no device behind them (scheduler tests only).
    #[arg(long, hide = true)]
    pub fake_gpus: Option<u32>,
    /// Path of the vina binary [default: vina on PATH].
    #[arg(long, env = "DOCKYARD_VINA")]
    pub vina: Option<PathBuf>,
    /// Path of the smina binary [default: smina on PATH, if any].
    #[arg(long, env = "DOCKYARD_SMINA")]
    pub smina: Option<PathBuf>,
    /// Path of the gnina binary [default: gnina on PATH, if any].
    #[arg(long, env = "DOCKYARD_GNINA")]
    pub gnina: Option<PathBuf>,
    /// Offer the test-only sleep engine (no docking; for smoke tests and benchmarks).
    #[arg(long, env = "DOCKYARD_ENABLE_SLEEP_ENGINE")]
    pub enable_sleep_engine: bool,
    /// Access the artifact store directly with this URI instead of through the coordinator.
    #[arg(long, env = "DOCKYARD_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// Label as KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Seconds running tasks may finish after SIGTERM before they are handed back [default: 30].
    #[arg(long, env = "DOCKYARD_SHUTDOWN_GRACE_S")]
    pub shutdown_grace_s: Option<u64>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "DOCKYARD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9465) [default: off].
    #[arg(long, env = "DOCKYARD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// etcd endpoints, comma-separated: register this node there and find the leading
    /// coordinator through it (then --coordinator is not needed).
    #[arg(long, env = "DOCKYARD_ETCD")]
    pub etcd: Option<String>,
    /// Cluster name (etcd key prefix /dockyard/<cluster>/) [default: default].
    #[arg(long, env = "DOCKYARD_CLUSTER")]
    pub cluster: Option<String>,
    /// TTL of this node's etcd membership lease, in ms [default: 5000].
    #[arg(long, env = "DOCKYARD_ETCD_TTL_MS")]
    pub etcd_ttl_ms: Option<u64>,
    /// Address-space limit of each engine run, in MB (2^20 bytes); 0 = none [default: twice
    /// the task's memory estimate plus headroom; none for GPU engines].
    #[arg(long, env = "DOCKYARD_ENGINE_MEMORY_LIMIT_MB")]
    pub engine_memory_limit_mb: Option<u64>,
    /// Largest file an engine run may write, in MB (2^20 bytes); 0 = none [default: 1024].
    #[arg(long, env = "DOCKYARD_ENGINE_MAX_FILE_MB")]
    pub engine_max_file_mb: Option<u64>,
    /// Milliseconds between SIGTERM and SIGKILL when an engine run times out or is cancelled [default: 5000].
    #[arg(long, env = "DOCKYARD_ENGINE_GRACE_MS")]
    pub engine_grace_ms: Option<u64>,
    /// File holding the cluster join token (the coordinator's --join-token-file).
    #[arg(long, env = "DOCKYARD_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<PathBuf>,
    /// PEM CA to verify an https:// coordinator with [default: the system's roots].
    #[arg(long, env = "DOCKYARD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mTLS (signed by the coordinator's --tls-client-ca); needs --tls-key.
    #[arg(long, env = "DOCKYARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "DOCKYARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub coordinator: Option<String>,
    pub slots: Option<u32>,
    pub memory_mb: Option<u64>,
    pub work_dir: Option<PathBuf>,
    pub node_id: Option<String>,
    pub vina: Option<PathBuf>,
    pub smina: Option<PathBuf>,
    pub gnina: Option<PathBuf>,
    pub gpus: Option<String>,
    pub enable_sleep_engine: Option<bool>,
    pub artifacts: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub shutdown_grace_s: Option<u64>,
    pub log_format: Option<String>,
    pub metrics_listen: Option<String>,
    pub etcd: Option<String>,
    pub cluster: Option<String>,
    pub etcd_ttl_ms: Option<u64>,
    pub engine_memory_limit_mb: Option<u64>,
    pub engine_max_file_mb: Option<u64>,
    pub engine_grace_ms: Option<u64>,
    pub join_token_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Default of `--engine-max-file-mb`.
pub const DEFAULT_ENGINE_MAX_FILE_MB: u64 = 1024;

impl AgentArgs {
    pub fn resolve(self) -> Result<(AgentConfig, String), DockyardError> {
        let f: AgentFile = load_toml(self.config.as_deref())?;
        let coordinator = self
            .coordinator
            .or(f.coordinator)
            .unwrap_or_else(|| "http://127.0.0.1:50051".into());
        for url in coordinator.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(DockyardError::invalid(
                    "coordinator",
                    format!("'{url}' must be a URL like http://HOST:50051"),
                ));
            }
        }
        let node = self.node_id.or(f.node_id).unwrap_or_else(capacity::hostname);
        let node_id = NodeId::parse(&node)?;
        let work_dir = self.work_dir.or(f.work_dir).unwrap_or_else(|| PathBuf::from("dockyard-work"));
        let mut c = AgentConfig::new(coordinator, node_id, work_dir);
        if let Some(s) = self.slots.or(f.slots) {
            if s == 0 || s > 4096 {
                return Err(DockyardError::invalid("slots", format!("{s} must be 1-4096")));
            }
            c.slots = s;
        }
        if let Some(mb) = self.memory_mb.or(f.memory_mb) {
            c.memory_bytes = mb * 1_000_000;
        }
        c.vina_path = self.vina.or(f.vina);
        c.smina_path = self.smina.or(f.smina);
        c.gnina_path = self.gnina.or(f.gnina);
        c.fake_gpus = self.fake_gpus.unwrap_or(0);
        match self.gpus.or(f.gpus).as_deref().map(str::trim) {
            None | Some("all") => {}
            Some("none") => c.probe_gpus = false,
            Some(list) => {
                let ids: Result<Vec<u32>, _> = list.split(',').map(|x| x.trim().parse::<u32>()).collect();
                c.gpu_filter =
                    Some(ids.map_err(|_| DockyardError::invalid("gpus", format!("'{list}' must be none, all, or indices like 0,1")))?);
            }
        }
        c.enable_sleep_engine = self.enable_sleep_engine || f.enable_sleep_engine.unwrap_or(false);
        c.artifacts = self.artifacts.or(f.artifacts);
        c.metrics_listen = self.metrics_listen.or(f.metrics_listen);
        c.labels = f.labels.unwrap_or_default();
        for l in self.labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| DockyardError::invalid("label", format!("'{l}' must be KEY=VALUE")))?;
            c.labels.insert(k.to_string(), v.to_string());
        }
        if let Some(g) = self.shutdown_grace_s.or(f.shutdown_grace_s) {
            c.shutdown_grace = Duration::from_secs(g);
        }
        if let Some(urls) = self.etcd.or(f.etcd) {
            let cluster = self.cluster.or(f.cluster).unwrap_or_else(|| DEFAULT_CLUSTER.into());
            c.etcd = Some(EtcdSettings::parse(&urls, &cluster)?);
            let ttl = self.etcd_ttl_ms.or(f.etcd_ttl_ms).unwrap_or(5000);
            if ttl < 1000 {
                return Err(DockyardError::invalid(
                    "etcd_ttl_ms",
                    format!("{ttl} is below etcd's 1 s lease granularity"),
                ));
            }
            c.etcd_ttl = Duration::from_millis(ttl);
        }
        let mb = |name: &str, v: u64| {
            v.checked_mul(1 << 20)
                .ok_or_else(|| DockyardError::invalid(name, format!("{v} MB is too large")))
        };
        if let Some(v) = self.engine_memory_limit_mb.or(f.engine_memory_limit_mb) {
            c.engine_memory_limit = Some(mb("engine_memory_limit_mb", v)?);
        }
        if let Some(v) = self.engine_max_file_mb.or(f.engine_max_file_mb) {
            c.engine_max_file_bytes = mb("engine_max_file_mb", v)?;
        }
        if let Some(ms) = self.engine_grace_ms.or(f.engine_grace_ms) {
            c.engine_grace = Duration::from_millis(ms);
        }
        c.join_token_file = self.join_token_file.or(f.join_token_file);
        c.tls_ca = self.tls_ca.or(f.tls_ca);
        c.tls_cert = self.tls_cert.or(f.tls_cert);
        c.tls_key = self.tls_key.or(f.tls_key);
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return Err(DockyardError::invalid("tls_cert", "give both --tls-cert and --tls-key"));
        }
        Ok((c, self.log_format.or(f.log_format).unwrap_or_else(|| "text".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_in_deploy_parses() {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/agent.toml");
        let args = AgentArgs {
            config: Some(p),
            node_id: Some("n1".into()),
            ..AgentArgs::default()
        };
        let (c, fmt) = args.resolve().expect("deploy/config/agent.toml must parse");
        assert_eq!(c.coordinator, "http://127.0.0.1:50051");
        assert_eq!(c.labels.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(fmt, "json");
    }

    #[test]
    fn every_setting_the_example_documents_exists() {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/agent.toml");
        let f: AgentFile = dockyard_common::config::load_with_examples_enabled(&p).expect("every documented key is a setting");
        assert!(f.etcd.is_some() && f.tls_key.is_some() && f.engine_grace_ms == Some(5000));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = AgentArgs {
            coordinator: Some("127.0.0.1:50051".into()),
            node_id: Some("n".into()),
            ..AgentArgs::default()
        }
        .resolve()
        .expect_err("no scheme");
        assert!(e.to_string().contains("coordinator"), "{e}");
        let e = AgentArgs {
            slots: Some(0),
            node_id: Some("n".into()),
            ..AgentArgs::default()
        }
        .resolve()
        .expect_err("zero slots");
        assert!(e.to_string().contains("slots"), "{e}");
        let e = AgentArgs {
            gpus: Some("0,x".into()),
            node_id: Some("n".into()),
            ..AgentArgs::default()
        }
        .resolve()
        .expect_err("bad gpus");
        assert!(e.to_string().contains("gpus"), "{e}");
        let c = AgentArgs {
            gpus: Some("1, 3".into()),
            node_id: Some("n".into()),
            ..AgentArgs::default()
        }
        .resolve()
        .expect("gpu list")
        .0;
        assert_eq!(c.gpu_filter, Some(vec![1, 3]));
    }
}
