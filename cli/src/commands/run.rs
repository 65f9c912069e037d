//! `dockyard run` and `dockyard demo`: the whole cluster in one process — a coordinator on
//! loopback with sled in a data folder and artifacts in a local folder, plus one agent.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use dockyard_agent::config::AgentSettings;
use dockyard_coordinator::config::CoordinatorSettings;

use crate::client::Client;
use crate::commands::{query, submit::SubmitArgs, watch};
use crate::output::{self, is_final, job_state, Format};

#[derive(clap::Args, Debug, Clone)]
pub struct EmbeddedArgs {
    /// Folder for the embedded coordinator's state and artifacts.
    #[arg(long, default_value = "dockyard-data")]
    pub data_dir: PathBuf,
    /// Tasks run at once by the embedded agent [default: number of CPUs].
    #[arg(long)]
    pub slots: Option<u32>,
    /// How many of the best hits to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Output format of the hit list.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Starts coordinator + agent, runs one job, prints the hits, stops everything.
pub async fn run_embedded(sub: &SubmitArgs, emb: &EmbeddedArgs) -> Result<bool> {
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
        println!("{}", resp.job_id);
        let job = watch::watch(&client, &resp.job_id, false).await?;
        if job.ligands_total > 0 {
            let (rows, ranked_by) = query::fetch_results(&client, &resp.job_id, emb.top, "").await?;
            if emb.format == Format::Table {
                // A funnel's results are its last stage's.
                let (docked, of) = match job.stages.iter().rev().find(|s| !s.job_id.is_empty()) {
                    Some(s) => (s.ligands_docked, format!(" in stage '{}'", s.name)),
                    None => (job.ligands_docked, String::new()),
                };
                eprintln!(
                    "Top {} of {docked} docked ligands{of} (artifacts in {}):",
                    rows.len(),
                    emb.data_dir.join("coordinator/artifacts").display()
                );
            }
            output::print_results(&rows, &ranked_by, emb.format);
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
