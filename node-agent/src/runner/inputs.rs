//! Steps 1 and 2 of a task: fetch its inputs (the receptor through the node's cache, each
//! ligand into the scratch folder, sliced from its pack where it has one) and prepare them
//! for the engine (obabel to PDBQT, for engines that read nothing else).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use dockyard_common::artifact::ArtifactKey;
use dockyard_common::spec::EngineKind;
use dockyard_proto::v1 as pb;

use super::{pack, RunError, RunnerContext};
use crate::engine::{EngineError, LigandFile};
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
    let prep = Prep {
        ctx,
        kind,
        needs_pdbqt: kind.traits().needs_pdbqt,
        cancel,
    };
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
        let (path, mut preparation) = match prep.ligand(l.index, path, fmt, scratch).await? {
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
        if let Some(r) = &receptor_prep {
            preparation = format!("{preparation}; receptor: {r}");
        }
        inputs.notes.insert(l.index, (smiles, preparation));
        inputs.ligands.push(LigandFile {
            index: l.index,
            name: l.name.clone(),
            path,
        });
    }
    Ok(inputs)
}

/// How the inputs of one task are prepared.
struct Prep<'a> {
    ctx: &'a RunnerContext,
    kind: EngineKind,
    /// The engine reads only PDBQT; the others read the other formats themselves.
    needs_pdbqt: bool,
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
        match cancellable(self.cancel, prep.ligand_to_pdbqt(&path, fmt)).await? {
            Ok(prepared) => {
                // A private copy: the cached file is shared with other tasks.
                let staged = scratch.join("in").join(format!("input_{index}.pdbqt"));
                tokio::fs::copy(&prepared, &staged).await?;
                Ok(Ok((staged, prep.describe(fmt))))
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
