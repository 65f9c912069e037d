//! `dockyard bench compression`: the same screen once per artifact-compression mode, each on
//! a fresh coordinator and fresh agents (same engine, seed and batches), with what each mode
//! stored and what it cost. Bytes stored are counted on disk (the coordinator's file
//! artifact store, every object the screen wrote: receptor, ligand packs, poses, logs), not
//! from the codec's own counters; those are printed beside them as a cross-check, with the
//! CPU the codec spent. CPU is every Dockyard process's own (coordinator and agents, not
//! their engine children) from /proc, and the engines' from the job report.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use dockyard_common::metrics_http::series_value as value;
use dockyard_proto::v1 as pb;

use super::procs;
use crate::client::Client;
use crate::commands::{submit::SubmitArgs, watch};

#[derive(clap::Args, Debug, Clone)]
pub struct CompressionArgs {
    /// Receptor PDBQT.
    #[arg(long)]
    pub receptor: std::path::PathBuf,
    /// Ligand library: a folder of PDBQT files or any library file `submit` takes.
    #[arg(long)]
    pub ligands: std::path::PathBuf,
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
    /// Slots of the one agent [default: all cores].
    #[arg(long)]
    pub slots: Option<u32>,
    /// Ligands per task.
    #[arg(long, default_value_t = 50)]
    pub batch_size: u32,
    /// Modes to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "off,zstd", value_parser = ["off", "zstd"])]
    pub modes: Vec<String>,
}

/// What one mode's screen stored and spent.
struct Figures {
    mode: String,
    wall_s: f64,
    ligands_docked: u32,
    best_score: Option<f64>,
    stored_bytes: u64,
    objects: u64,
    /// The codec's counters, coordinator plus agent: bytes handed to the store and bytes it
    /// wrote, CPU compressing and decompressing.
    codec_written: Option<f64>,
    codec_stored: Option<f64>,
    compress_cpu_s: Option<f64>,
    decompress_cpu_s: Option<f64>,
    coordinator_cpu_s: f64,
    agent_cpu_s: f64,
    engine_cpu_s: f64,
}

pub async fn compression(a: &CompressionArgs) -> Result<()> {
    let slots = a.slots.unwrap_or_else(dockyard_agent::capacity::cpu_count).max(1);
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut runs = Vec::new();
    for mode in &a.modes {
        let tmp = std::env::temp_dir().join(format!("dockyard-bench-compression-{}-{mode}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let r = screen(a, mode, slots, &tmp).await;
        let _ = std::fs::remove_dir_all(&tmp);
        let f = r.with_context(|| format!("the screen with --artifact-compression {mode}"))?;
        println!(
            "mode={} ligands_docked={} best_score={} wall_s={:.1} stored_bytes={} objects={} codec_written_bytes={} codec_stored_bytes={} compress_cpu_s={} decompress_cpu_s={} coordinator_cpu_s={:.2} agent_cpu_s={:.2} engine_cpu_s={:.1}",
            f.mode,
            f.ligands_docked,
            f.best_score.map_or("n/a".into(), |s| format!("{s:.2}")),
            f.wall_s,
            f.stored_bytes,
            f.objects,
            opt(f.codec_written, 0),
            opt(f.codec_stored, 0),
            opt(f.compress_cpu_s, 3),
            opt(f.decompress_cpu_s, 3),
            f.coordinator_cpu_s,
            f.agent_cpu_s,
            f.engine_cpu_s,
        );
        runs.push(f);
    }
    if let (Some(off), Some(on)) = (runs.iter().find(|f| f.mode == "off"), runs.iter().find(|f| f.mode == "zstd")) {
        let same = off.ligands_docked == on.ligands_docked && off.best_score == on.best_score;
        println!(
            "zstd_stored_fraction={:.3} saved_bytes={} same_results={} dockyard_cpu_delta_s={:.2}",
            on.stored_bytes as f64 / off.stored_bytes.max(1) as f64,
            off.stored_bytes.saturating_sub(on.stored_bytes),
            // Vina with one seed and one search per ligand docks the same either way.
            if same { "yes" } else { "no" },
            (on.coordinator_cpu_s + on.agent_cpu_s) - (off.coordinator_cpu_s + off.agent_cpu_s),
        );
    }
    Ok(())
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

async fn screen(a: &CompressionArgs, mode: &str, slots: u32, tmp: &Path) -> Result<Figures> {
    let (coord_metrics, agent_metrics) = (free_addr()?, free_addr()?);
    let data = tmp.join("coordinator");
    let (coord, endpoint) = procs::coordinator_with(
        &data,
        "127.0.0.1:0",
        &["--artifact-compression", mode, "--metrics-listen", &coord_metrics],
    )
    .await?;
    let agent = procs::agent(
        &endpoint,
        "compression-0",
        slots,
        &tmp.join("agent-0"),
        &["--artifact-compression", mode, "--metrics-listen", &agent_metrics],
    )?;
    let client = Client::connect(&endpoint, None).await?;
    procs::wait_for_nodes(&client, 1).await?;
    let cpu = || (procs::cpu_seconds(coord.id()), procs::cpu_seconds(agent.id()));
    let before = cpu();
    let sub = SubmitArgs {
        receptor: Some(a.receptor.clone()),
        ligands: vec![a.ligands.clone()],
        center: Some(a.center.clone()),
        size: Some(a.size.clone()),
        engine: "vina".into(),
        exhaustiveness: Some(a.exhaustiveness),
        seed: Some(a.seed),
        batch_size: Some(a.batch_size),
        name: Some(format!("bench-compression-{mode}")),
        // Every mode docks: no answers from a result cache.
        fresh: true,
        ..SubmitArgs::default()
    };
    let t = Instant::now();
    let resp = crate::commands::submit::submit(&client, &sub).await?;
    let job = watch::watch(&client, &resp.job_id, true).await?;
    let wall_s = t.elapsed().as_secs_f64();
    let after = cpu();
    if job.state() != pb::JobState::Succeeded {
        bail!("the job ended {:?}", job.state());
    }
    let report = client
        .jobs
        .clone()
        .get_job_report(client.req(pb::GetJobRequest {
            job_id: resp.job_id.clone(),
        }))
        .await?
        .into_inner();
    let (c, g) = (scrape(&coord_metrics).await?, scrape(&agent_metrics).await?);
    // The coordinator's series are `dockyard_artifact_*`, the agent's `dockyard_agent_artifact_*`.
    let sum = |name: &str| Some(value(&c, &format!("dockyard_artifact_{name}"))? + value(&g, &format!("dockyard_agent_artifact_{name}"))?);
    let (stored_bytes, objects) = procs::du_files(&data.join("artifacts"));
    Ok(Figures {
        mode: mode.to_string(),
        wall_s,
        ligands_docked: job.ligands_docked,
        best_score: (job.ligands_docked > 0).then_some(job.best_score),
        stored_bytes,
        objects,
        codec_written: sum("written_bytes_total"),
        codec_stored: sum("stored_bytes_total"),
        compress_cpu_s: sum("compress_cpu_seconds_total"),
        decompress_cpu_s: sum("decompress_cpu_seconds_total"),
        coordinator_cpu_s: after.0 - before.0,
        agent_cpu_s: after.1 - before.1,
        engine_cpu_s: report.cpu_seconds,
    })
}

/// A loopback address whose port was free a moment ago.
fn free_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.to_string())
}

/// `GET /metrics` over plain HTTP/1.1.
async fn scrape(addr: &str) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the metrics listener at {addr}"))?;
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).await?;
    match reply.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => bail!("{addr}/metrics did not answer 200"),
    }
}
