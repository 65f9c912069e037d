//! Connecting to a coordinator (plain or TLS) and attaching the bearer token.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use dockyard_proto::v1 as pb;
use dockyard_proto::v1::admin_service_client::AdminServiceClient;
use dockyard_proto::v1::job_service_client::JobServiceClient;

#[derive(Clone)]
pub struct Client {
    pub jobs: JobServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
    token: Option<String>,
}

impl Client {
    /// `endpoints` may list several coordinators, comma-separated: the leader is found with
    /// `GetLeader` (a standby names it), waiting up to 15 s while an election is under way.
    pub async fn connect(endpoints: &str, token: Option<String>) -> Result<Self> {
        Self::connect_tls(endpoints, token, None).await
    }

    /// Like [`connect`](Self::connect); `https://` endpoints are verified against `tls_ca`
    /// (a PEM CA file), or the system's roots without one.
    pub async fn connect_tls(endpoints: &str, token: Option<String>, tls_ca: Option<&Path>) -> Result<Self> {
        let ca = match tls_ca {
            Some(p) => Some(Certificate::from_pem(
                std::fs::read(p).with_context(|| format!("cannot read the --tls-ca file {}", p.display()))?,
            )),
            None => None,
        };
        let ca = ca.as_ref();
        let list: Vec<&str> = endpoints.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        anyhow::ensure!(!list.is_empty(), "no coordinator endpoint given; use --endpoint http://HOST:50051");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut last_err = None;
            for ep in &list {
                match Self::connect_one(ep, token.clone(), ca).await {
                    Ok(c) => match c.admin.clone().get_leader(pb::GetLeaderRequest {}).await {
                        Ok(info) => {
                            let info = info.into_inner();
                            if info.this_is_leader {
                                return Ok(c);
                            }
                            if !info.leader_endpoint.is_empty() {
                                // The leader's advertised address may not resolve from here
                                // (a container network); the next listed endpoint may be it.
                                match Self::connect_one(&info.leader_endpoint, token.clone(), ca).await {
                                    Ok(c) => return Ok(c),
                                    Err(e) => {
                                        last_err = Some(
                                            e.context(format!("{ep} is a standby; its leader {} is unreachable", info.leader_endpoint)),
                                        );
                                        continue;
                                    }
                                }
                            }
                            last_err = Some(anyhow::anyhow!("{ep} is a standby and no leader is elected yet"));
                        }
                        // A coordinator without GetLeader cannot be a standby.
                        Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(c),
                        Err(s) => last_err = Some(explain(s)),
                    },
                    Err(e) => last_err = Some(e),
                }
            }
            let e = last_err.unwrap_or_else(|| anyhow::anyhow!("no coordinator answered"));
            if std::time::Instant::now() >= deadline || !e.to_string().contains("no leader") {
                return Err(e);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn connect_one(endpoint: &str, token: Option<String>, ca: Option<&Certificate>) -> Result<Self> {
        let mut ep = Endpoint::from_shared(endpoint.to_string())
            .with_context(|| format!("'{endpoint}' is not a valid endpoint; use a URL like http://127.0.0.1:50051"))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        let https = endpoint.starts_with("https://");
        if token.is_some() {
            warn_plain_token(endpoint);
        }
        if https {
            let tls = match ca {
                Some(c) => ClientTlsConfig::new().ca_certificate(c.clone()),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            ep = ep.tls_config(tls).with_context(|| format!("cannot set up TLS for {endpoint}"))?;
        }
        let channel = ep.connect().await.map_err(|e| connect_error(endpoint, https, &e))?;
        let max = 64 << 20;
        Ok(Client {
            jobs: JobServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            admin: AdminServiceClient::new(channel).max_decoding_message_size(max),
            token,
        })
    }

    /// Wraps a message in a request carrying `authorization: Bearer TOKEN` when a token is set.
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            if let Ok(v) = MetadataValue::try_from(format!("Bearer {t}")) {
                r.metadata_mut().insert("authorization", v);
            }
        }
        r
    }

    /// The whole artifact `key` (a pose file, an SDF, a log) through GetArtifact.
    pub async fn artifact(&self, key: &str) -> Result<Vec<u8>> {
        let mut s = self
            .jobs
            .clone()
            .get_artifact(self.req(pb::GetArtifactRequest { key: key.to_string() }))
            .await
            .map_err(explain)?
            .into_inner();
        let mut data = Vec::new();
        while let Some(ch) = s.message().await.map_err(explain)? {
            data.extend_from_slice(&ch.data);
        }
        Ok(data)
    }
}

/// The host a bearer token would cross the network to in clear text: an `http://`
/// endpoint that is not loopback. `None` when TLS protects it or it never leaves the host.
fn plain_token_host(endpoint: &str) -> Option<String> {
    let uri: tonic::codegen::http::Uri = endpoint.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(host)
}

static WARNED_PLAIN_TOKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Warns once per process (a leader lookup may dial several endpoints).
fn warn_plain_token(endpoint: &str) -> bool {
    let Some(host) = plain_token_host(endpoint) else {
        return false;
    };
    if WARNED_PLAIN_TOKEN.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    eprintln!(
        "warning: your bearer token goes to {host} over plain http://, readable by anyone on the way; \
         serve the coordinator with --tls-cert and use https://"
    );
    true
}

/// Why a connection failed, in the user's terms: a certificate we do not trust, a TLS
/// server dialled without TLS, or nothing listening.
fn connect_error(endpoint: &str, https: bool, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let mut chain = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    if https && (lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("invalid peer")) {
        anyhow::anyhow!(
            "TLS to the coordinator at {endpoint} failed: its certificate is not trusted ({chain}); \
             pass --tls-ca FILE (or DOCKYARD_TLS_CA) with the CA that signed it"
        )
    } else if https {
        anyhow::anyhow!("cannot reach the coordinator at {endpoint} over TLS ({chain}); is it running, and does it serve TLS (--tls-cert)?")
    } else {
        anyhow::anyhow!(
            "cannot reach the coordinator at {endpoint} ({chain}); is it running? set --endpoint or DOCKYARD_ENDPOINT \
             (a coordinator started with --tls-cert needs https:// and --tls-ca)"
        )
    }
}

/// Turns a gRPC error into a message that says what went wrong in the user's terms.
pub fn explain(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::InvalidArgument => anyhow::anyhow!("rejected: {}", s.message()),
        tonic::Code::NotFound => anyhow::anyhow!("not found: {}", s.message()),
        tonic::Code::Unavailable => anyhow::anyhow!("coordinator unavailable: {}", s.message()),
        tonic::Code::Unauthenticated => anyhow::anyhow!("not authenticated: {}", s.message()),
        tonic::Code::PermissionDenied => anyhow::anyhow!("permission denied: {}", s.message()),
        tonic::Code::ResourceExhausted => anyhow::anyhow!("over a limit: {}", s.message()),
        _ => anyhow::anyhow!("{}: {}", s.code(), s.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_off_the_host_exposes_a_token() {
        assert_eq!(plain_token_host("http://10.0.0.5:50051").as_deref(), Some("10.0.0.5"));
        assert_eq!(plain_token_host("http://coord.internal:50051").as_deref(), Some("coord.internal"));
        assert_eq!(plain_token_host("http://127.0.0.1:50051"), None);
        assert_eq!(plain_token_host("http://127.3.4.5:50051"), None);
        assert_eq!(plain_token_host("http://localhost:50051"), None);
        assert_eq!(plain_token_host("http://[::1]:50051"), None);
        assert_eq!(plain_token_host("https://10.0.0.5:50051"), None);
        assert_eq!(plain_token_host("http://[fd00::5]:50051").as_deref(), Some("fd00::5"));
    }

    #[test]
    fn the_warning_is_printed_once() {
        assert!(!warn_plain_token("http://127.0.0.1:1"));
        assert!(warn_plain_token("http://10.0.0.5:50051"));
        assert!(!warn_plain_token("http://10.0.0.6:50051"));
    }
}
