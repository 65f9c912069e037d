//! Scheduler state. The rules that change it live beside this file, one concern each
//! (`load`, `jobs`, `agents`, `results`, `dispatch`); all run only on the actor task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{Attempt, Epoch, JobId, NodeId, OrgId, TaskId};
use dockyard_common::queue_key::QueueKey;
use dockyard_common::spec::{EngineKind, JobSpec};
use dockyard_proto::v1 as pb;

use super::latency::LatencyRing;
use super::nodes::{NodeRt, NodeTable};
use super::queue::{ReadyQueue, TaskClass};
use super::txn::{Staged, Subscription, Txn};
use super::{Command, SchedulerConfig};
use crate::api::funnel_view;
use crate::cluster::outcome::JobChange;
use crate::model::{JobState, JobStatus};
use crate::store::Store;
use dockyard_common::cluster::{JobIndexState, NodeRecord};

pub(super) struct ActiveJob {
    pub spec: Arc<JobSpec>,
    pub status: JobStatus,
    pub class: TaskClass,
    /// The job's view for WatchJob streams. Built only while someone watches: with nobody
    /// subscribed a change just marks it stale (building it for every job in every batch was
    /// about 4% of the coordinator's CPU per single-task job), and a new subscriber gets it
    /// rebuilt first.
    /// Shared with the effects of batches not yet durable, which publish on it; the streams
    /// end when the last holder lets go (the batch the job finished in).
    pub watch: Arc<watch::Sender<pb::Job>>,
    pub view_stale: bool,
    /// Indices of this job's tasks that have a `LiveTask` (running, retrying, orphaned).
    pub live: BTreeSet<u32>,
    /// When the job was accepted (or loaded): the enqueue time of its fresh tasks.
    pub accepted_at: Instant,
    /// A funnel's job: the 0-based stage it is on (the last one created).
    pub stage: u32,
}

impl ActiveJob {
    pub fn new(spec: JobSpec, status: JobStatus) -> Self {
        let watch = Arc::new(watch::channel(pb::Job::default()).0);
        let class = class_of(&spec);
        ActiveJob {
            spec: Arc::new(spec),
            status,
            class,
            watch,
            view_stale: true,
            live: BTreeSet::new(),
            accepted_at: Instant::now(),
            stage: 0,
        }
    }

    /// Queue key of the job's task `index` while it has never been dispatched.
    pub fn fresh_key(&self, index: u32) -> QueueKey {
        QueueKey::new(
            self.spec.priority,
            self.status.vtime0 + u64::from(index),
            self.status.seq0 + u64::from(index),
        )
    }

    pub fn has_fresh(&self) -> bool {
        self.status.cursor < self.status.tasks.total
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Live {
    Queued,
    Delayed {
        until_ms: i64,
    },
    Running {
        node: NodeId,
    },
    /// Recorded as running before a restart; waiting for its agent to report it. `None`
    /// after a failover: any agent that reports the task running may claim it.
    Orphan {
        node: Option<NodeId>,
    },
}

pub(super) struct LiveTask {
    pub attempt: Attempt,
    pub key: QueueKey,
    pub live: Live,
    pub enqueued_at: Instant,
}

#[derive(Default)]
pub(super) struct Stats {
    pub dispatched: u64,
    pub committed: u64,
    pub duplicates: u64,
    pub requeued: u64,
    pub latency: LatencyRing,
}

pub struct Core {
    pub(super) store: Store,
    pub(super) epoch: Epoch,
    pub(super) cfg: SchedulerConfig,
    pub(super) jobs: HashMap<JobId, ActiveJob>,
    pub(super) tasks: HashMap<TaskId, LiveTask>,
    pub(super) queue: ReadyQueue,
    pub(super) delayed: BTreeMap<(i64, u64), TaskId>,
    pub(super) nodes: NodeTable,
    pub(super) seq: u64,
    pub(super) next_conn: u64,
    pub(super) pending_evictions: Vec<(NodeId, u64, String)>,
    /// Set at start-up while tasks recorded as running wait for their agents.
    pub(super) orphan_deadline: Option<Instant>,
    pub(super) finished_jobs: Vec<JobId>,
    pub(super) stats: Stats,
    /// Cluster mode: agents registered in etcd. After a takeover, once all of them are
    /// connected, no task can still be claimed and the grace period ends early.
    pub(super) members: HashMap<NodeId, NodeRecord>,
    pub(super) members_known: bool,
    /// From the replication port: etcd's revision after the last batch (cluster mode).
    pub(super) replicated_at: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// From the replication port: may submissions be served from the local result cache?
    pub(super) serves_cache: bool,
    /// Funnels whose current stage ended in this batch: their boundary is crossed in the next.
    pub(super) funnels_due: BTreeSet<JobId>,
    pub(super) funnels_retry: BTreeSet<JobId>,
    /// Per funnel and 0-based stage: its committed results waiting to be fed to the
    /// streaming stage after it.
    pub(super) funnel_feed: HashMap<(JobId, u32), Vec<crate::model::LigandResultRecord>>,
}

pub(super) fn class_of(spec: &JobSpec) -> TaskClass {
    TaskClass {
        engine: spec.engine,
        gpus: spec.gpus_per_task,
        cpus: spec.cpus_per_task.max(1),
        memory_bytes: spec.task_memory_bytes(),
        prep: spec.prep_tools(),
    }
}

impl Core {
    pub fn apply(&mut self, c: Command, tx: &mut Txn) {
        match c {
            Command::Submit { job, spec, skipped, reply } => match self.submit(tx, job, *spec, skipped) {
                Ok(id) => {
                    let view = self.view(&id);
                    tx.after(move || {
                        let _ = reply.send(view);
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Cancel { job, reason, reply } => {
                self.cancel(tx, &job, &reason);
                self.cancel_stage(tx, &job, &reason);
                let view = self.view(&job);
                tx.after(move || {
                    let _ = reply.send(view);
                });
            }
            Command::GetJob { job, reply } => {
                // Answered once this batch is durable: the view may include results applied
                // earlier in the batch, and a client must never see a job done (say) in a
                // state a crash before the write would take back.
                let view = self.view(&job);
                tx.after(move || {
                    let _ = reply.send(view);
                });
            }
            // Subscribed once this batch is durable, like GetJob: a rebuilt view may hold
            // changes applied earlier in the batch.
            Command::Watch { job, reply } => tx.watchers.push((job, reply)),
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
                let _ = reply.send(self.drain(tx, &node, drain));
            }
            Command::ListNodes { reply } => {
                let mut nodes: Vec<pb::Node> = self.nodes.nodes.values().map(NodeRt::view).collect();
                // Registered in etcd but with no stream to this leader (e.g. not yet back
                // after a failover): listed as lost, with what the node advertised.
                for (id, r) in &self.members {
                    if !self.nodes.nodes.contains_key(id) {
                        nodes.push(member_view(id, r));
                    }
                }
                let _ = reply.send(Ok(nodes));
            }
            Command::QueueStats { reply } => {
                let _ = reply.send(Ok(self.queue_stats()));
            }
            Command::OrgUsage { org, reply } => {
                let running = self.running_by_org().get(&org).copied().unwrap_or(0);
                let _ = reply.send(Ok((self.queued_of(&org), running)));
            }
            Command::NodeVanished { node } => {
                self.members.remove(&node);
                if self.nodes.nodes.get(&node).is_some_and(|n| n.is_connected()) {
                    self.node_lost(tx, &node, "its etcd membership lease expired");
                }
            }
            Command::NodeJoined { node, record } => {
                self.members.insert(node, record);
            }
            Command::Members { nodes } => {
                self.members = nodes.into_iter().collect();
                self.members_known = true;
            }
            Command::Snapshot { reply } => {
                // Runs with the batch's other effects, after its write: the tree then holds
                // exactly the commits up to this one, and nothing writes it until we return.
                let store = self.store.clone();
                let epoch = self.epoch;
                let replicated_at = self.replicated_at.clone();
                tx.barrier = true;
                tx.after(move || {
                    let started = std::time::Instant::now();
                    let snap = store.export_scheduler().and_then(|records| {
                        Ok(super::SchedulerSnapshot {
                            commit_position: store.commit_position()?,
                            etcd_revision: replicated_at.map(|r| r.load(std::sync::atomic::Ordering::Acquire)),
                            records,
                            epoch,
                            paused: started.elapsed(),
                        })
                    });
                    let _ = reply.send(snap);
                });
            }
        }
    }

    pub(super) fn view(&self, job: &JobId) -> Result<pb::Job, DockyardError> {
        if let Some(j) = self.jobs.get(job) {
            return Ok(funnel_view::view(&self.store, job, &j.spec, &j.status));
        }
        let spec = self
            .store
            .spec(job)?
            .ok_or_else(|| DockyardError::not_found(format!("job {job}")))?;
        let status = self
            .store
            .status(job)?
            .ok_or_else(|| DockyardError::not_found(format!("job {job}")))?;
        Ok(funnel_view::view(&self.store, job, &spec, &status))
    }

    /// Writes the status (counts and queue cursor) of every job touched in this batch.
    pub fn finalize(&mut self, tx: &mut Txn) {
        for id in &self.finished_jobs {
            let Some(job) = self.jobs.get(id) else { continue };
            let (state, reason) = if job.status.state == JobState::Cancelled {
                (JobIndexState::Cancelled, job.status.error.clone().unwrap_or_default())
            } else {
                (JobIndexState::Finished, String::new())
            };
            let change = JobChange {
                org: job.spec.org.clone(),
                state,
                reason,
                spec: None,
                skipped: Vec::new(),
                created_at_ms: job.spec.created_at_ms,
                spec_version: job.spec.version(),
            };
            tx.shared.job(id, change);
        }
        let dirty: Vec<JobId> = tx.dirty_jobs.iter().cloned().collect();
        for id in dirty {
            if let Some(job) = self.jobs.get(&id) {
                tx.batch.put_status(&id, &job.status);
            }
        }
    }

    /// Fixes what the batch's effects will show, as of the end of the batch: job views,
    /// watch subscriptions, the streams of jobs that finished, the connections sent to.
    /// Jobs that finished leave memory here, before the next batch, as they always did.
    pub fn stage(&mut self, tx: &mut Txn) {
        // A stage's change is its funnel's too.
        let roots: Vec<JobId> = tx
            .dirty_jobs
            .iter()
            .filter_map(|id| self.jobs.get(id).and_then(|j| j.spec.funnel_root().cloned()))
            .collect();
        let watched: BTreeSet<JobId> = tx.watchers.iter().map(|(id, _)| id.clone()).collect();
        let mut views = BTreeSet::new();
        for id in tx.dirty_jobs.iter().chain(roots.iter()) {
            if let Some(job) = self.jobs.get_mut(id) {
                if job.watch.receiver_count() > 0 || watched.contains(id) {
                    views.insert(id.clone());
                } else {
                    job.view_stale = true;
                }
            }
        }
        for id in &watched {
            if self.jobs.get(id).is_some_and(|j| j.view_stale) {
                views.insert(id.clone());
            }
        }
        for id in views {
            if let Some(job) = self.jobs.get_mut(&id) {
                let v = funnel_view::view(&self.store, &id, &job.spec, &job.status);
                job.view_stale = false;
                tx.staged.views.push((Arc::clone(&job.watch), v));
            }
        }
        for (id, reply) in std::mem::take(&mut tx.watchers) {
            let sub = match self.jobs.get(&id) {
                Some(job) => Subscription::Live(job.watch.subscribe()),
                None => Subscription::Done(Box::new(self.view(&id))),
            };
            tx.staged.subscriptions.push((reply, sub));
        }
        for id in std::mem::take(&mut self.finished_jobs) {
            if let Some(job) = self.jobs.remove(&id) {
                tx.staged.closing.push(job.watch);
            }
        }
        for nid in tx.messages.iter().map(|(n, _)| n).chain(tx.assigns.keys()) {
            if let Some(n) = self.nodes.nodes.get(nid) {
                tx.staged.conns.insert(nid.clone(), n.conn);
            }
        }
    }

    /// Side effects, once the batch is durable. They come from the batch (see `stage`):
    /// later batches may already be applied in memory.
    pub fn effects(&mut self, tx: Txn) {
        let Txn {
            after,
            messages,
            assigns,
            staged,
            ..
        } = tx;
        for f in after {
            f();
        }
        // The node as it was at the end of the batch, still on the same connection.
        let same_conn = |nodes: &super::nodes::NodeTable, nid: &NodeId| {
            nodes
                .nodes
                .get(nid)
                .filter(|n| staged.conns.get(nid) == Some(&n.conn))
                .map(|n| n.conn)
        };
        for (nid, msg) in messages {
            let Some(conn) = same_conn(&self.nodes, &nid) else { continue };
            if let Some(n) = self.nodes.nodes.get(&nid) {
                if n.is_connected() && !n.send(msg) {
                    self.pending_evictions
                        .push((nid.clone(), conn, "outbound stream full or closed".into()));
                }
            }
        }
        for (nid, tasks) in assigns {
            let Some(conn) = same_conn(&self.nodes, &nid) else { continue };
            if let Some(n) = self.nodes.nodes.get(&nid) {
                let msg = pb::CoordinatorMessage {
                    kind: Some(pb::coordinator_message::Kind::Assign(pb::Assign { tasks })),
                };
                if !n.send(msg) {
                    self.pending_evictions
                        .push((nid.clone(), conn, "outbound stream full or closed".into()));
                }
            }
        }
        let Staged {
            views,
            subscriptions,
            closing,
            ..
        } = staged;
        for (w, v) in views {
            w.send_replace(v);
        }
        for (reply, sub) in subscriptions {
            let r = match sub {
                Subscription::Live(rx) => Ok(rx),
                Subscription::Done(v) => v.map(|v| watch::channel(v).1),
            };
            let _ = reply.send(r);
        }
        // Dropping the senders ends every WatchJob stream after its final snapshot.
        drop(closing);
    }

    /// Tasks of `org` waiting to run (queued or waiting out a retry backoff).
    pub(super) fn queued_of(&self, org: &OrgId) -> u64 {
        self.jobs
            .values()
            .filter(|j| &j.spec.org == org)
            .map(|j| u64::from(j.status.tasks.queued))
            .sum()
    }

    /// Running tasks per organisation (orphans after a restart count: they hold slots).
    pub(super) fn running_by_org(&self) -> HashMap<OrgId, u64> {
        let mut out: HashMap<OrgId, u64> = HashMap::new();
        for (tid, t) in &self.tasks {
            if matches!(t.live, Live::Running { .. } | Live::Orphan { .. }) {
                if let Some(j) = self.jobs.get(&tid.job) {
                    *out.entry(j.spec.org.clone()).or_default() += 1;
                }
            }
        }
        out
    }

    fn queue_stats(&self) -> pb::QueueStatsResponse {
        let mut by_priority: BTreeMap<i32, u64> = BTreeMap::new();
        let mut by_org: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_class: BTreeMap<ClassKey, pb::ClassDepth> = BTreeMap::new();
        let mut queued = 0u64;
        for job in self.jobs.values() {
            let q = u64::from(job.status.tasks.queued);
            if q == 0 {
                continue;
            }
            queued += q;
            *by_priority.entry(job.spec.priority).or_default() += q;
            *by_org.entry(job.spec.org.to_string()).or_default() += q;
            class_depth(&mut by_class, &job.class).queued += q;
        }
        let mut running = 0u64;
        for (tid, t) in &self.tasks {
            if !matches!(t.live, Live::Running { .. } | Live::Orphan { .. }) {
                continue;
            }
            running += 1;
            if let Some(job) = self.jobs.get(&tid.job) {
                class_depth(&mut by_class, &job.class).running += 1;
            }
        }
        pb::QueueStatsResponse {
            queued,
            delayed: self.delayed.len() as u64,
            running,
            by_priority: by_priority
                .into_iter()
                .rev()
                .map(|(priority, queued)| pb::PriorityDepth { priority, queued })
                .collect(),
            by_org: by_org.into_iter().map(|(org, queued)| pb::OrgDepth { org, queued }).collect(),
            dispatched_total: self.stats.dispatched,
            results_committed_total: self.stats.committed,
            duplicate_results_dropped: self.stats.duplicates,
            requeued_total: self.stats.requeued,
            epoch: self.epoch,
            dispatch_latency_p50_ms: self.stats.latency.percentile(50.0),
            dispatch_latency_p99_ms: self.stats.latency.percentile(99.0),
            state_bytes_on_disk: self.store.size_on_disk(),
            by_class: by_class.into_values().collect(),
        }
    }
}

/// What a task needs from an agent, less the preparation tools (a pool's agents all have
/// the same): engine, GPUs, cores, memory.
type ClassKey = (EngineKind, u32, u32, u64);

fn class_depth<'a>(by_class: &'a mut BTreeMap<ClassKey, pb::ClassDepth>, c: &TaskClass) -> &'a mut pb::ClassDepth {
    by_class
        .entry((c.engine, c.gpus, c.cpus, c.memory_bytes))
        .or_insert_with(|| pb::ClassDepth {
            engine: c.engine.name().to_string(),
            gpus_per_task: c.gpus,
            cpus_per_task: c.cpus,
            memory_bytes_per_task: c.memory_bytes,
            queued: 0,
            running: 0,
        })
}

fn member_view(id: &NodeId, r: &NodeRecord) -> pb::Node {
    pb::Node {
        node_id: id.to_string(),
        state: pb::NodeState::Lost as i32,
        capacity: Some(pb::Capacity {
            cpu_slots: r.slots,
            memory_bytes: r.memory_bytes,
            gpus: Vec::new(),
        }),
        hostname: r.hostname.clone(),
        agent_version: r.agent_version.clone(),
        engines: r
            .engines
            .iter()
            .map(|e| {
                let (name, version) = e.split_once(' ').unwrap_or((e.as_str(), ""));
                pb::EngineInfo {
                    name: name.to_string(),
                    version: version.to_string(),
                    test_only: name == "sleep",
                }
            })
            .collect(),
        connected_at_ms: r.started_at_ms,
        ..Default::default()
    }
}
