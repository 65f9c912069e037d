//! Backup and restore of what a coordinator owns (README.md: "Backup and
//! restore"). A snapshot is one point in the commit order: the scheduler's records copied
//! between two group commits, plus the tenants (tokens by hash, quotas), written to a
//! `file://` or `s3://` location with a manifest (`format.rs`). `take.rs` writes one,
//! `catalog.rs` finds and prunes them, `restore.rs` brings one back into an empty data
//! folder (and, in cluster mode, an empty etcd prefix, `etcd_part.rs`), `schedule.rs` runs
//! them on the leader.

pub mod catalog;
pub mod etcd_part;
pub mod format;
pub mod restore;
pub mod schedule;
pub mod take;

use std::sync::Arc;

use tokio::sync::watch;

use dockyard_common::artifact;
use dockyard_common::cluster::EtcdSettings;
use dockyard_common::error::DockyardError;

use crate::cluster::election::LeaderView;
use crate::metrics::CoordinatorMetrics;
use crate::scheduler::SchedulerHandle;
use crate::store::Store;

pub use format::Manifest;

/// What a backup needs from the running coordinator; shared by the admin call and the
/// schedule.
pub struct Backups {
    pub scheduler: SchedulerHandle,
    pub store: Store,
    pub coordinator_id: String,
    /// Cluster mode: the etcd keys the coordinators own go in the snapshot too.
    pub etcd: Option<EtcdSettings>,
    /// Who leads: only the leader's scheduler can be asked for its records.
    pub leader: watch::Receiver<LeaderView>,
    pub metrics: Arc<CoordinatorMetrics>,
}

impl Backups {
    /// Writes one snapshot under `to`; returns its manifest, its folder's URI and the
    /// seconds it took.
    pub async fn backup(&self, to: &str) -> Result<(Manifest, String, f64), DockyardError> {
        if !self.is_leader() {
            return Err(DockyardError::FailedPrecondition(
                "this coordinator is a standby: ask the leader for a backup".into(),
            ));
        }
        match self.write(to).await {
            Ok((m, secs)) => {
                let bytes = m.parts.iter().map(|p| p.bytes).sum();
                self.metrics.backup.succeeded(m.created_unix_ms, bytes, m.pause_ms);
                let uri = format!("{}/{}", to.trim_end_matches('/'), m.id);
                Ok((m, uri, secs))
            }
            Err(e) => {
                self.metrics.backup.failed();
                Err(e)
            }
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.borrow().this_is_leader
    }

    async fn write(&self, to: &str) -> Result<(Manifest, f64), DockyardError> {
        let target = artifact::open(to).await?;
        take::take(
            take::Source {
                scheduler: &self.scheduler,
                store: &self.store,
                coordinator_id: &self.coordinator_id,
                etcd: self.etcd.as_ref(),
            },
            &target,
        )
        .await
    }
}
