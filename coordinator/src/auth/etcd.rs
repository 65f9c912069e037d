//! The etcd adapter of the `TokenStore` port (cluster mode), and the watch that keeps every
//! coordinator's token cache current: a token revoked through the leader reaches the other
//! coordinators (and a future leader) through etcd within one watch round-trip.
//!
//! Token and quota writes are plain puts, not fenced like the scheduler journal: they are
//! not derived from scheduler state, only the leader serves the admin API, and a write that
//! a deposed leader makes in its last moment is as valid as one made a moment earlier.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use dockyard_common::cluster::{etcd_err, EtcdSettings, Keys};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;

use super::quota::Limits;
use super::store::TokenStore;
use super::token::TokenRecord;
use super::usage::{next_usage, Charge};
use super::Auth;

pub struct EtcdTokens {
    client: Client,
    keys: Keys,
}

impl EtcdTokens {
    pub async fn connect(etcd: &EtcdSettings) -> Result<Self, DockyardError> {
        Ok(EtcdTokens {
            client: etcd.connect().await?,
            keys: etcd.keys(),
        })
    }
}

fn corrupt(key: &[u8], e: impl std::fmt::Display) -> DockyardError {
    DockyardError::Storage(format!("etcd {}: {e}", String::from_utf8_lossy(key)))
}

#[async_trait]
impl TokenStore for EtcdTokens {
    async fn load(&self) -> Result<(Vec<TokenRecord>, Vec<(OrgId, Limits)>), DockyardError> {
        let mut c = self.client.clone();
        let prefix = self.keys.tokens_prefix();
        let r = c
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| etcd_err("tokens", e))?;
        let mut tokens = Vec::new();
        for kv in r.kvs() {
            tokens.push(serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?);
        }
        let prefix = self.keys.quotas_prefix();
        let r = c
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| etcd_err("quotas", e))?;
        let mut limits = Vec::new();
        for kv in r.kvs() {
            let org = OrgId::parse(&String::from_utf8_lossy(&kv.key()[prefix.len()..]))?;
            limits.push((org, serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?));
        }
        Ok((tokens, limits))
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, DockyardError> {
        let mut c = self.client.clone();
        let r = c.get(self.keys.token(id), None).await.map_err(|e| etcd_err("token", e))?;
        match r.kvs().first() {
            Some(kv) => Ok(Some(serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?)),
            None => Ok(None),
        }
    }

    async fn put_token(&self, t: &TokenRecord) -> Result<(), DockyardError> {
        let v = serde_json::to_vec(t).map_err(|e| DockyardError::Internal(e.to_string()))?;
        let mut c = self.client.clone();
        c.put(self.keys.token(&t.id), v, None).await.map_err(|e| etcd_err("token", e))?;
        Ok(())
    }

    async fn put_limits(&self, org: &OrgId, l: &Limits) -> Result<(), DockyardError> {
        let v = serde_json::to_vec(l).map_err(|e| DockyardError::Internal(e.to_string()))?;
        let mut c = self.client.clone();
        c.put(self.keys.quota(org.as_str()), v, None)
            .await
            .map_err(|e| etcd_err("quota", e))?;
        Ok(())
    }

    async fn add_usage(&self, org: &OrgId, delta: i64, limit: u64) -> Result<Charge, DockyardError> {
        let key = self.keys.usage(org.as_str());
        let mut c = self.client.clone();
        // Compare-and-swap on the key's version (0 while it does not exist).
        loop {
            let r = c.get(key.as_str(), None).await.map_err(|e| etcd_err("usage", e))?;
            let (cur, version) = match r.kvs().first() {
                Some(kv) => (
                    std::str::from_utf8(kv.value())
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0),
                    kv.version(),
                ),
                None => (0, 0),
            };
            let Some(next) = next_usage(cur, delta, limit) else {
                return Ok(Charge::OverLimit(cur));
            };
            let txn = Txn::new()
                .when(vec![Compare::version(key.as_str(), CompareOp::Equal, version)])
                .and_then(vec![TxnOp::put(key.as_str(), next.to_string(), None)]);
            if c.txn(txn).await.map_err(|e| etcd_err("usage", e))?.succeeded() {
                return Ok(Charge::Added(next));
            }
        }
    }

    async fn usage(&self, org: &OrgId) -> Result<u64, DockyardError> {
        let mut c = self.client.clone();
        let r = c.get(self.keys.usage(org.as_str()), None).await.map_err(|e| etcd_err("usage", e))?;
        Ok(r.kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok())
            .unwrap_or(0))
    }
}

/// Follows `/dockyard/<cluster>/tokens/` and `/quotas/` for as long as the coordinator runs,
/// re-reading everything after an interruption so nothing missed in between is lost.
pub async fn watch(etcd: EtcdSettings, auth: Arc<Auth>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = watch_once(&etcd, &auth, &shutdown).await {
            warn!(error = %e, "token watch interrupted; resuming");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn watch_once(etcd: &EtcdSettings, auth: &Auth, shutdown: &CancellationToken) -> Result<(), String> {
    let keys = etcd.keys();
    let (tokens, quotas) = (keys.tokens_prefix(), keys.quotas_prefix());
    let mut client = etcd.connect_with(None).await.map_err(|e| e.to_string())?;
    // Everything under the cluster root that we care about shares `tokens/` or `quotas/`;
    // two watches on one client keep the code plain.
    let mut rev = 0;
    for prefix in [&tokens, &quotas] {
        let snap = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| e.to_string())?;
        rev = rev.max(snap.header().map_or(0, |h| h.revision()));
        for kv in snap.kvs() {
            apply(auth, &tokens, &quotas, kv);
        }
    }
    let opts = || WatchOptions::new().with_prefix().with_start_revision(rev + 1);
    let mut tw = client.watch(tokens.as_str(), Some(opts())).await.map_err(|e| e.to_string())?;
    let mut qw = client.watch(quotas.as_str(), Some(opts())).await.map_err(|e| e.to_string())?;
    info!("watching tokens and quotas in etcd");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = tw.message() => m,
            m = qw.message() => m,
        };
        let Some(resp) = msg.map_err(|e| e.to_string())? else {
            return Err("watch stream ended".into());
        };
        if resp.canceled() {
            return Err(format!("watch cancelled: {}", resp.cancel_reason()));
        }
        for ev in resp.events() {
            // Records are never deleted (a revoked token keeps its record); ignore deletes
            // made by hand rather than guess what they meant.
            if ev.event_type() == EventType::Put {
                if let Some(kv) = ev.kv() {
                    apply(auth, &tokens, &quotas, kv);
                }
            }
        }
    }
}

fn apply(auth: &Auth, tokens: &str, quotas: &str, kv: &etcd_client::KeyValue) {
    let key = String::from_utf8_lossy(kv.key());
    if key.starts_with(tokens) {
        match serde_json::from_slice::<TokenRecord>(kv.value()) {
            Ok(t) => auth.apply_token(t),
            Err(e) => warn!(key = %key, error = %e, "ignoring an unreadable token record"),
        }
    } else if let Some(org) = key.strip_prefix(quotas) {
        match (OrgId::parse(org), serde_json::from_slice::<Limits>(kv.value())) {
            (Ok(org), Ok(l)) => auth.quotas().set(org, l),
            _ => warn!(key = %key, "ignoring an unreadable quota record"),
        }
    }
}
