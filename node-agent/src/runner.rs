//! Runs one task attempt: fetch inputs (receptor through a per-node cache), run the engine in
//! its own scratch folder, upload poses and the log, build the result.
//!
//! The scratch folder (`<work>/runs/<task>-a<attempt>`) is removed whatever happens: after a
//! result, a failure, a timeout or a cancellation, when the runner panics, and when the
//! task's future is dropped. The receptor and preparation caches (`<work>/cache`, ...) are
//! outside it and persist. A panic inside the runner fails the attempt (retryable), never
//! the agent.

mod pack;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use dockyard_common::artifact::{sha256_hex, ArtifactKey, ArtifactStore, TaskFile};
use dockyard_common::error::DockyardError;
use dockyard_common::telemetry::trace;
use dockyard_proto::v1 as pb;

use crate::engine::gnina::{CnnScoring, GninaOptions};
use crate::engine::process::with_limits;
use crate::engine::sdf_scores::parse_sdf_scores;
use crate::engine::smina::{SminaMode, SminaOptions};
use crate::engine::{DockingEngine, EngineError, EngineRun, GninaEngine, LigandFile, SminaEngine};
use crate::prepare::{PrepareError, Preparer};
use crate::sandbox::{self, SandboxConfig};

pub struct RunnerContext {
    pub engines: HashMap<String, Arc<dyn DockingEngine>>,
    pub store: Arc<dyn ArtifactStore>,
    pub work_dir: PathBuf,
    /// Open Babel, when this node has it: converts non-PDBQT inputs for Vina.
    pub preparer: Option<Arc<Preparer>>,
    /// Program paths of the SDF engines (smina, gnina) where they are not the engine's name
    /// on PATH; see [`RunnerContext::with_engine_program`].
    programs: HashMap<String, PathBuf>,
    cache: Mutex<HashMap<String, Arc<OnceCell<PathBuf>>>>,
    /// Limits of engine runs; the agent-wide configuration unless set with `with_sandbox`.
    sandbox: SandboxConfig,
}

impl RunnerContext {
    pub fn new(engines: Vec<Arc<dyn DockingEngine>>, store: Arc<dyn ArtifactStore>, work_dir: PathBuf) -> Self {
        let engines = engines.into_iter().map(|e| (e.descriptor().name.clone(), e)).collect();
        RunnerContext {
            engines,
            store,
            work_dir,
            preparer: None,
            programs: HashMap::new(),
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

    /// Sets the program that runs engine `name` ("smina" or "gnina") for tasks that carry
    /// per-task options. Without it the program is `name` itself, looked up on PATH, which
    /// is what `probe_engines` probed when no path was configured.
    #[must_use]
    pub fn with_engine_program(mut self, name: &str, program: PathBuf) -> Self {
        self.programs.insert(name.to_string(), program);
        self
    }

    fn program(&self, name: &str) -> PathBuf {
        self.programs.get(name).cloned().unwrap_or_else(|| PathBuf::from(name))
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

/// A task attempt's scratch folder; removed by [`Scratch::remove`], or when dropped.
struct Scratch {
    path: PathBuf,
    /// Whether there is anything to remove.
    armed: bool,
}

impl Scratch {
    async fn remove(mut self) {
        if !std::mem::take(&mut self.armed) {
            return;
        }
        match tokio::fs::remove_dir_all(&self.path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(error = %e, dir = %self.path.display(), "cannot remove scratch folder"),
        }
    }
}

impl Drop for Scratch {
    /// The task's future was dropped (the agent is shutting down) before `remove`: a
    /// blocking removal, as nothing can be awaited here.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(error = %e, dir = %self.path.display(), "cannot remove scratch folder"),
        }
    }
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
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
    let p = a.params.clone().unwrap_or_default();
    // Checked before anything is fetched: a bad option fails the same way on every node.
    let options = task_options(&a.engine, &p, &a.gpu_indices).map_err(|reason| RunError::Setup { retryable: false, reason })?;
    // Input-less tasks (the sleep engine) touch no disk at all.
    let needs_files = a.receptor.is_some() || !a.ligands.is_empty();
    if needs_files {
        tokio::fs::create_dir_all(scratch.join("in")).await?;
    }
    // Vina reads only PDBQT; smina and gnina read the other formats themselves.
    let prepare_inputs = a.engine == "vina";
    let no_tool = || RunError::Setup {
        // Another node may have obabel; the coordinator should not have sent it here.
        retryable: true,
        reason: "this node has no preparation tool (install openbabel)".into(),
    };
    // The phase spans below are held, not entered: they time the phase for the trace while
    // its awaits and logs stay in the task's span. Dropped (ended) where the phase ends.
    let prepare_span = trace::span_if_exporting(|| info_span!("task.prepare", ligands = a.ligands.len()));
    let mut receptor_prep = None;
    let receptor = match &a.receptor {
        Some(r) => {
            let fmt = input_format(&r.format).map_err(|reason| RunError::Setup {
                retryable: false,
                reason: format!("receptor: {reason}"),
            })?;
            let path = ctx.cached(&ArtifactKey::new(r.key.as_str())?, fmt).await?;
            if prepare_inputs && fmt != "pdbqt" {
                let prep = ctx.preparer.as_ref().ok_or_else(no_tool)?;
                let prepared = cancellable(&cancel, prep.receptor_to_pdbqt(&path, fmt))
                    .await?
                    .map_err(|e| RunError::Setup {
                        retryable: e.retryable(),
                        reason: format!("receptor preparation failed: {e}"),
                    })?;
                receptor_prep = Some(prep.describe_receptor(fmt));
                Some(prepared)
            } else {
                Some(path)
            }
        }
        None => None,
    };
    // Ligands that could not be prepared: reported alone, the others still dock.
    let mut prep_failed: Vec<pb::LigandOutcome> = Vec::new();
    // Per ligand index: SMILES (when given as SMILES) and how it was prepared.
    let mut notes: HashMap<u32, (String, String)> = HashMap::new();
    let mut ligands = Vec::with_capacity(a.ligands.len());
    for l in &a.ligands {
        let Some(art) = &l.artifact else { continue };
        let fmt = match input_format(&art.format) {
            Ok(f) => f,
            Err(reason) => {
                prep_failed.push(pb::LigandOutcome {
                    index: l.index,
                    name: l.name.clone(),
                    error: format!("preparation failed: {reason}"),
                    ..Default::default()
                });
                continue;
            }
        };
        let path = scratch.join("in").join(format!("input_{}.{fmt}", l.index));
        let key = ArtifactKey::new(art.key.as_str())?;
        match art.offset {
            Some(offset) => pack::slice_to_file(&ctx.cached(&key, "pack").await?, offset, art.size, &path).await?,
            None => {
                ctx.store.get_to_file(&key, &path).await?;
            }
        }
        let smiles = if fmt == "smi" { first_token(&path).await } else { String::new() };
        let mut preparation = if fmt == "pdbqt" {
            "none (pdbqt given)".to_string()
        } else if !prepare_inputs {
            format!("none ({fmt} given to {})", a.engine)
        } else {
            String::new()
        };
        let path = if prepare_inputs && fmt != "pdbqt" {
            let prep = ctx.preparer.as_ref().ok_or_else(no_tool)?;
            match cancellable(&cancel, prep.ligand_to_pdbqt(&path, fmt)).await? {
                Ok(prepared) => {
                    // A private copy: the cached file is shared with other tasks.
                    let staged = scratch.join("in").join(format!("input_{}.pdbqt", l.index));
                    tokio::fs::copy(&prepared, &staged).await?;
                    preparation = prep.describe(fmt);
                    staged
                }
                Err(e) => {
                    warn!(ligand = l.index, error = %e, retryable = e.retryable(), "ligand preparation failed");
                    prep_failed.push(pb::LigandOutcome {
                        index: l.index,
                        name: l.name.clone(),
                        error: format!("preparation failed: {e}"),
                        smiles,
                        ..Default::default()
                    });
                    continue;
                }
            }
        } else {
            path
        };
        if let Some(r) = &receptor_prep {
            preparation = format!("{preparation}; receptor: {r}");
        }
        notes.insert(l.index, (smiles, preparation));
        ligands.push(LigandFile {
            index: l.index,
            name: l.name.clone(),
            path,
        });
    }
    drop(prepare_span);
    if ligands.is_empty() && !prep_failed.is_empty() {
        // Nothing left to dock: running the engine would only compute the receptor grid.
        prep_failed.sort_by_key(|o| o.index);
        return Ok(pb::TaskResult {
            task_id: a.task_id.clone(),
            attempt: a.attempt,
            epoch: a.epoch,
            outcome: Some(pb::task_result::Outcome::Ok(pb::TaskSuccess { ligands: prep_failed })),
            cpu_seconds: 0.0,
            wall_seconds: 0.0,
        });
    }
    let b = a.r#box.unwrap_or_default();
    let c = b.center.unwrap_or_default();
    let s = b.size.unwrap_or_default();
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
        work_dir: work.clone(),
        cpu: a.cpu_slots.max(1),
        timeout: Duration::from_secs(u64::from(a.timeout_s.max(1))),
        cancel,
    };
    // The per-task options of smina and gnina have no field in `EngineRun`, and the engines
    // are held as `dyn DockingEngine` (built by `probe_engines`, not downcastable), so the
    // runner builds a typed engine per task, with the probed engine's version and the same
    // program the probe used (the name on PATH, or `with_engine_program`), and calls
    // `run_with`. Building one is free: no process is started until the run.
    let version = engine.descriptor().version.clone();
    // The node's limits on this task's engine processes (see `sandbox::SandboxConfig`);
    // gnina may use CUDA even without a GPU assigned, so it counts as a GPU engine.
    let gpu_engine = a.engine == "gnina" || !a.gpu_indices.is_empty();
    let limits = ctx.sandbox.limits_for(a.memory_bytes, a.cpu_slots.max(1), gpu_engine);
    let out = with_limits(limits, async {
        match &options {
            TaskOptions::Smina(opts) => SminaEngine::new(ctx.program("smina"), version).run_with(run, opts).await,
            TaskOptions::Gnina(opts) => GninaEngine::new(ctx.program("gnina"), version).run_with(run, opts).await,
            TaskOptions::Plain => engine.run(run).await,
        }
    })
    .instrument(trace::span_if_exporting(|| info_span!("task.engine")))
    .await
    .map_err(RunError::Engine)?;
    // smina and gnina write SDF poses with their scores as data items.
    let sdf_poses = matches!(options, TaskOptions::Smina(_) | TaskOptions::Gnina(_));
    let upload_span = trace::span_if_exporting(|| info_span!("task.upload"));
    let log_key = match &out.log_file {
        Some(f) if !a.output_prefix.is_empty() => {
            let k = ArtifactKey::task_file(&a.output_prefix, TaskFile::EngineLog)?;
            ctx.store.put_file(&k, f).await?;
            k.to_string()
        }
        _ => String::new(),
    };
    // Vina writes PDBQT only; an SDF copy is what most downstream tools read.
    let export_sdf = if prepare_inputs { ctx.preparer.as_deref() } else { None };
    let mut ligands = Vec::with_capacity(out.ligands.len() + prep_failed.len());
    for l in out.ligands {
        let (smiles, preparation) = notes.remove(&l.index).unwrap_or_default();
        let outcome = match l.result {
            Ok(d) => {
                let k = ArtifactKey::task_file(&a.output_prefix, TaskFile::PosesPdbqt(l.index))?;
                ctx.store.put_file(&k, &d.pose_file).await?;
                let sdf_key = if sdf_poses {
                    // Already SDF: stored as is under the SDF name too.
                    let k = ArtifactKey::task_file(&a.output_prefix, TaskFile::PosesSdf(l.index))?;
                    ctx.store.put_file(&k, &d.pose_file).await?;
                    k.to_string()
                } else {
                    match export_sdf {
                        Some(prep) => export_poses_sdf(ctx, prep, &d.pose_file, &work, &a.output_prefix, l.index).await,
                        None => String::new(),
                    }
                };
                let fields = if sdf_poses {
                    best_pose_fields_of(&d.pose_file, l.index).await
                } else if a.engine == "vina" && d.best_score.is_finite() {
                    HashMap::from([("vina_affinity".to_string(), d.best_score)])
                } else {
                    HashMap::new()
                };
                pb::LigandOutcome {
                    index: l.index,
                    name: l.name,
                    error: String::new(),
                    best_score: d.best_score,
                    poses: d.poses.iter().map(pb::Pose::from).collect(),
                    pose_key: k.to_string(),
                    log_key: log_key.clone(),
                    sdf_key,
                    smiles,
                    preparation,
                    fields,
                }
            }
            Err(reason) => pb::LigandOutcome {
                index: l.index,
                name: l.name,
                error: reason,
                log_key: log_key.clone(),
                smiles,
                preparation,
                ..Default::default()
            },
        };
        ligands.push(outcome);
    }
    drop(upload_span);
    if !prep_failed.is_empty() {
        ligands.extend(prep_failed);
        ligands.sort_by_key(|o| o.index);
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

/// How the engine of a task is run.
#[derive(Debug, Clone, PartialEq)]
enum TaskOptions {
    /// Through the `DockingEngine` trait (vina, sleep): nothing beyond `EngineRun`.
    Plain,
    Smina(SminaOptions),
    Gnina(GninaOptions),
}

/// Maps the task's engine parameters to the engine's options. `Err` is the reason the task
/// fails permanently (an option no node can honour).
fn task_options(engine: &str, p: &pb::EngineParams, gpu_indices: &[u32]) -> Result<TaskOptions, String> {
    match engine {
        "smina" => smina_options(p).map(TaskOptions::Smina),
        "gnina" => {
            let cnn_scoring = match p.cnn_scoring.trim() {
                "" => None,
                "none" => Some(CnnScoring::None),
                "rescore" => Some(CnnScoring::Rescore),
                "refinement" => Some(CnnScoring::Refinement),
                "metrorescore" => Some(CnnScoring::MetroRescore),
                "metrorefine" => Some(CnnScoring::MetroRefine),
                "all" => Some(CnnScoring::All),
                other => return Err(format!("unsupported cnn_scoring '{other}'")),
            };
            let cnn = Some(p.cnn_model.trim()).filter(|m| !m.is_empty()).map(str::to_string);
            Ok(TaskOptions::Gnina(GninaOptions {
                base: smina_options(p)?,
                cnn_scoring,
                cnn,
                cnn_model: None,
                // gnina hides the other GPUs itself (CUDA_VISIBLE_DEVICES, see `gnina::child_env`).
                device: gpu_indices.first().copied(),
                no_gpu: p.no_gpu,
            }))
        }
        "vina" => {
            // VinaEngine has no scoring option: it always uses the vina function.
            let scoring = p.scoring.trim();
            if !scoring.is_empty() && scoring != "vina" {
                return Err(format!("scoring '{scoring}' is not supported by the vina engine on this node"));
            }
            Ok(TaskOptions::Plain)
        }
        _ => Ok(TaskOptions::Plain),
    }
}

/// The options smina and gnina share.
fn smina_options(p: &pb::EngineParams) -> Result<SminaOptions, String> {
    let mode = match p.mode.trim() {
        "" | "dock" => SminaMode::Dock,
        "minimize" => SminaMode::Minimize,
        "score_only" => SminaMode::ScoreOnly,
        "local_only" => SminaMode::LocalOnly,
        other => return Err(format!("unsupported mode '{other}'")),
    };
    let scoring = Some(p.scoring.trim()).filter(|s| !s.is_empty()).map(str::to_string);
    Ok(SminaOptions {
        scoring,
        mode,
        ..SminaOptions::default()
    })
}

/// The engine's data items for the first (best) pose in a smina/gnina SDF pose file.
fn best_pose_fields(text: &str) -> Result<HashMap<String, f64>, String> {
    let ligands = parse_sdf_scores(text).map_err(|e| e.to_string())?;
    let pose = ligands
        .first()
        .and_then(|l| l.poses.first())
        .ok_or_else(|| "no poses".to_string())?;
    let mut fields = HashMap::from([("minimizedAffinity".to_string(), pose.affinity)]);
    for (name, value) in [
        ("minimizedRMSD", pose.rmsd),
        ("CNNscore", pose.cnn_score),
        ("CNNaffinity", pose.cnn_affinity),
        ("CNN_VS", pose.cnn_vs),
        ("CNNaffinity_variance", pose.cnn_variance),
    ] {
        if let Some(v) = value {
            fields.insert(name.to_string(), v);
        }
    }
    Ok(fields)
}

/// [`best_pose_fields`] of a pose file; empty (and a warning) when it cannot be read, as
/// the poses themselves are the result.
async fn best_pose_fields_of(pose_file: &Path, index: u32) -> HashMap<String, f64> {
    let res = match tokio::fs::read_to_string(pose_file).await {
        Ok(text) => best_pose_fields(&text),
        Err(e) => Err(e.to_string()),
    };
    res.unwrap_or_else(|e| {
        warn!(ligand = index, error = %e, file = %pose_file.display(), "cannot read the pose scores");
        HashMap::new()
    })
}

/// The format named in an `ArtifactRef`, checked against the ones this agent knows (it also
/// becomes a file extension, so nothing else may pass).
fn input_format(format: &str) -> Result<&'static str, String> {
    match format.trim().to_ascii_lowercase().as_str() {
        "" | "pdbqt" => Ok("pdbqt"),
        "sdf" => Ok("sdf"),
        "mol2" => Ok("mol2"),
        "smi" => Ok("smi"),
        "pdb" => Ok("pdb"),
        other => Err(format!("unknown input format '{other}'")),
    }
}

/// The SMILES of a one-line `SMILES name` file.
async fn first_token(path: &Path) -> String {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => text.split_whitespace().next().unwrap_or_default().to_string(),
        Err(_) => String::new(),
    }
}

/// Stops a preparation when the task is cancelled (dropping it kills obabel's group).
async fn cancellable<T>(cancel: &CancellationToken, fut: impl std::future::Future<Output = T>) -> Result<T, RunError> {
    tokio::select! {
        r = fut => Ok(r),
        () = cancel.cancelled() => Err(RunError::Engine(EngineError::Cancelled)),
    }
}

/// Converts and uploads one ligand's poses as SDF; returns its key, or "" when that fails
/// (the PDBQT poses are the result; the SDF is a convenience).
async fn export_poses_sdf(ctx: &RunnerContext, prep: &Preparer, pose_file: &Path, work: &Path, prefix: &str, index: u32) -> String {
    let sdf = work.join(format!("lig_{index}.sdf"));
    let res: Result<String, String> = async {
        prep.pdbqt_to_sdf(pose_file, &sdf).await.map_err(|e: PrepareError| e.to_string())?;
        let k = ArtifactKey::task_file(prefix, TaskFile::PosesSdf(index)).map_err(|e| e.to_string())?;
        ctx.store.put_file(&k, &sdf).await.map_err(|e| e.to_string())?;
        Ok(k.to_string())
    }
    .await;
    match res {
        Ok(k) => k,
        Err(e) => {
            warn!(ligand = index, error = %e, "cannot export poses as SDF");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests;
