//! Accepting, cancelling and finishing jobs.

use std::sync::Arc;

use tracing::info;

use dockyard_common::cluster::JobIndexState;

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{JobId, TaskId};
use dockyard_common::spec::JobSpec;
use dockyard_common::telemetry::trace;
use dockyard_common::time::now_ms;
use dockyard_proto::v1 as pb;

use super::core::{class_of, ActiveJob, Core, Live};
use super::queue::Entry;
use super::txn::Txn;
use crate::cluster::outcome::JobChange;
use crate::model::{JobState, JobStatus, Phase, SkippedRecord, TaskCounts, TaskRecord, TaskState};

impl Core {
    /// Queues a whole job with two writes (spec and status): its tasks are implied by the
    /// status's cursor, however many there are.
    pub(super) fn submit(&mut self, tx: &mut Txn, id: JobId, spec: JobSpec, skipped: Vec<SkippedRecord>) -> Result<JobId, DockyardError> {
        if self.jobs.contains_key(&id) || self.store.spec(&id)?.is_some() {
            return Err(DockyardError::FailedPrecondition(format!("job {id} already exists")));
        }
        if spec.task_count() == 0 && spec.ligands.is_empty() {
            return Err(DockyardError::invalid("ligands", "the job has no work: the library is empty"));
        }
        // Checked before the result cache serves anything, so a refused job writes nothing.
        let max = self.cfg.quotas.get(&spec.org).max_queued_tasks;
        if max > 0 {
            let (queued, adds) = (self.queued_of(&spec.org), u64::from(spec.task_count()));
            if queued + adds > max {
                return Err(DockyardError::ResourceExhausted(format!(
                    "quota max_queued_tasks exceeded for organisation {}: {queued} tasks queued + {adds} in this job > limit {max}; \
                     wait for queued work to start or ask an admin to raise the limit",
                    spec.org
                )));
            }
        }
        self.check_plan(&spec)?;
        Ok(self.accept(tx, id, spec, skipped))
    }

    /// Queues a job that passed its checks: a submission, or a funnel's next stage.
    pub(super) fn accept(&mut self, tx: &mut Txn, id: JobId, mut spec: JobSpec, skipped: Vec<SkippedRecord>) -> JobId {
        let served = self.serve_from_cache(tx, &id, &mut spec);
        let n = spec.task_count();
        let class = class_of(&spec);
        let vtime0 = self.queue.assign_vtime(spec.priority, &spec.org, u64::from(n));
        let seq0 = self.seq + 1;
        // An open funnel stage's later tasks take the positions set aside after its first.
        self.seq += u64::from(n.max(spec.reserved_tasks()));
        let status = JobStatus {
            state: JobState::Queued,
            tasks: TaskCounts {
                total: n,
                queued: n,
                ..TaskCounts::default()
            },
            ligands_total: spec.ligands.len() as u32,
            ligands_docked: served.len() as u32,
            ligands_failed: 0,
            best_score: served.iter().map(|r| r.score).reduce(f64::min),
            error: None,
            finished_at_ms: 0,
            unschedulable_reason: self.nodes.unschedulable_reason(&class),
            cpu_seconds: 0.0,
            cursor: 0,
            vtime0,
            seq0,
            flight: Default::default(),
            open: spec.is_open(),
        };
        tx.batch.put_spec(&id, &spec);
        if !skipped.is_empty() {
            tx.batch.put_skipped(&id, &skipped);
        }
        info!(job = %id, org = %spec.org, engine = spec.engine.name(), tasks = n, ligands = spec.ligands.len(), priority = spec.priority, "job accepted");
        let job = ActiveJob::new(spec, status);
        if job.has_fresh() {
            self.queue.push(class, job.fresh_key(0), Entry::Job(id.clone()));
        }
        if !served.is_empty() {
            info!(job = %id, cached = served.len(), "ligands served from the result cache");
        }
        let change = JobChange {
            org: job.spec.org.clone(),
            state: JobIndexState::Active,
            reason: String::new(),
            spec: Some(Arc::clone(&job.spec)),
            skipped,
            created_at_ms: job.spec.created_at_ms,
            spec_version: job.spec.version(),
        };
        tx.shared.job(&id, change);
        self.jobs.insert(id.clone(), job);
        tx.dirty_jobs.insert(id.clone());
        self.feed(&id, &served);
        // Everything came from the cache: the job is done at once.
        self.maybe_finish(&id);
        id
    }

    pub(super) fn cancel(&mut self, tx: &mut Txn, id: &JobId, reason: &str) {
        let Some(job) = self.jobs.get_mut(id) else { return };
        let reason = if reason.is_empty() {
            "cancelled by user".to_string()
        } else {
            reason.to_string()
        };
        let class = job.class;
        let mut was_queued = 0u32;
        let mut was_running = 0u32;
        if job.has_fresh() {
            let fresh = job.status.tasks.total - job.status.cursor;
            self.queue.remove(&class, &job.fresh_key(job.status.cursor));
            job.status.cursor = job.status.tasks.total;
            was_queued += fresh;
        }
        let live: Vec<u32> = std::mem::take(&mut job.live).into_iter().collect();
        for index in live {
            let tid = TaskId::new(id.clone(), index);
            let Some(t) = self.tasks.remove(&tid) else { continue };
            match &t.live {
                Live::Queued => {
                    self.queue.remove(&class, &t.key);
                    was_queued += 1;
                }
                Live::Delayed { until_ms } => {
                    self.delayed.remove(&(*until_ms, t.key.seq()));
                    was_queued += 1;
                }
                Live::Running { node } => {
                    if let Some(slot) = self.nodes.nodes.get_mut(node).and_then(|n| n.running.get_mut(&tid)) {
                        slot.cancelled = true;
                    }
                    let msg = pb::CoordinatorMessage {
                        kind: Some(pb::coordinator_message::Kind::Cancel(pb::Cancel {
                            task_id: tid.to_string(),
                            attempt: t.attempt,
                            reason: reason.clone(),
                        })),
                    };
                    tx.messages.push((node.clone(), msg));
                    was_running += 1;
                }
                Live::Orphan { .. } => was_running += 1,
            }
            tx.batch.put_task(
                &tid,
                &TaskRecord {
                    attempt: t.attempt,
                    state: TaskState::Cancelled,
                    last_error: Some(reason.clone()),
                },
            );
        }
        if let Some(job) = self.jobs.get_mut(id) {
            let c = &mut job.status.tasks;
            c.shift(Phase::Queued, Phase::Cancelled, was_queued);
            c.shift(Phase::Running, Phase::Cancelled, was_running);
            let cancelled = was_queued + was_running;
            // Every live task was given a Cancelled record above.
            job.status.flight.clear();
            job.status.error.get_or_insert(reason.clone());
            info!(job = %id, cancelled, reason = %reason, "job cancelled");
        }
        tx.dirty_jobs.insert(id.clone());
        if let Some(job) = self.jobs.get(id) {
            let change = JobChange {
                org: job.spec.org.clone(),
                state: JobIndexState::Cancelled,
                reason: reason.clone(),
                spec: None,
                skipped: Vec::new(),
                created_at_ms: job.spec.created_at_ms,
                spec_version: job.spec.version(),
            };
            tx.shared.job(id, change);
        }
        self.maybe_finish(id);
    }

    pub(super) fn maybe_finish(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else { return };
        let c = &job.status.tasks;
        if c.finished() < c.total || job.status.state.is_final() {
            return;
        }
        // A funnel's own job runs its first stage; the funnel ends when its last stage does.
        if !job.spec.plan().is_empty() && c.cancelled == 0 {
            self.stage_ended(id.clone());
            return;
        }
        // A stage still fed by the one before waits for more ligands.
        if job.status.open && c.cancelled == 0 {
            return;
        }
        job.status.state = c.final_state(job.status.ligands_failed);
        job.status.finished_at_ms = now_ms();
        job.status.unschedulable_reason = None;
        info!(job = %id, state = ?job.status.state, docked = job.status.ligands_docked, failed_ligands = job.status.ligands_failed, best = ?job.status.best_score, "job finished");
        if trace::enabled() {
            let failed = matches!(job.status.state, JobState::Failed | JobState::Cancelled);
            trace::record_job(&trace::JobSummary {
                job_id: id.as_str(),
                org: &job.spec.org.to_string(),
                engine: job.spec.engine.name(),
                tasks: job.status.tasks.total,
                state: &format!("{:?}", job.status.state).to_lowercase(),
                error: failed.then(|| job.status.error.as_deref().unwrap_or("failed")),
                ligands_docked: job.status.ligands_docked,
                ligands_failed: job.status.ligands_failed,
                submitted_ms: job.spec.created_at_ms,
                finished_ms: job.status.finished_at_ms,
            });
        }
        let root = job.spec.funnel_root().cloned();
        self.finished_jobs.push(id.clone());
        if let Some(root) = root {
            self.stage_ended(root);
        }
    }
}
