//! The `TokenStore` port: tokens, and the per-organisation limits and stored-bytes counters
//! that live beside them. Adapters: [`SledTokens`] (one coordinator: its own sled, in a tree
//! of its own so a cluster takeover's `Store::clear` never touches it) and
//! [`super::etcd::EtcdTokens`] (cluster mode: etcd, so every coordinator sees the same
//! tokens and a new leader inherits them).

use async_trait::async_trait;

use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;

use super::quota::Limits;
use super::token::TokenRecord;
use super::usage::{next_usage, Charge};

#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Every token (revoked ones too) and every organisation's limits.
    async fn load(&self) -> Result<(Vec<TokenRecord>, Vec<(OrgId, Limits)>), DockyardError>;
    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, DockyardError>;
    /// Creates or replaces (revocation rewrites the record with `revoked` set).
    async fn put_token(&self, t: &TokenRecord) -> Result<(), DockyardError>;
    async fn put_limits(&self, org: &OrgId, l: &Limits) -> Result<(), DockyardError>;
    /// Adds `delta` bytes to the organisation's counter, atomically, unless the result would
    /// pass `limit` (0 = no limit). Negative deltas (refunds) never fail and stop at 0.
    async fn add_usage(&self, org: &OrgId, delta: i64, limit: u64) -> Result<Charge, DockyardError>;
    async fn usage(&self, org: &OrgId) -> Result<u64, DockyardError>;
}

const P_TOKEN: &[u8] = b"t/";
const P_LIMITS: &[u8] = b"q/";
const P_USAGE: &[u8] = b"u/";

fn err(e: impl std::fmt::Display) -> DockyardError {
    DockyardError::Storage(format!("tokens: {e}"))
}

fn key(prefix: &[u8], rest: &str) -> Vec<u8> {
    [prefix, rest.as_bytes()].concat()
}

pub struct SledTokens {
    tree: sled::Tree,
}

impl SledTokens {
    pub fn new(tree: sled::Tree) -> Self {
        SledTokens { tree }
    }

    /// Token and quota changes are rare and must survive a crash right after the reply.
    async fn flush(&self) -> Result<(), DockyardError> {
        self.tree.flush_async().await.map(|_| ()).map_err(err)
    }
}

#[async_trait]
impl TokenStore for SledTokens {
    async fn load(&self) -> Result<(Vec<TokenRecord>, Vec<(OrgId, Limits)>), DockyardError> {
        let mut tokens = Vec::new();
        for kv in self.tree.scan_prefix(P_TOKEN) {
            let (_, v) = kv.map_err(err)?;
            tokens.push(serde_json::from_slice(&v).map_err(err)?);
        }
        let mut limits = Vec::new();
        for kv in self.tree.scan_prefix(P_LIMITS) {
            let (k, v) = kv.map_err(err)?;
            let org = OrgId::parse(&String::from_utf8_lossy(&k[P_LIMITS.len()..]))?;
            limits.push((org, serde_json::from_slice(&v).map_err(err)?));
        }
        Ok((tokens, limits))
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, DockyardError> {
        match self.tree.get(key(P_TOKEN, id)).map_err(err)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(err)?)),
            None => Ok(None),
        }
    }

    async fn put_token(&self, t: &TokenRecord) -> Result<(), DockyardError> {
        let v = serde_json::to_vec(t).map_err(err)?;
        self.tree.insert(key(P_TOKEN, &t.id), v).map_err(err)?;
        self.flush().await
    }

    async fn put_limits(&self, org: &OrgId, l: &Limits) -> Result<(), DockyardError> {
        let v = serde_json::to_vec(l).map_err(err)?;
        self.tree.insert(key(P_LIMITS, org.as_str()), v).map_err(err)?;
        self.flush().await
    }

    async fn add_usage(&self, org: &OrgId, delta: i64, limit: u64) -> Result<Charge, DockyardError> {
        let k = key(P_USAGE, org.as_str());
        let decode = |v: Option<&[u8]>| v.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
        // Compare-and-swap until no concurrent charge slipped in between read and write.
        loop {
            let old = self.tree.get(&k).map_err(err)?;
            let cur = decode(old.as_deref());
            let Some(next) = next_usage(cur, delta, limit) else {
                return Ok(Charge::OverLimit(cur));
            };
            let swapped = self
                .tree
                .compare_and_swap(&k, old, Some(next.to_be_bytes().to_vec()))
                .map_err(err)?;
            if swapped.is_ok() {
                self.flush().await?;
                return Ok(Charge::Added(next));
            }
        }
    }

    async fn usage(&self, org: &OrgId) -> Result<u64, DockyardError> {
        Ok(self
            .tree
            .get(key(P_USAGE, org.as_str()))
            .map_err(err)?
            .and_then(|b| b.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SledTokens) {
        let dir = tempfile::tempdir().expect("tmp");
        let db = sled::open(dir.path().join("db")).expect("sled");
        let tree = db.open_tree("tenants").expect("tree");
        (dir, SledTokens::new(tree))
    }

    #[tokio::test]
    async fn sled_adapter_round_trips_tokens_limits_and_usage() {
        let (_d, s) = store();
        let org = OrgId::parse("chem").expect("org");
        let t = TokenRecord {
            id: "0123456789abcdef".into(),
            org: Some("chem".into()),
            admin: false,
            description: "ci".into(),
            created_at_ms: 1,
            secret_sha256: "00".into(),
            revoked: false,
            revoked_at_ms: 0,
            expires_at_ms: 0,
        };
        s.put_token(&t).await.expect("put");
        let l = Limits {
            max_queued_tasks: 5,
            ..Limits::default()
        };
        s.put_limits(&org, &l).await.expect("limits");
        let (tokens, limits) = s.load().await.expect("load");
        assert_eq!(tokens, vec![t.clone()]);
        assert_eq!(limits, vec![(org.clone(), l)]);
        assert_eq!(s.get_token(&t.id).await.expect("get"), Some(t));
        assert_eq!(s.add_usage(&org, 60, 100).await.expect("add"), Charge::Added(60));
        assert_eq!(s.add_usage(&org, 50, 100).await.expect("add"), Charge::OverLimit(60));
        assert_eq!(s.add_usage(&org, -20, 100).await.expect("refund"), Charge::Added(40));
        assert_eq!(s.usage(&org).await.expect("usage"), 40);
    }
}
