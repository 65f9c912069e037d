//! Records persisted in sled. JSON so an operator can read them with any sled tool.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use dockyard_common::ids::{Attempt, Epoch, NodeId};
use dockyard_common::molecule::Pose;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Partial,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Partial | JobState::Failed | JobState::Cancelled
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    pub total: u32,
    pub queued: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
}

/// Where a task stands, as the job's counts see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting to run: in the queue, or waiting out a retry's backoff.
    Queued,
    /// Running, or recorded as running and waiting for its agent to claim it.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskCounts {
    fn of(&mut self, p: Phase) -> &mut u32 {
        match p {
            Phase::Queued => &mut self.queued,
            Phase::Running => &mut self.running,
            Phase::Succeeded => &mut self.succeeded,
            Phase::Failed => &mut self.failed,
            Phase::Cancelled => &mut self.cancelled,
        }
    }

    /// Moves `n` tasks from one phase to another: once a job is accepted, the only way its
    /// counts change, so they always add up to `total`.
    pub fn shift(&mut self, from: Phase, to: Phase, n: u32) {
        let f = self.of(from);
        *f = f.saturating_sub(n);
        *self.of(to) += n;
    }

    pub fn finished(&self) -> u32 {
        self.succeeded + self.failed + self.cancelled
    }

    /// The state of a job whose tasks have all finished.
    pub fn final_state(&self, ligands_failed: u32) -> JobState {
        if self.cancelled > 0 {
            JobState::Cancelled
        } else if self.total > 0 && self.failed == self.total {
            JobState::Failed
        } else if self.failed > 0 || ligands_failed > 0 {
            JobState::Partial
        } else {
            JobState::Succeeded
        }
    }
}

/// The mutable part of a job; the spec is stored once beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub state: JobState,
    pub tasks: TaskCounts,
    pub ligands_total: u32,
    pub ligands_docked: u32,
    pub ligands_failed: u32,
    pub best_score: Option<f64>,
    pub error: Option<String>,
    pub finished_at_ms: i64,
    #[serde(default)]
    pub unschedulable_reason: Option<String>,
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Tasks `[cursor, total)` have never been dispatched. They need no record of their own:
    /// the queue key of task `i` is `(priority, vtime0 + i, seq0 + i)`, so a million-task
    /// job is queued with one write, and a dispatched task below the cursor with no task
    /// record has succeeded.
    #[serde(default)]
    pub cursor: u32,
    #[serde(default)]
    pub vtime0: u64,
    #[serde(default)]
    pub seq0: u64,
    /// Tasks below the cursor running their first attempt, by node. They have no task record:
    /// this job row is rewritten once per group commit anyway, while a record written at
    /// dispatch and deleted at completion cost two sled writes per task (44% of the
    /// coordinator's CPU at full dispatch rate). A dispatched task with neither a record nor
    /// a place here has succeeded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flight: BTreeMap<NodeId, BTreeSet<u32>>,
    /// A funnel stage still fed by the stage before it (as its spec says): it does not
    /// finish while open, however many of its tasks are done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
}

impl JobStatus {
    /// Task `index` starts its first attempt on `node`.
    pub fn fly(&mut self, node: &NodeId, index: u32) {
        match self.flight.get_mut(node) {
            Some(set) => {
                set.insert(index);
            }
            None => {
                self.flight.insert(node.clone(), BTreeSet::from([index]));
            }
        }
    }

    /// Takes task `index` out of the flight list (it finished, or a record now speaks for it);
    /// false if it was not there. `node` is where to look first.
    pub fn land(&mut self, node: Option<&NodeId>, index: u32) -> bool {
        if node.is_some_and(|n| take_from(&mut self.flight, n, index)) {
            return true;
        }
        let Some(holder) = self.flight.iter().find(|(_, set)| set.contains(&index)).map(|(n, _)| n.clone()) else {
            return false;
        };
        take_from(&mut self.flight, &holder, index)
    }
}

/// Removes `index` from `node`'s set, and the set once it is empty.
fn take_from(flight: &mut BTreeMap<NodeId, BTreeSet<u32>>, node: &NodeId, index: u32) -> bool {
    let Some(set) = flight.get_mut(node) else { return false };
    if !set.remove(&index) {
        return false;
    }
    if set.is_empty() {
        flight.remove(node);
    }
    true
}

/// Only tasks that are not plain "fresh in the queue" or "succeeded" have a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaskState {
    /// Back in the queue for a retry; not dispatchable before `not_before_ms` (backoff).
    Queued {
        key: Vec<u8>,
        not_before_ms: i64,
    },
    Running {
        node: NodeId,
        epoch: Epoch,
        started_ms: i64,
    },
    Succeeded,
    /// Rebuilt after a failover with no committed outcome: it may be running on an agent
    /// that has not reconnected yet, or may never have been dispatched.
    Unclaimed,
    Failed {
        reason: String,
    },
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub attempt: Attempt,
    pub state: TaskState,
    /// Why the previous attempt ended, for the job report.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// One docked ligand, stored under a key ordered by score.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LigandResultRecord {
    pub ligand: String,
    pub index: u32,
    pub task: String,
    pub score: f64,
    pub poses: Vec<Pose>,
    pub pose_key: String,
    pub log_key: String,
    #[serde(default)]
    pub sdf_key: String,
    #[serde(default)]
    pub smiles: String,
    #[serde(default)]
    pub preparation: String,
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, f64>,
    /// Copied from the result cache rather than docked for this job.
    #[serde(default)]
    pub cached: bool,
}

/// A library record left out at submission (`skip_invalid`), for the job report. Rows
/// written before this type was named are JSON arrays in field order, which serde reads
/// into it just the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRecord {
    pub file: String,
    /// 1-based record number in the file.
    pub record: u32,
    pub name: String,
    pub line: u32,
    pub reason: String,
}

impl From<dockyard_proto::v1::SkippedRecord> for SkippedRecord {
    fn from(s: dockyard_proto::v1::SkippedRecord) -> Self {
        SkippedRecord {
            file: s.file,
            record: s.record,
            name: s.name,
            line: s.line,
            reason: s.reason,
        }
    }
}

impl From<SkippedRecord> for dockyard_proto::v1::SkippedRecord {
    fn from(s: SkippedRecord) -> Self {
        dockyard_proto::v1::SkippedRecord {
            file: s.file,
            record: s.record,
            name: s.name,
            line: s.line,
            reason: s.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> JobStatus {
        JobStatus {
            state: JobState::Running,
            tasks: TaskCounts::default(),
            ligands_total: 0,
            ligands_docked: 0,
            ligands_failed: 0,
            best_score: None,
            error: None,
            finished_at_ms: 0,
            unschedulable_reason: None,
            cpu_seconds: 0.0,
            cursor: 3,
            vtime0: 0,
            seq0: 0,
            flight: BTreeMap::new(),
            open: false,
        }
    }

    #[test]
    fn a_task_lands_once_from_whichever_node_holds_it() {
        let (a, b) = (NodeId::parse("a").expect("id"), NodeId::parse("b").expect("id"));
        let mut s = status();
        s.fly(&a, 0);
        s.fly(&a, 1);
        s.fly(&b, 2);
        assert!(s.land(Some(&a), 0));
        assert!(!s.land(Some(&a), 0), "already landed");
        // Looked for on the wrong node first, found on its own; b's emptied set goes away.
        assert!(s.land(Some(&a), 2));
        assert!(!s.flight.contains_key(&b));
        assert!(s.land(None, 1));
        assert!(s.flight.is_empty());
        let json = serde_json::to_string(&s).expect("json");
        assert!(!json.contains("flight"), "an empty flight list is not written: {json}");
        s.fly(&b, 7);
        let back: JobStatus = serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("read");
        assert_eq!(back, s);
    }

    #[test]
    fn shifting_tasks_between_phases_keeps_the_counts_adding_up() {
        let mut c = TaskCounts {
            total: 5,
            queued: 5,
            ..TaskCounts::default()
        };
        c.shift(Phase::Queued, Phase::Running, 3);
        c.shift(Phase::Running, Phase::Succeeded, 1);
        c.shift(Phase::Running, Phase::Queued, 1);
        c.shift(Phase::Queued, Phase::Failed, 1);
        c.shift(Phase::Queued, Phase::Cancelled, 2);
        let expected = TaskCounts {
            total: 5,
            queued: 0,
            running: 1,
            succeeded: 1,
            failed: 1,
            cancelled: 2,
        };
        assert_eq!(c, expected);
        assert_eq!(c.queued + c.running + c.finished(), c.total);
    }

    #[test]
    fn skipped_rows_of_the_older_array_layout_still_read() {
        let old = r#"[["lib.sdf",2,"bad",17,"atom 999 out of range"]]"#;
        let rows: Vec<SkippedRecord> = serde_json::from_str(old).expect("read");
        assert_eq!(
            rows,
            vec![SkippedRecord {
                file: "lib.sdf".into(),
                record: 2,
                name: "bad".into(),
                line: 17,
                reason: "atom 999 out of range".into(),
            }]
        );
    }
}
