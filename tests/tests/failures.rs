//! Failure handling: an agent killed mid-run, a coordinator killed and restarted.

use std::time::Duration;

use dockyard_tests::{counts, describe_job, pb, state, AgentOptions, TestCluster, WAIT};

/// Asserts the job succeeded with every task committed exactly once.
fn assert_all_succeeded(j: &pb::Job, total: u32) {
    let c = counts(j);
    assert_eq!(state(j), pb::JobState::Succeeded, "{}", describe_job(j));
    assert_eq!(
        (c.total, c.succeeded, c.failed, c.cancelled, c.queued, c.running),
        (total, total, 0, 0, 0, 0),
        "{}",
        describe_job(j)
    );
}

/// SIGKILL of an agent mid-run: its tasks are requeued and run elsewhere; no result is
/// committed twice.
#[tokio::test]
async fn tasks_of_a_killed_agent_are_requeued() {
    let mut c = TestCluster::builder()
        .agent(AgentOptions::sleep(2))
        .agent(AgentOptions::sleep(2))
        .start()
        .await;
    let job = c.submit_sleep(20, 500, 0).await;
    let victim = c.node_id(1).to_string();

    c.wait_job(&job, |j| counts(j).succeeded >= 2, WAIT).await;
    // Kill it while it holds work (it gets new tasks as long as the queue is not empty).
    c.wait_node(&victim, "running tasks", |n| !n.running.is_empty(), WAIT).await;
    c.kill_agent(1);

    let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
    assert_all_succeeded(&j, 20);
    let s = c.stats().await;
    assert!(s.requeued_total >= 1, "nothing was requeued: {s:?}");
    assert_eq!(
        s.results_committed_total, 20,
        "each task's result must be committed exactly once: {s:?}"
    );
    assert!(s.dispatched_total >= 21, "requeued tasks must be dispatched again: {s:?}");
    let n = c.node(&victim).await.expect("the lost node stays listed");
    assert_eq!(n.state, pb::NodeState::Lost as i32, "{n:?}");
}

/// SIGKILL of the coordinator with tasks running; restarted on the same port and data
/// folder, it reconciles with the reconnecting agents and the job completes, each task
/// succeeding exactly once.
#[tokio::test]
async fn coordinator_restart_with_work_in_flight() {
    let mut c = TestCluster::builder()
        .reconcile_grace_ms(3000)
        .agent(AgentOptions::sleep(2))
        .agent(AgentOptions::sleep(2))
        .start()
        .await;
    let job = c.submit_sleep(12, 700, 0).await;
    c.wait_job(&job, |j| counts(j).succeeded >= 2 && counts(j).running >= 1, WAIT).await;
    let epoch_before = c.stats().await.epoch;

    c.restart_coordinator().await;

    let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
    assert_all_succeeded(&j, 12);
    let s = c.stats().await;
    assert!(
        s.epoch > epoch_before,
        "a restart must start a new epoch: before {epoch_before}, now {s:?}"
    );
    assert!(s.results_committed_total <= 12, "{s:?}");
    c.wait_for_nodes(2).await;
    let jobs = c.list_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
}

/// A job acknowledged just before the coordinator is SIGKILLed (no agents, so nothing ran)
/// is still there after the restart, queued, and runs when an agent arrives.
#[tokio::test]
async fn acknowledged_job_survives_kill_9() {
    let mut c = TestCluster::builder().start().await;
    let job = c.submit_sleep(5, 20, 3).await;
    c.restart_coordinator().await;

    let j = c.get_job(&job).await;
    assert_eq!(state(&j), pb::JobState::Queued, "{}", describe_job(&j));
    assert_eq!((counts(&j).total, counts(&j).queued), (5, 5), "{}", describe_job(&j));
    assert!(c.list_jobs().await.iter().any(|x| x.job_id == job), "ListJobs lost the job");
    assert_eq!(c.stats().await.queued, 5);

    c.add_agent_and_wait(AgentOptions::sleep(2)).await;
    let j = c.wait_job_final(&job, WAIT).await;
    assert_all_succeeded(&j, 5);
}

/// An agent that goes silent (SIGSTOP) past the lease is declared lost and its tasks run
/// elsewhere; when it wakes up, its late results are dropped, never committed twice.
#[tokio::test]
async fn silent_agent_past_lease_is_lost_and_its_late_results_dropped() {
    let mut c = TestCluster::builder()
        .agent(AgentOptions::sleep(2))
        .agent(AgentOptions::sleep(2))
        .start()
        .await;
    let job = c.submit_sleep(16, 500, 0).await;
    let victim = c.node_id(1).to_string();
    c.wait_job(&job, |j| counts(j).succeeded >= 2, WAIT).await;
    c.wait_node(&victim, "running tasks", |n| !n.running.is_empty(), WAIT).await;
    c.pause_agent(1);

    // Lease 1000 ms: lost well within 5 s, while still stopped.
    c.wait_node(&victim, "LOST", |n| n.state == pb::NodeState::Lost as i32, Duration::from_secs(5))
        .await;
    let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
    assert_all_succeeded(&j, 16);

    // Wake it: its tasks finished while it slept; those results are stale now.
    c.resume_agent(1);
    c.wait_node(&victim, "READY again", |n| n.state == pb::NodeState::Ready as i32, WAIT)
        .await;
    // The late results did arrive (dropped as duplicates) before "none was committed" can
    // mean anything.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let s = loop {
        let s = c.stats().await;
        if s.duplicate_results_dropped > 0 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the woken agent's late results never reached the coordinator: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(s.requeued_total >= 1, "{s:?}");
    assert_eq!(s.results_committed_total, 16, "a late result was committed: {s:?}");
    let j = c.get_job(&job).await;
    assert_all_succeeded(&j, 16);
}

/// The coordinator is down while agents finish their tasks; after the restart the agents
/// report them (running or finished) and every task succeeds exactly once.
#[tokio::test]
async fn tasks_finishing_while_the_coordinator_is_down_are_reconciled() {
    let mut c = TestCluster::builder()
        .reconcile_grace_ms(10_000)
        .agent(AgentOptions::sleep(2))
        .agent(AgentOptions::sleep(2))
        .start()
        .await;
    let job = c.submit_sleep(8, 600, 0).await;
    c.wait_job(&job, |j| counts(j).running == 4, WAIT).await;
    c.kill_coordinator();
    // Longer than a task: the running ones finish while nobody listens.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.start_coordinator_again().await;

    let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
    assert_all_succeeded(&j, 8);
    let s = c.stats().await;
    assert!(s.results_committed_total <= 8, "{s:?}");
    assert_eq!(
        s.requeued_total, 0,
        "agents reported their work; nothing should have been redone: {s:?}"
    );
}

/// After a restart, tasks recorded as running on an agent that never comes back are
/// requeued once the reconcile grace is over, and run elsewhere.
#[tokio::test]
async fn orphans_of_an_agent_that_never_returns_are_requeued_after_grace() {
    let mut c = TestCluster::builder()
        .reconcile_grace_ms(2000)
        .agent(AgentOptions::sleep(2))
        .agent(AgentOptions::sleep(2))
        .start()
        .await;
    let job = c.submit_sleep(8, 800, 0).await;
    let gone = c.node_id(1).to_string();
    c.wait_node(&gone, "running tasks", |n| n.running.len() == 2, WAIT).await;
    c.kill_coordinator();
    c.kill_agent(1);
    c.start_coordinator_again().await;

    let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
    assert_all_succeeded(&j, 8);
    let s = c.stats().await;
    assert!(s.requeued_total >= 2, "the vanished agent's 2 tasks must be requeued: {s:?}");
    assert!(
        c.node(&gone).await.is_none(),
        "an agent that never reconnected is unknown to the new coordinator"
    );
}

/// Retryable failures (here: the engine timing out) are retried, then fail the task once it
/// has used `max_attempts`; a job whose tasks all failed is FAILED with the reason.
#[tokio::test]
async fn retryable_failures_fail_after_max_attempts() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let mut req = dockyard_tests::sleep_request(2, 5000, 0);
    req.timeout_s = 1;
    req.max_attempts = 2;
    let job = c.submit(req).await;

    let j = c.wait_job_final(&job, WAIT).await;
    let k = counts(&j);
    assert_eq!(
        (state(&j), k.failed, k.succeeded),
        (pb::JobState::Failed, 2, 0),
        "{}",
        describe_job(&j)
    );
    assert!(
        j.error.contains("2 attempts"),
        "the error should say the attempts were used up: {:?}",
        j.error
    );
    let s = c.stats().await;
    assert_eq!(
        (s.dispatched_total, s.requeued_total, s.results_committed_total),
        (4, 2, 0),
        "{s:?}"
    );
    // The report groups both task failures under one reason.
    let report = c
        .jobs()
        .await
        .get_job_report(pb::GetJobRequest { job_id: job.clone() })
        .await
        .expect("report")
        .into_inner();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let g = &report.failures[0];
    assert_eq!((g.kind.as_str(), g.count, g.examples.len()), ("task", 2, 2), "{g:?}");
    assert!(g.reason.contains("gave up after 2 attempts"), "{g:?}");
}

/// An agent restarted with the same `--node-id` comes back as the same node (not a second
/// entry) and takes work again.
#[tokio::test]
async fn restarted_agent_keeps_its_node_id() {
    let mut c = TestCluster::builder()
        .agent(AgentOptions::sleep(1).node_id("stable-1"))
        .start()
        .await;
    c.kill_agent(0);
    c.wait_node(
        "stable-1",
        "LOST",
        |n| n.state == pb::NodeState::Lost as i32,
        Duration::from_secs(5),
    )
    .await;
    c.restart_agent(0);
    c.wait_node("stable-1", "READY", |n| n.state == pb::NodeState::Ready as i32, WAIT)
        .await;
    let nodes = c.nodes().await;
    assert_eq!(nodes.len(), 1, "one node, listed once: {nodes:?}");

    let job = c.submit_sleep(2, 10, 0).await;
    let j = c.wait_job_final(&job, WAIT).await;
    assert_all_succeeded(&j, 2);
}
