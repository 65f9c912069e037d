//! Prometheus text from a coordinator's or agent's `--metrics-listen`, for tests.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", crate::servers::free_port())
}

/// `GET /metrics` over plain HTTP/1.1; the body of a 200 reply.
pub async fn scrape(addr: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the metrics listener at {addr}: {e}"));
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.expect("read the reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF:\n{body}");
    body.to_string()
}

/// The value of the series named exactly `series` (name and labels), if present.
pub use dockyard_common::metrics_http::series_value as value;
