//! The agent's membership key in etcd: `/dockyard/<cluster>/nodes/<node_id>`, under a lease
//! kept alive while the agent lives. If the agent dies or is cut off from etcd, the key
//! expires with the lease and the leader requeues the agent's tasks.

use std::time::Duration;

use etcd_client::PutOptions;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use dockyard_common::error::DockyardError;

use dockyard_common::cluster::{EtcdSettings, NodeRecord};

pub async fn keep_registered(etcd: EtcdSettings, record: NodeRecord, ttl: Duration, shutdown: CancellationToken) {
    let key = etcd.keys().node(&record.node_id);
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let ttl_s = ttl.as_secs().max(1) as i64;
    let every = (ttl / 3).max(Duration::from_millis(300));
    loop {
        let mut client = match etcd.connect().await {
            Ok(c) => c,
            Err(e @ DockyardError::Unauthenticated(_)) => {
                error!(error = %e, "etcd refused this agent's credentials; fix --etcd-user/--etcd-cert (retrying)");
                if pause(&shutdown, Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot reach etcd to register this node; retrying");
                if pause(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        let lease = match client.lease_grant(ttl_s, None).await {
            Ok(l) => l.id(),
            Err(e) => {
                warn!(error = %e, "cannot get an etcd lease; retrying");
                if pause(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = client
            .put(key.clone(), value.clone(), Some(PutOptions::new().with_lease(lease)))
            .await
        {
            warn!(error = %e, "cannot write this node's membership key; retrying");
            if pause(&shutdown, Duration::from_secs(1)).await {
                return;
            }
            continue;
        }
        info!(key = %key, lease, ttl_s, "registered in etcd");
        let (mut keeper, mut stream) = match client.lease_keep_alive(lease).await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "etcd keep-alive failed; registering again");
                continue;
            }
        };
        loop {
            if pause(&shutdown, every).await {
                let _ = client.lease_revoke(lease).await;
                info!("membership key removed from etcd");
                return;
            }
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(every, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                Ok(Ok(Some(_))) => {
                    warn!("etcd says this node's lease expired; registering again");
                    break;
                }
                _ => {
                    warn!("no etcd keep-alive answer; registering again");
                    break;
                }
            }
        }
    }
}

/// Sleeps; true when shut down meanwhile.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
