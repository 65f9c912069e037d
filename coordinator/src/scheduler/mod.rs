//! The scheduler actor: owns queue, tasks and nodes; applies commands in batches with one
//! durable write per batch (group commit) before any reply or assignment goes out.

mod agents;
mod backoff;
mod cache;
mod core;
mod dispatch;
mod funnel;
mod funnel_feed;
mod gauges;
mod jobs;
mod latency;
mod load;
pub mod nodes;
pub mod queue;
mod reconcile;
mod record;
mod replication;
mod results;
#[cfg(test)]
mod stage_tests;
mod txn;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use dockyard_common::cluster::NodeRecord;
use dockyard_common::error::DockyardError;
use dockyard_common::ids::{JobId, NodeId, OrgId};
use dockyard_common::spec::JobSpec;
use dockyard_proto::v1 as pb;

pub use self::backoff::Backoff;
pub use self::core::Core;
pub use self::nodes::{GpuInfo, Outbound, Registration};
pub use self::record::record_outcome;
pub use self::replication::{Embedded, Replication};
use self::txn::Txn;
use crate::auth::QuotaTable;
use crate::fatal::Fatal;
use crate::metrics::CoordinatorMetrics;
use crate::model::SkippedRecord;
use crate::store::Store;

pub type Reply<T> = oneshot::Sender<Result<T, DockyardError>>;

/// Events that most often arrive in bursts are applied up to this many per group commit.
const MAX_BATCH: usize = 4096;
const TICK: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub heartbeat_interval: Duration,
    /// An agent silent for this long is declared lost and its tasks are requeued.
    pub lease: Duration,
    pub backoff: Backoff,
    /// After a restart, how long tasks recorded as running wait for their agent to report.
    pub reconcile_grace: Duration,
    pub coordinator_id: String,
    /// The artifact store URI, told to agents so they can use an s3:// store directly.
    pub artifacts_uri: String,
    /// Per-organisation limits (queued tasks at submission, running tasks at dispatch),
    /// shared with the admin API that sets them.
    pub quotas: QuotaTable,
    /// Prometheus handles; registered nowhere (but still cheap to update) by default.
    pub metrics: Arc<CoordinatorMetrics>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        // Timings as the coordinator declares them (config::CoordinatorSettings).
        let d = crate::config::CoordinatorSettings::default();
        SchedulerConfig {
            heartbeat_interval: d.heartbeat_interval(),
            lease: d.lease(),
            backoff: d.backoff(),
            reconcile_grace: d.reconcile_grace(),
            coordinator_id: "coordinator".into(),
            artifacts_uri: String::new(),
            quotas: QuotaTable::default(),
            metrics: Arc::default(),
        }
    }
}

pub enum Command {
    Submit {
        job: JobId,
        // Boxed: a spec is large and every other command is small.
        spec: Box<JobSpec>,
        /// Library records `skip_invalid` left out, for the report: written with the job.
        skipped: Vec<SkippedRecord>,
        reply: Reply<pb::Job>,
    },
    Cancel {
        job: JobId,
        reason: String,
        reply: Reply<pb::Job>,
    },
    GetJob {
        job: JobId,
        reply: Reply<pb::Job>,
    },
    Watch {
        job: JobId,
        reply: Reply<watch::Receiver<pb::Job>>,
    },
    Register {
        reg: Registration,
        outbound: Outbound,
        reply: Reply<u64>,
    },
    Agent {
        node: NodeId,
        conn: u64,
        msg: pb::agent_message::Kind,
    },
    Disconnected {
        node: NodeId,
        conn: u64,
        reason: String,
    },
    Drain {
        node: NodeId,
        drain: bool,
        reply: Reply<pb::Node>,
    },
    ListNodes {
        reply: Reply<Vec<pb::Node>>,
    },
    QueueStats {
        reply: Reply<pb::QueueStatsResponse>,
    },
    /// An organisation's (queued, running) task counts, for GetQuota.
    OrgUsage {
        org: OrgId,
        reply: Reply<(u64, u64)>,
    },
    /// The agent's membership key vanished from etcd (cluster mode).
    NodeVanished {
        node: NodeId,
    },
    NodeJoined {
        node: NodeId,
        record: NodeRecord,
    },
    /// Every agent registered in etcd when the membership watch (re)started.
    Members {
        nodes: Vec<(NodeId, NodeRecord)>,
    },
    /// The scheduler's records between two group commits (a backup), with the commit
    /// position they stand at and how long the actor was held for it.
    Snapshot {
        reply: Reply<SchedulerSnapshot>,
    },
}

pub struct SchedulerSnapshot {
    pub records: Vec<(sled::IVec, sled::IVec)>,
    pub commit_position: u64,
    /// In cluster mode, etcd's revision after the same commit: the snapshot reads etcd as
    /// of it.
    pub etcd_revision: Option<u64>,
    pub epoch: u64,
    /// How long dispatch stood still while the records were copied.
    pub paused: std::time::Duration,
}

/// Cheap to clone; every API handler holds one.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::Sender<Command>,
}

impl SchedulerHandle {
    pub async fn send(&self, c: Command) -> Result<(), DockyardError> {
        self.tx
            .send(c)
            .await
            .map_err(|_| DockyardError::Unavailable("scheduler is shutting down".into()))
    }

    /// Sends a command built around a reply channel and waits for the answer.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DockyardError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await
            .map_err(|_| DockyardError::Unavailable("scheduler is shutting down".into()))?
    }
}

/// Loads state from `store` and starts the actor. Returns when the state is loaded.
pub async fn spawn(
    store: Store,
    cfg: SchedulerConfig,
    shutdown: CancellationToken,
) -> Result<(SchedulerHandle, tokio::task::JoinHandle<Result<(), Fatal>>), DockyardError> {
    let (handle, rx) = channel();
    let join = start(rx, store, cfg, Arc::new(Embedded), shutdown).await?;
    Ok((handle, join))
}

/// The command channel alone: a standby hands the handle to its API before it leads (its
/// gate keeps callers out until then), and starts the actor when elected.
pub fn channel() -> (SchedulerHandle, mpsc::Receiver<Command>) {
    let (tx, rx) = mpsc::channel(16_384);
    (SchedulerHandle { tx }, rx)
}

/// Loads state from `store` and starts the actor on `rx`; every batch's job changes and
/// task outcomes go through `replication` before the batch takes effect. The actor ends
/// with `Ok` on shutdown, or with the reason it had to stop.
pub async fn start(
    rx: mpsc::Receiver<Command>,
    store: Store,
    cfg: SchedulerConfig,
    replication: Arc<dyn Replication>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), Fatal>>, DockyardError> {
    let core = Core::load(store.clone(), cfg, replication.as_ref()).await?;
    Ok(tokio::spawn(run(core, store, rx, replication, shutdown)))
}

/// Batches applied to sled whose flush may still be running. While one is flushed the next
/// is gathered and applied, so the actor does not sit idle through every disk sync; the
/// effects of each wait for its own flush, in batch order.
const MAX_UNFLUSHED: usize = 4;

/// A batch applied to sled, waiting for its flush before its effects.
struct Unflushed {
    flush: Flush,
    tx: Txn,
    started: Instant,
}

enum Flush {
    /// The batch wrote nothing.
    Nothing,
    Running(tokio::task::JoinHandle<Result<usize, DockyardError>>),
    Done(Result<(), DockyardError>),
}

impl Flush {
    async fn wait(&mut self) {
        if let Flush::Running(h) = self {
            let r = match h.await {
                Ok(r) => r.map(|_| ()),
                Err(e) => Err(DockyardError::Storage(format!("the flush task failed: {e}"))),
            };
            *self = Flush::Done(r);
        }
    }
}

async fn run(
    mut core: Core,
    store: Store,
    mut rx: mpsc::Receiver<Command>,
    replication: Arc<dyn Replication>,
    shutdown: CancellationToken,
) -> Result<(), Fatal> {
    let mut last_tick = Instant::now();
    let mut commit_position = match store.commit_position() {
        Ok(n) => n,
        Err(e) => return Err(Fatal::WriteFailed(e)),
    };
    let mut unflushed: VecDeque<Unflushed> = VecDeque::new();
    loop {
        release_flushed(&mut core, &mut unflushed, false).await?;
        let full = unflushed.len() >= MAX_UNFLUSHED;
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // The oldest flush finished: its effects go out before anything else happens.
            _ = oldest_flushed(&mut unflushed) => continue,
            c = rx.recv(), if !full => match c { Some(c) => Some(c), None => break },
            _ = tokio::time::sleep(TICK), if !full => None,
        };
        let mut tx = Txn::default();
        core.apply_pending_evictions(&mut tx);
        // Stages that ended in an earlier batch, whose results are all in sled now.
        core.advance_funnels(&mut tx);
        if let Some(c) = first {
            core.apply(c, &mut tx);
            let mut n = 1;
            while n < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => core.apply(c, &mut tx),
                    Err(_) => break,
                }
                n += 1;
            }
        }
        if last_tick.elapsed() >= TICK {
            core.tick(&mut tx);
            core.retry_funnels();
            core.publish_gauges();
            last_tick = Instant::now();
        }
        core.dispatch(&mut tx);
        core.finalize(&mut tx);
        core.stage(&mut tx);
        if !tx.shared.is_empty() {
            if let Err(e) = replication.replicate(std::mem::take(&mut tx.shared)).await {
                error!(error = %e, "cannot replicate scheduler state; stopping the coordinator");
                return Err(Fatal::Deposed(format!("cannot replicate scheduler state: {e}")));
            }
        }
        let started = Instant::now();
        let flush = if tx.batch.is_empty() {
            Flush::Nothing
        } else {
            commit_position += 1;
            tx.batch.set_commit_position(commit_position);
            if let Err(e) = store.apply(std::mem::take(&mut tx.batch)) {
                // Nothing of this batch (replies, assignments) may leave the process.
                error!(error = %e, "cannot persist scheduler state; stopping the coordinator");
                return Err(Fatal::WriteFailed(e));
            }
            // sled's log is written in order, so this flush also covers every batch before.
            let store = store.clone();
            Flush::Running(tokio::spawn(async move { store.flush().await }))
        };
        let barrier = tx.barrier;
        unflushed.push_back(Unflushed { flush, tx, started });
        if barrier {
            release_flushed(&mut core, &mut unflushed, true).await?;
        }
    }
    // What was applied is flushed and answered before the actor ends.
    release_flushed(&mut core, &mut unflushed, true).await?;
    info!("scheduler stopped");
    Ok(())
}

/// Waits until the oldest unflushed batch's flush is done (forever when there is none).
async fn oldest_flushed(unflushed: &mut VecDeque<Unflushed>) {
    match unflushed.front_mut() {
        Some(u) if matches!(u.flush, Flush::Running(_)) => u.flush.wait().await,
        _ => std::future::pending().await,
    }
}

/// Runs the effects of the batches at the front whose flush is done (all of them, waiting
/// for each, with `wait`), oldest first.
async fn release_flushed(core: &mut Core, unflushed: &mut VecDeque<Unflushed>, wait: bool) -> Result<(), Fatal> {
    while let Some(front) = unflushed.front_mut() {
        if let Flush::Running(h) = &front.flush {
            if !wait && !h.is_finished() {
                break;
            }
            front.flush.wait().await;
        }
        let Some(u) = unflushed.pop_front() else { break };
        if let Flush::Done(durable) = u.flush {
            core.cfg.metrics.sled_write(u.started.elapsed());
            if let Err(e) = durable {
                // Nothing of this batch (replies, assignments) may leave the process.
                error!(error = %e, "cannot persist scheduler state; stopping the coordinator");
                return Err(Fatal::WriteFailed(e));
            }
        }
        core.effects(u.tx);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use dockyard_common::ids::{OrgId, TaskId};
    use dockyard_common::spec::{DockBox, DockParams, EngineKind};

    use super::*;

    pub(crate) fn sleep_job(org: &str, tasks: u32, priority: i32) -> JobSpec {
        JobSpec {
            name: format!("{org}-{priority}"),
            org: OrgId::parse(org).expect("org"),
            engine: EngineKind::Sleep,
            priority,
            batch_size: 1,
            max_attempts: 3,
            timeout_s: 60,
            gpus_per_task: 0,
            cpus_per_task: 1,
            dock_box: DockBox {
                center: [0.0; 3],
                size: [1.0; 3],
            },
            params: DockParams::from_request(0, 0, 0, 0.0, 0).expect("params"),
            preparation: Default::default(),
            receptor: None,
            ligands: Vec::new(),
            sleep_tasks: tasks,
            skipped: 0,
            fresh: false,
            cached: 0,
            labels: BTreeMap::new(),
            created_at_ms: 0,
            funnel: None,
        }
    }

    /// Submits the jobs in order, with ids 1, 2, ...
    async fn submit_all(h: &SchedulerHandle, jobs: Vec<JobSpec>) {
        for (i, spec) in jobs.into_iter().enumerate() {
            let id = JobId::parse(&format!("{:020x}", i + 1)).expect("id");
            h.ask(|reply| Command::Submit {
                job: id,
                spec: Box::new(spec),
                skipped: Vec::new(),
                reply,
            })
            .await
            .expect("submit");
        }
    }

    /// A node offering the test-only sleep engine.
    pub(super) fn sleep_node(slots: u32) -> Registration {
        Registration {
            node: NodeId::parse("n1").expect("node"),
            slots,
            memory_bytes: 1 << 30,
            gpus: Vec::new(),
            engines: vec![pb::EngineInfo {
                name: "sleep".into(),
                version: "t".into(),
                test_only: true,
            }],
            tools: Vec::new(),
            labels: BTreeMap::new(),
            hostname: "h".into(),
            agent_version: "t".into(),
            running: Vec::new(),
        }
    }

    /// Runs a one-slot node against the real actor and returns the job of each task in the
    /// order it was assigned (completing each task before the next can be assigned).
    async fn assignment_order(jobs: Vec<JobSpec>) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let (h, _join) = spawn(store, SchedulerConfig::default(), CancellationToken::new())
            .await
            .expect("spawn");
        let total = jobs.iter().map(|j| j.sleep_tasks).sum::<u32>();
        submit_all(&h, jobs).await;
        let (tx, mut rx) = mpsc::channel(64);
        let reg = sleep_node(1);
        let conn = h
            .ask(|reply| Command::Register { reg, outbound: tx, reply })
            .await
            .expect("register");
        let mut order = Vec::new();
        while order.len() < total as usize {
            let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("assignment in time")
                .expect("open")
                .expect("ok");
            let Some(pb::coordinator_message::Kind::Assign(a)) = msg.kind else {
                continue;
            };
            for t in a.tasks {
                order.push(t.job_id.clone());
                report_success(&h, conn, &t).await;
            }
        }
        order
    }

    fn short(order: &[String]) -> String {
        order
            .iter()
            .map(|j| j.trim_start_matches('0').to_string())
            .collect::<Vec<_>>()
            .join("")
    }

    #[tokio::test]
    async fn organisations_of_equal_priority_share_the_slot() {
        // Org a queues 4 tasks before org b queues 4: they alternate instead of a going first.
        let order = assignment_order(vec![sleep_job("a", 4, 0), sleep_job("b", 4, 0)]).await;
        assert_eq!(short(&order), "12121212");
    }

    #[tokio::test]
    async fn priority_beats_fair_share_and_submission_order() {
        let order = assignment_order(vec![sleep_job("a", 2, 0), sleep_job("b", 2, 5), sleep_job("a", 1, 9)]).await;
        assert_eq!(short(&order), "32211");
    }

    /// Org a (capped by `limits`) and org b each queue 3 tasks for one 3-slot node: the orgs
    /// of the first three assignments, and a's (queued, running) then.
    async fn first_three_with_org_a_capped(limits: crate::auth::Limits) -> (Vec<String>, (u64, u64)) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let cfg = SchedulerConfig::default();
        let a = OrgId::parse("a").expect("org");
        cfg.quotas.set(a.clone(), limits);
        let (h, _join) = spawn(store, cfg, CancellationToken::new()).await.expect("spawn");
        // Org a queues first (and has the higher priority): uncapped it would take all 3 slots.
        submit_all(&h, vec![sleep_job("a", 3, 5), sleep_job("b", 3, 0)]).await;
        let (tx, mut rx) = mpsc::channel(64);
        let reg = sleep_node(3);
        h.ask(|reply| Command::Register { reg, outbound: tx, reply })
            .await
            .expect("register");
        let mut orgs = Vec::new();
        while orgs.len() < 3 {
            let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("assignment in time")
                .expect("open")
                .expect("ok");
            if let Some(pb::coordinator_message::Kind::Assign(x)) = msg.kind {
                orgs.extend(x.tasks.into_iter().map(|t| t.org));
            }
        }
        orgs.sort();
        let usage = h.ask(|reply| Command::OrgUsage { org: a, reply }).await.expect("usage");
        (orgs, usage)
    }

    #[tokio::test]
    async fn a_running_cap_holds_an_org_back_while_others_fill_the_slots() {
        let (orgs, usage) = first_three_with_org_a_capped(crate::auth::Limits {
            max_running_tasks: 1,
            ..Default::default()
        })
        .await;
        assert_eq!(orgs, vec!["a", "b", "b"]);
        assert_eq!(usage, (2, 1));
    }

    #[tokio::test]
    async fn a_running_share_caps_an_org_at_its_part_of_the_cluster() {
        // 34% of 3 slots rounds down to one slot.
        let (orgs, usage) = first_three_with_org_a_capped(crate::auth::Limits {
            max_running_share_pct: 34,
            ..Default::default()
        })
        .await;
        assert_eq!(orgs, vec!["a", "b", "b"]);
        assert_eq!(usage, (2, 1));
    }

    type Outbound = mpsc::Receiver<Result<pb::CoordinatorMessage, tonic::Status>>;

    /// Waits for `n` task assignments.
    async fn assigned(rx: &mut Outbound, n: usize) -> Vec<pb::TaskAssignment> {
        let mut out = Vec::new();
        while out.len() < n {
            let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("assignment in time")
                .expect("open")
                .expect("ok");
            if let Some(pb::coordinator_message::Kind::Assign(a)) = msg.kind {
                out.extend(a.tasks);
            }
        }
        out
    }

    async fn report_success(h: &SchedulerHandle, conn: u64, t: &pb::TaskAssignment) {
        let res = pb::TaskResult {
            task_id: t.task_id.clone(),
            attempt: t.attempt,
            epoch: t.epoch,
            outcome: Some(pb::task_result::Outcome::Ok(pb::TaskSuccess { ligands: Vec::new() })),
            cpu_seconds: 0.0,
            wall_seconds: 0.0,
        };
        let msg = pb::agent_message::Kind::Results(pb::TaskResults { results: vec![res] });
        h.send(Command::Agent {
            node: NodeId::parse("n1").expect("node"),
            conn,
            msg,
        })
        .await
        .expect("send");
    }

    #[tokio::test]
    async fn first_attempts_are_kept_in_the_job_row_and_reclaimed_after_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let stop = CancellationToken::new();
        let (h, join) = spawn(store.clone(), SchedulerConfig::default(), stop.clone()).await.expect("spawn");
        submit_all(&h, vec![sleep_job("a", 2, 0)]).await;
        let job = JobId::parse(&format!("{:020x}", 1)).expect("id");
        let (tx, mut rx) = mpsc::channel(64);
        let reg = sleep_node(2);
        let conn = h
            .ask(|reply| Command::Register { reg, outbound: tx, reply })
            .await
            .expect("register");
        let tasks = assigned(&mut rx, 2).await;
        let n1 = NodeId::parse("n1").expect("node");
        let status = store.status(&job).expect("read").expect("status");
        assert_eq!(
            status.flight.get(&n1).map(|s| s.iter().copied().collect::<Vec<_>>()),
            Some(vec![0, 1])
        );
        assert!(
            store.job_task_records(&job).expect("read").is_empty(),
            "no record per dispatched task"
        );

        let first = tasks.iter().find(|t| t.task_id.ends_with(".0")).expect("task 0");
        report_success(&h, conn, first).await;
        // A submission is answered once its batch (and everything before it) is durable.
        h.ask(|reply| Command::Submit {
            job: JobId::parse(&format!("{:020x}", 2)).expect("id"),
            spec: Box::new(sleep_job("b", 1, 0)),
            skipped: Vec::new(),
            reply,
        })
        .await
        .expect("barrier");
        let status = store.status(&job).expect("read").expect("status");
        assert_eq!(status.flight.get(&n1).map(|s| s.iter().copied().collect::<Vec<_>>()), Some(vec![1]));
        assert_eq!(status.tasks.succeeded, 1);
        assert!(store.job_task_records(&job).expect("read").is_empty());

        stop.cancel();
        join.await.expect("stopped").expect("a clean stop");
        drop(rx);
        let (h, _join) = spawn(store.clone(), SchedulerConfig::default(), CancellationToken::new())
            .await
            .expect("restart");
        let second = tasks.iter().find(|t| t.task_id.ends_with(".1")).expect("task 1");
        let mut reg = sleep_node(2);
        reg.running = vec![(TaskId::parse(&second.task_id).expect("tid"), 1)];
        let (tx, _rx) = mpsc::channel(64);
        let conn = h
            .ask(|reply| Command::Register { reg, outbound: tx, reply })
            .await
            .expect("register");
        report_success(&h, conn, second).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let view = h.ask(|reply| Command::GetJob { job: job.clone(), reply }).await.expect("job");
            if view.state == pb::JobState::Succeeded as i32 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the reclaimed task's result did not finish the job: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = store.status(&job).expect("read").expect("status");
        assert!(status.flight.is_empty());
        assert_eq!(status.tasks.succeeded, 2);
    }

    #[tokio::test]
    async fn one_org_two_jobs_stay_in_submission_order() {
        let order = assignment_order(vec![sleep_job("a", 2, 0), sleep_job("a", 2, 0)]).await;
        assert_eq!(short(&order), "1122");
    }
}
