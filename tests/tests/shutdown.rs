//! An agent stopped with SIGTERM hands back the tasks it could not finish in its grace period.

use std::time::Duration;

use dockyard_tests::{counts, describe_job, pb, state, AgentOptions, TestCluster, WAIT};

/// `--shutdown-grace-s`: "how long running tasks may finish before they are handed back".
/// Handed-back tasks must be requeued and run elsewhere, not failed.
#[tokio::test]
async fn sigterm_hands_back_unfinished_tasks() {
    let mut c = TestCluster::builder()
        .agent(AgentOptions::sleep(2).node_id("leaving").shutdown_grace_s(1))
        .start()
        .await;
    let job = c.submit_sleep(2, 4000, 0).await;
    c.wait_job(&job, |j| counts(j).running == 2, WAIT).await;

    c.terminate_agent(0);
    c.add_agent_and_wait(AgentOptions::sleep(2).node_id("staying")).await;

    let j = c.wait_job_final(&job, Duration::from_secs(40)).await;
    assert_eq!(
        (state(&j), counts(&j).succeeded, counts(&j).failed),
        (pb::JobState::Succeeded, 2, 0),
        "tasks handed back at shutdown must be requeued, not failed: {}",
        describe_job(&j)
    );
    let s = c.stats().await;
    assert!(s.requeued_total >= 2, "{s:?}");
}
