//! Coordinators that die or stall at bad moments, submit storms, and etcd trouble.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rand::Rng;

use super::{job, screen_under_way, settle, submit_sleep, succeeded, wait_for, with_two_agents, Report, Size};
use crate::ha::{HaCluster, HaOptions};
use crate::proxy::Mode;
use crate::{pb, sleep_request, AgentOptions, TestCluster};

async fn ha(opts: HaOptions) -> Result<(HaCluster, usize)> {
    Ok(with_two_agents(opts).await)
}

/// Kills the leader at the moment `when` picks, then checks a standby finishes the screen.
/// `when` fails the scenario if the moment it waits for never comes: a kill at the wrong
/// moment would test something else, unnoticed. What it returns goes in the note.
async fn kill_leader(name: &str, size: Size, task_ms: u32, when: impl AsyncFnOnce(&HaCluster, &str) -> Result<String>) -> Result<Report> {
    let mut r = Report::new(name);
    // S3 behind a proxy: scenario 3c slows it to widen the moment between result and commit.
    let (mut c, old) = ha(HaOptions {
        s3_proxy: true,
        ..HaOptions::default()
    })
    .await?;
    let total = size.tasks();
    let id = submit_sleep(&c, total, task_ms).await?;
    let old_epoch = c.leader_info(old).await.context("the leader's epoch before the kill")?.epoch;
    ensure!(old_epoch > 0, "the leader reports epoch 0");
    r.note = when(&c, &id)
        .await
        .with_context(|| format!("{name}: the moment to kill the leader"))?;
    let killed_at = std::time::SystemTime::now();
    c.kill_coordinator(old);
    if let Some(p) = &c.s3_proxy {
        p.set(Mode::Pass);
    }
    let t = Instant::now();
    c.wait_new_leader(old, Duration::from_secs(30)).await;
    r.detect_s = t.elapsed().as_secs_f64();
    // Full sizes run 400 tasks of up to 2 s on 4 slots: patience grows with the screen.
    let patience = Duration::from_secs(120) + Duration::from_millis(u64::from(total) * u64::from(task_ms) / 2);
    settle(&c, &id, total, patience, &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    let commits = c.commits(&id).await;
    let by_old: usize = commits.iter().filter(|(e, _)| *e == old_epoch).map(|(_, t)| t.len()).sum();
    ensure!(
        by_old < total as usize,
        "the killed leader had committed all {total} tasks: the kill came after the work"
    );
    if name == "leader_kill_before_result_commit" {
        check_kill_landed_between_finish_and_commit(&c, &id, killed_at, by_old)?;
    }
    r.note = format!("{}; the killed leader had committed {by_old} of {total} tasks", r.note);
    Ok(r)
}

/// Scenario 3c's claim, checked: at the kill, results of tasks that had finished on the
/// agents (their "task finished" log lines, in the agents' clocks on this host) were not
/// yet committed by the killed leader, and at least one finished within 250 ms of the kill.
fn check_kill_landed_between_finish_and_commit(
    c: &HaCluster,
    id: &str,
    killed_at: std::time::SystemTime,
    committed_by_old: usize,
) -> Result<()> {
    let kill_s = killed_at.duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let finished = crate::ha::finish_times(&c.dir().join("logs"), id);
    let before: Vec<f64> = finished.iter().copied().filter(|f| *f <= kill_s).collect();
    ensure!(
        before.len() > committed_by_old,
        "no result was in flight at the kill: {} tasks had finished, the leader had committed {committed_by_old}",
        before.len()
    );
    let nearest = finished.iter().map(|f| (f - kill_s).abs()).fold(f64::INFINITY, f64::min);
    ensure!(
        nearest <= 0.25,
        "the kill landed {nearest:.3} s from the nearest task end, not a few ms before a round ended"
    );
    Ok(())
}

/// Scenario 3a: Right after the job was acknowledged (its durable write), before much ran.
pub async fn leader_kill_after_write(size: Size) -> Result<Report> {
    kill_leader("leader_kill_after_durable_write", size, size.task_ms(), async |c, id| {
        ensure!(c.job_indexed(id).await, "the acknowledged job is not in etcd's job index");
        Ok("killed right after the job was indexed".to_string())
    })
    .await
}

/// Scenario 3b: While tasks are out on agents (assignments sent, results not yet back).
pub async fn leader_kill_after_send(size: Size) -> Result<Report> {
    kill_leader("leader_kill_after_send", size, 2000, async |c, id| {
        let j = wait_for("tasks running", Duration::from_secs(30), || async {
            job(c, id).await.filter(|j| j.tasks.as_ref().is_some_and(|t| t.running >= 4))
        })
        .await?;
        ensure!(succeeded(&j) == 0, "tasks had already finished: {}", crate::describe_job(&j));
        Ok(format!("killed with {} tasks running", j.tasks.map_or(0, |t| t.running)))
    })
    .await
}

/// Scenario 3c: As results arrive: tasks of 1 s, killed a few ms before a round of them ends, so
/// results are in flight or received but not yet committed.
pub async fn leader_kill_before_commit(size: Size) -> Result<Report> {
    kill_leader("leader_kill_before_result_commit", size, 1000, async |c, id| {
        let j = wait_for("the first round done", Duration::from_secs(30), || async {
            job(c, id).await.filter(|j| succeeded(j) >= 4)
        })
        .await?;
        // Then the moment a task of the next round ends on an agent (its log line), before
        // the leader can have committed it: its commit writes the outcomes to S3 first, and
        // S3 now answers 300 ms late, so the kill lands between result and commit. Whether
        // it did is checked after the fact.
        if let Some(p) = &c.s3_proxy {
            p.set(Mode::Slow {
                delay_ms: 300,
                loss: 0.0,
                stall_ms: 0,
            });
        }
        let logs = c.dir().join("logs");
        let seen = crate::ha::finish_times(&logs, id).len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::ha::finish_times(&logs, id).len() <= seen {
            ensure!(Instant::now() < deadline, "no task of the next round ended within 30 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(format!("killed as the next round ended ({} seen done before)", succeeded(&j)))
    })
    .await
}

/// Scenario 4: The leader is paused past its lease, then resumed after a new leader took over.
pub async fn leader_pause(size: Size) -> Result<Report> {
    let mut r = Report::new("leader_pause_past_lease");
    let (mut c, old) = ha(HaOptions::default()).await?;
    let (id, total) = screen_under_way(&c, size).await?;
    let epoch = c.leader_info(old).await.context("the leader's epoch before the pause")?.epoch;
    ensure!(epoch > 0, "the leader reports epoch 0");
    c.pause_coordinator(old);
    let t = Instant::now();
    c.wait_new_leader(old, Duration::from_secs(30)).await;
    r.detect_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = c.commits(&id).await.iter().filter(|(e, _)| *e == epoch).count();
    c.resume_coordinator(old);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.coordinator_alive(old) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(&c, &id, total, Duration::from_secs(180), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    let after = c.commits(&id).await.iter().filter(|(e, _)| *e == epoch).count();
    ensure!(
        before == after,
        "the paused leader committed {} times after resuming",
        after - before
    );
    ensure!(!c.coordinator_alive(old), "the deposed leader is still running");
    r.note = format!(
        "old leader exited with {:?}; its commits {before} before resume, {after} after",
        c.coordinator_exit_code(old)
    );
    Ok(r)
}

/// Submits small jobs from several tasks until stopped; returns the acknowledged ids.
fn storm(endpoint: String, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (ep, stop, acked) = (endpoint.clone(), Arc::clone(&stop), Arc::clone(&acked));
            workers.push(tokio::spawn(async move {
                let Ok(ch) = tonic::transport::Endpoint::from_shared(ep).expect("endpoint").connect().await else {
                    return;
                };
                let mut jobs = pb::job_service_client::JobServiceClient::new(ch);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match jobs.submit_job(sleep_request(3, 10, 0)).await {
                        Ok(r) => acked.lock().expect("lock").push(r.into_inner().job_id),
                        Err(_) => return,
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
        let v = acked.lock().expect("lock").clone();
        v
    })
}

/// Scenario 5a: `kill -9` of a single coordinator (no etcd) at a random moment of a submit storm,
/// then a restart on the same data: every acknowledged job is there.
pub async fn submit_storm_embedded(size: Size) -> Result<Report> {
    let mut r = Report::new("submit_storm_kill_embedded");
    let rounds = if size.short { 2 } else { 5 };
    let mut c = TestCluster::builder().agent(AgentOptions::sleep(4)).start().await;
    for _ in 0..rounds {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = storm(c.endpoint(), Arc::clone(&stop));
        let ms = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        c.kill_coordinator();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let acked = h.await?;
        ensure!(!acked.is_empty(), "the storm got no job acknowledged in {ms} ms");
        // Counted in the killed coordinator's sled folder: an acknowledged job whose spec
        // and status are not there was lost.
        let store = dockyard_coordinator::store::Store::open(c.data_dir()).context("open the killed coordinator's sled")?;
        let mut missing = 0;
        for id in &acked {
            let jid = dockyard_common::ids::JobId::parse(id).context("job id")?;
            if store.spec(&jid)?.is_none() || store.status(&jid)?.is_none() {
                missing += 1;
            }
        }
        drop(store);
        Report::add(&mut r.lost, missing);
        let t = Instant::now();
        c.start_coordinator_again().await;
        r.recover_s = r.recover_s.max(t.elapsed().as_secs_f64());
        // Served after the restart: listed by ListJobs, page by page (thousands of GetJob
        // calls would each wait for a group commit's fsync while the agent drains the storm).
        let mut jobs = c.jobs().await;
        let mut served = std::collections::HashSet::new();
        let mut token = String::new();
        loop {
            let page = jobs
                .list_jobs(pb::ListJobsRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            served.extend(page.jobs.into_iter().map(|j| j.job_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        for id in &acked {
            ensure!(
                served.contains(id),
                "acknowledged job {id} is in the sled folder but not served after the restart"
            );
        }
        // Sleep tasks leave no per-task commit record in a single coordinator: the
        // double_commits column is n/a here (the cluster variant counts it from etcd).
        r.note = format!("{} rounds; last: {} acknowledged jobs before kill at {ms} ms", rounds, acked.len());
    }
    Ok(r)
}

/// Scenario 5b: The same with cluster mode: the killed leader's jobs are rebuilt by the standby.
pub async fn submit_storm_cluster(size: Size) -> Result<Report> {
    let mut r = Report::new("submit_storm_kill_cluster");
    let (mut c, old) = ha(HaOptions::default()).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = storm(c.coordinator_endpoint(old).to_string(), Arc::clone(&stop));
    let ms = rand::rng().random_range(if size.short { 300..1200 } else { 500..3000 });
    tokio::time::sleep(Duration::from_millis(ms)).await;
    c.kill_coordinator(old);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = h.await?;
    let t = Instant::now();
    let new = c.wait_new_leader(old, Duration::from_secs(30)).await;
    r.detect_s = t.elapsed().as_secs_f64();
    r.lost = Some(0);
    r.double_commits = Some(0);
    // An acknowledged job missing from etcd's job index was lost; one indexed but not served
    // by the new leader is a failure of its own.
    let mut jobs = c.jobs(new).await;
    for id in &acked {
        if !c.job_indexed(id).await {
            Report::add(&mut r.lost, 1);
        } else {
            ensure!(
                jobs.get_job(pb::GetJobRequest { job_id: id.clone() }).await.is_ok(),
                "acknowledged job {id} is indexed in etcd but the new leader does not serve it"
            );
        }
    }
    // Every acknowledged job also runs to completion on the new leader.
    for id in &acked {
        let j = wait_for("an acknowledged job to finish", Duration::from_secs(60), || async {
            job(&c, id).await.filter(crate::is_final)
        })
        .await
        .with_context(|| format!("job {id}"))?;
        ensure!(j.state == pb::JobState::Succeeded as i32, "job {id}: {}", crate::describe_job(&j));
        let (d, l) = crate::ha::audit(&c.commits(id).await, 3);
        Report::add(&mut r.double_commits, d);
        Report::add(&mut r.lost, l);
    }
    r.recover_s = t.elapsed().as_secs_f64();
    r.note = format!("{} jobs acknowledged before the kill at {ms} ms", acked.len());
    Ok(r)
}

/// Scenario 6: etcd is down for a while: leaders cannot renew their lease and step down (exit 75,
/// restarted by the supervisor as standbys); when etcd is back one leads and the screen
/// completes.
pub async fn etcd_down(size: Size) -> Result<Report> {
    let mut r = Report::new("etcd_unavailable");
    let (mut c, _) = ha(HaOptions {
        supervised: true,
        s3: false,
        ..HaOptions::default()
    })
    .await?;
    let (id, total) = screen_under_way(&c, size).await?;
    c.etcd[0].stop();
    let t = Instant::now();
    // The leader cannot renew its lease: it must stop acting as leader within the TTL.
    let stepped_down = wait_for("the leader to step down", size.outage(), || async {
        c.leader_index().await.is_none().then_some(())
    })
    .await;
    r.detect_s = t.elapsed().as_secs_f64();
    stepped_down?;
    tokio::time::sleep(size.outage().saturating_sub(t.elapsed())).await;
    c.etcd[0].restart();
    let back = Instant::now();
    settle(&c, &id, total, Duration::from_secs(180), &mut r).await?;
    r.recover_s = back.elapsed().as_secs_f64();
    r.note = format!("etcd down {:.0} s", (back - t).as_secs_f64());
    Ok(r)
}

/// Scenario 7: One of three etcd members is lost mid-screen: the quorum carries on.
pub async fn etcd_member_lost(size: Size) -> Result<Report> {
    let mut r = Report::new("etcd_one_of_three_lost");
    let (mut c, _) = ha(HaOptions {
        supervised: true,
        s3: false,
        etcd_members: 3,
        ..HaOptions::default()
    })
    .await?;
    let (id, total) = screen_under_way(&c, size).await?;
    c.etcd[0].stop();
    let t = Instant::now();
    settle(&c, &id, total, Duration::from_secs(180), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    Ok(r)
}
