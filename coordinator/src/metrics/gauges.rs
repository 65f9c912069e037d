//! Gauges the scheduler refreshes on its tick from aggregates it already keeps (per-job
//! queued counts, per-node slots), never by walking tasks. Label handles are made once per
//! organisation, priority and node and reused, so a refresh allocates nothing in the
//! steady state.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use dockyard_common::ids::{NodeId, OrgId};

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct QueueLabels {
    priority: i32,
    org: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ClassLabels {
    engine: &'static str,
    gpus: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// What one refresh reports; borrowed from the scheduler's state.
#[derive(Default)]
pub struct GaugeSnapshot<'a> {
    /// (priority, organisation, tasks waiting) per active job; summed here.
    pub queued: Vec<(i32, &'a OrgId, u64)>,
    /// (engine, GPUs per task, tasks waiting) per active job; summed here.
    pub classes: Vec<(&'static str, u32, u64)>,
    /// (node, slots offered, slots busy); a lost node offers none.
    pub nodes: Vec<(&'a NodeId, u32, u32)>,
    pub jobs_queued: u64,
    pub jobs_running: u64,
}

#[derive(Debug, Default)]
struct Handles {
    /// Per organisation, per priority: the gauge and this refresh's sum.
    queue: HashMap<OrgId, HashMap<i32, (Gauge, i64)>>,
    /// Per (engine, GPUs per task): the gauge and this refresh's sum.
    classes: HashMap<(&'static str, u32), (Gauge, i64)>,
    /// Per node: slots total, slots busy, and whether this refresh saw it.
    nodes: HashMap<NodeId, (Gauge, Gauge, bool)>,
}

#[derive(Debug)]
pub struct Gauges {
    queue: Family<QueueLabels, Gauge>,
    classes: Family<ClassLabels, Gauge>,
    slots: Family<NodeLabel, Gauge>,
    busy: Family<NodeLabel, Gauge>,
    jobs_queued: Gauge,
    jobs_running: Gauge,
    /// Only the scheduler actor refreshes, a few times a second: the lock is uncontended.
    handles: Mutex<Handles>,
}

impl Gauges {
    pub fn new(r: &mut Registry) -> Self {
        let jobs = Family::<StateLabel, Gauge>::default();
        let g = Gauges {
            queue: Family::default(),
            classes: Family::default(),
            slots: Family::default(),
            busy: Family::default(),
            jobs_queued: jobs.get_or_create_owned(&StateLabel { state: "queued" }),
            jobs_running: jobs.get_or_create_owned(&StateLabel { state: "running" }),
            handles: Mutex::new(Handles::default()),
        };
        r.register(
            "queue_depth",
            "Tasks waiting to run (queued or in retry backoff), by priority and organisation",
            g.queue.clone(),
        );
        r.register(
            "queue_class_depth",
            "Tasks waiting to run, by engine and GPUs per task: what a pool of agents scales on (KEDA)",
            g.classes.clone(),
        );
        r.register(
            "node_slots",
            "Task slots a connected agent offers (0 once it is lost)",
            g.slots.clone(),
        );
        r.register("node_slots_busy", "Task slots of an agent running a task", g.busy.clone());
        r.register("jobs_active", "Unfinished jobs, by state", jobs);
        g
    }

    pub fn publish(&self, s: &GaugeSnapshot<'_>) {
        let Ok(mut guard) = self.handles.lock() else { return };
        let h = &mut *guard;
        for by_priority in h.queue.values_mut() {
            for (_, sum) in by_priority.values_mut() {
                *sum = 0;
            }
        }
        for &(priority, org, n) in &s.queued {
            if !h.queue.contains_key(org) {
                h.queue.insert(org.clone(), HashMap::new());
            }
            let Some(by_priority) = h.queue.get_mut(org) else { continue };
            let (_, sum) = by_priority.entry(priority).or_insert_with(|| {
                let labels = QueueLabels {
                    priority,
                    org: org.to_string(),
                };
                (self.queue.get_or_create_owned(&labels), 0)
            });
            *sum = sum.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
        }
        // Emptied (priority, organisation) pairs stay at 0 rather than vanish, so a
        // dashboard sees the queue drain instead of a series that stops.
        for by_priority in h.queue.values() {
            for (gauge, sum) in by_priority.values() {
                gauge.set(*sum);
            }
        }
        for (_, sum) in h.classes.values_mut() {
            *sum = 0;
        }
        for &(engine, gpus, n) in &s.classes {
            let (_, sum) = h
                .classes
                .entry((engine, gpus))
                .or_insert_with(|| (self.classes.get_or_create_owned(&ClassLabels { engine, gpus }), 0));
            *sum = sum.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (gauge, sum) in h.classes.values() {
            gauge.set(*sum);
        }
        for (_, _, seen) in h.nodes.values_mut() {
            *seen = false;
        }
        for &(node, total, busy) in &s.nodes {
            if !h.nodes.contains_key(node) {
                let label = NodeLabel { node: node.to_string() };
                let x = (self.slots.get_or_create_owned(&label), self.busy.get_or_create_owned(&label), false);
                h.nodes.insert(node.clone(), x);
            }
            let Some((t, b, seen)) = h.nodes.get_mut(node) else { continue };
            t.set(i64::from(total));
            b.set(i64::from(busy));
            *seen = true;
        }
        for (t, b, seen) in h.nodes.values() {
            if !seen {
                t.set(0);
                b.set(0);
            }
        }
        self.jobs_queued.set(i64::try_from(s.jobs_queued).unwrap_or(i64::MAX));
        self.jobs_running.set(i64::try_from(s.jobs_running).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn render(r: &Registry) -> String {
        let mut s = String::new();
        encode(&mut s, r).expect("encode");
        s
    }

    #[test]
    fn queue_depth_is_summed_per_priority_and_org_and_drains_to_zero() {
        let mut r = Registry::default();
        let g = Gauges::new(&mut r);
        let a = OrgId::parse("chem").expect("org");
        let b = OrgId::parse("bio").expect("org");
        let n = NodeId::parse("n1").expect("node");
        g.publish(&GaugeSnapshot {
            queued: vec![(5, &a, 3), (5, &a, 4), (0, &b, 2)],
            classes: vec![("vina", 0, 7), ("gnina", 1, 2), ("vina", 0, 1)],
            nodes: vec![(&n, 8, 3)],
            jobs_queued: 1,
            jobs_running: 2,
        });
        let text = render(&r);
        assert!(text.contains(r#"queue_depth{priority="5",org="chem"} 7"#), "{text}");
        assert!(text.contains(r#"queue_depth{priority="0",org="bio"} 2"#), "{text}");
        assert!(text.contains(r#"queue_class_depth{engine="vina",gpus="0"} 8"#), "{text}");
        assert!(text.contains(r#"queue_class_depth{engine="gnina",gpus="1"} 2"#), "{text}");
        assert!(text.contains(r#"node_slots{node="n1"} 8"#), "{text}");
        assert!(text.contains(r#"node_slots_busy{node="n1"} 3"#), "{text}");
        assert!(text.contains(r#"jobs_active{state="running"} 2"#), "{text}");

        g.publish(&GaugeSnapshot::default());
        let text = render(&r);
        assert!(text.contains(r#"queue_depth{priority="5",org="chem"} 0"#), "{text}");
        assert!(text.contains(r#"queue_class_depth{engine="vina",gpus="0"} 0"#), "{text}");
        assert!(text.contains(r#"node_slots{node="n1"} 0"#), "{text}");
    }
}
