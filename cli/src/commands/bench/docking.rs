//! `dockyard bench docking`: the cluster, with an engine of choice, against a plain `vina`
//! loop on the same cores (and, for smina and rustina, a plain loop of that engine too).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use dockyard_proto::v1 as pb;

use super::plain_loop::{self, LoopEngine};
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
    /// The cluster's engine: vina, smina or rustina. For smina and rustina a plain loop of
    /// that engine runs too (rustina: one `rustina.dock()` per ligand with rustina's own
    /// defaults, which the adapter runs at --exhaustiveness 8).
    #[arg(long, default_value = "vina", value_parser = ["vina", "smina", "rustina"])]
    pub engine: String,
    /// The smina binary, for the agents and the plain smina loop [default: smina on PATH].
    #[arg(long, value_name = "PATH")]
    pub smina: Option<PathBuf>,
    /// A Python that imports `rustina`, for the agents (--rustina-python) and the plain
    /// rustina loop [default: python3 for the loop, the agents' own for them].
    #[arg(long, value_name = "PATH")]
    pub rustina_python: Option<PathBuf>,
}

/// Ligands per hour of one core's CPU time.
fn per_cpu_hour(ligands: u32, cpu_s: f64) -> f64 {
    if cpu_s > 0.0 {
        f64::from(ligands) * 3600.0 / cpu_s
    } else {
        f64::NAN
    }
}

/// What the plain loop docks: PDBQT files as they are, or SMILES to prepare first.
pub(super) enum Ligand {
    Pdbqt(PathBuf),
    Smiles { smiles: String, id: String },
}

pub(super) fn read_ligands(path: &Path) -> Result<Vec<Ligand>> {
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
pub(super) async fn prepare(smiles: &str, out: &Path) -> Result<()> {
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
    // The engine's own loop beside Vina's, when the cluster runs another engine.
    let own = match a.engine.as_str() {
        "smina" => Some(LoopEngine::Smina(a.smina.clone().unwrap_or_else(|| "smina".into()))),
        "rustina" => Some(LoopEngine::Rustina(a.rustina_python.clone().unwrap_or_else(|| "python3".into()))),
        _ => None,
    };
    LoopEngine::Vina.check().await?;
    if let Some(e) = &own {
        e.check().await?;
    }
    if a.engine == "rustina" && a.exhaustiveness != 8 {
        eprintln!(
            "note: the plain rustina loop runs rustina's own default search; the cluster's adapter maps --exhaustiveness {} to its runs (8: the same as the loop)",
            a.exhaustiveness
        );
    }
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-docking-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let figures = loops(
        a,
        &ligands,
        own.as_ref(),
        [center[0], center[1], center[2]],
        [size[0], size[1], size[2]],
        cores,
        &tmp,
    )
    .await;
    let LoopFigures {
        prep_s,
        vina_s,
        vina_cpu_s,
        own_s,
        own_cpu_s,
    } = match figures {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let loop_s = prep_s + vina_s;
    eprintln!("plain loop: {n} ligands in {loop_s:.1}s (preparation {prep_s:.1}s, vina --cpu {cores} {vina_s:.1}s)");
    let own_line = own.as_ref().map_or_else(String::new, |e| {
        let name = e.name();
        eprintln!("plain {name} loop: {n} ligands in {own_s:.1}s ({cores} threads)");
        format!(
            " loop_{name}_s={own_s:.1} loop_{name}_cpu_s={own_cpu_s:.1} loop_{name}_ligands_per_cpu_h={:.1}",
            per_cpu_hour(n, own_cpu_s)
        )
    });

    let result = cluster(a, cores, n, &tmp).await;
    let _ = std::fs::remove_dir_all(&tmp);
    let (cluster_s, engine_cpu_s) = result?;
    println!(
        "ligands={n} exhaustiveness={} cores={cores} agents={} cluster_s={cluster_s:.1} loop_s={loop_s:.1} loop_prep_s={prep_s:.1} loop_vina_s={vina_s:.1} speedup={:.2} cluster_engine_cpu_s={engine_cpu_s:.1} cluster_core_use={:.0}% cluster_engine={} cluster_ligands_per_cpu_h={:.1} loop_vina_cpu_s={vina_cpu_s:.1} loop_vina_ligands_per_cpu_h={:.1}{own_line}",
        a.exhaustiveness,
        a.agents,
        loop_s / cluster_s,
        100.0 * engine_cpu_s / (f64::from(cores) * cluster_s),
        a.engine,
        per_cpu_hour(n, engine_cpu_s),
        per_cpu_hour(n, vina_cpu_s),
    );
    Ok(())
}

/// Time and CPU of the plain loops: Open Babel preparation, Vina, and the cluster's engine when it is not Vina.
struct LoopFigures {
    prep_s: f64,
    vina_s: f64,
    vina_cpu_s: f64,
    own_s: f64,
    own_cpu_s: f64,
}

/// The plain loops, one ligand after the other, each docking on all `cores`.
async fn loops(
    a: &DockingArgs,
    ligands: &[Ligand],
    own: Option<&LoopEngine>,
    center: [&str; 3],
    size: [&str; 3],
    cores: u32,
    tmp: &Path,
) -> Result<LoopFigures> {
    let (mut prep_s, mut vina_s, mut vina_cpu_s, mut own_s, mut own_cpu_s) = (0.0, 0.0, 0.0, 0.0, 0.0);
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
        let out = tmp.join(format!("loop_{i}.pdbqt"));
        let mut d = plain_loop::Docking {
            receptor: &a.receptor,
            ligand: &input,
            out: &out,
            center,
            size,
            exhaustiveness: a.exhaustiveness,
            seed: a.seed,
            cores,
        };
        let (wall, cpu) = plain_loop::dock(&LoopEngine::Vina, &d).await?;
        (vina_s, vina_cpu_s) = (vina_s + wall, vina_cpu_s + cpu);
        if let Some(e) = own {
            let out = tmp.join(format!("loop_{i}_{}.pdbqt", e.name()));
            d.out = &out;
            let (wall, cpu) = plain_loop::dock(e, &d).await?;
            (own_s, own_cpu_s) = (own_s + wall, own_cpu_s + cpu);
        }
    }
    Ok(LoopFigures {
        prep_s,
        vina_s,
        vina_cpu_s,
        own_s,
        own_cpu_s,
    })
}

/// Runs the screen through the cluster; returns its wall seconds and the engines' CPU seconds.
async fn cluster(a: &DockingArgs, cores: u32, n: u32, tmp: &Path) -> Result<(f64, f64)> {
    let (_coord, endpoint) = procs::coordinator(&tmp.join("coordinator"), "127.0.0.1:0").await?;
    let extra = procs::engine_flags(a.smina.as_deref(), a.rustina_python.as_deref());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut agents: Vec<Child> = Vec::new();
    for i in 0..a.agents {
        // One slot per core, split between the agents.
        let slots = cores / a.agents + u32::from(i < cores % a.agents);
        agents.push(procs::agent(
            &endpoint,
            &format!("dock-{i}"),
            slots,
            &tmp.join(format!("agent-{i}")),
            &extra,
        )?);
    }
    let client = Client::connect(&endpoint, None).await?;
    procs::wait_for_nodes(&client, a.agents).await?;
    let nodes = client
        .admin
        .clone()
        .list_nodes(client.req(pb::ListNodesRequest {}))
        .await?
        .into_inner()
        .nodes;
    let without: Vec<&str> = nodes
        .iter()
        .filter(|n| !n.engines.iter().any(|e| e.name == a.engine))
        .map(|n| n.node_id.as_str())
        .collect();
    if !without.is_empty() {
        bail!(
            "agent(s) {} do not offer {} (give --smina PATH or --rustina-python PATH; rustina needs an agent with its adapter)",
            without.join(", "),
            a.engine
        );
    }
    let sub = SubmitArgs {
        receptor: Some(a.receptor.clone()),
        ligands: vec![a.ligands.clone()],
        center: Some(a.center.clone()),
        size: Some(a.size.clone()),
        engine: a.engine.clone(),
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
