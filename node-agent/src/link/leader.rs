//! Finding the leading coordinator: from etcd (the election key's value is the leader's
//! endpoint) when the agent has `--etcd`, otherwise by asking each `--coordinator` URL
//! `GetLeader` (standbys answer with the leader's endpoint).

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use dockyard_common::cluster::EtcdSettings;
use dockyard_common::error::DockyardError;
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::admin_service_client::AdminServiceClient;

use crate::link::dial::Dialer;

#[derive(Clone)]
pub struct LeaderFinder {
    coordinators: Vec<String>,
    etcd: Option<EtcdSettings>,
    dialer: Dialer,
}

impl LeaderFinder {
    pub fn new(coordinators: Vec<String>, etcd: Option<EtcdSettings>, dialer: Dialer) -> Self {
        LeaderFinder {
            coordinators,
            etcd,
            dialer,
        }
    }

    /// How coordinators are dialled (TLS, join token).
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    pub async fn find(&self) -> Result<String, DockyardError> {
        if let Some(etcd) = &self.etcd {
            return leader_from_etcd(etcd).await;
        }
        let mut last_err = None;
        for url in &self.coordinators {
            match ask(&self.dialer, url).await {
                Ok(info) if info.this_is_leader => return Ok(url.clone()),
                Ok(info) if !info.leader_endpoint.is_empty() => return Ok(info.leader_endpoint),
                Ok(_) => last_err = Some(DockyardError::Unavailable(format!("{url}: no leader elected yet"))),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| DockyardError::invalid("coordinator", "no coordinator URL given")))
    }

    /// With etcd: publishes the leader's endpoint whenever it changes, so a session with a
    /// paused or partitioned old leader is abandoned as soon as a new one is elected.
    pub fn watch(&self, shutdown: CancellationToken) -> Option<watch::Receiver<String>> {
        let etcd = self.etcd.clone()?;
        let (tx, rx) = watch::channel(String::new());
        tokio::spawn(async move {
            let mut client = None;
            loop {
                if client.is_none() {
                    client = etcd.connect().await.ok();
                }
                let found = match client.as_mut() {
                    Some(c) => leader_with(c, &etcd).await,
                    None => Err(DockyardError::Unavailable("etcd unreachable".into())),
                };
                if found.is_err() {
                    // Reconnect next time: the member we talked to may be the one that died.
                    client = None;
                }
                if let Ok(l) = found {
                    tx.send_if_modified(|cur| {
                        if *cur == l {
                            false
                        } else {
                            *cur = l;
                            true
                        }
                    });
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
        Some(rx)
    }
}

async fn ask(dialer: &Dialer, url: &str) -> Result<pb::LeaderInfo, DockyardError> {
    let ch = dialer
        .endpoint(url)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| DockyardError::Unavailable(format!("{url}: {}", error_chain(&e))))?;
    let info = AdminServiceClient::new(ch)
        .get_leader(pb::GetLeaderRequest {})
        .await
        .map_err(|e| DockyardError::Unavailable(format!("{url}: {}", e.message())))?
        .into_inner();
    debug!(url, leader = %info.leader_endpoint, this_is_leader = info.this_is_leader, "asked for the leader");
    Ok(info)
}

/// A transport error with its causes: the TLS reason (an untrusted certificate) is only in
/// the innermost one.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

async fn leader_from_etcd(etcd: &EtcdSettings) -> Result<String, DockyardError> {
    let mut client = etcd.connect().await?;
    leader_with(&mut client, etcd).await
}

async fn leader_with(client: &mut etcd_client::Client, etcd: &EtcdSettings) -> Result<String, DockyardError> {
    let r = client
        .leader(etcd.keys().election())
        .await
        .map_err(|e| DockyardError::Unavailable(format!("no coordinator leads cluster '{}' yet: {e}", etcd.cluster)))?;
    r.kv()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DockyardError::Unavailable(format!("no coordinator leads cluster '{}' yet", etcd.cluster)))
}
