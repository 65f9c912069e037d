//! `--backup-every`: snapshots on a timer, old ones pruned to `--backup-keep`. A failure is
//! logged with its reason and retried sooner (a minute, or the interval if shorter); it never
//! leaves a snapshot under a final name, since the manifest is written last.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, Instrument};

use dockyard_common::artifact;

use super::{catalog, Backups};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    pub to: String,
    pub keep: usize,
}

pub async fn run(backups: Arc<Backups>, s: Schedule, shutdown: CancellationToken) {
    let retry = s.every.min(Duration::from_secs(60));
    let mut wait = s.every;
    info!(every_s = s.every.as_secs_f64(), to = %s.to, keep = s.keep, "scheduled backups on");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        // Every coordinator runs the timer; only the leader's fires, so a failover moves
        // the schedule with the leadership.
        if !backups.is_leader() {
            wait = s.every;
            continue;
        }
        let outcome = async {
            let (m, uri, secs) = backups.backup(&s.to).await?;
            let target = artifact::open(&s.to).await?;
            let pruned = catalog::prune(&target, s.keep).await?;
            info!(snapshot = %m.id, %uri, seconds = secs, pruned, "scheduled backup done");
            Ok::<_, dockyard_common::error::DockyardError>(())
        }
        .instrument(info_span!("backup", to = %s.to))
        .await;
        wait = match outcome {
            Ok(()) => s.every,
            Err(e) => {
                error!(error = %e, retry_in_s = retry.as_secs_f64(), "scheduled backup failed");
                retry
            }
        };
    }
}
