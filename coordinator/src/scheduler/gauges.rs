//! Feeds the Prometheus gauges from the actor's own aggregates, once per tick: per-job
//! queued counts (not the queue itself, which may hold a million tasks) and per-node slots.

use super::core::Core;
use crate::metrics::GaugeSnapshot;
use crate::model::JobState;

impl Core {
    pub fn publish_gauges(&self) {
        let mut s = GaugeSnapshot::default();
        for job in self.jobs.values() {
            match job.status.state {
                JobState::Queued => s.jobs_queued += 1,
                JobState::Running => s.jobs_running += 1,
                _ => {}
            }
            let q = u64::from(job.status.tasks.queued);
            if q > 0 {
                s.queued.push((job.spec.priority, &job.spec.org, q));
                s.classes.push((job.class.engine.name(), job.class.gpus, q));
            }
        }
        for n in self.nodes.nodes.values() {
            let (total, busy) = if n.is_connected() { (n.reg.slots, n.busy_slots()) } else { (0, 0) };
            s.nodes.push((&n.reg.node, total, busy));
        }
        self.cfg.metrics.gauges.publish(&s);
    }
}
