//! Every heartbeat, the agent's list of running attempts against ours for its node: an
//! attempt it lost (a crashed engine process that never reported, an assignment it never
//! got) is retried instead of holding its slot for good (the heartbeats keep the node's
//! lease alive, so nothing else would free it); one it runs that we did not assign, or
//! cancelled, is cancelled again.
//!
//! An attempt is given up on no sooner than a silent node would be: missing from two
//! heartbeats in a row and for at least the lease. A node whose stream down has stopped
//! (the agent still heartbeats but gets nothing) would otherwise be handed task after task
//! and lose each within two heartbeats, burning every task's attempts before HTTP/2
//! keepalive closes the stream; at the lease's pace it costs no more than a lost node.

use std::collections::HashSet;
use std::time::Instant;

use tracing::{debug, warn};

use dockyard_common::ids::{NodeId, TaskId};
use dockyard_proto::v1 as pb;

use super::agents::cancel_msg;
use super::core::{Core, Live};
use super::txn::Txn;
use crate::metrics::AttemptFailure;

impl Core {
    pub(super) fn reconcile(&mut self, tx: &mut Txn, node_id: &NodeId, running: &[pb::RunningTask]) {
        let Some(node) = self.nodes.nodes.get_mut(node_id) else { return };
        let previous = node.last_heartbeat.replace(Instant::now());
        let mut listed: HashSet<TaskId> = HashSet::with_capacity(running.len());
        for r in running {
            let Ok(tid) = TaskId::parse(&r.task_id) else {
                warn!(node = %node_id, task = %r.task_id, "heartbeat lists a malformed task id; ignored");
                continue;
            };
            let why = match node.running.get(&tid) {
                Some(s) if s.attempt == r.attempt => {
                    let cancelled = s.cancelled;
                    listed.insert(tid);
                    if !cancelled {
                        continue;
                    }
                    "this attempt was cancelled"
                }
                _ => "this attempt is not assigned to this node",
            };
            debug!(node = %node_id, task = %r.task_id, attempt = r.attempt, why, "cancelling an attempt the agent still runs");
            tx.messages.push((node_id.clone(), cancel_msg(r.task_id.clone(), r.attempt, why)));
        }
        // An assignment sent after the previous heartbeat may not have reached the agent yet;
        // one sent before it, missing from two heartbeats in a row and for the lease, is lost.
        let Some(previous) = previous else { return };
        let now = Instant::now();
        let patience = self.cfg.lease;
        let mut lost = Vec::new();
        for (tid, slot) in node.running.iter_mut() {
            if listed.contains(tid) {
                slot.unlisted_since = None;
            } else if slot.taken_at < previous {
                match slot.unlisted_since {
                    Some(since) if now.duration_since(since) >= patience => lost.push(tid.clone()),
                    Some(_) => {}
                    None => slot.unlisted_since = Some(now),
                }
            }
        }
        for tid in lost {
            let Some(mut slot) = self.nodes.nodes.get_mut(node_id).and_then(|n| n.release(&tid)) else {
                continue;
            };
            let reason = format!(
                "node {node_id} no longer runs attempt {} (missing from its heartbeats for {:.1} s)",
                slot.attempt,
                slot.unlisted_since.map_or(0.0, |s| now.duration_since(s).as_secs_f64())
            );
            if let Some(span) = slot.span.as_mut() {
                span.fail(&reason);
            }
            let current = self
                .tasks
                .get(&tid)
                .is_some_and(|t| t.attempt == slot.attempt && matches!(&t.live, Live::Running { node } if node == node_id));
            if current {
                self.cfg.metrics.attempt_failed(AttemptFailure::NotOnAgent);
                self.requeue_or_fail(tx, &tid, &reason);
            } else {
                // Cancelled, or already over: only the slot was left.
                debug!(task = %tid, node = %node_id, "slot of an attempt the agent no longer runs released");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use dockyard_common::ids::JobId;

    use super::super::replication::Embedded;
    use super::super::tests::{sleep_job, sleep_node};
    use super::super::SchedulerConfig;
    use super::*;
    use crate::store::Store;

    /// A lease shorter than the pause between two test heartbeats, so that two misses are
    /// enough; `patience_is_the_lease` checks the lease itself.
    fn short_lease() -> SchedulerConfig {
        SchedulerConfig {
            lease: Duration::from_millis(1),
            ..SchedulerConfig::default()
        }
    }

    /// A core with one 2-slot node running both tasks of one job (first attempts).
    async fn two_running() -> (tempfile::TempDir, Core, NodeId, JobId) {
        two_running_with(short_lease()).await
    }

    async fn two_running_with(cfg: SchedulerConfig) -> (tempfile::TempDir, Core, NodeId, JobId) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let mut core = Core::load(store, cfg, &Embedded).await.expect("load");
        let job = JobId::parse(&format!("{:020x}", 1)).expect("id");
        let mut tx = Txn::default();
        core.submit(&mut tx, job.clone(), sleep_job("a", 2, 0), Vec::new()).expect("submit");
        let (out, _rx) = mpsc::channel(64);
        core.register(&mut tx, sleep_node(2), out);
        core.dispatch(&mut tx);
        let node = NodeId::parse("n1").expect("node");
        assert_eq!(tx.assigns.get(&node).map(Vec::len), Some(2));
        (dir, core, node, job)
    }

    fn listing(tasks: &[(&TaskId, u32)]) -> Vec<pb::RunningTask> {
        tasks
            .iter()
            .map(|(t, attempt)| pb::RunningTask {
                task_id: t.to_string(),
                attempt: *attempt,
            })
            .collect()
    }

    /// One heartbeat; returns the Cancels it caused, as (task, attempt, reason).
    fn heartbeat(core: &mut Core, node: &NodeId, running: &[pb::RunningTask]) -> (Txn, Vec<(String, u32, String)>) {
        // Heartbeats are seconds apart; Instants taken in one test step must differ.
        std::thread::sleep(Duration::from_millis(2));
        let mut tx = Txn::default();
        core.reconcile(&mut tx, node, running);
        let cancels = tx
            .messages
            .iter()
            .filter_map(|(_, m)| match &m.kind {
                Some(pb::coordinator_message::Kind::Cancel(c)) => Some((c.task_id.clone(), c.attempt, c.reason.clone())),
                _ => None,
            })
            .collect();
        (tx, cancels)
    }

    #[tokio::test]
    async fn an_attempt_missing_from_two_heartbeats_after_its_assignment_is_retried() {
        let (_dir, mut core, node, job) = two_running().await;
        let (t0, t1) = (TaskId::new(job.clone(), 0), TaskId::new(job.clone(), 1));
        // The first heartbeat on a stream only sets the clock; the second finds task 1
        // missing but gives it one more heartbeat.
        for _ in 0..2 {
            let (_, cancels) = heartbeat(&mut core, &node, &listing(&[(&t0, 1)]));
            assert!(cancels.is_empty(), "{cancels:?}");
            assert_eq!(core.stats.requeued, 0);
        }
        let (tx, _) = heartbeat(&mut core, &node, &listing(&[(&t0, 1)]));
        assert_eq!(core.stats.requeued, 1);
        let t = core.tasks.get(&t1).expect("task 1 is live");
        assert_eq!(t.attempt, 2, "requeued as a retry");
        assert!(matches!(t.live, Live::Delayed { .. }), "{:?}", t.live);
        let n = core.nodes.nodes.get(&node).expect("node");
        assert!(!n.running.contains_key(&t1), "its slot is free again");
        assert!(n.running.contains_key(&t0), "the listed attempt keeps running");
        let counts = &core.jobs.get(&job).expect("job").status.tasks;
        assert_eq!((counts.queued, counts.running), (1, 1));
        assert!(tx.dirty_jobs.contains(&job));
        // The retry's record says why.
        assert!(!tx.batch.is_empty());
    }

    #[tokio::test]
    async fn an_assignment_newer_than_the_previous_heartbeat_is_not_taken_for_lost() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let mut core = Core::load(store, short_lease(), &Embedded).await.expect("load");
        let mut tx = Txn::default();
        let (out, _rx) = mpsc::channel(64);
        core.register(&mut tx, sleep_node(1), out);
        let node = NodeId::parse("n1").expect("node");
        heartbeat(&mut core, &node, &[]);
        let job = JobId::parse(&format!("{:020x}", 1)).expect("id");
        let mut tx = Txn::default();
        core.submit(&mut tx, job.clone(), sleep_job("a", 1, 0), Vec::new()).expect("submit");
        core.dispatch(&mut tx);
        // Assigned after the previous heartbeat: this one may have been sent before the
        // agent got it, and so may the next; only a miss after that counts, twice.
        for _ in 0..2 {
            heartbeat(&mut core, &node, &[]);
            assert_eq!(core.stats.requeued, 0);
        }
        heartbeat(&mut core, &node, &[]);
        assert_eq!(core.stats.requeued, 1);
    }

    /// A node whose heartbeats arrive but whose stream down is stuck must not lose task after
    /// task faster than a silent node would be declared lost.
    #[tokio::test]
    async fn patience_is_the_lease() {
        let (_dir, mut core, node, job) = two_running_with(SchedulerConfig {
            lease: Duration::from_secs(3600),
            ..SchedulerConfig::default()
        })
        .await;
        let t0 = TaskId::new(job.clone(), 0);
        for _ in 0..5 {
            heartbeat(&mut core, &node, &listing(&[(&t0, 1)]));
        }
        assert_eq!(core.stats.requeued, 0, "missing for milliseconds, not for the lease");
        let n = core.nodes.nodes.get(&node).expect("node");
        assert!(n.running.contains_key(&TaskId::new(job, 1)), "the slot is still held");
    }

    #[tokio::test]
    async fn attempts_the_coordinator_did_not_assign_or_cancelled_are_cancelled() {
        let (_dir, mut core, node, job) = two_running().await;
        let (t0, t1) = (TaskId::new(job.clone(), 0), TaskId::new(job.clone(), 1));
        let stranger = TaskId::new(JobId::parse(&format!("{:020x}", 9)).expect("id"), 4);
        let (_, cancels) = heartbeat(&mut core, &node, &listing(&[(&t0, 1), (&t1, 3), (&stranger, 1)]));
        let mut cancelled: Vec<(String, u32)> = cancels.iter().map(|(t, a, _)| (t.clone(), *a)).collect();
        cancelled.sort();
        let mut want = vec![(t1.to_string(), 3), (stranger.to_string(), 1)];
        want.sort();
        assert_eq!(cancelled, want, "the current attempt of task 0 is left alone: {cancels:?}");
        assert!(cancels.iter().all(|(_, _, why)| why.contains("not assigned")), "{cancels:?}");

        // Once the job is cancelled, an agent still listing its attempts is told again.
        let mut tx = Txn::default();
        core.cancel(&mut tx, &job, "");
        let (_, cancels) = heartbeat(&mut core, &node, &listing(&[(&t0, 1), (&t1, 1)]));
        assert_eq!(cancels.len(), 2, "{cancels:?}");
        assert!(cancels.iter().all(|(_, _, why)| why.contains("cancelled")), "{cancels:?}");
    }
}
