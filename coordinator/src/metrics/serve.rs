//! `--metrics-listen`: the registry, encoded on each scrape, behind the shared listener.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use dockyard_common::error::DockyardError;
use dockyard_common::metrics_http::{self, Render};

/// Binds `listen` and serves `registry` at `/metrics` until `shutdown`; returns the bound
/// address (port 0 picks a free one).
pub async fn serve(listen: &str, registry: Registry, shutdown: CancellationToken) -> Result<SocketAddr, DockyardError> {
    let listener = metrics_http::bind(listen).await?;
    let registry = Arc::new(registry);
    let render: Render = Arc::new(move || {
        let mut text = String::with_capacity(16 << 10);
        encode(&mut text, &registry)?;
        Ok(text)
    });
    let (addr, _join) = metrics_http::serve(listener, render, shutdown.cancelled_owned())?;
    Ok(addr)
}
