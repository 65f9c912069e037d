//! Matching queued work to free capacity, and building assignments.

use std::collections::HashMap;

use tracing::debug;

use dockyard_common::ids::{Attempt, Epoch, NodeId, TaskId};
use dockyard_common::spec::JobSpec;
use dockyard_common::telemetry::trace;
use dockyard_common::time::now_ms;
use dockyard_proto::v1 as pb;

use super::core::{Core, Live, LiveTask};
use super::queue::{Entry, TaskClass};
use super::txn::Txn;
use crate::model::{JobState, Phase, TaskRecord, TaskState};

impl Core {
    /// Hands queued tasks to nodes with free capacity, one per node per round so a small
    /// job spreads over the cluster; never more than a node's free slots (credit).
    pub fn dispatch(&mut self, tx: &mut Txn) {
        if self.queue.is_empty() {
            return;
        }
        let mut active: Vec<NodeId> = self
            .nodes
            .connected()
            .filter(|n| n.accepts_work())
            .map(|n| n.reg.node.clone())
            .collect();
        let started_ms = now_ms();
        // Read once per round: with traces off, a dispatch builds no trace data at all.
        let traced = trace::enabled();
        // One atomic add per round, not per task.
        let dispatched_before = self.stats.dispatched;
        // Organisations with a cap on running tasks, and what they run now; both empty (and
        // free) unless an admin set such a cap.
        let cluster_slots: u64 = self.nodes.connected().map(|n| u64::from(n.reg.slots)).sum();
        let caps = self.cfg.quotas.running_caps(cluster_slots);
        let mut running = if caps.is_empty() { HashMap::new() } else { self.running_by_org() };
        while !active.is_empty() && !self.queue.is_empty() {
            let mut still = Vec::with_capacity(active.len());
            for nid in active {
                let Some(node) = self.nodes.nodes.get(&nid) else { continue };
                let jobs = &self.jobs;
                let under_cap = |e: &Entry| {
                    caps.is_empty()
                        || jobs.get(e.job()).is_none_or(|j| {
                            caps.get(&j.spec.org)
                                .is_none_or(|cap| running.get(&j.spec.org).copied().unwrap_or(0) < *cap)
                        })
                };
                let Some((class, qk, entry)) = self.queue.peek_best_where(|c| node.fits_now(c), under_cap) else {
                    continue;
                };
                self.queue.pop(&class, &qk);
                let Some((tid, attempt, fresh)) = self.take_entry(entry, &class, &nid) else {
                    continue;
                };
                let gpus = match self.nodes.nodes.get_mut(&nid) {
                    Some(n) => n.take(tid.clone(), attempt, &class),
                    None => continue,
                };
                // A first attempt is in the job's flight list (written with the job row);
                // a retry already has a record, now saying where it runs.
                if !fresh {
                    tx.batch.put_task(
                        &tid,
                        &TaskRecord {
                            attempt,
                            state: TaskState::Running {
                                node: nid.clone(),
                                epoch: self.epoch,
                                started_ms,
                            },
                            last_error: None,
                        },
                    );
                }
                self.stats.dispatched += 1;
                if let Some(job) = self.jobs.get_mut(&tid.job) {
                    if !caps.is_empty() {
                        *running.entry(job.spec.org.clone()).or_default() += 1;
                    }
                    job.status.tasks.shift(Phase::Queued, Phase::Running, 1);
                    if job.status.state == JobState::Queued {
                        job.status.state = JobState::Running;
                    }
                    let mut a = build_assignment(&job.spec, &tid, attempt, self.epoch, &class, gpus);
                    if traced {
                        if let Some((span, cx)) = trace::start_attempt(tid.job.as_str(), tid.index, attempt, nid.as_str(), &a.engine) {
                            a.trace_context = cx;
                            if let Some(slot) = self.nodes.nodes.get_mut(&nid).and_then(|n| n.running.get_mut(&tid)) {
                                slot.span = Some(span);
                            }
                        }
                    }
                    tx.assigns.entry(nid.clone()).or_default().push(a);
                    tx.dirty_jobs.insert(tid.job.clone());
                }
                if self.nodes.nodes.get(&nid).is_some_and(|n| n.accepts_work()) {
                    still.push(nid);
                }
            }
            active = still;
        }
        self.cfg.metrics.dispatched(self.stats.dispatched - dispatched_before);
        if !tx.assigns.is_empty() {
            debug!(
                nodes = tx.assigns.len(),
                tasks = tx.assigns.values().map(Vec::len).sum::<usize>(),
                "dispatched"
            );
        }
    }

    /// Turns a popped queue entry into a running task attempt; `true` for a task's first
    /// dispatch (never recorded before).
    fn take_entry(&mut self, entry: Entry, class: &TaskClass, nid: &NodeId) -> Option<(TaskId, Attempt, bool)> {
        match entry {
            Entry::Job(job_id) => {
                let job = self.jobs.get_mut(&job_id)?;
                let index = job.status.cursor;
                job.status.cursor += 1;
                if job.has_fresh() {
                    let next = job.fresh_key(job.status.cursor);
                    self.queue.push(*class, next, Entry::Job(job_id.clone()));
                }
                let key = job.fresh_key(index);
                job.live.insert(index);
                job.status.fly(nid, index);
                let waited = job.accepted_at.elapsed();
                self.stats.latency.push(waited.as_secs_f64() * 1000.0);
                self.cfg.metrics.queued_for(waited);
                let tid = TaskId::new(job_id, index);
                self.tasks.insert(
                    tid.clone(),
                    LiveTask {
                        attempt: 1,
                        key,
                        live: Live::Running { node: nid.clone() },
                        enqueued_at: job.accepted_at,
                    },
                );
                Some((tid, 1, true))
            }
            Entry::Task(tid) => {
                let t = self.tasks.get_mut(&tid)?;
                t.live = Live::Running { node: nid.clone() };
                let waited = t.enqueued_at.elapsed();
                self.stats.latency.push(waited.as_secs_f64() * 1000.0);
                self.cfg.metrics.queued_for(waited);
                let attempt = t.attempt;
                Some((tid, attempt, false))
            }
        }
    }
}

fn build_assignment(spec: &JobSpec, tid: &TaskId, attempt: Attempt, epoch: Epoch, class: &TaskClass, gpus: Vec<u32>) -> pb::TaskAssignment {
    let range = spec.task_ligands(tid.index);
    let start = range.start;
    let ligands = spec
        .ligands
        .get(range)
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .map(|(i, l)| pb::LigandInput {
            index: (start + i) as u32,
            name: l.name.clone(),
            artifact: Some(pb::ArtifactRef {
                key: l.key.to_string(),
                name: l.name.clone(),
                size: l.size,
                format: l.format.to_string(),
                offset: l.offset,
            }),
        })
        .collect();
    pb::TaskAssignment {
        task_id: tid.to_string(),
        attempt,
        epoch,
        job_id: tid.job.to_string(),
        org: spec.org.to_string(),
        engine: spec.engine.name().to_string(),
        r#box: Some(spec.dock_box.to_proto()),
        params: Some(spec.params.to_proto()),
        receptor: spec.receptor.as_ref().map(|r| pb::ArtifactRef {
            key: r.key.to_string(),
            name: r.name.clone(),
            size: r.size,
            format: r.format.to_string(),
            offset: None,
        }),
        ligands,
        // The epoch keeps two leaders' attempts of one task (after a failover) apart.
        output_prefix: dockyard_common::artifact::OutputPrefix::task(&spec.org, tid, attempt, epoch).into(),
        cpu_slots: class.cpus,
        memory_bytes: class.memory_bytes,
        gpu_indices: gpus,
        timeout_s: spec.timeout_s,
        trace_context: HashMap::new(),
        prepare: spec.preparation.tool.name().to_string(),
        protonate: spec.preparation.protonate,
    }
}
