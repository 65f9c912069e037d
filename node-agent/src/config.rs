//! Agent settings, each declared once in [`AgentSettings`]: its flag, its `DOCKYARD_*`
//! variable, its `--config` file key and its default. Flags win over the environment, which
//! wins over the file, which wins over the default (`dockyard_common::settings`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgMatches, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};

use dockyard_common::artifact::Compression;
use dockyard_common::cluster::{EtcdAccessFlags, EtcdSettings, DEFAULT_CLUSTER};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::NodeId;
use dockyard_common::settings::{self, declared_defaults, ConfigFlag};

use crate::capacity;
use crate::engine::process::DEFAULT_GRACE;

/// Validated settings the agent runs with.
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
    /// The Python that runs Meeko preparation (`None`: python3, then mk_prepare_ligand.py's).
    pub prepare_python: Option<PathBuf>,
    /// The Python that imports `rustina` (None: `python3` on PATH).
    pub rustina_python: Option<PathBuf>,
    pub enable_sleep_engine: bool,
    /// Read/write the artifact store directly (same URI as the coordinator's) instead of
    /// relaying through the coordinator.
    pub artifacts: Option<String>,
    pub artifact_compression: Compression,
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

/// The `dockyard-agent` command line.
#[derive(Parser, Debug)]
#[command(name = "dockyard-agent", version, about = ABOUT, after_help = EXAMPLES)]
pub struct AgentArgs {
    #[command(flatten)]
    pub file: ConfigFlag,
    #[command(flatten)]
    pub settings: AgentSettings,
    /// TEST DOUBLE: advertise N fake GPUs with no device behind them (scheduler tests only).
    #[arg(long, hide = true)]
    pub fake_gpus: Option<u32>,
}

impl AgentArgs {
    /// What a parsed command line (and the `--config` file it names) runs the agent with:
    /// the config and the log format.
    pub fn load(matches: &ArgMatches) -> Result<(AgentConfig, String), DockyardError> {
        let s: AgentSettings = settings::load(matches)?;
        let mut c = s.resolve()?;
        // A test double, not a setting: a flag only, never read from the file.
        c.fake_gpus = AgentArgs::from_arg_matches(matches)
            .map_err(|e| DockyardError::invalid("fake_gpus", e.to_string()))?
            .fake_gpus
            .unwrap_or(0);
        Ok((c, s.log_format))
    }
}

/// Default of `--engine-max-file-mb`.
pub const DEFAULT_ENGINE_MAX_FILE_MB: u64 = 1024;
/// Default of `--engine-grace-ms`: the grace every engine process gets outside the sandbox too.
const DEFAULT_ENGINE_GRACE_MS: u64 = DEFAULT_GRACE.as_millis() as u64;

/// Every agent setting. A field's name is its file key and (with `-` for `_`) its flag;
/// `labels` is the exception: the flag `--label KEY=VALUE`, the file a `[labels]` table.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSettings {
    /// Coordinator URL; several, comma-separated, to follow a failover.
    #[arg(long, env = "DOCKYARD_COORDINATOR", default_value = "http://127.0.0.1:50051")]
    pub coordinator: String,
    /// Tasks run at once [default: number of CPUs].
    #[arg(long, env = "DOCKYARD_SLOTS")]
    pub slots: Option<u32>,
    /// Memory offered, in MB [default: all of it].
    #[arg(long, env = "DOCKYARD_MEMORY_MB")]
    pub memory_mb: Option<u64>,
    /// Scratch folder for inputs, engine runs and the receptor cache.
    #[arg(long, env = "DOCKYARD_WORK_DIR", default_value = "dockyard-work")]
    pub work_dir: PathBuf,
    /// Stable node name [default: host name].
    #[arg(long, env = "DOCKYARD_NODE_ID")]
    pub node_id: Option<String>,
    /// GPUs to offer: `none`, or indices like `0,1` [default: all that nvidia-smi reports].
    #[arg(long, env = "DOCKYARD_GPUS")]
    pub gpus: Option<String>,
    /// Path of the vina binary [default: vina on PATH].
    #[arg(long, env = "DOCKYARD_VINA")]
    pub vina: Option<PathBuf>,
    /// Path of the smina binary [default: smina on PATH, if any].
    #[arg(long, env = "DOCKYARD_SMINA")]
    pub smina: Option<PathBuf>,
    /// Path of the gnina binary [default: gnina on PATH, if any].
    #[arg(long, env = "DOCKYARD_GNINA")]
    pub gnina: Option<PathBuf>,
    /// Python that imports meeko and rdkit (and molscrub, to protonate), for `--prepare meeko`
    /// jobs [default: python3, else the Python of mk_prepare_ligand.py on PATH].
    #[arg(long, env = "DOCKYARD_PREPARE_PYTHON")]
    pub prepare_python: Option<PathBuf>,
    /// The Python that runs the rustina engine (it must import `rustina`) [default: python3 on PATH].
    #[arg(long, env = "DOCKYARD_RUSTINA_PYTHON", value_name = "PATH")]
    pub rustina_python: Option<PathBuf>,
    /// Offer the test-only sleep engine (no docking; for smoke tests and benchmarks).
    #[arg(long, env = "DOCKYARD_ENABLE_SLEEP_ENGINE")]
    pub enable_sleep_engine: bool,
    /// Access the artifact store directly with this URI instead of through the coordinator.
    #[arg(long, env = "DOCKYARD_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// How artifacts this process writes are stored: zstd (compressed where it saves 10% or
    /// more) or off. Reads accept both forms whatever this says.
    #[arg(long, env = "DOCKYARD_ARTIFACT_COMPRESSION", value_enum, default_value_t = Compression::Zstd)]
    pub artifact_compression: Compression,
    /// Label as KEY=VALUE (repeatable); added to the file's [labels].
    #[arg(long = "label", value_name = "KEY=VALUE")]
    #[serde(with = "label_table")]
    pub labels: Vec<Label>,
    /// Seconds running tasks may finish after SIGTERM before they are handed back.
    #[arg(long, env = "DOCKYARD_SHUTDOWN_GRACE_S", default_value_t = 30)]
    pub shutdown_grace_s: u64,
    /// Log format: text or json.
    #[arg(long, env = "DOCKYARD_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9465) [default: off].
    #[arg(long, env = "DOCKYARD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// etcd endpoints, comma-separated: register this node there and find the leading
    /// coordinator through it (then --coordinator is not needed).
    #[arg(long, env = "DOCKYARD_ETCD")]
    pub etcd: Option<String>,
    /// PEM CA that signed the etcd members' certificates: TLS to etcd (https:// endpoints).
    #[arg(long, env = "DOCKYARD_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd's --client-cert-auth; needs --etcd-key.
    #[arg(long, env = "DOCKYARD_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, env = "DOCKYARD_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user, when etcd has authentication enabled (deploy/etcd/README.md lists the roles).
    #[arg(long, env = "DOCKYARD_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// File holding --etcd-user's password.
    #[arg(long, env = "DOCKYARD_ETCD_PASSWORD_FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// Cluster name (etcd key prefix /dockyard/<cluster>/).
    #[arg(long, env = "DOCKYARD_CLUSTER", default_value = DEFAULT_CLUSTER)]
    pub cluster: String,
    /// TTL of this node's etcd membership lease, in ms.
    #[arg(long, env = "DOCKYARD_ETCD_TTL_MS", default_value_t = 5000)]
    pub etcd_ttl_ms: u64,
    /// Address-space limit of each engine run, in MB (2^20 bytes); 0 = none [default: twice
    /// the task's memory estimate plus headroom; none for GPU engines].
    #[arg(long, env = "DOCKYARD_ENGINE_MEMORY_LIMIT_MB")]
    pub engine_memory_limit_mb: Option<u64>,
    /// Largest file an engine run may write, in MB (2^20 bytes); 0 = none.
    #[arg(long, env = "DOCKYARD_ENGINE_MAX_FILE_MB", default_value_t = DEFAULT_ENGINE_MAX_FILE_MB)]
    pub engine_max_file_mb: u64,
    /// Milliseconds between SIGTERM and SIGKILL when an engine run times out or is cancelled.
    #[arg(long, env = "DOCKYARD_ENGINE_GRACE_MS", default_value_t = DEFAULT_ENGINE_GRACE_MS)]
    pub engine_grace_ms: u64,
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

impl Default for AgentSettings {
    fn default() -> Self {
        declared_defaults()
    }
}

impl AgentSettings {
    fn etcd_access(&self) -> EtcdAccessFlags {
        EtcdAccessFlags {
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
        }
    }

    /// Checks the settings, probes what they leave to the machine (CPUs, memory, host name)
    /// and turns them into the agent's config.
    pub fn resolve(&self) -> Result<AgentConfig, DockyardError> {
        for url in self.coordinator.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(DockyardError::invalid(
                    "coordinator",
                    format!("'{url}' must be a URL like http://HOST:50051"),
                ));
            }
        }
        let node_id = NodeId::parse(&self.node_id.clone().unwrap_or_else(capacity::hostname))?;
        let slots = match self.slots {
            None => capacity::cpu_count(),
            Some(s) if s == 0 || s > 4096 => {
                return Err(DockyardError::invalid("slots", format!("{s} must be 1-4096")));
            }
            Some(s) => s,
        };
        let memory_bytes = match self.memory_mb {
            None => capacity::memory_bytes(),
            Some(mb) => mb
                .checked_mul(1_000_000)
                .ok_or_else(|| DockyardError::invalid("memory_mb", format!("{mb} MB is too large")))?,
        };
        let (probe_gpus, gpu_filter) = match self.gpus.as_deref().map(str::trim) {
            None | Some("all") => (true, None),
            Some("none") => (false, None),
            Some(list) => {
                let ids: Result<Vec<u32>, _> = list.split(',').map(|x| x.trim().parse::<u32>()).collect();
                let ids = ids.map_err(|_| DockyardError::invalid("gpus", format!("'{list}' must be none, all, or indices like 0,1")))?;
                (true, Some(ids))
            }
        };
        let etcd = match &self.etcd {
            None => None,
            Some(urls) => {
                let etcd = EtcdSettings::parse_with(urls, &self.cluster, &self.etcd_access())?;
                if self.etcd_ttl_ms < 1000 {
                    return Err(DockyardError::invalid(
                        "etcd_ttl_ms",
                        format!("{} is below etcd's 1 s lease granularity", self.etcd_ttl_ms),
                    ));
                }
                Some(etcd)
            }
        };
        let mb = |name: &str, v: u64| {
            v.checked_mul(1 << 20)
                .ok_or_else(|| DockyardError::invalid(name, format!("{v} MB is too large")))
        };
        let engine_memory_limit = match self.engine_memory_limit_mb {
            None => None,
            Some(v) => Some(mb("engine_memory_limit_mb", v)?),
        };
        let engine_max_file_bytes = mb("engine_max_file_mb", self.engine_max_file_mb)?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(DockyardError::invalid("tls_cert", "give both --tls-cert and --tls-key"));
        }
        Ok(AgentConfig {
            coordinator: self.coordinator.clone(),
            node_id,
            slots,
            memory_bytes,
            work_dir: self.work_dir.clone(),
            vina_path: self.vina.clone(),
            smina_path: self.smina.clone(),
            gnina_path: self.gnina.clone(),
            prepare_python: self.prepare_python.clone(),
            rustina_python: self.rustina_python.clone(),
            enable_sleep_engine: self.enable_sleep_engine,
            artifacts: self.artifacts.clone(),
            artifact_compression: self.artifact_compression,
            labels: self.labels.iter().map(|l| (l.key.clone(), l.value.clone())).collect(),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_s),
            probe_gpus,
            gpu_filter,
            fake_gpus: 0,
            etcd,
            etcd_ttl: Duration::from_millis(self.etcd_ttl_ms),
            engine_memory_limit,
            engine_max_file_bytes,
            engine_grace: Duration::from_millis(self.engine_grace_ms),
            join_token_file: self.join_token_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            metrics_listen: self.metrics_listen.clone(),
        })
    }
}

/// A node label: `--label KEY=VALUE`, or `KEY = "VALUE"` in the file's `[labels]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl FromStr for Label {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, value) = s.split_once('=').ok_or_else(|| format!("'{s}' must be KEY=VALUE"))?;
        Ok(Label {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

/// Labels as the file writes them: a table, one key per label.
mod label_table {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Label;

    pub fn serialize<S: Serializer>(labels: &[Label], s: S) -> Result<S::Ok, S::Error> {
        let table: BTreeMap<&str, &str> = labels.iter().map(|l| (l.key.as_str(), l.value.as_str())).collect();
        table.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Label>, D::Error> {
        let table = BTreeMap::<String, String>::deserialize(d)?;
        Ok(table.into_iter().map(|(key, value)| Label { key, value }).collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::CommandFactory;

    use super::*;

    /// What `dockyard-agent ARGS` would run with (and the environment's settings).
    pub(crate) fn load(args: &[&str]) -> Result<AgentConfig, DockyardError> {
        let m = AgentArgs::command()
            .try_get_matches_from(std::iter::once("dockyard-agent").chain(args.iter().copied()))
            .map_err(|e| DockyardError::invalid("arguments", e.to_string()))?;
        AgentArgs::load(&m).map(|(c, _)| c)
    }

    fn example() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/agent.toml")
    }

    #[test]
    fn example_config_in_deploy_parses() {
        let p = example();
        let m = AgentArgs::command()
            .try_get_matches_from(["dockyard-agent", "--config", p.to_str().expect("utf-8 path"), "--node-id", "n1"])
            .expect("flags");
        let (c, fmt) = AgentArgs::load(&m).expect("deploy/config/agent.toml must parse");
        assert_eq!(c.coordinator, "http://127.0.0.1:50051");
        assert_eq!(c.labels.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(fmt, "json");
    }

    #[test]
    fn every_setting_the_example_documents_exists() {
        let f: AgentSettings = dockyard_common::config::load_with_examples_enabled(&example()).expect("every documented key is a setting");
        assert!(f.etcd.is_some() && f.tls_key.is_some());
        // The two the example marks as the defaults.
        let d = AgentSettings::default();
        assert_eq!((f.engine_max_file_mb, f.engine_grace_ms), (d.engine_max_file_mb, d.engine_grace_ms));
    }

    #[test]
    fn file_labels_and_flag_labels_add_up() {
        let p = example();
        let c = load(&[
            "--config",
            p.to_str().expect("utf-8 path"),
            "--node-id",
            "n1",
            "--label",
            "zone=z2",
            "--label",
            "rack=r9",
        ])
        .expect("loads");
        let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(labels, ["rack=r9", "zone=z2"]);
        let e = load(&["--node-id", "n", "--label", "rack"]).expect_err("not KEY=VALUE");
        assert!(e.to_string().contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn the_rustina_python_is_a_flag_and_unset_by_default() {
        let c = load(&["--node-id", "n", "--rustina-python", "/opt/py/bin/python3"]).expect("loads");
        assert_eq!(c.rustina_python, Some(PathBuf::from("/opt/py/bin/python3")));
        assert_eq!(load(&["--node-id", "n"]).expect("loads").rustina_python, None);
    }

    #[test]
    fn declared_defaults_are_the_config_defaults() {
        let c = AgentSettings {
            node_id: Some("n".into()),
            ..AgentSettings::default()
        }
        .resolve()
        .expect("the defaults are valid");
        assert_eq!(c.coordinator, "http://127.0.0.1:50051");
        assert_eq!(c.work_dir, PathBuf::from("dockyard-work"));
        assert_eq!(c.slots, capacity::cpu_count());
        assert_eq!((c.shutdown_grace, c.etcd_ttl), (Duration::from_secs(30), Duration::from_secs(5)));
        assert_eq!((c.engine_max_file_bytes, c.engine_grace), (1024 << 20, DEFAULT_GRACE));
        assert!(c.probe_gpus && c.gpu_filter.is_none() && c.etcd.is_none() && c.engine_memory_limit.is_none());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = load(&["--coordinator", "127.0.0.1:50051", "--node-id", "n"]).expect_err("no scheme");
        assert!(e.to_string().contains("coordinator"), "{e}");
        let e = load(&["--slots", "0", "--node-id", "n"]).expect_err("zero slots");
        assert!(e.to_string().contains("slots"), "{e}");
        let e = load(&["--gpus", "0,x", "--node-id", "n"]).expect_err("bad gpus");
        assert!(e.to_string().contains("gpus"), "{e}");
        let e = load(&["--etcd", "http://e:2379", "--etcd-ttl-ms", "500", "--node-id", "n"]).expect_err("short ttl");
        assert!(e.to_string().contains("etcd_ttl_ms"), "{e}");
        let e = load(&["--tls-cert", "/c.pem", "--node-id", "n"]).expect_err("no key");
        assert!(e.to_string().contains("tls_cert"), "{e}");
        let c = load(&["--gpus", "1, 3", "--node-id", "n", "--fake-gpus", "2"]).expect("gpu list");
        assert_eq!(c.gpu_filter, Some(vec![1, 3]));
        assert_eq!(c.fake_gpus, 2);
    }
}
