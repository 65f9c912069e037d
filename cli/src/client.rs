//! Connecting to a coordinator and attaching the bearer token.

use std::time::Duration;

use anyhow::{Context, Result};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

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
        let list: Vec<&str> = endpoints.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        anyhow::ensure!(!list.is_empty(), "no coordinator endpoint given; use --endpoint http://HOST:50051");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut last_err = None;
            for ep in &list {
                match Self::connect_one(ep, token.clone()).await {
                    Ok(c) => match c.admin.clone().get_leader(pb::GetLeaderRequest {}).await {
                        Ok(info) => {
                            let info = info.into_inner();
                            if info.this_is_leader {
                                return Ok(c);
                            }
                            if !info.leader_endpoint.is_empty() {
                                // The leader's advertised address may not resolve from here
                                // (a container network); the next listed endpoint may be it.
                                match Self::connect_one(&info.leader_endpoint, token.clone()).await {
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

    async fn connect_one(endpoint: &str, token: Option<String>) -> Result<Self> {
        let ep = Endpoint::from_shared(endpoint.to_string())
            .with_context(|| format!("'{endpoint}' is not a valid endpoint; use a URL like http://127.0.0.1:50051"))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = ep
            .connect()
            .await
            .with_context(|| format!("cannot reach the coordinator at {endpoint} (is it running? set --endpoint or DOCKYARD_ENDPOINT)"))?;
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
}

/// Turns a gRPC error into a message that says what went wrong in the user's terms.
pub fn explain(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::InvalidArgument => anyhow::anyhow!("rejected: {}", s.message()),
        tonic::Code::NotFound => anyhow::anyhow!("not found: {}", s.message()),
        tonic::Code::Unavailable => anyhow::anyhow!("coordinator unavailable: {}", s.message()),
        _ => anyhow::anyhow!("{}: {}", s.code(), s.message()),
    }
}
