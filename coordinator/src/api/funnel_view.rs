//! A funnel's view: its stages' progress read from their durable statuses, which every
//! group commit rewrites, so the view is as current as the last commit.

use dockyard_common::error::DockyardError;
use dockyard_common::ids::JobId;
use dockyard_common::spec::{JobSpec, RankKey};
use dockyard_proto::v1 as pb;

use super::convert::{job_state, job_view, task_counts};
use crate::model::JobStatus;
use crate::store::Store;

/// The job's view; a funnel's also lists its stages and adds their tasks and CPU up.
pub fn view(store: &Store, id: &JobId, spec: &JobSpec, status: &JobStatus) -> pb::Job {
    let mut v = job_view(id, spec, status);
    if let Some(root) = spec.funnel_root() {
        v.funnel_job_id = root.to_string();
    }
    if spec.plan().is_empty() {
        return v;
    }
    // A stage's status that cannot be read is shown as not started: the view is advisory,
    // the scheduler's own decisions read the store themselves.
    let stages = stages(store, id, spec, status).unwrap_or_default();
    let mut tasks = pb::TaskCounts::default();
    let mut cpu = 0.0;
    for s in &stages {
        let Some(t) = &s.tasks else { continue };
        tasks.total += t.total;
        tasks.queued += t.queued;
        tasks.running += t.running;
        tasks.succeeded += t.succeeded;
        tasks.failed += t.failed;
        tasks.cancelled += t.cancelled;
        cpu += s.cpu_seconds;
    }
    if let Some(deepest) = stages.iter().rev().find(|s| s.ligands_docked > 0) {
        v.best_score = deepest.best_score;
    }
    v.tasks = Some(tasks);
    v.cpu_seconds = cpu;
    v.stages = stages;
    v
}

/// Every stage of funnel `root`, in order; stages not created yet have no job and state
/// UNSPECIFIED.
pub fn stages(store: &Store, root: &JobId, spec: &JobSpec, status: &JobStatus) -> Result<Vec<pb::StageProgress>, DockyardError> {
    let plan = spec.plan();
    let mut statuses: Vec<Option<JobStatus>> = Vec::with_capacity(plan.len());
    statuses.push(Some(status.clone()));
    for k in 1..plan.len() {
        let s = store.status(&root.stage(k as u32))?;
        let last = s.is_none();
        statuses.push(s);
        if last {
            statuses.resize(plan.len(), None);
            break;
        }
    }
    let mut out = Vec::with_capacity(plan.len());
    for (k, p) in plan.iter().enumerate() {
        let mut s = pb::StageProgress {
            stage: k as u32 + 1,
            name: p.name.clone(),
            engine: p.engine.name().to_string(),
            keep: p.keep.map(|r| r.label()).unwrap_or_default(),
            rank_by: p.rank_by.clone(),
            ..Default::default()
        };
        if let Some(st) = &statuses[k] {
            s.job_id = root.stage(k as u32).to_string();
            s.state = job_state(st.state) as i32;
            s.tasks = Some(task_counts(&st.tasks));
            s.ligands_in = st.ligands_total;
            s.ligands_docked = st.ligands_docked;
            s.ligands_failed = st.ligands_failed;
            s.cpu_seconds = st.cpu_seconds;
            s.best_score = st.best_score.unwrap_or(0.0);
            s.streaming = st.open;
            if let Some(Some(next)) = statuses.get(k + 1) {
                s.survivors = next.ligands_total;
                s.survivors_chosen = !next.open;
            }
        }
        out.push(s);
    }
    // The funnel's own job runs stage 1 but stays running until the last stage ends.
    if let (Some(first), Some(st)) = (out.first_mut(), statuses.first().and_then(|s| s.as_ref())) {
        let c = &st.tasks;
        if c.finished() == c.total && !st.state.is_final() {
            first.state = job_state(c.final_state(st.ligands_failed)) as i32;
        }
    }
    Ok(out)
}

/// Where a job's results are read from.
pub struct ResultsSource {
    /// A funnel's deepest stage so far (at the end, its last); any other job itself.
    pub job: JobId,
    /// The key they are ranked by when the caller names none: that stage's, or the engine's.
    pub key: RankKey,
    /// The fields holding earlier stages' scores, in stage order.
    pub stage_columns: Vec<String>,
}

pub fn results_source(store: &Store, id: &JobId, spec: &JobSpec, stage: u32) -> Result<ResultsSource, DockyardError> {
    let plan = spec.plan();
    let columns = |k: usize| plan[..k].iter().map(|p| format!("{}.score", p.name)).collect();
    if stage == 1 && plan.is_empty() {
        return Ok(ResultsSource {
            job: id.clone(),
            key: spec.engine.traits().rank_key,
            stage_columns: Vec::new(),
        });
    }
    if stage > 0 {
        let k = stage as usize - 1;
        let Some(p) = plan.get(k) else {
            return Err(DockyardError::invalid(
                "stage",
                format!(
                    "job {id} has {} stage(s); ask for 1-{} or 0 (the deepest)",
                    plan.len().max(1),
                    plan.len().max(1)
                ),
            ));
        };
        let job = id.stage(k as u32);
        if k > 0 && store.status(&job)?.is_none() {
            return Err(DockyardError::FailedPrecondition(format!(
                "stage {stage} ('{}') of job {id} has not started: its survivors are not chosen yet",
                p.name
            )));
        }
        return Ok(ResultsSource {
            job,
            key: p.rank_key(),
            stage_columns: columns(k),
        });
    }
    for k in (1..plan.len()).rev() {
        let stage = id.stage(k as u32);
        if store.status(&stage)?.is_some() {
            return Ok(ResultsSource {
                job: stage,
                key: plan[k].rank_key(),
                stage_columns: columns(k),
            });
        }
    }
    Ok(ResultsSource {
        job: id.clone(),
        key: plan.first().map_or(spec.engine.traits().rank_key, |p| p.rank_key()),
        stage_columns: Vec::new(),
    })
}

/// The failures of every stage of a funnel, each group named by its stage.
pub fn failure_groups(store: &Store, id: &JobId, spec: &JobSpec) -> Result<Vec<pb::FailureGroup>, DockyardError> {
    let plan = spec.plan();
    if plan.is_empty() {
        return crate::report::failure_groups(store, id);
    }
    let mut out = Vec::new();
    for (k, p) in plan.iter().enumerate() {
        let stage = id.stage(k as u32);
        if k > 0 && store.status(&stage)?.is_none() {
            break;
        }
        for mut g in crate::report::failure_groups(store, &stage)? {
            g.stage = p.name.clone();
            out.push(g);
        }
    }
    Ok(out)
}
