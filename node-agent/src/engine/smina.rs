//! smina adapter, and the SDF-based run loop that the gnina adapter shares.
//!
//! smina reads any Open Babel format and writes its poses as SDF with a
//! `minimizedAffinity` data item per pose (see [`super::sdf_scores`]). Each ligand file is
//! run as its own smina process with its own output file: smina's multi-ligand output can
//! only be matched back to inputs by title, which is ambiguous when titles repeat or when
//! a ligand is skipped, and one bad ligand would otherwise fail its neighbours. The price
//! is reading the receptor once per ligand instead of once per run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dockyard_common::molecule::Pose;
use dockyard_common::spec::{DockMode, EngineKind, EngineOptions};

use super::log::{read_log_from, tail};
use super::process::{run_process, ProcessSpec, DEFAULT_GRACE};
use super::sdf_scores::{parse_sdf_scores, LigandPoses};
use super::vina::DEFAULT_SEED;
use super::{DockedLigand, DockingEngine, EngineDescriptor, EngineError, EngineOutput, EngineRun, LigandDock, LigandFile};

mod table;

/// Name of the pose file that [`build_args`] asks for, inside the run's `work_dir`.
pub const OUT_NAME: &str = "docked.sdf";

/// Log lines (smina/gnina `main.cpp` error handlers, Boost and Open Babel) that mean the
/// engine refused an input file or an option rather than failed by itself.
const INPUT_ERROR_MARKERS: &[&str] = &[
    "could not open",
    "Parse error",
    "Usage error",
    "Command line parse error",
    "Open Babel Error",
];

/// smina's command-line options: the task's (from [`EngineRun::params`]) over the
/// engine's own (`with_options`).
#[derive(Debug, Clone, PartialEq)]
pub struct SminaOptions {
    /// `--scoring NAME` (e.g. `vinardo`, `dkoes_scoring`); `None` = smina's default (vina).
    pub scoring: Option<String>,
    /// Each mode but `Dock` is one flag.
    pub mode: DockMode,
    /// `--autobox_ligand FILE`: box around this molecule instead of `center`/`size`.
    pub autobox_ligand: Option<PathBuf>,
    /// `--autobox_add A`, only with `autobox_ligand`; `None` = smina's default (4 A).
    pub autobox_add: Option<f64>,
}

impl Default for SminaOptions {
    fn default() -> Self {
        SminaOptions {
            scoring: None,
            mode: DockMode::Dock,
            autobox_ligand: None,
            autobox_add: None,
        }
    }
}

impl SminaOptions {
    /// These options with what the task sets (scoring, mode) taking precedence.
    pub fn for_task(&self, task: &EngineOptions) -> SminaOptions {
        SminaOptions {
            scoring: task.scoring.map(|s| s.as_str().to_string()).or_else(|| self.scoring.clone()),
            mode: task.mode.unwrap_or(self.mode),
            ..self.clone()
        }
    }
}

/// The command line for one smina (or gnina) process over `run.ligands`, writing
/// `work_dir/`[`OUT_NAME`]. Paths are passed as given; the adapter makes them absolute
/// first because the engine runs inside `work_dir`.
pub fn build_args(run: &EngineRun, opts: &SminaOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(receptor) = &run.receptor {
        args.push("-r".into());
        args.push(receptor.into());
    }
    for lig in &run.ligands {
        args.push("-l".into());
        args.push(lig.path.clone().into());
    }
    match &opts.autobox_ligand {
        Some(file) => {
            args.push("--autobox_ligand".into());
            args.push(file.into());
            if let Some(add) = opts.autobox_add {
                args.push("--autobox_add".into());
                args.push(add.to_string().into());
            }
        }
        None => {
            for (i, axis) in ["x", "y", "z"].iter().enumerate() {
                args.push(format!("--center_{axis}").into());
                args.push(run.center[i].to_string().into());
            }
            for (i, axis) in ["x", "y", "z"].iter().enumerate() {
                args.push(format!("--size_{axis}").into());
                args.push(run.size[i].to_string().into());
            }
        }
    }
    if let Some(scoring) = &opts.scoring {
        args.push("--scoring".into());
        args.push(scoring.into());
    }
    let p = &run.params;
    match opts.mode {
        DockMode::Dock => {
            // Search settings mean nothing to the single-pose modes.
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
        }
        DockMode::Minimize => args.push("--minimize".into()),
        DockMode::ScoreOnly => args.push("--score_only".into()),
        DockMode::LocalOnly => args.push("--local_only".into()),
    }
    // Like Vina, smina's own seed 0 would be random; a fixed one keeps re-runs identical.
    let seed = if p.seed == 0 { DEFAULT_SEED } else { p.seed };
    args.push("--seed".into());
    args.push(seed.to_string().into());
    // smina's default takes every core of a shared node behind the scheduler's back.
    args.push("--cpu".into());
    args.push(run.cpu.max(1).to_string().into());
    args.push("-o".into());
    args.push(run.work_dir.join(OUT_NAME).into());
    args
}

pub struct SminaEngine {
    descriptor: EngineDescriptor,
    program: PathBuf,
    options: SminaOptions,
    grace: Duration,
}

impl SminaEngine {
    /// `version` is what [`parse_version`] read from `program --version`.
    pub fn new(program: impl Into<PathBuf>, version: impl Into<String>) -> Self {
        Self {
            descriptor: EngineDescriptor {
                kind: EngineKind::Smina,
                version: version.into(),
            },
            program: program.into(),
            options: SminaOptions::default(),
            grace: DEFAULT_GRACE,
        }
    }

    /// Options used by [`DockingEngine::run`] where the task sets none.
    pub fn with_options(mut self, options: SminaOptions) -> Self {
        self.options = options;
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs with `opts` instead of the engine's own options.
    pub async fn run_with(&self, run: EngineRun, opts: &SminaOptions) -> Result<EngineOutput, EngineError> {
        let opts = absolute_options(opts)?;
        let runner = SdfRunner {
            engine: "smina",
            program: &self.program,
            grace: self.grace,
            env: Vec::new(),
            rmsd_table: true,
        };
        runner.run(run, opts.autobox_ligand.is_some(), |r| build_args(r, &opts)).await
    }
}

#[async_trait]
impl DockingEngine for SminaEngine {
    fn descriptor(&self) -> &EngineDescriptor {
        &self.descriptor
    }

    async fn run(&self, run: EngineRun) -> Result<EngineOutput, EngineError> {
        let opts = self.options.for_task(&run.params.extra);
        self.run_with(run, &opts).await
    }
}

/// Checks the options and makes `autobox_ligand` absolute (the engine runs in `work_dir`).
pub(super) fn absolute_options(opts: &SminaOptions) -> Result<SminaOptions, EngineError> {
    let mut opts = opts.clone();
    if let Some(add) = opts.autobox_add {
        if !add.is_finite() || add < 0.0 {
            return Err(EngineError::BadInput(format!("autobox_add {add} must be >= 0")));
        }
    }
    if let Some(file) = &opts.autobox_ligand {
        opts.autobox_ligand = Some(std::path::absolute(file)?);
    }
    if opts.scoring.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(EngineError::BadInput("scoring function name is empty".into()));
    }
    Ok(opts)
}

/// The run loop shared by smina and gnina: one engine process per ligand, each in its own
/// `work_dir/lig_<index>` with a `docked.sdf`, all logging to `work_dir/<engine>.log`.
pub(super) struct SdfRunner<'a> {
    pub engine: &'a str,
    pub program: &'a Path,
    pub grace: Duration,
    pub env: Vec<(OsString, OsString)>,
    /// Read each pose's RMSD bounds from smina's result table in the log (see [`table`]).
    pub rmsd_table: bool,
}

impl SdfRunner<'_> {
    pub async fn run(
        &self,
        run: EngineRun,
        autobox: bool,
        args: impl Fn(&EngineRun) -> Vec<OsString>,
    ) -> Result<EngineOutput, EngineError> {
        let started = Instant::now();
        check_params(&run, autobox)?;
        let receptor = run
            .receptor
            .as_deref()
            .ok_or_else(|| EngineError::BadInput(format!("{} needs a receptor", self.engine)))?;
        tokio::fs::metadata(receptor)
            .await
            .map_err(|e| EngineError::Io(format!("receptor {}: {e}", receptor.display())))?;
        let receptor = std::path::absolute(receptor)?;
        if run.ligands.is_empty() {
            return Ok(EngineOutput {
                ligands: Vec::new(),
                log_file: None,
                cpu_seconds: 0.0,
                wall_seconds: started.elapsed().as_secs_f64(),
            });
        }

        let log_path = run.work_dir.join(format!("{}.log", self.engine));
        let mut cpu_seconds = 0.0;
        let mut ligands = Vec::with_capacity(run.ligands.len());
        for lig in &run.ligands {
            if run.cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let timeout = run.time_left(started)?;
            let lig_path = std::path::absolute(&lig.path)?;
            if let Err(e) = tokio::fs::metadata(&lig_path).await {
                return Err(EngineError::Io(format!("ligand {}: {e}", lig_path.display())));
            }
            let dir = run.work_dir.join(format!("lig_{}", lig.index));
            tokio::fs::create_dir_all(&dir).await?;
            let sub = EngineRun {
                receptor: Some(receptor.clone()),
                ligands: vec![LigandFile {
                    path: lig_path.clone(),
                    ..lig.clone()
                }],
                work_dir: dir.clone(),
                ..run.clone()
            };
            let log_offset = tokio::fs::metadata(&log_path).await.map(|m| m.len()).unwrap_or(0);
            let spec = ProcessSpec {
                program: self.program.to_path_buf(),
                args: args(&sub),
                cwd: dir.clone(),
                log_path: log_path.clone(),
                timeout,
                grace: self.grace,
                cancel: run.cancel.clone(),
                env: self.env.clone(),
            };
            let outcome = run_process(spec).await.map_err(|e| match e {
                EngineError::Timeout(_) => EngineError::Timeout(run.timeout),
                other => other,
            })?;
            cpu_seconds += outcome.cpu_seconds;

            // This ligand's part of the shared log.
            let segment = read_log_from(&log_path, log_offset).await;
            let result = if outcome.exit.success() {
                let table = if self.rmsd_table { table::parse_rows(&segment) } else { Vec::new() };
                collect_output(self.engine, &dir.join(OUT_NAME), &table)
                    .await
                    .map_err(|e| e.explain(self.engine, &lig_path, &segment))
            } else {
                if let Some(path) = unwritable(&segment) {
                    // Our own work_dir: a full or broken disk on this node, not the task's fault.
                    return Err(EngineError::Io(format!("{} could not write {path}", self.engine)));
                }
                let input_error = outcome.exit.code().and_then(|_| input_error(&segment));
                match input_error {
                    // Named the ligand: only this ligand is bad; the rest still run.
                    Some(msg) if mentions(&msg, &lig_path) => Err(format!("{} rejected the ligand: {msg}", self.engine)),
                    // Receptor or options: every ligand would fail the same way.
                    Some(msg) => {
                        return Err(EngineError::BadInput(format!(
                            "{} refused the receptor or options: {msg}",
                            self.engine
                        )))
                    }
                    // A signal (OOM killer, segfault) or an unexplained exit code says nothing
                    // about the inputs, so the run may succeed elsewhere.
                    None => {
                        return Err(EngineError::Crashed {
                            exit_code: outcome.exit.code(),
                            signal: outcome.exit.signal(),
                            stderr_tail: tail(&segment, 2000),
                        })
                    }
                }
            };
            ligands.push(LigandDock {
                index: lig.index,
                name: lig.name.clone(),
                result,
            });
        }
        let log_file = tokio::fs::try_exists(&log_path).await.unwrap_or(false).then_some(log_path);
        Ok(EngineOutput {
            ligands,
            log_file,
            cpu_seconds,
            wall_seconds: started.elapsed().as_secs_f64(),
        })
    }
}

fn check_params(run: &EngineRun, autobox: bool) -> Result<(), EngineError> {
    if !autobox {
        if run.center.iter().any(|c| !c.is_finite()) {
            return Err(EngineError::BadInput(format!("box center {:?} is not finite", run.center)));
        }
        if run.size.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(EngineError::BadInput(format!("box size {:?} must be positive", run.size)));
        }
    }
    let p = &run.params;
    if !p.energy_range.is_finite() || p.energy_range < 0.0 {
        return Err(EngineError::BadInput(format!("energy range {} must be >= 0", p.energy_range)));
    }
    // smina/gnina read the seed as a C int.
    if i32::try_from(p.seed).is_err() {
        return Err(EngineError::BadInput(format!("seed {} is outside the 32-bit signed range", p.seed)));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = run.ligands.iter().find(|l| !seen.insert(l.index)) {
        return Err(EngineError::BadInput(format!("ligand index {} appears twice", dup.index)));
    }
    Ok(())
}

/// Why a ligand that the engine ran without an error has no result.
#[derive(Debug)]
enum OutputError {
    /// The engine exited 0 without creating its output file.
    Missing,
    /// The output file holds no record.
    Empty,
    Other(String),
}

/// smina's (and gnina's) warning when no pose fits the box; it exits 0 with an empty output.
const NO_POSE_IN_BOX: &str = "Could not find any conformations completely within the search space";

impl OutputError {
    /// The reason reported for the ligand; `log` is its part of the engine's log.
    fn explain(self, engine: &str, ligand: &Path, log: &str) -> String {
        match self {
            OutputError::Missing => format!("{engine} exited normally but wrote no output for this ligand"),
            OutputError::Empty if log.contains(NO_POSE_IN_BOX) => {
                format!("{engine} found no pose of this ligand that fits inside the search box (\"{NO_POSE_IN_BOX}\")")
            }
            // Open Babel skips what it cannot parse without a word, so an unreadable SDF or
            // MOL2 reaches smina as zero molecules and it exits 0 having written nothing.
            OutputError::Empty => format!(
                "{engine} read no molecule from the ligand file {:?}: it is empty or not valid {}",
                ligand.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                ligand.extension().map(|e| e.to_string_lossy().to_uppercase()).unwrap_or_default()
            ),
            OutputError::Other(reason) => reason,
        }
    }
}

/// One ligand file is one ligand: its poses are the output's single group of records.
/// `table` is smina's result table for this ligand (empty for gnina and the one-pose modes).
async fn collect_output(engine: &str, path: &Path, table: &[table::Row]) -> Result<DockedLigand, OutputError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OutputError::Missing),
        Err(e) => return Err(OutputError::Other(format!("read {engine} output {}: {e}", path.display()))),
    };
    let mut groups = parse_sdf_scores(&text).map_err(|e| OutputError::Other(format!("unreadable {engine} output: {e}")))?;
    if groups.len() > 1 {
        // Guessing which molecule the task meant would report a score for the wrong one.
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        return Err(OutputError::Other(format!(
            "the ligand file holds {} molecules ({names:?}); one per ligand file is expected",
            groups.len()
        )));
    }
    let group = groups.pop().ok_or(OutputError::Empty)?;
    Ok(docked_ligand(group, path, table))
}

/// The engine's first pose is its best (smina sorts by affinity, gnina by `--pose_sort_order`).
/// The RMSD bounds come from `table` when it describes these poses, else are 0 (the SDF
/// output carries none).
fn docked_ligand(group: LigandPoses, path: &Path, table: &[table::Row]) -> DockedLigand {
    let best_score = group.poses.first().map(|p| p.affinity).unwrap_or(f64::NAN);
    let affinities: Vec<f64> = group.poses.iter().map(|p| p.affinity).collect();
    let rmsds = table::matching(table, &affinities);
    let poses = group
        .poses
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (rmsd_lb, rmsd_ub) = rmsds.as_ref().and_then(|rows| rows.get(i)).map_or((0.0, 0.0), |r| (r.1, r.2));
            Pose {
                rank: p.rank,
                affinity: p.affinity,
                rmsd_lb,
                rmsd_ub,
            }
        })
        .collect();
    DockedLigand {
        poses,
        best_score,
        pose_file: path.to_path_buf(),
        fields: Default::default(),
        pose_fields: Vec::new(),
    }
}

fn input_error(log: &str) -> Option<String> {
    let line = log.lines().find(|l| INPUT_ERROR_MARKERS.iter().any(|m| l.contains(m)))?;
    Some(line.trim().chars().take(500).collect())
}

/// The file named by smina's `Error: could not open "PATH" for writing.`, if the log has it.
fn unwritable(log: &str) -> Option<&str> {
    log.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Error: could not open \"")?;
        rest.strip_suffix("\" for writing.")
    })
}

fn mentions(msg: &str, path: &Path) -> bool {
    msg.contains(&*path.to_string_lossy())
        || path
            .file_name()
            .map(|n| n.to_string_lossy())
            .is_some_and(|n| msg.contains(&format!("\"{n}\"")))
}

/// Reads the version from `--version` output of `engine` ("smina" or "gnina"), leniently:
/// smina prints `Smina Oct 15 2019.  Based on AutoDock Vina 1.1.2.` (its build date, no
/// number: two builds of the same source report different versions) and gnina builds
/// print e.g. `gnina v1.1 master:e4cb380+ ...`. A `v1.2`-like token gives `1.2`; otherwise
/// the text after the name, up to "Based on", with runs of spaces made one; and a bare
/// name gives `unknown`. `None` when no line names the engine.
pub fn parse_version(engine: &str, output: &str) -> Option<String> {
    let engine = engine.to_ascii_lowercase();
    output.lines().find_map(|line| {
        let at = line.to_ascii_lowercase().find(&engine)?;
        let rest = line.get(at + engine.len()..)?.trim();
        let rest = rest.split("Based on").next().unwrap_or("").trim().trim_end_matches('.').trim();
        if let Some(first) = rest.split_whitespace().next() {
            let number = first.strip_prefix('v').unwrap_or(first);
            if number.chars().next().is_some_and(|c| c.is_ascii_digit()) && number.contains('.') {
                return Some(number.trim_end_matches(['.', ',']).to_string());
            }
        }
        // smina's build date pads a one-digit day ("Dec  5 2026"); one space keeps the
        // version (a result-cache key) the same however the date was printed.
        let rest: String = rest.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(60).collect();
        Some(if rest.is_empty() { "unknown".to_string() } else { rest })
    })
}

/// Runs `program --version` and returns the version [`parse_version`] finds in it.
pub(super) async fn probe_version(engine: &str, program: &Path) -> Result<String, String> {
    super::log::probe_version(program, engine, |text| parse_version(engine, text)).await
}

/// Asks `program --version`; the engine is usable if it answers as smina.
pub(crate) async fn probe(program: &Path) -> Result<SminaEngine, String> {
    let version = probe_version("smina", program).await?;
    Ok(SminaEngine::new(program, version))
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
pub(crate) mod real_tests;
