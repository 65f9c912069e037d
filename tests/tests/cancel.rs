//! Cancelling a running job kills its engines and frees the agent's slots.

use std::time::{Duration, Instant};

use dockyard_tests::{
    counts, describe_job, input, ligand_1iep, pb, processes_mentioning, read_shared, require_vina, state, vina_1iep_request, AgentOptions,
    TestCluster, WAIT,
};

#[tokio::test]
async fn cancel_running_job_frees_slots() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let node = c.node_id(0).to_string();
    let job = c.submit_sleep(2, 30_000, 0).await;
    c.wait_job(&job, |j| counts(j).running == 2, WAIT).await;
    c.wait_node(&node, "busy", |n| n.running.len() == 2 && n.free_slots == 0, WAIT)
        .await;

    let started = Instant::now();
    let r = c.cancel(&job).await;
    assert_eq!(state(&r), pb::JobState::Cancelled, "CancelJob reply: {}", describe_job(&r));
    let j = c
        .wait_job(&job, |j| state(j) == pb::JobState::Cancelled, Duration::from_secs(2))
        .await;
    assert_eq!(counts(&j).cancelled, 2, "{}", describe_job(&j));

    // The agent kills the sleeping engines and reports back, which frees its slots.
    c.wait_node(
        &node,
        "idle again",
        |n| n.running.is_empty() && n.free_slots == 2,
        Duration::from_secs(10),
    )
    .await;
    let small = c.submit_sleep(2, 10, 0).await;
    let s = c.wait_job_final(&small, Duration::from_secs(10)).await;
    assert_eq!(state(&s), pb::JobState::Succeeded, "{}", describe_job(&s));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "slots were freed only when the 30 s tasks ended"
    );

    // The cancelled job stays cancelled.
    let j = c.get_job(&job).await;
    assert_eq!(state(&j), pb::JobState::Cancelled, "{}", describe_job(&j));
    assert_eq!(counts(&j).succeeded, 0, "{}", describe_job(&j));
}

/// Cancelling a real Vina run kills the engine process (its whole group), not just the task.
#[tokio::test]
async fn cancel_kills_the_running_vina_process() {
    require_vina();
    let c = TestCluster::builder().agent(AgentOptions::vina(1)).start().await;
    let node = c.node_id(0).to_string();
    let mut req = vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]);
    // Minutes of work: it must not finish on its own during the test.
    req.params = Some(pb::EngineParams {
        exhaustiveness: 64,
        seed: 42,
        ..Default::default()
    });
    let job = c.submit(req).await;

    let deadline = Instant::now() + WAIT;
    let pids = loop {
        let pids = processes_mentioning("vina", c.dir());
        if !pids.is_empty() {
            break pids;
        }
        assert!(
            Instant::now() < deadline,
            "no vina process started: {}",
            describe_job(&c.get_job(&job).await)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let r = c.cancel(&job).await;
    assert_eq!(state(&r), pb::JobState::Cancelled, "{}", describe_job(&r));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !processes_mentioning("vina", c.dir()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "vina (pids {pids:?}) still running 15 s after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.wait_node(
        &node,
        "idle again",
        |n| n.running.is_empty() && n.free_slots == 1,
        Duration::from_secs(10),
    )
    .await;
}
