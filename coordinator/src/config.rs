//! Coordinator settings: flags, `DOCKYARD_*` environment, TOML file, defaults (that order).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use dockyard_common::config::load_toml;
use dockyard_common::error::DockyardError;

use dockyard_common::cluster::{EtcdSettings, DEFAULT_CLUSTER};

use crate::auth::AuthConfig;
use crate::cluster::ClusterConfig;
use crate::scheduler::{Backoff, SchedulerConfig};
use crate::submit::SubmitLimits;

/// Validated settings the library runs with.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Artifact store URI; `None` means `file://<data_dir>/artifacts`.
    pub artifacts: Option<String>,
    pub scheduler: SchedulerConfig,
    pub max_message_bytes: usize,
    pub max_upload_bytes: u64,
    /// Cluster mode (`--etcd`): election, replicated journal, etcd membership.
    pub cluster: Option<ClusterConfig>,
    /// Tokens and TLS; all off by default (loopback, no TLS, one local organisation).
    pub auth: AuthConfig,
    /// Caps on what one submission may make the coordinator read and store.
    pub limits: SubmitLimits,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None`: no listener.
    pub metrics_listen: Option<String>,
}

impl CoordinatorConfig {
    pub fn new(listen: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        CoordinatorConfig {
            listen: listen.into(),
            data_dir: data_dir.into(),
            artifacts: None,
            scheduler: SchedulerConfig::default(),
            max_message_bytes: 64 << 20,
            max_upload_bytes: 4 << 30,
            cluster: None,
            auth: AuthConfig::default(),
            limits: SubmitLimits::default(),
            metrics_listen: None,
        }
    }

    pub fn artifacts_uri(&self) -> String {
        self.artifacts
            .clone()
            .unwrap_or_else(|| format!("file://{}", self.data_dir.join("artifacts").display()))
    }
}

const ABOUT: &str = "Dockyard coordinator: accepts docking jobs, keeps the durable queue, streams tasks to agents.";
const EXAMPLES: &str = "Examples:
  dockyard-coordinator --listen 127.0.0.1:50051 --data-dir /var/lib/dockyard --artifacts file:///var/lib/dockyard/artifacts
  DOCKYARD_LISTEN=0.0.0.0:50051 dockyard-coordinator --config /etc/dockyard/coordinator.toml
  grpcurl -plaintext 127.0.0.1:50051 list

Every flag can also be set as DOCKYARD_<FLAG> (e.g. DOCKYARD_DATA_DIR) or as a key in the
--config TOML file (e.g. data_dir = \"/var/lib/dockyard\"); flags win over the environment,
which wins over the file.";

#[derive(Parser, Debug, Default)]
#[command(name = "dockyard-coordinator", version, about = ABOUT, after_help = EXAMPLES)]
pub struct CoordinatorArgs {
    /// TOML config file.
    #[arg(long, env = "DOCKYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on [default: 127.0.0.1:50051].
    #[arg(long, env = "DOCKYARD_LISTEN")]
    pub listen: Option<String>,
    /// Folder for durable state (sled) [default: ./dockyard-data].
    #[arg(long, env = "DOCKYARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Artifact store URI [default: file://<data-dir>/artifacts].
    #[arg(long, env = "DOCKYARD_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// How often agents heartbeat, in milliseconds [default: 2000].
    #[arg(long, env = "DOCKYARD_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// An agent silent this long is lost and its tasks requeued, in ms [default: 10000].
    #[arg(long, env = "DOCKYARD_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// First retry delay in ms; doubles per attempt, with jitter [default: 500].
    #[arg(long, env = "DOCKYARD_RETRY_BASE_MS")]
    pub retry_base_ms: Option<u64>,
    /// After a restart, how long running tasks wait for their agent to report, in ms [default: 15000].
    #[arg(long, env = "DOCKYARD_RECONCILE_GRACE_MS")]
    pub reconcile_grace_ms: Option<u64>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "DOCKYARD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464) [default: off].
    #[arg(long, env = "DOCKYARD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// etcd endpoints, comma-separated: turns on cluster mode (election, failover, etcd membership).
    #[arg(long, env = "DOCKYARD_ETCD")]
    pub etcd: Option<String>,
    /// Cluster name: the etcd key prefix /dockyard/<cluster>/ [default: default].
    #[arg(long, env = "DOCKYARD_CLUSTER")]
    pub cluster: Option<String>,
    /// Endpoint other processes use to reach this coordinator [default: http://<listen address>].
    #[arg(long, env = "DOCKYARD_ADVERTISE")]
    pub advertise: Option<String>,
    /// Election lease TTL in ms: how soon a dead leader is replaced [default: 5000].
    #[arg(long, env = "DOCKYARD_ELECTION_TTL_MS")]
    pub election_ttl_ms: Option<u64>,
    /// After a takeover, how long unfinished tasks wait for their agents to reclaim them, in ms [default: 2000].
    #[arg(long, env = "DOCKYARD_TAKEOVER_GRACE_MS")]
    pub takeover_grace_ms: Option<u64>,
    /// File holding the bootstrap admin secret: turns authentication on (clients then need
    /// `authorization: Bearer TOKEN`; `dockyard admin token create --org ORG` makes org tokens).
    #[arg(long, env = "DOCKYARD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the secret agents must present (their --join-token-file).
    #[arg(long, env = "DOCKYARD_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<PathBuf>,
    /// PEM certificate (chain) to serve TLS with; needs --tls-key. Clients then use https://.
    #[arg(long, env = "DOCKYARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "DOCKYARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA: agents may authenticate with a client certificate it signed (mTLS; optional
    /// at the TLS level so clients without certificates share the port).
    #[arg(long, env = "DOCKYARD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Largest gRPC message accepted or sent by the job and agent services, in bytes [default: 67108864 (64 MiB)].
    #[arg(long, env = "DOCKYARD_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Largest file one UploadInput (or agent artifact upload) may stream, in bytes [default: 4294967296 (4 GiB)].
    #[arg(long, env = "DOCKYARD_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Largest ligand record (one molecule) in a library, in bytes [default: 1048576 (1 MiB)].
    #[arg(long, env = "DOCKYARD_MAX_RECORD_BYTES")]
    pub max_record_bytes: Option<usize>,
    /// Most bytes the ligand files of one job may hold together, as sent [default: 17179869184 (16 GiB)].
    #[arg(long, env = "DOCKYARD_MAX_LIBRARY_BYTES")]
    pub max_library_bytes: Option<u64>,
    /// Most bytes one gzipped ligand file may expand to [default: 34359738368 (32 GiB)].
    #[arg(long, env = "DOCKYARD_MAX_DECOMPRESSED_BYTES")]
    pub max_decompressed_bytes: Option<u64>,
    /// Most bytes a gzipped ligand file may expand to per compressed byte (gzip bomb guard) [default: 100].
    #[arg(long, env = "DOCKYARD_MAX_GZIP_RATIO")]
    pub max_gzip_ratio: Option<u64>,
    /// Largest receptor or autobox ligand file, in bytes [default: 268435456 (256 MiB)].
    #[arg(long, env = "DOCKYARD_MAX_RECEPTOR_BYTES")]
    pub max_receptor_bytes: Option<u64>,
}

/// The same keys as the flags, from the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorFile {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub artifacts: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub lease_ms: Option<u64>,
    pub retry_base_ms: Option<u64>,
    pub reconcile_grace_ms: Option<u64>,
    pub log_format: Option<String>,
    pub metrics_listen: Option<String>,
    pub etcd: Option<String>,
    pub cluster: Option<String>,
    pub advertise: Option<String>,
    pub election_ttl_ms: Option<u64>,
    pub takeover_grace_ms: Option<u64>,
    pub admin_token_file: Option<PathBuf>,
    pub join_token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub max_message_bytes: Option<usize>,
    pub max_upload_bytes: Option<u64>,
    pub max_record_bytes: Option<usize>,
    pub max_library_bytes: Option<u64>,
    pub max_decompressed_bytes: Option<u64>,
    pub max_gzip_ratio: Option<u64>,
    pub max_receptor_bytes: Option<u64>,
}

impl CoordinatorArgs {
    /// Merges flags/env over the file over defaults; returns the config and the log format.
    pub fn resolve(self) -> Result<(CoordinatorConfig, String), DockyardError> {
        let f: CoordinatorFile = load_toml(self.config.as_deref())?;
        let listen = self.listen.or(f.listen).unwrap_or_else(|| "127.0.0.1:50051".into());
        let data_dir = self.data_dir.or(f.data_dir).unwrap_or_else(|| PathBuf::from("dockyard-data"));
        let mut c = CoordinatorConfig::new(listen, data_dir);
        c.artifacts = self.artifacts.or(f.artifacts);
        c.metrics_listen = self.metrics_listen.or(f.metrics_listen);
        let hb = self.heartbeat_ms.or(f.heartbeat_ms).unwrap_or(2000);
        let lease = self.lease_ms.or(f.lease_ms).unwrap_or(10_000);
        if hb == 0 || lease < 2 * hb {
            return Err(DockyardError::invalid(
                "lease_ms",
                format!("{lease} must be at least twice heartbeat_ms ({hb})"),
            ));
        }
        c.scheduler = SchedulerConfig {
            heartbeat_interval: Duration::from_millis(hb),
            lease: Duration::from_millis(lease),
            backoff: Backoff {
                base: Duration::from_millis(self.retry_base_ms.or(f.retry_base_ms).unwrap_or(500)),
                ..Backoff::default()
            },
            reconcile_grace: Duration::from_millis(self.reconcile_grace_ms.or(f.reconcile_grace_ms).unwrap_or(15_000)),
            coordinator_id: format!("coordinator@{}", c.listen),
            ..SchedulerConfig::default()
        };
        if let Some(urls) = self.etcd.or(f.etcd) {
            let cluster = self.cluster.or(f.cluster).unwrap_or_else(|| DEFAULT_CLUSTER.into());
            let ttl = self.election_ttl_ms.or(f.election_ttl_ms).unwrap_or(5000);
            if ttl < 1000 {
                return Err(DockyardError::invalid(
                    "election_ttl_ms",
                    format!("{ttl} is below etcd's 1 s lease granularity"),
                ));
            }
            c.cluster = Some(ClusterConfig {
                etcd: EtcdSettings::parse(&urls, &cluster)?,
                advertise: self.advertise.or(f.advertise).unwrap_or_default(),
                election_ttl: Duration::from_millis(ttl),
                takeover_grace: Duration::from_millis(self.takeover_grace_ms.or(f.takeover_grace_ms).unwrap_or(2000)),
            });
        }
        c.auth = AuthConfig {
            admin_token_file: self.admin_token_file.or(f.admin_token_file),
            join_token_file: self.join_token_file.or(f.join_token_file),
            tls_cert: self.tls_cert.or(f.tls_cert),
            tls_key: self.tls_key.or(f.tls_key),
            tls_client_ca: self.tls_client_ca.or(f.tls_client_ca),
        };
        let d = SubmitLimits::default();
        c.max_message_bytes = self.max_message_bytes.or(f.max_message_bytes).unwrap_or(c.max_message_bytes);
        c.max_upload_bytes = self.max_upload_bytes.or(f.max_upload_bytes).unwrap_or(c.max_upload_bytes);
        c.limits = SubmitLimits {
            max_record_bytes: self.max_record_bytes.or(f.max_record_bytes).unwrap_or(d.max_record_bytes),
            max_library_bytes: self.max_library_bytes.or(f.max_library_bytes).unwrap_or(d.max_library_bytes),
            max_decompressed_bytes: self
                .max_decompressed_bytes
                .or(f.max_decompressed_bytes)
                .unwrap_or(d.max_decompressed_bytes),
            max_gzip_ratio: self.max_gzip_ratio.or(f.max_gzip_ratio).unwrap_or(d.max_gzip_ratio),
            max_receptor_bytes: self.max_receptor_bytes.or(f.max_receptor_bytes).unwrap_or(d.max_receptor_bytes),
        };
        let l = &c.limits;
        for (name, value) in [
            ("max_message_bytes", c.max_message_bytes as u64),
            ("max_upload_bytes", c.max_upload_bytes),
            ("max_record_bytes", l.max_record_bytes as u64),
            ("max_library_bytes", l.max_library_bytes),
            ("max_decompressed_bytes", l.max_decompressed_bytes),
            ("max_gzip_ratio", l.max_gzip_ratio),
            ("max_receptor_bytes", l.max_receptor_bytes),
        ] {
            if value == 0 {
                return Err(DockyardError::invalid(name, "must be at least 1"));
            }
        }
        let log_format = self.log_format.or(f.log_format).unwrap_or_else(|| "text".into());
        Ok((c, log_format))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_in_deploy_parses() {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/coordinator.toml");
        let args = CoordinatorArgs {
            config: Some(p),
            ..CoordinatorArgs::default()
        };
        let (c, fmt) = args.resolve().expect("deploy/config/coordinator.toml must parse");
        assert_eq!(c.listen, "0.0.0.0:50051");
        assert_eq!(c.scheduler.lease, Duration::from_secs(10));
        assert_eq!(fmt, "json");
    }

    #[test]
    fn every_setting_the_example_documents_exists() {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/coordinator.toml");
        let f: CoordinatorFile = dockyard_common::config::load_with_examples_enabled(&p).expect("every documented key is a setting");
        assert!(f.etcd.is_some() && f.tls_client_ca.is_some() && f.max_gzip_ratio == Some(100));
    }

    #[test]
    fn flags_win_over_the_file_and_bad_leases_are_refused() {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/coordinator.toml");
        let args = CoordinatorArgs {
            config: Some(p),
            listen: Some("127.0.0.1:1".into()),
            ..CoordinatorArgs::default()
        };
        assert_eq!(args.resolve().expect("ok").0.listen, "127.0.0.1:1");
        let args = CoordinatorArgs {
            heartbeat_ms: Some(1000),
            lease_ms: Some(1500),
            ..CoordinatorArgs::default()
        };
        let e = args.resolve().expect_err("lease too short");
        assert!(e.to_string().contains("lease_ms"), "{e}");
    }
}
