//! Prometheus metrics of the agent (`--metrics-listen`). Handles are made once, per engine
//! and outcome, so finishing a task adds to atomics without building label strings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

use dockyard_common::artifact::{
    ArtifactStore, CodecCollector, CodecStats, CompressedStore, Compression, StoreObserver, StoreOp, TimedStore,
};
use dockyard_common::error::DockyardError;
use dockyard_common::metrics_http::{self, Render};
use dockyard_common::spec::EngineKind;
use dockyard_proto::v1 as pb;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct TaskLabels {
    engine: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct EngineLabel {
    engine: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// Outcomes as the coordinator will treat them.
const OUTCOMES: [&str; 3] = ["succeeded", "retryable_error", "permanent_error"];

#[derive(Debug)]
struct EngineHandles {
    /// Indexed like `OUTCOMES`.
    finished: [Counter; 3],
    seconds: Histogram,
}

#[derive(Debug)]
pub struct AgentMetrics {
    /// One per `EngineKind::ALL`, then one for an engine name this build does not know.
    engines: Vec<EngineHandles>,
    slots: Gauge,
    busy: Gauge,
    connects: Counter,
    artifact_seconds: [Histogram; StoreOp::ALL.len()],
    artifact_errors: [Counter; StoreOp::ALL.len()],
    /// What the compression layer wrote and the CPU it took.
    codec: Arc<CodecStats>,
}

impl Default for AgentMetrics {
    /// Registered nowhere: an agent without a listener updates them at the same small cost.
    fn default() -> Self {
        AgentMetrics::new(&mut Registry::default())
    }
}

/// The sleep engine's milliseconds to a long flexible docking run.
fn run_histogram() -> Histogram {
    Histogram::new([0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0])
}

/// 0.5 ms (a local file) to ~2 min (a large object relayed over a slow link).
fn op_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 4.0, 10))
}

impl AgentMetrics {
    pub fn new(r: &mut Registry) -> Self {
        let finished = Family::<TaskLabels, Counter>::default();
        let seconds = Family::<EngineLabel, Histogram>::new_with_constructor(run_histogram as fn() -> Histogram);
        let names = EngineKind::ALL.iter().map(|e| e.name()).chain(["other"]);
        let engines = names
            .map(|engine| EngineHandles {
                finished: OUTCOMES.map(|outcome| finished.get_or_create_owned(&TaskLabels { engine, outcome })),
                seconds: seconds.get_or_create_owned(&EngineLabel { engine }),
            })
            .collect();
        let op_seconds = Family::<OpLabel, Histogram>::new_with_constructor(op_histogram as fn() -> Histogram);
        let op_errors = Family::<OpLabel, Counter>::default();
        let m = AgentMetrics {
            engines,
            slots: Gauge::default(),
            busy: Gauge::default(),
            connects: Counter::default(),
            artifact_seconds: StoreOp::ALL.map(|op| op_seconds.get_or_create_owned(&OpLabel { op: op.name() })),
            artifact_errors: StoreOp::ALL.map(|op| op_errors.get_or_create_owned(&OpLabel { op: op.name() })),
            codec: Arc::default(),
        };
        CodecCollector::register(Arc::clone(&m.codec), r);
        r.register("tasks", "Task attempts this agent finished, by engine and outcome", finished);
        r.register_with_unit(
            "task_run",
            "Time from assignment to result on this agent (inputs, engine run, uploads)",
            Unit::Seconds,
            seconds,
        );
        r.register("slots", "Task slots this agent offers", m.slots.clone());
        r.register("slots_busy", "Task slots running a task", m.busy.clone());
        r.register(
            "stream_connects",
            "Streams to a coordinator registered (the first included; more mean reconnects)",
            m.connects.clone(),
        );
        r.register_with_unit(
            "artifact_operation",
            "Artifact-store call latency (fetching inputs, uploading outputs), by operation",
            Unit::Seconds,
            op_seconds,
        );
        r.register(
            "artifact_operation_errors",
            "Artifact-store calls that failed, by operation",
            op_errors,
        );
        m
    }

    pub fn set_slots(&self, slots: u32) {
        self.slots.set(i64::from(slots));
    }

    pub fn connected(&self) {
        self.connects.inc();
    }

    /// A task holding `slots` slots (its cores) starts running; call `task_finished` with
    /// the same slots and its result when it ends.
    pub fn task_started(&self, slots: u32) {
        self.busy.inc_by(i64::from(slots));
    }

    /// `engine`: `None` for a name this build does not know (counted as "other").
    pub fn task_finished(&self, slots: u32, engine: Option<EngineKind>, r: &pb::TaskResult, took: Duration) {
        self.busy.dec_by(i64::from(slots));
        let i = engine
            .and_then(|e| EngineKind::ALL.iter().position(|k| *k == e))
            .unwrap_or(EngineKind::ALL.len());
        let Some(h) = self.engines.get(i) else { return };
        let outcome = match &r.outcome {
            Some(pb::task_result::Outcome::Ok(_)) => 0,
            Some(pb::task_result::Outcome::Failed(f)) if !f.retryable => 2,
            // No outcome is retried by the coordinator, like a retryable failure.
            _ => 1,
        };
        if let Some(c) = h.finished.get(outcome) {
            c.inc();
        }
        h.seconds.observe(took.as_secs_f64());
    }

    /// `store`, timed into these metrics, behind the compression layer (which the timings
    /// leave out: they are the store's own latency).
    pub fn wrap_store(self: &Arc<Self>, store: Arc<dyn ArtifactStore>, mode: Compression) -> Arc<dyn ArtifactStore> {
        let timed = Arc::new(TimedStore::new(store, Arc::clone(self) as Arc<dyn StoreObserver>));
        Arc::new(CompressedStore::new(timed, mode, Arc::clone(&self.codec)))
    }
}

impl StoreObserver for AgentMetrics {
    fn observe(&self, op: StoreOp, elapsed: Duration, ok: bool) {
        if let Some(h) = self.artifact_seconds.get(op.index()) {
            h.observe(elapsed.as_secs_f64());
        }
        if !ok {
            if let Some(c) = self.artifact_errors.get(op.index()) {
                c.inc();
            }
        }
    }
}

/// Registers the agent's metrics and, with `listen`, serves them at `/metrics` until
/// `shutdown`. Returns the handles and the bound address (port 0 picks a free one).
pub async fn start(listen: Option<&str>, shutdown: CancellationToken) -> Result<(Arc<AgentMetrics>, Option<SocketAddr>), DockyardError> {
    let mut registry = Registry::with_prefix("dockyard_agent");
    let metrics = Arc::new(AgentMetrics::new(&mut registry));
    let Some(listen) = listen else {
        return Ok((metrics, None));
    };
    let listener = metrics_http::bind(listen).await?;
    let registry = Arc::new(registry);
    let render: Render = Arc::new(move || {
        let mut text = String::with_capacity(8 << 10);
        encode(&mut text, &registry)?;
        Ok(text)
    });
    let (addr, _join) = metrics_http::serve(listener, render, shutdown.cancelled_owned())?;
    Ok((metrics, Some(addr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &Registry) -> String {
        let mut s = String::new();
        encode(&mut s, r).expect("encode");
        s
    }

    fn result(outcome: Option<pb::task_result::Outcome>) -> pb::TaskResult {
        pb::TaskResult {
            outcome,
            ..Default::default()
        }
    }

    #[test]
    fn finished_tasks_are_counted_by_engine_and_outcome() {
        let mut r = Registry::with_prefix("dockyard_agent");
        let m = Arc::new(AgentMetrics::new(&mut r));
        m.set_slots(4);
        m.task_started(1);
        m.task_started(2);
        assert!(render(&r).contains("dockyard_agent_slots_busy 3"));
        let ok = Some(pb::task_result::Outcome::Ok(pb::TaskSuccess::default()));
        m.task_finished(1, Some(EngineKind::Sleep), &result(ok), Duration::from_millis(20));
        let bad = Some(pb::task_result::Outcome::Failed(pb::TaskFailure {
            retryable: false,
            reason: "bad input".into(),
        }));
        m.task_finished(2, None, &result(bad), Duration::from_secs(2));
        m.observe(StoreOp::GetToFile, Duration::from_millis(3), false);
        let text = render(&r);
        for want in [
            r#"dockyard_agent_tasks_total{engine="sleep",outcome="succeeded"} 1"#,
            r#"dockyard_agent_tasks_total{engine="other",outcome="permanent_error"} 1"#,
            r#"dockyard_agent_task_run_seconds_count{engine="sleep"} 1"#,
            "dockyard_agent_slots 4",
            "dockyard_agent_slots_busy 0",
            r#"dockyard_agent_artifact_operation_seconds_count{op="get_to_file"} 1"#,
            r#"dockyard_agent_artifact_operation_errors_total{op="get_to_file"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
