//! Runs one task attempt, in five steps: fetch its inputs (receptor through a per-node
//! cache) and prepare them ([`inputs`]), run the engine in its own scratch folder
//! ([`engine_run`]), upload poses and the log ([`upload`]), and report the result
//! ([`report`]).
//!
//! The scratch folder (`<work>/runs/<task>-a<attempt>`) is removed whatever happens: after a
//! result, a failure, a timeout or a cancellation, when the runner panics, and when the
//! task's future is dropped. The receptor and preparation caches (`<work>/cache`, ...) are
//! outside it and persist. A panic inside the runner fails the attempt (retryable), never
//! the agent.

mod engine_run;
mod inputs;
mod pack;
mod report;
mod scratch;
mod upload;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use dockyard_common::artifact::{sha256_hex, ArtifactKey, ArtifactStore};
use dockyard_common::error::DockyardError;
use dockyard_common::spec::{DockParams, EngineKind};
use dockyard_common::telemetry::trace;
use dockyard_proto::v1 as pb;

use crate::engine::{DockingEngine, EngineError};
use crate::prepare::meeko::MeekoPreparer;
use crate::prepare::Preparer;
use crate::sandbox::{self, SandboxConfig};
use engine_run::EngineTask;
use scratch::{panic_message, Scratch};

pub struct RunnerContext {
    pub engines: HashMap<EngineKind, Arc<dyn DockingEngine>>,
    pub store: Arc<dyn ArtifactStore>,
    pub work_dir: PathBuf,
    /// Open Babel, when this node has it: converts non-PDBQT inputs for Vina.
    pub preparer: Option<Arc<Preparer>>,
    /// Meeko, when this node's Python imports it: prepares ligands of `--prepare meeko` jobs.
    pub meeko: Option<Arc<MeekoPreparer>>,
    cache: Mutex<HashMap<String, Arc<OnceCell<PathBuf>>>>,
    /// Limits of engine runs; the agent-wide configuration unless set with `with_sandbox`.
    sandbox: SandboxConfig,
}

impl RunnerContext {
    pub fn new(engines: Vec<Arc<dyn DockingEngine>>, store: Arc<dyn ArtifactStore>, work_dir: PathBuf) -> Self {
        let engines = engines.into_iter().map(|e| (e.descriptor().kind, e)).collect();
        RunnerContext {
            engines,
            store,
            work_dir,
            preparer: None,
            meeko: None,
            cache: Mutex::new(HashMap::new()),
            sandbox: sandbox::configured(),
        }
    }

    /// Sets the limits of engine runs (instead of the agent-wide `sandbox::configure`).
    #[must_use]
    pub fn with_sandbox(mut self, sandbox: SandboxConfig) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// Adds (or removes) the input preparer.
    #[must_use]
    pub fn with_preparer(mut self, preparer: Option<Arc<Preparer>>) -> Self {
        self.preparer = preparer;
        self
    }

    /// Adds (or removes) the meeko preparer.
    #[must_use]
    pub fn with_meeko(mut self, meeko: Option<Arc<MeekoPreparer>>) -> Self {
        self.meeko = meeko;
        self
    }

    /// A receptor is fetched once per node, however many tasks of the screen land here.
    /// `ext` is the file's format: smina and gnina pick the reader by extension.
    async fn cached(&self, key: &ArtifactKey, ext: &str) -> Result<PathBuf, DockyardError> {
        let cell = {
            let mut m = self.cache.lock().await;
            m.entry(format!("{key}\0{ext}"))
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let path = cell
            .get_or_try_init(|| async {
                let dir = self.work_dir.join("cache");
                tokio::fs::create_dir_all(&dir).await?;
                let p = dir.join(format!("{}.{ext}", sha256_hex(key.as_str().as_bytes())));
                if tokio::fs::metadata(&p).await.is_err() {
                    self.store.get_to_file(key, &p).await?;
                }
                Ok::<_, DockyardError>(p)
            })
            .await?;
        Ok(path.clone())
    }
}

/// Runs the attempt to completion (or cancellation) and always returns a result.
pub async fn run_task(ctx: Arc<RunnerContext>, a: pb::TaskAssignment, cancel: CancellationToken) -> pb::TaskResult {
    let span = info_span!("task", task = %a.task_id, attempt = a.attempt, engine = %a.engine, ligands = a.ligands.len());
    // Under the coordinator's span for this attempt, in the job's trace.
    trace::set_remote_parent(&span, &a.trace_context);
    async move {
        let started = Instant::now();
        // Input-less tasks (the sleep engine) never create one: benchmarks run tens of
        // thousands of them a second.
        let had_files = a.receptor.is_some() || !a.ligands.is_empty();
        let scratch = Scratch {
            path: sandbox::runs_dir(&ctx.work_dir).join(format!("{}-a{}", a.task_id.replace(['/', '.'], "_"), a.attempt)),
            armed: had_files,
        };
        let r = match AssertUnwindSafe(execute(&ctx, &a, &scratch.path, cancel)).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => Err(RunError::Setup {
                retryable: true,
                reason: format!("agent error: the task runner panicked: {}", panic_message(panic.as_ref())),
            }),
        };
        scratch.remove().await;
        // Benchmarks push tens of thousands of test-engine tasks a second: no log line each.
        let quiet = EngineKind::parse(&a.engine).is_ok_and(EngineKind::test_only);
        report::report(&a, r, started.elapsed().as_secs_f64(), quiet)
    }
    .instrument(span)
    .await
}

enum RunError {
    Engine(EngineError),
    Setup { retryable: bool, reason: String },
}

impl From<DockyardError> for RunError {
    fn from(e: DockyardError) -> Self {
        let retryable = !matches!(e, DockyardError::InvalidArgument { .. } | DockyardError::NotFound { .. });
        RunError::Setup {
            retryable,
            reason: e.to_string(),
        }
    }
}

impl From<std::io::Error> for RunError {
    fn from(e: std::io::Error) -> Self {
        let full = matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        RunError::Setup {
            retryable: true,
            reason: if full {
                format!("scratch folder: {e} (the work folder's disk is full)")
            } else {
                format!("scratch folder: {e}")
            },
        }
    }
}

/// The task's engine on this node and its parameters, read from the assignment with the
/// same conversion the coordinator validated them with.
fn engine_task<'a>(ctx: &RunnerContext, a: &'a pb::TaskAssignment) -> Result<EngineTask<'a>, RunError> {
    let found = EngineKind::parse(&a.engine)
        .ok()
        .and_then(|kind| Some((kind, ctx.engines.get(&kind)?.clone())));
    let Some((kind, engine)) = found else {
        return Err(RunError::Setup {
            // Another node may have it; the coordinator should not have sent it here, so retry.
            retryable: true,
            reason: format!("engine '{}' is not available on this node", a.engine),
        });
    };
    // A bad option fails the same way on every node.
    let params = DockParams::from_proto(kind, a.params.as_ref()).map_err(|e| RunError::Setup {
        retryable: false,
        reason: e.to_string(),
    })?;
    Ok(EngineTask { engine, kind, params, a })
}

async fn execute(
    ctx: &RunnerContext,
    a: &pb::TaskAssignment,
    scratch: &Path,
    cancel: CancellationToken,
) -> Result<pb::TaskResult, RunError> {
    // Checked before anything is fetched.
    let task = engine_task(ctx, a)?;
    let kind = task.kind;
    // The phase spans below are held, not entered: they time the phase for the trace while
    // its awaits and logs stay in the task's span. Dropped (ended) where the phase ends.
    let prepare_span = trace::span_if_exporting(|| info_span!("task.prepare", ligands = a.ligands.len()));
    let inputs::Inputs {
        receptor,
        ligands,
        prep_failed,
        notes,
    } = inputs::stage(ctx, a, kind, scratch, &cancel).await?;
    drop(prepare_span);
    if ligands.is_empty() && !prep_failed.is_empty() {
        // Nothing left to dock: running the engine would only compute the receptor grid.
        return Ok(report::succeeded(a, Vec::new(), prep_failed, 0.0, 0.0));
    }
    let work = scratch.join("work");
    // Input-less tasks (the sleep engine) touch no disk at all.
    if a.receptor.is_some() || !a.ligands.is_empty() {
        tokio::fs::create_dir_all(&work).await?;
    }
    let out = task.run(ctx, receptor, ligands, work.clone(), cancel).await?;
    let (cpu_seconds, wall_seconds) = (out.cpu_seconds, out.wall_seconds);
    let upload_span = trace::span_if_exporting(|| info_span!("task.upload"));
    let ligands = upload::upload(ctx, a, kind, out, notes, &work).await?;
    drop(upload_span);
    Ok(report::succeeded(a, ligands, prep_failed, cpu_seconds, wall_seconds))
}

#[cfg(test)]
mod tests;
