//! Scheduler state and the rules that change it. Called only from the actor loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{debug, info, info_span, warn};

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{Attempt, Epoch, JobId, NodeId, TaskId};
use dockyard_common::queue_key::QueueKey;
use dockyard_common::spec::JobSpec;
use dockyard_common::time::now_ms;
use dockyard_proto::v1 as pb;

use super::latency::LatencyRing;
use super::nodes::{NodeRt, NodeTable};
use super::queue::{ReadyQueue, TaskClass};
use super::txn::Txn;
use super::{Command, SchedulerConfig};
use crate::api::convert::job_view;
use crate::model::{JobState, JobStatus, LigandResultRecord, TaskCounts, TaskRecord, TaskState};
use crate::store::{self, encode, key, Store, P_JOB, P_LIGERR, P_QUEUE, P_SPEC, P_TASK};

struct ActiveJob {
    spec: Arc<JobSpec>,
    status: JobStatus,
    class: TaskClass,
    watch: watch::Sender<pb::Job>,
}

#[derive(Clone, Debug, PartialEq)]
enum Live {
    Queued,
    Delayed { until_ms: i64 },
    Running { node: NodeId },
    /// Recorded as running before a restart; waiting for its agent to report it.
    Orphan { node: NodeId, deadline: Instant },
}

struct LiveTask {
    attempt: Attempt,
    key: QueueKey,
    live: Live,
    enqueued_at: Instant,
}

#[derive(Default)]
struct Stats {
    dispatched: u64,
    committed: u64,
    duplicates: u64,
    requeued: u64,
    latency: LatencyRing,
}

pub struct Core {
    store: Store,
    epoch: Epoch,
    cfg: SchedulerConfig,
    jobs: HashMap<JobId, ActiveJob>,
    tasks: HashMap<TaskId, LiveTask>,
    queue: ReadyQueue,
    delayed: BTreeMap<(i64, u64), TaskId>,
    nodes: NodeTable,
    seq: u64,
    next_conn: u64,
    pending_evictions: Vec<(NodeId, u64, String)>,
    /// Set at start-up while tasks recorded as running wait for their agents.
    orphan_deadline: Option<Instant>,
    finished_jobs: Vec<JobId>,
    stats: Stats,
}

fn class_of(spec: &JobSpec) -> TaskClass {
    TaskClass { engine: spec.engine, gpus: spec.gpus_per_task, memory_bytes: spec.task_memory_bytes() }
}

impl Core {
    pub async fn load(store: Store, cfg: SchedulerConfig) -> Result<Self, DockyardError> {
        let epoch = store.next_epoch().await?;
        let mut core = Core {
            store: store.clone(),
            epoch,
            cfg,
            jobs: HashMap::new(),
            tasks: HashMap::new(),
            queue: ReadyQueue::default(),
            delayed: BTreeMap::new(),
            nodes: NodeTable::default(),
            seq: 0,
            next_conn: 1,
            pending_evictions: Vec::new(),
            orphan_deadline: None,
            finished_jobs: Vec::new(),
            stats: Stats::default(),
        };
        let started = Instant::now();
        for id in store.job_ids(None, usize::MAX)? {
            let Some(status) = store.status(&id)? else { continue };
            if status.state.is_final() {
                continue;
            }
            let Some(spec) = store.spec(&id)? else {
                warn!(job = %id, "job status without spec; skipping");
                continue;
            };
            let view = job_view(&id, &spec, &status);
            let (watch, _) = watch::channel(view);
            let class = class_of(&spec);
            core.jobs.insert(id, ActiveJob { spec: Arc::new(spec), status, class, watch });
        }
        let now = now_ms();
        let deadline = Instant::now() + core.cfg.reconcile_grace;
        let mut orphans = 0usize;
        for item in store.tasks() {
            let (id, rec) = item?;
            let Some(job) = core.jobs.get(&id.job) else { continue };
            let (live, key) = match rec.state {
                TaskState::Queued { key, not_before_ms } => {
                    let Some(k) = QueueKey::from_bytes(&key) else { continue };
                    core.queue.observe_loaded(&k, &job.spec.org);
                    core.seq = core.seq.max(k.seq());
                    if not_before_ms > now {
                        core.delayed.insert((not_before_ms, k.seq()), id.clone());
                        (Live::Delayed { until_ms: not_before_ms }, k)
                    } else {
                        core.queue.push(job.class, k, id.clone());
                        (Live::Queued, k)
                    }
                }
                TaskState::Running { node, .. } => {
                    orphans += 1;
                    // The original queue key is not needed until a requeue, which re-derives it.
                    let k = QueueKey::new(job.spec.priority, 0, 0);
                    (Live::Orphan { node, deadline }, k)
                }
                _ => continue,
            };
            core.tasks.insert(id, LiveTask { attempt: rec.attempt, key, live, enqueued_at: Instant::now() });
        }
        if orphans > 0 {
            core.orphan_deadline = Some(deadline);
        }
        info!(
            epoch,
            jobs = core.jobs.len(),
            queued = core.queue.len(),
            delayed = core.delayed.len(),
            awaiting_agents = orphans,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "scheduler state loaded"
        );
        Ok(core)
    }

    pub fn apply(&mut self, c: Command, tx: &mut Txn) {
        match c {
            Command::Submit { job, spec, reply } => {
                let r = self.submit(tx, job, spec);
                match r {
                    Ok(id) => {
                        let view = self.view(&id);
                        tx.after(move || {
                            let _ = reply.send(view);
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Cancel { job, reason, reply } => {
                self.cancel(tx, &job, &reason);
                let view = self.view(&job);
                tx.after(move || {
                    let _ = reply.send(view);
                });
            }
            Command::GetJob { job, reply } => {
                let view = self.view(&job);
                let _ = reply.send(view);
            }
            Command::Watch { job, reply } => {
                let r = match self.jobs.get(&job) {
                    Some(j) => Ok(j.watch.subscribe()),
                    None => self.view(&job).map(|v| watch::channel(v).1),
                };
                let _ = reply.send(r);
            }
            Command::Register { reg, outbound, reply } => {
                let conn = self.register(tx, reg, outbound);
                tx.after(move || {
                    let _ = reply.send(Ok(conn));
                });
            }
            Command::Agent { node, conn, msg } => self.on_agent(tx, &node, conn, msg),
            Command::Disconnected { node, conn, reason } => {
                if self.nodes.nodes.get(&node).is_some_and(|n| n.conn == conn && n.is_connected()) {
                    self.node_lost(tx, &node, &format!("stream closed: {reason}"));
                }
            }
            Command::Drain { node, drain, reply } => {
                let r = match self.nodes.nodes.get_mut(&node) {
                    Some(n) => {
                        n.draining = drain;
                        let msg = pb::CoordinatorMessage { kind: Some(pb::coordinator_message::Kind::Drain(pb::Drain { draining: drain })) };
                        tx.messages.push((node.clone(), msg));
                        info!(node = %node, drain, "drain state changed");
                        Ok(n.view())
                    }
                    None => Err(DockyardError::not_found(format!("node {node}"))),
                };
                let _ = reply.send(r);
            }
            Command::ListNodes { reply } => {
                let _ = reply.send(Ok(self.nodes.nodes.values().map(NodeRt::view).collect()));
            }
            Command::QueueStats { reply } => {
                let _ = reply.send(Ok(self.queue_stats()));
            }
        }
    }

    fn view(&self, job: &JobId) -> Result<pb::Job, DockyardError> {
        if let Some(j) = self.jobs.get(job) {
            return Ok(job_view(job, &j.spec, &j.status));
        }
        let spec = self.store.spec(job)?.ok_or_else(|| DockyardError::not_found(format!("job {job}")))?;
        let status = self.store.status(job)?.ok_or_else(|| DockyardError::not_found(format!("job {job}")))?;
        Ok(job_view(job, &spec, &status))
    }

    fn submit(&mut self, tx: &mut Txn, id: JobId, spec: JobSpec) -> Result<JobId, DockyardError> {
        if self.jobs.contains_key(&id) || self.store.spec(&id)?.is_some() {
            return Err(DockyardError::FailedPrecondition(format!("job {id} already exists")));
        }
        let n = spec.task_count();
        if n == 0 {
            return Err(DockyardError::invalid("ligands", "the job has no work: the library is empty"));
        }
        let class = class_of(&spec);
        let status = JobStatus {
            state: JobState::Queued,
            tasks: TaskCounts { total: n, queued: n, ..TaskCounts::default() },
            ligands_total: spec.ligands.len() as u32,
            ligands_docked: 0,
            ligands_failed: 0,
            best_score: None,
            error: None,
            finished_at_ms: 0,
            unschedulable_reason: self.nodes.unschedulable_reason(&class),
            cpu_seconds: 0.0,
        };
        tx.put(key(P_SPEC, id.as_str().as_bytes()), encode(&spec));
        let now = Instant::now();
        for index in 0..n {
            let task = TaskId::new(id.clone(), index);
            let vtime = self.queue.assign_vtime(spec.priority, &spec.org);
            self.seq += 1;
            let qk = QueueKey::new(spec.priority, vtime, self.seq);
            let tk = task.to_key();
            let rec = TaskRecord { attempt: 1, state: TaskState::Queued { key: qk.as_bytes().to_vec(), not_before_ms: 0 }, last_error: None };
            tx.put(key(P_TASK, &tk), encode(&rec));
            tx.put(key(P_QUEUE, qk.as_bytes()), tk);
            self.queue.push(class, qk, task.clone());
            self.tasks.insert(task, LiveTask { attempt: 1, key: qk, live: Live::Queued, enqueued_at: now });
        }
        info!(job = %id, org = %spec.org, engine = spec.engine.name(), tasks = n, ligands = spec.ligands.len(), priority = spec.priority, "job accepted");
        let view = job_view(&id, &spec, &status);
        let (watch, _) = watch::channel(view);
        self.jobs.insert(id.clone(), ActiveJob { spec: Arc::new(spec), status, class, watch });
        tx.dirty_jobs.insert(id.clone());
        Ok(id)
    }

    fn cancel(&mut self, tx: &mut Txn, id: &JobId, reason: &str) {
        let Some(job) = self.jobs.get(id) else { return };
        let total = job.status.tasks.total;
        let class = job.class;
        let reason = if reason.is_empty() { "cancelled by user".to_string() } else { reason.to_string() };
        let mut cancelled = 0u32;
        let mut was_queued = 0u32;
        let mut was_running = 0u32;
        for index in 0..total {
            let tid = TaskId::new(id.clone(), index);
            let Some(t) = self.tasks.remove(&tid) else { continue };
            match &t.live {
                Live::Queued => {
                    self.queue.remove(&class, &t.key);
                    tx.del(key(P_QUEUE, t.key.as_bytes()));
                    was_queued += 1;
                }
                Live::Delayed { until_ms } => {
                    self.delayed.remove(&(*until_ms, t.key.seq()));
                    tx.del(key(P_QUEUE, t.key.as_bytes()));
                    was_queued += 1;
                }
                Live::Running { node } => {
                    if let Some(n) = self.nodes.nodes.get_mut(node) {
                        if let Some(slot) = n.running.get_mut(&tid) {
                            slot.cancelled = true;
                        }
                    }
                    let msg = pb::CoordinatorMessage {
                        kind: Some(pb::coordinator_message::Kind::Cancel(pb::Cancel { task_id: tid.to_string(), attempt: t.attempt, reason: reason.clone() })),
                    };
                    tx.messages.push((node.clone(), msg));
                    was_running += 1;
                }
                Live::Orphan { .. } => was_running += 1,
            }
            let rec = TaskRecord { attempt: t.attempt, state: TaskState::Cancelled, last_error: Some(reason.clone()) };
            tx.put(key(P_TASK, &tid.to_key()), encode(&rec));
            cancelled += 1;
        }
        if let Some(job) = self.jobs.get_mut(id) {
            let c = &mut job.status.tasks;
            c.queued = c.queued.saturating_sub(was_queued);
            c.running = c.running.saturating_sub(was_running);
            c.cancelled += cancelled;
            job.status.error.get_or_insert(reason.clone());
            info!(job = %id, cancelled, reason = %reason, "job cancelled");
        }
        tx.dirty_jobs.insert(id.clone());
        self.maybe_finish(id);
    }

    fn register(&mut self, tx: &mut Txn, reg: super::Registration, outbound: super::Outbound) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        let node_id = reg.node.clone();
        let now = now_ms();
        // A reconnect replaces the old stream; tasks it no longer reports are lost.
        let previous = self.nodes.nodes.remove(&node_id);
        let draining = previous.as_ref().is_some_and(|p| p.draining);
        let mut node = NodeRt::new(reg.clone(), conn, outbound, now);
        node.draining = draining;
        let registered = pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Registered(pb::Registered {
                epoch: self.epoch,
                heartbeat_interval_ms: self.cfg.heartbeat_interval.as_millis() as u32,
                lease_ms: self.cfg.lease.as_millis() as u32,
                coordinator_id: self.cfg.coordinator_id.clone(),
            })),
        };
        tx.messages.push((node_id.clone(), registered));
        if draining {
            tx.messages.push((node_id.clone(), pb::CoordinatorMessage { kind: Some(pb::coordinator_message::Kind::Drain(pb::Drain { draining: true })) }));
        }
        let mut kept = 0;
        for (tid, attempt) in &reg.running {
            let ours = self.tasks.get(tid).is_some_and(|t| {
                t.attempt == *attempt
                    && match &t.live {
                        Live::Running { node } | Live::Orphan { node, .. } => *node == node_id,
                        _ => false,
                    }
            });
            let class = self.jobs.get(&tid.job).map(|j| j.class);
            if let (true, Some(class)) = (ours, class) {
                let was_orphan = self.tasks.get(tid).is_some_and(|t| matches!(t.live, Live::Orphan { .. }));
                if let Some(t) = self.tasks.get_mut(tid) {
                    t.live = Live::Running { node: node_id.clone() };
                }
                node.take(tid.clone(), *attempt, &class);
                kept += 1;
                if was_orphan {
                    debug!(task = %tid, "running task reclaimed after restart");
                }
            } else {
                let msg = pb::CoordinatorMessage {
                    kind: Some(pb::coordinator_message::Kind::Cancel(pb::Cancel {
                        task_id: tid.to_string(),
                        attempt: *attempt,
                        reason: "this attempt is no longer assigned to this node".into(),
                    })),
                };
                tx.messages.push((node_id.clone(), msg));
            }
        }
        if let Some(prev) = previous {
            for tid in prev.running.keys() {
                if node.running.contains_key(tid) {
                    continue;
                }
                if self.tasks.get(tid).is_some_and(|t| matches!(&t.live, Live::Running { node } if *node == node_id)) {
                    self.requeue_or_fail(tx, tid, &format!("node {node_id} reconnected without this task"));
                }
            }
        }
        info!(node = %node_id, conn, slots = reg.slots, memory_mb = reg.memory_bytes / 1_000_000, engines = ?reg.engines.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), reclaimed = kept, "agent registered");
        self.nodes.nodes.insert(node_id, node);
        conn
    }

    fn on_agent(&mut self, tx: &mut Txn, node_id: &NodeId, conn: u64, msg: pb::agent_message::Kind) {
        let Some(node) = self.nodes.nodes.get_mut(node_id) else { return };
        if node.conn != conn || !node.is_connected() {
            return;
        }
        node.last_seen = Instant::now();
        node.last_seen_ms = now_ms();
        match msg {
            pb::agent_message::Kind::Heartbeat(_) | pb::agent_message::Kind::Progress(_) => {}
            pb::agent_message::Kind::Register(_) => {
                warn!(node = %node_id, "second Register on one stream ignored");
            }
            pb::agent_message::Kind::GoingAway(g) => {
                node.draining = true;
                info!(node = %node_id, reason = %g.reason, "agent going away; no new tasks for it");
            }
            pb::agent_message::Kind::Results(r) => {
                for res in r.results {
                    self.on_result(tx, node_id, res);
                }
            }
        }
    }

    fn on_result(&mut self, tx: &mut Txn, node_id: &NodeId, res: pb::TaskResult) {
        let Ok(tid) = TaskId::parse(&res.task_id) else {
            warn!(node = %node_id, task = %res.task_id, "result for a malformed task id dropped");
            return;
        };
        // The agent is done with this attempt whatever happens to the result.
        if let Some(n) = self.nodes.nodes.get_mut(node_id) {
            if n.running.get(&tid).is_some_and(|s| s.attempt == res.attempt) {
                n.release(&tid);
            }
        }
        let current = self.tasks.get(&tid).is_some_and(|t| t.attempt == res.attempt && matches!(&t.live, Live::Running { node } if node == node_id));
        if !current {
            self.stats.duplicates += 1;
            debug!(task = %tid, attempt = res.attempt, node = %node_id, "late or duplicate result dropped");
            return;
        }
        let span = info_span!("task_result", task = %tid, attempt = res.attempt, node = %node_id);
        let _g = span.enter();
        match res.outcome {
            Some(pb::task_result::Outcome::Ok(ok)) => self.commit_success(tx, &tid, res.attempt, ok, res.cpu_seconds),
            Some(pb::task_result::Outcome::Failed(f)) => {
                let reason = if f.reason.is_empty() { "engine failed without a reason".to_string() } else { f.reason };
                if f.retryable {
                    self.requeue_or_fail(tx, &tid, &reason);
                } else {
                    self.fail_task(tx, &tid, &format!("permanent: {reason}"));
                }
            }
            None => self.requeue_or_fail(tx, &tid, "agent sent a result without an outcome"),
        }
    }

    fn commit_success(&mut self, tx: &mut Txn, tid: &TaskId, attempt: Attempt, ok: pb::TaskSuccess, cpu: f64) {
        let Some(job) = self.jobs.get_mut(&tid.job) else { return };
        let range = job.spec.task_ligands(tid.index);
        for lig in ok.ligands {
            let idx = lig.index as usize;
            if !range.contains(&idx) {
                warn!(task = %tid, index = lig.index, "agent reported a ligand outside the task; ignored");
                continue;
            }
            let name = job.spec.ligands.get(idx).map(|l| l.name.clone()).unwrap_or(lig.name);
            if lig.error.is_empty() && lig.best_score.is_finite() {
                let rec = LigandResultRecord {
                    ligand: name,
                    index: lig.index,
                    task: tid.to_string(),
                    score: lig.best_score,
                    poses: lig
                        .poses
                        .iter()
                        .map(|p| dockyard_common::molecule::Pose { rank: p.rank, affinity: p.affinity, rmsd_lb: p.rmsd_lb, rmsd_ub: p.rmsd_ub })
                        .collect(),
                    pose_key: lig.pose_key,
                    log_key: lig.log_key,
                };
                tx.put(store::result_key(&tid.job, lig.best_score, lig.index), encode(&rec));
                job.status.ligands_docked += 1;
                job.status.best_score = Some(job.status.best_score.map_or(lig.best_score, |b| b.min(lig.best_score)));
            } else {
                let mut k = key(P_LIGERR, tid.job.as_str().as_bytes());
                k.extend_from_slice(&lig.index.to_be_bytes());
                let why = if lig.error.is_empty() { "no finite score".to_string() } else { lig.error };
                tx.put(k, encode(&(name, why)));
                job.status.ligands_failed += 1;
            }
        }
        job.status.cpu_seconds += cpu.max(0.0);
        job.status.tasks.running = job.status.tasks.running.saturating_sub(1);
        job.status.tasks.succeeded += 1;
        self.tasks.remove(tid);
        tx.put(key(P_TASK, &tid.to_key()), encode(&TaskRecord { attempt, state: TaskState::Succeeded, last_error: None }));
        tx.dirty_jobs.insert(tid.job.clone());
        self.stats.committed += 1;
        let id = tid.job.clone();
        self.maybe_finish(&id);
    }

    fn fail_task(&mut self, tx: &mut Txn, tid: &TaskId, reason: &str) {
        let Some(t) = self.tasks.remove(tid) else { return };
        warn!(task = %tid, attempt = t.attempt, reason, "task failed");
        tx.put(key(P_TASK, &tid.to_key()), encode(&TaskRecord { attempt: t.attempt, state: TaskState::Failed { reason: reason.to_string() }, last_error: Some(reason.to_string()) }));
        if let Some(job) = self.jobs.get_mut(&tid.job) {
            let c = &mut job.status.tasks;
            match t.live {
                Live::Queued | Live::Delayed { .. } => c.queued = c.queued.saturating_sub(1),
                _ => c.running = c.running.saturating_sub(1),
            }
            c.failed += 1;
            job.status.error.get_or_insert_with(|| format!("task {tid}: {reason}"));
        }
        tx.dirty_jobs.insert(tid.job.clone());
        let id = tid.job.clone();
        self.maybe_finish(&id);
    }

    /// Puts a running task back in the queue as attempt+1 after a backoff, or fails it once
    /// it has used its attempts.
    fn requeue_or_fail(&mut self, tx: &mut Txn, tid: &TaskId, reason: &str) {
        let Some(job) = self.jobs.get(&tid.job) else { return };
        let max = job.spec.max_attempts;
        let Some(t) = self.tasks.get(tid) else { return };
        if t.attempt >= max {
            let reason = format!("gave up after {} attempts; last: {reason}", t.attempt);
            self.fail_task(tx, tid, &reason);
            return;
        }
        let attempt = t.attempt + 1;
        let priority = job.spec.priority;
        let org = job.spec.org.clone();
        // Keep the task's place in line; only a reloaded orphan lacks a real key.
        let qk = if t.key.seq() == 0 {
            let v = self.queue.assign_vtime(priority, &org);
            self.seq += 1;
            QueueKey::new(priority, v, self.seq)
        } else {
            t.key
        };
        let delay = self.cfg.backoff.delay(attempt);
        let until_ms = now_ms() + delay.as_millis() as i64;
        if let Some(t) = self.tasks.get_mut(tid) {
            t.attempt = attempt;
            t.key = qk;
            t.live = Live::Delayed { until_ms };
            t.enqueued_at = Instant::now() + delay;
        }
        self.delayed.insert((until_ms, qk.seq()), tid.clone());
        tx.put(key(P_TASK, &tid.to_key()), encode(&TaskRecord { attempt, state: TaskState::Queued { key: qk.as_bytes().to_vec(), not_before_ms: until_ms }, last_error: Some(reason.to_string()) }));
        tx.put(key(P_QUEUE, qk.as_bytes()), tid.to_key());
        if let Some(job) = self.jobs.get_mut(&tid.job) {
            job.status.tasks.running = job.status.tasks.running.saturating_sub(1);
            job.status.tasks.queued += 1;
        }
        tx.dirty_jobs.insert(tid.job.clone());
        self.stats.requeued += 1;
        info!(task = %tid, attempt, delay_ms = delay.as_millis() as u64, reason, "task requeued");
    }

    fn node_lost(&mut self, tx: &mut Txn, node_id: &NodeId, reason: &str) {
        let Some(node) = self.nodes.nodes.get_mut(node_id) else { return };
        node.outbound = None;
        let running: Vec<TaskId> = node.running.keys().cloned().collect();
        for tid in &running {
            node.release(tid);
        }
        warn!(node = %node_id, reason, tasks = running.len(), "agent lost; requeueing its tasks");
        for tid in running {
            if self.tasks.get(&tid).is_some_and(|t| matches!(&t.live, Live::Running { node } if node == node_id)) {
                self.requeue_or_fail(tx, &tid, &format!("node {node_id} lost: {reason}"));
            }
        }
    }

    pub fn apply_pending_evictions(&mut self, tx: &mut Txn) {
        for (node, conn, reason) in std::mem::take(&mut self.pending_evictions) {
            if self.nodes.nodes.get(&node).is_some_and(|n| n.conn == conn && n.is_connected()) {
                self.node_lost(tx, &node, &reason);
            }
        }
    }

    pub fn tick(&mut self, tx: &mut Txn) {
        let now = Instant::now();
        let lease = self.cfg.lease;
        let expired: Vec<NodeId> = self.nodes.connected().filter(|n| now.duration_since(n.last_seen) > lease).map(|n| n.reg.node.clone()).collect();
        for n in expired {
            self.node_lost(tx, &n, &format!("lease expired: no message for {} ms", lease.as_millis()));
        }
        let now_ms = now_ms();
        while let Some(((until, seq), tid)) = self.delayed.first_key_value().map(|(k, v)| (*k, v.clone())) {
            if until > now_ms {
                break;
            }
            self.delayed.remove(&(until, seq));
            let class = self.jobs.get(&tid.job).map(|j| j.class);
            if let (Some(t), Some(class)) = (self.tasks.get_mut(&tid), class) {
                t.live = Live::Queued;
                self.queue.push(class, t.key, tid.clone());
            }
        }
        if self.orphan_deadline.is_some_and(|d| d <= now) {
            self.orphan_deadline = None;
            self.requeue_orphans(tx, now);
        }
        self.refresh_unschedulable(tx);
    }

    fn requeue_orphans(&mut self, tx: &mut Txn, now: Instant) {
        let orphans: Vec<TaskId> = self.tasks.iter().filter(|(_, t)| matches!(t.live, Live::Orphan { deadline, .. } if deadline <= now)).map(|(id, _)| id.clone()).collect();
        for tid in orphans {
            self.requeue_or_fail(tx, &tid, "its agent did not report it after the coordinator restarted");
        }
    }

    fn refresh_unschedulable(&mut self, tx: &mut Txn) {
        let mut reasons: HashMap<TaskClass, Option<String>> = HashMap::new();
        for (id, job) in self.jobs.iter_mut() {
            if job.status.tasks.queued == 0 {
                if job.status.unschedulable_reason.take().is_some() {
                    tx.dirty_jobs.insert(id.clone());
                }
                continue;
            }
            let r = reasons.entry(job.class).or_insert_with(|| self.nodes.unschedulable_reason(&job.class)).clone();
            if r != job.status.unschedulable_reason {
                if let Some(why) = &r {
                    warn!(job = %id, reason = %why, "job is unschedulable");
                }
                job.status.unschedulable_reason = r;
                tx.dirty_jobs.insert(id.clone());
            }
        }
    }

    /// Hands queued tasks to nodes with free capacity, one per node per round so a small
    /// job spreads over the cluster; never more than a node's free slots (credit).
    pub fn dispatch(&mut self, tx: &mut Txn) {
        if self.queue.is_empty() {
            return;
        }
        let candidates: Vec<NodeId> = self.nodes.connected().filter(|n| !n.draining && n.free_slots() > 0).map(|n| n.reg.node.clone()).collect();
        let mut active = candidates;
        let started_ms = now_ms();
        while !active.is_empty() && !self.queue.is_empty() {
            let mut still = Vec::with_capacity(active.len());
            for nid in active {
                let Some(node) = self.nodes.nodes.get_mut(&nid) else { continue };
                let Some((class, qk, tid)) = self.queue.peek_best(|c| node.fits_now(c)) else { continue };
                self.queue.pop(&class, &qk);
                let Some(t) = self.tasks.get_mut(&tid) else { continue };
                let gpus = node.take(tid.clone(), t.attempt, &class);
                t.live = Live::Running { node: nid.clone() };
                let attempt = t.attempt;
                self.stats.latency.push(t.enqueued_at.elapsed().as_secs_f64() * 1000.0);
                self.stats.dispatched += 1;
                tx.del(key(P_QUEUE, qk.as_bytes()));
                tx.put(key(P_TASK, &tid.to_key()), encode(&TaskRecord { attempt, state: TaskState::Running { node: nid.clone(), epoch: self.epoch, started_ms }, last_error: None }));
                if let Some(job) = self.jobs.get_mut(&tid.job) {
                    job.status.tasks.queued = job.status.tasks.queued.saturating_sub(1);
                    job.status.tasks.running += 1;
                    if job.status.state == JobState::Queued {
                        job.status.state = JobState::Running;
                    }
                    let a = build_assignment(&job.spec, &tid, attempt, self.epoch, &class, gpus);
                    tx.assigns.entry(nid.clone()).or_default().push(a);
                    tx.dirty_jobs.insert(tid.job.clone());
                }
                if self.nodes.nodes.get(&nid).is_some_and(|n| n.free_slots() > 0) {
                    still.push(nid);
                }
            }
            active = still;
        }
    }

    fn maybe_finish(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else { return };
        let c = &job.status.tasks;
        if c.finished() < c.total || job.status.state.is_final() {
            return;
        }
        job.status.state = if c.cancelled > 0 {
            JobState::Cancelled
        } else if c.failed == c.total {
            JobState::Failed
        } else if c.failed > 0 || job.status.ligands_failed > 0 {
            JobState::Partial
        } else {
            JobState::Succeeded
        };
        job.status.finished_at_ms = now_ms();
        job.status.unschedulable_reason = None;
        info!(job = %id, state = ?job.status.state, docked = job.status.ligands_docked, failed_ligands = job.status.ligands_failed, best = ?job.status.best_score, "job finished");
        self.finished_jobs.push(id.clone());
    }

    /// Writes the status of every job touched in this batch.
    pub fn finalize(&mut self, tx: &mut Txn) {
        let dirty: Vec<JobId> = tx.dirty_jobs.iter().cloned().collect();
        for id in dirty {
            if let Some(job) = self.jobs.get(&id) {
                tx.put(key(P_JOB, id.as_str().as_bytes()), encode(&job.status));
            }
        }
    }

    /// Side effects, once the batch is durable.
    pub fn effects(&mut self, tx: Txn) {
        let Txn { after, messages, assigns, dirty_jobs, .. } = tx;
        for f in after {
            f();
        }
        for (nid, msg) in messages {
            if let Some(n) = self.nodes.nodes.get(&nid) {
                if n.is_connected() && !n.send(msg) {
                    self.pending_evictions.push((nid.clone(), n.conn, "outbound stream full or closed".into()));
                }
            }
        }
        for (nid, tasks) in assigns {
            if let Some(n) = self.nodes.nodes.get(&nid) {
                let count = tasks.len();
                let msg = pb::CoordinatorMessage { kind: Some(pb::coordinator_message::Kind::Assign(pb::Assign { tasks })) };
                if !n.send(msg) {
                    self.pending_evictions.push((nid.clone(), n.conn, "outbound stream full or closed".into()));
                } else {
                    debug!(node = %nid, count, "assigned");
                }
            }
        }
        for id in dirty_jobs {
            if let Some(job) = self.jobs.get(&id) {
                job.watch.send_replace(job_view(&id, &job.spec, &job.status));
            }
        }
        for id in std::mem::take(&mut self.finished_jobs) {
            // Dropping the sender ends every WatchJob stream after its final snapshot.
            self.jobs.remove(&id);
        }
    }

    fn queue_stats(&self) -> pb::QueueStatsResponse {
        let mut by_priority: BTreeMap<i32, u64> = BTreeMap::new();
        let mut by_org: BTreeMap<String, u64> = BTreeMap::new();
        for (k, t) in self.queue.keys() {
            *by_priority.entry(k.priority()).or_default() += 1;
            if let Some(j) = self.jobs.get(&t.job) {
                *by_org.entry(j.spec.org.to_string()).or_default() += 1;
            }
        }
        let running = self.tasks.values().filter(|t| matches!(t.live, Live::Running { .. } | Live::Orphan { .. })).count() as u64;
        pb::QueueStatsResponse {
            queued: self.queue.len() as u64,
            delayed: self.delayed.len() as u64,
            running,
            by_priority: by_priority.into_iter().rev().map(|(priority, queued)| pb::PriorityDepth { priority, queued }).collect(),
            by_org: by_org.into_iter().map(|(org, queued)| pb::OrgDepth { org, queued }).collect(),
            dispatched_total: self.stats.dispatched,
            results_committed_total: self.stats.committed,
            duplicate_results_dropped: self.stats.duplicates,
            requeued_total: self.stats.requeued,
            epoch: self.epoch,
            dispatch_latency_p50_ms: self.stats.latency.percentile(50.0),
            dispatch_latency_p99_ms: self.stats.latency.percentile(99.0),
            state_bytes_on_disk: self.store.size_on_disk(),
        }
    }
}

fn build_assignment(spec: &JobSpec, tid: &TaskId, attempt: Attempt, epoch: Epoch, class: &TaskClass, gpus: Vec<u32>) -> pb::TaskAssignment {
    let ligands = spec
        .ligands
        .get(spec.task_ligands(tid.index))
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .map(|(i, l)| pb::LigandInput {
            index: (spec.task_ligands(tid.index).start + i) as u32,
            name: l.name.clone(),
            artifact: Some(pb::ArtifactRef { key: l.key.clone(), name: l.name.clone(), size: l.size }),
        })
        .collect();
    pb::TaskAssignment {
        task_id: tid.to_string(),
        attempt,
        epoch,
        job_id: tid.job.to_string(),
        org: spec.org.to_string(),
        engine: spec.engine.name().to_string(),
        r#box: Some(pb::DockingBox {
            center: Some(pb::Vec3 { x: spec.dock_box.center[0], y: spec.dock_box.center[1], z: spec.dock_box.center[2] }),
            size: Some(pb::Vec3 { x: spec.dock_box.size[0], y: spec.dock_box.size[1], z: spec.dock_box.size[2] }),
        }),
        params: Some(pb::EngineParams {
            exhaustiveness: spec.params.exhaustiveness,
            num_modes: spec.params.num_modes,
            seed: spec.params.seed,
            energy_range: spec.params.energy_range,
            sleep_ms: spec.params.sleep_ms,
        }),
        receptor: spec.receptor.as_ref().map(|r| pb::ArtifactRef { key: r.key.clone(), name: r.name.clone(), size: r.size }),
        ligands,
        output_prefix: format!("orgs/{}/jobs/{}/tasks/{}/a{}/", spec.org, tid.job, tid.index, attempt),
        cpu_slots: 1,
        memory_bytes: class.memory_bytes,
        gpu_indices: gpus,
        timeout_s: spec.timeout_s,
    }
}
