//! Step 5 of a task: the `TaskResult` sent to the coordinator, whatever happened.

use tracing::{info, warn};

use dockyard_proto::v1 as pb;

use super::RunError;
use crate::engine::EngineError;

pub(super) fn failed(a: &pb::TaskAssignment, retryable: bool, reason: String, wall: f64) -> pb::TaskResult {
    pb::TaskResult {
        task_id: a.task_id.clone(),
        attempt: a.attempt,
        epoch: a.epoch,
        outcome: Some(pb::task_result::Outcome::Failed(pb::TaskFailure { retryable, reason })),
        cpu_seconds: 0.0,
        wall_seconds: wall,
    }
}

/// The ligands' outcomes, sorted by index when some failed before the engine ran (those
/// were left out of its run).
pub(super) fn succeeded(
    a: &pb::TaskAssignment,
    mut ligands: Vec<pb::LigandOutcome>,
    prep_failed: Vec<pb::LigandOutcome>,
    cpu_seconds: f64,
    wall_seconds: f64,
) -> pb::TaskResult {
    if !prep_failed.is_empty() {
        ligands.extend(prep_failed);
        ligands.sort_by_key(|o| o.index);
    }
    pb::TaskResult {
        task_id: a.task_id.clone(),
        attempt: a.attempt,
        epoch: a.epoch,
        outcome: Some(pb::task_result::Outcome::Ok(pb::TaskSuccess { ligands })),
        cpu_seconds,
        wall_seconds,
    }
}

/// The result of an attempt that took `wall` seconds; `quiet` logs success at debug level.
pub(super) fn report(a: &pb::TaskAssignment, r: Result<pb::TaskResult, RunError>, wall: f64, quiet: bool) -> pb::TaskResult {
    match r {
        Ok(mut res) => {
            res.wall_seconds = wall;
            if quiet {
                tracing::debug!(wall_s = wall, "task finished");
            } else {
                info!(wall_s = wall, "task finished");
            }
            res
        }
        Err(RunError::Engine(EngineError::Cancelled)) => {
            // Either the coordinator cancelled it (it drops this attempt's result anyway)
            // or this agent is leaving: then the task is handed back, not failed.
            info!("task cancelled; handing it back");
            failed(a, true, "handed back: cancelled on the agent".into(), wall)
        }
        Err(RunError::Engine(e)) => {
            warn!(error = %e, retryable = e.retryable(), "task failed");
            failed(a, e.retryable(), e.to_string(), wall)
        }
        Err(RunError::Setup { retryable, reason }) => {
            warn!(%reason, retryable, "task could not run");
            failed(a, retryable, reason, wall)
        }
    }
}
