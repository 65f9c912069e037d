//! The web console (`--http-listen`): a page for operators and chemists, served by the
//! coordinator itself with its assets embedded in the binary (`assets.rs`). Its data comes
//! from the gRPC services, called in process through the same gate and authentication
//! layers as any client (`inproc.rs`), with the browser's bearer token: the console serves
//! nothing the gRPC API would refuse that token. `api.rs` turns those calls into JSON,
//! `stream.rs` pushes live progress as server-sent events, `export.rs` streams the CSV and
//! SDF downloads.

mod api;
mod assets;
mod export;
pub mod inproc;
mod json;
mod stream;

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use dockyard_common::error::DockyardError;

pub use inproc::Services;

/// Serves the console on `listen` until `shutdown`; returns the bound address.
pub async fn serve(listen: &str, services: Services, shutdown: CancellationToken) -> Result<SocketAddr, DockyardError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| DockyardError::invalid("http_listen", format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(assets::index))
        .route("/assets/{*path}", get(assets::file))
        .route("/api/session", get(api::session))
        .route("/api/nodes", get(api::nodes))
        .route("/api/nodes/{id}/drain", post(api::drain))
        .route("/api/nodes/{id}/undrain", post(api::undrain))
        .route("/api/queue", get(api::queue))
        .route("/api/cluster/events", get(stream::cluster))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/cancel", post(api::cancel))
        .route("/api/jobs/{id}/events", get(stream::job))
        .route("/api/jobs/{id}/results", get(api::results))
        .route("/api/jobs/{id}/histogram", get(api::histogram))
        .route("/api/jobs/{id}/report", get(api::report))
        .route("/api/jobs/{id}/results.csv", get(export::csv))
        .route("/api/jobs/{id}/poses.sdf", get(export::sdf))
        .with_state(services);
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = served.await {
            tracing::error!(error = %e, "web console stopped");
        }
    });
    info!(%addr, "web console serving");
    Ok(addr)
}
