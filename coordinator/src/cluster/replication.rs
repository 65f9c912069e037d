//! The replication port's etcd adapter: every batch's shared writes go through the fenced
//! journal, and the election's epoch stamps assignments.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;

use dockyard_common::error::DockyardError;

use super::journal::{Journal, JournalError};
use super::outcome::SharedWrites;
use crate::scheduler::Replication;
use crate::store::Store;

pub struct EtcdReplication {
    journal: Journal,
}

impl EtcdReplication {
    pub fn new(journal: Journal) -> Self {
        EtcdReplication { journal }
    }
}

#[async_trait]
impl Replication for EtcdReplication {
    /// The election key's create revision: it grows with every new leader.
    async fn epoch(&self, _store: &Store) -> Result<u64, DockyardError> {
        Ok(self.journal.epoch())
    }

    fn serves_local_cache(&self) -> bool {
        false
    }

    async fn replicate(&self, writes: SharedWrites) -> Result<(), DockyardError> {
        self.journal.commit(writes).await.map_err(|e| match e {
            JournalError::Fenced(_) => DockyardError::Unavailable(e.to_string()),
            JournalError::Failed(e) => e,
        })
    }

    fn position(&self) -> Option<Arc<AtomicU64>> {
        Some(self.journal.revision())
    }
}
