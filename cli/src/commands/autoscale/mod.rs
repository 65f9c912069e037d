//! `dockyard autoscale`: sizes pools of agents from the queue. Every tick it reads the
//! leader's queue by task class and its nodes, reads each pool's agent jobs from the
//! provisioner (Slurm), decides per pool (`plan`), and submits, drains or cancels.
//!
//! - `config`: the pools (TOML).
//! - `plan`: the decision, pure.
//! - `provisioner` and `slurm`: the port and its Slurm adapter.
//! - `metrics`: what an operator graphs.

mod config;
mod metrics;
mod plan;
mod provisioner;
mod slurm;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{info, warn};

use dockyard_common::metrics_http::{self, Render};
use dockyard_proto::v1 as pb;

use crate::client::Client;
use config::{AutoscaleFile, Pool};
use metrics::Metrics;
use plan::{Action, AgentView, Demand, JobPhase, PoolJob};
use provisioner::Provisioner;
use slurm::Slurm;

/// The agent label the Slurm batch script sets: ties a node to its job.
pub const SLURM_JOB_LABEL: &str = "slurm_job_id";

#[derive(clap::Args, Debug)]
pub struct AutoscaleArgs {
    /// The pools to scale (TOML): see deploy/slurm/autoscale.toml. (Not `--config`: that
    /// is the client's settings file, which this command reads too.)
    #[arg(long, value_name = "FILE")]
    pub pools: PathBuf,
    /// Print each decision with its reason and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Decide once, act, and exit (cron, scripts).
    #[arg(long)]
    pub once: bool,
    /// Seconds between decisions.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval_s: u64,
    /// Seconds a pool must have had more agents than it needs before any is stopped.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub cooldown_s: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// Per pool, between ticks: when its surplus began, and the last reason logged.
#[derive(Default)]
struct PoolMemo {
    surplus_since: Option<Instant>,
    last_reason: String,
}

struct Scaler {
    file: AutoscaleFile,
    slurm: Slurm,
    metrics: Arc<Metrics>,
    dry_run: bool,
    cooldown: Duration,
    memo: HashMap<String, PoolMemo>,
}

pub async fn run<F, Fut>(connect: F, endpoint: &str, args: &AutoscaleArgs) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Client>>,
{
    let file = AutoscaleFile::load(&args.pools)?;
    let agent_coordinator = file.agent_coordinator.clone().unwrap_or_else(|| endpoint.to_string());
    let slurm = Slurm {
        cluster: file.cluster.clone(),
        agent_coordinator,
    };
    let metrics = Arc::new(Metrics::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    if let Some(listen) = &args.metrics_listen {
        let listener = metrics_http::bind(listen).await?;
        let m = metrics.clone();
        let render: Render = Arc::new(move || m.render());
        let (addr, _) = metrics_http::serve(listener, render, shutdown.clone().cancelled_owned())?;
        eprintln!("autoscale: metrics at http://{addr}/metrics");
    }
    let mut scaler = Scaler {
        file,
        slurm,
        metrics,
        dry_run: args.dry_run,
        cooldown: Duration::from_secs(args.cooldown_s),
        memo: HashMap::new(),
    };
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    let mut client: Option<Client> = None;
    loop {
        let outcome = async {
            if client.is_none() {
                client = Some(connect().await.context("cannot reach the leading coordinator")?);
            }
            match &client {
                Some(c) => scaler.tick(c).await,
                None => Ok(()),
            }
        }
        .await;
        if let Err(e) = &outcome {
            scaler.metrics.error();
            warn!("autoscale tick failed: {e:#}");
            // The leader may have changed: find it again next time.
            client = None;
        }
        if args.once {
            shutdown.cancel();
            return outcome;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval_s)) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

impl Scaler {
    async fn tick(&mut self, c: &Client) -> Result<()> {
        let queue = c
            .admin
            .clone()
            .queue_stats(pb::QueueStatsRequest {})
            .await
            .context("QueueStats")?
            .into_inner();
        let nodes = c
            .admin
            .clone()
            .list_nodes(pb::ListNodesRequest {})
            .await
            .context("ListNodes")?
            .into_inner()
            .nodes;
        let demands = demand(&self.file.pools, &queue.by_class);
        let by_job: HashMap<&str, &pb::Node> = nodes
            .iter()
            .filter(|n| n.state != pb::NodeState::Lost as i32)
            .filter_map(|n| n.labels.get(SLURM_JOB_LABEL).map(|j| (j.as_str(), n)))
            .collect();
        let pools = self.file.pools.clone();
        for (pool, d) in pools.iter().zip(demands) {
            let listed = self
                .slurm
                .list(pool)
                .await
                .with_context(|| format!("pool '{}': listing its jobs", pool.name))?;
            let jobs: Vec<PoolJob> = listed
                .into_iter()
                .map(|j| {
                    let agent = match j.phase {
                        JobPhase::Running => by_job.get(j.id.as_str()).map(|n| agent_view(pool, n)),
                        JobPhase::Pending | JobPhase::Ending => None,
                    };
                    PoolJob {
                        id: j.id,
                        phase: j.phase,
                        agent,
                    }
                })
                .collect();
            let memo = self.memo.entry(pool.name.clone()).or_default();
            let p = plan::plan(pool, d, &jobs, memo.surplus_since, self.cooldown, Instant::now());
            memo.surplus_since = p.surplus_since;
            self.metrics.observe(&pool.name, &p);
            if p.actions.is_empty() && p.reason == memo.last_reason {
                continue;
            }
            memo.last_reason = p.reason.clone();
            info!(pool = %pool.name, desired = p.desired, "{}", p.reason);
            if self.dry_run {
                for a in &p.actions {
                    println!("pool {}: would {} ({})", pool.name, describe(a), p.reason);
                }
                if p.actions.is_empty() {
                    println!("pool {}: nothing to do ({})", pool.name, p.reason);
                }
                continue;
            }
            for a in &p.actions {
                // One failed action does not stop the others: each is retried next tick
                // from what Slurm and the coordinator then say.
                if let Err(e) = self.act(c, pool, a).await {
                    self.metrics.error();
                    warn!(pool = %pool.name, "cannot {}: {e:#}", describe(a));
                }
            }
        }
        Ok(())
    }

    async fn act(&self, c: &Client, pool: &Pool, a: &Action) -> Result<()> {
        match a {
            Action::Submit { count } => {
                for _ in 0..*count {
                    let job = self.slurm.submit(pool).await?;
                    self.metrics.requested(&pool.name, 1);
                    info!(pool = %pool.name, job = %job, "submitted an agent job");
                }
            }
            Action::Cancel { job } => self.cancel(pool, job, "cancelled a pending agent job").await?,
            Action::Drain { job, node } => {
                let n = c
                    .admin
                    .clone()
                    .drain_node(pb::DrainNodeRequest { node_id: node.clone() })
                    .await
                    .context("DrainNode")?
                    .into_inner();
                info!(pool = %pool.name, job = %job, node = %node, "drained an idle agent");
                // Drained with nothing running: nothing can reach it any more.
                if n.running.is_empty() {
                    self.cancel(pool, job, "retired the drained agent (job cancelled)").await?;
                }
            }
            Action::Undrain { job, node } => {
                c.admin
                    .clone()
                    .undrain_node(pb::DrainNodeRequest { node_id: node.clone() })
                    .await
                    .context("UndrainNode")?;
                info!(pool = %pool.name, job = %job, node = %node, "took a draining agent back");
            }
            Action::Retire { job, .. } => self.cancel(pool, job, "retired a drained idle agent (job cancelled)").await?,
        }
        Ok(())
    }

    /// Cancels one of the pool's jobs and counts it.
    async fn cancel(&self, pool: &Pool, job: &str, what: &str) -> Result<()> {
        self.slurm.cancel(job).await?;
        self.metrics.cancelled(&pool.name);
        info!(pool = %pool.name, job = %job, "{what}");
        Ok(())
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::Submit { count } => format!("submit {count} agent job(s)"),
        Action::Cancel { job } => format!("cancel pending job {job}"),
        Action::Drain { job, node } => format!("drain idle agent {node} (job {job}) and retire it"),
        Action::Undrain { job, node } => format!("undrain agent {node} (job {job})"),
        Action::Retire { job, node } => format!("retire drained agent {node} (cancel job {job})"),
    }
}

fn agent_view(pool: &Pool, n: &pb::Node) -> AgentView {
    let cap = n.capacity.clone().unwrap_or_default();
    // Nodes do not say how many GPUs their tasks hold; one per running task, up to what
    // the agent has, is right for the usual one-GPU docking task.
    let busy_gpus = if pool.gpus == 0 {
        0
    } else {
        (n.running.len() as u32).min(cap.gpus.len() as u32)
    };
    AgentView {
        node_id: n.node_id.clone(),
        draining: n.state == pb::NodeState::Draining as i32,
        leaving: n.going_away,
        running_tasks: n.running.len(),
        busy_slots: cap.cpu_slots.saturating_sub(n.free_slots),
        busy_gpus,
        busy_memory_bytes: cap.memory_bytes.saturating_sub(n.free_memory_bytes),
    }
}

/// Each class's queued work goes to the first pool that can run it; a class no pool runs
/// is logged (its tasks wait for an agent started by hand).
fn demand(pools: &[Pool], classes: &[pb::ClassDepth]) -> Vec<Demand> {
    let mut out = vec![Demand::default(); pools.len()];
    for c in classes.iter().filter(|c| c.queued > 0) {
        match pools
            .iter()
            .position(|p| p.serves(&c.engine, c.gpus_per_task, c.cpus_per_task, c.memory_bytes_per_task))
        {
            Some(i) => {
                let d = &mut out[i];
                d.queued_tasks += c.queued;
                d.queued_slots += c.queued * u64::from(c.cpus_per_task.max(1));
                d.queued_gpus += c.queued * u64::from(c.gpus_per_task);
                d.queued_memory_bytes += c.queued * c.memory_bytes_per_task;
            }
            None => warn!(
                engine = %c.engine,
                gpus = c.gpus_per_task,
                cores = c.cpus_per_task,
                memory_mb = c.memory_bytes_per_task / 1_000_000,
                queued = c.queued,
                "no pool runs this task class; its tasks wait for an agent started another way"
            ),
        }
    }
    out
}
