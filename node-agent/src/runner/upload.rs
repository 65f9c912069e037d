//! Step 4 of a task: store the engine's log and each ligand's poses (plus an SDF copy) under
//! the task's output prefix, and turn the engine's output into one outcome per ligand.

use std::collections::HashMap;
use std::path::Path;

use tracing::warn;

use dockyard_common::artifact::{ArtifactKey, TaskFile};
use dockyard_common::spec::EngineKind;
use dockyard_proto::v1 as pb;

use super::{RunError, RunnerContext};
use crate::engine::sdf_scores::parse_sdf_scores;
use crate::engine::{DockedLigand, EngineOutput};
use crate::prepare::{PrepareError, Preparer};

/// Uploads what the engine wrote; returns the outcomes of the ligands it ran, in its order.
/// `notes` holds each ligand's SMILES and preparation (see `inputs::Inputs`).
pub(super) async fn upload(
    ctx: &RunnerContext,
    a: &pb::TaskAssignment,
    kind: EngineKind,
    out: EngineOutput,
    mut notes: HashMap<u32, (String, String)>,
    work: &Path,
) -> Result<Vec<pb::LigandOutcome>, RunError> {
    let traits = kind.traits();
    let log_key = match &out.log_file {
        Some(f) if !a.output_prefix.is_empty() => {
            let k = ArtifactKey::task_file(&a.output_prefix, TaskFile::EngineLog)?;
            ctx.store.put_file(&k, f).await?;
            k.to_string()
        }
        _ => String::new(),
    };
    // PDBQT engines (Vina) write no SDF; a copy is what most downstream tools read.
    let export_sdf = if traits.needs_pdbqt { ctx.preparer.as_deref() } else { None };
    let mut ligands = Vec::with_capacity(out.ligands.len());
    for l in out.ligands {
        let (smiles, preparation) = notes.remove(&l.index).unwrap_or_default();
        let outcome = match l.result {
            Ok(d) => {
                // The engine's own pose file, named for its format: an SDF engine's poses are
                // stored once, and serve as both the pose file and the SDF.
                let file = if traits.sdf_poses {
                    TaskFile::PosesSdf(l.index)
                } else {
                    TaskFile::PosesPdbqt(l.index)
                };
                let k = ArtifactKey::task_file(&a.output_prefix, file)?;
                ctx.store.put_file(&k, &d.pose_file).await?;
                let sdf_key = if traits.sdf_poses {
                    k.to_string()
                } else {
                    match export_sdf {
                        Some(prep) => export_poses_sdf(ctx, prep, &d, work, &a.output_prefix, l.index).await,
                        None => String::new(),
                    }
                };
                let fields = if traits.sdf_poses {
                    best_pose_fields_of(&d.pose_file, l.index).await
                } else {
                    let mut fields = d.fields.clone();
                    if let Some(name) = traits.score_field.filter(|_| d.best_score.is_finite()) {
                        fields.insert(name.to_string(), d.best_score);
                    }
                    fields
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
    Ok(ligands)
}

/// The engine's data items for the first (best) pose in a smina/gnina SDF pose file.
pub(super) fn best_pose_fields(text: &str) -> Result<HashMap<String, f64>, String> {
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

/// Converts and uploads one ligand's poses as SDF, with the engine's per-pose scores as SD
/// fields; returns its key, or "" when that fails (the PDBQT poses are the result; the SDF
/// is a convenience).
async fn export_poses_sdf(ctx: &RunnerContext, prep: &Preparer, d: &DockedLigand, work: &Path, prefix: &str, index: u32) -> String {
    let sdf = work.join(format!("lig_{index}.sdf"));
    let res: Result<String, String> = async {
        prep.pdbqt_to_sdf(&d.pose_file, &sdf)
            .await
            .map_err(|e: PrepareError| e.to_string())?;
        if d.pose_fields.iter().any(|f| !f.is_empty()) {
            let text = tokio::fs::read_to_string(&sdf).await.map_err(|e| e.to_string())?;
            tokio::fs::write(&sdf, add_sd_fields(&text, &d.pose_fields))
                .await
                .map_err(|e| e.to_string())?;
        }
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

/// `sdf` with the `i`-th record's `fields[i]` added as data items at its end (before
/// `$$$$`); records beyond `fields` are left as they are.
pub(super) fn add_sd_fields(sdf: &str, fields: &[Vec<(String, f64)>]) -> String {
    let mut out = String::with_capacity(sdf.len() + 64 * fields.len());
    let mut record = 0usize;
    for line in sdf.split_inclusive('\n') {
        if line.trim_end() == "$$$$" {
            for (name, value) in fields.get(record).into_iter().flatten() {
                out.push_str(&format!(">  <{name}>\n{value}\n\n"));
            }
            record += 1;
        }
        out.push_str(line);
    }
    out
}
