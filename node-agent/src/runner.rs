//! Runs one task attempt: fetch inputs (receptor through a per-node cache), run the engine in
//! its own scratch folder, upload poses and the log, build the result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use dockyard_common::artifact::{sha256_hex, ArtifactKey, ArtifactStore};
use dockyard_common::error::DockyardError;
use dockyard_proto::v1 as pb;

use crate::engine::{DockingEngine, EngineError, EngineRun, LigandFile};

pub struct RunnerContext {
    pub engines: HashMap<String, Arc<dyn DockingEngine>>,
    pub store: Arc<dyn ArtifactStore>,
    pub work_dir: PathBuf,
    cache: Mutex<HashMap<String, Arc<OnceCell<PathBuf>>>>,
}

impl RunnerContext {
    pub fn new(engines: Vec<Arc<dyn DockingEngine>>, store: Arc<dyn ArtifactStore>, work_dir: PathBuf) -> Self {
        let engines = engines.into_iter().map(|e| (e.descriptor().name.clone(), e)).collect();
        RunnerContext {
            engines,
            store,
            work_dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A receptor is fetched once per node, however many tasks of the screen land here.
    async fn cached(&self, key: &ArtifactKey) -> Result<PathBuf, DockyardError> {
        let cell = {
            let mut m = self.cache.lock().await;
            m.entry(key.to_string()).or_insert_with(|| Arc::new(OnceCell::new())).clone()
        };
        let path = cell
            .get_or_try_init(|| async {
                let dir = self.work_dir.join("cache");
                tokio::fs::create_dir_all(&dir).await?;
                let p = dir.join(format!("{}.pdbqt", sha256_hex(key.as_str().as_bytes())));
                if tokio::fs::metadata(&p).await.is_err() {
                    self.store.get_to_file(key, &p).await?;
                }
                Ok::<_, DockyardError>(p)
            })
            .await?;
        Ok(path.clone())
    }
}

fn failed(a: &pb::TaskAssignment, retryable: bool, reason: String, wall: f64) -> pb::TaskResult {
    pb::TaskResult {
        task_id: a.task_id.clone(),
        attempt: a.attempt,
        epoch: a.epoch,
        outcome: Some(pb::task_result::Outcome::Failed(pb::TaskFailure { retryable, reason })),
        cpu_seconds: 0.0,
        wall_seconds: wall,
    }
}

/// Runs the attempt to completion (or cancellation) and always returns a result.
pub async fn run_task(ctx: Arc<RunnerContext>, a: pb::TaskAssignment, cancel: CancellationToken) -> pb::TaskResult {
    let span = info_span!("task", task = %a.task_id, attempt = a.attempt, engine = %a.engine, ligands = a.ligands.len());
    async move {
        let started = Instant::now();
        let scratch = ctx
            .work_dir
            .join("runs")
            .join(format!("{}-a{}", a.task_id.replace(['/', '.'], "_"), a.attempt));
        let r = execute(&ctx, &a, &scratch, cancel).await;
        let had_files = a.receptor.is_some() || !a.ligands.is_empty();
        if let Err(e) = if had_files {
            tokio::fs::remove_dir_all(&scratch).await
        } else {
            Ok(())
        } {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(error = %e, dir = %scratch.display(), "cannot remove scratch folder");
            }
        }
        let wall = started.elapsed().as_secs_f64();
        match r {
            Ok(mut res) => {
                res.wall_seconds = wall;
                if a.engine == "sleep" {
                    // Benchmarks push tens of thousands of these a second.
                    tracing::debug!(wall_s = wall, "task finished");
                } else {
                    info!(wall_s = wall, "task finished");
                }
                res
            }
            Err(RunError::Engine(EngineError::Cancelled)) => {
                // Either the coordinator cancelled it (it drops this attempt's result anyway)
                // or this agent is leaving: then the task is handed back, not failed.
                info!("task cancelled; handing it back");
                failed(&a, true, "handed back: cancelled on the agent".into(), wall)
            }
            Err(RunError::Engine(e)) => {
                warn!(error = %e, retryable = e.retryable(), "task failed");
                failed(&a, e.retryable(), e.to_string(), wall)
            }
            Err(RunError::Setup { retryable, reason }) => {
                warn!(%reason, retryable, "task could not run");
                failed(&a, retryable, reason, wall)
            }
        }
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
        RunError::Setup {
            retryable: true,
            reason: format!("scratch folder: {e}"),
        }
    }
}

async fn execute(
    ctx: &RunnerContext,
    a: &pb::TaskAssignment,
    scratch: &Path,
    cancel: CancellationToken,
) -> Result<pb::TaskResult, RunError> {
    let engine = ctx.engines.get(&a.engine).cloned().ok_or_else(|| RunError::Setup {
        // Another node may have it; the coordinator should not have sent it here, so retry.
        retryable: true,
        reason: format!("engine '{}' is not available on this node", a.engine),
    })?;
    // Input-less tasks (the sleep engine) touch no disk at all.
    let needs_files = a.receptor.is_some() || !a.ligands.is_empty();
    if needs_files {
        tokio::fs::create_dir_all(scratch.join("in")).await?;
    }
    let receptor = match &a.receptor {
        Some(r) => Some(ctx.cached(&ArtifactKey::new(r.key.as_str())?).await?),
        None => None,
    };
    let mut ligands = Vec::with_capacity(a.ligands.len());
    for l in &a.ligands {
        let Some(art) = &l.artifact else { continue };
        let path = scratch.join("in").join(format!("input_{}.pdbqt", l.index));
        ctx.store.get_to_file(&ArtifactKey::new(art.key.as_str())?, &path).await?;
        ligands.push(LigandFile {
            index: l.index,
            name: l.name.clone(),
            path,
        });
    }
    let b = a.r#box.unwrap_or_default();
    let c = b.center.unwrap_or_default();
    let s = b.size.unwrap_or_default();
    let p = a.params.unwrap_or_default();
    let work = scratch.join("work");
    if needs_files {
        tokio::fs::create_dir_all(&work).await?;
    }
    let run = EngineRun {
        task_id: a.task_id.clone(),
        receptor,
        ligands,
        center: [c.x, c.y, c.z],
        size: [s.x, s.y, s.z],
        exhaustiveness: p.exhaustiveness,
        num_modes: p.num_modes,
        seed: p.seed,
        energy_range: p.energy_range,
        sleep_ms: p.sleep_ms,
        work_dir: work,
        cpu: a.cpu_slots.max(1),
        timeout: Duration::from_secs(u64::from(a.timeout_s.max(1))),
        cancel,
    };
    let out = engine.run(run).await.map_err(RunError::Engine)?;
    let log_key = match &out.log_file {
        Some(f) if !a.output_prefix.is_empty() => {
            let k = ArtifactKey::new(format!("{}engine.log", a.output_prefix))?;
            ctx.store.put_file(&k, f).await?;
            k.to_string()
        }
        _ => String::new(),
    };
    let mut ligands = Vec::with_capacity(out.ligands.len());
    for l in out.ligands {
        let outcome = match l.result {
            Ok(d) => {
                let k = ArtifactKey::new(format!("{}lig_{}.pdbqt", a.output_prefix, l.index))?;
                ctx.store.put_file(&k, &d.pose_file).await?;
                pb::LigandOutcome {
                    index: l.index,
                    name: l.name,
                    error: String::new(),
                    best_score: d.best_score,
                    poses: d
                        .poses
                        .iter()
                        .map(|p| pb::Pose {
                            rank: p.rank,
                            affinity: p.affinity,
                            rmsd_lb: p.rmsd_lb,
                            rmsd_ub: p.rmsd_ub,
                        })
                        .collect(),
                    pose_key: k.to_string(),
                    log_key: log_key.clone(),
                }
            }
            Err(reason) => pb::LigandOutcome {
                index: l.index,
                name: l.name,
                error: reason,
                log_key: log_key.clone(),
                ..Default::default()
            },
        };
        ligands.push(outcome);
    }
    Ok(pb::TaskResult {
        task_id: a.task_id.clone(),
        attempt: a.attempt,
        epoch: a.epoch,
        outcome: Some(pb::task_result::Outcome::Ok(pb::TaskSuccess { ligands })),
        cpu_seconds: out.cpu_seconds,
        wall_seconds: out.wall_seconds,
    })
}
