//! The leader's fenced, replicated journal: specs and task outcomes go to the artifact
//! store, then one etcd transaction per chunk makes them visible — only if the writer still
//! holds its election key with the create revision it won with (its epoch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use futures::{stream, StreamExt, TryStreamExt};
use tracing::{debug, warn};

use dockyard_common::artifact::{ArtifactKey, ArtifactStore};
use dockyard_common::cluster::{is_transient, CommitRecord, JobIndexRecord, Keys};
use dockyard_common::error::DockyardError;
use dockyard_common::time::now_ms;

use super::election::Leadership;
use super::outcome::SharedWrites;

/// etcd refuses transactions with more operations than `--max-txn-ops` (128 by default).
const MAX_TXN_OPS: usize = 100;
const PARALLEL_PUTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("no longer the leader: a newer leader holds the election (epoch {0} is fenced off)")]
    Fenced(u64),
    #[error("{0}")]
    Failed(DockyardError),
}

pub struct Journal {
    client: Client,
    keys: Keys,
    store: Arc<dyn ArtifactStore>,
    leadership: Leadership,
    seq: AtomicU64,
    /// etcd's revision after this leader's last commit: a backup reads etcd as of it.
    revision: Arc<AtomicU64>,
}

impl Journal {
    /// `revision`: etcd's revision when this leader starts writing (after its rebuild).
    pub fn new(client: Client, keys: Keys, store: Arc<dyn ArtifactStore>, leadership: Leadership, revision: u64) -> Self {
        Journal {
            client,
            keys,
            store,
            leadership,
            seq: AtomicU64::new(0),
            revision: Arc::new(AtomicU64::new(revision)),
        }
    }

    /// etcd's revision after the last commit, shared with the scheduler for backups.
    pub fn revision(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.revision)
    }

    pub fn epoch(&self) -> u64 {
        self.leadership.epoch
    }

    /// Replicates one batch, retrying transient failures (etcd or the store briefly
    /// unreachable) until it succeeds or the leadership is gone.
    pub async fn commit(&self, w: SharedWrites) -> Result<(), JournalError> {
        let started = std::time::Instant::now();
        let ops = self.prepare(&w).await?;
        let mut delay = Duration::from_millis(50);
        for chunk in ops.chunks(MAX_TXN_OPS) {
            loop {
                match self.fenced_txn(chunk.to_vec()).await {
                    Ok(()) => break,
                    Err(JournalError::Failed(e)) => {
                        warn!(error = %e, "cluster journal write failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    Err(f) => return Err(f),
                }
            }
        }
        debug!(
            ops = ops.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "journal committed"
        );
        Ok(())
    }

    /// Writes the artifacts (specs, outcome files) and returns the etcd operations that
    /// publish them.
    async fn prepare(&self, w: &SharedWrites) -> Result<Vec<TxnOp>, JournalError> {
        let mut puts: Vec<(ArtifactKey, Bytes)> = Vec::new();
        let mut ops = Vec::new();
        for (id, change) in &w.jobs {
            let key = ArtifactKey::job_spec_at(&change.org, id, change.spec_version);
            if let Some(spec) = &change.spec {
                let body = serde_json::to_vec(spec.as_ref()).map_err(|e| JournalError::Failed(DockyardError::Internal(e.to_string())))?;
                puts.push((key.clone(), Bytes::from(body)));
                if !change.skipped.is_empty() {
                    let k = ArtifactKey::job_skipped(&change.org, id);
                    puts.push((k, Bytes::from(json(&change.skipped)?)));
                }
            }
            let rec = JobIndexRecord {
                org: change.org.to_string(),
                spec_key: key.as_str().to_string(),
                state: change.state,
                reason: change.reason.clone(),
                created_at_ms: change.created_at_ms,
            };
            ops.push(TxnOp::put(self.keys.job(id.as_str()), json(&rec)?, None));
        }
        for (node, drained) in &w.drains {
            let k = self.keys.drained(node.as_str());
            ops.push(if *drained {
                TxnOp::put(k, Vec::new(), None)
            } else {
                TxnOp::delete(k, None)
            });
        }
        let epoch = self.leadership.epoch;
        for (id, (org, outcomes)) in &w.outcomes {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let key = ArtifactKey::job_commit(org, id, epoch, seq);
            puts.push((key.clone(), Bytes::from(json(outcomes)?)));
            let rec = CommitRecord {
                artifact_key: key.as_str().to_string(),
                tasks: outcomes.iter().map(|o| o.index).collect(),
                epoch,
            };
            ops.push(TxnOp::put(self.keys.commit(id.as_str(), epoch, seq), json(&rec)?, None));
        }
        let store = &self.store;
        stream::iter(puts)
            .map(|(k, body)| async move { put_retrying(store.as_ref(), &k, body).await })
            .buffer_unordered(PARALLEL_PUTS)
            .try_collect::<Vec<()>>()
            .await
            .map_err(JournalError::Failed)?;
        Ok(ops)
    }

    async fn fenced_txn(&self, ops: Vec<TxnOp>) -> Result<(), JournalError> {
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                self.leadership.key.clone(),
                CompareOp::Equal,
                self.leadership.revision as i64,
            )])
            .and_then(ops);
        let mut client = self.client.clone();
        match client.txn(txn).await {
            Ok(r) if r.succeeded() => {
                if let Some(h) = r.header() {
                    self.revision.fetch_max(h.revision() as u64, Ordering::AcqRel);
                }
                Ok(())
            }
            Ok(_) => Err(JournalError::Fenced(self.leadership.epoch)),
            Err(e) if is_transient(&e) => Err(JournalError::Failed(DockyardError::Unavailable(format!("etcd: {e}")))),
            Err(e) => Err(JournalError::Failed(DockyardError::Unavailable(format!("etcd txn: {e}")))),
        }
    }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(v).map_err(|e| JournalError::Failed(DockyardError::Internal(e.to_string())))
}

async fn put_retrying(store: &dyn ArtifactStore, key: &ArtifactKey, body: Bytes) -> Result<(), DockyardError> {
    let mut delay = Duration::from_millis(50);
    let deadline = now_ms() + 60_000;
    loop {
        match store.put(key, body.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if now_ms() < deadline => {
                warn!(key = %key.as_str(), error = %e, "journal artifact write failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}
