//! `dockyard bench scale`: a million-ligand screen through the public API. Measures the
//! time to acknowledge it, the coordinator's memory and state on disk with every task
//! queued, the time from a `kill -9` and restart to the first dispatch, and how long a
//! priority-9 task submitted behind the backlog waits for a slot.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::Child;

use dockyard_proto::v1 as pb;

use super::procs;
use crate::client::Client;
use crate::commands::{query, submit::SubmitArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Ligands in the generated SMILES library.
    #[arg(long, default_value_t = 1_000_000)]
    pub ligands: u32,
    /// Ligands per task (1: one task per ligand).
    #[arg(long, default_value_t = 1)]
    pub batch_size: u32,
    /// Receptor PDBQT the screen is docked against.
    #[arg(long)]
    pub receptor: PathBuf,
    /// Box center X,Y,Z.
    #[arg(long, allow_hyphen_values = true)]
    pub center: String,
    /// Box size X,Y,Z.
    #[arg(long)]
    pub size: String,
    /// Agents started after the restart (one slot each, vina and sleep engines).
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
}

/// Distinct, valid SMILES: a chain with two substituents; the name keeps every record unique.
fn write_library(path: &std::path::Path, n: u32) -> Result<u64> {
    const SUBS: [&str; 8] = ["C", "CC", "O", "N", "Cl", "F", "C(=O)O", "c1ccccc1"];
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n as usize {
        writeln!(w, "CC{}C{}N bench_{i}", SUBS[i % 8], SUBS[(i / 8) % 8])?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn job(client: &Client, id: &str) -> Result<pb::Job> {
    Ok(client
        .jobs
        .clone()
        .get_job(client.req(pb::GetJobRequest { job_id: id.into() }))
        .await?
        .into_inner())
}

/// Polls until `done` holds, every 5 ms, for at most `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut done: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let t = Instant::now();
    loop {
        if done().await.unwrap_or(false) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            bail!("{what}: not within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn scale(a: &ScaleArgs) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-scale-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = run(a, &tmp).await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn run(a: &ScaleArgs, tmp: &std::path::Path) -> Result<()> {
    let lib = tmp.join("library.smi");
    let lib_bytes = write_library(&lib, a.ligands)?;
    eprintln!("library: {} ligands, {} MB", a.ligands, lib_bytes / 1_000_000);
    let data = tmp.join("coordinator");
    let listen = format!("127.0.0.1:{}", free_port()?);
    let (mut coord, endpoint) = procs::coordinator(&data, &listen).await?;
    let client = Client::connect(&endpoint, None).await?;

    let sub = SubmitArgs {
        receptor: Some(a.receptor.clone()),
        ligands: vec![lib.clone()],
        center: Some(a.center.clone()),
        size: Some(a.size.clone()),
        engine: "vina".into(),
        exhaustiveness: Some(1),
        batch_size: Some(a.batch_size),
        name: Some("bench-scale".into()),
        ..SubmitArgs::default()
    };
    let t0 = Instant::now();
    let big = crate::commands::submit::submit(&client, &sub).await?;
    let ack_s = t0.elapsed().as_secs_f64();
    let tasks = job(&client, &big.job_id).await?.tasks.unwrap_or_default().total;
    let stats = query::stats(&client).await?;
    let rss = procs::rss_bytes(coord.id());
    let artifacts = procs::du(&data.join("artifacts"));
    eprintln!("acknowledged {tasks} tasks in {ack_s:.1} s; {} queued", stats.queued);
    if stats.queued < u64::from(tasks) {
        bail!("only {} of {tasks} tasks are queued", stats.queued);
    }
    // A snapshot of the whole backlog: how long dispatch stands still for it, and its size.
    let backups = format!("file://{}", tmp.join("backups").display());
    let snap = client
        .admin
        .clone()
        .backup(client.req(pb::BackupRequest { to: backups.clone() }))
        .await
        .context("Backup")?
        .into_inner();
    eprintln!(
        "backup: {} records, {} bytes, dispatch held {:.3} ms, {:.2} s in all",
        snap.records, snap.bytes, snap.pause_ms, snap.seconds
    );

    // A crash with the whole backlog queued; agents (re)connect as it comes back.
    coord.start_kill().context("kill -9 the coordinator")?;
    coord.wait().await?;
    let t1 = Instant::now();
    let (coord, endpoint) = procs::coordinator(&data, &listen).await?;
    let listening_s = t1.elapsed().as_secs_f64();
    // Before any agent connects: the whole backlog came back, not merely something to run.
    let client = Client::connect(&endpoint, None).await?;
    let queued_after = query::stats(&client).await?.queued;
    let total_after = job(&client, &big.job_id).await?.tasks.unwrap_or_default().total;
    if total_after != tasks || queued_after < u64::from(tasks) {
        bail!("after the restart the job has {total_after} of {tasks} tasks and {queued_after} are queued");
    }
    eprintln!("after the restart: {queued_after} of {tasks} tasks queued");
    let mut agents: Vec<Child> = Vec::new();
    for i in 0..a.agents {
        let dir = tmp.join(format!("agent-{i}"));
        agents.push(procs::agent(&endpoint, &format!("scale-{i}"), 1, &dir, &["--enable-sleep-engine"])?);
    }
    until(Duration::from_secs(120), "first dispatch after the restart", || async {
        Ok(query::stats(&client).await?.dispatched_total > 0)
    })
    .await?;
    let first_dispatch_s = t1.elapsed().as_secs_f64();
    let rss_restarted = procs::rss_bytes(coord.id());

    // Every slot busy with the backlog, then one urgent task.
    until(Duration::from_secs(120), "every slot busy", || async {
        Ok(query::stats(&client).await?.running >= u64::from(a.agents))
    })
    .await?;
    let before = query::stats(&client).await?.dispatched_total;
    let urgent = SubmitArgs {
        engine: "sleep".into(),
        count: Some(1),
        sleep_ms: Some(0),
        priority: 9,
        name: Some("bench-scale-urgent".into()),
        ..SubmitArgs::default()
    };
    let t2 = Instant::now();
    let u = crate::commands::submit::submit(&client, &urgent).await?;
    until(Duration::from_secs(600), "the priority-9 task to start", || async {
        let t = job(&client, &u.job_id).await?.tasks.unwrap_or_default();
        Ok(t.running + t.succeeded > 0)
    })
    .await?;
    let urgent_s = t2.elapsed().as_secs_f64();
    // Dispatches from the submission to the urgent task's start, the urgent one included.
    let between = query::stats(&client).await?.dispatched_total.saturating_sub(before);
    drop(agents);
    let mut coord = coord;
    coord.start_kill().context("stop the coordinator")?;
    coord.wait().await?;

    // The data folder lost: the snapshot restored into a new one (the artifacts stay where
    // they were), timed from the start to serving, and the backlog checked again.
    let t3 = Instant::now();
    let artifacts_uri = format!("file://{}", data.join("artifacts").display());
    let restored_dir = tmp.join("restored");
    let (restored, endpoint) =
        procs::coordinator_with(&restored_dir, &listen, &["--artifacts", &artifacts_uri, "--restore-from", &backups]).await?;
    let restore_s = t3.elapsed().as_secs_f64();
    let client = Client::connect(&endpoint, None).await?;
    let queued_restored = query::stats(&client).await?.queued;
    if queued_restored < u64::from(tasks) {
        bail!("after the restore {queued_restored} of {tasks} tasks are queued");
    }
    drop(restored);
    println!(
        "ligands={} tasks={tasks} library_mb={:.1} ack_s={ack_s:.2} rss_mb={} rss_after_restart_mb={} sled_mb={} artifacts_mb={} queued_after_restart={queued_after} restart_listening_s={listening_s:.2} restart_first_dispatch_s={first_dispatch_s:.2} p9_start_s={urgent_s:.3} dispatched_until_p9_started={between} agents={} backup_pause_ms={:.3} backup_s={:.2} backup_mb={:.1} restore_s={restore_s:.2} queued_after_restore={queued_restored}",
        a.ligands,
        lib_bytes as f64 / 1e6,
        rss / 1_000_000,
        rss_restarted / 1_000_000,
        stats.state_bytes_on_disk / 1_000_000,
        artifacts / 1_000_000,
        a.agents,
        snap.pause_ms,
        snap.seconds,
        snap.bytes as f64 / 1e6
    );
    Ok(())
}
