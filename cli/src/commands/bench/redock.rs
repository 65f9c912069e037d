//! `dockyard bench redock`: engines side by side on redocking. Every complex of a set is
//! docked by every engine through a real coordinator and agent, and the top pose is compared
//! with the crystal pose by `obrms`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::Child;

use dockyard_proto::v1 as pb;

use super::procs;
use super::redock_set::{self, Complex};
use super::redock_summary::{summary, Outcome, Row};
use crate::client::{explain, Client};
use crate::commands::{query, submit::SubmitArgs, watch};

#[derive(clap::Args, Debug, Clone)]
pub struct RedockArgs {
    /// The set: a folder with one sub-folder per complex (or one complex folder). See the layout below.
    #[arg(long)]
    pub set: PathBuf,
    /// Engines to compare, comma-separated; one no agent offers prints `n/a` rows.
    #[arg(long, value_delimiter = ',', default_value = "vina,smina,rustina")]
    pub engines: Vec<String>,
    /// Search effort per ligand, the same for every engine [default: each engine's own].
    #[arg(long)]
    pub exhaustiveness: Option<u32>,
    /// Cores: the agent gets this many slots and each docking all of them [default: all].
    #[arg(long)]
    pub cores: Option<u32>,
    /// Random seed, the same for every engine.
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    /// The smina binary the agent runs [default: smina on PATH; ../shared/vendor/smina/build.sh prints a built one].
    #[arg(long, value_name = "PATH")]
    pub smina: Option<PathBuf>,
    /// A Python that imports `rustina`, passed to the agent as --rustina-python [default: the agent's own].
    #[arg(long, value_name = "PATH")]
    pub rustina_python: Option<PathBuf>,
    /// Keep each top pose here as `<complex>_<engine>.pdbqt|.sdf` (`/` in names becomes `_`).
    #[arg(long, value_name = "DIR")]
    pub poses_out: Option<PathBuf>,
}

pub const REDOCK_HELP: &str = "The set (as ../shared/data/vina-examples/ is laid out): one folder per complex holding
  *_receptor*.pdbqt   the rigid receptor (a *_receptor_flex.pdbqt beside it is ignored)
  *.box.txt           the box as in a Vina config: center_x = ... size_z = ..., one per line
  <stem>.pdbqt        a ligand to dock, and beside it
  <stem>.sdf          its crystal pose
A folder with several ligand pairs gives one complex each (5x72/p59, 5x72/p69). A folder
without a pair, a receptor or a box is listed as skipped with the reason; a box file that
does not parse is an error naming it.

Each complex and engine is one job (one ligand, one task with all --cores), run one after
another on a coordinator and one agent started for the run, with --fresh (no result cache).
The top pose (the engine's first) is compared with the crystal pose by `obrms -f`, Open
Babel's symmetry-aware heavy-atom RMSD. Printed: one line per complex and engine
  complex=… engine=… top_score=… rmsd=… cpu_s=… wall_s=…
then one line per engine
  engine=… success=k/n median_rmsd=… cpu_s_per_ligand=…
success: top pose under 2 Å; n: complexes tried (a failure counts, and its row says why).
cpu_s is the engine processes' user+system CPU seconds as the agent measures them (the job
report's cpu_seconds: no coordinator, agent or obrms time); wall_s is from submission to the
job's end. An engine no agent offers (smina neither on PATH nor given by --smina, rustina
without its adapter, gnina without CUDA) prints n/a, never 0.

Example:
  target/release/dockyard bench redock --set ../shared/data/vina-examples --engines vina,smina,rustina \\
      --smina \"$(../shared/vendor/smina/build.sh)\" --rustina-python python3 --exhaustiveness 8 --cores 2";

pub async fn redock(a: &RedockArgs) -> Result<()> {
    let set = redock_set::discover(&a.set)?;
    let cores = a.cores.unwrap_or_else(dockyard_agent::capacity::cpu_count).max(1);
    let engines: Vec<String> = a.engines.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
    if engines.is_empty() {
        bail!("--engines names no engine");
    }
    if let Some(dir) = &a.poses_out {
        std::fs::create_dir_all(dir).with_context(|| format!("--poses-out {}", dir.display()))?;
    }
    for s in &set.skipped {
        println!("complex={} skipped={:?}", s.name, s.reason);
    }
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-redock-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = run(a, &set.complexes, &engines, cores, &tmp).await;
    let _ = std::fs::remove_dir_all(&tmp);
    let rows = result?;
    for e in &engines {
        println!("{}", summary(e, &rows));
    }
    Ok(())
}

async fn run(a: &RedockArgs, complexes: &[Complex], engines: &[String], cores: u32, tmp: &Path) -> Result<Vec<Row>> {
    let (_coord, endpoint) = procs::coordinator(&tmp.join("coordinator"), "127.0.0.1:0").await?;
    let extra = procs::engine_flags(a.smina.as_deref(), a.rustina_python.as_deref());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut agent = procs::agent(&endpoint, "redock-0", cores, &tmp.join("agent"), &extra)?;
    let client = Client::connect(&endpoint, None).await?;
    let offered = offered_engines(&client, &mut agent, a.rustina_python.is_some()).await?;
    for e in engines.iter().filter(|e| !offered.contains(*e)) {
        eprintln!(
            "engine {e}: no agent offers it (offered: {}){}; its rows print n/a",
            offered.iter().cloned().collect::<Vec<_>>().join(", "),
            hint(e)
        );
    }

    let mut rows = Vec::new();
    for c in complexes {
        for e in engines {
            let outcome = if offered.contains(e) {
                redock_one(&client, a, c, e, cores, tmp).await
            } else {
                Outcome::Unavailable
            };
            let row = Row {
                complex: c.name.clone(),
                engine: e.clone(),
                outcome,
            };
            println!("{row}");
            let _ = std::io::stdout().flush();
            rows.push(row);
        }
    }
    Ok(rows)
}

fn hint(engine: &str) -> &'static str {
    match engine {
        "smina" => " — give --smina PATH (../shared/vendor/smina/build.sh builds one and prints its path)",
        "rustina" => " — give --rustina-python PATH of a Python that imports rustina, to an agent with the rustina adapter",
        "gnina" => " — gnina needs CUDA and libtorch",
        _ => "",
    }
}

/// Waits for the agent to register; returns the docking engines it offers. An agent that
/// exits first (say, one that does not know a flag) fails the run at once, not after a timeout.
async fn offered_engines(client: &Client, agent: &mut Child, rustina_flag: bool) -> Result<BTreeSet<String>> {
    let t = Instant::now();
    loop {
        if let Some(status) = agent.try_wait()? {
            let why = if rustina_flag {
                " (an agent built before the rustina adapter rejects --rustina-python)"
            } else {
                ""
            };
            bail!("dockyard-agent exited ({status}) before registering{why}; its message is above");
        }
        let nodes = client
            .admin
            .clone()
            .list_nodes(client.req(pb::ListNodesRequest {}))
            .await
            .map_err(explain)?
            .into_inner()
            .nodes;
        if let Some(n) = nodes.first() {
            return Ok(n.engines.iter().filter(|e| !e.test_only).map(|e| e.name.clone()).collect());
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("the agent did not register within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fmt3(v: [f64; 3]) -> String {
    format!("{},{},{}", v[0], v[1], v[2])
}

async fn redock_one(client: &Client, a: &RedockArgs, c: &Complex, engine: &str, cores: u32, tmp: &Path) -> Outcome {
    let sub = SubmitArgs {
        receptor: Some(c.receptor.clone()),
        ligands: vec![c.ligand.clone()],
        center: Some(fmt3(c.center)),
        size: Some(fmt3(c.size)),
        engine: engine.to_string(),
        exhaustiveness: a.exhaustiveness,
        seed: Some(a.seed),
        batch_size: Some(1),
        cpus_per_task: Some(cores),
        // A failure is a result here; retrying would only add its CPU again.
        max_attempts: Some(1),
        // A cached result has no CPU time: every figure must come from a docking of this run.
        fresh: true,
        name: Some(format!("bench-redock {} {engine}", c.name)),
        ..SubmitArgs::default()
    };
    let t = Instant::now();
    let job = match crate::commands::submit::submit(client, &sub).await {
        Ok(r) => r.job_id,
        Err(e) => return failed(format!("submit: {e:#}"), None, None),
    };
    match dock_and_measure(client, &job, t, c, engine, tmp, a.poses_out.as_deref()).await {
        Ok(o) => o,
        Err(e) => failed(format!("{e:#}"), None, Some(t.elapsed().as_secs_f64())),
    }
}

fn failed(reason: String, cpu_s: Option<f64>, wall_s: Option<f64>) -> Outcome {
    Outcome::Failed { reason, cpu_s, wall_s }
}

async fn dock_and_measure(
    client: &Client,
    job: &str,
    started: Instant,
    c: &Complex,
    engine: &str,
    tmp: &Path,
    poses_out: Option<&Path>,
) -> Result<Outcome> {
    watch::watch(client, job, true).await?;
    let wall_s = started.elapsed().as_secs_f64();
    let report = query::fetch_report(client, job).await?;
    let cpu_s = report.cpu_seconds;
    let rows = query::fetch_results(client, job, 1, "").await?.0;
    let Some(top) = rows.first() else {
        let why = report.failures.first().map_or_else(
            || format!("job ended {:?} with no result", report.job.map(|j| j.state()).unwrap_or_default()),
            |f| f.reason.clone(),
        );
        return Ok(failed(why, Some(cpu_s), Some(wall_s)));
    };
    let score = top.poses.first().map_or(top.score, |p| p.affinity);
    let poses = download(client, &top.pose_key).await?;
    // smina writes SDF under the pose key, Vina PDBQT: obrms reads the format from the extension.
    let ext = if String::from_utf8_lossy(&poses).contains("M  END") {
        "sdf"
    } else {
        "pdbqt"
    };
    let file = tmp.join(format!("{}_{engine}.{ext}", c.name.replace('/', "_")));
    std::fs::write(&file, &poses).with_context(|| format!("cannot write {}", file.display()))?;
    if let Some(dir) = poses_out {
        let kept = dir.join(file.file_name().unwrap_or_default());
        std::fs::copy(&file, &kept).with_context(|| format!("cannot write {}", kept.display()))?;
    }
    let rmsd = match super::obrms::top_pose_rmsd(&c.crystal, &file).await {
        Ok(r) => r,
        Err(e) => return Ok(failed(format!("{e:#}"), Some(cpu_s), Some(wall_s))),
    };
    Ok(Outcome::Docked {
        score,
        rmsd,
        cpu_s,
        wall_s,
    })
}

async fn download(client: &Client, key: &str) -> Result<Vec<u8>> {
    if key.is_empty() {
        bail!("the result has no pose file");
    }
    client.artifact(key).await
}
