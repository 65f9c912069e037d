//! Agent membership: registration and reconciliation, liveness, drain, unschedulable work.

use std::collections::HashMap;
use std::time::Instant;

use tracing::{debug, info, warn};

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{NodeId, TaskId};
use dockyard_common::time::now_ms;
use dockyard_proto::v1 as pb;

use super::core::{Core, Live};
use super::nodes::{NodeRt, Outbound, Registration};
use super::queue::{Entry, TaskClass};
use super::txn::Txn;
use crate::metrics::AttemptFailure;

pub(super) fn cancel_msg(task_id: String, attempt: u32, reason: &str) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::Cancel(pb::Cancel {
            task_id,
            attempt,
            reason: reason.to_string(),
        })),
    }
}

impl Core {
    /// A (re)connecting agent: attempts it still runs and we agree it owns are kept; the
    /// rest are cancelled on the agent, and ours it no longer has are requeued.
    pub(super) fn register(&mut self, tx: &mut Txn, reg: Registration, outbound: Outbound) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        let node_id = reg.node.clone();
        let previous = self.nodes.nodes.remove(&node_id);
        self.cfg.metrics.agent_connected(previous.is_some());
        // An operator's drain survives reconnects and restarts; an agent's GoingAway does not.
        let draining = self.nodes.drained.contains(&node_id);
        let mut node = NodeRt::new(reg.clone(), conn, outbound, now_ms());
        node.draining = draining;
        tx.messages.push((
            node_id.clone(),
            pb::CoordinatorMessage {
                kind: Some(pb::coordinator_message::Kind::Registered(pb::Registered {
                    epoch: self.epoch,
                    heartbeat_interval_ms: self.cfg.heartbeat_interval.as_millis() as u32,
                    lease_ms: self.cfg.lease.as_millis() as u32,
                    coordinator_id: self.cfg.coordinator_id.clone(),
                    artifacts: self.cfg.artifacts_uri.clone(),
                })),
            },
        ));
        if draining {
            tx.messages.push((
                node_id.clone(),
                pb::CoordinatorMessage {
                    kind: Some(pb::coordinator_message::Kind::Drain(pb::Drain { draining: true })),
                },
            ));
        }
        let mut kept = 0;
        for (tid, attempt) in &reg.running {
            // After a failover the attempt number is not known: the agent's word is taken.
            let ours = self.tasks.get(tid).is_some_and(|t| match &t.live {
                Live::Running { node } => *node == node_id && t.attempt == *attempt,
                Live::Orphan { node: Some(n) } => *n == node_id && t.attempt == *attempt,
                Live::Orphan { node: None } => true,
                _ => false,
            });
            let class = self.jobs.get(&tid.job).map(|j| j.class);
            match (ours, class) {
                (true, Some(class)) => {
                    if let Some(t) = self.tasks.get_mut(tid) {
                        if matches!(t.live, Live::Orphan { .. }) {
                            debug!(task = %tid, "running task reclaimed after restart");
                        }
                        t.live = Live::Running { node: node_id.clone() };
                        t.attempt = *attempt;
                    }
                    node.take(tid.clone(), *attempt, &class);
                    kept += 1;
                }
                _ => tx.messages.push((
                    node_id.clone(),
                    cancel_msg(tid.to_string(), *attempt, "this attempt is no longer assigned to this node"),
                )),
            }
        }
        if let Some(prev) = previous {
            for tid in prev.running.keys() {
                if node.running.contains_key(tid) {
                    continue;
                }
                if self
                    .tasks
                    .get(tid)
                    .is_some_and(|t| matches!(&t.live, Live::Running { node } if *node == node_id))
                {
                    self.cfg.metrics.attempt_failed(AttemptFailure::NodeReconnected);
                    self.requeue_or_fail(tx, tid, &format!("node {node_id} reconnected without this task"));
                }
            }
        }
        info!(
            node = %node_id,
            conn,
            slots = reg.slots,
            memory_mb = reg.memory_bytes / 1_000_000,
            engines = ?reg.engines.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            reclaimed = kept,
            "agent registered"
        );
        self.nodes.nodes.insert(node_id, node);
        self.refresh_unschedulable(tx);
        conn
    }

    pub(super) fn on_agent(&mut self, tx: &mut Txn, node_id: &NodeId, conn: u64, msg: pb::agent_message::Kind) {
        let Some(node) = self.nodes.nodes.get_mut(node_id) else { return };
        if node.conn != conn || !node.is_connected() {
            return;
        }
        node.last_seen = Instant::now();
        node.last_seen_ms = now_ms();
        match msg {
            pb::agent_message::Kind::Heartbeat(hb) => self.reconcile(tx, node_id, &hb.running),
            pb::agent_message::Kind::Register(_) => warn!(node = %node_id, "second Register on one stream ignored"),
            pb::agent_message::Kind::GoingAway(g) => {
                node.going_away = true;
                info!(node = %node_id, reason = %g.reason, "agent going away; no new tasks for it");
            }
            pb::agent_message::Kind::Results(r) => {
                for res in r.results {
                    self.on_result(tx, node_id, res);
                }
            }
        }
    }

    pub(super) fn drain(&mut self, tx: &mut Txn, node: &NodeId, drain: bool) -> Result<pb::Node, DockyardError> {
        let n = self
            .nodes
            .nodes
            .get_mut(node)
            .ok_or_else(|| DockyardError::not_found(format!("node {node}")))?;
        n.draining = drain;
        tx.shared.drains.insert(node.clone(), drain);
        tx.batch.set_drained(node, drain);
        if drain {
            self.nodes.drained.insert(node.clone());
        } else {
            self.nodes.drained.remove(node);
        }
        tx.messages.push((
            node.clone(),
            pb::CoordinatorMessage {
                kind: Some(pb::coordinator_message::Kind::Drain(pb::Drain { draining: drain })),
            },
        ));
        info!(node = %node, drain, "drain state changed");
        Ok(n.view())
    }

    pub(super) fn node_lost(&mut self, tx: &mut Txn, node_id: &NodeId, reason: &str) {
        let Some(node) = self.nodes.nodes.get_mut(node_id) else { return };
        node.outbound = None;
        let running: Vec<TaskId> = node.running.keys().cloned().collect();
        for tid in &running {
            if let Some(mut span) = node.release(tid).and_then(|s| s.span) {
                span.fail(&format!("node lost: {reason}"));
            }
        }
        warn!(node = %node_id, reason, tasks = running.len(), "agent lost; requeueing its tasks");
        for tid in running {
            if self
                .tasks
                .get(&tid)
                .is_some_and(|t| matches!(&t.live, Live::Running { node } if node == node_id))
            {
                self.cfg.metrics.attempt_failed(AttemptFailure::NodeLost);
                self.requeue_or_fail(tx, &tid, &format!("node {node_id} lost: {reason}"));
            }
        }
        self.refresh_unschedulable(tx);
    }

    pub fn apply_pending_evictions(&mut self, tx: &mut Txn) {
        for (node, conn, reason) in std::mem::take(&mut self.pending_evictions) {
            if self.nodes.nodes.get(&node).is_some_and(|n| n.conn == conn && n.is_connected()) {
                self.node_lost(tx, &node, &reason);
            }
        }
    }

    /// Lease expiry, retry backoffs coming due, orphans past their grace period.
    pub fn tick(&mut self, tx: &mut Txn) {
        let now = Instant::now();
        let lease = self.cfg.lease;
        let expired: Vec<NodeId> = self
            .nodes
            .connected()
            .filter(|n| now.duration_since(n.last_seen) > lease)
            .map(|n| n.reg.node.clone())
            .collect();
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
                self.queue.push(class, t.key, Entry::Task(tid.clone()));
            }
        }
        // Only a cluster's membership watch ever makes the members known.
        let all_members_back = self.members_known
            && self
                .members
                .keys()
                .all(|m| self.nodes.nodes.get(m).is_some_and(|n| n.is_connected()));
        if self.orphan_deadline.is_some_and(|d| d <= now || all_members_back) {
            self.orphan_deadline = None;
            let orphans: Vec<TaskId> = self
                .tasks
                .iter()
                .filter(|(_, t)| matches!(t.live, Live::Orphan { .. }))
                .map(|(id, _)| id.clone())
                .collect();
            for tid in orphans {
                if self.tasks.get(&tid).is_some_and(|t| matches!(t.live, Live::Orphan { node: None })) {
                    self.queue_unclaimed(tx, &tid);
                } else {
                    self.cfg.metrics.attempt_failed(AttemptFailure::Orphaned);
                    self.requeue_or_fail(tx, &tid, "its agent did not report it after the coordinator restarted");
                }
            }
        }
        self.refresh_unschedulable(tx);
    }

    /// Marks jobs whose tasks no connected node could ever run, and clears the mark when one
    /// joins. Runs when membership changes and when jobs are submitted.
    pub(super) fn refresh_unschedulable(&mut self, tx: &mut Txn) {
        let mut reasons: HashMap<TaskClass, Option<String>> = HashMap::new();
        for (id, job) in self.jobs.iter_mut() {
            let r = if job.status.tasks.queued == 0 {
                None
            } else {
                reasons
                    .entry(job.class)
                    .or_insert_with(|| self.nodes.unschedulable_reason(&job.class))
                    .clone()
            };
            if r != job.status.unschedulable_reason {
                if let Some(why) = &r {
                    warn!(job = %id, reason = %why, "job is unschedulable");
                }
                job.status.unschedulable_reason = r;
                tx.dirty_jobs.insert(id.clone());
            }
        }
    }
}
