//! `dockyard bench dispatch`: a real coordinator and K real agent processes on loopback,
//! N sleep-engine tasks (0 ms) through the public API, every state change durable.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::Client;
use crate::commands::{query, submit::SubmitArgs, watch};

#[derive(clap::Args, Debug, Clone)]
pub struct DispatchArgs {
    /// Tasks to submit.
    #[arg(long, default_value_t = 100_000)]
    pub tasks: u32,
    /// Agent processes to start.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// Slots per agent: the credit each agent gives the coordinator, i.e. tasks in flight.
    #[arg(long, default_value_t = 1024)]
    pub slots: u32,
    /// Milliseconds each sleep task waits.
    #[arg(long, default_value_t = 0)]
    pub sleep_ms: u32,
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the dockyard binary")?;
    let p = exe.with_file_name(name);
    if !p.is_file() {
        bail!(
            "{} not found beside {}; build all binaries: cargo build --release",
            name,
            exe.display()
        );
    }
    Ok(p)
}

/// User+system CPU seconds of a live process, from /proc.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0) + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

pub async fn dispatch(a: &DispatchArgs) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut coord = Command::new(sibling("dockyard-coordinator")?)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.join("coordinator"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start dockyard-coordinator")?;
    let stdout = coord.stdout.take().context("coordinator stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await? {
            if let Some(a) = l.strip_prefix("listening on ") {
                return Ok::<_, anyhow::Error>(a.to_string());
            }
        }
        bail!("coordinator exited before listening")
    })
    .await
    .context("coordinator did not start within 30 s")??;
    let endpoint = format!("http://{addr}");
    let mut agents: Vec<Child> = Vec::new();
    for i in 0..a.agents {
        agents.push(
            Command::new(sibling("dockyard-agent")?)
                .args([
                    "--coordinator",
                    &endpoint,
                    "--enable-sleep-engine",
                    "--node-id",
                    &format!("bench-{i}"),
                    "--slots",
                    &a.slots.to_string(),
                    "--work-dir",
                ])
                .arg(tmp.join(format!("agent-{i}")))
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .spawn()
                .context("cannot start dockyard-agent")?,
        );
    }
    let client = Client::connect(&endpoint, None).await?;
    let ready = Instant::now();
    loop {
        let n = client
            .admin
            .clone()
            .list_nodes(client.req(dockyard_proto::v1::ListNodesRequest {}))
            .await?
            .into_inner()
            .nodes
            .len();
        if n as u32 >= a.agents {
            break;
        }
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("only {n} of {} agents registered within 30 s", a.agents);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let coord0 = cpu_seconds(coord.id());
    let agents0 = agents.iter().map(|c| cpu_seconds(c.id())).sum::<f64>();
    let sub = SubmitArgs {
        engine: "sleep".into(),
        count: Some(a.tasks),
        sleep_ms: Some(a.sleep_ms),
        name: Some("bench-dispatch".into()),
        ..SubmitArgs::default()
    };
    let t0 = Instant::now();
    let resp = super::submit::submit(&client, &sub).await?;
    let submitted = t0.elapsed();
    let job = watch::watch(&client, &resp.job_id, true).await?;
    let wall = t0.elapsed().as_secs_f64();
    let coord_cpu = cpu_seconds(coord.id()) - coord0;
    let agents_cpu = agents.iter().map(|c| cpu_seconds(c.id())).sum::<f64>() - agents0;
    let cpu = coord_cpu + agents_cpu;
    let stats = query::stats(&client).await?;
    let done = job.tasks.unwrap_or_default().succeeded;
    eprintln!(
        "submit acknowledged in {:.3}s; {} of {} tasks succeeded; coordinator state on disk {} MB; cpu s: coordinator {coord_cpu:.2}, agents {agents_cpu:.2}",
        submitted.as_secs_f64(),
        done,
        a.tasks,
        stats.state_bytes_on_disk / 1_000_000
    );
    for mut c in agents {
        let _ = c.kill().await;
    }
    let _ = coord.kill().await;
    let _ = std::fs::remove_dir_all(&tmp);
    if done != a.tasks {
        bail!("only {done} of {} tasks succeeded", a.tasks);
    }
    println!(
        "tasks={} wall_s={:.3} tasks_per_s={:.0} p50_ms={:.1} p99_ms={:.1} cpu_us_per_task={:.1} agents={} slots_per_agent={} durable=true",
        a.tasks,
        wall,
        f64::from(a.tasks) / wall,
        stats.dispatch_latency_p50_ms,
        stats.dispatch_latency_p99_ms,
        cpu * 1e6 / f64::from(a.tasks),
        a.agents,
        a.slots
    );
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct DockingArgs {
    /// Receptor PDBQT.
    #[arg(long)]
    pub receptor: PathBuf,
    /// Folder of ligand PDBQT files.
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
}

/// The cluster (embedded coordinator + one agent with one slot per core, Vina batches)
/// against a plain sequential `vina` loop using the same cores, same seed and effort.
pub async fn docking(a: &DockingArgs) -> Result<()> {
    let cores = a.cores.unwrap_or_else(dockyard_agent::capacity::cpu_count).max(1);
    let ligands = super::submit::ligand_files(std::slice::from_ref(&a.ligands))?;
    let n = ligands.len() as u32;
    let center: Vec<&str> = a.center.split(',').collect();
    let size: Vec<&str> = a.size.split(',').collect();
    if center.len() != 3 || size.len() != 3 {
        bail!("--center and --size take X,Y,Z");
    }
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-docking-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;

    let t0 = Instant::now();
    for (i, l) in ligands.iter().enumerate() {
        let status = Command::new("vina")
            .arg("--receptor")
            .arg(&a.receptor)
            .arg("--ligand")
            .arg(l)
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
        if !status.success() {
            bail!("vina failed on {}", l.display());
        }
    }
    let loop_s = t0.elapsed().as_secs_f64();
    eprintln!("plain loop: {n} ligands in {loop_s:.1}s (vina --cpu {cores})");

    let sub = SubmitArgs {
        receptor: Some(a.receptor.clone()),
        ligands: vec![a.ligands.clone()],
        center: Some(a.center.clone()),
        size: Some(a.size.clone()),
        engine: "vina".into(),
        exhaustiveness: Some(a.exhaustiveness),
        seed: Some(a.seed),
        // One batch per slot: grid maps are computed once per batch and every core is busy.
        batch_size: Some(n.div_ceil(cores)),
        name: Some("bench-docking".into()),
        ..SubmitArgs::default()
    };
    let emb = super::run::EmbeddedArgs {
        data_dir: tmp.join("cluster"),
        slots: Some(cores),
        top: 0,
        format: crate::output::Format::Csv,
    };
    let t1 = Instant::now();
    let ok = super::run::run_embedded(&sub, &emb).await?;
    let cluster_s = t1.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&tmp);
    if !ok {
        bail!("the cluster job did not succeed");
    }
    println!(
        "ligands={n} exhaustiveness={} cores={cores} cluster_s={cluster_s:.1} loop_s={loop_s:.1} speedup={:.2}",
        a.exhaustiveness,
        loop_s / cluster_s
    );
    Ok(())
}
