//! Agents that die, stall, lose their network, replay results, or run on a skewed clock.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use super::{job, screen_under_way, settle, submit_sleep, succeeded, wait_for, with_two_agents, Report, Size};
use crate::ha::{rss_kib, HaCluster, HaOptions};
use crate::pb;
use crate::proxy::{Mode, Proxy};

async fn cluster(opts: HaOptions) -> HaCluster {
    HaCluster::start(HaOptions { s3: false, ..opts }).await
}

async fn requeued(c: &HaCluster) -> u64 {
    match c.leader_index().await {
        Some(l) => c.stats(l).await.map_or(0, |s| s.requeued_total),
        None => 0,
    }
}

/// Scenario 1: An agent is SIGKILLed with tasks running: its stream breaks, its tasks are requeued.
pub async fn agent_kill(size: Size) -> Result<Report> {
    let mut r = Report::new("agent_kill");
    let (mut c, _) = with_two_agents(HaOptions {
        coordinators: 1,
        s3: false,
        ..HaOptions::default()
    })
    .await;
    let (id, total) = screen_under_way(&c, size).await?;
    c.kill_agent(0);
    let t = Instant::now();
    wait_for("a requeue", Duration::from_secs(30), || async {
        (requeued(&c).await > 0).then_some(())
    })
    .await?;
    r.detect_s = t.elapsed().as_secs_f64();
    settle(&c, &id, total, Duration::from_secs(120), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    Ok(r)
}

/// Scenario 2: An agent is paused (SIGSTOP) past its lease, then resumed: its tasks run elsewhere,
/// and what it reports when it wakes up is dropped, not committed twice.
pub async fn agent_pause(size: Size) -> Result<Report> {
    let mut r = Report::new("agent_pause_past_lease");
    let (c, _) = with_two_agents(HaOptions {
        coordinators: 1,
        s3: false,
        ..HaOptions::default()
    })
    .await;
    let (id, total) = screen_under_way(&c, size).await?;
    c.pause_agent(0);
    let t = Instant::now();
    wait_for("a requeue", Duration::from_secs(30), || async {
        (requeued(&c).await > 0).then_some(())
    })
    .await?;
    r.detect_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.resume_agent(0);
    settle(&c, &id, total, Duration::from_secs(120), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    Ok(r)
}

/// A single coordinator whose agent `a0` dials it through a proxy; `a1` dials directly.
/// The stream lease is long, so only HTTP/2 keepalive can notice a silent partition.
async fn proxied(lease_ms: u64) -> (HaCluster, Proxy, usize) {
    let mut c = cluster(HaOptions {
        coordinators: 1,
        lease_ms,
        heartbeat_ms: 1000,
        ..HaOptions::default()
    })
    .await;
    let l = c.wait_leader(Duration::from_secs(20)).await;
    let target = c.coordinator_endpoint(l).trim_start_matches("http://").parse().expect("addr");
    let proxy = Proxy::start(target).await;
    let direct = c.coordinator_endpoint(l).to_string();
    c.add_static_agent("a0", 2, &proxy.endpoint(), &[]);
    c.add_static_agent("a1", 2, &direct, &[]);
    c.wait_nodes(l, 2).await;
    (c, proxy, l)
}

async fn partition(name: &str, mode: Mode, size: Size) -> Result<Report> {
    let mut r = Report::new(name);
    let (c, proxy, _) = proxied(60_000).await;
    let total = size.tasks();
    let id = submit_sleep(&c, total, size.task_ms()).await?;
    wait_for("a quarter of the tasks", Duration::from_secs(60), || async {
        job(&c, &id).await.filter(|j| succeeded(j) >= total / 4)
    })
    .await?;
    proxy.set(mode);
    let t = Instant::now();
    wait_for("the partitioned agent's tasks requeued", Duration::from_secs(40), || async {
        (requeued(&c).await > 0).then_some(())
    })
    .await?;
    r.detect_s = t.elapsed().as_secs_f64();
    settle(&c, &id, total, Duration::from_secs(120), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    proxy.set(Mode::Pass);
    r.note = "stream lease 60 s: detection is HTTP/2 keepalive (5 s ping, 5 s timeout)".into();
    Ok(r)
}

/// Scenario 8a: Silent partition, both directions.
pub async fn partition_both(size: Size) -> Result<Report> {
    partition("partition_both_ways", Mode::Blackhole, size).await
}

/// Scenario 8b: One way only: the agent keeps sending heartbeats but hears nothing back.
pub async fn partition_one_way(size: Size) -> Result<Report> {
    partition("partition_one_way", Mode::BlackholeDown, size).await
}

/// Scenario 9: 200 ms latency and 5% of chunks stalled a second (lost and retransmitted) on one
/// agent's link, with the default stream lease (10 s): no false eviction.
pub async fn lossy_slow(size: Size) -> Result<Report> {
    let mut r = Report::new("lossy_slow_network");
    let (c, proxy, _) = proxied(10_000).await;
    proxy.set(Mode::Slow {
        delay_ms: 200,
        loss: 0.05,
        stall_ms: 1000,
    });
    let total = size.tasks();
    let t = Instant::now();
    let id = submit_sleep(&c, total, size.task_ms()).await?;
    settle(&c, &id, total, Duration::from_secs(180), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    let evictions = requeued(&c).await;
    ensure!(
        evictions == 0,
        "{evictions} tasks requeued on a slow but working link (false eviction)"
    );
    r.note = "no eviction over a 200 ms / 5% loss link".into();
    Ok(r)
}

/// Scenario 12: Every connection is reset mid-screen: agents reconnect and replay their recent
/// results; the coordinator drops what it already has.
pub async fn duplicate_results(size: Size) -> Result<Report> {
    let mut r = Report::new("results_delivered_twice_and_replayed");
    let (c, proxy, l) = proxied(10_000).await;
    let total = size.tasks();
    let id = submit_sleep(&c, total, size.task_ms() / 4).await?;
    wait_for("a third of the tasks", Duration::from_secs(60), || async {
        job(&c, &id).await.filter(|j| succeeded(j) >= total / 3)
    })
    .await?;
    let t = Instant::now();
    proxy.reset_all();
    settle(&c, &id, total, Duration::from_secs(120), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    let s = c.stats(l).await.unwrap_or_default();
    ensure!(s.duplicate_results_dropped > 0, "no replayed result reached the coordinator: {s:?}");
    r.note = format!("{} replayed results dropped as duplicates", s.duplicate_results_dropped);
    Ok(r)
}

/// Scenario 13: An agent whose clock is minutes ahead (libfaketime): leases use the coordinator's
/// monotonic clock, so nothing changes.
pub async fn clock_skew(size: Size) -> Result<Report> {
    let mut r = Report::new("agent_clock_skew");
    let faketime = crate::servers::server_binary("faketime", "apt-get install faketime");
    let mut c = cluster(HaOptions {
        coordinators: 1,
        ..HaOptions::default()
    })
    .await;
    let l = c.wait_leader(Duration::from_secs(20)).await;
    let etcd = c.etcd_urls();
    let ft = faketime.display().to_string();
    c.spawn_agent_with(
        Some(&[&ft, "-f", "+10m"]),
        "skewed",
        2,
        &["--etcd", &etcd, "--cluster", crate::ha::CLUSTER],
        &[],
    );
    c.wait_nodes(l, 1).await;
    // The fake clock took effect: the agent stamps its log lines 10 minutes ahead.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let log = std::fs::read_to_string(c.dir().join("logs").join("agent-skewed.log"))?;
    let stamped = log
        .lines()
        .rev()
        .find_map(|l| l.split_whitespace().next().and_then(crate::ha::unix_seconds))
        .ok_or_else(|| anyhow::anyhow!("the skewed agent logged no timestamp"))?;
    let ahead = stamped - now;
    ensure!(
        (540.0..660.0).contains(&ahead),
        "the agent's clock is {ahead:.0} s off, not 10 min ahead: faketime did not take effect"
    );
    let total = size.tasks();
    let t = Instant::now();
    let id = submit_sleep(&c, total, size.task_ms() / 4).await?;
    settle(&c, &id, total, Duration::from_secs(120), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    ensure!(requeued(&c).await == 0, "tasks were requeued from an agent with a skewed clock");
    r.note = format!("agent {ahead:.0} s ahead (its log's clock): no eviction, no requeue");
    Ok(r)
}

/// Scenario 21: One agent stops reading its stream (its link holds back everything the coordinator
/// sends): the other agent keeps the work flowing, and the coordinator buffers no more for the
/// stalled agent than its slot credit, however much is queued for it.
pub async fn stops_reading(size: Size) -> Result<Report> {
    let mut r = Report::new("agent_stops_reading");
    let (c, proxy, l) = proxied(60_000).await;
    let pid = c.coordinator_pid(l).ok_or_else(|| anyhow::anyhow!("no coordinator pid"))?;
    let total = size.tasks() * 5;
    let id = submit_sleep(&c, total, 0).await?;
    wait_for("some tasks", Duration::from_secs(60), || async {
        job(&c, &id).await.filter(|j| succeeded(j) >= 20)
    })
    .await?;
    proxy.set(Mode::BlackholeDown);
    let t = Instant::now();
    settle(&c, &id, total, Duration::from_secs(180), &mut r).await?;
    r.recover_s = t.elapsed().as_secs_f64();

    // Then the bound, with far more queued than the limit: a screen whose assignments are
    // megabytes each (10,000 ligands per task, 200-character names).
    proxy.set(Mode::Pass);
    wait_for("a0 back after the stall", Duration::from_secs(60), || async {
        node(&c, l, "a0")
            .await
            .filter(|n| n.state == pb::NodeState::Ready as i32 && n.running.is_empty())
    })
    .await?;
    // a0 is drained while the screen is taken in (keepalive would cut a stalled stream before
    // a large submission is split), then stalled and undrained: its credit goes at once.
    let drain = pb::DrainNodeRequest { node_id: "a0".into() };
    c.admin(l).await.drain_node(drain.clone()).await?;
    let submitted = Instant::now();
    let big = big_assignments_job(&c, l).await?;
    let submit_s = submitted.elapsed().as_secs_f64();
    wait_for("the screen queued", Duration::from_secs(120), || async {
        big.queued_tasks(&c, l).await.ok().filter(|q| *q > 0)
    })
    .await?;
    proxy.set(Mode::BlackholeDown);
    c.admin(l).await.undrain_node(drain).await?;
    // The stalled agent's credit (2 slots) is spent, so its two assignments are in flight.
    wait_for("two assignments sent to the stalled agent", Duration::from_secs(120), || async {
        node(&c, l, "a0").await.filter(|n| n.running.len() == 2)
    })
    .await?;
    let before = rss_kib(pid).ok_or_else(|| anyhow::anyhow!("cannot read the coordinator's RSS (pid {pid})"))?;
    let queued_name_bytes = u64::from(big.queued_tasks(&c, l).await?) * BIG_BATCH * BIG_NAME_CHARS;
    // Sample through the stall until keepalive cuts the stalled stream (about 10 s).
    let mut peak = before;
    let stall = Instant::now();
    loop {
        let now = rss_kib(pid).ok_or_else(|| anyhow::anyhow!("cannot read the coordinator's RSS during the stall (pid {pid})"))?;
        peak = peak.max(now);
        let a0 = node(&c, l, "a0").await;
        if a0
            .as_ref()
            .is_some_and(|n| n.state == pb::NodeState::Lost as i32 || n.running.is_empty())
        {
            break;
        }
        ensure!(
            stall.elapsed() < Duration::from_secs(60),
            "the stalled agent was never cut off: {a0:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    r.detect_s = stall.elapsed().as_secs_f64();
    big.cancel(&c, l).await?;
    proxy.set(Mode::Pass);
    let grew = peak.saturating_sub(before);
    r.note = format!(
        "{} MB of ligand names queued (submitted in {submit_s:.1} s); coordinator RSS {before} KiB → peak {peak} KiB \
         (+{grew} KiB) until the stalled stream was cut",
        queued_name_bytes / 1_000_000
    );
    // An unbounded buffer would hold everything queued: at least the names alone.
    ensure!(
        queued_name_bytes > 2 * RSS_LIMIT_KIB * 1024,
        "the test queued only {queued_name_bytes} bytes: too little to show a bound of {RSS_LIMIT_KIB} KiB"
    );
    ensure!(grew < RSS_LIMIT_KIB, "coordinator memory grew by {grew} KiB while an agent stalled");
    Ok(r)
}

const RSS_LIMIT_KIB: u64 = 32 * 1024;
const BIG_BATCH: u64 = 10_000;
const BIG_NAME_CHARS: u64 = 200;
const BIG_LIGANDS: u64 = 400_000;

async fn node(c: &HaCluster, l: usize, id: &str) -> Option<pb::Node> {
    let nodes = c.admin(l).await.list_nodes(pb::ListNodesRequest {}).await.ok()?.into_inner().nodes;
    nodes.into_iter().find(|n| n.node_id == id)
}

struct BigJob(String);

impl BigJob {
    async fn queued_tasks(&self, c: &HaCluster, l: usize) -> Result<u32> {
        let j = c
            .jobs(l)
            .await
            .get_job(pb::GetJobRequest { job_id: self.0.clone() })
            .await?
            .into_inner();
        Ok(j.tasks.as_ref().map_or(0, |t| t.queued))
    }

    async fn cancel(&self, c: &HaCluster, l: usize) -> Result<()> {
        c.jobs(l)
            .await
            .cancel_job(pb::CancelJobRequest {
                job_id: self.0.clone(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

/// A sleep-engine screen of `BIG_LIGANDS` one-atom SMILES with 200-character names, streamed
/// in as an upload; its tasks sleep ten minutes, so none finishes while the test looks.
async fn big_assignments_job(c: &HaCluster, l: usize) -> Result<BigJob> {
    let mut library = Vec::with_capacity((BIG_LIGANDS * (BIG_NAME_CHARS + 3)) as usize);
    for i in 0..BIG_LIGANDS {
        library.extend_from_slice(format!("C L{i:0>width$}\n", width = BIG_NAME_CHARS as usize - 1).as_bytes());
    }
    let mut msgs = vec![pb::UploadInputChunk {
        part: Some(pb::upload_input_chunk::Part::Name("big.smi".into())),
    }];
    msgs.extend(library.chunks(1 << 20).map(|c| pb::UploadInputChunk {
        part: Some(pb::upload_input_chunk::Part::Data(c.to_vec())),
    }));
    let upload = c.jobs(l).await.upload_input(tokio_stream::iter(msgs)).await?.into_inner();
    let mut req = crate::sleep_funnel_request(
        0,
        BIG_BATCH as u32,
        600_000,
        vec![crate::stage("dock", |_| {}), crate::stage("keep", |s| s.keep_top = 1)],
    );
    req.name = "big-assignments".into();
    req.ligands = vec![pb::InputFile {
        name: "big.smi".into(),
        source: Some(pb::input_file::Source::UploadId(upload.upload_id)),
    }];
    Ok(BigJob(c.jobs(l).await.submit_job(req).await?.into_inner().job_id))
}
