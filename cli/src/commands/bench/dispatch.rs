//! `dockyard bench dispatch`: a real coordinator and K real agent processes on loopback,
//! N sleep-engine tasks (0 ms) through the public API, every state change durable.

use std::time::Instant;

use anyhow::{bail, Result};
use tokio::process::Child;

use super::procs;
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

pub async fn dispatch(a: &DispatchArgs) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("dockyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
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
    let coord0 = procs::cpu_seconds(coord.id());
    let agents0 = agents.iter().map(|c| procs::cpu_seconds(c.id())).sum::<f64>();
    let sub = SubmitArgs {
        engine: "sleep".into(),
        count: Some(a.tasks),
        sleep_ms: Some(a.sleep_ms),
        name: Some("bench-dispatch".into()),
        ..SubmitArgs::default()
    };
    let t0 = Instant::now();
    let resp = crate::commands::submit::submit(&client, &sub).await?;
    let submitted = t0.elapsed();
    let job = watch::watch(&client, &resp.job_id, true).await?;
    let wall = t0.elapsed().as_secs_f64();
    let coord_cpu = procs::cpu_seconds(coord.id()) - coord0;
    let agents_cpu = agents.iter().map(|c| procs::cpu_seconds(c.id())).sum::<f64>() - agents0;
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
