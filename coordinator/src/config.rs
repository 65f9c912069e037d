//! Coordinator settings, each declared once in [`CoordinatorSettings`]: its flag, its
//! `DOCKYARD_*` variable, its `--config` file key and its default. Flags win over the
//! environment, which wins over the file, which wins over the default
//! (`dockyard_common::settings`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Parser};
use serde::{Deserialize, Serialize};

use dockyard_common::artifact::Compression;
use dockyard_common::cluster::{EtcdAccessFlags, EtcdSettings, DEFAULT_CLUSTER};
use dockyard_common::error::DockyardError;
use dockyard_common::settings::{self, declared_defaults, ConfigFlag};

use crate::auth::AuthConfig;
use crate::backup::schedule::Schedule;
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
    pub artifact_compression: Compression,
    pub backup: Option<Schedule>,
    pub restore_from: Option<String>,
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
    pub http_listen: Option<String>,
}

impl CoordinatorConfig {
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

/// The `dockyard-coordinator` command line.
#[derive(Parser, Debug)]
#[command(name = "dockyard-coordinator", version, about = ABOUT, after_help = EXAMPLES)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub file: ConfigFlag,
    #[command(flatten)]
    pub settings: CoordinatorSettings,
}

impl CoordinatorArgs {
    /// What a parsed command line (and the `--config` file it names) runs the coordinator
    /// with: the config and the log format.
    pub fn load(matches: &ArgMatches) -> Result<(CoordinatorConfig, String), DockyardError> {
        let s: CoordinatorSettings = settings::load(matches)?;
        Ok((s.resolve()?, s.log_format))
    }
}

/// Every coordinator setting. A field's name is its file key and (with `-` for `_`) its flag.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorSettings {
    /// Address to serve gRPC on.
    #[arg(long, env = "DOCKYARD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// Folder for durable state (sled).
    #[arg(long, env = "DOCKYARD_DATA_DIR", default_value = "dockyard-data")]
    pub data_dir: PathBuf,
    /// Artifact store URI [default: file://<data-dir>/artifacts].
    #[arg(long, env = "DOCKYARD_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// How artifacts this process writes are stored: zstd (compressed where it saves 10% or
    /// more) or off. Reads accept both forms whatever this says.
    #[arg(long, env = "DOCKYARD_ARTIFACT_COMPRESSION", value_enum, default_value_t = Compression::Zstd)]
    pub artifact_compression: Compression,
    /// Take a snapshot this often (e.g. 1h, 30m) to --backup-to [default: off].
    #[arg(long, env = "DOCKYARD_BACKUP_EVERY", value_name = "DURATION")]
    pub backup_every: Option<String>,
    /// Where scheduled snapshots go: file:///DIR or s3://BUCKET/PREFIX.
    #[arg(long, env = "DOCKYARD_BACKUP_TO", value_name = "URI")]
    pub backup_to: Option<String>,
    /// How many scheduled snapshots to keep; older ones are deleted after each backup.
    #[arg(long, env = "DOCKYARD_BACKUP_KEEP", default_value_t = 24)]
    pub backup_keep: usize,
    /// Before serving, restore this snapshot (its folder, or a backup location: the newest
    /// there) into the data folder, which must be empty; with --etcd, into the cluster's
    /// etcd prefix, which must be empty (start one coordinator with it). A later start with
    /// the same flag finds it restored and goes on.
    #[arg(long, env = "DOCKYARD_RESTORE_FROM", value_name = "URI")]
    pub restore_from: Option<String>,
    /// How often agents heartbeat, in milliseconds.
    #[arg(long, env = "DOCKYARD_HEARTBEAT_MS", default_value_t = 2000)]
    pub heartbeat_ms: u64,
    /// An agent silent this long is lost and its tasks requeued, in ms.
    #[arg(long, env = "DOCKYARD_LEASE_MS", default_value_t = 10_000)]
    pub lease_ms: u64,
    /// First retry delay in ms; doubles per attempt, with jitter.
    #[arg(long, env = "DOCKYARD_RETRY_BASE_MS", default_value_t = 500)]
    pub retry_base_ms: u64,
    /// After a restart, how long running tasks wait for their agent to report, in ms.
    #[arg(long, env = "DOCKYARD_RECONCILE_GRACE_MS", default_value_t = 15_000)]
    pub reconcile_grace_ms: u64,
    /// Log format: text or json.
    #[arg(long, env = "DOCKYARD_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464) [default: off].
    #[arg(long, env = "DOCKYARD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serve the web console at http://ADDR/ (e.g. 0.0.0.0:8080) [default: off]. It uses
    /// the same tokens as gRPC; put it behind TLS (a reverse proxy) off the loopback.
    #[arg(long, env = "DOCKYARD_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// etcd endpoints, comma-separated: turns on cluster mode (election, failover, etcd membership).
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
    /// Cluster name: the etcd key prefix /dockyard/<cluster>/.
    #[arg(long, env = "DOCKYARD_CLUSTER", default_value = DEFAULT_CLUSTER)]
    pub cluster: String,
    /// Endpoint other processes use to reach this coordinator [default: http://<listen address>].
    #[arg(long, env = "DOCKYARD_ADVERTISE")]
    pub advertise: Option<String>,
    /// Election lease TTL in ms: how soon a dead leader is replaced.
    #[arg(long, env = "DOCKYARD_ELECTION_TTL_MS", default_value_t = 5000)]
    pub election_ttl_ms: u64,
    /// After a takeover, how long unfinished tasks wait for their agents to reclaim them, in ms.
    #[arg(long, env = "DOCKYARD_TAKEOVER_GRACE_MS", default_value_t = 2000)]
    pub takeover_grace_ms: u64,
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
    /// Largest gRPC message accepted or sent by the job and agent services, in bytes (64 MiB).
    #[arg(long, env = "DOCKYARD_MAX_MESSAGE_BYTES", default_value_t = 64 << 20)]
    pub max_message_bytes: usize,
    /// Largest file one UploadInput (or agent artifact upload) may stream, in bytes (4 GiB).
    #[arg(long, env = "DOCKYARD_MAX_UPLOAD_BYTES", default_value_t = 4 << 30)]
    pub max_upload_bytes: u64,
    /// Largest ligand record (one molecule) in a library, in bytes (1 MiB).
    // A drug-like ligand is a few kilobytes of SDF; 1 MiB is ~12,000 atoms, far past what a
    // docking engine takes as a ligand.
    #[arg(long, env = "DOCKYARD_MAX_RECORD_BYTES", default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
    /// Most bytes the ligand files of one job may hold together, as sent (16 GiB).
    #[arg(long, env = "DOCKYARD_MAX_LIBRARY_BYTES", default_value_t = 16 << 30)]
    pub max_library_bytes: u64,
    /// Most bytes one gzipped ligand file may expand to (32 GiB).
    // A 4 GiB upload (the --max-upload-bytes default) of gzipped SMILES or SDF expands to
    // about 16-32 GiB.
    #[arg(long, env = "DOCKYARD_MAX_DECOMPRESSED_BYTES", default_value_t = 32 << 30)]
    pub max_decompressed_bytes: u64,
    /// Most bytes a gzipped ligand file may expand to per compressed byte (gzip bomb guard).
    // Molecule text compresses 3-10 fold; 10 MB of zeros, 1000 fold.
    #[arg(long, env = "DOCKYARD_MAX_GZIP_RATIO", default_value_t = 100)]
    pub max_gzip_ratio: u64,
    /// Largest receptor or autobox ligand file, in bytes (256 MiB).
    // The largest PDB entries (ribosomes) are ~50 MB as PDB text.
    #[arg(long, env = "DOCKYARD_MAX_RECEPTOR_BYTES", default_value_t = 256 << 20)]
    pub max_receptor_bytes: u64,
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        declared_defaults()
    }
}

impl CoordinatorSettings {
    fn etcd_access(&self) -> EtcdAccessFlags {
        EtcdAccessFlags {
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
        }
    }

    /// Checks the settings and turns them into the library's config.
    pub fn resolve(&self) -> Result<CoordinatorConfig, DockyardError> {
        let (hb, lease) = (self.heartbeat_ms, self.lease_ms);
        if hb == 0 || lease < hb.saturating_mul(2) {
            return Err(DockyardError::invalid(
                "lease_ms",
                format!("{lease} must be at least twice heartbeat_ms ({hb})"),
            ));
        }
        let cluster = match &self.etcd {
            None => None,
            Some(urls) => Some(self.cluster_config(urls)?),
        };
        for (name, value) in [
            ("max_message_bytes", self.max_message_bytes as u64),
            ("max_upload_bytes", self.max_upload_bytes),
            ("max_record_bytes", self.max_record_bytes as u64),
            ("max_library_bytes", self.max_library_bytes),
            ("max_decompressed_bytes", self.max_decompressed_bytes),
            ("max_gzip_ratio", self.max_gzip_ratio),
            ("max_receptor_bytes", self.max_receptor_bytes),
        ] {
            if value == 0 {
                return Err(DockyardError::invalid(name, "must be at least 1"));
            }
        }
        let backup = self.backup_schedule()?;
        Ok(CoordinatorConfig {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            artifacts: self.artifacts.clone(),
            artifact_compression: self.artifact_compression,
            backup,
            restore_from: self.restore_from.clone(),
            scheduler: SchedulerConfig {
                heartbeat_interval: self.heartbeat_interval(),
                lease: self.lease(),
                backoff: self.backoff(),
                reconcile_grace: self.reconcile_grace(),
                coordinator_id: format!("coordinator@{}", self.listen),
                ..SchedulerConfig::default()
            },
            max_message_bytes: self.max_message_bytes,
            max_upload_bytes: self.max_upload_bytes,
            cluster,
            auth: AuthConfig {
                admin_token_file: self.admin_token_file.clone(),
                join_token_file: self.join_token_file.clone(),
                tls_cert: self.tls_cert.clone(),
                tls_key: self.tls_key.clone(),
                tls_client_ca: self.tls_client_ca.clone(),
            },
            limits: self.limits(),
            metrics_listen: self.metrics_listen.clone(),
            http_listen: self.http_listen.clone(),
        })
    }

    fn cluster_config(&self, urls: &str) -> Result<ClusterConfig, DockyardError> {
        let ttl = self.election_ttl_ms;
        if ttl < 1000 {
            return Err(DockyardError::invalid(
                "election_ttl_ms",
                format!("{ttl} is below etcd's 1 s lease granularity"),
            ));
        }
        Ok(ClusterConfig {
            etcd: EtcdSettings::parse_with(urls, &self.cluster, &self.etcd_access())?,
            advertise: self.advertise.clone().unwrap_or_default(),
            election_ttl: Duration::from_millis(ttl),
            takeover_grace: Duration::from_millis(self.takeover_grace_ms),
        })
    }

    fn backup_schedule(&self) -> Result<Option<Schedule>, DockyardError> {
        let (every, to) = match (&self.backup_every, &self.backup_to) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(DockyardError::invalid("backup_to", "--backup-every needs --backup-to URI")),
            (None, Some(_)) => return Err(DockyardError::invalid("backup_every", "--backup-to needs --backup-every (e.g. 1h)")),
            (Some(e), Some(t)) => (e, t),
        };
        let every = humantime::parse_duration(every)
            .map_err(|e| DockyardError::invalid("backup_every", format!("'{every}': {e} (e.g. 30m, 1h, 1d)")))?;
        if every < Duration::from_millis(100) {
            return Err(DockyardError::invalid("backup_every", "must be at least 100ms"));
        }
        if self.backup_keep == 0 {
            return Err(DockyardError::invalid("backup_keep", "must be at least 1"));
        }
        Ok(Some(Schedule {
            every,
            to: to.clone(),
            keep: self.backup_keep,
        }))
    }

    pub(crate) fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(self.retry_base_ms))
    }

    pub(crate) fn reconcile_grace(&self) -> Duration {
        Duration::from_millis(self.reconcile_grace_ms)
    }

    pub(crate) fn limits(&self) -> SubmitLimits {
        SubmitLimits {
            max_record_bytes: self.max_record_bytes,
            max_library_bytes: self.max_library_bytes,
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_gzip_ratio: self.max_gzip_ratio,
            max_receptor_bytes: self.max_receptor_bytes,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The settings `dockyard-coordinator ARGS` would run with (and the environment's).
    pub(crate) fn settings_from(args: &[&str]) -> Result<CoordinatorSettings, DockyardError> {
        let m = CoordinatorArgs::command()
            .try_get_matches_from(std::iter::once("dockyard-coordinator").chain(args.iter().copied()))
            .map_err(|e| DockyardError::invalid("arguments", e.to_string()))?;
        settings::load(&m)
    }

    fn example() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/coordinator.toml")
    }

    fn example_arg() -> String {
        example().to_str().expect("utf-8 repository path").to_string()
    }

    #[test]
    fn example_config_in_deploy_parses() {
        let s = settings_from(&["--config", &example_arg()]).expect("deploy/config/coordinator.toml must parse");
        let c = s.resolve().expect("and resolve");
        assert_eq!(c.listen, "0.0.0.0:50051");
        assert_eq!(c.scheduler.lease, Duration::from_secs(10));
        assert_eq!(s.log_format, "json");
    }

    #[test]
    fn every_setting_the_example_documents_exists() {
        let f: CoordinatorSettings =
            dockyard_common::config::load_with_examples_enabled(&example()).expect("every documented key is a setting");
        assert!(f.etcd.is_some() && f.tls_client_ca.is_some());
        // The example says it shows the input limits' defaults.
        let d = CoordinatorSettings::default();
        assert_eq!(f.limits(), d.limits());
        assert_eq!((f.max_message_bytes, f.max_upload_bytes), (d.max_message_bytes, d.max_upload_bytes));
    }

    #[test]
    fn flags_win_over_the_file_and_bad_leases_are_refused() {
        let s = settings_from(&["--config", &example_arg(), "--listen", "127.0.0.1:1"]).expect("ok");
        assert_eq!(s.listen, "127.0.0.1:1");
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/dockyard"), "the file's, under the flags");
        let e = CoordinatorSettings {
            heartbeat_ms: 1000,
            lease_ms: 1500,
            ..CoordinatorSettings::default()
        }
        .resolve()
        .expect_err("lease too short");
        assert!(e.to_string().contains("lease_ms"), "{e}");
    }

    #[test]
    fn backup_flags_come_together_and_durations_are_read() {
        let s = settings_from(&["--backup-every", "90m", "--backup-to", "file:///b", "--backup-keep", "3"]).expect("ok");
        let b = s.resolve().expect("valid").backup.expect("a schedule");
        assert_eq!((b.every, b.to.as_str(), b.keep), (Duration::from_secs(5400), "file:///b", 3));
        for (args, field) in [
            (vec!["--backup-every", "1h"], "backup_to"),
            (vec!["--backup-to", "file:///b"], "backup_every"),
            (vec!["--backup-every", "soon", "--backup-to", "file:///b"], "backup_every"),
            (
                vec!["--backup-every", "1h", "--backup-to", "file:///b", "--backup-keep", "0"],
                "backup_keep",
            ),
        ] {
            let e = settings_from(&args).expect("parses").resolve().expect_err("refused");
            assert!(
                matches!(&e, DockyardError::InvalidArgument { field: f, .. } if f == field),
                "{args:?}: {e}"
            );
        }
    }

    #[test]
    fn declared_defaults_are_the_library_defaults() {
        let c = CoordinatorSettings::default().resolve().expect("the defaults are valid");
        assert_eq!(c.listen, "127.0.0.1:50051");
        assert_eq!(c.data_dir, PathBuf::from("dockyard-data"));
        assert_eq!(c.scheduler.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(c.scheduler.reconcile_grace, SchedulerConfig::default().reconcile_grace);
        assert_eq!(c.limits, SubmitLimits::default());
        assert_eq!(c.max_upload_bytes, 4 << 30);
        assert!(c.cluster.is_none() && c.metrics_listen.is_none());
    }

    #[test]
    fn cluster_settings_need_etcd_and_a_whole_second_ttl() {
        let c = settings_from(&["--etcd", "http://e1:2379", "--election-ttl-ms", "3000"])
            .and_then(|s| s.resolve())
            .expect("cluster mode");
        let cluster = c.cluster.expect("on with --etcd");
        assert_eq!(cluster.election_ttl, Duration::from_secs(3));
        assert_eq!(cluster.takeover_grace, Duration::from_secs(2));
        let e = CoordinatorSettings {
            etcd: Some("http://e1:2379".into()),
            election_ttl_ms: 999,
            ..CoordinatorSettings::default()
        }
        .resolve()
        .expect_err("ttl below 1 s");
        assert!(e.to_string().contains("election_ttl_ms"), "{e}");
    }
}
