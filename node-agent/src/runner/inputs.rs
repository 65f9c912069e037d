//! Steps 1 and 2 of a task: fetch its inputs (the receptor through the node's cache, each
//! ligand into the scratch folder, sliced from its pack where it has one) and prepare them
//! for the engine (obabel or meeko to PDBQT, for engines that read nothing else).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use dockyard_common::artifact::ArtifactKey;
use dockyard_common::spec::{EngineKind, PrepTool};
use dockyard_proto::v1 as pb;

use super::{pack, RunError, RunnerContext};
use crate::engine::{EngineError, LigandFile};
use crate::prepare::meeko::{LigandJob, MeekoPreparer};
use crate::prepare::Preparer;

/// A task's inputs on local disk, ready for the engine.
pub(super) struct Inputs {
    pub receptor: Option<PathBuf>,
    pub ligands: Vec<LigandFile>,
    /// Ligands that could not be prepared: reported alone, the others still dock.
    pub prep_failed: Vec<pb::LigandOutcome>,
    /// Per ligand index: its SMILES (when given as SMILES) and how it was prepared.
    pub notes: HashMap<u32, (String, String)>,
}

/// Fetches and prepares the receptor and ligands of `a` under `scratch/in`.
pub(super) async fn stage(
    ctx: &RunnerContext,
    a: &pb::TaskAssignment,
    kind: EngineKind,
    scratch: &Path,
    cancel: &CancellationToken,
) -> Result<Inputs, RunError> {
    if a.receptor.is_some() || !a.ligands.is_empty() {
        tokio::fs::create_dir_all(scratch.join("in")).await?;
    }
    // A bad value fails the same way on every node.
    let tool = PrepTool::parse(&a.prepare).map_err(|e| RunError::Setup {
        retryable: false,
        reason: e.to_string(),
    })?;
    let prep = Prep {
        ctx,
        kind,
        needs_pdbqt: kind.traits().needs_pdbqt,
        tool,
        protonate: a.protonate,
        cancel,
    };
    // Checked before anything is fetched: another node may have meeko.
    if a.ligands.iter().any(|l| {
        l.artifact
            .as_ref()
            .is_some_and(|art| prep.by_meeko(input_format(&art.format).unwrap_or("pdbqt")))
    }) {
        prep.meeko()?;
    }
    let (receptor, receptor_prep) = match &a.receptor {
        Some(r) => {
            let (path, how) = prep.receptor(r).await?;
            (Some(path), how)
        }
        None => (None, None),
    };
    let mut inputs = Inputs {
        receptor,
        ligands: Vec::with_capacity(a.ligands.len()),
        prep_failed: Vec::new(),
        notes: HashMap::new(),
    };
    // Meeko prepares its ligands in one batch after all are fetched (one Python process).
    let mut batch: Vec<Pending> = Vec::new();
    for l in &a.ligands {
        let Some(art) = &l.artifact else { continue };
        let fmt = match input_format(&art.format) {
            Ok(f) => f,
            Err(reason) => {
                inputs.prep_failed.push(pb::LigandOutcome {
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
        if prep.by_meeko(fmt) {
            batch.push(Pending {
                index: l.index,
                name: l.name.clone(),
                smiles,
                job: LigandJob {
                    index: l.index,
                    input: path,
                    format: fmt,
                },
            });
            continue;
        }
        let (path, preparation) = match prep.ligand(l.index, path, fmt, scratch).await? {
            Ok(staged) => staged,
            Err(e) => {
                inputs.prep_failed.push(pb::LigandOutcome {
                    index: l.index,
                    name: l.name.clone(),
                    error: format!("preparation failed: {e}"),
                    smiles,
                    ..Default::default()
                });
                continue;
            }
        };
        inputs.add(l.index, l.name.clone(), path, smiles, preparation, receptor_prep.as_deref());
    }
    if !batch.is_empty() {
        prep.meeko_batch(batch, scratch, &mut inputs, receptor_prep.as_deref()).await?;
        // The engine sees the ligands in the task's order, whichever tool prepared them.
        inputs.ligands.sort_by_key(|l| l.index);
    }
    Ok(inputs)
}

impl Inputs {
    fn add(&mut self, index: u32, name: String, path: PathBuf, smiles: String, preparation: String, receptor_prep: Option<&str>) {
        let preparation = match receptor_prep {
            Some(r) => format!("{preparation}; receptor: {r}"),
            None => preparation,
        };
        self.notes.insert(index, (smiles, preparation));
        self.ligands.push(LigandFile { index, name, path });
    }
}

/// A fetched ligand waiting for the meeko batch.
struct Pending {
    index: u32,
    name: String,
    smiles: String,
    job: LigandJob,
}

/// How the inputs of one task are prepared.
struct Prep<'a> {
    ctx: &'a RunnerContext,
    kind: EngineKind,
    /// The engine reads only PDBQT; the others read the other formats themselves.
    needs_pdbqt: bool,
    /// The job's ligand preparation tool and whether it protonates.
    tool: PrepTool,
    protonate: bool,
    cancel: &'a CancellationToken,
}

impl Prep<'_> {
    fn tool(&self) -> Result<&Preparer, RunError> {
        self.ctx.preparer.as_deref().ok_or_else(|| RunError::Setup {
            // Another node may have obabel; the coordinator should not have sent it here.
            retryable: true,
            reason: "this node has no preparation tool (install openbabel)".into(),
        })
    }

    fn meeko(&self) -> Result<&MeekoPreparer, RunError> {
        self.ctx.meeko.as_deref().ok_or_else(|| RunError::Setup {
            // Another node may have it; the coordinator should not have sent it here.
            retryable: true,
            reason: "this node has no meeko (pip install meeko rdkit for the agent's --prepare-python)".into(),
        })
    }

    /// Whether a ligand in `fmt` goes to the meeko batch.
    fn by_meeko(&self, fmt: &str) -> bool {
        self.needs_pdbqt && fmt != "pdbqt" && self.tool == PrepTool::Meeko
    }

    /// Prepares the batch with meeko: each ligand joins `inputs`, or its failure with
    /// meeko's reason.
    async fn meeko_batch(
        &self,
        batch: Vec<Pending>,
        scratch: &Path,
        inputs: &mut Inputs,
        receptor_prep: Option<&str>,
    ) -> Result<(), RunError> {
        let meeko = self.meeko()?;
        let jobs: Vec<LigandJob> = batch.iter().map(|p| p.job.clone()).collect();
        let results = cancellable(self.cancel, meeko.prepare(&jobs, self.protonate, &scratch.join("prep"))).await?;
        for (p, (_, r)) in batch.into_iter().zip(results) {
            match r {
                Ok(prepared) => {
                    // A private copy: the cached file is shared with other tasks.
                    let staged = scratch.join("in").join(format!("input_{}.pdbqt", p.index));
                    tokio::fs::copy(&prepared.path, &staged).await?;
                    inputs.add(p.index, p.name, staged, p.smiles, prepared.how, receptor_prep);
                }
                Err(e) => {
                    warn!(ligand = p.index, error = %e, "meeko could not prepare the ligand");
                    inputs.prep_failed.push(pb::LigandOutcome {
                        index: p.index,
                        name: p.name,
                        error: format!("preparation failed: {e}"),
                        smiles: p.smiles,
                        ..Default::default()
                    });
                }
            }
        }
        Ok(())
    }

    /// The receptor's local path (converted when needed) and how it was prepared.
    async fn receptor(&self, r: &pb::ArtifactRef) -> Result<(PathBuf, Option<String>), RunError> {
        let fmt = input_format(&r.format).map_err(|reason| RunError::Setup {
            retryable: false,
            reason: format!("receptor: {reason}"),
        })?;
        let path = self.ctx.cached(&ArtifactKey::new(r.key.as_str())?, fmt).await?;
        if !self.needs_pdbqt || fmt == "pdbqt" {
            return Ok((path, None));
        }
        let prep = self.tool()?;
        let prepared = cancellable(self.cancel, prep.receptor_to_pdbqt(&path, fmt))
            .await?
            .map_err(|e| RunError::Setup {
                retryable: e.retryable(),
                reason: format!("receptor preparation failed: {e}"),
            })?;
        Ok((prepared, Some(prep.describe_receptor(fmt))))
    }

    /// The ligand's path for the engine and how it was prepared; the inner `Err` fails this
    /// ligand alone.
    async fn ligand(&self, index: u32, path: PathBuf, fmt: &str, scratch: &Path) -> Result<Result<(PathBuf, String), String>, RunError> {
        if fmt == "pdbqt" {
            return Ok(Ok((path, "none (pdbqt given)".to_string())));
        }
        if !self.needs_pdbqt {
            return Ok(Ok((path, format!("none ({fmt} given to {})", self.kind))));
        }
        let prep = self.tool()?;
        match cancellable(self.cancel, prep.ligand_to_pdbqt(&path, fmt, self.protonate)).await? {
            Ok(prepared) => {
                // A private copy: the cached file is shared with other tasks.
                let staged = scratch.join("in").join(format!("input_{index}.pdbqt"));
                tokio::fs::copy(&prepared, &staged).await?;
                Ok(Ok((staged, prep.describe(fmt, self.protonate))))
            }
            Err(e) => {
                warn!(ligand = index, error = %e, retryable = e.retryable(), "ligand preparation failed");
                Ok(Err(e.to_string()))
            }
        }
    }
}

/// The format named in an `ArtifactRef`, checked against the ones this agent knows (it also
/// becomes a file extension, so nothing else may pass).
pub(super) fn input_format(format: &str) -> Result<&'static str, String> {
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
