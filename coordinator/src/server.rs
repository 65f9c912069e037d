//! Builds and runs the gRPC server: the three Dockyard services, health and reflection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;
use tracing::{error, info, warn};

use dockyard_common::artifact::{self, ArtifactStore};
use dockyard_common::error::DockyardError;
use dockyard_proto::v1::admin_service_server::AdminServiceServer;
use dockyard_proto::v1::agent_service_server::AgentServiceServer;
use dockyard_proto::v1::job_service_server::JobServiceServer;

use crate::api::admin_service::AdminApi;
use crate::api::agent_service::AgentApi;
use crate::api::job_service::JobApi;
use crate::auth::etcd::EtcdTokens;
use crate::auth::layer::AuthLayer;
use crate::auth::{Auth, QuotaTable, SledTokens, TokenStore};
use crate::backup::{self, Backups};
use crate::cluster::election::{self, LeaderView, Leadership};
use crate::cluster::gate::LeaderGateLayer;
use crate::cluster::journal::Journal;
use crate::cluster::replication::EtcdReplication;
use crate::cluster::{membership, rebuild, ClusterConfig};
use crate::config::CoordinatorConfig;
use crate::fatal::Fatal;
use crate::metrics::CoordinatorMetrics;
use crate::scheduler;
use crate::store::Store;

/// HTTP/2 keepalive on (tonic's default is off) so a silent partition shows up in seconds.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RunningCoordinator {
    pub addr: SocketAddr,
    pub artifacts_uri: String,
    /// Serving TLS: clients use `https://`.
    pub tls: bool,
    /// Where `/metrics` is served (`--metrics-listen`), if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the web console serves (`--http-listen`).
    pub console_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    /// `None` once `wait` has seen it end.
    server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
    scheduler: tokio::task::JoinHandle<()>,
    /// Why the scheduler (or leadership) had to stop, for `main` to exit on.
    fatal: mpsc::Receiver<Fatal>,
}

impl RunningCoordinator {
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving and waits for the scheduler to finish its current batch.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Some(server) = self.server {
            let _ = server.await;
        }
        let _ = self.scheduler.await;
    }

    /// Waits until the server stops, or something happens that must stop the process.
    pub async fn wait(&mut self) -> Result<(), Fatal> {
        let (fatal, server) = (&mut self.fatal, &mut self.server);
        let served = async {
            let Some(h) = server.as_mut() else {
                return std::future::pending().await;
            };
            let r = h.await;
            // A finished JoinHandle must not be awaited again (by `shutdown`).
            *server = None;
            r
        };
        tokio::select! {
            Some(f) = fatal.recv() => Err(f),
            r = served => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Fatal::Server(e.to_string())),
                Err(e) => Err(Fatal::Server(format!("server task: {e}"))),
            },
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

pub async fn start(cfg: CoordinatorConfig) -> Result<RunningCoordinator, DockyardError> {
    let store = Store::open(&cfg.data_dir)?;
    // Refuse a half-configured TLS before anything listens.
    let tls = crate::auth::tls::server_config(&cfg.auth)?;
    let artifacts_uri = cfg.artifacts_uri();
    let mut registry = Registry::with_prefix("dockyard");
    let metrics = Arc::new(CoordinatorMetrics::new(&mut registry));
    // The agent relay passes objects through as agents stored them (compressed by the agent
    // where it pays); everything else reads and writes through the compression layer.
    let raw_artifacts = metrics.artifacts.wrap(artifact::open(&artifacts_uri).await?);
    let artifacts = metrics.artifacts.compressed(Arc::clone(&raw_artifacts), cfg.artifact_compression);
    // Before anything reads the state (tokens included).
    if let Some(from) = &cfg.restore_from {
        let outcome = match &cfg.cluster {
            Some(c) => backup::restore::restore_cluster(from, &c.etcd, &artifacts).await?,
            None => backup::restore::restore(from, &store, &artifacts).await?,
        };
        match outcome {
            backup::restore::Outcome::Restored(r) => info!(
                snapshot = %r.id,
                records = r.records,
                epoch = r.epoch,
                missing_artifacts = r.missing_artifacts.len(),
                seconds = r.seconds,
                "state restored from a snapshot"
            ),
            backup::restore::Outcome::AlreadyRestored(id) => {
                info!(snapshot = %id, "the snapshot --restore-from names was restored by an earlier start; going on from the state as it is now")
            }
        }
    }
    let auth = open_auth(&cfg, &store).await?;
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| DockyardError::invalid("listen", format!("cannot listen on {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr()?;
    let metrics_addr = match &cfg.metrics_listen {
        Some(listen) => Some(crate::metrics::serve(listen, registry, shutdown.clone()).await?),
        None => None,
    };
    let upload_dir = cfg.data_dir.join("uploads");
    let advertise = cfg
        .cluster
        .as_ref()
        .map(|c| c.advertise.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| format!("{}://{addr}", if tls.is_some() { "https" } else { "http" }));
    let mut sched_cfg = cfg.scheduler.clone();
    sched_cfg.artifacts_uri = artifacts_uri.clone();
    sched_cfg.quotas = auth.quotas().clone();
    let sched_metrics = Arc::clone(&metrics);
    sched_cfg.metrics = metrics;
    if let Some(c) = &cfg.cluster {
        tokio::spawn(crate::auth::etcd::watch(c.etcd.clone(), Arc::clone(&auth), shutdown.clone()));
    }

    let (health, health_svc) = tonic_health::server::health_reporter();
    let (handle, rx) = scheduler::channel();
    let (view_tx, view_rx) = watch::channel(LeaderView::default());
    let (fatal_tx, fatal) = mpsc::channel(4);
    let scheduler = match cfg.cluster.clone() {
        None => {
            let join = scheduler::start(rx, store.clone(), sched_cfg, Arc::new(scheduler::Embedded), shutdown.clone()).await?;
            let join = supervise(
                async move { join.await.unwrap_or_else(|e| Err(Fatal::SchedulerCrashed(e.to_string()))) },
                fatal_tx,
            );
            view_tx.send_replace(LeaderView {
                endpoint: advertise.clone(),
                epoch: store.meta_u64("epoch")?,
                this_is_leader: true,
            });
            set_serving(&health, true).await;
            join
        }
        Some(cluster) => {
            set_serving(&health, false).await;
            let lead = Leading {
                cluster,
                advertise: advertise.clone(),
                store: store.clone(),
                artifacts: Arc::clone(&artifacts),
                sched_cfg,
                health: health.clone(),
                handle: handle.clone(),
            };
            supervise(lead.run(rx, view_tx, shutdown.clone()), fatal_tx)
        }
    };
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(dockyard_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(|e| DockyardError::Internal(e.to_string()))?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| DockyardError::Internal(e.to_string()))?;

    let max = cfg.max_message_bytes;
    let jobs = JobServiceServer::new(JobApi {
        scheduler: handle.clone(),
        store: store.clone(),
        artifacts: Arc::clone(&artifacts),
        upload_dir: upload_dir.clone(),
        max_upload_bytes: cfg.max_upload_bytes,
        auth: Arc::clone(&auth),
        limits: cfg.limits,
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let agents = AgentServiceServer::new(AgentApi {
        scheduler: handle.clone(),
        artifacts: raw_artifacts,
        upload_dir,
        max_artifact_bytes: cfg.max_upload_bytes,
        auth: Arc::clone(&auth),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let backups = Arc::new(Backups {
        scheduler: handle.clone(),
        store: store.clone(),
        coordinator_id: cfg.scheduler.coordinator_id.clone(),
        etcd: cfg.cluster.as_ref().map(|c| c.etcd.clone()),
        leader: view_rx.clone(),
        metrics: Arc::clone(&sched_metrics),
    });
    if let Some(s) = cfg.backup.clone() {
        tokio::spawn(backup::schedule::run(Arc::clone(&backups), s, shutdown.clone()));
    }
    let admin = AdminServiceServer::new(AdminApi {
        backups,
        scheduler: handle,
        leader: view_rx.clone(),
        coordinator_id: cfg.scheduler.coordinator_id.clone(),
        cluster: cfg.cluster.as_ref().map(|c| c.etcd.cluster.clone()).unwrap_or_default(),
        auth: Arc::clone(&auth),
    });

    let console_addr = match &cfg.http_listen {
        Some(listen) => {
            let services = crate::console::Services::new(
                jobs.clone(),
                admin.clone(),
                LeaderGateLayer::new(view_rx.clone()),
                AuthLayer::new(Arc::clone(&auth)),
            );
            Some(crate::console::serve(listen, services, shutdown.clone()).await?)
        }
        None => None,
    };
    let token = shutdown.clone();
    let serves_tls = tls.is_some();
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = tls {
        builder = builder
            .tls_config(t)
            .map_err(|e| DockyardError::invalid("tls_cert", format!("cannot use the TLS certificate and key: {e}")))?;
    }
    let server = builder
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_nodelay(true)
        // Agents stream results in bursts; small default windows throttle them.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        // Standbys redirect first; then every call is authenticated (one layer, every service).
        .layer(LeaderGateLayer::new(view_rx))
        .layer(AuthLayer::new(auth))
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(jobs)
        .add_service(agents)
        .add_service(admin)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move { token.cancelled().await });
    let server = tokio::spawn(server);
    info!(%addr, %advertise, tls = serves_tls, artifacts = %artifacts_uri, data_dir = %cfg.data_dir.display(), "coordinator serving");
    Ok(RunningCoordinator {
        addr,
        artifacts_uri,
        tls: serves_tls,
        metrics_addr,
        console_addr,
        shutdown,
        server: Some(server),
        scheduler,
        fatal,
    })
}

/// Runs `task`, handing what made it fail to `main` (through `RunningCoordinator::wait`).
fn supervise(
    task: impl std::future::Future<Output = Result<(), Fatal>> + Send + 'static,
    fatal: mpsc::Sender<Fatal>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(f) = task.await {
            let _ = fatal.send(f).await;
        }
    })
}

/// Tokens and quotas must outlive this coordinator: etcd in cluster mode (every
/// coordinator reads them, a new leader inherits them), our own sled otherwise. etcd may
/// still be starting (a compose file, a reboot): wait for it a while, as the election does.
async fn open_auth(cfg: &CoordinatorConfig, store: &Store) -> Result<Arc<Auth>, DockyardError> {
    let Some(cluster) = &cfg.cluster else {
        let tokens: Arc<dyn TokenStore> = Arc::new(SledTokens::new(store.tenants_tree()?));
        return Auth::open(&cfg.auth, tokens, QuotaTable::default()).await;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let tokens: Arc<dyn TokenStore> = Arc::new(EtcdTokens::connect(&cluster.etcd).await?);
            Auth::open(&cfg.auth, tokens, QuotaTable::default()).await
        };
        match attempt.await {
            Ok(a) => return Ok(a),
            Err(DockyardError::Unavailable(e)) if std::time::Instant::now() < deadline => {
                warn!(error = %e, "cannot read tokens and quotas from etcd yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn set_serving(health: &HealthReporter, serving: bool) {
    if serving {
        health.set_serving::<JobServiceServer<JobApi>>().await;
        health.set_serving::<AgentServiceServer<AgentApi>>().await;
        health.set_serving::<AdminServiceServer<AdminApi>>().await;
    } else {
        health.set_not_serving::<JobServiceServer<JobApi>>().await;
        health.set_not_serving::<AgentServiceServer<AgentApi>>().await;
        health.set_not_serving::<AdminServiceServer<AdminApi>>().await;
    }
}

/// A cluster-mode coordinator's life: stand by until elected, rebuild from the cluster
/// journal, then run the scheduler with the fenced journal until shutdown.
struct Leading {
    cluster: ClusterConfig,
    advertise: String,
    store: Store,
    artifacts: Arc<dyn ArtifactStore>,
    sched_cfg: scheduler::SchedulerConfig,
    health: HealthReporter,
    handle: scheduler::SchedulerHandle,
}

impl Leading {
    async fn run(
        self,
        rx: tokio::sync::mpsc::Receiver<scheduler::Command>,
        view: watch::Sender<LeaderView>,
        shutdown: CancellationToken,
    ) -> Result<(), Fatal> {
        let r = self.lead(rx, view, shutdown).await;
        if let Err(e) = &r {
            error!(error = %e, "cannot lead; stopping so a supervisor restarts this coordinator as a standby");
        }
        r
    }

    async fn lead(
        self,
        rx: tokio::sync::mpsc::Receiver<scheduler::Command>,
        view: watch::Sender<LeaderView>,
        shutdown: CancellationToken,
    ) -> Result<(), Fatal> {
        let c = &self.cluster;
        let Some(leadership) = election::campaign(&c.etcd, &self.advertise, c.election_ttl, view, shutdown.clone())
            .await
            .map_err(deposed)?
        else {
            return Ok(());
        };
        let lost = leadership.lost.clone();
        // Everything this leader runs stops on it: shutdown, or the lease gone.
        let stop = shutdown.child_token();
        tokio::select! {
            r = self.lead_elected(leadership, rx, stop.clone()) => r,
            _ = lost.cancelled() => {
                stop.cancel();
                Err(Fatal::Deposed("leadership lost (etcd lease expired); nothing more may be done on this state".into()))
            }
        }
    }

    /// Rebuilds from the cluster journal, then runs the scheduler with the fenced journal
    /// until `stop`.
    async fn lead_elected(
        self,
        leadership: Leadership,
        rx: tokio::sync::mpsc::Receiver<scheduler::Command>,
        stop: CancellationToken,
    ) -> Result<(), Fatal> {
        let c = &self.cluster;
        let took_over = std::time::Instant::now();
        let mut client = c.etcd.connect().await.map_err(deposed)?;
        let keys = c.etcd.keys();
        let stats = rebuild::rebuild(&mut client, &keys, &self.artifacts, &self.store)
            .await
            .map_err(deposed)?;
        let mut cfg = self.sched_cfg;
        cfg.reconcile_grace = c.takeover_grace;
        let mut revoker = client.clone();
        let lease = leadership.lease;
        // The point a backup taken before this leader's first commit stands at.
        let revision = client
            .get(keys.epoch_base(), None)
            .await
            .map_err(|e| deposed(dockyard_common::cluster::etcd_err("read etcd's revision", e)))?
            .header()
            .map_or(0, |h| h.revision() as u64);
        let journal = Journal::new(client, keys, Arc::clone(&self.artifacts), leadership, revision);
        let replication = Arc::new(EtcdReplication::new(journal));
        let join = scheduler::start(rx, self.store, cfg, replication, stop.clone())
            .await
            .map_err(deposed)?;
        tokio::spawn(membership::watch_nodes(c.etcd.clone(), self.handle, stop.clone()));
        set_serving(&self.health, true).await;
        info!(
            rebuild_ms = stats.elapsed_ms,
            takeover_ms = took_over.elapsed().as_millis() as u64,
            unclaimed = stats.unclaimed_tasks,
            "leading: serving jobs and agents"
        );
        join.await.unwrap_or_else(|e| Err(Fatal::SchedulerCrashed(e.to_string())))?;
        // Stepping down on a clean shutdown: the standby need not wait for the lease TTL.
        if let Err(e) = revoker.lease_revoke(lease).await {
            warn!(error = %e, "could not release leadership; the standby takes over when the lease expires");
        } else {
            info!("leadership released");
        }
        Ok(())
    }
}

fn deposed(e: DockyardError) -> Fatal {
    Fatal::Deposed(format!("cannot lead: {e}"))
}
