//! The `GET /metrics` listener behind `--metrics-listen`, shared by the coordinator and the
//! agent. The exposition text comes from the caller (`Render`), so this crate stays free of
//! any metrics library.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::error::DockyardError;

/// Produces the exposition text for one scrape.
pub type Render = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;

/// `prometheus-client` writes OpenMetrics text; Prometheus negotiates it from this type.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A scraper is one or two clients; more open connections than this are someone else's
/// mistake and wait rather than pile up tasks.
const MAX_CONNECTIONS: usize = 32;
/// A connection that has not sent its request head by then is dropped (slowloris guard).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The value of the series named exactly `series` (name and labels) in exposition text, if
/// present: what a benchmark or a test reads back from a scrape.
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Binds `addr` (port 0 picks a free one); the error names the setting.
pub async fn bind(addr: &str) -> Result<TcpListener, DockyardError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| DockyardError::invalid("metrics_listen", format!("cannot listen on {addr}: {e}")))
}

/// Serves `render` at `GET /metrics` on `listener` until `shutdown` completes. Returns the
/// bound address at once; the listener runs on its own task.
pub fn serve(
    listener: TcpListener,
    render: Render,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DockyardError> {
    let addr = listener.local_addr()?;
    info!(%addr, "serving Prometheus metrics at /metrics");
    let join = tokio::spawn(accept_loop(listener, render, shutdown));
    Ok((addr, join))
}

async fn accept_loop(listener: TcpListener, render: Render, shutdown: impl Future<Output = ()> + Send) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "metrics listener cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let render = Arc::clone(&render);
                async move { Ok::<_, Infallible>(respond(&req, &render)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

fn respond(req: &Request<Incoming>, render: &Render) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match render() {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE));
            r
        }
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n"),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn serves_the_rendered_text_at_metrics_only() {
        let listener = bind("127.0.0.1:0").await.expect("bind");
        let render: Render = Arc::new(|| Ok("# TYPE up gauge\nup 1\n# EOF\n".to_string()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, join) = serve(listener, render, async move {
            let _ = rx.await;
        })
        .expect("serve");

        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"), "{ok}");
        assert!(ok.ends_with("up 1\n# EOF\n"), "{ok}");
        let missing = get(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");

        let _ = tx.send(());
        join.await.expect("listener task ends on shutdown");
    }

    #[tokio::test]
    async fn a_taken_address_names_the_setting() {
        let first = bind("127.0.0.1:0").await.expect("bind");
        let addr = first.local_addr().expect("addr").to_string();
        let e = bind(&addr).await.expect_err("port in use");
        assert!(e.to_string().contains("metrics_listen"), "{e}");
    }
}
