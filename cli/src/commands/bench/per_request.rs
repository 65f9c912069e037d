//! `bench dispatch --jobs N`: N single-task sleep jobs, each its own `SubmitJob`, from
//! several clients on their own connections with a fixed number of requests in flight each,
//! as services submitting one docking at a time would. The clock runs from the first
//! request to the moment the coordinator has committed the N-th result (its counter, polled
//! every 5 ms).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;

use super::dispatch::Run;
use crate::client::Client;
use crate::commands::query;
use dockyard_proto::v1 as pb;

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

pub(super) async fn run(endpoint: &str, watcher: &Client, jobs: u32, clients: u32, in_flight: u32, sleep_ms: u32) -> Result<Run> {
    let base = query::stats(watcher).await?.results_committed_total;
    let next = Arc::new(AtomicU32::new(0));
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(Client::connect(endpoint, None).await?);
    }
    let t0 = Instant::now();
    let mut senders = JoinSet::new();
    for c in &conns {
        for _ in 0..in_flight {
            let (mut svc, next) = (c.jobs.clone(), Arc::clone(&next));
            senders.spawn(async move {
                let mut acks = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < jobs {
                    let t = Instant::now();
                    svc.submit_job(request(sleep_ms)).await.context("SubmitJob")?;
                    acks.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok::<_, anyhow::Error>(acks)
            });
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
        bail!("{} of {jobs} SubmitJob calls were acknowledged", acks.len());
    }
    acks.sort_by(f64::total_cmp);
    Ok(Run {
        mode: "per_request",
        tasks: jobs,
        wall_s,
        // Submit to acknowledgement, as each client saw it.
        p50_ms: percentile(&acks, 0.5),
        p99_ms: percentile(&acks, 0.99),
        clients: format!("{clients}x{in_flight}"),
        detail: format!("{jobs} single-task jobs from {clients} clients with {in_flight} requests in flight each"),
    })
}
