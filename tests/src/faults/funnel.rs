//! A funnel's stage boundary, and a stage fed while the one before runs, under a leader kill.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use dockyard_common::ids::JobId;

use super::{job, wait_for, with_two_agents, Report, Size};
use crate::ha::{audit, executions, HaCluster, HaOptions};
use crate::{pb, sleep_funnel_request, stage};

/// Stage 1's own counts (the funnel's job runs it).
fn stage1(j: &pb::Job) -> pb::TaskCounts {
    j.stages.first().and_then(|s| s.tasks).unwrap_or_default()
}

/// Scenario: `kill -9` of the leader between a stage's last commit and the next stage's
/// first dispatch. Both agents are drained once stage 1's last tasks are out, so stage 2
/// (created at the boundary, or by the next leader) can dispatch nothing before the kill;
/// they are undrained once a new leader has taken over. Lost and double commits come from
/// the fenced commit records in etcd for both stages' jobs; the survivors are checked
/// against the sleep engine's made-up scores.
pub async fn leader_kill_at_stage_boundary(size: Size) -> Result<Report> {
    let mut r = Report::new("leader_kill_at_stage_boundary");
    let (mut c, old) = with_two_agents(HaOptions::default()).await;
    let n = size.tasks();
    let keep = n / 4;
    let req = sleep_funnel_request(
        n as usize,
        1,
        size.task_ms(),
        vec![stage("pre", |_| {}), stage("redock", |s| s.keep_top = keep)],
    );
    let id = c.jobs(old).await.submit_job(req).await?.into_inner().job_id;
    let stage2 = JobId::parse(&id).context("job id")?.stage(1).to_string();
    wait_for("stage 1's last tasks to be dispatched", Duration::from_secs(120), || async {
        job(&c, &id).await.filter(|j| stage1(j).queued == 0 && stage1(j).total == n)
    })
    .await?;
    let mut admin = c.admin(old).await;
    for node in ["a0", "a1"] {
        admin
            .drain_node(pb::DrainNodeRequest { node_id: node.into() })
            .await
            .with_context(|| format!("drain {node}"))?;
    }
    wait_for("stage 1 to be committed", Duration::from_secs(60), || async {
        job(&c, &id).await.filter(|j| stage1(j).succeeded == n)
    })
    .await?;
    c.kill_coordinator(old);
    let t = Instant::now();
    // Read before any standby leads: which side of the boundary the kill landed on.
    let crossed = c.job_indexed(&stage2).await;
    let leader = c.wait_new_leader(old, Duration::from_secs(30)).await;
    r.detect_s = t.elapsed().as_secs_f64();
    let admin = c.admin(leader).await;
    for node in ["a0", "a1"] {
        wait_for("the undrain to be accepted", Duration::from_secs(30), || {
            let mut a = admin.clone();
            async move { a.undrain_node(pb::DrainNodeRequest { node_id: node.into() }).await.ok() }
        })
        .await?;
    }
    let j = wait_for("the funnel to finish", Duration::from_secs(120), || async {
        job(&c, &id).await.filter(crate::is_final)
    })
    .await?;
    r.recover_s = t.elapsed().as_secs_f64();
    ensure!(
        j.state == pb::JobState::Succeeded as i32,
        "funnel ended {:?}: {}",
        j.state,
        crate::describe_job(&j)
    );
    let s2 = j.stages.get(1).context("stage 2")?;
    ensure!(s2.job_id == stage2, "stage 2 is {} (expected {stage2})", s2.job_id);
    let t2 = s2.tasks.unwrap_or_default();
    ensure!(
        (s2.ligands_in, t2.total, t2.succeeded) == (keep, keep, keep),
        "exactly one stage 2 of {keep} tasks: {s2:?}"
    );
    count(&c, &id, n, &stage2, keep, &mut r).await;
    let got = docked(&c, leader, &id).await?;
    // Stage 1 scores ligand i -1 - i/100: its best `keep` are the last `keep` of the library.
    let want: Vec<u32> = (n - keep..n).collect();
    ensure!(got == want, "stage 2 docked {got:?}, expected the best {keep} of stage 1 {want:?}");
    r.note = format!(
        "kill landed {} stage 2 was created; stage 2: {keep} ligands, each once",
        if crossed { "after" } else { "before" }
    );
    Ok(r)
}

/// Lost and double commits of both stages' jobs (from etcd's commit records), and the
/// executions beyond the first (from the agents' logs).
async fn count(c: &HaCluster, id: &str, tasks: u32, stage2: &str, stage2_tasks: u32, r: &mut Report) {
    let (d1, l1) = audit(&c.commits(id).await, tasks);
    let (d2, l2) = audit(&c.commits(stage2).await, stage2_tasks);
    r.lost = Some(l1 + l2);
    r.double_commits = Some(d1 + d2);
    r.dup_exec = executions(&c.dir().join("logs"))
        .iter()
        .filter(|(t, _)| t.starts_with(id) || t.starts_with(stage2))
        .map(|(_, k)| k.saturating_sub(1))
        .sum();
}

/// The library numbers (`L<n>`) of the funnel's results (its last stage's), sorted.
async fn docked(c: &HaCluster, leader: usize, id: &str) -> Result<Vec<u32>> {
    let mut got: Vec<u32> = c
        .jobs(leader)
        .await
        .list_results(pb::ListResultsRequest {
            job_id: id.to_string(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .results
        .iter()
        .filter_map(|x| x.ligand.trim_start_matches('L').parse().ok())
        .collect();
    got.sort();
    Ok(got)
}

/// The sleep engine's made-up score of ligand `i` of a stage.
fn fake(i: u32) -> f64 {
    -1.0 - f64::from(i % 100) / 100.0
}

/// Scenario: `kill -9` of the leader while a `max_score` stage is being fed (stage 1 still
/// running, stage 2 open and growing). The standby rebuilds the open stage from its last
/// replicated spec and what still waits from the committed results; every survivor must
/// reach stage 2 exactly once.
pub async fn leader_kill_while_stage_fed(size: Size) -> Result<Report> {
    let mut r = Report::new("leader_kill_while_stage_fed");
    let (mut c, old) = with_two_agents(HaOptions::default()).await;
    let n = size.tasks();
    let max = -1.195;
    let req = sleep_funnel_request(
        n as usize,
        1,
        size.task_ms(),
        vec![stage("pre", |_| {}), stage("redock", |s| s.max_score = Some(max))],
    );
    let id = c.jobs(old).await.submit_job(req).await?.into_inner().job_id;
    let stage2 = JobId::parse(&id).context("job id")?.stage(1).to_string();
    let j = wait_for("stage 2 fed while stage 1 runs", Duration::from_secs(120), || async {
        job(&c, &id)
            .await
            .filter(|j| j.stages.get(1).is_some_and(|s| s.streaming && s.ligands_in > 0))
    })
    .await?;
    let fed_at_kill = j.stages[1].ligands_in;
    c.kill_coordinator(old);
    let t = Instant::now();
    c.wait_new_leader(old, Duration::from_secs(30)).await;
    r.detect_s = t.elapsed().as_secs_f64();
    let j = wait_for("the funnel to finish", Duration::from_secs(180), || async {
        job(&c, &id).await.filter(crate::is_final)
    })
    .await?;
    r.recover_s = t.elapsed().as_secs_f64();
    ensure!(
        j.state == pb::JobState::Succeeded as i32,
        "funnel ended {:?}: {}",
        j.state,
        crate::describe_job(&j)
    );
    let want: Vec<u32> = (0..n).filter(|i| fake(*i) <= max).collect();
    let survivors = want.len() as u32;
    let s2 = j.stages.get(1).context("stage 2")?;
    let t2 = s2.tasks.unwrap_or_default();
    ensure!(
        (s2.ligands_in, t2.total, t2.succeeded, s2.streaming) == (survivors, survivors, survivors, false),
        "stage 2 must hold each of the {survivors} survivors once: {s2:?}"
    );
    count(&c, &id, n, &stage2, survivors, &mut r).await;
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    let got = docked(&c, leader, &id).await?;
    ensure!(got == want, "stage 2 docked {got:?}, expected {want:?}");
    r.note = format!("{fed_at_kill} of {survivors} survivors fed to stage 2 at the kill; each docked once");
    Ok(r)
}
