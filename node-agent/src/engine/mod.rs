//! The `DockingEngine` port and its adapters.
//!
//! An adapter turns one [`EngineRun`] (a receptor, a batch of ligands, a search box) into
//! one [`EngineOutput`] with a result per ligand. A ligand that the engine rejects fails
//! alone inside `EngineOutput`; an [`EngineError`] means the whole run failed.

pub mod gnina;
mod log;
pub mod process;
pub mod rustina;
pub mod sdf_scores;
pub mod sleep;
pub mod smina;
pub mod vina;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dockyard_common::molecule::Pose;
use dockyard_common::spec::{DockParams, EngineKind};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use gnina::GninaEngine;
pub use rustina::RustinaEngine;
pub use sleep::SleepEngine;
pub use smina::SminaEngine;
pub use vina::VinaEngine;

/// A ligand staged on local disk. `index` is the ligand's position in the task and is what
/// results are matched back by.
#[derive(Debug, Clone, PartialEq)]
pub struct LigandFile {
    pub index: u32,
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct EngineRun {
    pub task_id: String,
    pub receptor: Option<PathBuf>,
    pub ligands: Vec<LigandFile>,
    /// Box centre, Angstrom.
    pub center: [f64; 3],
    /// Box edge lengths, Angstrom.
    pub size: [f64; 3],
    /// The task's search settings and engine options, as the coordinator validated them
    /// (`DockParams::from_proto`). In the search settings 0 means the engine's default, and
    /// a seed of 0 a fixed default seed (see [`vina::DEFAULT_SEED`]), never a random one.
    pub params: DockParams,
    /// Host indices of the GPUs assigned to this run (empty: none).
    pub gpus: Vec<u32>,
    /// Empty scratch directory owned by this run; adapters write inputs, outputs and logs here.
    pub work_dir: PathBuf,
    /// CPU threads the engine may use (the task's cores); 0 is treated as 1.
    pub cpu: u32,
    /// Wall-clock limit for the whole run; `Duration::ZERO` means none.
    pub timeout: Duration,
    pub cancel: CancellationToken,
}

impl EngineRun {
    /// What is left of the run's timeout for the next engine process, `started` being when
    /// the run began (`Duration::ZERO`: no timeout); `Timeout` once it is spent.
    pub fn time_left(&self, started: std::time::Instant) -> Result<Duration, EngineError> {
        if self.timeout.is_zero() {
            return Ok(Duration::ZERO);
        }
        match self.timeout.checked_sub(started.elapsed()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(EngineError::Timeout(self.timeout)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DockedLigand {
    /// In the engine's order (best first for Vina).
    pub poses: Vec<Pose>,
    /// The score of the engine's top-ranked pose, kcal/mol: the lowest affinity for Vina,
    /// the affinity of the pose rustina's CNN ranks first.
    pub best_score: f64,
    /// The engine's pose file (PDBQT with one MODEL per pose), inside `work_dir`.
    pub pose_file: PathBuf,
    /// Named scores of the top-ranked pose beyond `best_score` (rustina: `cnn_score`,
    /// `cnn_affinity`); they become the ligand's result fields.
    pub fields: HashMap<String, f64>,
    /// Per pose, in `poses` order, named scores the PDBQT file cannot carry: written as SD
    /// fields of that pose's record when the poses are exported as SDF. Empty: none.
    pub pose_fields: Vec<Vec<(String, f64)>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LigandDock {
    pub index: u32,
    pub name: String,
    /// `Err` carries a human-readable reason, e.g. the engine's parse error for this ligand.
    pub result: Result<DockedLigand, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineOutput {
    /// One entry per input ligand, in input order.
    pub ligands: Vec<LigandDock>,
    /// Engine stdout+stderr, inside `work_dir`.
    pub log_file: Option<PathBuf>,
    /// User+system CPU time of the engine processes, measured by the kernel (rusage).
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
}

/// The output of a batch run whose results were gathered by ligand index: one entry per
/// input ligand in input order (a ligand without a result was not docked), and the log
/// when the engine wrote one.
pub(crate) async fn in_input_order(
    run: &EngineRun,
    mut results: std::collections::HashMap<u32, Result<DockedLigand, String>>,
    log_path: PathBuf,
    cpu_seconds: f64,
    started: std::time::Instant,
) -> EngineOutput {
    let ligands = run
        .ligands
        .iter()
        .map(|lig| LigandDock {
            index: lig.index,
            name: lig.name.clone(),
            result: results.remove(&lig.index).unwrap_or_else(|| Err("ligand was not docked".into())),
        })
        .collect();
    let log_file = tokio::fs::try_exists(&log_path).await.unwrap_or(false).then_some(log_path);
    EngineOutput {
        ligands,
        log_file,
        cpu_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine timed out after {0:?}")]
    Timeout(Duration),
    #[error("engine run cancelled")]
    Cancelled,
    /// `stderr_tail` is the end of the engine's log, where stdout and stderr are merged.
    #[error("engine crashed ({}): {stderr_tail}", describe_exit(*exit_code, *signal))]
    Crashed {
        exit_code: Option<i32>,
        signal: Option<i32>,
        stderr_tail: String,
    },
    #[error("could not start engine: {0}")]
    Spawn(String),
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("engine i/o error: {0}")]
    Io(String),
    /// The run hit a limit the agent puts on engine processes (file size, memory); the
    /// message says which, e.g. "engine exceeded the file-size limit of 1024 MB".
    #[error("{0}")]
    LimitExceeded(String),
}

fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(code), None) => format!("exit code {code}"),
        (None, None) => "unknown exit status".to_string(),
    }
}

impl EngineError {
    /// Whether running the same task again (possibly on another node) may succeed.
    ///
    /// A spawn failure is a property of this node (missing binary, process limits), never
    /// of the task, so another attempt can succeed elsewhere; so are a full disk (`Io`) and
    /// the agent's limits, which other nodes may set differently. Bad input fails the same
    /// way every time, and a cancellation was asked for.
    pub fn retryable(&self) -> bool {
        match self {
            EngineError::Timeout(_)
            | EngineError::Crashed { .. }
            | EngineError::Spawn(_)
            | EngineError::Io(_)
            | EngineError::LimitExceeded(_) => true,
            EngineError::BadInput(_) | EngineError::Cancelled => false,
        }
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Io(e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineDescriptor {
    pub kind: EngineKind,
    pub version: String,
}

impl EngineDescriptor {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Test-only engines must never be offered for real jobs.
    pub fn test_only(&self) -> bool {
        self.kind.test_only()
    }
}

/// Every engine goes through this port: the runner hands it the task's [`EngineRun`]
/// (options included) and knows nothing of the adapter behind it.
#[async_trait]
pub trait DockingEngine: Send + Sync {
    fn descriptor(&self) -> &EngineDescriptor;
    async fn run(&self, run: EngineRun) -> Result<EngineOutput, EngineError>;
}

/// Finds an engine's program (at the given path, else its name on PATH) and checks its
/// version; `Err` says why this node cannot offer it.
type Probe = fn(PathBuf) -> BoxFuture<'static, Result<Arc<dyn DockingEngine>, String>>;

/// The engines this agent can drive, one line each, probed in this order.
const REGISTRY: &[(EngineKind, Probe)] = &[
    (EngineKind::Vina, |p| Box::pin(async move { offered(vina::probe(&p).await) })),
    (EngineKind::Smina, |p| Box::pin(async move { offered(smina::probe(&p).await) })),
    (EngineKind::Gnina, |p| Box::pin(async move { offered(gnina::probe(&p).await) })),
    (EngineKind::Rustina, |p| Box::pin(async move { offered(rustina::probe(&p).await) })),
    (EngineKind::Sleep, |_| Box::pin(async { offered(Ok(SleepEngine::new())) })),
];

fn offered<E: DockingEngine + 'static>(probed: Result<E, String>) -> Result<Arc<dyn DockingEngine>, String> {
    probed.map(|e| Arc::new(e) as Arc<dyn DockingEngine>)
}

/// Where to look for each engine; an engine without a path is looked up by its name on PATH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineProbe {
    pub paths: BTreeMap<EngineKind, PathBuf>,
    /// Offer the test-only engines (sleep).
    pub enable_sleep: bool,
}

/// The engines usable on this node: each registered engine whose program answers its
/// probe (Vina 1.2 or later; smina and gnina when `--version` names them; rustina when the
/// Python imports it), at the configured path or on PATH; test-only engines only when
/// enabled.
pub async fn probe_engines(probe: &EngineProbe) -> Vec<Arc<dyn DockingEngine>> {
    let mut engines: Vec<Arc<dyn DockingEngine>> = Vec::new();
    for (kind, find) in REGISTRY {
        if kind.test_only() {
            if probe.enable_sleep {
                engines.extend(find(PathBuf::new()).await.ok());
            }
            continue;
        }
        let configured = probe.paths.get(kind);
        let program = configured.cloned().unwrap_or_else(|| default_program(*kind));
        let found = find(program.clone()).await;
        report_probe(kind.name(), &program, configured.is_some(), found, &mut engines);
    }
    engines
}

/// The program probed for an engine without a configured path: its name on PATH, except
/// for rustina, a Python module, whose program is the Python that imports it.
fn default_program(kind: EngineKind) -> PathBuf {
    match kind {
        EngineKind::Rustina => PathBuf::from("python3"),
        other => PathBuf::from(other.name()),
    }
}

fn report_probe(
    name: &str,
    program: &Path,
    configured: bool,
    found: Result<Arc<dyn DockingEngine>, String>,
    engines: &mut Vec<Arc<dyn DockingEngine>>,
) {
    match found {
        Ok(engine) => {
            tracing::info!(
                engine = name,
                path = %program.display(),
                version = %engine.descriptor().version,
                "engine available"
            );
            engines.push(engine);
        }
        Err(reason) => {
            // Only worth a warning when the operator pointed at a specific binary.
            if configured {
                tracing::warn!(engine = name, path = %program.display(), %reason, "engine not available");
            } else {
                tracing::info!(engine = name, %reason, "engine not available");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        assert!(EngineError::Timeout(Duration::from_secs(1)).retryable());
        assert!(EngineError::Crashed {
            exit_code: None,
            signal: Some(9),
            stderr_tail: String::new()
        }
        .retryable());
        assert!(EngineError::Spawn("EAGAIN".into()).retryable());
        assert!(EngineError::Io("disk full".into()).retryable());
        assert!(EngineError::LimitExceeded("engine exceeded the file-size limit of 1 MB".into()).retryable());
        assert!(!EngineError::BadInput("x".into()).retryable());
        assert!(!EngineError::Cancelled.retryable());
    }

    #[test]
    fn crashed_display_names_signal_or_code() {
        let e = EngineError::Crashed {
            exit_code: None,
            signal: Some(11),
            stderr_tail: "boom".into(),
        };
        assert_eq!(e.to_string(), "engine crashed (killed by signal 11): boom");
        let e = EngineError::Crashed {
            exit_code: Some(1),
            signal: None,
            stderr_tail: "x".into(),
        };
        assert_eq!(e.to_string(), "engine crashed (exit code 1): x");
    }

    /// Every engine Dockyard knows is registered once, so an agent can offer it.
    #[test]
    fn every_engine_kind_is_registered_once() {
        let kinds: Vec<EngineKind> = REGISTRY.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, EngineKind::ALL);
    }

    #[tokio::test]
    async fn probe_without_vina_and_with_sleep() {
        let probe = |enable_sleep| EngineProbe {
            paths: BTreeMap::from([
                (EngineKind::Vina, PathBuf::from("/nonexistent/vina")),
                (EngineKind::Smina, PathBuf::from("/nonexistent/smina")),
                (EngineKind::Gnina, PathBuf::from("/nonexistent/gnina")),
                (EngineKind::Rustina, PathBuf::from("/nonexistent/python3")),
            ]),
            enable_sleep,
        };
        let engines = probe_engines(&probe(true)).await;
        let names: Vec<_> = engines.iter().map(|e| e.descriptor().name()).collect();
        assert_eq!(names, vec!["sleep"]);
        assert!(engines[0].descriptor().test_only());

        let engines = probe_engines(&probe(false)).await;
        assert!(engines.is_empty());
    }

    #[tokio::test]
    async fn probe_finds_smina_and_gnina() {
        let fixtures = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
        let engines = probe_engines(&EngineProbe {
            paths: BTreeMap::from([
                (EngineKind::Vina, PathBuf::from("/nonexistent/vina")),
                (EngineKind::Smina, smina::real_tests::real_smina()),
                (EngineKind::Gnina, fixtures.join("fake_gnina.sh")),
                (EngineKind::Rustina, PathBuf::from("/nonexistent/python3")),
            ]),
            enable_sleep: false,
        })
        .await;
        let found: Vec<_> = engines
            .iter()
            .map(|e| (e.descriptor().name(), e.descriptor().version.as_str()))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        // The real smina reports its build date; gnina is the stand-in (it cannot run here).
        assert_eq!(found[0].0, "smina");
        assert!(found[0].1.split(' ').count() == 3, "{found:?}");
        assert_eq!(found[1], ("gnina", "1.1"));
    }

    #[tokio::test]
    async fn probe_finds_vina_on_path() {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("vina").is_file()))
            .unwrap_or(false);
        assert!(
            on_path,
            "this test needs AutoDock Vina 1.2 on PATH; install it (Debian: apt-get install autodock-vina)"
        );
        let engines = probe_engines(&EngineProbe::default()).await;
        // smina or gnina may be on PATH too; only Vina is under test here.
        let engines: Vec<_> = engines.into_iter().filter(|e| e.descriptor().kind == EngineKind::Vina).collect();
        assert_eq!(engines.len(), 1);
        let d = engines[0].descriptor();
        assert_eq!(d.name(), "vina");
        assert!(d.version.starts_with("1.2."), "{d:?}");
        assert!(!d.test_only());
    }
}
