//! Durable coordinator state in one sled tree, partitioned by key prefix so a single
//! `sled::Batch` can change jobs, tasks, queue and results atomically.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m/` | name | meta (epoch, sequence) |
//! | `s/` | job id | JobSpec |
//! | `j/` | job id | JobStatus: the cursor that stands for every never-dispatched task, and the first attempts in flight |
//! | `t/` | task key | TaskRecord, only for tasks retrying (or running a retry), unclaimed, failed or cancelled |
//! | `r/` | job id + score key + ligand index | LigandResultRecord |
//! | `e/` | job id + ligand index | ligand error text |
//! | `n/` | node id | present while an operator has the node drained |
//! | `k/` | job id | records skipped at submission (`skip_invalid`) |
//! | `c/` | sha256 of the docking's inputs | LigandResultRecord (the result cache) |

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{JobId, TaskId};
use dockyard_common::spec::JobSpec;

use crate::model::{JobStatus, LigandResultRecord, TaskRecord};

pub const P_META: &[u8] = b"m/";
pub const P_SPEC: &[u8] = b"s/";
pub const P_JOB: &[u8] = b"j/";
pub const P_TASK: &[u8] = b"t/";
pub const P_RESULT: &[u8] = b"r/";
pub const P_LIGERR: &[u8] = b"e/";
pub const P_DRAINED: &[u8] = b"n/";
pub const P_SKIPPED: &[u8] = b"k/";
pub const P_CACHE: &[u8] = b"c/";

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
}

fn err(e: impl std::fmt::Display) -> DockyardError {
    DockyardError::Storage(e.to_string())
}

pub fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// Maps an f64 onto bytes whose order matches numeric order (sign flip for positives,
/// full inversion for negatives).
pub fn score_key(score: f64) -> [u8; 8] {
    let bits = score.to_bits();
    let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    ordered.to_be_bytes()
}

pub fn result_key(job: &JobId, score: f64, index: u32) -> Vec<u8> {
    let mut k = key(P_RESULT, job.as_str().as_bytes());
    k.extend_from_slice(&score_key(score));
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, DockyardError> {
    serde_json::from_slice(b).map_err(|e| DockyardError::Storage(format!("corrupt record: {e}")))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, DockyardError> {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir.join("state.sled"))
            // We flush explicitly (group commit) before acknowledging; no background timer needed.
            .flush_every_ms(None)
            .open()
            .map_err(|e| {
                err(format!(
                    "cannot open {}: {e} (is another coordinator using this data dir?)",
                    dir.display()
                ))
            })?;
        let tree = db.open_tree("dockyard").map_err(err)?;
        Ok(Store { db, tree })
    }

    /// The tree of the sled `TokenStore` adapter: apart from the scheduler's, so `clear`
    /// (a cluster takeover) never drops tokens, quotas or usage.
    pub fn tenants_tree(&self) -> Result<sled::Tree, DockyardError> {
        self.db.open_tree("tenants").map_err(err)
    }

    /// Forgets everything: a coordinator taking over leadership rebuilds from the cluster.
    pub fn clear(&self) -> Result<(), DockyardError> {
        self.tree.clear().map_err(err)
    }

    pub fn apply(&self, batch: sled::Batch) -> Result<(), DockyardError> {
        self.tree.apply_batch(batch).map_err(err)
    }

    pub async fn flush(&self) -> Result<usize, DockyardError> {
        self.tree.flush_async().await.map_err(err)
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, DockyardError> {
        match self.tree.get(k).map_err(err)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    pub fn meta_u64(&self, name: &str) -> Result<u64, DockyardError> {
        Ok(self
            .tree
            .get(key(P_META, name.as_bytes()))
            .map_err(err)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Bumps the epoch durably; called once per start so assignments from a previous run
    /// can be told apart.
    pub async fn next_epoch(&self) -> Result<u64, DockyardError> {
        let e = self.meta_u64("epoch")? + 1;
        self.tree.insert(key(P_META, b"epoch"), &e.to_be_bytes()).map_err(err)?;
        self.flush().await?;
        Ok(e)
    }

    pub fn drained_nodes(&self) -> Result<Vec<String>, DockyardError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(P_DRAINED) {
            let (k, _) = kv.map_err(err)?;
            out.push(String::from_utf8_lossy(&k[P_DRAINED.len()..]).into_owned());
        }
        Ok(out)
    }

    pub fn spec(&self, job: &JobId) -> Result<Option<JobSpec>, DockyardError> {
        self.get(&key(P_SPEC, job.as_str().as_bytes()))
    }

    pub fn status(&self, job: &JobId) -> Result<Option<JobStatus>, DockyardError> {
        self.get(&key(P_JOB, job.as_str().as_bytes()))
    }

    /// Job ids, newest first, starting strictly before `before` when given.
    pub fn job_ids(&self, before: Option<&JobId>, limit: usize) -> Result<Vec<JobId>, DockyardError> {
        let start = key(P_JOB, b"");
        let end = match before {
            Some(b) => key(P_JOB, b.as_str().as_bytes()),
            None => key(b"j0", b""),
        };
        let mut out = Vec::new();
        for kv in self.tree.range(start..end).rev() {
            let (k, _) = kv.map_err(err)?;
            if let Some(id) = std::str::from_utf8(&k[P_JOB.len()..]).ok().and_then(|s| JobId::parse(s).ok()) {
                out.push(id);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every task record (used once, at start-up, to rebuild the in-memory queue).
    pub fn tasks(&self) -> impl Iterator<Item = Result<(TaskId, TaskRecord), DockyardError>> + '_ {
        self.tree.scan_prefix(P_TASK).map(|kv| {
            let (k, v) = kv.map_err(err)?;
            let id = TaskId::from_key(&k[P_TASK.len()..]).ok_or_else(|| DockyardError::Storage("corrupt task key".into()))?;
            Ok((id, decode(&v)?))
        })
    }

    /// Records skipped at submission; written before the job itself is acknowledged.
    pub fn put_skipped(&self, job: &JobId, skipped: &[dockyard_proto::v1::SkippedRecord]) -> Result<(), DockyardError> {
        let rows: Vec<(String, u32, String, u32, String)> = skipped
            .iter()
            .map(|s| (s.file.clone(), s.record, s.name.clone(), s.line, s.reason.clone()))
            .collect();
        self.tree
            .insert(key(P_SKIPPED, job.as_str().as_bytes()), encode(&rows))
            .map_err(err)?;
        Ok(())
    }

    pub fn skipped(&self, job: &JobId) -> Result<Vec<dockyard_proto::v1::SkippedRecord>, DockyardError> {
        let rows: Vec<(String, u32, String, u32, String)> = self.get(&key(P_SKIPPED, job.as_str().as_bytes()))?.unwrap_or_default();
        Ok(rows
            .into_iter()
            .map(|(file, record, name, line, reason)| dockyard_proto::v1::SkippedRecord {
                file,
                record,
                name,
                line,
                reason,
            })
            .collect())
    }

    /// Why each failed ligand of a job failed: (name, reason).
    pub fn ligand_errors(&self, job: &JobId) -> Result<Vec<(String, String)>, DockyardError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(key(P_LIGERR, job.as_str().as_bytes())) {
            let (_, v) = kv.map_err(err)?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Task records of one job (task keys start with the job id).
    pub fn job_task_records(&self, job: &JobId) -> Result<Vec<(TaskId, TaskRecord)>, DockyardError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(key(P_TASK, job.as_str().as_bytes())) {
            let (k, v) = kv.map_err(err)?;
            if let Some(id) = TaskId::from_key(&k[P_TASK.len()..]) {
                out.push((id, decode(&v)?));
            }
        }
        Ok(out)
    }

    /// Results of a job best first, after the raw key `after` when paging.
    pub fn results(
        &self,
        job: &JobId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<LigandResultRecord>, Option<Vec<u8>>), DockyardError> {
        let prefix = key(P_RESULT, job.as_str().as_bytes());
        let mut out = Vec::new();
        let mut last = None;
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match after {
            Some(a) => {
                let mut start = prefix.clone();
                start.extend_from_slice(a);
                // Every result key has the same length, so appending a byte gives the
                // smallest key strictly after `a`.
                start.push(0);
                Box::new(self.tree.range(start..).take_while({
                    let p = prefix.clone();
                    move |kv| kv.as_ref().map(|(k, _)| k.starts_with(&p)).unwrap_or(true)
                }))
            }
            None => Box::new(self.tree.scan_prefix(&prefix)),
        };
        for kv in iter {
            let (k, v) = kv.map_err(err)?;
            out.push(decode(&v)?);
            last = Some(k[prefix.len()..].to_vec());
            if out.len() >= limit {
                break;
            }
        }
        let more = if out.len() >= limit { last } else { None };
        Ok((out, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_key_orders_like_numbers() {
        let xs = [-1e9, -13.4, -1.0, -0.0, 0.0, 0.5, 3.0, 1.8e4];
        for w in xs.windows(2) {
            assert!(score_key(w[0]) <= score_key(w[1]), "{} {}", w[0], w[1]);
        }
    }
}
