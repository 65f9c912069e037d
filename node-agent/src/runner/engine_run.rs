//! Step 3 of a task: run its engine on the staged inputs, within the node's limits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use dockyard_common::spec::{DockParams, EngineKind};
use dockyard_common::telemetry::trace;
use dockyard_proto::v1 as pb;

use super::{RunError, RunnerContext};
use crate::engine::process::with_limits;
use crate::engine::{DockingEngine, EngineOutput, EngineRun, LigandFile};

/// The task's engine, its run settings and the threads it gets.
pub(super) struct EngineTask<'a> {
    pub engine: Arc<dyn DockingEngine>,
    pub kind: EngineKind,
    pub params: DockParams,
    pub a: &'a pb::TaskAssignment,
}

impl EngineTask<'_> {
    /// The task's cores: the engine's threads (`--cpu`, `OMP_NUM_THREADS`).
    pub fn cpus(&self) -> u32 {
        self.a.cpu_slots.max(1)
    }

    pub async fn run(
        self,
        ctx: &RunnerContext,
        receptor: Option<PathBuf>,
        ligands: Vec<LigandFile>,
        work: PathBuf,
        cancel: CancellationToken,
    ) -> Result<EngineOutput, RunError> {
        let a = self.a;
        let b = a.r#box.unwrap_or_default();
        let c = b.center.unwrap_or_default();
        let s = b.size.unwrap_or_default();
        let cpus = self.cpus();
        let run = EngineRun {
            task_id: a.task_id.clone(),
            receptor,
            ligands,
            center: [c.x, c.y, c.z],
            size: [s.x, s.y, s.z],
            params: self.params,
            gpus: a.gpu_indices.clone(),
            work_dir: work,
            cpu: cpus,
            timeout: Duration::from_secs(u64::from(a.timeout_s.max(1))),
            cancel,
        };
        // The node's limits on this task's engine processes (see `sandbox::SandboxConfig`);
        // an engine that may open CUDA without a GPU assigned counts as a GPU engine.
        let gpu_engine = self.kind.traits().may_use_cuda || !a.gpu_indices.is_empty();
        let limits = ctx.sandbox.limits_for(a.memory_bytes, cpus, gpu_engine);
        with_limits(limits, self.engine.run(run))
            .instrument(trace::span_if_exporting(|| info_span!("task.engine")))
            .await
            .map_err(RunError::Engine)
    }
}
