//! Connected (and recently lost) agents with their free resources. Resources are typed
//! like NativeLink's: slots (a task holds as many as its cores), memory and GPUs are
//! "minimum" properties counted down on dispatch and given back on completion; the engine
//! is an "exact" property.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use tokio::sync::mpsc;

use dockyard_common::ids::{Attempt, NodeId, TaskId};
use dockyard_common::spec::{EngineKind, PrepTools};
use dockyard_common::telemetry::trace::AttemptSpan;
use dockyard_proto::v1 as pb;

use super::queue::TaskClass;

pub type Outbound = mpsc::Sender<Result<pb::CoordinatorMessage, tonic::Status>>;

#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub index: u32,
    pub model: String,
    pub memory_bytes: u64,
}

/// What an agent said about itself when it registered.
#[derive(Clone, Debug)]
pub struct Registration {
    pub node: NodeId,
    pub slots: u32,
    pub memory_bytes: u64,
    pub gpus: Vec<GpuInfo>,
    pub engines: Vec<pb::EngineInfo>,
    /// Preparation tools (obabel, meeko, molscrub) with their versions.
    pub tools: Vec<pb::EngineInfo>,
    pub labels: BTreeMap<String, String>,
    pub hostname: String,
    pub agent_version: String,
    pub running: Vec<(TaskId, Attempt)>,
}

#[derive(Debug)]
pub struct Slot {
    pub attempt: Attempt,
    /// Agent slots (cores) the attempt holds.
    pub cpus: u32,
    pub memory_bytes: u64,
    pub gpus: Vec<u32>,
    /// Cancelled by the coordinator: the slot stays taken until the agent confirms.
    pub cancelled: bool,
    /// When the slot was taken (assigned, or reclaimed after a restart): the start of the
    /// running-time metric.
    pub taken_at: Instant,
    /// The attempt's trace span when traces are exported; dropping the slot ends it.
    pub span: Option<AttemptSpan>,
    /// Since when the agent's heartbeats leave this attempt out although it was assigned
    /// well before them; `None` while they list it.
    pub unlisted_since: Option<Instant>,
}

pub struct NodeRt {
    pub reg: Registration,
    pub engines: HashSet<EngineKind>,
    /// Identifies the current stream; events from an older stream of the same node are stale.
    pub conn: u64,
    pub outbound: Option<Outbound>,
    /// Drained by an operator: no new tasks.
    pub draining: bool,
    /// The agent said GoingAway: no new tasks until it reconnects.
    pub going_away: bool,
    pub running: HashMap<TaskId, Slot>,
    /// The cores `running` holds, kept beside it: dispatch asks for it at every match, and
    /// summing a node's slots there cost the dispatch benchmark a seventh of its rate.
    busy_cpus: u32,
    pub free_memory: u64,
    pub free_gpus: Vec<u32>,
    pub last_seen: Instant,
    pub last_seen_ms: i64,
    pub connected_at_ms: i64,
    /// When the agent's latest heartbeat arrived (none yet on this stream).
    pub last_heartbeat: Option<Instant>,
}

impl NodeRt {
    pub fn new(reg: Registration, conn: u64, outbound: Outbound, now_ms: i64) -> Self {
        let engines = reg.engines.iter().filter_map(|e| EngineKind::parse(&e.name).ok()).collect();
        NodeRt {
            free_memory: reg.memory_bytes,
            free_gpus: reg.gpus.iter().map(|g| g.index).collect(),
            engines,
            reg,
            conn,
            outbound: Some(outbound),
            draining: false,
            going_away: false,
            running: HashMap::new(),
            busy_cpus: 0,
            last_seen: Instant::now(),
            last_seen_ms: now_ms,
            connected_at_ms: now_ms,
            last_heartbeat: None,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.outbound.is_some()
    }

    pub fn accepts_work(&self) -> bool {
        self.is_connected() && !self.draining && !self.going_away && self.free_slots() > 0
    }

    pub fn free_slots(&self) -> u32 {
        self.reg.slots.saturating_sub(self.busy_slots())
    }

    /// Slots held by running attempts: each holds its task's cores.
    pub fn busy_slots(&self) -> u32 {
        self.busy_cpus
    }

    /// Whether the node has every preparation tool in `needed`.
    pub fn can_prepare(&self, needed: &PrepTools) -> bool {
        needed.met_by(self.reg.tools.iter().map(|t| t.name.as_str()))
    }

    /// The version this node reports for preparation tool `name`.
    pub fn tool_version(&self, name: &str) -> Option<&str> {
        self.reg.tools.iter().find(|t| t.name == name).map(|t| t.version.as_str())
    }

    /// Could this node run the class right now?
    pub fn fits_now(&self, c: &TaskClass) -> bool {
        self.engines.contains(&c.engine)
            && self.can_prepare(&c.prep)
            && self.free_slots() >= c.cpus.max(1)
            && self.free_memory >= c.memory_bytes
            && self.free_gpus.len() as u32 >= c.gpus
    }

    /// Could this node ever run the class (with nothing else running)?
    pub fn fits_ever(&self, c: &TaskClass) -> bool {
        self.engines.contains(&c.engine)
            && self.can_prepare(&c.prep)
            && self.reg.slots >= c.cpus.max(1)
            && self.reg.memory_bytes >= c.memory_bytes
            && self.reg.gpus.len() as u32 >= c.gpus
    }

    pub fn take(&mut self, task: TaskId, attempt: Attempt, c: &TaskClass) -> Vec<u32> {
        self.free_memory = self.free_memory.saturating_sub(c.memory_bytes);
        let n = (c.gpus as usize).min(self.free_gpus.len());
        let gpus: Vec<u32> = self.free_gpus.drain(..n).collect();
        let cpus = c.cpus.max(1);
        self.busy_cpus += cpus;
        let replaced = self.running.insert(
            task,
            Slot {
                attempt,
                cpus,
                memory_bytes: c.memory_bytes,
                gpus: gpus.clone(),
                cancelled: false,
                taken_at: Instant::now(),
                span: None,
                unlisted_since: None,
            },
        );
        if let Some(old) = replaced {
            self.busy_cpus = self.busy_cpus.saturating_sub(old.cpus);
        }
        gpus
    }

    pub fn release(&mut self, task: &TaskId) -> Option<Slot> {
        let slot = self.running.remove(task)?;
        self.busy_cpus = self.busy_cpus.saturating_sub(slot.cpus);
        self.free_memory = (self.free_memory + slot.memory_bytes).min(self.reg.memory_bytes);
        self.free_gpus.extend(slot.gpus.iter().copied());
        self.free_gpus.sort_unstable();
        Some(slot)
    }

    /// Sends without waiting: an agent that stops reading must not stall the scheduler.
    /// Returns false when the stream is full or gone, so the caller can evict the node.
    pub fn send(&self, msg: pb::CoordinatorMessage) -> bool {
        match &self.outbound {
            Some(tx) => tx.try_send(Ok(msg)).is_ok(),
            None => false,
        }
    }

    pub fn view(&self) -> pb::Node {
        let state = if !self.is_connected() {
            pb::NodeState::Lost
        } else if self.draining || self.going_away {
            pb::NodeState::Draining
        } else {
            pb::NodeState::Ready
        };
        let mut running: Vec<pb::RunningTask> = self
            .running
            .iter()
            .map(|(t, s)| pb::RunningTask {
                task_id: t.to_string(),
                attempt: s.attempt,
            })
            .collect();
        running.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        pb::Node {
            node_id: self.reg.node.to_string(),
            state: state as i32,
            capacity: Some(pb::Capacity {
                cpu_slots: self.reg.slots,
                memory_bytes: self.reg.memory_bytes,
                gpus: self
                    .reg
                    .gpus
                    .iter()
                    .map(|g| pb::Gpu {
                        index: g.index,
                        model: g.model.clone(),
                        memory_bytes: g.memory_bytes,
                    })
                    .collect(),
            }),
            free_slots: if self.is_connected() { self.free_slots() } else { 0 },
            free_memory_bytes: self.free_memory,
            engines: self.reg.engines.clone(),
            tools: self.reg.tools.clone(),
            running,
            labels: self.reg.labels.clone().into_iter().collect(),
            hostname: self.reg.hostname.clone(),
            agent_version: self.reg.agent_version.clone(),
            last_seen_ms: self.last_seen_ms,
            connected_at_ms: self.connected_at_ms,
            going_away: self.going_away,
        }
    }
}

#[derive(Default)]
pub struct NodeTable {
    pub nodes: BTreeMap<NodeId, NodeRt>,
    /// Operator drains, persisted so they survive a coordinator restart.
    pub drained: HashSet<NodeId>,
}

impl NodeTable {
    pub fn connected(&self) -> impl Iterator<Item = &NodeRt> {
        self.nodes.values().filter(|n| n.is_connected())
    }

    /// Why no connected node could ever run `c`, or None if one could.
    pub fn unschedulable_reason(&self, c: &TaskClass) -> Option<String> {
        let mut connected = self.connected().peekable();
        if connected.peek().is_none() {
            return Some(format!("no agent is connected (needs engine '{}')", c.engine.name()));
        }
        if self.connected().any(|n| n.fits_ever(c)) {
            return None;
        }
        if !self.connected().any(|n| n.engines.contains(&c.engine)) {
            return Some(format!("no registered node offers engine '{}'", c.engine.name()));
        }
        if c.prep.any() && !self.connected().any(|n| n.engines.contains(&c.engine) && n.can_prepare(&c.prep)) {
            let tools = c.prep.names();
            return Some(format!(
                "no node with engine '{}' can prepare non-PDBQT inputs (needs {} on an agent: {})",
                c.engine.name(),
                tools.join(" and "),
                install_hint(&c.prep)
            ));
        }
        if c.gpus > 0
            && !self
                .connected()
                .any(|n| n.engines.contains(&c.engine) && n.reg.gpus.len() as u32 >= c.gpus)
        {
            return Some(format!("no node with engine '{}' has {} GPU(s)", c.engine.name(), c.gpus));
        }
        if !self
            .connected()
            .any(|n| n.engines.contains(&c.engine) && n.reg.slots >= c.cpus.max(1))
        {
            return Some(format!(
                "no node with engine '{}' has {} CPU slots for one task (--cpus-per-task)",
                c.engine.name(),
                c.cpus
            ));
        }
        Some(format!(
            "no node with engine '{}' has {} MB of memory for one task",
            c.engine.name(),
            c.memory_bytes / 1_000_000
        ))
    }
}

/// What to install for the preparation tools in `p`.
fn install_hint(p: &PrepTools) -> String {
    let mut hints = Vec::new();
    if p.obabel {
        hints.push("install openbabel");
    }
    if p.meeko || p.molscrub {
        hints.push("pip install meeko rdkit molscrub for the agent's --prepare-python");
    }
    hints.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockyard_common::spec::EngineKind;

    fn node(tools: &[&str], gpus: u32) -> NodeRt {
        let reg = Registration {
            node: NodeId::parse("n").expect("id"),
            slots: 2,
            memory_bytes: 8 << 30,
            gpus: (0..gpus)
                .map(|index| GpuInfo {
                    index,
                    model: "g".into(),
                    memory_bytes: 1,
                })
                .collect(),
            engines: vec![pb::EngineInfo {
                name: "vina".into(),
                version: "1.2.3".into(),
                test_only: false,
            }],
            tools: tools
                .iter()
                .map(|t| pb::EngineInfo {
                    name: (*t).into(),
                    version: "3.1.1".into(),
                    test_only: false,
                })
                .collect(),
            labels: BTreeMap::new(),
            hostname: "h".into(),
            agent_version: "t".into(),
            running: Vec::new(),
        };
        let (tx, _rx) = mpsc::channel(1);
        NodeRt::new(reg, 1, tx, 0)
    }

    fn class(needs_prep: bool, gpus: u32, memory_bytes: u64) -> TaskClass {
        let prep = PrepTools {
            obabel: needs_prep,
            ..PrepTools::NONE
        };
        TaskClass {
            engine: EngineKind::Vina,
            gpus,
            cpus: 1,
            memory_bytes,
            prep,
        }
    }

    fn meeko_class(protonate: bool) -> TaskClass {
        TaskClass {
            prep: PrepTools {
                meeko: true,
                molscrub: protonate,
                ..PrepTools::NONE
            },
            ..class(false, 0, 0)
        }
    }

    #[test]
    fn preparation_gpus_and_memory_are_matched() {
        let plain = node(&[], 0);
        let prep = node(&["obabel"], 0);
        assert!(plain.fits_now(&class(false, 0, 1 << 30)));
        assert!(!plain.fits_ever(&class(true, 0, 1 << 30)), "needs obabel");
        assert!(prep.fits_now(&class(true, 0, 1 << 30)));
        assert!(!prep.fits_ever(&class(false, 1, 0)), "no GPU");
        assert!(!prep.fits_ever(&class(false, 0, 16 << 30)), "not enough memory");
        let mut g = node(&[], 1);
        assert!(g.fits_now(&class(false, 1, 0)));
        let got = g.take(TaskId::parse("0123456789abcdef0123.0").expect("id"), 1, &class(false, 1, 1 << 30));
        assert_eq!(got, vec![0]);
        assert!(!g.fits_now(&class(false, 1, 0)), "its only GPU is taken");
        assert_eq!(g.free_memory, (8 << 30) - (1 << 30));
    }

    /// A task holds as many slots as its cores: a 2-slot node runs one 2-core task at a
    /// time (or two 1-core ones), never more than its slots.
    #[test]
    fn cores_are_matched_and_counted_like_memory() {
        let two_cores = TaskClass {
            cpus: 2,
            ..class(false, 0, 0)
        };
        let one_core = class(false, 0, 0);
        let mut n = node(&[], 0);
        assert!(n.fits_ever(&two_cores) && n.fits_now(&two_cores));
        n.take(TaskId::parse("0123456789abcdef0123.0").expect("id"), 1, &two_cores);
        assert_eq!((n.free_slots(), n.busy_slots()), (0, 2));
        assert!(!n.fits_now(&two_cores) && !n.fits_now(&one_core));
        assert!(!n.accepts_work());
        n.release(&TaskId::parse("0123456789abcdef0123.0").expect("id"));
        assert_eq!(n.free_slots(), 2);
        n.take(TaskId::parse("0123456789abcdef0123.1").expect("id"), 1, &one_core);
        assert!(!n.fits_now(&two_cores), "one core left");
        assert!(n.fits_now(&one_core));

        let three_cores = TaskClass {
            cpus: 3,
            ..class(false, 0, 0)
        };
        assert!(!n.fits_ever(&three_cores));
        let mut t = NodeTable::default();
        t.nodes.insert(n.reg.node.clone(), n);
        assert!(t.unschedulable_reason(&two_cores).is_none());
        let why = t.unschedulable_reason(&three_cores).expect("no node has 3 slots");
        assert!(why.contains("3 CPU slots"), "{why}");
    }

    #[test]
    fn unschedulable_reasons_say_what_is_missing() {
        let mut t = NodeTable::default();
        assert!(t.unschedulable_reason(&class(false, 0, 0)).is_some_and(|r| r.contains("no agent")));
        let n = node(&[], 0);
        t.nodes.insert(n.reg.node.clone(), n);
        assert!(t.unschedulable_reason(&class(false, 0, 0)).is_none());
        assert!(t.unschedulable_reason(&class(true, 0, 0)).is_some_and(|r| r.contains("openbabel")));
        assert!(t.unschedulable_reason(&class(false, 2, 0)).is_some_and(|r| r.contains("GPU")));
        assert!(t
            .unschedulable_reason(&TaskClass {
                engine: EngineKind::Gnina,
                gpus: 0,
                cpus: 1,
                memory_bytes: 0,
                prep: PrepTools::NONE,
            })
            .is_some_and(|r| r.contains("gnina")));
    }

    /// A meeko job goes only to nodes with meeko (and molscrub when it protonates), and
    /// waits with the missing tool named when no connected node has it.
    #[test]
    fn meeko_jobs_need_meeko_and_molscrub_when_protonating() {
        let obabel_only = node(&["obabel"], 0);
        let meeko = node(&["obabel", "meeko"], 0);
        let scrub = node(&["meeko", "molscrub"], 0);
        assert!(!obabel_only.fits_ever(&meeko_class(false)));
        assert!(meeko.fits_now(&meeko_class(false)));
        assert!(!meeko.fits_ever(&meeko_class(true)), "no molscrub");
        assert!(scrub.fits_now(&meeko_class(true)));
        assert!(!scrub.fits_ever(&class(true, 0, 0)), "no obabel");
        assert_eq!(meeko.tool_version("meeko"), Some("3.1.1"));
        assert_eq!(meeko.tool_version("molscrub"), None);

        let mut t = NodeTable::default();
        t.nodes.insert(obabel_only.reg.node.clone(), obabel_only);
        let why = t.unschedulable_reason(&meeko_class(true)).expect("nobody has meeko");
        assert!(why.contains("meeko and molscrub") && why.contains("--prepare-python"), "{why}");
        assert!(t.unschedulable_reason(&class(true, 0, 0)).is_none());
    }
}
