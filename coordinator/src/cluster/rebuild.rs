//! Taking over: a new leader cannot read the old leader's sled, so it rebuilds its own from
//! what the old one replicated — the job index in etcd, specs and committed outcomes in the
//! artifact store. Tasks without a committed outcome come back `Unclaimed`: agents that
//! still run them claim them when they reconnect; the rest are queued after a short grace.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use etcd_client::{Client, GetOptions};
use tracing::{error, info, warn};

use dockyard_common::artifact::{ArtifactKey, ArtifactStore};
use dockyard_common::cluster::{etcd_err, CommitRecord, JobIndexRecord, JobIndexState, Keys};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::{JobId, NodeId, TaskId};
use dockyard_common::spec::JobSpec;
use dockyard_common::time::now_ms;

use super::outcome::TaskOutcome;
use crate::model::{JobState, JobStatus, Phase, SkippedRecord, TaskCounts, TaskRecord, TaskState};
use crate::scheduler::record_outcome;
use crate::store::{Store, StoreBatch};

#[derive(Debug, Default, Clone)]
pub struct RebuildStats {
    pub jobs: usize,
    pub active_jobs: usize,
    pub committed_tasks: u64,
    pub unclaimed_tasks: u64,
    /// Task outcomes found in more than one commit: must stay 0.
    pub double_commits: u64,
    /// Tasks redone because their committed outcome's artifact is gone.
    pub missing_outcomes: u64,
    pub missing_specs: u64,
    pub elapsed_ms: u64,
}

async fn get_prefix(client: &mut Client, prefix: String) -> Result<Vec<(String, Vec<u8>)>, DockyardError> {
    let r = client
        .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| etcd_err("read", e))?;
    Ok(r.kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec()))
        .collect())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> DockyardError {
    DockyardError::Storage(format!("cluster state: {what}: {e}"))
}

/// The records `skip_invalid` left out of a job, as replicated beside its spec.
async fn skipped_rows(artifacts: &dyn ArtifactStore, spec: &JobSpec, id: &JobId) -> Result<Vec<SkippedRecord>, DockyardError> {
    let key = ArtifactKey::job_skipped(&spec.org, id);
    match artifacts.get(&key).await {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| corrupt(key.as_str(), e)),
        Err(DockyardError::NotFound { .. }) => {
            // The job itself is intact; only its report loses the list.
            warn!(job = %id, key = %key.as_str(), skipped = spec.skipped, "skipped-records list missing from the artifact store");
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

pub async fn rebuild(
    client: &mut Client,
    keys: &Keys,
    artifacts: &Arc<dyn ArtifactStore>,
    store: &Store,
) -> Result<RebuildStats, DockyardError> {
    let started = Instant::now();
    let mut stats = RebuildStats::default();
    store.clear()?;
    let drained_prefix = keys.drained_prefix();
    let mut drains = StoreBatch::default();
    for (k, _) in get_prefix(client, drained_prefix.clone()).await? {
        match NodeId::parse(&k[drained_prefix.len()..]) {
            Ok(node) => drains.set_drained(&node, true),
            Err(_) => warn!(key = %k, "ignoring a malformed drained-node key"),
        }
    }
    store.apply(drains)?;
    let jobs_prefix = keys.jobs_prefix();
    let mut seq = 0u64;
    let mut vtime_by_org: HashMap<String, u64> = HashMap::new();
    for (k, v) in get_prefix(client, jobs_prefix.clone()).await? {
        let Ok(id) = JobId::parse(&k[jobs_prefix.len()..]) else {
            warn!(key = %k, "ignoring a malformed job index key");
            continue;
        };
        let rec: JobIndexRecord = serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))?;
        let spec_bytes = match artifacts.get(&ArtifactKey::new(rec.spec_key.clone())?).await {
            Ok(b) => b,
            Err(DockyardError::NotFound { .. }) => {
                // Nothing can be done for a job whose spec the store lost; say so loudly.
                error!(job = %id, key = %rec.spec_key, "job spec missing from the artifact store; job skipped");
                stats.missing_specs += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let spec: JobSpec = serde_json::from_slice(&spec_bytes).map_err(|e| corrupt(&rec.spec_key, e))?;
        let skipped = if spec.skipped > 0 {
            skipped_rows(artifacts.as_ref(), &spec, &id).await?
        } else {
            Vec::new()
        };
        let mut outcomes: BTreeMap<u32, TaskOutcome> = BTreeMap::new();
        for (ck, cv) in get_prefix(client, keys.job_commits_prefix(id.as_str())).await? {
            let c: CommitRecord = serde_json::from_slice(&cv).map_err(|e| corrupt(&ck, e))?;
            let body = match artifacts.get(&ArtifactKey::new(c.artifact_key.clone())?).await {
                Ok(b) => b,
                Err(DockyardError::NotFound { .. }) => {
                    // Its tasks come back unclaimed and are docked again.
                    warn!(job = %id, key = %c.artifact_key, tasks = c.tasks.len(), "committed outcome missing from the artifact store; redoing its tasks");
                    stats.missing_outcomes += c.tasks.len() as u64;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let list: Vec<TaskOutcome> = serde_json::from_slice(&body).map_err(|e| corrupt(&c.artifact_key, e))?;
            for o in list {
                if outcomes.insert(o.index, o).is_some() {
                    stats.double_commits += 1;
                }
            }
        }
        let total = spec.task_count();
        let mut batch = StoreBatch::default();
        let cancelled = rec.state == JobIndexState::Cancelled;
        let vtime = vtime_by_org.entry(spec.org.to_string()).or_default();
        // Every task starts out as dispatched and unclaimed; each committed outcome then
        // lands exactly as it did on the old leader.
        let mut status = JobStatus {
            state: JobState::Queued,
            tasks: TaskCounts {
                total,
                running: total,
                ..TaskCounts::default()
            },
            ligands_total: spec.ligands.len() as u32,
            ligands_docked: 0,
            ligands_failed: 0,
            best_score: None,
            error: None,
            finished_at_ms: 0,
            unschedulable_reason: None,
            cpu_seconds: 0.0,
            cursor: total,
            vtime0: *vtime,
            seq0: seq + 1,
            flight: Default::default(),
            open: spec.is_open(),
        };
        *vtime += u64::from(total);
        // An open funnel stage may grow into the positions set aside for it.
        seq += u64::from(spec.reserved_tasks());
        for o in outcomes.values() {
            record_outcome(&id, &mut status, &mut batch, Phase::Running, o);
        }
        stats.committed_tasks += outcomes.len() as u64;
        for index in (0..total).filter(|i| !outcomes.contains_key(i)) {
            let state = if cancelled {
                status.tasks.shift(Phase::Running, Phase::Cancelled, 1);
                TaskState::Cancelled
            } else {
                stats.unclaimed_tasks += 1;
                TaskState::Unclaimed
            };
            let rec = TaskRecord {
                attempt: 1,
                state,
                last_error: None,
            };
            batch.put_task(&TaskId::new(id.clone(), index), &rec);
        }
        if cancelled {
            status.error.get_or_insert(if rec.reason.is_empty() {
                "cancelled".to_string()
            } else {
                rec.reason.clone()
            });
        }
        let counts = &status.tasks;
        // A funnel's job whose first stage is done is still running while the index says
        // so: its later stages are jobs of their own.
        let funnel_goes_on = (!spec.plan().is_empty() || spec.is_open()) && rec.state == JobIndexState::Active;
        status.state = if counts.finished() == total && !funnel_goes_on {
            counts.final_state(status.ligands_failed)
        } else if counts.finished() > 0 || funnel_goes_on {
            JobState::Running
        } else {
            JobState::Queued
        };
        if status.state.is_final() {
            status.finished_at_ms = now_ms();
        } else {
            stats.active_jobs += 1;
        }
        batch.put_spec(&id, &spec);
        if !skipped.is_empty() {
            batch.put_skipped(&id, &skipped);
        }
        batch.put_status(&id, &status);
        store.apply(batch)?;
        stats.jobs += 1;
    }
    store.flush().await?;
    stats.elapsed_ms = started.elapsed().as_millis() as u64;
    info!(
        jobs = stats.jobs,
        active = stats.active_jobs,
        committed_tasks = stats.committed_tasks,
        unclaimed_tasks = stats.unclaimed_tasks,
        double_commits = stats.double_commits,
        missing_outcomes = stats.missing_outcomes,
        missing_specs = stats.missing_specs,
        elapsed_ms = stats.elapsed_ms,
        "state rebuilt from the cluster journal"
    );
    Ok(stats)
}
