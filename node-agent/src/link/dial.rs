//! How the agent reaches a coordinator: TLS for `https://` coordinators (verified against
//! `--tls-ca`, or the system's roots), an optional client certificate for mTLS
//! (`--tls-cert/--tls-key`), and the cluster join token on every AgentService call.

use std::path::Path;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use dockyard_common::error::DockyardError;

use crate::config::AgentConfig;

/// A channel whose AgentService calls carry the join token.
pub type AgentChannel = InterceptedService<Channel, JoinToken>;

/// Adds `authorization: Bearer <join token>` to every call (nothing without a token).
#[derive(Clone, Default)]
pub struct JoinToken(Option<MetadataValue<Ascii>>);

impl Interceptor for JoinToken {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<ClientTlsConfig>,
    token: JoinToken,
}

fn read(what: &str, p: &Path) -> Result<Vec<u8>, DockyardError> {
    std::fs::read(p).map_err(|e| DockyardError::invalid(what, format!("cannot read {}: {e}", p.display())))
}

impl Dialer {
    pub fn from_config(cfg: &AgentConfig) -> Result<Self, DockyardError> {
        let token = match &cfg.join_token_file {
            Some(p) => {
                let raw = read("join_token_file", p)?;
                let secret = String::from_utf8_lossy(&raw).trim().to_string();
                if secret.is_empty() {
                    return Err(DockyardError::invalid("join_token_file", format!("{} is empty", p.display())));
                }
                let v = MetadataValue::try_from(format!("Bearer {secret}"))
                    .map_err(|_| DockyardError::invalid("join_token_file", "the token must be printable ASCII"))?;
                JoinToken(Some(v))
            }
            None => JoinToken(None),
        };
        let mut tls = match &cfg.tls_ca {
            Some(p) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("tls_ca", p)?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read("tls_cert", c)?, read("tls_key", k)?)),
            (None, None) => {}
            _ => return Err(DockyardError::invalid("tls_cert", "give both --tls-cert and --tls-key")),
        }
        Ok(Dialer { tls: Some(tls), token })
    }

    /// An endpoint for `url`, with TLS when it is `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, DockyardError> {
        let ep = Endpoint::from_shared(url.to_string())
            .map_err(|e| DockyardError::invalid("coordinator", format!("'{url}': {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // Keepalive on both ends so a silent partition is noticed in seconds.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            // Results and assignments stream in bursts; small default windows throttle them.
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(8 << 20));
        match (&self.tls, url.starts_with("https://")) {
            (Some(tls), true) => ep
                .tls_config(tls.clone())
                .map_err(|e| DockyardError::invalid("tls", format!("cannot set up TLS for {url}: {e}"))),
            _ => Ok(ep),
        }
    }

    /// A lazily connected channel to `url` whose calls carry the join token.
    pub fn channel(&self, url: &str) -> Result<AgentChannel, DockyardError> {
        Ok(InterceptedService::new(self.endpoint(url)?.connect_lazy(), self.token.clone()))
    }
}
