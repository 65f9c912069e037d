//! WatchJob streams snapshots and ends with the final state.

use std::time::Duration;

use dockyard_tests::{counts, pb, AgentOptions, TestCluster};

#[tokio::test]
async fn watch_job_streams_until_the_final_state() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let job = c.submit_sleep(6, 200, 0).await;
    let mut stream = c
        .jobs()
        .await
        .watch_job(pb::WatchJobRequest { job_id: job.clone() })
        .await
        .expect("WatchJob")
        .into_inner();

    let mut events = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = stream.message().await.expect("WatchJob stream error") {
            events.push(ev);
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end within 30 s; events so far: {events:?}");
    let last = events.last().expect("at least one event");
    let j = last.job.clone().expect("event carries the job");
    assert!(last.r#final, "the last event must be marked final: {last:?}");
    assert_eq!(j.state, pb::JobState::Succeeded as i32, "{j:?}");
    assert_eq!(counts(&j).succeeded, 6);
    assert!(
        events[..events.len() - 1].iter().all(|e| !e.r#final),
        "only the last event is final: {events:?}"
    );
    assert!(events.len() >= 2, "a 1.2 s job should produce progress snapshots: {events:?}");

    // Watching a finished job returns its final state at once.
    let mut again = c
        .jobs()
        .await
        .watch_job(pb::WatchJobRequest { job_id: job.clone() })
        .await
        .expect("WatchJob")
        .into_inner();
    let ev = tokio::time::timeout(Duration::from_secs(5), again.message())
        .await
        .expect("prompt")
        .expect("ok")
        .expect("one event");
    assert!(ev.r#final && ev.job.is_some_and(|j| j.state == pb::JobState::Succeeded as i32));
    let end = tokio::time::timeout(Duration::from_secs(5), again.message())
        .await
        .expect("prompt")
        .expect("ok");
    assert!(end.is_none(), "the stream must end after the final event");

    // An unknown job is NOT_FOUND.
    let err = c
        .jobs()
        .await
        .watch_job(pb::WatchJobRequest {
            job_id: "0123456789abcdef0123".into(),
        })
        .await
        .expect_err("unknown job");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
}
