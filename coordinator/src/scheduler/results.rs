//! Results from agents: commit the first result of the current attempt, drop the rest;
//! retry or fail what did not succeed.

use std::time::Instant;

use tracing::{debug, info, info_span, warn};

use dockyard_common::ids::{Attempt, NodeId, TaskId};
use dockyard_common::molecule::Pose;
use dockyard_common::queue_key::QueueKey;
use dockyard_common::telemetry::trace;
use dockyard_common::time::now_ms;
use dockyard_proto::v1 as pb;

use super::cache::Versions;
use super::core::{Core, Live};
use super::queue::Entry;
use super::record::record_outcome;
use super::txn::Txn;
use crate::cluster::outcome::{OutcomeKind, TaskOutcome};
use crate::metrics::AttemptFailure;
use crate::model::{LigandResultRecord, Phase, TaskRecord, TaskState};

impl Core {
    pub(super) fn on_result(&mut self, tx: &mut Txn, node_id: &NodeId, res: pb::TaskResult) {
        let Ok(tid) = TaskId::parse(&res.task_id) else {
            warn!(node = %node_id, task = %res.task_id, "result for a malformed task id dropped");
            return;
        };
        if trace::enabled() {
            // The attempt's span ends with its slot, released below; a failure is its status.
            let failure = match &res.outcome {
                Some(pb::task_result::Outcome::Ok(_)) => None,
                Some(pb::task_result::Outcome::Failed(f)) => Some(f.reason.as_str()),
                None => Some("the agent sent no outcome"),
            };
            let slot = self.nodes.nodes.get_mut(node_id).and_then(|n| n.running.get_mut(&tid));
            if let (Some(reason), Some(span)) = (failure, slot.filter(|s| s.attempt == res.attempt).and_then(|s| s.span.as_mut())) {
                span.fail(reason);
            }
        }
        // The agent is done with this attempt whatever happens to the result.
        let mut ran_for = None;
        if let Some(n) = self.nodes.nodes.get_mut(node_id) {
            if n.running.get(&tid).is_some_and(|s| s.attempt == res.attempt) {
                ran_for = n.release(&tid).map(|s| s.taken_at.elapsed());
            }
        }
        let current = self
            .tasks
            .get(&tid)
            .is_some_and(|t| t.attempt == res.attempt && matches!(&t.live, Live::Running { node } if node == node_id));
        if !current {
            self.stats.duplicates += 1;
            self.cfg.metrics.duplicate();
            debug!(task = %tid, attempt = res.attempt, node = %node_id, "late or duplicate result dropped");
            return;
        }
        if let Some(d) = ran_for {
            self.cfg.metrics.ran_for(d);
        }
        let span = info_span!("task_result", task = %tid, attempt = res.attempt, node = %node_id);
        let _g = span.enter();
        match res.outcome {
            Some(pb::task_result::Outcome::Ok(ok)) => {
                let versions = self.jobs.get(&tid.job).and_then(|j| self.node_versions(node_id, j.spec.engine));
                self.commit_success(tx, &tid, node_id, ok, res.cpu_seconds, versions.as_ref())
            }
            Some(pb::task_result::Outcome::Failed(f)) => {
                let reason = if f.reason.is_empty() {
                    "engine failed without a reason".to_string()
                } else {
                    f.reason
                };
                if f.retryable {
                    self.cfg.metrics.attempt_failed(AttemptFailure::EngineRetryable);
                    self.requeue_or_fail(tx, &tid, &reason);
                } else {
                    self.cfg.metrics.attempt_failed(AttemptFailure::EnginePermanent);
                    self.fail_task(tx, &tid, &format!("permanent: {reason}"));
                }
            }
            None => {
                self.cfg.metrics.attempt_failed(AttemptFailure::NoOutcome);
                self.requeue_or_fail(tx, &tid, "agent sent a result without an outcome")
            }
        }
    }

    fn commit_success(&mut self, tx: &mut Txn, tid: &TaskId, node: &NodeId, ok: pb::TaskSuccess, cpu: f64, versions: Option<&Versions>) {
        let attempt = self.tasks.get(tid).map_or(0, |t| t.attempt);
        // A funnel stage feeding a streaming stage: its passing results go on at once.
        let streams = self.feed_rule(&tid.job).map(|(_, _, max)| max);
        let Some(job) = self.jobs.get_mut(&tid.job) else { return };
        let range = job.spec.task_ligands(tid.index);
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for lig in ok.ligands {
            let idx = lig.index as usize;
            if !range.contains(&idx) {
                warn!(task = %tid, index = lig.index, "agent reported a ligand outside the task; ignored");
                continue;
            }
            let name = job.spec.ligands.get(idx).map(|l| l.name.clone()).unwrap_or(lig.name);
            if lig.error.is_empty() && lig.best_score.is_finite() {
                let mut fields: std::collections::BTreeMap<String, f64> = lig.fields.into_iter().filter(|(_, v)| v.is_finite()).collect();
                // A funnel's later stage: what earlier stages measured goes beside its own.
                if let Some(c) = job.spec.carried(idx) {
                    fields.extend(c.iter().map(|(k, v)| (k.clone(), *v)));
                }
                let rec = LigandResultRecord {
                    ligand: name,
                    index: lig.index,
                    task: tid.to_string(),
                    score: lig.best_score,
                    poses: lig.poses.iter().map(Pose::from).collect(),
                    pose_key: lig.pose_key,
                    log_key: lig.log_key,
                    sdf_key: lig.sdf_key,
                    smiles: lig.smiles,
                    preparation: lig.preparation,
                    fields,
                    cached: false,
                };
                if let (Some(v), Some(l)) = (versions, job.spec.ligands.get(idx)) {
                    Core::remember(tx, &job.spec, v, l, &rec);
                }
                results.push(rec);
            } else {
                let why = if lig.error.is_empty() {
                    "no finite score".to_string()
                } else {
                    lig.error
                };
                errors.push((lig.index, name, why));
            }
        }
        let fed: Vec<LigandResultRecord> = match streams {
            Some(max) => results.iter().filter(|r| r.score <= max).cloned().collect(),
            None => Vec::new(),
        };
        let outcome = TaskOutcome {
            index: tid.index,
            attempt,
            kind: OutcomeKind::Succeeded {
                results,
                errors,
                cpu_seconds: cpu.max(0.0),
            },
        };
        record_outcome(&tid.job, &mut job.status, &mut tx.batch, Phase::Running, &outcome);
        tx.shared.outcome(&tid.job, &job.spec.org, outcome);
        job.live.remove(&tid.index);
        // Below the cursor, neither a record nor a place in the flight list means "succeeded".
        if !job.status.land(Some(node), tid.index) {
            tx.batch.delete_task(tid);
        }
        self.tasks.remove(tid);
        tx.dirty_jobs.insert(tid.job.clone());
        self.stats.committed += 1;
        self.cfg.metrics.succeeded();
        let id = tid.job.clone();
        if !fed.is_empty() {
            self.feed(&id, &fed);
        }
        self.maybe_finish(&id);
    }

    pub(super) fn fail_task(&mut self, tx: &mut Txn, tid: &TaskId, reason: &str) {
        let Some(t) = self.tasks.remove(tid) else { return };
        warn!(task = %tid, attempt = t.attempt, reason, "task failed");
        self.cfg.metrics.failed();
        if let Some(job) = self.jobs.get_mut(&tid.job) {
            let outcome = TaskOutcome {
                index: tid.index,
                attempt: t.attempt,
                kind: OutcomeKind::Failed {
                    reason: reason.to_string(),
                },
            };
            let from = match t.live {
                Live::Queued | Live::Delayed { .. } => Phase::Queued,
                Live::Running { .. } | Live::Orphan { .. } => Phase::Running,
            };
            record_outcome(&tid.job, &mut job.status, &mut tx.batch, from, &outcome);
            tx.shared.outcome(&tid.job, &job.spec.org, outcome);
            job.live.remove(&tid.index);
            job.status.land(None, tid.index);
        }
        tx.dirty_jobs.insert(tid.job.clone());
        let id = tid.job.clone();
        self.maybe_finish(&id);
    }

    /// A task no agent claimed after a failover goes straight back in line: nothing says it
    /// ever ran, so it is not charged an attempt or a backoff.
    pub(super) fn queue_unclaimed(&mut self, tx: &mut Txn, tid: &TaskId) {
        let Some(job) = self.jobs.get_mut(&tid.job) else { return };
        let class = job.class;
        let key = job.fresh_key(tid.index);
        job.status.tasks.shift(Phase::Running, Phase::Queued, 1);
        job.status.land(None, tid.index);
        let Some(t) = self.tasks.get_mut(tid) else { return };
        t.key = key;
        t.live = Live::Queued;
        t.enqueued_at = Instant::now();
        let attempt = t.attempt.max(1);
        t.attempt = attempt;
        self.queue.push(class, key, Entry::Task(tid.clone()));
        tx.batch.put_task(
            tid,
            &TaskRecord {
                attempt,
                state: TaskState::Queued {
                    key: key.as_bytes().to_vec(),
                    not_before_ms: 0,
                },
                last_error: None,
            },
        );
        tx.dirty_jobs.insert(tid.job.clone());
    }

    /// Puts a running task back in the queue as attempt+1 after a backoff, keeping its place
    /// in line, or fails it once it has used its attempts.
    pub(super) fn requeue_or_fail(&mut self, tx: &mut Txn, tid: &TaskId, reason: &str) {
        let Some(job) = self.jobs.get(&tid.job) else { return };
        let max = job.spec.max_attempts;
        let fallback_key = job.fresh_key(tid.index);
        let Some(t) = self.tasks.get(tid) else { return };
        if t.attempt >= max {
            let reason = format!("gave up after {} attempts; last: {reason}", t.attempt);
            self.fail_task(tx, tid, &reason);
            return;
        }
        let attempt: Attempt = t.attempt + 1;
        let qk: QueueKey = if t.key.seq() == 0 { fallback_key } else { t.key };
        let delay = self.cfg.backoff.delay(attempt);
        let until_ms = now_ms() + delay.as_millis() as i64;
        if let Some(t) = self.tasks.get_mut(tid) {
            t.attempt = attempt;
            t.key = qk;
            t.live = Live::Delayed { until_ms };
            t.enqueued_at = Instant::now() + delay;
        }
        self.delayed.insert((until_ms, qk.seq()), tid.clone());
        tx.batch.put_task(
            tid,
            &TaskRecord {
                attempt,
                state: TaskState::Queued {
                    key: qk.as_bytes().to_vec(),
                    not_before_ms: until_ms,
                },
                last_error: Some(reason.to_string()),
            },
        );
        if let Some(job) = self.jobs.get_mut(&tid.job) {
            job.status.tasks.shift(Phase::Running, Phase::Queued, 1);
            // The record written above speaks for the task from now on.
            job.status.land(None, tid.index);
        }
        tx.dirty_jobs.insert(tid.job.clone());
        self.stats.requeued += 1;
        self.cfg.metrics.retried();
        info!(task = %tid, attempt, delay_ms = delay.as_millis() as u64, reason, "task requeued");
    }
}
