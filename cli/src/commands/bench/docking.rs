//! `dockyard bench docking`: the cluster against a plain `vina` loop on the same cores.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use dockyard_proto::v1 as pb;

use super::procs;
use crate::client::Client;
use crate::commands::{submit::SubmitArgs, watch};

#[derive(clap::Args, Debug, Clone)]
pub struct DockingArgs {
    /// Receptor PDBQT.
    #[arg(long)]
    pub receptor: PathBuf,
    /// Folder of ligand PDBQT files, or a `.smi` file (both sides then prepare each ligand
    /// with the same Open Babel options as the agent).
    #[arg(long)]
    pub ligands: PathBuf,
    /// Box center X,Y,Z.
    #[arg(long, allow_hyphen_values = true)]
    pub center: String,
    /// Box size X,Y,Z.
    #[arg(long)]
    pub size: String,
    #[arg(long, default_value_t = 1)]
    pub exhaustiveness: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    /// Cores for both sides [default: all].
    #[arg(long)]
    pub cores: Option<u32>,
    /// Agent processes sharing the cores (one slot per core between them).
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// Ligands per task [default: the ligands divided by the cores].
    #[arg(long)]
    pub batch_size: Option<u32>,
}

/// What the plain loop docks: PDBQT files as they are, or SMILES to prepare first.
enum Ligand {
    Pdbqt(PathBuf),
    Smiles { smiles: String, id: String },
}

fn read_ligands(path: &Path) -> Result<Vec<Ligand>> {
    if path.extension().is_some_and(|e| e == "smi") {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let smiles = it.next()?.to_string();
                let id = it.next().unwrap_or("ligand").to_string();
                Some(Ligand::Smiles { smiles, id })
            })
            .collect());
    }
    Ok(crate::commands::submit::ligand_files(&[path.to_path_buf()])?
        .into_iter()
        .map(Ligand::Pdbqt)
        .collect())
}

/// The agent's own SMILES preparation (node-agent/src/prepare.rs), so both sides do the same work.
async fn prepare(smiles: &str, out: &Path) -> Result<()> {
    let status = Command::new("obabel")
        .arg(format!("-:{smiles}"))
        .args(["--gen3d", "-h", "--partialcharge", "gasteiger", "-opdbqt", "-O"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .context("cannot run obabel")?;
    if !status.success() {
        bail!("obabel could not prepare {smiles}");
    }
    Ok(())
}

/// A real coordinator and `agents` agent processes splitting `cores` slots between them
/// against a plain sequential `vina --cpu cores` loop, same seed and effort.
pub async fn docking(a: &DockingArgs) -> Result<()> {
    let cores = a.cores.unwrap_or_else(dockyard_agent::capacity::cpu_count).max(1);
    if a.agents == 0 || a.agents > cores {
        bail!("--agents must be between 1 and the {cores} cores (one slot per core between them)");
    }
    let ligands = read_ligands(&a.ligands)?;
    let n = ligands.len() as u32;
    if n == 0 {
        bail!("no ligand in {}", a.ligands.display());
    }
    let center: Vec<&str> = a.center.split(',').collect();
    let size: Vec<&str> = a.size.split(',').collect();
    if center.len() != 3 || size.len() != 3 {
        bail!("--center and --size take X,Y,Z");
    }
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-docking-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;

    let (mut prep_s, mut vina_s) = (0.0, 0.0);
    for (i, l) in ligands.iter().enumerate() {
        let t = Instant::now();
        let input = match l {
            Ligand::Pdbqt(p) => p.clone(),
            Ligand::Smiles { smiles, id } => {
                let p = tmp.join(format!("{id}.pdbqt"));
                prepare(smiles, &p).await?;
                p
            }
        };
        prep_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let status = Command::new("vina")
            .arg("--receptor")
            .arg(&a.receptor)
            .arg("--ligand")
            .arg(&input)
            .args(["--center_x", center[0], "--center_y", center[1], "--center_z", center[2]])
            .args(["--size_x", size[0], "--size_y", size[1], "--size_z", size[2]])
            .args([
                "--exhaustiveness",
                &a.exhaustiveness.to_string(),
                "--seed",
                &a.seed.to_string(),
                "--cpu",
                &cores.to_string(),
            ])
            .arg("--out")
            .arg(tmp.join(format!("loop_{i}.pdbqt")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("cannot run vina")?;
        vina_s += t.elapsed().as_secs_f64();
        if !status.success() {
            bail!("vina failed on ligand {i}");
        }
    }
    let loop_s = prep_s + vina_s;
    eprintln!("plain loop: {n} ligands in {loop_s:.1}s (preparation {prep_s:.1}s, vina --cpu {cores} {vina_s:.1}s)");

    let result = cluster(a, cores, n, &tmp).await;
    let _ = std::fs::remove_dir_all(&tmp);
    let (cluster_s, engine_cpu_s) = result?;
    println!(
        "ligands={n} exhaustiveness={} cores={cores} agents={} cluster_s={cluster_s:.1} loop_s={loop_s:.1} loop_prep_s={prep_s:.1} loop_vina_s={vina_s:.1} speedup={:.2} cluster_engine_cpu_s={engine_cpu_s:.1} cluster_core_use={:.0}%",
        a.exhaustiveness,
        a.agents,
        loop_s / cluster_s,
        100.0 * engine_cpu_s / (f64::from(cores) * cluster_s)
    );
    Ok(())
}

/// Runs the screen through the cluster; returns its wall seconds and the engines' CPU seconds.
async fn cluster(a: &DockingArgs, cores: u32, n: u32, tmp: &Path) -> Result<(f64, f64)> {
    let (_coord, endpoint) = procs::coordinator(&tmp.join("coordinator"), "127.0.0.1:0").await?;
    let mut agents: Vec<Child> = Vec::new();
    for i in 0..a.agents {
        // One slot per core, split between the agents.
        let slots = cores / a.agents + u32::from(i < cores % a.agents);
        agents.push(procs::agent(
            &endpoint,
            &format!("dock-{i}"),
            slots,
            &tmp.join(format!("agent-{i}")),
            &[],
        )?);
    }
    let client = Client::connect(&endpoint, None).await?;
    procs::wait_for_nodes(&client, a.agents).await?;
    let sub = SubmitArgs {
        receptor: Some(a.receptor.clone()),
        ligands: vec![a.ligands.clone()],
        center: Some(a.center.clone()),
        size: Some(a.size.clone()),
        engine: "vina".into(),
        exhaustiveness: Some(a.exhaustiveness),
        seed: Some(a.seed),
        // One batch per slot by default: grid maps are computed once per batch and every core is busy.
        batch_size: Some(a.batch_size.unwrap_or_else(|| n.div_ceil(cores))),
        name: Some("bench-docking".into()),
        ..SubmitArgs::default()
    };
    let t = Instant::now();
    let resp = crate::commands::submit::submit(&client, &sub).await?;
    let job = watch::watch(&client, &resp.job_id, true).await?;
    let wall = t.elapsed().as_secs_f64();
    if job.state() != pb::JobState::Succeeded {
        bail!("the cluster job ended {:?}", job.state());
    }
    let report = client
        .jobs
        .clone()
        .get_job_report(client.req(pb::GetJobRequest { job_id: resp.job_id }))
        .await?
        .into_inner();
    Ok((wall, report.cpu_seconds))
}
