//! Artifact-store latency: fed by `dockyard_common::artifact::TimedStore` around the store
//! the coordinator opens, so every reader and writer (uploads, the agent relay, results,
//! the cluster journal) is timed without touching them.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use dockyard_common::artifact::{
    ArtifactStore, CodecCollector, CodecStats, CompressedStore, Compression, StoreObserver, StoreOp, TimedStore,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// One pre-made histogram and error counter per `StoreOp`, indexed by `StoreOp::index`.
#[derive(Debug)]
pub struct ArtifactMetrics {
    seconds: [Histogram; StoreOp::ALL.len()],
    errors: [Counter; StoreOp::ALL.len()],
    codec: Arc<CodecStats>,
}

impl ArtifactMetrics {
    pub fn new(r: &mut Registry) -> Self {
        let seconds = Family::<OpLabel, Histogram>::new_with_constructor(op_histogram as fn() -> Histogram);
        let errors = Family::<OpLabel, Counter>::default();
        let m = ArtifactMetrics {
            seconds: StoreOp::ALL.map(|op| seconds.get_or_create_owned(&OpLabel { op: op.name() })),
            errors: StoreOp::ALL.map(|op| errors.get_or_create_owned(&OpLabel { op: op.name() })),
            codec: Arc::default(),
        };
        CodecCollector::register(Arc::clone(&m.codec), r);
        r.register_with_unit(
            "artifact_operation",
            "Artifact-store call latency, by operation",
            Unit::Seconds,
            seconds,
        );
        r.register(
            "artifact_operation_errors",
            "Artifact-store calls that failed, by operation",
            errors,
        );
        m
    }

    /// `store`, timed into these metrics.
    pub fn wrap(self: &Arc<Self>, store: Arc<dyn ArtifactStore>) -> Arc<dyn ArtifactStore> {
        Arc::new(TimedStore::new(store, Arc::clone(self) as Arc<dyn StoreObserver>))
    }

    /// The compression layer over a (timed) store, counted into these metrics.
    pub fn compressed(self: &Arc<Self>, store: Arc<dyn ArtifactStore>, mode: Compression) -> Arc<dyn ArtifactStore> {
        Arc::new(CompressedStore::new(store, mode, Arc::clone(&self.codec)))
    }
}

/// 0.5 ms (a local file) to ~2 min (a large object over a slow link).
fn op_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 4.0, 10))
}

impl StoreObserver for ArtifactMetrics {
    fn observe(&self, op: StoreOp, elapsed: Duration, ok: bool) {
        if let Some(h) = self.seconds.get(op.index()) {
            h.observe(elapsed.as_secs_f64());
        }
        if !ok {
            if let Some(c) = self.errors.get(op.index()) {
                c.inc();
            }
        }
    }
}
