//! AutoDock Vina 1.2.x adapter, using batch mode (`--batch ... --dir`) so that the receptor
//! grid is computed once per batch rather than once per ligand.
//!
//! Measured with Vina 1.2.3 (Debian): a ligand that Vina cannot parse **aborts the whole
//! batch** with exit code 1. Ligands before it already have their output files; ligands
//! after it are not docked, and the error message does not name the file. Vina docks the
//! `--batch` files in command-line order and writes each output as soon as that ligand is
//! done, so the first ligand without an output is the one that failed. This adapter marks
//! that ligand failed and runs Vina again on the ones after it. Most such ligands never
//! reach Vina: every ligand is first checked with the same rules Vina applies
//! ([`validate_ligand`]) and a failing one is left out of the batch.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dockyard_common::molecule::{parse_vina_poses, text_from_bytes, validate_ligand, validate_receptor};
use dockyard_common::spec::EngineKind;

mod energy;

use super::log::{probe_version, read_log_from, tail};
use super::process::{run_process, ProcessOutcome, ProcessSpec, DEFAULT_GRACE};
use super::{in_input_order, DockedLigand, DockingEngine, EngineDescriptor, EngineError, EngineOutput, EngineRun};

/// Seed passed when the run asks for 0. Vina's own 0 means "pick a random seed", which
/// would make a retried or re-run task produce different poses and scores; a fixed seed
/// keeps every run of the same task reproducible (Vina's results depend only on the seed,
/// not on `--cpu`).
pub const DEFAULT_SEED: i64 = 42;

const LOG_NAME: &str = "vina.log";

/// Log lines that mean Vina refused an input file or option rather than failed by itself.
const INPUT_ERROR_MARKERS: &[&str] = &[
    "PDBQT parsing error",
    "Cannot read ligand file",
    "could not open",
    "parse_pdbqt.cpp",
    "Command line parse error",
];

/// Printed once the receptor has been read and the grid computed; an input error after it
/// belongs to a ligand, before it to the receptor or the options.
const GRID_DONE_MARKER: &str = "Computing Vina grid ... done";

pub struct VinaEngine {
    descriptor: EngineDescriptor,
    program: PathBuf,
    grace: Duration,
}

impl VinaEngine {
    /// `version` is what [`parse_vina_version`] read from `program --version`.
    pub fn new(program: impl Into<PathBuf>, version: impl Into<String>) -> Self {
        Self {
            descriptor: EngineDescriptor {
                kind: EngineKind::Vina,
                version: version.into(),
            },
            program: program.into(),
            grace: DEFAULT_GRACE,
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    fn args(&self, run: &EngineRun, receptor: &Path, seed: i32, batch: &[Staged]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--receptor".into(), receptor.into()];
        for s in batch {
            args.push("--batch".into());
            args.push(s.input_rel.clone().into());
        }
        args.push("--dir".into());
        args.push("out".into());
        for (i, axis) in ["x", "y", "z"].iter().enumerate() {
            args.push(format!("--center_{axis}").into());
            args.push(run.center[i].to_string().into());
        }
        for (i, axis) in ["x", "y", "z"].iter().enumerate() {
            args.push(format!("--size_{axis}").into());
            args.push(run.size[i].to_string().into());
        }
        let p = &run.params;
        if p.exhaustiveness > 0 {
            args.push("--exhaustiveness".into());
            args.push(p.exhaustiveness.to_string().into());
        }
        if p.num_modes > 0 {
            args.push("--num_modes".into());
            args.push(p.num_modes.to_string().into());
        }
        if p.energy_range > 0.0 {
            args.push("--energy_range".into());
            args.push(p.energy_range.to_string().into());
        }
        args.push("--seed".into());
        args.push(seed.to_string().into());
        // 0 would let Vina take every core of a shared node behind the scheduler's back.
        args.push("--cpu".into());
        args.push(run.cpu.max(1).to_string().into());
        args
    }

    /// Runs Vina on `pending` (already staged under `work_dir/in`), re-running it on the
    /// remainder whenever one ligand aborts the batch. Returns the CPU seconds used.
    async fn dock_batches(
        &self,
        run: &EngineRun,
        receptor: &Path,
        mut pending: Vec<Staged>,
        results: &mut HashMap<u32, Result<DockedLigand, String>>,
        log_path: &Path,
        started: Instant,
    ) -> Result<f64, EngineError> {
        let seed = effective_seed(run.params.seed)?;
        let mut cpu_seconds = 0.0;
        while !pending.is_empty() {
            if run.cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let timeout = run.time_left(started)?;
            let log_offset = tokio::fs::metadata(log_path).await.map(|m| m.len()).unwrap_or(0);
            let spec = ProcessSpec {
                program: self.program.clone(),
                args: self.args(run, receptor, seed, &pending),
                cwd: run.work_dir.clone(),
                log_path: log_path.to_path_buf(),
                timeout,
                grace: self.grace,
                cancel: run.cancel.clone(),
                env: Vec::new(),
            };
            let outcome: ProcessOutcome = run_process(spec).await.map_err(|e| match e {
                EngineError::Timeout(_) => EngineError::Timeout(run.timeout),
                other => other,
            })?;
            cpu_seconds += outcome.cpu_seconds;

            let before = pending.len();
            let mut still_pending = Vec::with_capacity(pending.len());
            for s in pending {
                if tokio::fs::try_exists(&s.output).await.unwrap_or(false) {
                    results.insert(s.index, collect_output(&s.output).await);
                } else {
                    still_pending.push(s);
                }
            }
            pending = still_pending;
            let progressed = pending.len() < before;
            if pending.is_empty() {
                break;
            }

            if outcome.exit.success() {
                for s in pending.drain(..) {
                    results.insert(s.index, Err("vina exited normally but wrote no output for this ligand".into()));
                }
                break;
            }

            let segment = read_log_from(log_path, log_offset).await;
            let failure = match outcome.exit.code() {
                Some(_) => classify_failure(&segment),
                // A signal (OOM killer, segfault) says nothing about the inputs.
                None => Failure::Other,
            };
            match failure {
                Failure::Setup(msg) => {
                    return Err(EngineError::BadInput(format!("vina refused the receptor or options: {msg}")));
                }
                Failure::Ligand(msg) => {
                    let culprit = pending.remove(0);
                    tracing::info!(
                        task = %run.task_id,
                        ligand = culprit.index,
                        name = %culprit.name,
                        remaining = pending.len(),
                        "vina rejected a ligand mid-batch; re-running the rest"
                    );
                    results.insert(culprit.index, Err(format!("vina rejected the ligand: {msg}")));
                }
                Failure::Other if progressed => {
                    tracing::warn!(
                        task = %run.task_id,
                        exit = ?outcome.exit,
                        remaining = pending.len(),
                        "vina failed mid-batch after docking some ligands; re-running the rest"
                    );
                }
                Failure::Other => {
                    return Err(EngineError::Crashed {
                        exit_code: outcome.exit.code(),
                        signal: outcome.exit.signal(),
                        stderr_tail: tail(&segment, 2000),
                    });
                }
            }
        }
        Ok(cpu_seconds)
    }
}

#[async_trait]
impl DockingEngine for VinaEngine {
    fn descriptor(&self) -> &EngineDescriptor {
        &self.descriptor
    }

    async fn run(&self, run: EngineRun) -> Result<EngineOutput, EngineError> {
        let started = Instant::now();
        check_params(&run)?;
        let receptor = prepare_receptor(run.receptor.as_deref()).await?;
        if run.ligands.is_empty() {
            return Ok(EngineOutput {
                ligands: Vec::new(),
                log_file: None,
                cpu_seconds: 0.0,
                wall_seconds: started.elapsed().as_secs_f64(),
            });
        }

        tokio::fs::create_dir_all(run.work_dir.join("in")).await?;
        tokio::fs::create_dir_all(run.work_dir.join("out")).await?;
        let mut results: HashMap<u32, Result<DockedLigand, String>> = HashMap::new();
        let mut pending = Vec::with_capacity(run.ligands.len());
        for lig in &run.ligands {
            let bytes = tokio::fs::read(&lig.path)
                .await
                .map_err(|e| EngineError::Io(format!("read ligand {}: {e}", lig.path.display())))?;
            let checked = text_from_bytes(&bytes).and_then(validate_ligand);
            match checked {
                Ok(_) => pending.push(stage(&run.work_dir, lig.index, &lig.name, &bytes).await?),
                Err(e) => {
                    results.insert(lig.index, Err(format!("invalid ligand PDBQT: {e}")));
                }
            }
        }

        let log_path = run.work_dir.join(LOG_NAME);
        let cpu_seconds = self
            .dock_batches(&run, &receptor, pending, &mut results, &log_path, started)
            .await?;

        Ok(in_input_order(&run, results, log_path, cpu_seconds, started).await)
    }
}

/// A ligand copied to `work_dir/in/lig_<index>.pdbqt`; Vina names its output after the
/// input file, so the index also names `out/lig_<index>_out.pdbqt`.
#[derive(Debug, Clone)]
struct Staged {
    index: u32,
    name: String,
    input_rel: String,
    output: PathBuf,
}

async fn stage(work_dir: &Path, index: u32, name: &str, bytes: &[u8]) -> Result<Staged, EngineError> {
    let input_rel = format!("in/lig_{index}.pdbqt");
    tokio::fs::write(work_dir.join(&input_rel), bytes).await?;
    Ok(Staged {
        index,
        name: name.to_string(),
        input_rel,
        output: work_dir.join("out").join(format!("lig_{index}_out.pdbqt")),
    })
}

fn effective_seed(seed: i64) -> Result<i32, EngineError> {
    let seed = if seed == 0 { DEFAULT_SEED } else { seed };
    i32::try_from(seed).map_err(|_| EngineError::BadInput(format!("seed {seed} is outside Vina's 32-bit signed range")))
}

fn check_params(run: &EngineRun) -> Result<(), EngineError> {
    if run.center.iter().any(|c| !c.is_finite()) {
        return Err(EngineError::BadInput(format!("box center {:?} is not finite", run.center)));
    }
    if run.size.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(EngineError::BadInput(format!("box size {:?} must be positive", run.size)));
    }
    if !run.params.energy_range.is_finite() || run.params.energy_range < 0.0 {
        return Err(EngineError::BadInput(format!(
            "energy range {} must be >= 0",
            run.params.energy_range
        )));
    }
    effective_seed(run.params.seed)?;
    let mut seen = HashSet::new();
    if let Some(dup) = run.ligands.iter().find(|l| !seen.insert(l.index)) {
        return Err(EngineError::BadInput(format!("ligand index {} appears twice", dup.index)));
    }
    Ok(())
}

async fn prepare_receptor(receptor: Option<&Path>) -> Result<PathBuf, EngineError> {
    let receptor = receptor.ok_or_else(|| EngineError::BadInput("vina needs a receptor".into()))?;
    let bytes = tokio::fs::read(receptor)
        .await
        .map_err(|e| EngineError::Io(format!("read receptor {}: {e}", receptor.display())))?;
    text_from_bytes(&bytes)
        .and_then(validate_receptor)
        .map_err(|e| EngineError::BadInput(format!("invalid receptor PDBQT: {e}")))?;
    // Vina runs inside work_dir, so a relative path would point at the wrong place.
    std::path::absolute(receptor).map_err(EngineError::from)
}

async fn collect_output(path: &Path) -> Result<DockedLigand, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("read vina output {}: {e}", path.display()))?;
    let poses = parse_vina_poses(&text).map_err(|e| format!("unreadable vina output: {e}"))?;
    let best_score = poses.iter().map(|p| p.affinity).fold(f64::INFINITY, f64::min);
    // The terms are extras beside the poses: a file whose terms do not pair up with its
    // poses keeps its poses and loses only the terms.
    let pose_fields = Some(energy::energy_terms(&text))
        .filter(|t| t.len() == poses.len())
        .unwrap_or_default();
    let fields = pose_fields.first().map(|t| t.iter().cloned().collect()).unwrap_or_default();
    Ok(DockedLigand {
        poses,
        best_score,
        pose_file: path.to_path_buf(),
        fields,
        pose_fields,
    })
}

#[derive(Debug, PartialEq)]
enum Failure {
    /// Vina refused the receptor or the command line.
    Setup(String),
    /// Vina refused the ligand it was about to dock.
    Ligand(String),
    Other,
}

fn classify_failure(log: &str) -> Failure {
    let grid_done = log.find(GRID_DONE_MARKER);
    let mut offset = 0usize;
    let mut lines = log.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let at = offset;
        offset += line.len();
        if !INPUT_ERROR_MARKERS.iter().any(|m| line.contains(m)) {
            continue;
        }
        let mut msg = line.trim().to_string();
        // Vina follows a parse error with the offending input line, prefixed by " > ".
        if let Some(next) = lines.peek() {
            if next.trim_start().starts_with('>') {
                msg.push(' ');
                msg.push_str(next.trim());
            }
        }
        let msg: String = msg.chars().take(500).collect();
        return match grid_done {
            Some(g) if g < at => Failure::Ligand(msg),
            _ => Failure::Setup(msg),
        };
    }
    Failure::Other
}

/// Reads the version from `vina --version` output: "AutoDock Vina v1.2.3" gives "1.2.3"
/// (Vina 1.1.2 prints "AutoDock Vina 1.1.2 (May 11, 2011)").
pub fn parse_vina_version(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let rest = line.split("AutoDock Vina").nth(1)?;
        let token = rest.split_whitespace().next()?;
        let token = token.strip_prefix('v').unwrap_or(token);
        token.chars().next().is_some_and(|c| c.is_ascii_digit()).then(|| token.to_string())
    })
}

/// Batch mode (`--batch`, `--dir`) arrived in Vina 1.2.0.
fn supports_batch(version: &str) -> bool {
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (1, 2)
}

/// Asks `program --version`; the engine is usable only if it answers as Vina 1.2 or later.
pub(crate) async fn probe(program: &Path) -> Result<VinaEngine, String> {
    let version = probe_version(program, "Vina", parse_vina_version).await?;
    if !supports_batch(&version) {
        return Err(format!("vina {version} has no batch mode (needs 1.2 or later)"));
    }
    Ok(VinaEngine::new(program, version))
}

#[cfg(test)]
mod tests;
