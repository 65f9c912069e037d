//! The replication port: where a batch's job changes and task outcomes go beyond this
//! coordinator's own sled before the batch takes effect. Chosen once at start — the
//! embedded adapter here (one coordinator: nothing to replicate), or the etcd journal
//! (`cluster::replication`) — so the scheduler's rules never ask which mode they run in.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

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

    /// Where the replicated state stands after the last batch (etcd's revision), for a
    /// backup to read it as of the same commit; `None` when nothing is replicated.
    fn position(&self) -> Option<Arc<AtomicU64>> {
        None
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use dockyard_common::ids::JobId;

    use super::super::tests::sleep_job;
    use super::super::{channel, start, Command, SchedulerConfig};
    use super::*;
    use crate::fatal::{Fatal, EXIT_DEPOSED};

    /// A leader whose replication is refused (fenced off by a newer one).
    struct Fenced;

    #[async_trait]
    impl Replication for Fenced {
        async fn epoch(&self, _store: &Store) -> Result<u64, DockyardError> {
            Ok(7)
        }

        fn serves_local_cache(&self) -> bool {
            false
        }

        async fn replicate(&self, _writes: SharedWrites) -> Result<(), DockyardError> {
            Err(DockyardError::Unavailable("fenced off".into()))
        }
    }

    #[tokio::test]
    async fn a_refused_replication_stops_the_actor_before_anything_is_acknowledged() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let (h, rx) = channel();
        let join = start(
            rx,
            store.clone(),
            SchedulerConfig::default(),
            Arc::new(Fenced),
            CancellationToken::new(),
        )
        .await
        .expect("start");
        let job = JobId::parse(&format!("{:020x}", 1)).expect("id");
        let answer = h
            .ask(|reply| Command::Submit {
                job: job.clone(),
                spec: Box::new(sleep_job("a", 3, 0)),
                skipped: Vec::new(),
                reply,
            })
            .await;
        assert!(
            answer.is_err(),
            "a job was acknowledged although it was never replicated: {answer:?}"
        );
        let ended = join.await.expect("the actor returned");
        let fatal = ended.expect_err("the actor must stop with an error");
        assert!(matches!(fatal, Fatal::Deposed(_)), "{fatal:?}");
        assert_eq!(fatal.exit_code(), EXIT_DEPOSED);
        assert!(store.spec(&job).expect("read").is_none(), "nothing of the batch reached sled");
    }
}
