//! Scheduling: priority order, drain/undrain, unschedulable jobs.

use std::time::Duration;

use dockyard_tests::{counts, describe_job, is_final, node_state, pb, require_vina, state, AgentOptions, TestCluster, WAIT};

/// A high-priority job submitted behind a low-priority one runs first on the next free slot.
#[tokio::test]
async fn higher_priority_job_runs_first() {
    let mut c = TestCluster::builder().start().await;
    // Nothing is connected yet, so both jobs wait in the queue.
    let low = c.submit_sleep(6, 500, 0).await;
    let high = c.submit_sleep(2, 300, 9).await;
    c.add_agent(AgentOptions::sleep(1));

    let h = c.wait_job(&high, is_final, WAIT).await;
    let l = c.get_job(&low).await;
    assert_eq!(state(&h), pb::JobState::Succeeded, "{}", describe_job(&h));
    let lc = counts(&l);
    assert!(
        lc.succeeded + lc.running <= 1,
        "the priority-0 job ran before the priority-9 job finished: {}",
        describe_job(&l)
    );

    let l = c.wait_job_final(&low, WAIT).await;
    assert_eq!(state(&l), pb::JobState::Succeeded, "{}", describe_job(&l));
    assert_eq!(counts(&l).succeeded, 6);
    assert!(h.finished_at_ms <= l.finished_at_ms);
}

/// A drained node takes no new work; undraining it lets the queued job run.
#[tokio::test]
async fn drained_node_takes_no_work_until_undrained() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let id = c.node_id(0).to_string();

    let n = c.drain(&id).await;
    assert_eq!(node_state(&n), pb::NodeState::Draining, "DrainNode reply: {n:?}");
    c.wait_node(
        &id,
        "DRAINING in ListNodes",
        |n| node_state(n) == pb::NodeState::Draining,
        Duration::from_secs(5),
    )
    .await;

    let job = c.submit_sleep(3, 50, 0).await;
    // Several heartbeats and scheduler ticks: nothing may be dispatched to a draining node.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let j = c.get_job(&job).await;
    assert_eq!(state(&j), pb::JobState::Queued, "{}", describe_job(&j));
    assert_eq!(
        (counts(&j).queued, counts(&j).running, counts(&j).succeeded),
        (3, 0, 0),
        "{}",
        describe_job(&j)
    );
    assert_eq!(c.stats().await.dispatched_total, 0);

    let n = c.undrain(&id).await;
    assert_eq!(node_state(&n), pb::NodeState::Ready, "UndrainNode reply: {n:?}");
    c.wait_node(
        &id,
        "READY in ListNodes",
        |n| node_state(n) == pb::NodeState::Ready,
        Duration::from_secs(5),
    )
    .await;

    let j = c.wait_job_final(&job, Duration::from_secs(15)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    assert_eq!(counts(&j).succeeded, 3);
}

/// A job no connected node can run says why; it runs once a capable node arrives.
#[tokio::test]
async fn unschedulable_until_an_agent_offers_the_engine() {
    require_vina();
    let mut c = TestCluster::builder()
        .agent(AgentOptions::vina(1).node_id("vina-only"))
        .start()
        .await;
    let job = c.submit_sleep(3, 1000, 0).await;

    let j = c
        .wait_job(&job, |j| !j.unschedulable_reason.is_empty(), Duration::from_secs(5))
        .await;
    assert!(
        j.unschedulable_reason.contains("sleep"),
        "reason should name the missing engine: {}",
        describe_job(&j)
    );
    assert_eq!(state(&j), pb::JobState::Queued, "{}", describe_job(&j));
    // It stays queued (not failed) while nobody can run it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let j = c.get_job(&job).await;
    assert_eq!(state(&j), pb::JobState::Queued, "{}", describe_job(&j));
    assert_eq!(counts(&j).queued, 3, "{}", describe_job(&j));

    c.add_agent_and_wait(AgentOptions::sleep(1).node_id("sleepy")).await;
    // The reason clears as soon as a capable node is connected, not only when the job ends
    // (three 1 s tasks on one slot leave work queued for a while).
    let j = c
        .wait_job(&job, |j| j.unschedulable_reason.is_empty(), Duration::from_secs(5))
        .await;
    assert!(
        !is_final(&j) && counts(&j).succeeded < 3,
        "reason cleared only at the end: {}",
        describe_job(&j)
    );
    let j = c.wait_job_final(&job, WAIT).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    assert!(j.unschedulable_reason.is_empty(), "reason not cleared: {}", describe_job(&j));
}

/// A job needing GPUs nobody has is reported unschedulable, naming the GPU shortfall.
#[tokio::test]
async fn job_needing_a_missing_gpu_is_unschedulable() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let mut req = dockyard_tests::sleep_request(2, 10, 0);
    req.gpus_per_task = 1;
    let job = c.submit(req).await;
    let j = c
        .wait_job(&job, |j| !j.unschedulable_reason.is_empty(), Duration::from_secs(5))
        .await;
    assert!(j.unschedulable_reason.contains("GPU"), "{}", describe_job(&j));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let j = c.get_job(&job).await;
    assert_eq!((state(&j), counts(&j).queued), (pb::JobState::Queued, 2), "{}", describe_job(&j));
    assert_eq!(c.stats().await.dispatched_total, 0);
}
