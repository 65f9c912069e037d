//! GPU matching, with agents that advertise fake GPUs (`--fake-gpus`, a test double).

use std::time::Duration;

use dockyard_tests::{counts, pb, sleep_request, state, AgentOptions, TestCluster};

#[tokio::test]
async fn gpu_tasks_go_only_to_nodes_with_a_free_gpu() {
    let c = TestCluster::builder()
        .agent(AgentOptions::sleep(4).node_id("cpu-only"))
        .agent(AgentOptions::sleep(4).node_id("one-gpu").fake_gpus(1))
        .start()
        .await;
    c.wait_for_nodes(2).await;
    let gpu_node = c.node("one-gpu").await.expect("node");
    assert_eq!(gpu_node.capacity.as_ref().map(|k| k.gpus.len()), Some(1));

    let mut req = sleep_request(3, 700, 0);
    req.gpus_per_task = 1;
    let job = c.submit(req).await;
    // One GPU: one task at a time on the GPU node, none on the CPU node with free slots.
    let mut seen_running = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let j = c.get_job(&job).await;
        let cpu = c.node("cpu-only").await.expect("node");
        let gpu = c.node("one-gpu").await.expect("node");
        assert!(cpu.running.is_empty(), "a GPU task ran on the CPU-only node: {cpu:?}");
        assert!(gpu.running.len() <= 1, "two GPU tasks shared one GPU: {gpu:?}");
        seen_running |= gpu.running.len() == 1;
        if state(&j) == pb::JobState::Succeeded {
            assert_eq!(counts(&j).succeeded, 3);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "job did not finish: {j:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_running, "never saw the GPU node running a task");
}

#[tokio::test]
async fn a_task_needing_more_gpus_than_any_node_has_is_unschedulable() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2).fake_gpus(1)).start().await;
    c.wait_for_nodes(1).await;
    let mut req = sleep_request(1, 10, 0);
    req.gpus_per_task = 2;
    let job = c.submit(req).await;
    let j = c
        .wait_job(&job, |j| !j.unschedulable_reason.is_empty(), Duration::from_secs(10))
        .await;
    assert!(j.unschedulable_reason.contains("GPU"), "{}", j.unschedulable_reason);
    assert_eq!(counts(&j).queued, 1);
}
