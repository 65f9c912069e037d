//! `dockyard run` and `dockyard demo`: the whole cluster in one process — a coordinator on
//! loopback with sled in a data folder and artifacts in a local folder, plus one agent.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use dockyard_agent::config::AgentSettings;
use dockyard_coordinator::config::CoordinatorSettings;

use crate::client::Client;
use crate::commands::results::{self, Export, ResultsFormat};
use crate::commands::{submit::SubmitArgs, watch};
use crate::output::{is_final, job_state};

#[derive(clap::Args, Debug, Clone)]
pub struct EmbeddedArgs {
    /// Folder for the embedded coordinator's state and artifacts.
    #[arg(long, default_value = "dockyard-data")]
    pub data_dir: PathBuf,
    /// Tasks run at once by the embedded agent [default: number of CPUs].
    #[arg(long)]
    pub slots: Option<u32>,
    /// How many of the best hits to print (0: all of them, written as they are paged in).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Every hit (as --top 0).
    #[arg(long, conflicts_with = "top")]
    pub all: bool,
    /// Format of the hit list; with csv or json stdout carries only the list (the job id
    /// goes to stderr). sdf: poses with scores as data fields (needs --out).
    #[arg(long, value_enum, default_value = "table")]
    pub format: ResultsFormat,
    /// Write the hit list to this file instead of stdout (required for sdf).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Starts coordinator + agent, runs one job, prints the hits, stops everything.
pub async fn run_embedded(sub: &SubmitArgs, emb: &EmbeddedArgs) -> Result<bool> {
    let export = Export::new(emb.top, emb.all, emb.format, emb.out.clone());
    // Before the docking, not after it.
    export.check()?;
    std::fs::create_dir_all(&emb.data_dir).with_context(|| format!("cannot create --data-dir {}", emb.data_dir.display()))?;
    // The declared defaults (not the environment, which is the standalone binaries'), but
    // loopback on any port, and the agent beside the coordinator.
    let ccfg = CoordinatorSettings {
        listen: "127.0.0.1:0".into(),
        data_dir: emb.data_dir.join("coordinator"),
        ..CoordinatorSettings::default()
    }
    .resolve()
    .context("embedded coordinator settings")?;
    let mut coord = dockyard_coordinator::start(ccfg)
        .await
        .context("cannot start the embedded coordinator")?;
    let acfg = AgentSettings {
        coordinator: coord.endpoint(),
        node_id: Some("local".into()),
        work_dir: emb.data_dir.join("agent-work"),
        slots: emb.slots.map(|s| s.max(1)),
        enable_sleep_engine: sub.engine == "sleep",
        // Same machine: the agent reads and writes the artifact folder directly.
        artifacts: Some(coord.artifacts_uri.clone()),
        ..AgentSettings::default()
    }
    .resolve();
    let acfg = match acfg {
        Ok(c) => c,
        Err(e) => {
            coord.shutdown().await;
            return Err(anyhow::Error::new(e).context("embedded agent settings"));
        }
    };
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(dockyard_agent::run(acfg, agent_stop.clone()));

    let endpoint = coord.endpoint();
    let outcome = async {
        let client = Client::connect(&endpoint, None).await?;
        // A funnel is checked against the nodes that could run its stages: let the agent
        // register first (it probes its engines, which takes a moment).
        let registered = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let nodes = client
                .admin
                .clone()
                .list_nodes(client.req(dockyard_proto::v1::ListNodesRequest {}))
                .await
                .map_err(crate::client::explain)?
                .into_inner()
                .nodes;
            if !nodes.is_empty() {
                break;
            }
            if tokio::time::Instant::now() > registered {
                anyhow::bail!("the embedded agent did not register within 60 s");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let resp = super::submit::submit(&client, sub).await?;
        // Scripts read a CSV or JSON hit list from stdout: nothing else may go there.
        let listing_to_stdout = export.to_stdout() && emb.format != ResultsFormat::Table;
        if listing_to_stdout {
            eprintln!("{}", resp.job_id);
        } else {
            println!("{}", resp.job_id);
        }
        let job = watch::watch(&client, &resp.job_id, false).await?;
        // A job without ligands (the sleep engine's) has no hits to show a person; a script
        // still gets a header or an empty array.
        if job.ligands_total > 0 || emb.format != ResultsFormat::Table {
            if emb.format == ResultsFormat::Table && export.to_stdout() {
                // A funnel's results are its last stage's.
                let (docked, of) = match job.stages.iter().rev().find(|s| !s.job_id.is_empty()) {
                    Some(s) => (s.ligands_docked, format!(" in stage '{}'", s.name)),
                    None => (job.ligands_docked, String::new()),
                };
                let shown = export.limit.map_or(docked as usize, |l| l.min(docked as usize));
                eprintln!(
                    "Top {shown} of {docked} docked ligands{of} (artifacts in {}):",
                    emb.data_dir.join("coordinator/artifacts").display()
                );
            }
            results::export(&client, &resp.job_id, "", 0, &export).await?;
        }
        Ok::<_, anyhow::Error>(job)
    };
    let result = tokio::select! {
        r = outcome => r,
        a = async {
            // If the agent dies (e.g. no engine installed) there is no point waiting.
            let mut agent = agent;
            match (&mut agent).await {
                Ok(Err(e)) => Err(anyhow::anyhow!("the embedded agent stopped: {e}")),
                Ok(Ok(())) => Err(anyhow::anyhow!("the embedded agent stopped")),
                Err(e) => Err(anyhow::anyhow!("the embedded agent crashed: {e}")),
            }
        } => a,
        // Nor if the coordinator had to stop (a failed write).
        c = coord.wait() => Err(match c {
            Err(f) => anyhow::anyhow!("the embedded coordinator stopped: {f}"),
            Ok(()) => anyhow::anyhow!("the embedded coordinator stopped"),
        }),
    };
    agent_stop.cancel();
    coord.shutdown().await;
    let job = result?;
    if !is_final(job.state) {
        bail!("job ended in state {}", job_state(job.state));
    }
    Ok(matches!(job_state(job.state), "succeeded" | "partial"))
}

#[derive(Deserialize)]
struct DemoBox {
    center: [f64; 3],
    size: [f64; 3],
    demo: Option<DemoSettings>,
}

#[derive(Deserialize)]
struct DemoSettings {
    exhaustiveness: Option<u32>,
    seed: Option<i64>,
}

/// The `examples/` folder: given, or beside the working directory, or in the source tree.
pub fn find_examples(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(g) = given {
        return Ok(g.to_path_buf());
    }
    let mut candidates = vec![PathBuf::from("examples")];
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/dockyard -> repository root
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(root.join("examples"));
        }
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples"));
    candidates
        .into_iter()
        .find(|c| c.join("receptor.pdbqt").is_file())
        .context("cannot find the examples/ folder; run from the repository root or pass --examples DIR")
}

pub async fn demo(examples: Option<&Path>, emb: &EmbeddedArgs, exhaustiveness: Option<u32>) -> Result<bool> {
    let dir = find_examples(examples)?;
    let text = std::fs::read_to_string(dir.join("box.toml")).with_context(|| format!("{}/box.toml", dir.display()))?;
    let b: DemoBox = toml::from_str(&text).with_context(|| format!("{}/box.toml", dir.display()))?;
    let d = b.demo.unwrap_or(DemoSettings {
        exhaustiveness: None,
        seed: None,
    });
    let sub = SubmitArgs {
        receptor: Some(dir.join("receptor.pdbqt")),
        ligands: vec![dir.join("ligands")],
        center: Some(format!("{},{},{}", b.center[0], b.center[1], b.center[2])),
        size: Some(format!("{},{},{}", b.size[0], b.size[1], b.size[2])),
        engine: "vina".into(),
        exhaustiveness: exhaustiveness.or(d.exhaustiveness),
        seed: d.seed,
        batch_size: Some(1),
        name: Some("demo".into()),
        // The demo shows real docking every time, not the result cache.
        fresh: true,
        ..SubmitArgs::default()
    };
    let n = super::submit::ligand_files(&[dir.join("ligands")])?.len();
    eprintln!(
        "Docking {n} ligands from {} into {} with AutoDock Vina (exhaustiveness {}), coordinator + agent embedded in this process",
        dir.join("ligands").display(),
        dir.join("receptor.pdbqt").display(),
        sub.exhaustiveness.unwrap_or(8)
    );
    run_embedded(&sub, emb).await
}
