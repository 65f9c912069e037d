//! The port through which the autoscaler starts and stops agents. Slurm is the adapter
//! here (`slurm.rs`); Kubernetes scales through KEDA on the coordinator's queue-depth
//! series instead (deploy/k8s/keda-scaledobject.yaml), so it needs none.

use anyhow::Result;

use super::config::Pool;
use super::plan::JobPhase;

/// One agent job the provisioner holds for a pool.
#[derive(Clone, Debug)]
pub struct ProvisionedJob {
    pub id: String,
    pub phase: JobPhase,
}

pub trait Provisioner {
    /// Every live job of `pool` (pending or running), read from the provisioner itself.
    async fn list(&self, pool: &Pool) -> Result<Vec<ProvisionedJob>>;
    /// Starts one agent job; returns its id.
    async fn submit(&self, pool: &Pool) -> Result<String>;
    /// Stops one job; a running agent gets SIGTERM and leaves with GoingAway.
    async fn cancel(&self, job: &str) -> Result<()>;
}
