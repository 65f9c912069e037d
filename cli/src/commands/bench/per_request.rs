//! `bench dispatch --jobs N`: N single-task sleep jobs, each its own request, from several
//! clients on their own connections with a fixed number of requests in flight each, as
//! services submitting one docking at a time would. Each job is its own `SubmitJob` call
//! (`--submit unary`), or its own message on one `SubmitJobs` stream per client
//! (`--submit stream`); either way each is acknowledged on its own once durable. The clock
//! runs from the first request to the moment the coordinator has committed the N-th result
//! (its counter, polled every 5 ms).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::dispatch::Run;
use crate::client::Client;
use crate::commands::query;
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::job_service_client::JobServiceClient;

/// How each job reaches the coordinator.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    /// One SubmitJob call per job.
    Unary,
    /// One SubmitJobs stream per client, one message per job.
    Stream,
}

fn request(sleep_ms: u32) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        name: "bench-request".into(),
        engine: "sleep".into(),
        sleep_task_count: 1,
        params: Some(pb::EngineParams {
            sleep_ms,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn percentile(sorted: &[f64], q: f64) -> String {
    if sorted.is_empty() {
        return "n/a".into();
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    format!("{:.1}", sorted[i.min(sorted.len() - 1)])
}

/// One unary sender: a call at a time until the jobs run out; acknowledgement times in ms.
async fn unary(mut svc: JobServiceClient<Channel>, next: Arc<AtomicU32>, jobs: u32, sleep_ms: u32) -> Result<Vec<f64>> {
    let mut acks = Vec::new();
    while next.fetch_add(1, Ordering::Relaxed) < jobs {
        let t = Instant::now();
        svc.submit_job(request(sleep_ms)).await.context("SubmitJob")?;
        acks.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(acks)
}

/// One stream: up to `in_flight` requests unanswered, until the jobs run out. Every answer
/// must be a submission, in request order.
async fn stream(mut svc: JobServiceClient<Channel>, next: Arc<AtomicU32>, jobs: u32, in_flight: u32, sleep_ms: u32) -> Result<Vec<f64>> {
    let (tx, rx) = mpsc::channel(in_flight as usize);
    let mut answers = svc.submit_jobs(ReceiverStream::new(rx)).await.context("SubmitJobs")?.into_inner();
    let (mut sent, mut acks) = (VecDeque::new(), Vec::new());
    let mut exhausted = false;
    loop {
        while !exhausted && sent.len() < in_flight as usize {
            if next.fetch_add(1, Ordering::Relaxed) >= jobs {
                exhausted = true;
                break;
            }
            tx.send(request(sleep_ms)).await.context("SubmitJobs stream closed")?;
            sent.push_back(Instant::now());
        }
        let Some(at) = sent.pop_front() else { break };
        let answer = answers.message().await.context("SubmitJobs")?.context("SubmitJobs ended early")?;
        if answer.index != acks.len() as u64 {
            bail!("answer {} came where {} was due", answer.index, acks.len());
        }
        if let Some(pb::submit_jobs_response::Outcome::Refused(r)) = answer.outcome {
            bail!("SubmitJobs refused request {}: {}", answer.index, r.message);
        }
        acks.push(at.elapsed().as_secs_f64() * 1e3);
    }
    drop(tx);
    if answers.message().await.context("SubmitJobs")?.is_some() {
        bail!("SubmitJobs answered more requests than were sent");
    }
    Ok(acks)
}

pub(super) async fn run(
    endpoint: &str,
    watcher: &Client,
    jobs: u32,
    clients: u32,
    in_flight: u32,
    sleep_ms: u32,
    via: Submit,
) -> Result<Run> {
    let base = query::stats(watcher).await?.results_committed_total;
    let next = Arc::new(AtomicU32::new(0));
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(Client::connect(endpoint, None).await?);
    }
    let t0 = Instant::now();
    let mut senders = JoinSet::new();
    for c in &conns {
        match via {
            Submit::Unary => {
                for _ in 0..in_flight {
                    senders.spawn(unary(c.jobs.clone(), Arc::clone(&next), jobs, sleep_ms));
                }
            }
            Submit::Stream => {
                senders.spawn(stream(c.jobs.clone(), Arc::clone(&next), jobs, in_flight, sleep_ms));
            }
        }
    }
    // Completion, watched beside the senders: the last result may land before the last
    // sender task is polled again.
    let want = base + u64::from(jobs);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut acks = Vec::with_capacity(jobs as usize);
    let wall_s = loop {
        // A finished sender hands over its acknowledgement times, or its error.
        while let Some(r) = senders.try_join_next() {
            acks.extend(r.context("sender")??);
        }
        let done = query::stats(watcher).await?.results_committed_total;
        if done >= want {
            break t0.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!("{} of {jobs} jobs completed within 600 s", done - base);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    while let Some(r) = senders.join_next().await {
        acks.extend(r.context("sender")??);
    }
    if acks.len() != jobs as usize {
        bail!("{} of {jobs} submissions were acknowledged", acks.len());
    }
    acks.sort_by(f64::total_cmp);
    let (mode, how) = match via {
        Submit::Unary => ("per_request", "one SubmitJob call per job"),
        Submit::Stream => ("per_request_stream", "one SubmitJobs message per job"),
    };
    Ok(Run {
        mode,
        tasks: jobs,
        wall_s,
        // Submit to acknowledgement, as each client saw it.
        p50_ms: percentile(&acks, 0.5),
        p99_ms: percentile(&acks, 0.99),
        clients: format!("{clients}x{in_flight}"),
        detail: format!("{jobs} single-task jobs ({how}) from {clients} clients with {in_flight} requests in flight each"),
    })
}
