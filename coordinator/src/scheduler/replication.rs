//! The replication port: where a batch's job changes and task outcomes go beyond this
//! coordinator's own sled before the batch takes effect. Chosen once at start — the
//! embedded adapter here (one coordinator: nothing to replicate), or the etcd journal
//! (`cluster::replication`) — so the scheduler's rules never ask which mode they run in.

use async_trait::async_trait;

use dockyard_common::error::DockyardError;

use crate::cluster::outcome::SharedWrites;
use crate::store::Store;

#[async_trait]
pub trait Replication: Send + Sync {
    /// The epoch this scheduler's assignments carry, so those of an earlier run (or an
    /// earlier leader) can be told apart. Asked once, at start.
    async fn epoch(&self, store: &Store) -> Result<u64, DockyardError>;

    /// Whether results may be served from this coordinator's result cache. The cache lives
    /// in the local sled, which a failover does not carry over: results served from it would
    /// be results no standby could rebuild.
    fn serves_local_cache(&self) -> bool;

    /// Makes one batch's shared writes durable beyond this process; an error means this
    /// scheduler may no longer act (the caller stops it).
    async fn replicate(&self, writes: SharedWrites) -> Result<(), DockyardError>;
}

/// A single coordinator: its sled is the whole truth.
pub struct Embedded;

#[async_trait]
impl Replication for Embedded {
    /// A local counter, bumped durably once per start.
    async fn epoch(&self, store: &Store) -> Result<u64, DockyardError> {
        store.next_epoch().await
    }

    fn serves_local_cache(&self) -> bool {
        true
    }

    async fn replicate(&self, _writes: SharedWrites) -> Result<(), DockyardError> {
        Ok(())
    }
}
