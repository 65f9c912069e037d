//! `dockyard submit`: read the inputs, build a SubmitJob request, send it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use dockyard_proto::v1 as pb;

use crate::client::{explain, Client};

/// Files at most this big travel inside the SubmitJob message; bigger ones are uploaded first.
const INLINE_MAX: u64 = 2 << 20;
const INLINE_TOTAL_MAX: u64 = 32 << 20;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SubmitArgs {
    /// Receptor file: .pdbqt, or .pdb (prepared on the agent with Open Babel, whatever --prepare says).
    #[arg(long)]
    pub receptor: Option<PathBuf>,
    /// Ligand library: .pdbqt, .sdf, .mol2, .smi, .pdb (optionally .gz), or a folder of them (repeatable).
    #[arg(long)]
    pub ligands: Vec<PathBuf>,
    /// Skip library records that fail validation (listed by `dockyard report`) instead of rejecting the job.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Compute the box from a reference ligand file, as smina's --autobox_ligand.
    #[arg(long, value_name = "FILE")]
    pub autobox_ligand: Option<PathBuf>,
    /// Ångström added on every side of the reference ligand [default: 4].
    #[arg(long, value_name = "Å")]
    pub autobox_add: Option<f64>,
    /// Box center X,Y,Z in Angstrom.
    #[arg(long, value_name = "X,Y,Z", allow_hyphen_values = true)]
    pub center: Option<String>,
    /// Box size X,Y,Z in Angstrom.
    #[arg(long, value_name = "X,Y,Z")]
    pub size: Option<String>,
    /// TOML file with `center = [x, y, z]` and `size = [x, y, z]` (instead of --center/--size).
    #[arg(long = "box", value_name = "FILE")]
    pub box_file: Option<PathBuf>,
    /// Docking engine: vina, smina, gnina, or the test-only sleep.
    #[arg(long, default_value = "vina")]
    pub engine: String,
    /// Search effort per ligand [engine default: 8].
    #[arg(long)]
    pub exhaustiveness: Option<u32>,
    /// Poses kept per ligand [engine default: 9].
    #[arg(long)]
    pub num_modes: Option<u32>,
    /// Random seed [default: 42, so reruns reproduce].
    #[arg(long)]
    pub seed: Option<i64>,
    /// 0 (lowest) to 9 (highest).
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Ligands per task [default: 8].
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Attempts per task before it fails [default: 3].
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Per-task engine timeout in seconds [default: 3600].
    #[arg(long)]
    pub timeout_s: Option<u32>,
    /// A name for the job.
    #[arg(long)]
    pub name: Option<String>,
    /// GPUs each task needs (tasks then go only to nodes with that many free GPUs).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// CPU cores each task takes on an agent (its slots); the engine gets as many threads [default: 1].
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// Scoring function (smina/gnina: vina, vinardo, dkoes_scoring, dkoes_fast, ad4_scoring, ...;
    /// rustina: vinardo (default), vina, ad4_scoring).
    #[arg(long)]
    pub scoring: Option<String>,
    /// smina/gnina: dock (default), minimize, score_only or local_only.
    #[arg(long)]
    pub mode: Option<String>,
    /// gnina: none, rescore (default), refinement, metrorescore, metrorefine, all;
    /// rustina: none (no CNN) or rescore (default).
    #[arg(long)]
    pub cnn_scoring: Option<String>,
    /// gnina: built-in CNN model name.
    #[arg(long)]
    pub cnn_model: Option<String>,
    /// gnina: run on the CPU even when a GPU is assigned.
    #[arg(long)]
    pub no_gpu: bool,
    /// How non-PDBQT ligands are prepared for vina: obabel, or meeko (RDKit ETKDG + Meeko;
    /// tasks then go only to agents with meeko) [default: obabel].
    #[arg(long, value_name = "TOOL")]
    pub prepare: Option<String>,
    /// Protonate ligands at pH 7.4 while preparing them (molscrub with meeko, -p 7.4 with obabel).
    #[arg(long)]
    pub protonate: bool,
    /// rustina: vina, qvina2, qvina2-race, qvina2-active (rustina's default) or gpu
    /// [default: gpu with --gpus, else rustina's].
    #[arg(long, value_name = "MODE")]
    pub search_mode: Option<String>,
    /// Dock every ligand again even if the same docking is in the result cache.
    #[arg(long)]
    pub fresh: bool,
    /// Sleep engine: number of tasks.
    #[arg(long)]
    pub count: Option<u32>,
    /// Sleep engine: milliseconds per task.
    #[arg(long)]
    pub sleep_ms: Option<u32>,
    /// One stage of a funnel, as key=value pairs (repeat for each stage, in order): the first
    /// docks the library, each later one takes the best of the one before, e.g.
    /// --stage "engine=vina exhaustiveness=1" --stage "keep=10% exhaustiveness=32 num_modes=20".
    /// Keys: name engine exhaustiveness num_modes seed scoring mode cnn_scoring cnn_model
    /// search_mode no_gpu gpus cpus_per_task batch_size timeout_s rank_by keep (N or P%)
    /// max_score receptor center size. Unset keys take the job's flags.
    #[arg(long, value_name = "K=V ...")]
    pub stage: Vec<String>,
    /// A funnel's stages from a TOML file: one [[stage]] table per stage, with the keys of --stage.
    #[arg(long, value_name = "FILE", conflicts_with = "stage")]
    pub plan: Option<PathBuf>,
}

#[derive(Deserialize)]
struct BoxFile {
    center: [f64; 3],
    size: [f64; 3],
}

pub fn parse_vec3(flag: &str, s: &str) -> Result<pb::Vec3> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 3 {
        bail!("--{flag} takes three numbers X,Y,Z (got '{s}')");
    }
    let mut v = [0.0; 3];
    for (i, p) in parts.iter().enumerate() {
        v[i] = p.parse().with_context(|| format!("--{flag}: '{p}' is not a number"))?;
    }
    Ok(pb::Vec3 { x: v[0], y: v[1], z: v[2] })
}

pub fn read_box(args: &SubmitArgs) -> Result<Option<pb::DockingBox>> {
    if let Some(f) = &args.box_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read --box {}", f.display()))?;
        let b: BoxFile =
            toml::from_str(&text).with_context(|| format!("--box {}: expected center = [x, y, z] and size = [x, y, z]", f.display()))?;
        return Ok(Some(
            dockyard_common::spec::DockBox {
                center: b.center,
                size: b.size,
            }
            .to_proto(),
        ));
    }
    match (&args.center, &args.size) {
        (Some(c), Some(s)) => Ok(Some(pb::DockingBox {
            center: Some(parse_vec3("center", c)?),
            size: Some(parse_vec3("size", s)?),
        })),
        (None, None) => Ok(None),
        _ => bail!("give both --center and --size (or --box FILE)"),
    }
}

fn is_library_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    [".pdbqt", ".sdf", ".sd", ".mol", ".mol2", ".smi", ".smiles", ".pdb", ".ent"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// Ligand files in the order given; a folder contributes its *.pdbqt files sorted by name.
pub fn ligand_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("--ligands {}: cannot read", p.display()))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("--ligands {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_library_file(f))
                .collect();
            files.sort();
            if files.is_empty() {
                bail!(
                    "--ligands {}: the folder has no ligand files (.pdbqt .sdf .mol2 .smi .pdb, optionally .gz)",
                    p.display()
                );
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

async fn input_file(client: &Client, path: &Path, inline_budget: &mut u64) -> Result<pb::InputFile> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("input").to_string();
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size <= INLINE_MAX && size <= *inline_budget {
        *inline_budget -= size;
        let content = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(pb::InputFile {
            name,
            source: Some(pb::input_file::Source::Content(content)),
        });
    }
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut msgs = vec![pb::UploadInputChunk {
        part: Some(pb::upload_input_chunk::Part::Name(name.clone())),
    }];
    for c in data.chunks(1 << 20) {
        msgs.push(pb::UploadInputChunk {
            part: Some(pb::upload_input_chunk::Part::Data(c.to_vec())),
        });
    }
    let r = client
        .jobs
        .clone()
        .upload_input(client.req(tokio_stream::iter(msgs)))
        .await
        .map_err(explain)?
        .into_inner();
    Ok(pb::InputFile {
        name,
        source: Some(pb::input_file::Source::UploadId(r.upload_id)),
    })
}

pub async fn build_request(client: &Client, a: &SubmitArgs) -> Result<pb::SubmitJobRequest> {
    let mut req = pb::SubmitJobRequest {
        name: a.name.clone().unwrap_or_default(),
        engine: a.engine.clone(),
        priority: a.priority,
        batch_size: a.batch_size.unwrap_or(0),
        max_attempts: a.max_attempts.unwrap_or(0),
        timeout_s: a.timeout_s.unwrap_or(0),
        gpus_per_task: a.gpus.unwrap_or(0),
        cpus_per_task: a.cpus_per_task,
        params: Some(pb::EngineParams {
            exhaustiveness: a.exhaustiveness.unwrap_or(0),
            num_modes: a.num_modes.unwrap_or(0),
            seed: a.seed.unwrap_or(0),
            energy_range: 0.0,
            sleep_ms: a.sleep_ms.unwrap_or(0),
            scoring: a.scoring.clone().unwrap_or_default(),
            mode: a.mode.clone().unwrap_or_default(),
            cnn_scoring: a.cnn_scoring.clone().unwrap_or_default(),
            cnn_model: a.cnn_model.clone().unwrap_or_default(),
            no_gpu: a.no_gpu,
            search_mode: a.search_mode.clone().unwrap_or_default(),
        }),
        fresh: a.fresh,
        // Checked by the coordinator, the one place that knows the tools.
        prepare: a.prepare.clone().unwrap_or_default(),
        protonate: a.protonate,
        ..Default::default()
    };
    let stages = match &a.plan {
        Some(f) => super::stages::read_plan(f)?,
        None => a.stage.iter().map(|s| super::stages::parse_stage(s)).collect::<Result<Vec<_>>>()?,
    };
    let mut budget = INLINE_TOTAL_MAX;
    for (i, t) in stages.iter().enumerate() {
        let (mut s, receptor) = super::stages::to_proto(i, t)?;
        if let Some(r) = receptor {
            s.receptor = Some(input_file(client, &r, &mut budget).await?);
        }
        req.stages.push(s);
    }
    // In a funnel even the test-only sleep engine takes a library (its made-up scores rank it).
    if a.engine == "sleep" && stages.is_empty() {
        if a.receptor.is_some() || !a.ligands.is_empty() {
            bail!("the sleep engine takes no input files; use --count N [--sleep-ms MS]");
        }
        req.sleep_task_count = a.count.context("the sleep engine needs --count N (number of tasks)")?;
        return Ok(req);
    }
    if a.count.is_some() || (a.sleep_ms.is_some() && a.engine != "sleep") {
        bail!("--count and --sleep-ms are for --engine sleep only (and a funnel takes a library, not --count)");
    }
    let receptor = a.receptor.as_ref().context("missing --receptor FILE.pdbqt")?;
    if a.ligands.is_empty() {
        bail!("missing --ligands FILE|DIR");
    }
    match &a.autobox_ligand {
        Some(f) => {
            if read_box(a)?.is_some() {
                bail!("give either --autobox-ligand or a box (--center/--size or --box), not both");
            }
            req.autobox_ligand = Some(input_file(client, f, &mut budget).await?);
            req.autobox_add = a.autobox_add.unwrap_or(0.0);
        }
        None => {
            req.r#box =
                Some(read_box(a)?.context("missing the box: give --center X,Y,Z --size X,Y,Z, --box FILE or --autobox-ligand FILE")?);
        }
    }
    req.skip_invalid = a.skip_invalid;
    req.receptor = Some(input_file(client, receptor, &mut budget).await?);
    for f in ligand_files(&a.ligands)? {
        req.ligands.push(input_file(client, &f, &mut budget).await?);
    }
    Ok(req)
}

pub async fn submit(client: &Client, a: &SubmitArgs) -> Result<pb::SubmitJobResponse> {
    let req = build_request(client, a).await?;
    Ok(client.jobs.clone().submit_job(client.req(req)).await.map_err(explain)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec3_parsing_reports_the_flag() {
        let v = parse_vec3("center", "15.19, 53.903,-16.9").expect("ok");
        assert_eq!((v.x, v.y, v.z), (15.19, 53.903, -16.9));
        let e = parse_vec3("size", "1,2").expect_err("two numbers");
        assert!(e.to_string().contains("--size"));
        let e = parse_vec3("size", "1,b,2").expect_err("not a number");
        assert!(format!("{e:#}").contains("'b'"));
    }

    #[test]
    fn a_folder_without_pdbqt_is_an_error() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("notes.txt"), "x").expect("write");
        let e = ligand_files(&[d.path().to_path_buf()]).expect_err("empty");
        assert!(e.to_string().contains("no ligand files"));
    }
}
