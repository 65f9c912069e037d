//! What the leader replicates outside its own sled: new jobs and their state changes (the
//! job index in etcd, specs in the artifact store) and the final outcome of each task (an
//! artifact per commit, named by a fenced etcd record). A standby that takes over rebuilds
//! from exactly these.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use dockyard_common::cluster::JobIndexState;
use dockyard_common::ids::{JobId, NodeId, OrgId};
use dockyard_common::spec::JobSpec;

use crate::model::{LigandResultRecord, SkippedRecord};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OutcomeKind {
    Succeeded {
        results: Vec<LigandResultRecord>,
        /// (ligand index, ligand name, reason) for ligands that did not dock.
        errors: Vec<(u32, String, String)>,
        cpu_seconds: f64,
    },
    Failed {
        reason: String,
    },
}

/// The final outcome of one task; once committed it is never redone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub index: u32,
    pub attempt: u32,
    pub kind: OutcomeKind,
}

pub struct JobChange {
    pub org: OrgId,
    pub state: JobIndexState,
    pub reason: String,
    /// Set when the job is new: the spec is stored before the index entry points at it.
    pub spec: Option<Arc<JobSpec>>,
    /// With a new job's spec: the library records `skip_invalid` left out, for its report.
    pub skipped: Vec<SkippedRecord>,
    pub created_at_ms: i64,
    /// The spec's version ([`JobSpec::version`]): which spec object the index points at.
    pub spec_version: u32,
}

/// Everything one scheduler batch must replicate before its effects leave the process.
#[derive(Default)]
pub struct SharedWrites {
    pub jobs: BTreeMap<JobId, JobChange>,
    pub outcomes: BTreeMap<JobId, (OrgId, Vec<TaskOutcome>)>,
    /// Operators' drains, so a drained node stays drained after a failover.
    pub drains: BTreeMap<NodeId, bool>,
}

impl SharedWrites {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.outcomes.is_empty() && self.drains.is_empty()
    }

    /// Records a job's new state; a job created and finished in one batch keeps its spec.
    pub fn job(&mut self, id: &JobId, mut change: JobChange) {
        if let Some(prev) = self.jobs.remove(id) {
            if change.spec.is_none() {
                change.spec = prev.spec;
                change.skipped = prev.skipped;
            }
        }
        self.jobs.insert(id.clone(), change);
    }

    pub fn outcome(&mut self, job: &JobId, org: &OrgId, o: TaskOutcome) {
        self.outcomes
            .entry(job.clone())
            .or_insert_with(|| (org.clone(), Vec::new()))
            .1
            .push(o);
    }
}
