//! Containment of engine runs, through the real agent binary: a stand-in Vina that
//! misbehaves on demand (node-agent/tests/fixtures/fault_engine.sh, a test double) hangs,
//! escapes its process group, crashes, floods its output, and writes or allocates past
//! the agent's limits. Each time the task fails (or succeeds) with a clear reason, nothing
//! the engine started survives the task, no zombie is left under the agent, the task's
//! scratch folder is gone, and the agent keeps serving.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dockyard_tests::fault_engine::{leftovers, lingering, Fault};
use dockyard_tests::{
    describe_job, input, ligand_1iep, pb, processes_mentioning, read_shared, state, vina_1iep_request, AgentOptions, TestCluster, WAIT,
};

/// A cluster with one vina agent of `slots` whose `vina` is the stand-in, started with `args`.
async fn cluster(slots: u32, args: &[&str]) -> (TestCluster, Fault) {
    let mut c = TestCluster::builder().start().await;
    let fault = Fault::new(c.dir());
    let mut opts = AgentOptions::vina(slots)
        .arg("--vina")
        .arg(fault.wrapper.display().to_string())
        .arg("--engine-grace-ms")
        .arg("1000");
    for a in args {
        opts = opts.arg(*a);
    }
    c.add_agent_and_wait(opts).await;
    (c, fault)
}

fn request(timeout_s: u32, max_attempts: u32) -> pb::SubmitJobRequest {
    let mut req = vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]);
    req.timeout_s = timeout_s;
    req.max_attempts = max_attempts;
    // Every job must reach the engine, not the result cache.
    req.fresh = true;
    req
}

async fn run_job(c: &TestCluster, req: pb::SubmitJobRequest) -> pb::Job {
    let job = c.submit(req).await;
    c.wait_job_final(&job, WAIT).await
}

fn agent_pid(c: &TestCluster) -> i32 {
    let pids = processes_mentioning("dockyard-agent", c.dir());
    assert_eq!(pids.len(), 1, "expected one agent process: {pids:?}");
    i32::try_from(pids[0]).expect("pid")
}

/// Waits until no process the stand-in recorded is left (running or unreaped).
async fn assert_nothing_left(c: &TestCluster, fault: &Fault) {
    let agent = agent_pid(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(fault, agent);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes of finished tasks survive: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The agent's scratch folders of task attempts (there must be none between tasks).
fn scratch_folders(c: &TestCluster) -> Vec<PathBuf> {
    let runs = c.dir().join("work").join(c.node_id(0)).join("runs");
    match std::fs::read_dir(runs) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn assert_failed_with(j: &pb::Job, reason: &str) {
    assert_eq!(state(j), pb::JobState::Failed, "{}", describe_job(j));
    assert!(j.error.contains(reason), "the error should say {reason:?}: {}", describe_job(j));
}

/// (a) An engine that hangs and ignores SIGTERM: every attempt times out, its group
/// (grandchild included) is killed after the grace, the task fails with the timeout after
/// its attempts, and the agent lives on.
#[tokio::test]
async fn a_hanging_engine_times_out_and_leaves_nothing_behind() {
    let (mut c, fault) = cluster(1, &[]).await;
    fault.set_mode("hang");
    let started = Instant::now();
    let j = run_job(&c, request(1, 2)).await;
    assert_failed_with(&j, "gave up after 2 attempts");
    assert_failed_with(&j, "engine timed out after 1s");
    // Two attempts of 1 s plus a 1 s grace each, not the engine's 100000 s.
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!((fault.count("engine"), fault.count("grandchild")), (2, 2), "{:?}", fault.pids());
    assert_nothing_left(&c, &fault).await;
    assert_eq!(scratch_folders(&c), Vec::<PathBuf>::new());
    assert!(c.agent_alive(0));
}

/// (b) A grandchild that leaves the engine's process group and session (setsid) dies with
/// its task, whether the engine succeeds or times out, even while another task's engine
/// runs on the node, and is reaped by the agent (its subreaper) rather than left a zombie.
/// A cancelled task's engine dies too.
#[tokio::test]
async fn escaped_processes_do_not_outlive_their_task() {
    let (c, fault) = cluster(2, &[]).await;
    // A long task in the other slot: the node is never idle while the first check runs.
    let mut long = request(60, 1);
    let mut ligand = b"REMARK DOCKYARD_FAULT=hang\n".to_vec();
    ligand.extend(read_shared(&ligand_1iep()));
    long.ligands = vec![input("hang.pdbqt", ligand)];
    let long = c.submit(long).await;
    let deadline = Instant::now() + WAIT;
    while fault.count("grandchild") == 0 {
        assert!(
            Instant::now() < deadline,
            "the long task's engine did not start: {:?}",
            fault.pids()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    fault.set_mode("fork-away-ok");
    let j = run_job(&c, request(30, 1)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    let escaped: Vec<i32> = fault.pids().into_iter().filter(|(r, _)| r == "escaped").map(|(_, p)| p).collect();
    assert_eq!(escaped.len(), 1, "{:?}", fault.pids());
    let agent = agent_pid(&c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(w) = lingering(escaped[0], &fault, agent) {
        assert!(Instant::now() < deadline, "escaped process of a finished task: {w}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!dockyard_tests::is_final(&c.get_job(&long).await), "the long task ended too early");

    c.cancel(&long).await;
    c.wait_job_final(&long, WAIT).await;
    assert_nothing_left(&c, &fault).await;

    fault.set_mode("fork-away");
    let j = run_job(&c, request(1, 1)).await;
    assert_failed_with(&j, "engine timed out after 1s");
    assert_eq!(fault.count("escaped"), 2, "{:?}", fault.pids());
    assert_nothing_left(&c, &fault).await;
    let work = c.dir().join("work");
    assert_eq!(processes_mentioning("bash", &work), Vec::<u32>::new(), "an engine process survives");
    assert_eq!(scratch_folders(&c), Vec::<PathBuf>::new());
}

/// (c) An engine that crashes on every run: the task fails after its attempts with the
/// crash as the reason, and the agent is alive and still takes work.
#[tokio::test]
async fn a_crashing_engine_fails_the_task_not_the_agent() {
    let (mut c, fault) = cluster(1, &[]).await;
    fault.set_mode("crash");
    let j = run_job(&c, request(30, 2)).await;
    assert_failed_with(&j, "gave up after 2 attempts");
    assert_failed_with(&j, "engine crashed (killed by signal 11)");
    assert_eq!(fault.count("engine"), 2, "{:?}", fault.pids());
    assert!(c.agent_alive(0));

    fault.set_mode("ok");
    let j = run_job(&c, request(30, 1)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    assert_eq!(j.ligands_docked, 1, "{}", describe_job(&j));
    assert_nothing_left(&c, &fault).await;
    assert_eq!(scratch_folders(&c), Vec::<PathBuf>::new());
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (d) An engine printing without end: the agent drains it into a capped log, its memory
/// stays flat, and the task ends by its timeout.
#[tokio::test]
async fn a_flooding_engine_does_not_grow_the_agent() {
    let (c, fault) = cluster(1, &[]).await;
    let agent = agent_pid(&c);
    let before = rss_kib(agent);
    fault.set_mode("flood");
    let job = c.submit(request(3, 1)).await;
    let mut peak = before;
    let deadline = Instant::now() + WAIT;
    let j = loop {
        peak = peak.max(rss_kib(agent));
        let j = c.get_job(&job).await;
        if dockyard_tests::is_final(&j) {
            break j;
        }
        assert!(Instant::now() < deadline, "{}", describe_job(&j));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_failed_with(&j, "engine timed out after 3s");
    assert_eq!(fault.count("engine"), 1, "{:?}", fault.pids());
    println!("agent RSS: {before} KiB before the flood, {peak} KiB at its peak");
    // The drain keeps at most 2 MiB of output (plus a 64 KiB read buffer).
    assert!(
        peak < before + 48 * 1024,
        "agent RSS grew from {before} KiB to {peak} KiB while the engine flooded"
    );
    assert_nothing_left(&c, &fault).await;
    assert_eq!(scratch_folders(&c), Vec::<PathBuf>::new());
}

/// (e) Writing past `--engine-max-file-mb`, or allocating past `--engine-memory-limit-mb`,
/// fails the task with that limit as the reason.
#[tokio::test]
async fn engine_limits_fail_the_task_with_the_limit() {
    let (mut c, fault) = cluster(1, &["--engine-max-file-mb", "4", "--engine-memory-limit-mb", "256"]).await;
    fault.set_mode("fill-disk");
    let j = run_job(&c, request(30, 1)).await;
    assert_failed_with(&j, "engine exceeded the file-size limit of 4 MB");
    assert_eq!(scratch_folders(&c), Vec::<PathBuf>::new());

    fault.set_mode("oom");
    let j = run_job(&c, request(30, 1)).await;
    assert_failed_with(&j, "engine exceeded the memory limit of 256 MB");
    assert_nothing_left(&c, &fault).await;
    assert_eq!(scratch_folders(&c), Vec::<PathBuf>::new());
    assert!(c.agent_alive(0));
}
