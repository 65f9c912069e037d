//! Rebuilding the scheduler from sled at start-up.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tracing::{info, warn};

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{NodeId, TaskId};
use dockyard_common::queue_key::QueueKey;
use dockyard_common::time::now_ms;

use super::core::{ActiveJob, Core, Live, LiveTask, Stats};
use super::nodes::NodeTable;
use super::queue::{Entry, ReadyQueue};
use super::replication::Replication;
use super::SchedulerConfig;
use crate::model::TaskState;
use crate::store::Store;

impl Core {
    pub async fn load(store: Store, cfg: SchedulerConfig, replication: &dyn Replication) -> Result<Self, DockyardError> {
        let epoch = replication.epoch(&store).await?;
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
            members: Default::default(),
            members_known: false,
            serves_cache: replication.serves_local_cache(),
            replicated_at: replication.position(),
            funnels_due: Default::default(),
            funnels_retry: Default::default(),
            funnel_feed: Default::default(),
        };
        let started = Instant::now();
        for n in store.drained_nodes()? {
            if let Ok(id) = dockyard_common::ids::NodeId::parse(&n) {
                core.nodes.drained.insert(id);
            }
        }
        for id in store.job_ids(None, usize::MAX)? {
            let Some(status) = store.status(&id)? else { continue };
            if status.state.is_final() {
                continue;
            }
            let Some(spec) = store.spec(&id)? else {
                warn!(job = %id, "job status without spec; skipping");
                continue;
            };
            let total = u64::from(status.tasks.total);
            core.seq = core.seq.max(status.seq0 + total.max(u64::from(spec.reserved_tasks())));
            core.queue.observe_loaded(spec.priority, status.vtime0 + total, &spec.org);
            let job = ActiveJob::new(spec, status);
            if job.has_fresh() {
                core.queue.push(job.class, job.fresh_key(job.status.cursor), Entry::Job(id.clone()));
            }
            core.jobs.insert(id, job);
        }
        let now = now_ms();
        let mut orphans = 0usize;
        for item in store.tasks() {
            let (id, rec) = item?;
            let Some(job) = core.jobs.get_mut(&id.job) else { continue };
            let (live, key) = match rec.state {
                TaskState::Queued { key, not_before_ms } => {
                    let Some(k) = QueueKey::from_bytes(&key) else { continue };
                    if not_before_ms > now {
                        core.delayed.insert((not_before_ms, k.seq()), id.clone());
                        (Live::Delayed { until_ms: not_before_ms }, k)
                    } else {
                        core.queue.push(job.class, k, Entry::Task(id.clone()));
                        (Live::Queued, k)
                    }
                }
                TaskState::Running { node, .. } => {
                    orphans += 1;
                    (Live::Orphan { node: Some(node) }, job.fresh_key(id.index))
                }
                TaskState::Unclaimed => {
                    orphans += 1;
                    (Live::Orphan { node: None }, job.fresh_key(id.index))
                }
                _ => continue,
            };
            job.live.insert(id.index);
            core.tasks.insert(
                id,
                LiveTask {
                    attempt: rec.attempt,
                    key,
                    live,
                    enqueued_at: Instant::now(),
                },
            );
        }
        // First attempts in flight when the coordinator stopped: like a Running record.
        for (id, job) in core.jobs.iter_mut() {
            let flying: Vec<(NodeId, u32)> = job
                .status
                .flight
                .iter()
                .flat_map(|(n, set)| set.iter().map(move |i| (n.clone(), *i)))
                .collect();
            for (node, index) in flying {
                // A record, when there is one, is the later word.
                if !job.live.insert(index) {
                    continue;
                }
                orphans += 1;
                core.tasks.insert(
                    TaskId::new(id.clone(), index),
                    LiveTask {
                        attempt: 1,
                        key: job.fresh_key(index),
                        live: Live::Orphan { node: Some(node) },
                        enqueued_at: Instant::now(),
                    },
                );
            }
        }
        core.resume_funnels()?;
        if orphans > 0 {
            core.orphan_deadline = Some(Instant::now() + core.cfg.reconcile_grace);
        }
        info!(
            epoch,
            jobs = core.jobs.len(),
            queued = core.jobs.values().map(|j| u64::from(j.status.tasks.queued)).sum::<u64>(),
            delayed = core.delayed.len(),
            awaiting_agents = orphans,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "scheduler state loaded"
        );
        Ok(core)
    }
}
