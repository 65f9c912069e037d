//! `dockyard bench funnel`: a full screen at high effort against a funnel (a cheap stage over
//! the whole library, the high effort on the best of it), on one real cluster, with the
//! CPU each took and how many of the full screen's top hits the funnel found.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::process::Child;

use dockyard_proto::v1 as pb;

use super::docking::{prepare, read_ligands, Ligand};
use super::procs;
use crate::client::Client;
use crate::commands::{query, submit::SubmitArgs, watch};

#[derive(clap::Args, Debug, Clone)]
pub struct FunnelArgs {
    /// Receptor PDBQT.
    #[arg(long)]
    pub receptor: PathBuf,
    /// A `.smi` file (prepared once with the agent's Open Babel options, so both runs dock
    /// the same 3D inputs) or a folder of ligand PDBQT files.
    #[arg(long)]
    pub ligands: PathBuf,
    /// Box center X,Y,Z.
    #[arg(long, allow_hyphen_values = true)]
    pub center: String,
    /// Box size X,Y,Z.
    #[arg(long)]
    pub size: String,
    /// The full screen's exhaustiveness, and the funnel's last stage's.
    #[arg(long, default_value_t = 16)]
    pub high: u32,
    /// The funnel's first stage's exhaustiveness.
    #[arg(long, default_value_t = 1)]
    pub cheap: u32,
    /// Which of the first stage's ligands the second docks again: N or P%.
    #[arg(long, default_value = "10%")]
    pub keep: String,
    /// Funnels to run against the one full screen, each `cheap=N keep=N|P%` (repeatable)
    /// [default: one, from --cheap and --keep].
    #[arg(long, value_name = "cheap=N keep=X")]
    pub variant: Vec<String>,
    /// How many of the full screen's best the funnel is asked to find.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    /// Cores for the agents [default: all].
    #[arg(long)]
    pub cores: Option<u32>,
    /// Agent processes sharing the cores (one slot per core between them).
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
}

/// One run's figures.
struct Run {
    job: String,
    wall_s: f64,
    /// The engines' user+system CPU (the job report's).
    engine_cpu_s: f64,
    /// The coordinator's, the agents' own and this client's CPU over the run.
    overhead_cpu_s: f64,
    stages: Vec<pb::StageProgress>,
}

/// This process's own user+system CPU seconds.
fn own_cpu_s() -> f64 {
    procs::cpu_seconds(Some(std::process::id()))
}

/// The ligands as PDBQT files in one folder: a `.smi` file is prepared here, once.
async fn pdbqt_folder(a: &FunnelArgs, tmp: &Path) -> Result<(PathBuf, usize)> {
    let ligands = read_ligands(&a.ligands)?;
    if !ligands.iter().any(|l| matches!(l, Ligand::Smiles { .. })) {
        return Ok((a.ligands.clone(), ligands.len()));
    }
    let dir = tmp.join("ligands");
    std::fs::create_dir_all(&dir)?;
    let mut n = 0;
    for (i, l) in ligands.iter().enumerate() {
        let Ligand::Smiles { smiles, id } = l else { continue };
        // Numbered, so the folder lists in library order; a name repeated in the file stays two ligands.
        let out = dir.join(format!("{i:05}_{id}.pdbqt"));
        match prepare(smiles, &out).await {
            Ok(()) => n += 1,
            Err(e) => eprintln!("left out {id}: {e}"),
        }
    }
    Ok((dir, n))
}

async fn run(client: &Client, sub: &SubmitArgs, pids: &[Option<u32>]) -> Result<Run> {
    let cpu = |pids: &[Option<u32>]| pids.iter().map(|p| procs::cpu_seconds(*p)).sum::<f64>() + own_cpu_s();
    let (t, before) = (Instant::now(), cpu(pids));
    let resp = crate::commands::submit::submit(client, sub).await?;
    let job = watch::watch(client, &resp.job_id, true).await?;
    let wall_s = t.elapsed().as_secs_f64();
    let overhead_cpu_s = cpu(pids) - before;
    if job.state() != pb::JobState::Succeeded {
        bail!("job {} ended {:?}: {}", resp.job_id, job.state(), job.error);
    }
    let report = query::fetch_report(client, &resp.job_id).await?;
    Ok(Run {
        job: resp.job_id,
        wall_s,
        engine_cpu_s: report.cpu_seconds,
        overhead_cpu_s,
        stages: job.stages,
    })
}

/// `cheap=N keep=X`: one funnel to run against the full screen.
fn parse_variant(v: &str) -> Result<(u32, String)> {
    let (mut cheap, mut keep) = (None, None);
    for word in v.split_whitespace() {
        match word.split_once('=') {
            Some(("cheap", x)) => cheap = Some(x.parse().with_context(|| format!("--variant '{v}': cheap={x}"))?),
            Some(("keep", x)) => keep = Some(x.to_string()),
            _ => bail!("--variant '{v}': expected cheap=N keep=N|P%"),
        }
    }
    match (cheap, keep) {
        (Some(c), Some(k)) => Ok((c, k)),
        _ => bail!("--variant '{v}': give both cheap=N and keep=N|P%"),
    }
}

/// One funnel's line of figures against the full screen, and where its cheap stage ranked
/// each of the full screen's best.
#[allow(clippy::too_many_arguments)]
async fn report(
    client: &Client,
    a: &FunnelArgs,
    n: usize,
    cores: u32,
    f: &Run,
    u: &Run,
    best: &[pb::LigandResult],
    cheap_effort: u32,
    keep: &str,
) -> Result<()> {
    let (found, _) = query::fetch_results(client, &u.job, usize::MAX >> 1, "").await?;
    let found: BTreeSet<&str> = found.iter().map(|r| r.ligand.as_str()).collect();
    let hits = best.iter().filter(|r| found.contains(r.ligand.as_str())).count();
    let stage_cpu: Vec<String> = u.stages.iter().map(|s| format!("{}_cpu_s={:.1}", s.name, s.cpu_seconds)).collect();
    let ratio = |x: f64, y: f64| if y > 0.0 { format!("{:.3}", x / y) } else { "n/a".into() };
    println!(
        "ligands={n} high={} cheap={} keep={} survivors={} cores={cores} full_s={:.1} full_engine_cpu_s={:.1} full_overhead_cpu_s={:.1} funnel_s={:.1} funnel_engine_cpu_s={:.1} funnel_overhead_cpu_s={:.1} {} engine_cpu_ratio={} total_cpu_ratio={} top{}_found={hits}/{}",
        a.high,
        cheap_effort,
        keep,
        u.stages.get(1).map_or(0, |s| s.ligands_in),
        f.wall_s,
        f.engine_cpu_s,
        f.overhead_cpu_s,
        u.wall_s,
        u.engine_cpu_s,
        u.overhead_cpu_s,
        stage_cpu.join(" "),
        ratio(u.engine_cpu_s, f.engine_cpu_s),
        ratio(u.engine_cpu_s + u.overhead_cpu_s, f.engine_cpu_s + f.overhead_cpu_s),
        a.top,
        best.len(),
    );
    // Where the cheap stage ranked each of the full screen's best.
    let (cheap, _) = query::fetch_stage_results(client, &u.job, usize::MAX >> 1, "", 1).await?;
    eprintln!(
        "  {:<40} {:>8}  {:>11}  {:>10}  funnel",
        "full screen's best", "score", "cheap rank", "cheap"
    );
    for r in best {
        let mark = if found.contains(r.ligand.as_str()) { "found" } else { "missed" };
        let (rank, score) = cheap
            .iter()
            .position(|c| c.ligand == r.ligand)
            .map_or(("n/a".to_string(), "n/a".to_string()), |i| {
                ((i + 1).to_string(), format!("{:.3}", cheap[i].score))
            });
        eprintln!("  {:<40} {:>8.3}  {rank:>11}  {score:>10}  {mark}", r.ligand, r.score);
    }
    Ok(())
}

pub async fn funnel(a: &FunnelArgs) -> Result<()> {
    let cores = a.cores.unwrap_or_else(dockyard_agent::capacity::cpu_count).max(1);
    if a.agents == 0 || a.agents > cores {
        bail!("--agents must be between 1 and the {cores} cores (one slot per core between them)");
    }
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-funnel-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = bench(a, cores, &tmp).await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn bench(a: &FunnelArgs, cores: u32, tmp: &Path) -> Result<()> {
    let (folder, n) = pdbqt_folder(a, tmp).await?;
    if n == 0 {
        bail!("no ligand in {}", a.ligands.display());
    }
    let (coord, endpoint) = procs::coordinator(&tmp.join("coordinator"), "127.0.0.1:0").await?;
    let mut agents: Vec<Child> = Vec::new();
    for i in 0..a.agents {
        let slots = cores / a.agents + u32::from(i < cores % a.agents);
        agents.push(procs::agent(
            &endpoint,
            &format!("funnel-{i}"),
            slots,
            &tmp.join(format!("agent-{i}")),
            &[],
        )?);
    }
    let pids: Vec<Option<u32>> = std::iter::once(coord.id()).chain(agents.iter().map(Child::id)).collect();
    let client = Client::connect(&endpoint, None).await?;
    procs::wait_for_nodes(&client, a.agents).await?;
    let n32 = n as u32;
    let base = SubmitArgs {
        receptor: Some(a.receptor.clone()),
        ligands: vec![folder],
        center: Some(a.center.clone()),
        size: Some(a.size.clone()),
        engine: "vina".into(),
        seed: Some(a.seed),
        // One batch per slot: grid maps once per batch, every core busy.
        batch_size: Some(n32.div_ceil(cores)),
        // Neither run may be served from the other's results.
        fresh: true,
        ..SubmitArgs::default()
    };
    let full = SubmitArgs {
        exhaustiveness: Some(a.high),
        name: Some("bench-funnel-full".into()),
        ..base.clone()
    };
    let variants: Vec<(u32, String)> = if a.variant.is_empty() {
        vec![(a.cheap, a.keep.clone())]
    } else {
        a.variant.iter().map(|v| parse_variant(v)).collect::<Result<_>>()?
    };
    eprintln!("full screen: {n} ligands at exhaustiveness {}", a.high);
    let f = run(&client, &full, &pids).await?;
    let (best, _) = query::fetch_results(&client, &f.job, a.top, "").await?;
    for (cheap, keep) in variants {
        let kept = match keep.strip_suffix('%') {
            Some(p) => (n as f64 * p.parse::<f64>().context("keep P%")? / 100.0).ceil() as u32,
            None => keep.parse().context("keep N or P%")?,
        };
        let funnel = SubmitArgs {
            name: Some("bench-funnel".into()),
            stage: vec![
                format!("name=cheap exhaustiveness={cheap}"),
                format!(
                    "name=high exhaustiveness={} keep={keep} batch_size={}",
                    a.high,
                    kept.max(1).div_ceil(cores)
                ),
            ],
            ..base.clone()
        };
        eprintln!("funnel: {n} ligands at exhaustiveness {cheap}, then {keep} at {}", a.high);
        let u = run(&client, &funnel, &pids).await?;
        report(&client, a, n, cores, &f, &u, &best, cheap, &keep).await?;
    }
    // The coordinator first, so it does not log the agents' going as lost nodes.
    drop(coord);
    drop(agents);
    Ok(())
}
