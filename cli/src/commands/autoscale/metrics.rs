//! What an operator graphs about the autoscaler, per pool: agents asked for, pending in
//! the provisioner, up, draining, and the count it aims at.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::plan::Plan;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct AgentLabels {
    pool: String,
    state: &'static str,
}

pub struct Metrics {
    pub registry: Arc<Registry>,
    agents: Family<AgentLabels, Gauge>,
    desired: Family<PoolLabel, Gauge>,
    requested: Family<PoolLabel, Counter>,
    cancelled: Family<PoolLabel, Counter>,
    errors: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let agents: Family<AgentLabels, Gauge> = Family::default();
        let desired: Family<PoolLabel, Gauge> = Family::default();
        let requested: Family<PoolLabel, Counter> = Family::default();
        let cancelled: Family<PoolLabel, Counter> = Family::default();
        let errors = Counter::default();
        let mut r = Registry::with_prefix("dockyard_autoscale");
        r.register(
            "agents",
            "Agent jobs by state: pending (queued in the provisioner), up (running, not draining), draining, leaving (GoingAway)",
            agents.clone(),
        );
        r.register("desired_agents", "Agents the last decision aimed at", desired.clone());
        r.register("requested", "Agent jobs submitted", requested.clone());
        r.register(
            "cancelled",
            "Agent jobs cancelled (pending ones, and drained agents retired)",
            cancelled.clone(),
        );
        r.register(
            "errors",
            "Ticks or actions that failed (the coordinator or the provisioner)",
            errors.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            agents,
            desired,
            requested,
            cancelled,
            errors,
        }
    }

    pub fn observe(&self, pool: &str, p: &Plan) {
        for (state, n) in [
            ("pending", p.pending),
            ("up", p.up),
            ("draining", p.draining),
            ("leaving", p.leaving),
        ] {
            self.agents
                .get_or_create(&AgentLabels {
                    pool: pool.to_string(),
                    state,
                })
                .set(i64::from(n));
        }
        self.desired
            .get_or_create(&PoolLabel { pool: pool.to_string() })
            .set(i64::from(p.desired));
    }

    pub fn requested(&self, pool: &str, n: u64) {
        self.requested.get_or_create(&PoolLabel { pool: pool.to_string() }).inc_by(n);
    }

    pub fn cancelled(&self, pool: &str) {
        self.cancelled.get_or_create(&PoolLabel { pool: pool.to_string() }).inc();
    }

    pub fn error(&self) {
        self.errors.inc();
    }

    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry)?;
        Ok(s)
    }
}
