//! `dockyard bench dispatch`: a real coordinator and K real agent processes on loopback,
//! sleep-engine tasks (0 ms) through the public API, every state change durable. Two modes:
//! one `SubmitJob` of N tasks (bulk), or `--jobs N` single-task jobs from several concurrent
//! clients (per request: how an internal service submits one docking at a time), each its
//! own `SubmitJob` call or its own message on a `SubmitJobs` stream. Either way
//! the clock stops at the last completion and the CPU counted is every process's: the
//! coordinator, the agents and this client.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use tokio::process::Child;

use super::{disk, per_request, procs};
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
    /// Per-request mode: this many single-task jobs, one SubmitJob each, instead of one job
    /// of --tasks tasks.
    #[arg(long, value_name = "N")]
    pub jobs: Option<u32>,
    /// Per-request mode: each job its own SubmitJob call, or its own message on one
    /// SubmitJobs stream per client.
    #[arg(long, value_enum, default_value_t = per_request::Submit::Unary)]
    pub submit: per_request::Submit,
    /// Per-request mode: concurrent clients, each on its own connection.
    #[arg(long, default_value_t = 8)]
    pub clients: u32,
    /// Per-request mode: requests each client keeps in flight.
    #[arg(long, default_value_t = 32)]
    pub in_flight: u32,
    /// Folder for the coordinator's and agents' state [default: ./.dockyard]: it must be on
    /// a real disk, since every state change is a durable write.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Measure with the state on tmpfs anyway (durable writes then cost next to nothing).
    #[arg(long)]
    pub allow_tmpfs: bool,
}

pub async fn dispatch(a: &DispatchArgs) -> Result<()> {
    if a.clients == 0 || a.in_flight == 0 {
        bail!("--clients and --in-flight must be at least 1");
    }
    let (tmp, fs) = disk::data_folder(a.data_dir.as_deref(), a.allow_tmpfs)?;
    eprintln!("state in {} ({fs})", tmp.display());
    let (mut coord, endpoint) = procs::coordinator(&tmp.join("coordinator"), "127.0.0.1:0").await?;
    let mut agents: Vec<Child> = Vec::new();
    for i in 0..a.agents {
        agents.push(procs::agent(
            &endpoint,
            &format!("bench-{i}"),
            a.slots,
            &tmp.join(format!("agent-{i}")),
            &["--enable-sleep-engine"],
        )?);
    }
    let client = Client::connect(&endpoint, None).await?;
    procs::wait_for_nodes(&client, a.agents).await?;
    let me = Some(std::process::id());
    let cpu = |coord: &Child, agents: &[Child]| {
        (
            procs::cpu_seconds(coord.id()),
            agents.iter().map(|c| procs::cpu_seconds(c.id())).sum::<f64>(),
            procs::cpu_seconds(me),
        )
    };
    let before = cpu(&coord, &agents);
    let run = match a.jobs {
        None => bulk(&client, a).await,
        Some(n) => per_request::run(&endpoint, &client, n, a.clients, a.in_flight, a.sleep_ms, a.submit).await,
    };
    let after = cpu(&coord, &agents);
    let stats = query::stats(&client).await?;
    for mut c in agents {
        let _ = c.kill().await;
    }
    let _ = coord.kill().await;
    let _ = std::fs::remove_dir_all(&tmp);
    let run = run?;
    let (coord_cpu, agents_cpu, client_cpu) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let cpu = coord_cpu + agents_cpu + client_cpu;
    let n = f64::from(run.tasks);
    eprintln!(
        "{}; coordinator state on disk {} MB; cpu s: coordinator {coord_cpu:.2}, agents {agents_cpu:.2}, client {client_cpu:.2}",
        run.detail,
        stats.state_bytes_on_disk / 1_000_000
    );
    println!(
        "mode={} tasks={} wall_s={:.3} tasks_per_s={:.0} p50_ms={} p99_ms={} cpu_us_per_task={:.1} coordinator_cpu_us_per_task={:.1} client_cpu_us_per_task={:.1} agents={} slots_per_agent={} clients={} fs={fs} durable=true",
        run.mode,
        run.tasks,
        run.wall_s,
        n / run.wall_s,
        run.p50_ms,
        run.p99_ms,
        cpu * 1e6 / n,
        coord_cpu * 1e6 / n,
        client_cpu * 1e6 / n,
        a.agents,
        a.slots,
        run.clients,
    );
    Ok(())
}

/// What one mode measured; latencies are text so that one not measured prints `n/a`.
pub(super) struct Run {
    pub mode: &'static str,
    pub tasks: u32,
    pub wall_s: f64,
    pub p50_ms: String,
    pub p99_ms: String,
    pub clients: String,
    pub detail: String,
}

/// One SubmitJob of `--tasks` tasks, watched to its last completion.
async fn bulk(client: &Client, a: &DispatchArgs) -> Result<Run> {
    let sub = SubmitArgs {
        engine: "sleep".into(),
        count: Some(a.tasks),
        sleep_ms: Some(a.sleep_ms),
        name: Some("bench-dispatch".into()),
        ..SubmitArgs::default()
    };
    let t0 = Instant::now();
    let resp = crate::commands::submit::submit(client, &sub).await?;
    let submitted = t0.elapsed();
    let job = watch::watch(client, &resp.job_id, true).await?;
    let wall_s = t0.elapsed().as_secs_f64();
    let done = job.tasks.unwrap_or_default().succeeded;
    if done != a.tasks {
        bail!("only {done} of {} tasks succeeded", a.tasks);
    }
    let stats = query::stats(client).await?;
    Ok(Run {
        mode: "bulk",
        tasks: a.tasks,
        wall_s,
        // Submit to dispatch, as the coordinator measures it.
        p50_ms: format!("{:.1}", stats.dispatch_latency_p50_ms),
        p99_ms: format!("{:.1}", stats.dispatch_latency_p99_ms),
        clients: "1".into(),
        detail: format!(
            "submit acknowledged in {:.3}s; {done} of {} tasks succeeded",
            submitted.as_secs_f64(),
            a.tasks
        ),
    })
}
