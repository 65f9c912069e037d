//! SubmitJobs: many submissions on one stream, each answered in order on its own, a refused
//! one alone (nothing of it queued), each job then run like a SubmitJob one.

use std::collections::BTreeSet;

use dockyard_tests::{describe_job, pb, sleep_request, state, AgentOptions, TestCluster, WAIT};
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test]
async fn a_stream_answers_each_request_in_order_and_refuses_a_bad_one_alone() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    let mut bad = sleep_request(1, 10, 0);
    bad.engine = "autodock9".into();
    let requests = vec![
        sleep_request(1, 10, 0),
        sleep_request(2, 10, 3),
        bad,
        sleep_request(1, 10, 0),
        sleep_request(3, 10, 0),
    ];
    let sent = requests.len();
    let answers: Vec<pb::SubmitJobsResponse> = c
        .jobs()
        .await
        .submit_jobs(tokio_stream::iter(requests))
        .await
        .expect("SubmitJobs opens")
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .expect("every answer arrives, and the stream ends once the requests do");
    assert_eq!(answers.len(), sent, "{answers:?}");
    let mut accepted = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.index, i as u64, "answers come in request order: {answers:?}");
        match &a.outcome {
            Some(pb::submit_jobs_response::Outcome::Submitted(s)) => {
                assert_ne!(i, 2, "the bad request was accepted: {s:?}");
                accepted.push(s.job_id.clone());
            }
            Some(pb::submit_jobs_response::Outcome::Refused(r)) => {
                assert_eq!(i, 2, "a good request was refused: {r:?}");
                assert_eq!(r.code, Code::InvalidArgument as i32, "{r:?}");
                assert!(r.message.contains("invalid engine") && r.message.contains("autodock9"), "{r:?}");
            }
            None => panic!("answer {i} has no outcome"),
        }
    }
    // Counted from the job list, not from the answers: four jobs, the refused one absent.
    let listed: BTreeSet<String> = c.list_jobs().await.into_iter().map(|j| j.job_id).collect();
    assert_eq!(listed, accepted.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(listed.len(), 4);
    let mut tasks = 0;
    for job in &accepted {
        let j = c.wait_job_final(job, WAIT).await;
        assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
        tasks += j.tasks.map(|t| t.succeeded).unwrap_or_default();
    }
    assert_eq!(tasks, 1 + 2 + 1 + 3, "tasks run across the accepted jobs");
}

#[tokio::test]
async fn a_stream_that_breaks_off_keeps_what_was_answered() {
    let c = TestCluster::builder().start().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = c
        .jobs()
        .await
        .submit_jobs(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("SubmitJobs opens")
        .into_inner();
    // One request at a time: each answered before the next is sent.
    let mut ids = Vec::new();
    for priority in [1, 2] {
        tx.send(sleep_request(1, 10, priority)).await.expect("send");
        let a = tokio::time::timeout(WAIT, answers.message())
            .await
            .expect("an answer within the wait")
            .expect("the stream is healthy")
            .expect("an answer, not the end");
        match a.outcome {
            Some(pb::submit_jobs_response::Outcome::Submitted(s)) => ids.push(s.job_id),
            other => panic!("request {priority} was not submitted: {other:?}"),
        }
    }
    // The client goes away without ending its stream properly.
    drop(answers);
    drop(tx);
    let listed: BTreeSet<String> = c.list_jobs().await.into_iter().map(|j| j.job_id).collect();
    assert_eq!(listed, ids.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(c.stats().await.queued, 2, "both answered jobs stay queued (no agent)");
}
