//! Backups, for an operator's alert: when the last one succeeded, its size, how long it held
//! dispatch, and failures.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub struct BackupMetrics {
    last_success: Gauge<f64, AtomicU64>,
    last_bytes: Gauge,
    last_pause: Gauge<f64, AtomicU64>,
    failures: Counter,
}

impl BackupMetrics {
    pub fn new(r: &mut Registry) -> Self {
        let m = BackupMetrics::default();
        r.register_with_unit(
            "backup_last_success_timestamp",
            "Unix time of the last snapshot written whole (0: none since start)",
            Unit::Seconds,
            m.last_success.clone(),
        );
        r.register_with_unit(
            "backup_last_size",
            "Bytes of the last snapshot, all parts",
            Unit::Bytes,
            m.last_bytes.clone(),
        );
        r.register_with_unit(
            "backup_last_pause",
            "How long the last snapshot held dispatch while the scheduler's records were copied",
            Unit::Seconds,
            m.last_pause.clone(),
        );
        r.register(
            "backup_failures",
            "Snapshots that failed (each is logged with its reason)",
            m.failures.clone(),
        );
        m
    }

    pub fn succeeded(&self, at_unix_ms: u64, bytes: u64, pause_ms: f64) {
        self.last_success.set(at_unix_ms as f64 / 1000.0);
        self.last_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.last_pause.set(pause_ms / 1000.0);
    }

    pub fn failed(&self) {
        self.failures.inc();
    }
}
