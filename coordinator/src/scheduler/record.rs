//! What a task's final outcome does to its job's durable state. The live path (a result
//! committed, a task given up on) and a new leader's rebuild both go through here, so the
//! job a standby rebuilds is the job the old leader had.

use dockyard_common::ids::{JobId, TaskId};

use crate::cluster::outcome::{OutcomeKind, TaskOutcome};
use crate::model::{JobStatus, Phase, TaskRecord, TaskState};
use crate::store::StoreBatch;

/// Writes the outcome's rows into `batch` and counts it in `status`; the task leaves phase
/// `from` (running, for a result; queued or running for a task given up on).
pub fn record_outcome(job: &JobId, status: &mut JobStatus, batch: &mut StoreBatch, from: Phase, o: &TaskOutcome) {
    match &o.kind {
        OutcomeKind::Succeeded {
            results,
            errors,
            cpu_seconds,
        } => {
            for r in results {
                batch.put_result(job, r);
                status.ligands_docked += 1;
                status.best_score = Some(status.best_score.map_or(r.score, |b| b.min(r.score)));
            }
            for (index, name, why) in errors {
                batch.put_ligand_error(job, *index, name, why);
                status.ligands_failed += 1;
            }
            status.cpu_seconds += cpu_seconds;
            status.tasks.shift(from, Phase::Succeeded, 1);
        }
        OutcomeKind::Failed { reason } => {
            let tid = TaskId::new(job.clone(), o.index);
            batch.put_task(
                &tid,
                &TaskRecord {
                    attempt: o.attempt,
                    state: TaskState::Failed { reason: reason.clone() },
                    last_error: Some(reason.clone()),
                },
            );
            status.tasks.shift(from, Phase::Failed, 1);
            status.error.get_or_insert_with(|| format!("task {tid}: {reason}"));
        }
    }
}
