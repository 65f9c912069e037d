//! Conversions between stored records and protobuf views.

use dockyard_common::error::DockyardError;
use dockyard_common::ids::JobId;
use dockyard_common::spec::{DockBox, JobSpec};
use dockyard_proto::v1 as pb;

use crate::model::{JobState, JobStatus, LigandResultRecord, TaskCounts};

pub fn job_state(s: JobState) -> pb::JobState {
    match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Partial => pb::JobState::Partial,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

pub fn task_counts(c: &TaskCounts) -> pb::TaskCounts {
    pb::TaskCounts {
        total: c.total,
        queued: c.queued,
        running: c.running,
        succeeded: c.succeeded,
        failed: c.failed,
        cancelled: c.cancelled,
    }
}

pub fn job_view(id: &JobId, spec: &JobSpec, st: &JobStatus) -> pb::Job {
    pb::Job {
        job_id: id.to_string(),
        name: spec.name.clone(),
        org: spec.org.to_string(),
        engine: spec.engine.name().to_string(),
        state: job_state(st.state) as i32,
        priority: spec.priority,
        tasks: Some(task_counts(&st.tasks)),
        ligands_total: st.ligands_total,
        ligands_docked: st.ligands_docked,
        ligands_failed: st.ligands_failed,
        created_at_ms: spec.created_at_ms,
        finished_at_ms: st.finished_at_ms,
        unschedulable_reason: st.unschedulable_reason.clone().unwrap_or_default(),
        error: st.error.clone().unwrap_or_default(),
        best_score: st.best_score.unwrap_or(0.0),
        test_only: spec.engine.test_only(),
        cpu_seconds: st.cpu_seconds,
        ligands_skipped: spec.skipped,
        stages: Vec::new(),
        funnel_job_id: String::new(),
    }
}

pub fn ligand_result(r: LigandResultRecord) -> pb::LigandResult {
    pb::LigandResult {
        ligand: r.ligand,
        ligand_index: r.index,
        task_id: r.task,
        score: r.score,
        poses: r.poses.iter().map(pb::Pose::from).collect(),
        pose_key: r.pose_key,
        log_key: r.log_key,
        smiles: r.smiles,
        sdf_key: r.sdf_key,
        preparation: r.preparation,
        fields: r.fields.into_iter().collect(),
        cached: r.cached,
    }
}

pub fn dock_box(b: Option<&pb::DockingBox>) -> Result<DockBox, DockyardError> {
    let b = b.ok_or_else(|| DockyardError::invalid("box", "missing; give a center and a size"))?;
    let c = b.center.as_ref().ok_or_else(|| DockyardError::invalid("box.center", "missing"))?;
    let s = b.size.as_ref().ok_or_else(|| DockyardError::invalid("box.size", "missing"))?;
    let bx = DockBox {
        center: [c.x, c.y, c.z],
        size: [s.x, s.y, s.z],
    };
    bx.validate()?;
    Ok(bx)
}
