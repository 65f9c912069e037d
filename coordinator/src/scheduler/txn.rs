//! One group commit: the writes of a batch of events, and the side effects (replies,
//! assignments) that may only happen once those writes are on disk.

use std::collections::{BTreeSet, HashMap};

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
}

impl Txn {
    /// Runs after the batch is durable.
    pub fn after(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after.push(Box::new(f));
    }
}
