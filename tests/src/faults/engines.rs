//! Engines that misbehave on the agent's machine, through the stand-in engine (a test
//! double for vina, node-agent/tests/fixtures/fault_engine.sh).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::{Report, Size};
use crate::fault_engine::{leftovers, Fault};
use crate::{input, ligand_1iep, pb, processes_mentioning, read_shared, vina_1iep_request, AgentOptions, TestCluster};

async fn cluster(work_dir: Option<&Path>) -> Result<(TestCluster, Fault)> {
    let mut c = TestCluster::builder().start().await;
    let fault = Fault::new(c.dir());
    let mut opts = AgentOptions::vina(2)
        .node_id("engine-host")
        .arg("--vina")
        .arg(fault.wrapper.display().to_string())
        .arg("--engine-grace-ms")
        .arg("500");
    if let Some(w) = work_dir {
        opts = opts.work_dir(w);
    }
    c.add_agent_and_wait(opts).await;
    Ok((c, fault))
}

fn request(timeout_s: u32, max_attempts: u32) -> pb::SubmitJobRequest {
    let mut req = vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]);
    req.timeout_s = timeout_s;
    req.max_attempts = max_attempts;
    req.fresh = true;
    req
}

fn agent_pid(c: &TestCluster) -> Result<i32> {
    let pids = processes_mentioning("dockyard-agent", c.dir());
    ensure!(pids.len() == 1, "expected one agent process, found {pids:?}");
    Ok(i32::try_from(pids[0])?)
}

/// Every process the stand-in started is gone (and reaped) within 10 s.
async fn nothing_left(c: &TestCluster, fault: &Fault) -> Result<()> {
    let agent = agent_pid(c)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(fault, agent);
        if left.is_empty() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a job in `mode` and returns it finished, with the time to its first failed attempt.
async fn run(c: &TestCluster, fault: &Fault, mode: &str, timeout_s: u32, attempts: u32) -> Result<(pb::Job, f64)> {
    fault.set_mode(mode);
    let t = Instant::now();
    let id = c.submit(request(timeout_s, attempts)).await;
    let mut first_failure = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let j = c.get_job(&id).await;
        if first_failure.is_none() && (j.tasks.as_ref().is_some_and(|t| t.failed > 0) || c.stats().await.requeued_total > 0) {
            first_failure = Some(t.elapsed().as_secs_f64());
        }
        if crate::is_final(&j) {
            return Ok((j, first_failure.unwrap_or(t.elapsed().as_secs_f64())));
        }
        ensure!(Instant::now() < deadline, "job in mode {mode} did not finish in 90 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the coordinator and counts the job's lost and double commits from the records in
/// its sled folder, not from the counters that marked the job final.
fn audit(c: &mut TestCluster, j: &pb::Job, r: &mut Report) -> Result<()> {
    let total = j.tasks.as_ref().map_or(0, |t| t.total);
    ensure!(total > 0, "job {} has no tasks", j.job_id);
    c.kill_coordinator();
    let (doubles, lost) = crate::sled_audit::audit_sled(c.data_dir(), &j.job_id, total)?;
    r.lost = Some(lost);
    r.double_commits = Some(doubles);
    Ok(())
}

/// After a bad run, the same agent still docks (stand-in `ok` mode).
async fn still_serves(c: &TestCluster, fault: &Fault) -> Result<f64> {
    let t = Instant::now();
    let (j, _) = run(c, fault, "ok", 60, 1).await?;
    ensure!(
        j.state == pb::JobState::Succeeded as i32,
        "the agent no longer docks: {}",
        crate::describe_job(&j)
    );
    Ok(t.elapsed().as_secs_f64())
}

/// Scenario 18: The engine hangs (ignoring SIGTERM) and forks a grandchild that leaves its process
/// group: each attempt times out, nothing it started survives, the agent serves on.
pub async fn hang_and_fork(_size: Size) -> Result<Report> {
    let mut r = Report::new("engine_hangs_and_forks_away");
    let (mut c, fault) = cluster(None).await?;
    let (j, detect) = run(&c, &fault, "fork-away", 2, 2).await?;
    r.detect_s = detect;
    ensure!(
        j.state == pb::JobState::Failed as i32,
        "a hanging job should fail: {}",
        crate::describe_job(&j)
    );
    ensure!(j.error.contains("timed out") || j.error.contains("timeout"), "reason: {}", j.error);
    ensure!(fault.count("escaped") > 0, "the stand-in never forked away");
    nothing_left(&c, &fault).await?;
    r.recover_s = still_serves(&c, &fault).await?;
    audit(&mut c, &j, &mut r)?;
    Ok(r)
}

/// Scenario 19: The engine crashes (SIGSEGV) on every run: the task fails after its attempts with
/// the crash as reason; the agent is untouched.
pub async fn crash(_size: Size) -> Result<Report> {
    let mut r = Report::new("engine_crashes_every_run");
    let (mut c, fault) = cluster(None).await?;
    let (j, detect) = run(&c, &fault, "crash", 30, 3).await?;
    r.detect_s = detect;
    ensure!(j.state == pb::JobState::Failed as i32, "{}", crate::describe_job(&j));
    ensure!(j.error.contains("signal 11"), "reason: {}", j.error);
    r.recover_s = still_serves(&c, &fault).await?;
    audit(&mut c, &j, &mut r)?;
    Ok(r)
}

/// Unmounts the small filesystem when the scenario ends, however it ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Scenario 20: The agent's work disk fills up (a 64 MB tmpfs; the engine writes until it cannot):
/// the task fails retryably with the disk error, the space is given back, the agent serves on.
pub async fn disk_full(_size: Size) -> Result<Report> {
    let mut r = Report::new("agent_disk_full");
    let tmp = tempfile::tempdir()?;
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&work)
        .status()
        .context("mount")?;
    ensure!(
        ok.success(),
        "cannot mount a 64 MB tmpfs for the agent's work folder (this scenario needs root)"
    );
    let _mount = Mount(work.clone());
    let (mut c, fault) = cluster(Some(&work)).await?;
    let (j, detect) = run(&c, &fault, "fill-disk", 60, 2).await?;
    r.detect_s = detect;
    ensure!(j.state == pb::JobState::Failed as i32, "{}", crate::describe_job(&j));
    let report = c.cli(&["report", &j.job_id]).await;
    let text = String::from_utf8_lossy(&report.stdout).to_string() + &j.error;
    ensure!(
        text.contains("No space left") || text.contains("disk is full"),
        "the reason does not say the disk is full: {text}"
    );
    let used = std::fs::read_dir(work.join("runs")).map(|d| d.count()).unwrap_or(0);
    ensure!(used == 0, "{used} scratch folders left on the full disk");
    r.recover_s = still_serves(&c, &fault).await?;
    audit(&mut c, &j, &mut r)?;
    drop(c);
    Ok(r)
}
