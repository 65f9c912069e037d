//! Prometheus metrics of the coordinator (`--metrics-listen`). One `CoordinatorMetrics`,
//! shared in an `Arc`, holds typed handles made once at start-up: the scheduler's hot path
//! only adds to atomics, and label values with a closed set (failure reasons, store
//! operations) are resolved to their handles here, never per task.

mod artifacts;
pub mod backup;
mod gauges;
mod serve;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

pub use self::artifacts::ArtifactMetrics;
pub use self::gauges::{GaugeSnapshot, Gauges};
pub use self::serve::serve;

/// Why a task attempt ended without a result that counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The engine failed and the agent said a retry may help.
    EngineRetryable,
    /// The engine failed for good (bad input): the task fails at once.
    EnginePermanent,
    /// A result without an outcome.
    NoOutcome,
    /// The agent's stream closed or its lease expired while the task ran.
    NodeLost,
    /// The agent reconnected without the task.
    NodeReconnected,
    /// Recorded as running before a coordinator restart; its agent never reported it.
    Orphaned,
    /// Assigned to a connected agent whose heartbeats stopped listing it.
    NotOnAgent,
}

impl AttemptFailure {
    const ALL: [AttemptFailure; 7] = [
        AttemptFailure::EngineRetryable,
        AttemptFailure::EnginePermanent,
        AttemptFailure::NoOutcome,
        AttemptFailure::NodeLost,
        AttemptFailure::NodeReconnected,
        AttemptFailure::Orphaned,
        AttemptFailure::NotOnAgent,
    ];

    fn label(self) -> &'static str {
        match self {
            AttemptFailure::EngineRetryable => "engine_retryable",
            AttemptFailure::EnginePermanent => "engine_permanent",
            AttemptFailure::NoOutcome => "no_outcome",
            AttemptFailure::NodeLost => "node_lost",
            AttemptFailure::NodeReconnected => "node_reconnected",
            AttemptFailure::Orphaned => "orphaned",
            AttemptFailure::NotOnAgent => "not_on_agent",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug)]
pub struct CoordinatorMetrics {
    dispatched: Counter,
    succeeded: Counter,
    failed: Counter,
    retried: Counter,
    duplicates: Counter,
    /// Indexed like `AttemptFailure::ALL`.
    attempt_failures: [Counter; AttemptFailure::ALL.len()],
    connects_first: Counter,
    connects_again: Counter,
    queued_seconds: Histogram,
    running_seconds: Histogram,
    sled_write_seconds: Histogram,
    pub artifacts: Arc<ArtifactMetrics>,
    pub gauges: Gauges,
    pub backup: backup::BackupMetrics,
}

impl Default for CoordinatorMetrics {
    /// Handles registered nowhere: for schedulers started without a listener (tests, the
    /// one-process `dockyard run`), where updating them costs the same few atomics.
    fn default() -> Self {
        CoordinatorMetrics::new(&mut Registry::default())
    }
}

impl CoordinatorMetrics {
    /// Makes every handle and registers it in `r` (names get the registry's prefix).
    pub fn new(r: &mut Registry) -> Self {
        // A family hands out clones sharing one atomic: the pre-made handle and the exported
        // series are the same counter, and every reason shows (at 0) from the first scrape.
        let failures = Family::<ReasonLabel, Counter>::default();
        let attempt_failures = AttemptFailure::ALL.map(|why| failures.get_or_create_owned(&ReasonLabel { reason: why.label() }));
        let connects = Family::<KindLabel, Counter>::default();
        let connects_first = connects.get_or_create_owned(&KindLabel { kind: "first" });
        let connects_again = connects.get_or_create_owned(&KindLabel { kind: "reconnect" });
        let m = CoordinatorMetrics {
            dispatched: Counter::default(),
            succeeded: Counter::default(),
            failed: Counter::default(),
            retried: Counter::default(),
            duplicates: Counter::default(),
            attempt_failures,
            connects_first,
            connects_again,
            // Waits range from a hot queue's milliseconds to hours behind a large screen.
            queued_seconds: Histogram::new([0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 14400.0]),
            // The sleep engine's milliseconds to a long flexible docking run.
            running_seconds: Histogram::new([0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0]),
            // 100 µs (page cache) to ~3 s (a stalled disk).
            sled_write_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            artifacts: Arc::new(ArtifactMetrics::new(r)),
            gauges: Gauges::new(r),
            backup: backup::BackupMetrics::new(r),
        };
        r.register("tasks_dispatched", "Task attempts assigned to agents", m.dispatched.clone());
        r.register("tasks_succeeded", "Tasks whose result was committed", m.succeeded.clone());
        r.register(
            "tasks_failed",
            "Tasks failed for good (permanent error or out of attempts)",
            m.failed.clone(),
        );
        r.register(
            "task_retries",
            "Failed attempts put back in the queue for another attempt",
            m.retried.clone(),
        );
        r.register(
            "duplicate_results",
            "Late or repeated results dropped (their attempt was already settled)",
            m.duplicates.clone(),
        );
        r.register(
            "task_attempt_failures",
            "Task attempts that ended without a result that counts, by reason",
            failures,
        );
        r.register(
            "agent_stream_connects",
            "Agent streams opened: kind=first for a node new to this coordinator, kind=reconnect for one it has seen",
            connects,
        );
        r.register_with_unit(
            "task_queued",
            "Time from enqueue (submission or retry) to assignment",
            Unit::Seconds,
            m.queued_seconds.clone(),
        );
        r.register_with_unit(
            "task_running",
            "Time from assignment to the agent's result",
            Unit::Seconds,
            m.running_seconds.clone(),
        );
        r.register_with_unit(
            "sled_write",
            "Durable write of one scheduler group commit (sled apply and flush)",
            Unit::Seconds,
            m.sled_write_seconds.clone(),
        );
        m
    }

    pub fn dispatched(&self, n: u64) {
        if n > 0 {
            self.dispatched.inc_by(n);
        }
    }

    pub fn succeeded(&self) {
        self.succeeded.inc();
    }

    pub fn failed(&self) {
        self.failed.inc();
    }

    pub fn retried(&self) {
        self.retried.inc();
    }

    pub fn duplicate(&self) {
        self.duplicates.inc();
    }

    pub fn attempt_failed(&self, why: AttemptFailure) {
        // Variants are declared in `ALL`'s order, so the discriminant is the index.
        if let Some(c) = self.attempt_failures.get(why as usize) {
            c.inc();
        }
    }

    pub fn agent_connected(&self, seen_before: bool) {
        if seen_before {
            self.connects_again.inc();
        } else {
            self.connects_first.inc();
        }
    }

    pub fn queued_for(&self, d: Duration) {
        self.queued_seconds.observe(d.as_secs_f64());
    }

    pub fn ran_for(&self, d: Duration) {
        self.running_seconds.observe(d.as_secs_f64());
    }

    pub fn sled_write(&self, d: Duration) {
        self.sled_write_seconds.observe(d.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn handles_feed_the_exported_series() {
        for (i, why) in AttemptFailure::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i, "{why:?} is out of ALL's order");
        }
        let mut r = Registry::with_prefix("dockyard");
        let m = CoordinatorMetrics::new(&mut r);
        m.dispatched(3);
        m.attempt_failed(AttemptFailure::NodeLost);
        m.agent_connected(false);
        m.agent_connected(true);
        m.queued_for(Duration::from_millis(2));
        m.ran_for(Duration::from_secs(1));
        m.sled_write(Duration::from_micros(300));
        let mut text = String::new();
        encode(&mut text, &r).expect("encode");
        for want in [
            "dockyard_tasks_dispatched_total 3",
            r#"dockyard_task_attempt_failures_total{reason="node_lost"} 1"#,
            r#"dockyard_task_attempt_failures_total{reason="orphaned"} 0"#,
            r#"dockyard_agent_stream_connects_total{kind="reconnect"} 1"#,
            "dockyard_task_queued_seconds_count 1",
            "dockyard_task_running_seconds_count 1",
            "dockyard_sled_write_seconds_count 1",
            r#"dockyard_artifact_operation_seconds_count{op="put"} 0"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
