//! Builds and runs the gRPC server: the three Dockyard services, health and reflection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::info;

use dockyard_common::artifact;
use dockyard_common::error::DockyardError;
use dockyard_proto::v1::admin_service_server::AdminServiceServer;
use dockyard_proto::v1::agent_service_server::AgentServiceServer;
use dockyard_proto::v1::job_service_server::JobServiceServer;

use crate::api::admin_service::AdminApi;
use crate::api::agent_service::AgentApi;
use crate::api::job_service::JobApi;
use crate::config::CoordinatorConfig;
use crate::scheduler;
use crate::store::Store;

/// HTTP/2 keepalive on (tonic's default is off) so a silent partition shows up in seconds.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RunningCoordinator {
    pub addr: SocketAddr,
    pub artifacts_uri: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl RunningCoordinator {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the scheduler to finish its current batch.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        let _ = self.scheduler.await;
    }

    /// Waits until the server stops (e.g. a fatal error).
    pub async fn wait(&mut self) -> Result<(), DockyardError> {
        match (&mut self.server).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DockyardError::Internal(format!("server: {e}"))),
            Err(e) => Err(DockyardError::Internal(format!("server task: {e}"))),
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

pub async fn start(cfg: CoordinatorConfig) -> Result<RunningCoordinator, DockyardError> {
    let store = Store::open(&cfg.data_dir)?;
    let artifacts_uri = cfg.artifacts_uri();
    let artifacts = artifact::resolve(&artifacts_uri)?;
    let shutdown = CancellationToken::new();
    let (handle, scheduler) = scheduler::spawn(store.clone(), cfg.scheduler.clone(), shutdown.clone()).await?;
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| DockyardError::invalid("listen", format!("cannot listen on {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr()?;
    let upload_dir = cfg.data_dir.join("uploads");

    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<JobServiceServer<JobApi>>().await;
    health.set_serving::<AgentServiceServer<AgentApi>>().await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
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
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let agents = AgentServiceServer::new(AgentApi {
        scheduler: handle.clone(),
        artifacts,
        upload_dir,
        max_artifact_bytes: cfg.max_upload_bytes,
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let admin = AdminServiceServer::new(AdminApi { scheduler: handle });

    let token = shutdown.clone();
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_nodelay(true)
        // Agents stream results in bursts; small default windows throttle them.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(jobs)
        .add_service(agents)
        .add_service(admin)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move { token.cancelled().await });
    let server = tokio::spawn(server);
    info!(%addr, artifacts = %artifacts_uri, data_dir = %cfg.data_dir.display(), "coordinator serving");
    Ok(RunningCoordinator {
        addr,
        artifacts_uri,
        shutdown,
        server,
        scheduler,
    })
}
