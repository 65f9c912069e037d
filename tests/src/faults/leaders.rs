//! Coordinators that die or stall at bad moments, submit storms, and etcd trouble.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rand::Rng;

use super::{job, screen_under_way, settle, submit_sleep, succeeded, wait_for, with_two_agents, Report, Size};
use crate::ha::{HaCluster, HaOptions};
use crate::{pb, sleep_request, AgentOptions, TestCluster};

async fn ha(opts: HaOptions) -> Result<(HaCluster, usize)> {
    Ok(with_two_agents(opts).await)
}

/// Kills the leader at the moment `when` picks, then checks a standby finishes the screen.
async fn kill_leader(name: &str, size: Size, task_ms: u32, when: impl AsyncFnOnce(&HaCluster, &str)) -> Result<Report> {
    let mut r = Report::new(name);
    let (mut c, old) = ha(HaOptions::default()).await?;
    let total = size.tasks();
    let id = submit_sleep(&c, total, task_ms).await?;
    when(&c, &id).await;
    c.kill_coordinator(old);
    let t = Instant::now();
    c.wait_new_leader(old, Duration::from_secs(30)).await;
    r.detect_s = t.elapsed().as_secs_f64();
    // Full sizes run 400 tasks of up to 2 s on 4 slots: patience grows with the screen.
    let patience = Duration::from_secs(120) + Duration::from_millis(u64::from(total) * u64::from(task_ms) / 2);
    settle(&c, &id, total, patience, &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    Ok(r)
}

/// Scenario 3a: Right after the job was acknowledged (its durable write), before much ran.
pub async fn leader_kill_after_write(size: Size) -> Result<Report> {
    kill_leader("leader_kill_after_durable_write", size, size.task_ms(), async |_, _| {}).await
}

/// Scenario 3b: While tasks are out on agents (assignments sent, results not yet back).
pub async fn leader_kill_after_send(size: Size) -> Result<Report> {
    kill_leader("leader_kill_after_send", size, 2000, async |c, id| {
        let _ = wait_for("tasks running", Duration::from_secs(30), || async {
            job(c, id).await.filter(|j| j.tasks.as_ref().is_some_and(|t| t.running >= 4))
        })
        .await;
    })
    .await
}

/// Scenario 3c: As results arrive: tasks of 1 s, killed a few ms before a round of them ends, so
/// results are in flight or received but not yet committed.
pub async fn leader_kill_before_commit(size: Size) -> Result<Report> {
    kill_leader("leader_kill_before_result_commit", size, 1000, async |c, id| {
        let _ = wait_for("the first round done", Duration::from_secs(30), || async {
            job(c, id).await.filter(|j| succeeded(j) >= 4)
        })
        .await;
        // The next round started within a few ms of the first round's results.
        tokio::time::sleep(Duration::from_millis(990)).await;
    })
    .await
}

/// Scenario 4: The leader is paused past its lease, then resumed after a new leader took over.
pub async fn leader_pause(size: Size) -> Result<Report> {
    let mut r = Report::new("leader_pause_past_lease");
    let (mut c, old) = ha(HaOptions::default()).await?;
    let (id, total) = screen_under_way(&c, size).await?;
    let epoch = c.leader_info(old).await.map_or(0, |i| i.epoch);
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
        let t = Instant::now();
        c.start_coordinator_again().await;
        r.recover_s = r.recover_s.max(t.elapsed().as_secs_f64());
        let mut jobs = c.jobs().await;
        for id in &acked {
            if jobs.get_job(pb::GetJobRequest { job_id: id.clone() }).await.is_err() {
                r.lost += 1;
            }
        }
        ensure!(!acked.is_empty(), "the storm got no job acknowledged in {ms} ms");
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
    let mut jobs = c.jobs(new).await;
    for id in &acked {
        if jobs.get_job(pb::GetJobRequest { job_id: id.clone() }).await.is_err() {
            r.lost += 1;
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
        r.double_commits += d;
        r.lost += l;
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
