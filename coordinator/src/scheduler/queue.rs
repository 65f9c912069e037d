//! The in-memory ready queue: one ordered map per resource class, so a node is matched
//! against a handful of class heads instead of scanning a million tasks.

use std::collections::{BTreeMap, HashMap};

use dockyard_common::ids::{JobId, OrgId, TaskId};
use dockyard_common::queue_key::QueueKey;
use dockyard_common::spec::{EngineKind, PrepTools};

/// What a task needs from a node. Tasks of one class are interchangeable for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskClass {
    pub engine: EngineKind,
    pub gpus: u32,
    /// Cores (agent slots) a task holds.
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Preparation tools the agent needs to convert the inputs (none: all PDBQT, or an
    /// engine that reads them itself).
    pub prep: PrepTools,
}

/// A queue entry: one retried task, or the next never-dispatched task of a job (the job's
/// cursor), so a job of any size takes one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Task(TaskId),
    Job(JobId),
}

impl Entry {
    pub fn job(&self) -> &JobId {
        match self {
            Entry::Task(t) => &t.job,
            Entry::Job(j) => j,
        }
    }
}

#[derive(Default)]
pub struct ReadyQueue {
    classes: HashMap<TaskClass, BTreeMap<QueueKey, Entry>>,
    /// Start-time fair queueing: per priority, the virtual time of the last dispatched task.
    vtime: HashMap<i32, u64>,
    /// Per (priority, org): the next virtual time that org's next task gets.
    org_next: HashMap<(i32, OrgId), u64>,
    len: usize,
}

impl ReadyQueue {
    /// Virtual times for the next `n` tasks of `org` at `priority`: `v0..v0+n`.
    pub fn assign_vtime(&mut self, priority: i32, org: &OrgId, n: u64) -> u64 {
        let now = self.vtime.get(&priority).copied().unwrap_or(0);
        let next = self.org_next.entry((priority, org.clone())).or_insert(0);
        let v = (*next).max(now);
        *next = v + n;
        v
    }

    /// Restores fair-share counters at start-up: `org` has used virtual time up to `end`.
    pub fn observe_loaded(&mut self, priority: i32, end: u64, org: &OrgId) {
        let next = self.org_next.entry((priority, org.clone())).or_insert(0);
        *next = (*next).max(end);
    }

    pub fn push(&mut self, class: TaskClass, key: QueueKey, task: Entry) {
        if self.classes.entry(class).or_default().insert(key, task).is_none() {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, class: &TaskClass, key: &QueueKey) -> bool {
        let removed = self.classes.get_mut(class).and_then(|m| m.remove(key)).is_some();
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// The best head among the classes `fits` accepts.
    pub fn peek_best(&self, fits: impl FnMut(&TaskClass) -> bool) -> Option<(TaskClass, QueueKey, Entry)> {
        self.peek_best_where(fits, |_| true)
    }

    /// The best entry `eligible` accepts among the classes `fits` accepts. Entries it turns
    /// down (an organisation at its running cap) are passed over, not removed, so they keep
    /// their place and fair-share time for when the organisation is below its cap again.
    pub fn peek_best_where(
        &self,
        mut fits: impl FnMut(&TaskClass) -> bool,
        mut eligible: impl FnMut(&Entry) -> bool,
    ) -> Option<(TaskClass, QueueKey, Entry)> {
        let mut best: Option<(TaskClass, QueueKey, Entry)> = None;
        for (class, m) in &self.classes {
            // Every entry of the class sorts at or after its head.
            let Some((head, _)) = m.first_key_value() else { continue };
            if best.as_ref().is_some_and(|(_, bk, _)| bk <= head) || !fits(class) {
                continue;
            }
            let Some((k, t)) = m.iter().find(|(_, e)| eligible(e)) else {
                continue;
            };
            if best.as_ref().is_none_or(|(_, bk, _)| k < bk) {
                best = Some((*class, *k, t.clone()));
            }
        }
        best
    }

    pub fn pop(&mut self, class: &TaskClass, key: &QueueKey) {
        if self.remove(class, key) {
            let v = self.vtime.entry(key.priority()).or_insert(0);
            *v = (*v).max(key.vtime());
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockyard_common::ids::JobId;

    fn class() -> TaskClass {
        TaskClass {
            engine: EngineKind::Sleep,
            gpus: 0,
            cpus: 1,
            memory_bytes: 0,
            prep: PrepTools::NONE,
        }
    }

    #[test]
    fn equal_priority_orgs_interleave() {
        let mut q = ReadyQueue::default();
        let a = OrgId::parse("a").expect("org");
        let b = OrgId::parse("b").expect("org");
        let job = JobId::generate(1);
        let mut seq = 0;
        // Org a submits 3 tasks before org b submits 3.
        for org in [&a, &a, &a, &b, &b, &b] {
            let v = q.assign_vtime(0, org, 1);
            seq += 1;
            q.push(class(), QueueKey::new(0, v, seq), Entry::Task(TaskId::new(job.clone(), seq as u32)));
        }
        let mut order = Vec::new();
        while let Some((c, k, t)) = q.peek_best(|_| true) {
            q.pop(&c, &k);
            if let Entry::Task(t) = t {
                order.push(t.index);
            }
        }
        assert_eq!(order, vec![1, 4, 2, 5, 3, 6]);
    }

    #[test]
    fn late_org_does_not_jump_ahead_of_already_served_time() {
        let mut q = ReadyQueue::default();
        let a = OrgId::parse("a").expect("org");
        let b = OrgId::parse("b").expect("org");
        let job = JobId::generate(1);
        for i in 0..10u64 {
            let v = q.assign_vtime(0, &a, 1);
            q.push(class(), QueueKey::new(0, v, i), Entry::Task(TaskId::new(job.clone(), i as u32)));
        }
        for _ in 0..5 {
            let (c, k, _) = q.peek_best(|_| true).expect("head");
            q.pop(&c, &k);
        }
        // b arrives after a has been served up to vtime 4: it starts at 4, not 0.
        assert_eq!(q.assign_vtime(0, &b, 1), 4);
    }

    #[test]
    fn ineligible_entries_are_passed_over_not_removed() {
        let mut q = ReadyQueue::default();
        let capped = JobId::generate(1);
        let other = JobId::generate(2);
        q.push(class(), QueueKey::new(0, 0, 1), Entry::Job(capped.clone()));
        q.push(class(), QueueKey::new(0, 1, 2), Entry::Job(other.clone()));
        let (_, _, e) = q.peek_best_where(|_| true, |e| e.job() != &capped).expect("other");
        assert_eq!(e, Entry::Job(other));
        assert_eq!(q.len(), 2);
        assert!(q.peek_best_where(|_| true, |_| false).is_none());
        let (_, _, e) = q.peek_best(|_| true).expect("head");
        assert_eq!(e, Entry::Job(capped));
    }

    #[test]
    fn higher_priority_wins_across_classes() {
        let mut q = ReadyQueue::default();
        let job = JobId::generate(1);
        let other = TaskClass {
            engine: EngineKind::Vina,
            gpus: 0,
            cpus: 1,
            memory_bytes: 1,
            prep: PrepTools::NONE,
        };
        q.push(class(), QueueKey::new(0, 0, 1), Entry::Task(TaskId::new(job.clone(), 1)));
        q.push(other, QueueKey::new(9, 0, 2), Entry::Task(TaskId::new(job.clone(), 2)));
        let (_, _, t) = q.peek_best(|_| true).expect("head");
        assert_eq!(t, Entry::Task(TaskId::new(job.clone(), 2)));
        let (_, _, t) = q.peek_best(|c| c.engine == EngineKind::Sleep).expect("head");
        assert_eq!(t, Entry::Task(TaskId::new(job, 1)));
    }
}
