//! Lost and double commits of a job in a single coordinator (no etcd), counted from the
//! records it committed to its sled folder: read after the coordinator stopped (sled locks
//! the folder), through the store's own typed reads, not through the API whose counters
//! decide that a job is done.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use dockyard_common::ids::JobId;
use dockyard_coordinator::model::TaskState;
use dockyard_coordinator::store::Store;

/// `(double_commits, lost)` over tasks `0..tasks` of `job`: a ligand with more than one
/// result record was committed twice; a task with neither a result nor a final failure or
/// cancellation record has no committed outcome.
pub fn audit_sled(data_dir: &Path, job: &str, tasks: u32) -> Result<(usize, usize)> {
    let store = Store::open(data_dir).with_context(|| format!("open the sled folder {}", data_dir.display()))?;
    let id = JobId::parse(job).context("job id")?;
    let (results, _) = store.results(&id, None, usize::MAX).context("results")?;
    let mut per_ligand: HashMap<u32, usize> = HashMap::new();
    let mut done: HashSet<u32> = HashSet::new();
    for r in &results {
        *per_ligand.entry(r.index).or_default() += 1;
        if let Some(i) = r.task.rsplit('.').next().and_then(|i| i.parse().ok()) {
            done.insert(i);
        }
    }
    for (task, rec) in store.job_task_records(&id).context("task records")? {
        if matches!(rec.state, TaskState::Failed { .. } | TaskState::Cancelled) {
            done.insert(task.index);
        }
    }
    let doubles = per_ligand.values().filter(|n| **n > 1).count();
    let lost = (0..tasks).filter(|i| !done.contains(i)).count();
    Ok((doubles, lost))
}
