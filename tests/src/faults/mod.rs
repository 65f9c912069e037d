//! The fault-injection suite: each scenario breaks something on purpose in a real cluster
//! (processes on 127.0.0.1, a real etcd and S3 server, a TCP proxy that misbehaves) and
//! reports what survived. Run with `cargo run --release -p dockyard-tests --bin faults --
//! --short` (every scenario once, small sizes) or without `--short` (full sizes).
//!
//! Counters, per scenario:
//! - `lost`: tasks of the job (of each stage's job, for a funnel) with no committed outcome once it is done (from the fenced
//!   commit records in etcd; for a single coordinator, from the result and task records in
//!   its sled folder, read after it stopped), or acknowledged jobs missing after a restart;
//! - `double_commits`: tasks whose outcome was committed more than once (the same records);
//! - both print `n/a` where the scenario has no such records to count (a refused input
//!   queues nothing; a sleep task in a single coordinator leaves no per-task commit record);
//! - `dup_exec`: executions beyond the first that ran to completion (agents' logs);
//! - `detect_s`: from the fault to the cluster acting on it (requeue, new leader, refusal);
//! - `recover_s`: from the fault (or its repair) to the work being done.

pub mod agents;
pub mod backup;
pub mod engines;
pub mod funnel;
pub mod inputs;
pub mod leaders;
pub mod storage;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::ha::{audit, executions, HaCluster, HaOptions};
use crate::{pb, sleep_request};

#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub short: bool,
}

impl Size {
    /// Tasks per screen.
    pub fn tasks(&self) -> u32 {
        if self.short {
            40
        } else {
            400
        }
    }
    pub fn task_ms(&self) -> u32 {
        if self.short {
            200
        } else {
            300
        }
    }
    /// How long an outage lasts where the issue names no duration.
    pub fn outage(&self) -> Duration {
        if self.short {
            Duration::from_secs(8)
        } else {
            Duration::from_secs(30)
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub name: String,
    /// `None`: not measured in this scenario (printed `n/a`, never 0).
    pub lost: Option<usize>,
    pub double_commits: Option<usize>,
    pub dup_exec: usize,
    pub detect_s: f64,
    pub recover_s: f64,
    pub note: String,
}

impl Report {
    pub fn new(name: &str) -> Self {
        Report {
            name: name.into(),
            ..Report::default()
        }
    }

    pub fn line(&self) -> String {
        format!(
            "scenario={} lost={} double_commits={} dup_exec={} detect_s={:.2} recover_s={:.2}",
            self.name,
            na(self.lost),
            na(self.double_commits),
            self.dup_exec,
            self.detect_s,
            self.recover_s
        )
    }

    /// Adds `n` to a counter, making it measured.
    pub fn add(counter: &mut Option<usize>, n: usize) {
        *counter = Some(counter.unwrap_or(0) + n);
    }
}

pub fn na(v: Option<usize>) -> String {
    v.map_or_else(|| "n/a".to_string(), |n| n.to_string())
}

pub type ScenarioFn = fn(Size) -> Pin<Box<dyn Future<Output = Result<Report>>>>;

/// Every scenario, in the order.
pub fn all() -> Vec<(&'static str, ScenarioFn)> {
    vec![
        ("agent_kill", |s| Box::pin(agents::agent_kill(s))),
        ("agent_pause_past_lease", |s| Box::pin(agents::agent_pause(s))),
        ("leader_kill_after_durable_write", |s| Box::pin(leaders::leader_kill_after_write(s))),
        ("leader_kill_after_send", |s| Box::pin(leaders::leader_kill_after_send(s))),
        ("leader_kill_before_result_commit", |s| {
            Box::pin(leaders::leader_kill_before_commit(s))
        }),
        ("leader_pause_past_lease", |s| Box::pin(leaders::leader_pause(s))),
        ("submit_storm_kill_embedded", |s| Box::pin(leaders::submit_storm_embedded(s))),
        ("submit_storm_kill_cluster", |s| Box::pin(leaders::submit_storm_cluster(s))),
        ("etcd_unavailable", |s| Box::pin(leaders::etcd_down(s))),
        ("etcd_one_of_three_lost", |s| Box::pin(leaders::etcd_member_lost(s))),
        ("partition_both_ways", |s| Box::pin(agents::partition_both(s))),
        ("partition_one_way", |s| Box::pin(agents::partition_one_way(s))),
        ("lossy_slow_network", |s| Box::pin(agents::lossy_slow(s))),
        ("s3_down_then_back", |s| Box::pin(storage::s3_down(s))),
        ("corrupted_upload_refused", |s| Box::pin(storage::corrupted_upload(s))),
        ("results_delivered_twice_and_replayed", |s| Box::pin(agents::duplicate_results(s))),
        ("agent_clock_skew", |s| Box::pin(agents::clock_skew(s))),
        ("malformed_molecules", |s| Box::pin(inputs::malformed(s))),
        ("oversized_input", |s| Box::pin(inputs::oversized(s))),
        ("wrong_org_and_traversal", |s| Box::pin(inputs::wrong_org(s))),
        ("bad_credentials", |s| Box::pin(inputs::bad_credentials(s))),
        ("engine_hangs_and_forks_away", |s| Box::pin(engines::hang_and_fork(s))),
        ("engine_crashes_every_run", |s| Box::pin(engines::crash(s))),
        ("agent_disk_full", |s| Box::pin(engines::disk_full(s))),
        ("agent_stops_reading", |s| Box::pin(agents::stops_reading(s))),
        ("leader_kill_at_stage_boundary", |s| {
            Box::pin(funnel::leader_kill_at_stage_boundary(s))
        }),
        ("leader_kill_while_stage_fed", |s| Box::pin(funnel::leader_kill_while_stage_fed(s))),
        ("backup_then_data_folder_lost", |s| Box::pin(backup::restore_after_data_loss(s))),
        ("corrupted_snapshot_refused", |s| Box::pin(backup::corrupted_snapshot(s))),
        ("cluster_backup_then_etcd_lost", |s| {
            Box::pin(backup::cluster_restore_after_etcd_loss(s))
        }),
    ]
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster built from `opts` with two 2-slot agents, `a0` and `a1`, connected to its
/// leader; returns it and the leader's index.
pub async fn with_two_agents(opts: HaOptions) -> (HaCluster, usize) {
    let mut c = HaCluster::start(opts).await;
    let l = c.wait_leader(Duration::from_secs(30)).await;
    c.add_agent("a0", 2, &[]);
    c.add_agent("a1", 2, &[]);
    c.wait_nodes(l, 2).await;
    (c, l)
}

/// Submits a screen of the scenario's size and waits until a quarter of it is done;
/// returns the job id and its task count.
pub async fn screen_under_way(c: &HaCluster, size: Size) -> Result<(String, u32)> {
    let total = size.tasks();
    let id = submit_sleep(c, total, size.task_ms()).await?;
    wait_for("a quarter of the tasks", Duration::from_secs(60), || async {
        job(c, &id).await.filter(|j| succeeded(j) >= total / 4)
    })
    .await?;
    Ok((id, total))
}

pub async fn submit_sleep(c: &HaCluster, count: u32, ms: u32) -> Result<String> {
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    let mut jobs = c.jobs(leader).await;
    Ok(jobs.submit_job(sleep_request(count, ms, 0)).await?.into_inner().job_id)
}

/// The job as the current leader sees it.
pub async fn job(c: &HaCluster, id: &str) -> Option<pb::Job> {
    let leader = c.leader_index().await?;
    let mut jobs = c.jobs(leader).await;
    jobs.get_job(pb::GetJobRequest { job_id: id.into() })
        .await
        .ok()
        .map(|r| r.into_inner())
}

pub fn succeeded(j: &pb::Job) -> u32 {
    j.tasks.as_ref().map_or(0, |t| t.succeeded)
}

/// Waits for the job to succeed, then fills in lost, double commits and duplicate executions.
pub async fn settle(c: &HaCluster, id: &str, total: u32, timeout: Duration, r: &mut Report) -> Result<()> {
    let j = wait_for("the job to succeed", timeout, || async {
        job(c, id)
            .await
            .filter(|j| j.state == pb::JobState::Succeeded as i32 || crate::is_final(j))
    })
    .await?;
    if j.state != pb::JobState::Succeeded as i32 {
        return Err(anyhow!("job ended {:?}: {}", j.state, crate::describe_job(&j)));
    }
    let commits = c.commits(id).await;
    let (doubles, lost) = audit(&commits, total);
    r.lost = Some(lost);
    r.double_commits = Some(doubles);
    r.dup_exec = executions(&c.dir().join("logs"))
        .iter()
        .filter(|(t, _)| t.starts_with(id))
        .map(|(_, n)| n.saturating_sub(1))
        .sum();
    Ok(())
}

/// Checks a finished scenario's hard rules: nothing lost, nothing committed twice.
pub fn verdict(r: &Report) -> Result<()> {
    if r.lost.unwrap_or(0) > 0 || r.double_commits.unwrap_or(0) > 0 {
        bail!("lost={} double_commits={}", na(r.lost), na(r.double_commits));
    }
    Ok(())
}
