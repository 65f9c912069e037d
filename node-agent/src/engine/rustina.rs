//! Rustina adapter. Rustina (PyPI `rustina`) is a Python module, not a command: the agent
//! runs a small driver that is part of this repository (`node-agent/drivers/rustina_dock.py`,
//! embedded here and written into the run's work directory) with the Python that imports
//! it, through [`run_process`] like any engine (timeout, cancellation of the process group,
//! limits, CPU accounting).
//!
//! - **Inputs.** Rustina refuses a ligand whose atom serials repeat; such a file is
//!   renumbered first ([`serials::renumber_serials`]). Whatever it still refuses fails that
//!   ligand alone, with rustina's reason.
//! - **Batch.** The driver docks the task's ligands one after the other with
//!   `rustina.dock()` and writes each ligand's poses and scores as it finishes, so a
//!   crash costs only the ligand it happened on: that ligand fails and the rest run again.
//!   (`rustina.screen()` shares the receptor grids across a batch but returns only the top
//!   pose; measured on 5x72, two ligands, one thread: 16.1 s for `screen` against 16.4 s
//!   for two `dock` calls, the grids being a few ms of it.)
//! - **Search effort.** Dockyard's `exhaustiveness` scales rustina's `runs`: 8 (the
//!   default) passes none, so rustina uses its own default (measured for rustina 0.9.0: 16
//!   runs in `qvina2-active`, 32 in `vina`, `qvina2`, `qvina2-race`, whatever the thread
//!   count), any other value `default × exhaustiveness / 8` rounded up, at least 16 in the
//!   race modes (`qvina2-race`, `qvina2-active`), which refuse fewer. The `gpu` search
//!   always runs with rustina's default.
//! - **GPU.** `gpu` runs only when the task was given a GPU, and is the mode of a task
//!   given GPUs that names none. Rustina finds its adapter through wgpu: it reads
//!   `WGPU_BACKEND` (the only `WGPU_*` variable in its library) and takes the adapter wgpu
//!   offers first; it has no device index of its own. The adapter therefore confines the
//!   run to the assigned device through the environment: `WGPU_BACKEND=vulkan` and
//!   `CUDA_VISIBLE_DEVICES=<index>`, and the driver's log keeps the adapter rustina reports
//!   (`Search parameters: mode=Gpu, device=...`). NVIDIA's Vulkan driver is not known to
//!   honour `CUDA_VISIBLE_DEVICES`, so on a node with several GPUs the device rustina
//!   takes is **unverified** (no GPU was available where this was written); see
//!   docs/architecture.md.
//! - **Results.** Each pose keeps rustina's `affinity`, `cnn_score` (pose probability) and
//!   `cnn_affinity` (pK). The ligand's score is the affinity of rustina's top-ranked pose
//!   (ranked by the CNN unless it is off), and its fields are the top pose's
//!   `rustina_affinity`, `cnn_score` and `cnn_affinity`.

pub mod serials;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use dockyard_common::molecule::{parse_vina_poses, text_from_bytes};
use dockyard_common::spec::{CnnScoring, EngineKind, Scoring, SearchMode};

use super::log::{read_log_from, tail};
use super::process::{run_process, ProcessSpec, DEFAULT_GRACE};
use super::{in_input_order, DockedLigand, DockingEngine, EngineDescriptor, EngineError, EngineOutput, EngineRun};

/// The driver, as it is in the repository.
pub const DRIVER: &str = include_str!("../../drivers/rustina_dock.py");

const DRIVER_NAME: &str = "rustina_dock.py";
const JOB_NAME: &str = "rustina_job.json";
const LOG_NAME: &str = "rustina.log";

/// The driver's exit status, and the start of the line it prints, when rustina refuses the
/// receptor (tried once, before any ligand).
const RECEPTOR_REFUSED_EXIT: i32 = 3;
const RECEPTOR_REFUSED: &str = "rustina refused the receptor: ";

/// A Python that does not answer the version probe within this is treated as absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The result fields of a ligand's top pose (exactly these names: the CLI, CSV and ranking
/// read them).
pub const CNN_SCORE_FIELD: &str = "cnn_score";
pub const CNN_AFFINITY_FIELD: &str = "cnn_affinity";

pub struct RustinaEngine {
    descriptor: EngineDescriptor,
    python: PathBuf,
    grace: Duration,
}

/// What the driver reads (`rustina_job.json`).
#[derive(Debug, Serialize, PartialEq)]
struct DriverJob {
    receptor: PathBuf,
    ligands: Vec<DriverLigand>,
    center: [f64; 3],
    size: [f64; 3],
    runs: Option<u32>,
    scoring: &'static str,
    search_mode: &'static str,
    seed: u64,
    skip_cnn: bool,
    threads: u32,
    num_modes: u32,
}

#[derive(Debug, Serialize, PartialEq)]
struct DriverLigand {
    index: u32,
    path: PathBuf,
}

/// What the driver writes per ligand (`out/lig_<index>.json`).
#[derive(Debug, Deserialize)]
struct DriverResult {
    #[serde(default)]
    poses: Vec<DriverPose>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DriverPose {
    cnn_score: Option<f64>,
    cnn_affinity: Option<f64>,
}

impl RustinaEngine {
    /// `python` imports `rustina` of `version`.
    pub fn new(python: impl Into<PathBuf>, version: impl Into<String>) -> Self {
        Self {
            descriptor: EngineDescriptor {
                kind: EngineKind::Rustina,
                version: version.into(),
            },
            python: python.into(),
            grace: DEFAULT_GRACE,
        }
    }

    pub fn python(&self) -> &Path {
        &self.python
    }
}

/// The search mode a run uses: the one asked for, else `gpu` when the task has GPUs, else
/// rustina's default. `gpu` without a GPU is bad input.
pub fn search_mode(asked: Option<SearchMode>, gpus: &[u32]) -> Result<SearchMode, EngineError> {
    match asked {
        Some(SearchMode::Gpu) if gpus.is_empty() => Err(EngineError::BadInput("search mode gpu needs a GPU assigned to the task".into())),
        Some(mode) => Ok(mode),
        None if !gpus.is_empty() => Ok(SearchMode::Gpu),
        None => Ok(SearchMode::Qvina2Active),
    }
}

/// Rustina's `runs` for an exhaustiveness (see the module docs); `None` is rustina's default.
pub fn runs(exhaustiveness: u32, mode: SearchMode) -> Option<u32> {
    let (default, least) = match mode {
        SearchMode::Gpu => return None,
        SearchMode::Qvina2Active => (16, 16),
        SearchMode::Qvina2Race => (32, 16),
        SearchMode::Vina | SearchMode::Qvina2 => (32, 1),
    };
    if exhaustiveness == 8 || exhaustiveness == 0 {
        return None;
    }
    Some((default * exhaustiveness).div_ceil(8).max(least))
}

/// Rustina's name of a scoring function (its default is vinardo).
fn scoring_name(s: Option<Scoring>) -> Result<&'static str, EngineError> {
    match s {
        None | Some(Scoring::Vinardo) => Ok("vinardo"),
        Some(Scoring::Vina) => Ok("vina"),
        Some(Scoring::Ad4Scoring) => Ok("ad4"),
        Some(other) => Err(EngineError::BadInput(format!("rustina has no scoring function {}", other.as_str()))),
    }
}

/// The environment of a run: as many threads as the task's cores, and in `gpu` mode the
/// assigned device only (see the module docs).
pub fn run_env(threads: u32, mode: SearchMode, gpus: &[u32]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("RAYON_NUM_THREADS".into(), threads.to_string().into()),
        ("OMP_NUM_THREADS".into(), threads.to_string().into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ];
    if let (SearchMode::Gpu, Some(device)) = (mode, gpus.first()) {
        env.push(("WGPU_BACKEND".into(), "vulkan".into()));
        env.push(("CUDA_VISIBLE_DEVICES".into(), device.to_string().into()));
    }
    env
}

fn check_params(run: &EngineRun) -> Result<u64, EngineError> {
    if run.center.iter().any(|c| !c.is_finite()) {
        return Err(EngineError::BadInput(format!("box center {:?} is not finite", run.center)));
    }
    if run.size.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(EngineError::BadInput(format!("box size {:?} must be positive", run.size)));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = run.ligands.iter().find(|l| !seen.insert(l.index)) {
        return Err(EngineError::BadInput(format!("ligand index {} appears twice", dup.index)));
    }
    let seed = if run.params.seed == 0 {
        super::vina::DEFAULT_SEED
    } else {
        run.params.seed
    };
    u64::try_from(seed).map_err(|_| EngineError::BadInput(format!("seed {seed} must not be negative for rustina")))
}

#[async_trait]
impl DockingEngine for RustinaEngine {
    fn descriptor(&self) -> &EngineDescriptor {
        &self.descriptor
    }

    async fn run(&self, run: EngineRun) -> Result<EngineOutput, EngineError> {
        let started = Instant::now();
        let seed = check_params(&run)?;
        let mode = search_mode(run.params.extra.search_mode, &run.gpus)?;
        let scoring = scoring_name(run.params.extra.scoring)?;
        let receptor = run
            .receptor
            .as_deref()
            .ok_or_else(|| EngineError::BadInput("rustina needs a receptor".into()))?;
        let receptor = std::path::absolute(receptor)?;
        if run.ligands.is_empty() {
            return Ok(EngineOutput {
                ligands: Vec::new(),
                log_file: None,
                cpu_seconds: 0.0,
                wall_seconds: started.elapsed().as_secs_f64(),
            });
        }
        let threads = run.cpu.max(1);
        tokio::fs::create_dir_all(run.work_dir.join("in")).await?;
        tokio::fs::create_dir_all(run.work_dir.join("out")).await?;
        let mut results: HashMap<u32, Result<DockedLigand, String>> = HashMap::new();
        let mut pending = Vec::with_capacity(run.ligands.len());
        for lig in &run.ligands {
            let bytes = tokio::fs::read(&lig.path)
                .await
                .map_err(|e| EngineError::Io(format!("read ligand {}: {e}", lig.path.display())))?;
            match text_from_bytes(&bytes) {
                Ok(text) => {
                    let path = run.work_dir.join("in").join(format!("lig_{}.pdbqt", lig.index));
                    match serials::renumber_serials(text) {
                        Some(renumbered) => tokio::fs::write(&path, renumbered).await?,
                        None => tokio::fs::write(&path, &bytes).await?,
                    }
                    pending.push(DriverLigand { index: lig.index, path });
                }
                Err(e) => {
                    results.insert(lig.index, Err(format!("invalid ligand PDBQT: {e}")));
                }
            }
        }

        tokio::fs::write(run.work_dir.join(DRIVER_NAME), DRIVER).await?;
        let log_path = run.work_dir.join(LOG_NAME);
        let mut cpu_seconds = 0.0;
        while !pending.is_empty() {
            if run.cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let timeout = run.time_left(started)?;
            let job = DriverJob {
                receptor: receptor.clone(),
                ligands: std::mem::take(&mut pending),
                center: run.center,
                size: run.size,
                runs: runs(run.params.exhaustiveness, mode),
                scoring,
                search_mode: mode.as_str(),
                seed,
                skip_cnn: run.params.extra.cnn_scoring == Some(CnnScoring::None),
                threads,
                num_modes: run.params.num_modes.max(1),
            };
            let json = serde_json::to_vec_pretty(&job).map_err(|e| EngineError::Io(e.to_string()))?;
            tokio::fs::write(run.work_dir.join(JOB_NAME), json).await?;
            let log_offset = tokio::fs::metadata(&log_path).await.map(|m| m.len()).unwrap_or(0);
            let spec = ProcessSpec {
                program: self.python.clone(),
                // Absolute, so the process names its task's folder (`ps` shows whose it is).
                args: vec![run.work_dir.join(DRIVER_NAME).into(), run.work_dir.join(JOB_NAME).into()],
                cwd: run.work_dir.clone(),
                log_path: log_path.clone(),
                timeout,
                grace: self.grace,
                cancel: run.cancel.clone(),
                env: run_env(threads, mode, &run.gpus),
            };
            let outcome = run_process(spec).await.map_err(|e| match e {
                EngineError::Timeout(_) => EngineError::Timeout(run.timeout),
                other => other,
            })?;
            cpu_seconds += outcome.cpu_seconds;

            let mut left = Vec::new();
            for lig in job.ligands {
                match collect(&run.work_dir, lig.index).await {
                    Some(res) => {
                        results.insert(lig.index, res);
                    }
                    None => left.push(lig),
                }
            }
            if left.is_empty() {
                break;
            }
            let segment = read_log_from(&log_path, log_offset).await;
            if outcome.exit.success() {
                for lig in left {
                    results.insert(
                        lig.index,
                        Err("rustina's driver exited normally but wrote no result for this ligand".into()),
                    );
                }
                break;
            }
            if outcome.exit.code() == Some(RECEPTOR_REFUSED_EXIT) {
                if let Some(line) = segment.lines().find(|l| l.starts_with(RECEPTOR_REFUSED)) {
                    return Err(EngineError::BadInput(line.chars().take(500).collect()));
                }
            }
            // The driver announces each ligand before docking it: the first one without a
            // result was being docked when it died, unless the driver never got that far
            // (no Python, no rustina), which is the node's fault and not the ligand's.
            let culprit = left[0].index;
            if !segment.contains(&format!("ligand {culprit}: start")) {
                return Err(EngineError::Crashed {
                    exit_code: outcome.exit.code(),
                    signal: outcome.exit.signal(),
                    stderr_tail: tail(&segment, 2000),
                });
            }
            tracing::info!(task = %run.task_id, ligand = culprit, remaining = left.len() - 1, "rustina died on a ligand; running the rest again");
            let reason = match outcome.exit.signal() {
                Some(sig) => format!("rustina was killed by signal {sig} on this ligand"),
                None => format!("rustina failed on this ligand: {}", tail(&segment, 500)),
            };
            results.insert(culprit, Err(reason));
            pending = left.into_iter().skip(1).collect();
        }

        Ok(in_input_order(&run, results, log_path, cpu_seconds, started).await)
    }
}

/// A ligand's result as the driver wrote it; `None` when it wrote none.
async fn collect(work_dir: &Path, index: u32) -> Option<Result<DockedLigand, String>> {
    let json = tokio::fs::read(work_dir.join("out").join(format!("lig_{index}.json"))).await.ok()?;
    let res: DriverResult = match serde_json::from_slice(&json) {
        Ok(r) => r,
        Err(e) => return Some(Err(format!("unreadable rustina result: {e}"))),
    };
    if let Some(e) = res.error {
        return Some(Err(format!("rustina refused the ligand: {e}")));
    }
    let pose_file = work_dir.join("out").join(format!("lig_{index}_out.pdbqt"));
    Some(docked(&pose_file, &res.poses).await)
}

async fn docked(pose_file: &Path, scores: &[DriverPose]) -> Result<DockedLigand, String> {
    let text = tokio::fs::read_to_string(pose_file)
        .await
        .map_err(|e| format!("read rustina poses {}: {e}", pose_file.display()))?;
    let poses = parse_vina_poses(&text).map_err(|e| format!("unreadable rustina poses: {e}"))?;
    if poses.len() != scores.len() || poses.is_empty() {
        return Err(format!("rustina wrote {} poses and {} scores", poses.len(), scores.len()));
    }
    let pose_fields: Vec<Vec<(String, f64)>> = scores
        .iter()
        .map(|s| {
            [(CNN_SCORE_FIELD, s.cnn_score), (CNN_AFFINITY_FIELD, s.cnn_affinity)]
                .into_iter()
                .filter_map(|(name, v)| Some((name.to_string(), v.filter(|v| v.is_finite())?)))
                .collect()
        })
        .collect();
    let fields = pose_fields[0].iter().cloned().collect();
    // As written in the pose file (3 decimals), so the score and the top pose agree.
    let best_score = poses[0].affinity;
    Ok(DockedLigand {
        poses,
        best_score,
        pose_file: pose_file.to_path_buf(),
        fields,
        pose_fields,
    })
}

/// Reads the version `python -c 'import rustina; print(rustina.__version__)'` prints.
pub fn parse_rustina_version(output: &str) -> Option<String> {
    let last = output.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    (last.chars().next().is_some_and(|c| c.is_ascii_digit()) && !last.contains(char::is_whitespace)).then(|| last.to_string())
}

/// Asks `python` for rustina's version; usable only if it imports it.
pub(crate) async fn probe(python: &Path) -> Result<RustinaEngine, String> {
    let output = tokio::process::Command::new(python)
        .args(["-c", "import rustina; print(rustina.__version__)"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, output)
        .await
        .map_err(|_| format!("`{} -c 'import rustina'` timed out", python.display()))?
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match parse_rustina_version(&stdout) {
        Some(v) if output.status.success() => Ok(RustinaEngine::new(python, v)),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(format!("{} cannot import rustina: {}", python.display(), tail(&stderr, 300)))
        }
    }
}

#[cfg(test)]
mod tests;
