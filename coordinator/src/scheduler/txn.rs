//! One group commit: the writes of a batch of events, and the side effects (replies,
//! assignments) that may only happen once those writes are on disk.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use dockyard_common::ids::{JobId, NodeId};
use dockyard_proto::v1 as pb;

use crate::cluster::outcome::SharedWrites;
use crate::store::StoreBatch;

#[derive(Default)]
pub struct Txn {
    pub batch: StoreBatch,
    pub dirty_jobs: BTreeSet<JobId>,
    pub after: Vec<Box<dyn FnOnce() + Send>>,
    pub assigns: HashMap<NodeId, Vec<pb::TaskAssignment>>,
    pub messages: Vec<(NodeId, pb::CoordinatorMessage)>,
    /// Filled only with a cluster journal (etcd): replicated, fenced, before the sled write.
    pub shared: SharedWrites,
    /// WatchJob subscriptions, answered once the batch is durable (see `Core::effects`).
    pub watchers: Vec<(JobId, super::Reply<tokio::sync::watch::Receiver<pb::Job>>)>,
    /// Set by `Core::stage` once the batch is complete: what its effects show and to whom.
    /// The next batch may be applied in memory before this one is durable, so nothing its
    /// effects send may be read from the state then.
    pub staged: Staged,
    /// Nothing more is applied until this batch is durable and its effects have run (a
    /// backup snapshot reads the tree in them, and must find exactly this batch's commits).
    pub barrier: bool,
}

/// A batch's effects as of the end of the batch (see `Txn::staged`).
#[derive(Default)]
pub struct Staged {
    /// Job views to publish to WatchJob streams.
    pub views: Vec<(Arc<tokio::sync::watch::Sender<pb::Job>>, pb::Job)>,
    /// Subscriptions: a receiver on a live job's stream, or the view of a job not in memory.
    pub subscriptions: Vec<(super::Reply<tokio::sync::watch::Receiver<pb::Job>>, Subscription)>,
    /// Jobs that finished in the batch: their streams end once their final view is out.
    pub closing: Vec<Arc<tokio::sync::watch::Sender<pb::Job>>>,
    /// Each node sent to, with the connection it had: a node that reconnected since gets
    /// nothing (its earlier connection's tasks were requeued when it dropped).
    pub conns: HashMap<NodeId, u64>,
}

pub enum Subscription {
    Live(tokio::sync::watch::Receiver<pb::Job>),
    Done(Box<Result<pb::Job, dockyard_common::error::DockyardError>>),
}

impl Txn {
    /// Runs after the batch is durable.
    pub fn after(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after.push(Box::new(f));
    }
}
