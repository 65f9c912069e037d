//! Durable coordinator state in one sled tree, partitioned by key prefix so a single
//! batch can change jobs, tasks, queue and results atomically. Keys and encodings are
//! private to this file: reads are typed methods on [`Store`], writes typed methods on
//! [`StoreBatch`] (the scheduler's group commit, a rebuild's job), applied by
//! [`Store::apply`].
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m/` | name | meta (epoch, sequence) |
//! | `s/` | job id | JobSpec, or for a large spec a header naming how many parts follow |
//! | `p/` | job id + `/` + part index | a slice of a large spec's encoding |
//! | `j/` | job id | JobStatus: the cursor that stands for every never-dispatched task, and the first attempts in flight |
//! | `t/` | task key | TaskRecord, only for tasks retrying (or running a retry), unclaimed, failed or cancelled |
//! | `r/` | job id + score key + ligand index | LigandResultRecord |
//! | `e/` | job id + ligand index | ligand error text |
//! | `n/` | node id | present while an operator has the node drained |
//! | `k/` | job id | records skipped at submission (`skip_invalid`) |
//! | `c/` | sha256 of the docking's inputs | LigandResultRecord (the result cache) |

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{JobId, TaskId};
use dockyard_common::spec::JobSpec;

use dockyard_common::ids::NodeId;

use crate::model::{JobStatus, LigandResultRecord, SkippedRecord, TaskRecord};

const P_META: &[u8] = b"m/";
const P_SPEC: &[u8] = b"s/";
const P_SPEC_PART: &[u8] = b"p/";
const P_JOB: &[u8] = b"j/";
const P_TASK: &[u8] = b"t/";
const P_RESULT: &[u8] = b"r/";
const P_LIGERR: &[u8] = b"e/";
const P_DRAINED: &[u8] = b"n/";
const P_SKIPPED: &[u8] = b"k/";
const P_CACHE: &[u8] = b"c/";

/// A spec's encoding above this is written in parts of this size. sled rewrites a whole
/// leaf (every value in it) when it consolidates the leaf after a few inserts, so one
/// record the size of a screen's ligand table (90 MB for 400,000 long names) next to the
/// hot status and task keys made every few commits copy and write it again: the
/// coordinator's memory jumped by that much whenever a task was requeued.
const SPEC_PART_BYTES: usize = 64 * 1024;
/// First byte of a parted spec's header; an encoded spec starts with `{`.
const PARTED: u8 = 0;

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log file, synced after each flush (see `sync_log`).
    log: Arc<std::fs::File>,
    /// Where sled writes pages too big for its log (see `sync_blobs`).
    blobs: Arc<std::path::PathBuf>,
}

fn err(e: impl std::fmt::Display) -> DockyardError {
    DockyardError::Storage(e.to_string())
}

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// Maps an f64 onto bytes whose order matches numeric order (sign flip for positives,
/// full inversion for negatives).
fn score_key(score: f64) -> [u8; 8] {
    let bits = score.to_bits();
    let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    ordered.to_be_bytes()
}

fn result_key(job: &JobId, score: f64, index: u32) -> Vec<u8> {
    let mut k = key(P_RESULT, job.as_str().as_bytes());
    k.extend_from_slice(&score_key(score));
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, DockyardError> {
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
        let log_path = dir.join("state.sled").join("db");
        let log = std::fs::File::open(&log_path).map_err(|e| err(format!("cannot open {}: {e}", log_path.display())))?;
        Ok(Store {
            db,
            tree,
            log: Arc::new(log),
            blobs: Arc::new(dir.join("state.sled").join("blobs")),
        })
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

    pub fn apply(&self, mut batch: StoreBatch) -> Result<(), DockyardError> {
        // A parted spec written again with fewer parts leaves none of the old ones behind.
        for (job, parts) in std::mem::take(&mut batch.parted_specs) {
            for kv in self.tree.scan_prefix(spec_part_prefix(&job)) {
                let (k, _) = kv.map_err(err)?;
                if part_index(&k).is_none_or(|i| i >= parts) {
                    batch.batch.remove(k);
                }
            }
        }
        self.tree.apply_batch(batch.batch).map_err(err)
    }

    pub async fn flush(&self) -> Result<usize, DockyardError> {
        let n = self.tree.flush_async().await.map_err(err)?;
        self.sync_log().await?;
        Ok(n)
    }

    /// sled 0.34 makes its log stable with `sync_file_range`, which on Linux neither flushes
    /// the disk's write cache nor writes the file's metadata: a power cut could take back a
    /// batch already acknowledged. An `fdatasync` of the log file after each flush does both
    /// (0.17 ms at the median on this machine's disk); the blob files first.
    async fn sync_log(&self) -> Result<(), DockyardError> {
        let (log, blobs) = (Arc::clone(&self.log), Arc::clone(&self.blobs));
        tokio::task::spawn_blocking(move || sync_blobs(&blobs).and_then(|()| log.sync_data()))
            .await
            .map_err(|e| err(format!("log sync task: {e}")))?
            .map_err(|e| err(format!("cannot sync sled's log: {e}")))
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, DockyardError> {
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

    /// Every record of the scheduler's tree, as a point in its commit order when called
    /// between two group commits (the actor's `Snapshot`). Values are reference-counted:
    /// this copies keys and pointers, the bytes are read later, outside the actor.
    pub fn export_scheduler(&self) -> Result<Vec<(sled::IVec, sled::IVec)>, DockyardError> {
        self.tree.iter().map(|kv| kv.map_err(err)).collect()
    }

    /// Every record of the tenants tree (tokens by hash, quotas, usage).
    pub fn export_tenants(&self) -> Result<Vec<(sled::IVec, sled::IVec)>, DockyardError> {
        self.tenants_tree()?.iter().map(|kv| kv.map_err(err)).collect()
    }

    /// What `--restore-from` left here: a snapshot id, or `partial:<id>` while one is being
    /// written. Kept in a tree of its own, which no snapshot carries.
    pub fn restore_marker(&self) -> Result<Option<String>, DockyardError> {
        let t = self.db.open_tree("restore").map_err(err)?;
        Ok(t.get(b"from").map_err(err)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub async fn set_restore_marker(&self, v: &str) -> Result<(), DockyardError> {
        let t = self.db.open_tree("restore").map_err(err)?;
        t.insert(b"from", v.as_bytes()).map_err(err)?;
        t.flush_async().await.map_err(err)?;
        self.sync_log().await
    }

    /// Empties both state trees (a restore that was cut short starts again).
    pub fn wipe(&self) -> Result<(), DockyardError> {
        self.tree.clear().map_err(err)?;
        self.tenants_tree()?.clear().map_err(err)
    }

    /// Whether both trees are empty: the only state a restore writes into.
    pub fn is_blank(&self) -> Result<bool, DockyardError> {
        Ok(self.tree.is_empty() && self.tenants_tree()?.is_empty())
    }

    /// Writes restored records into the named tree ("scheduler" or "tenants"), then flushes.
    pub async fn import(&self, tree: SnapshotTree, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), DockyardError> {
        let t = match tree {
            SnapshotTree::Scheduler => self.tree.clone(),
            SnapshotTree::Tenants => self.tenants_tree()?,
        };
        for chunk in records.chunks(10_000) {
            let mut b = sled::Batch::default();
            for (k, v) in chunk {
                b.insert(k.as_slice(), v.as_slice());
            }
            t.apply_batch(b).map_err(err)?;
        }
        t.flush_async().await.map_err(err)?;
        self.sync_log().await
    }

    /// Raises the epoch to at least `floor` (a restore: no epoch an earlier coordinator of
    /// this data may have used can come again, or agents would refuse it and output
    /// prefixes could repeat).
    pub async fn raise_epoch(&self, floor: u64) -> Result<u64, DockyardError> {
        let e = self.meta_u64("epoch")?.max(floor);
        self.tree.insert(key(P_META, b"epoch"), &e.to_be_bytes()).map_err(err)?;
        self.flush().await?;
        Ok(e)
    }

    /// The number of group commits written so far: a position in the commit order.
    pub fn commit_position(&self) -> Result<u64, DockyardError> {
        self.meta_u64("commit")
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
        let Some(head) = self.tree.get(job_key(P_SPEC, job)).map_err(err)? else {
            return Ok(None);
        };
        let bytes = join_spec(job, &head, |k| self.tree.get(k).map_err(err))?;
        decode(&bytes).map(Some)
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

    /// Records skipped at submission (`skip_invalid`).
    pub fn skipped(&self, job: &JobId) -> Result<Vec<SkippedRecord>, DockyardError> {
        Ok(self.get(&key(P_SKIPPED, job.as_str().as_bytes()))?.unwrap_or_default())
    }

    /// A result cache entry, by the digest of the docking's inputs.
    pub fn cached(&self, digest: &[u8; 32]) -> Result<Option<LigandResultRecord>, DockyardError> {
        self.get(&cache_key(digest))
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

/// The artifact keys exported scheduler records refer to: every spec's inputs, every
/// result's (and cached result's) poses, SDF and log. `records` are in key order, as
/// `Store::export_scheduler` gives them (a large spec's parts are found by search).
pub fn referenced_artifacts(records: &[(sled::IVec, sled::IVec)]) -> Result<std::collections::BTreeSet<String>, DockyardError> {
    let mut keys = std::collections::BTreeSet::new();
    for (k, v) in records {
        if let Some(job) = k.strip_prefix(P_SPEC) {
            let job = JobId::parse(&String::from_utf8_lossy(job)).map_err(|e| err(format!("spec key: {e}")))?;
            let bytes = join_spec(&job, v, |pk| {
                Ok(records
                    .binary_search_by(|(rk, _)| rk.as_ref().cmp(pk))
                    .ok()
                    .map(|i| records[i].1.clone()))
            })?;
            let spec: JobSpec = decode(&bytes)?;
            for input in spec.receptor.iter().chain(spec.ligands.iter()) {
                if !keys.contains(&*input.key) {
                    keys.insert(input.key.to_string());
                }
            }
        } else if k.starts_with(P_RESULT) || k.starts_with(P_CACHE) {
            let r: LigandResultRecord = decode(v)?;
            for key in [r.pose_key, r.sdf_key, r.log_key] {
                if !key.is_empty() {
                    keys.insert(key);
                }
            }
        }
    }
    Ok(keys)
}

/// A spec's encoding from its `s/` value: the value itself, or its parts joined.
/// sled writes a page whose encoding passes about 128 KiB (a leaf of large spec parts, say)
/// to a file of its own under `blobs/`, with no sync at all. Each flush syncs every blob
/// file there and the folder: sled deletes the ones it no longer needs, so there are few,
/// and a file that is clean costs next to nothing. None are there on the per-request path.
fn sync_blobs(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut any = false;
    for entry in entries {
        let path = entry?.path();
        match std::fs::File::open(&path) {
            Ok(f) => f.sync_data()?,
            // Collected by sled since the listing: nothing left to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        any = true;
    }
    if any {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn join_spec(job: &JobId, head: &[u8], get: impl Fn(&[u8]) -> Result<Option<sled::IVec>, DockyardError>) -> Result<Vec<u8>, DockyardError> {
    let parts = match head {
        [PARTED, n @ ..] => <[u8; 4]>::try_from(n)
            .map(u32::from_be_bytes)
            .map_err(|_| err(format!("spec of job {job}: corrupt parts header")))?,
        _ => return Ok(head.to_vec()),
    };
    // Grown as parts arrive: a corrupt header's count must not size an allocation.
    let mut out = Vec::new();
    for i in 0..parts {
        let part = get(&spec_part_key(job, i))?.ok_or_else(|| err(format!("spec of job {job}: part {i} of {parts} is missing")))?;
        out.extend_from_slice(&part);
    }
    Ok(out)
}

fn spec_part_prefix(job: &JobId) -> Vec<u8> {
    let mut k = job_key(P_SPEC_PART, job);
    k.push(b'/');
    k
}

fn spec_part_key(job: &JobId, index: u32) -> Vec<u8> {
    let mut k = spec_part_prefix(job);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn part_index(k: &[u8]) -> Option<u32> {
    let tail = k.len().checked_sub(4).map(|at| &k[at..])?;
    <[u8; 4]>::try_from(tail).ok().map(u32::from_be_bytes)
}

fn job_key(prefix: &[u8], job: &JobId) -> Vec<u8> {
    key(prefix, job.as_str().as_bytes())
}

fn cache_key(digest: &[u8; 32]) -> Vec<u8> {
    key(P_CACHE, hex::encode(digest).as_bytes())
}

/// The writes of one group commit (or one rebuilt job), applied atomically by
/// [`Store::apply`]. The only place outside the reads above that knows keys and encodings.
#[derive(Default)]
pub struct StoreBatch {
    batch: sled::Batch,
    writes: usize,
    /// Specs written in parts, with their part count, for `Store::apply` to drop stale parts.
    parted_specs: Vec<(JobId, u32)>,
}

/// The trees a snapshot carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotTree {
    Scheduler,
    Tenants,
}

impl StoreBatch {
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }

    /// Records the batch's position in the commit order (written with every group commit).
    pub fn set_commit_position(&mut self, n: u64) {
        self.put(key(P_META, b"commit"), n.to_be_bytes().to_vec());
    }

    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.batch.insert(k, v);
        self.writes += 1;
    }

    fn del(&mut self, k: Vec<u8>) {
        self.batch.remove(k);
        self.writes += 1;
    }

    /// A large spec goes in parts (see `SPEC_PART_BYTES`). Specs only grow (a funnel stage's
    /// ligands are appended), so one written in parts is never written whole again.
    pub fn put_spec(&mut self, job: &JobId, spec: &JobSpec) {
        let bytes = encode(spec);
        if bytes.len() <= SPEC_PART_BYTES {
            self.put(job_key(P_SPEC, job), bytes);
            return;
        }
        let mut parts = 0u32;
        for (i, part) in bytes.chunks(SPEC_PART_BYTES).enumerate() {
            self.put(spec_part_key(job, i as u32), part.to_vec());
            parts += 1;
        }
        let mut head = vec![PARTED];
        head.extend_from_slice(&parts.to_be_bytes());
        self.put(job_key(P_SPEC, job), head);
        self.parted_specs.push((job.clone(), parts));
    }

    pub fn put_status(&mut self, job: &JobId, status: &JobStatus) {
        self.put(job_key(P_JOB, job), encode(status));
    }

    pub fn put_task(&mut self, task: &TaskId, rec: &TaskRecord) {
        self.put(key(P_TASK, &task.to_key()), encode(rec));
    }

    pub fn delete_task(&mut self, task: &TaskId) {
        self.del(key(P_TASK, &task.to_key()));
    }

    /// Filed under its score, so a job's results read back best first.
    pub fn put_result(&mut self, job: &JobId, rec: &LigandResultRecord) {
        self.put(result_key(job, rec.score, rec.index), encode(rec));
    }

    pub fn put_ligand_error(&mut self, job: &JobId, index: u32, name: &str, reason: &str) {
        let mut k = job_key(P_LIGERR, job);
        k.extend_from_slice(&index.to_be_bytes());
        self.put(k, encode(&(name, reason)));
    }

    pub fn put_skipped(&mut self, job: &JobId, rows: &[SkippedRecord]) {
        self.put(job_key(P_SKIPPED, job), encode(&rows));
    }

    pub fn set_drained(&mut self, node: &NodeId, drained: bool) {
        let k = key(P_DRAINED, node.as_str().as_bytes());
        if drained {
            self.put(k, Vec::new());
        } else {
            self.del(k);
        }
    }

    pub fn put_cached(&mut self, digest: &[u8; 32], rec: &LigandResultRecord) {
        self.put(cache_key(digest), encode(rec));
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

    /// A Vina screen's spec: the scheduler tests' job with a ligand table of long names.
    fn screen_spec(ligands: usize) -> JobSpec {
        use dockyard_common::spec::{EngineKind, InputRef};
        let mut spec = crate::scheduler::tests::sleep_job("default", 0, 0);
        spec.engine = EngineKind::Vina;
        spec.ligands = (0..ligands)
            .map(|i| InputRef {
                name: format!("ligand-with-a-long-name-{i:0>40}"),
                key: format!("orgs/default/inputs/pack-{}", i / 1000).into(),
                size: 1,
                format: "".into(),
                offset: Some(i as u64),
                record_sha: None,
            })
            .collect();
        spec
    }

    fn part_keys(store: &Store) -> usize {
        store.tree.scan_prefix(P_SPEC_PART).count()
    }

    #[tokio::test]
    async fn a_flush_syncs_the_blob_files_sled_wrote() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("open");
        let blobs = || std::fs::read_dir(dir.path().join("state.sled").join("blobs")).map_or(0, |d| d.count());
        assert_eq!(blobs(), 0);
        // A screen's spec in parts: the leaves holding them are too big for sled's log.
        let mut b = StoreBatch::default();
        b.put_spec(&JobId::parse(&format!("{:020x}", 1)).expect("id"), &screen_spec(20_000));
        store.apply(b).expect("apply");
        store.flush().await.expect("flush, with the blob files synced");
        // The folder `sync_blobs` reads is the one sled writes them to.
        assert!(blobs() > 0, "sled wrote no blob file: this test no longer covers sync_blobs");
        sync_blobs(&dir.path().join("no-such-folder")).expect("no folder yet is not an error");
    }

    #[test]
    fn large_specs_are_stored_in_parts_and_read_back_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("open");
        let (small_id, big_id) = (
            JobId::parse(&format!("{:020x}", 1)).expect("id"),
            JobId::parse(&format!("{:020x}", 2)).expect("id"),
        );
        let small = screen_spec(10);
        let big = screen_spec(20_000);
        let big_len = serde_json::to_vec(&big).expect("json").len();
        let mut b = StoreBatch::default();
        b.put_spec(&small_id, &small);
        b.put_spec(&big_id, &big);
        store.apply(b).expect("apply");
        // Counted from the encoding's length, not from the code that splits it.
        assert_eq!(part_keys(&store), big_len.div_ceil(64 * 1024));
        assert!(big_len > 10 * 64 * 1024, "the test spec is too small to need parts: {big_len}");
        let largest = store.tree.iter().map(|kv| kv.expect("kv").1.len()).max().unwrap_or(0);
        assert!(largest <= 64 * 1024, "a record of {largest} bytes");
        assert_eq!(store.spec(&small_id).expect("read"), Some(small));
        assert_eq!(store.spec(&big_id).expect("read").as_ref(), Some(&big));

        // The artifacts a snapshot lists come from the joined spec too.
        let keys = referenced_artifacts(&store.export_scheduler().expect("export")).expect("artifacts");
        assert_eq!(keys.len(), 20, "{keys:?}");
        assert!(keys.contains("orgs/default/inputs/pack-19"));

        // Written again smaller, no stale part is left behind.
        let smaller = screen_spec(5_000);
        let smaller_len = serde_json::to_vec(&smaller).expect("json").len();
        let mut b = StoreBatch::default();
        b.put_spec(&big_id, &smaller);
        store.apply(b).expect("apply");
        assert_eq!(part_keys(&store), smaller_len.div_ceil(64 * 1024));
        assert_eq!(store.spec(&big_id).expect("read"), Some(smaller));
    }

    #[test]
    fn a_missing_part_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("open");
        let id = JobId::parse(&format!("{:020x}", 7)).expect("id");
        let mut b = StoreBatch::default();
        b.put_spec(&id, &screen_spec(20_000));
        store.apply(b).expect("apply");
        store.tree.remove(spec_part_key(&id, 3)).expect("remove");
        let e = store.spec(&id).expect_err("a part is gone").to_string();
        assert!(e.contains("part 3 of"), "{e}");
        // A header claiming every part there could be is an error, not a 256 TiB allocation.
        let mut head = vec![PARTED];
        head.extend_from_slice(&u32::MAX.to_be_bytes());
        store.tree.insert(job_key(P_SPEC, &id), head).expect("insert");
        store.tree.remove(spec_part_key(&id, 0)).expect("remove");
        let e = store.spec(&id).expect_err("a corrupt header").to_string();
        assert!(e.contains("part 0 of 4294967295 is missing"), "{e}");
    }
}
