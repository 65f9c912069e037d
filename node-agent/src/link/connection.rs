//! The agent's life: probe, dial the coordinator, register, then serve the stream —
//! assignments in, heartbeats and results out — reconnecting with backoff when it breaks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use dockyard_common::artifact;
use dockyard_common::cluster::NodeRecord;
use dockyard_common::error::DockyardError;
use dockyard_common::spec::EngineKind;
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::agent_service_client::AgentServiceClient;
use dockyard_proto::PROTOCOL_VERSION;

use crate::artifacts::relay::CoordinatorRelayStore;
use crate::artifacts::swap::SwapStore;
use crate::capacity;
use crate::config::AgentConfig;
use crate::engine::probe_engines;
use crate::link::dial::{AgentChannel, Dialer};
use crate::link::leader::LeaderFinder;
use crate::link::membership;
use crate::metrics::{self, AgentMetrics};
use crate::prepare::meeko::MeekoPreparer;
use crate::prepare::Preparer;
use crate::runner::{run_task, RunnerContext};

/// Results sent within this window are replayed after a reconnect: the stream may have
/// died before they arrived. The coordinator drops the ones it already has.
const REPLAY_WINDOW: Duration = Duration::from_secs(30);
const MAX_RESULTS_PER_MESSAGE: usize = 512;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// After SIGTERM, how long to keep trying to deliver results to an unreachable coordinator.
const GOING_AWAY_DELIVERY: Duration = Duration::from_secs(15);

type RunKey = (String, u32);

struct Running {
    cancel: CancellationToken,
}

/// State that outlives a single stream.
struct AgentState {
    cfg: AgentConfig,
    register: pb::Register,
    ctx: Arc<RunnerContext>,
    running: HashMap<RunKey, Running>,
    results_tx: mpsc::Sender<pb::TaskResult>,
    results_rx: mpsc::Receiver<pb::TaskResult>,
    /// Results not yet written to a live stream.
    unsent: VecDeque<pb::TaskResult>,
    /// Results written recently, kept for replay after a reconnect.
    recent: VecDeque<(Instant, pb::TaskResult)>,
    max_epoch: u64,
    going_away: bool,
    drain_deadline: Option<tokio::time::Instant>,
    /// Without --artifacts: the relay, replaced by the leader's s3:// store once known.
    swap: Option<Arc<SwapStore>>,
    relay: Arc<CoordinatorRelayStore>,
    finder: LeaderFinder,
    leader_changes: Option<watch::Receiver<String>>,
    metrics: Arc<AgentMetrics>,
}

/// Runs the agent until `shutdown` is cancelled and its tasks are finished or handed back.
pub async fn run(mut cfg: AgentConfig, shutdown: CancellationToken) -> Result<(), DockyardError> {
    tokio::fs::create_dir_all(&cfg.work_dir)
        .await
        .map_err(|e| DockyardError::invalid("work_dir", format!("{}: {e}", cfg.work_dir.display())))?;
    // Engines and obabel run inside per-task folders; every path handed to them must be
    // absolute or it would resolve against the wrong folder.
    cfg.work_dir = tokio::fs::canonicalize(&cfg.work_dir)
        .await
        .map_err(|e| DockyardError::invalid("work_dir", format!("{}: {e}", cfg.work_dir.display())))?;
    // The listener outlives SIGTERM (a draining agent stays observable) and stops however
    // `run` returns.
    let metrics_stop = CancellationToken::new();
    let _metrics_stop = metrics_stop.clone().drop_guard();
    let (metrics, _) = metrics::start(cfg.metrics_listen.as_deref(), metrics_stop).await?;
    metrics.set_slots(cfg.slots);
    let paths = [
        (EngineKind::Vina, &cfg.vina_path),
        (EngineKind::Smina, &cfg.smina_path),
        (EngineKind::Gnina, &cfg.gnina_path),
        (EngineKind::Rustina, &cfg.rustina_python),
    ];
    let engines = probe_engines(&crate::engine::EngineProbe {
        paths: paths.into_iter().filter_map(|(k, p)| Some((k, p.clone()?))).collect(),
        enable_sleep: cfg.enable_sleep_engine,
    })
    .await;
    if engines.is_empty() {
        return Err(DockyardError::FailedPrecondition(
            "no docking engine found: install vina (Debian: apt-get install autodock-vina) or pass --vina PATH".into(),
        ));
    }
    let mut gpus = if cfg.probe_gpus { capacity::gpus().await } else { Vec::new() };
    if let Some(keep) = &cfg.gpu_filter {
        gpus.retain(|g| keep.contains(&g.index));
    }
    if cfg.fake_gpus > 0 {
        warn!(
            count = cfg.fake_gpus,
            "advertising FAKE GPUs (--fake-gpus test double); tasks given them run without a device"
        );
        gpus = (0..cfg.fake_gpus)
            .map(|index| pb::Gpu {
                index,
                model: "fake-gpu (test double)".into(),
                memory_bytes: 16 << 30,
            })
            .collect();
    }
    let coordinators = cfg.coordinators();
    if coordinators.is_empty() && cfg.etcd.is_none() {
        return Err(DockyardError::invalid("coordinator", "give --coordinator URL or --etcd URLS"));
    }
    let first = coordinators.first().cloned().unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let dialer = Dialer::from_config(&cfg)?;
    let relay = Arc::new(CoordinatorRelayStore::new(dialer.channel(&first)?, "relay+coordinator".into()));
    let (store, swap): (Arc<dyn artifact::ArtifactStore>, _) = match &cfg.artifacts {
        Some(uri) => (artifact::open(uri).await?, None),
        None => {
            let swap = Arc::new(SwapStore::new(relay.clone()));
            (swap.clone(), Some(swap))
        }
    };
    let store = metrics.wrap_store(store, cfg.artifact_compression);
    let finder = LeaderFinder::new(coordinators, cfg.etcd.clone(), dialer.clone());
    let leader_changes = finder.watch(shutdown.clone());
    // Optional: without obabel the node still docks PDBQT inputs, and says so by
    // registering no tools, so the coordinator sends it nothing that needs converting.
    let preparer = Preparer::probe(None, cfg.work_dir.join("prep-cache")).await.map(Arc::new);
    match &preparer {
        Some(p) => info!(tool = "obabel", version = %p.version(), "input preparation available"),
        None => info!("input preparation not available (install openbabel to accept SDF/MOL2/PDB/SMILES inputs for vina)"),
    }
    // Optional too: without a Python that imports meeko the node takes no `--prepare meeko` work.
    let meeko = MeekoPreparer::probe(cfg.prepare_python.as_deref(), cfg.work_dir.join("prep-cache"))
        .await
        .map(Arc::new);
    match &meeko {
        Some(m) => info!(
            tool = "meeko",
            version = %m.versions().meeko,
            rdkit = %m.versions().rdkit,
            molscrub = m.versions().molscrub.as_deref().unwrap_or("not importable"),
            "meeko preparation available"
        ),
        None => info!("meeko preparation not available (pip install meeko rdkit molscrub for --prepare-python)"),
    }
    let mut tools: Vec<pb::EngineInfo> = preparer.iter().map(|p| p.info()).collect();
    tools.extend(meeko.iter().flat_map(|m| m.tools()));
    let engine_infos: Vec<pb::EngineInfo> = engines
        .iter()
        .map(|e| {
            let d = e.descriptor();
            pb::EngineInfo {
                name: d.name().to_string(),
                version: d.version.clone(),
                test_only: d.test_only(),
            }
        })
        .collect();
    info!(
        node = %cfg.node_id,
        slots = cfg.slots,
        memory_mb = cfg.memory_bytes / 1_000_000,
        gpus = gpus.len(),
        engines = ?engine_infos.iter().map(|e| format!("{} {}", e.name, e.version)).collect::<Vec<_>>(),
        store = %store.uri(),
        "agent starting"
    );
    let register = pb::Register {
        protocol_version: PROTOCOL_VERSION,
        node_id: cfg.node_id.to_string(),
        capacity: Some(pb::Capacity {
            cpu_slots: cfg.slots,
            memory_bytes: cfg.memory_bytes,
            gpus,
        }),
        engines: engine_infos,
        labels: cfg.labels.clone().into_iter().collect(),
        running: Vec::new(),
        hostname: capacity::hostname(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        tools,
    };
    let (results_tx, results_rx) = mpsc::channel(4096);
    let membership_stop = CancellationToken::new();
    let ctx = Arc::new(
        RunnerContext::new(engines, store, cfg.work_dir.clone())
            .with_preparer(preparer)
            .with_meeko(meeko),
    );
    if let Some(etcd) = &cfg.etcd {
        let record = NodeRecord {
            node_id: cfg.node_id.to_string(),
            hostname: register.hostname.clone(),
            agent_version: register.agent_version.clone(),
            slots: cfg.slots,
            memory_bytes: cfg.memory_bytes,
            gpus: register.capacity.as_ref().map_or(0, |c| c.gpus.len() as u32),
            engines: register.engines.iter().map(|e| format!("{} {}", e.name, e.version)).collect(),
            address: register.hostname.clone(),
            started_at_ms: dockyard_common::time::now_ms(),
        };
        // Deregistration happens only after the agent is done (see below), not at SIGTERM.
        tokio::spawn(membership::keep_registered(
            etcd.clone(),
            record,
            cfg.etcd_ttl,
            membership_stop.clone(),
        ));
    }
    let mut st = AgentState {
        cfg,
        register,
        ctx,
        running: HashMap::new(),
        results_tx,
        results_rx,
        unsent: VecDeque::new(),
        recent: VecDeque::new(),
        max_epoch: 0,
        going_away: false,
        drain_deadline: None,
        swap,
        relay,
        finder,
        leader_changes,
        metrics,
    };
    let mut backoff = Duration::from_millis(200);
    let mut gave_notice: Option<Instant> = None;
    loop {
        if st.going_away && st.running.is_empty() && st.unsent.is_empty() {
            break;
        }
        let attempt = match st.finder.find().await {
            Ok(url) => {
                let channel = st.finder.dialer().channel(&url)?;
                st.relay.retarget(channel.clone());
                session(&mut st, channel, &url, &shutdown).await
            }
            Err(e) => Err(e),
        };
        match attempt {
            Ok(SessionEnd::Finished) => break,
            Ok(SessionEnd::Reconnect(why)) => {
                warn!(reason = %why, "stream to coordinator ended; reconnecting");
                backoff = Duration::from_millis(200);
            }
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach coordinator");
            }
        }
        if shutdown.is_cancelled() && !st.going_away {
            st.going_away = true;
        }
        if st.going_away && st.running.is_empty() {
            let since = *gave_notice.get_or_insert_with(Instant::now);
            if st.unsent.is_empty() || since.elapsed() > GOING_AWAY_DELIVERY {
                if !st.unsent.is_empty() {
                    warn!(
                        results = st.unsent.len(),
                        "coordinator unreachable; exiting with undelivered results (their tasks will be re-run)"
                    );
                }
                break;
            }
        }
        let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
        let mut leader_changes = st.leader_changes.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
            _ = shutdown.cancelled(), if !st.going_away => { st.going_away = true; }
            // A newly elected leader is worth trying at once, whatever the backoff.
            Ok(()) = async { match leader_changes.as_mut() { Some(rx) => rx.changed().await, None => std::future::pending().await } } => {
                backoff = Duration::from_millis(100);
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    for r in st.running.values() {
        r.cancel.cancel();
    }
    membership_stop.cancel();
    info!("agent stopped");
    Ok(())
}

enum SessionEnd {
    Finished,
    Reconnect(String),
}

fn running_list(st: &AgentState) -> Vec<pb::RunningTask> {
    let mut v: Vec<pb::RunningTask> = st
        .running
        .keys()
        .map(|(t, a)| pb::RunningTask {
            task_id: t.clone(),
            attempt: *a,
        })
        .collect();
    // Finished attempts whose result may not have arrived count as running until replayed.
    for (_, r) in &st.recent {
        v.push(pb::RunningTask {
            task_id: r.task_id.clone(),
            attempt: r.attempt,
        });
    }
    for r in &st.unsent {
        v.push(pb::RunningTask {
            task_id: r.task_id.clone(),
            attempt: r.attempt,
        });
    }
    v
}

async fn session(st: &mut AgentState, channel: AgentChannel, url: &str, shutdown: &CancellationToken) -> Result<SessionEnd, DockyardError> {
    let mut client = AgentServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let (out_tx, out_rx) = mpsc::channel::<pb::AgentMessage>(256);
    let mut reg = st.register.clone();
    reg.running = running_list(st);
    let _ = out_tx.try_send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Register(reg)),
    });
    let mut inbound = client
        .connect(ReceiverStream::new(out_rx))
        .await
        .map_err(|e| DockyardError::Unavailable(format!("{}: {}", e.code(), e.message())))?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(15), inbound.message())
        .await
        .map_err(|_| DockyardError::Unavailable("no Registered reply within 15 s".into()))?
        .map_err(|e| DockyardError::Unavailable(format!("{}: {}", e.code(), e.message())))?;
    let (epoch, hb, store_uri) = match first.and_then(|m| m.kind) {
        Some(pb::coordinator_message::Kind::Registered(r)) => (
            r.epoch,
            Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(100))),
            r.artifacts,
        ),
        other => return Err(DockyardError::Unavailable(format!("expected Registered, got {other:?}"))),
    };
    if store_uri.starts_with("s3://") {
        if let Some(swap) = st.swap.take() {
            match artifact::open(&store_uri).await {
                Ok(s3) => {
                    info!(store = %s3.uri(), "using the coordinator's object store directly");
                    swap.replace(s3);
                }
                Err(e) => {
                    warn!(error = %e, "cannot open the coordinator's object store; relaying through the coordinator");
                    st.swap = Some(swap);
                }
            }
        }
    }
    if epoch < st.max_epoch {
        return Err(DockyardError::Unavailable(format!(
            "coordinator epoch {epoch} is older than {} already seen; refusing it",
            st.max_epoch
        )));
    }
    st.max_epoch = epoch;
    info!(epoch, node = %st.cfg.node_id, coordinator = %url, "registered with coordinator");
    st.metrics.connected();
    let mut leader_changes = st.leader_changes.clone();
    if let Some(rx) = leader_changes.as_mut() {
        rx.mark_unchanged();
    }
    // Replay what may have been lost with the previous stream.
    let replay: Vec<pb::TaskResult> = st.recent.drain(..).map(|(_, r)| r).chain(st.unsent.drain(..)).collect();
    if !replay.is_empty() {
        debug!(count = replay.len(), "replaying recent results");
        for chunk in replay.chunks(MAX_RESULTS_PER_MESSAGE) {
            if !send_results_wait(st, &out_tx, chunk.to_vec()).await {
                return Ok(SessionEnd::Reconnect("coordinator is not reading results".into()));
            }
        }
    }
    if st.going_away {
        let _ = out_tx.try_send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::GoingAway(pb::GoingAway {
                reason: "shutting down".into(),
            })),
        });
    }
    let mut heartbeat = tokio::time::interval(hb);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if st.going_away && st.running.is_empty() && st.unsent.is_empty() {
            // Let the last results flush before closing the stream.
            drop(out_tx);
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(SessionEnd::Finished);
        }
        let deadline = st.drain_deadline;
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(m)) => on_message(st, m, epoch),
                Ok(None) => return Ok(SessionEnd::Reconnect("coordinator closed the stream".into())),
                Err(e) => return Ok(SessionEnd::Reconnect(format!("{}: {}", e.code(), e.message()))),
            },
            Some(r) = st.results_rx.recv() => {
                let mut batch = vec![r];
                while batch.len() < MAX_RESULTS_PER_MESSAGE {
                    match st.results_rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                for r in &batch {
                    st.running.remove(&(r.task_id.clone(), r.attempt));
                }
                // Wait for room rather than drop: the coordinator never blocks on us, so this
                // only stalls when the stream itself is stuck, and then we reconnect.
                if !send_results_wait(st, &out_tx, batch).await {
                    return Ok(SessionEnd::Reconnect("coordinator is not reading results".into()));
                }
            }
            Ok(()) = async { match leader_changes.as_mut() { Some(rx) => rx.changed().await, None => std::future::pending().await } } => {
                let leader = leader_changes.as_ref().map(|rx| rx.borrow().clone()).unwrap_or_default();
                if !leader.is_empty() && leader != url {
                    return Ok(SessionEnd::Reconnect(format!("a new leader was elected: {leader}")));
                }
            }
            _ = heartbeat.tick() => {
                let hbm = pb::Heartbeat { running: st.running.keys().map(|(t, a)| pb::RunningTask { task_id: t.clone(), attempt: *a }).collect() };
                if out_tx.try_send(pb::AgentMessage { kind: Some(pb::agent_message::Kind::Heartbeat(hbm)) }).is_err() {
                    return Ok(SessionEnd::Reconnect("outbound stream full".into()));
                }
                let cutoff = Instant::now() - REPLAY_WINDOW;
                while st.recent.front().is_some_and(|(t, _)| *t < cutoff) {
                    st.recent.pop_front();
                }
            }
            _ = shutdown.cancelled(), if !st.going_away => {
                st.going_away = true;
                st.drain_deadline = Some(tokio::time::Instant::now() + st.cfg.shutdown_grace);
                info!(running = st.running.len(), grace_s = st.cfg.shutdown_grace.as_secs(), "SIGTERM: finishing running tasks, taking no new ones");
                let _ = out_tx.try_send(pb::AgentMessage { kind: Some(pb::agent_message::Kind::GoingAway(pb::GoingAway { reason: "shutting down".into() })) });
            }
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } else { std::future::pending().await } } => {
                st.drain_deadline = None;
                warn!(running = st.running.len(), "grace period over: handing back unfinished tasks");
                for r in st.running.values() {
                    r.cancel.cancel();
                }
            }
        }
    }
}

async fn send_results_wait(st: &mut AgentState, out: &mpsc::Sender<pb::AgentMessage>, batch: Vec<pb::TaskResult>) -> bool {
    let msg = pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Results(pb::TaskResults { results: batch.clone() })),
    };
    match tokio::time::timeout(SEND_TIMEOUT, out.send(msg)).await {
        Ok(Ok(())) => {
            let now = Instant::now();
            st.recent.extend(batch.into_iter().map(|r| (now, r)));
            true
        }
        _ => {
            st.unsent.extend(batch);
            false
        }
    }
}

fn on_message(st: &mut AgentState, m: pb::CoordinatorMessage, epoch: u64) {
    match m.kind {
        Some(pb::coordinator_message::Kind::Assign(a)) => {
            for task in a.tasks {
                if task.epoch < epoch {
                    warn!(task = %task.task_id, task_epoch = task.epoch, epoch, "assignment from an older epoch refused");
                    continue;
                }
                let key = (task.task_id.clone(), task.attempt);
                if st.running.contains_key(&key) {
                    continue;
                }
                if st.going_away {
                    // Hand it straight back: this node is leaving.
                    let r = pb::TaskResult {
                        task_id: task.task_id.clone(),
                        attempt: task.attempt,
                        epoch: task.epoch,
                        outcome: Some(pb::task_result::Outcome::Failed(pb::TaskFailure {
                            retryable: true,
                            reason: "agent is shutting down".into(),
                        })),
                        cpu_seconds: 0.0,
                        wall_seconds: 0.0,
                    };
                    let _ = st.results_tx.try_send(r);
                    st.running.insert(
                        key,
                        Running {
                            cancel: CancellationToken::new(),
                        },
                    );
                    continue;
                }
                let cancel = CancellationToken::new();
                st.running.insert(key, Running { cancel: cancel.clone() });
                let ctx = st.ctx.clone();
                let tx = st.results_tx.clone();
                let metrics = Arc::clone(&st.metrics);
                let engine = EngineKind::parse(&task.engine).ok();
                // The task's cores: the slots it holds.
                let slots = task.cpu_slots.max(1);
                metrics.task_started(slots);
                tokio::spawn(async move {
                    let started = Instant::now();
                    let r = run_task(ctx, task, cancel).await;
                    metrics.task_finished(slots, engine, &r, started.elapsed());
                    let _ = tx.send(r).await;
                });
            }
        }
        Some(pb::coordinator_message::Kind::Cancel(c)) => {
            if let Some(r) = st.running.get(&(c.task_id.clone(), c.attempt)) {
                info!(task = %c.task_id, attempt = c.attempt, reason = %c.reason, "cancelling task");
                r.cancel.cancel();
            }
            st.recent.retain(|(_, r)| !(r.task_id == c.task_id && r.attempt == c.attempt));
        }
        Some(pb::coordinator_message::Kind::Drain(d)) => {
            info!(draining = d.draining, "drain state from coordinator");
        }
        Some(pb::coordinator_message::Kind::Registered(_)) | None => {}
    }
}
