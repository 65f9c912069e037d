//! Watches the agents' membership keys: a key that disappears (the agent died or was cut
//! off from etcd long enough for its lease to expire) is treated like a dead stream.

use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use dockyard_common::cluster::{EtcdSettings, NodeRecord};
use dockyard_common::ids::NodeId;

use crate::scheduler::{Command, SchedulerHandle};

pub async fn watch_nodes(etcd: EtcdSettings, scheduler: SchedulerHandle, shutdown: CancellationToken) {
    let prefix = etcd.keys().nodes_prefix();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = watch_once(&etcd, &prefix, &scheduler, &shutdown).await {
            warn!(error = %e, "membership watch interrupted; resuming");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn watch_once(etcd: &EtcdSettings, prefix: &str, scheduler: &SchedulerHandle, shutdown: &CancellationToken) -> Result<(), String> {
    let mut client = etcd.connect_with(None).await.map_err(|e| e.to_string())?;
    let snapshot = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| e.to_string())?;
    let rev = snapshot.header().map_or(0, |h| h.revision());
    info!(nodes = snapshot.kvs().len(), "watching agent membership in etcd");
    let present: Vec<(NodeId, NodeRecord)> = snapshot.kvs().iter().filter_map(|kv| member(prefix, kv)).collect();
    let _ = scheduler.send(Command::Members { nodes: present }).await;
    let mut stream = client
        .watch(prefix, Some(WatchOptions::new().with_prefix().with_start_revision(rev + 1)))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = stream.message() => m.map_err(|e| e.to_string())?,
        };
        let Some(resp) = msg else { return Err("watch stream ended".into()) };
        if resp.canceled() {
            return Err(format!("watch cancelled: {}", resp.cancel_reason()));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            if ev.event_type() == EventType::Delete {
                let key = String::from_utf8_lossy(kv.key());
                let Ok(node) = NodeId::parse(&key[prefix.len()..]) else { continue };
                info!(node = %node, "agent's etcd membership key is gone");
                let _ = scheduler.send(Command::NodeVanished { node }).await;
            } else if let Some((node, record)) = member(prefix, kv) {
                let _ = scheduler.send(Command::NodeJoined { node, record }).await;
            }
        }
    }
}

fn member(prefix: &str, kv: &etcd_client::KeyValue) -> Option<(NodeId, NodeRecord)> {
    let key = String::from_utf8_lossy(kv.key());
    let node = NodeId::parse(key.get(prefix.len()..)?).ok()?;
    // A record we cannot read still proves the node is registered.
    let record = serde_json::from_slice(kv.value()).unwrap_or_else(|_| NodeRecord {
        node_id: node.to_string(),
        ..NodeRecord::default()
    });
    Some((node, record))
}
