//! gnina adapter: smina's command line and SDF output plus CNN scoring and GPU selection.
//!
//! The run loop, output parsing and failure classification are smina's
//! ([`super::smina`]); gnina only adds flags and the child's environment.
//!
//! gnina cannot run on the build machines (it needs CUDA and libtorch), so unlike smina's
//! this adapter is tested only against recorded outputs and the stand-in
//! `tests/fixtures/fake_gnina.sh`; the shared run loop is tested with the real smina.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
pub use dockyard_common::spec::CnnScoring;
use dockyard_common::spec::EngineKind;

use super::process::DEFAULT_GRACE;
use super::smina::{self, SdfRunner, SminaOptions};
use super::{DockingEngine, EngineDescriptor, EngineError, EngineOutput, EngineRun};

/// gnina's command-line options: the task's (from [`EngineRun`]) over the engine's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GninaOptions {
    /// Everything gnina shares with smina (scoring, mode, autobox).
    pub base: SminaOptions,
    /// `None` = gnina's default (`rescore`).
    pub cnn_scoring: Option<CnnScoring>,
    /// `--cnn NAME`: a built-in model or `PREFIX_ensemble`.
    pub cnn: Option<String>,
    /// `--cnn_model FILE`: a torch model file.
    pub cnn_model: Option<PathBuf>,
    /// The host GPU index assigned to this run; the child sees only that GPU.
    pub device: Option<u32>,
    /// `--no_gpu`: CNN on the CPU. Takes precedence over `device`.
    pub no_gpu: bool,
}

impl GninaOptions {
    /// These options with what the task sets taking precedence: its scoring, mode and CNN
    /// options, and the first GPU assigned to the run.
    pub fn for_run(&self, run: &EngineRun) -> GninaOptions {
        let task = &run.params.extra;
        GninaOptions {
            base: self.base.for_task(task),
            cnn_scoring: task.cnn_scoring.or(self.cnn_scoring),
            cnn: task.cnn_model.as_ref().map(|m| m.as_str().to_string()).or_else(|| self.cnn.clone()),
            cnn_model: self.cnn_model.clone(),
            // gnina hides the other GPUs itself (CUDA_VISIBLE_DEVICES, see `child_env`).
            device: run.gpus.first().copied().or(self.device),
            no_gpu: self.no_gpu || task.no_gpu,
        }
    }
}

/// smina's command line ([`smina::build_args`]) plus the gnina flags.
pub fn build_args(run: &EngineRun, opts: &GninaOptions) -> Vec<OsString> {
    let mut args = smina::build_args(run, &opts.base);
    if let Some(mode) = opts.cnn_scoring {
        args.push("--cnn_scoring".into());
        args.push(mode.as_str().into());
    }
    if let Some(name) = &opts.cnn {
        args.push("--cnn".into());
        args.push(name.into());
    }
    if let Some(file) = &opts.cnn_model {
        args.push("--cnn_model".into());
        args.push(file.into());
    }
    if opts.no_gpu {
        args.push("--no_gpu".into());
    } else if opts.device.is_some() {
        // CUDA_VISIBLE_DEVICES (see `child_env`) leaves the assigned GPU as the only
        // one visible, and CUDA numbers visible devices from 0, so the host index would
        // name a device that does not exist inside the child.
        args.push("--device".into());
        args.push("0".into());
    }
    args
}

/// Environment for the gnina child: `CUDA_VISIBLE_DEVICES=<device>` when a GPU is
/// assigned, so that neither gnina nor libtorch touches (and allocates memory on) GPUs
/// that belong to other tasks.
pub fn child_env(opts: &GninaOptions) -> Vec<(OsString, OsString)> {
    match opts.device {
        Some(device) if !opts.no_gpu => vec![("CUDA_VISIBLE_DEVICES".into(), device.to_string().into())],
        _ => Vec::new(),
    }
}

pub struct GninaEngine {
    descriptor: EngineDescriptor,
    program: PathBuf,
    options: GninaOptions,
    grace: Duration,
}

impl GninaEngine {
    /// `version` is what [`smina::parse_version`] read from `program --version`.
    pub fn new(program: impl Into<PathBuf>, version: impl Into<String>) -> Self {
        Self {
            descriptor: EngineDescriptor {
                kind: EngineKind::Gnina,
                version: version.into(),
            },
            program: program.into(),
            options: GninaOptions::default(),
            grace: DEFAULT_GRACE,
        }
    }

    /// Options used by [`DockingEngine::run`] where the task sets none.
    pub fn with_options(mut self, options: GninaOptions) -> Self {
        self.options = options;
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs with `opts` instead of the engine's own options (e.g. per-task GPU).
    pub async fn run_with(&self, run: EngineRun, opts: &GninaOptions) -> Result<EngineOutput, EngineError> {
        let mut opts = opts.clone();
        opts.base = smina::absolute_options(&opts.base)?;
        if let Some(file) = &opts.cnn_model {
            opts.cnn_model = Some(std::path::absolute(file)?);
        }
        if opts.cnn.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(EngineError::BadInput("CNN model name is empty".into()));
        }
        let runner = SdfRunner {
            engine: "gnina",
            program: &self.program,
            grace: self.grace,
            env: child_env(&opts),
            // gnina's table has CNN columns and no RMSDs.
            rmsd_table: false,
        };
        runner.run(run, opts.base.autobox_ligand.is_some(), |r| build_args(r, &opts)).await
    }
}

#[async_trait]
impl DockingEngine for GninaEngine {
    fn descriptor(&self) -> &EngineDescriptor {
        &self.descriptor
    }

    async fn run(&self, run: EngineRun) -> Result<EngineOutput, EngineError> {
        let opts = self.options.for_run(&run);
        self.run_with(run, &opts).await
    }
}

/// Asks `program --version`; the engine is usable if it answers as gnina.
pub(crate) async fn probe(program: &Path) -> Result<GninaEngine, String> {
    let version = smina::probe_version("gnina", program).await?;
    Ok(GninaEngine::new(program, version))
}

#[cfg(test)]
mod tests;
