//! The autoscaler's decision for one pool, from what the coordinator and the provisioner
//! report now: no I/O here, so every rule is unit-tested.
//!
//! Everything the decision counts comes from outside this process (the queue from the
//! leader, the agent jobs from Slurm), never from what it asked for before. A restarted
//! autoscaler, or one that lived through a coordinator failover, counts the jobs its
//! predecessor submitted and does not ask for them again. The one thing it keeps is when a
//! pool's surplus began (for the cool-down); losing it only delays a scale-down.

use std::time::{Duration, Instant};

use super::config::Pool;

/// What a pool's tasks ask for, summed over the task classes it serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    pub queued_tasks: u64,
    pub queued_slots: u64,
    pub queued_gpus: u64,
    pub queued_memory_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPhase {
    /// Waiting in the provisioner's queue: holds nothing, cancelled first.
    Pending,
    Running,
    /// Cancelled or out of time, its processes still exiting: it holds its allocation (so
    /// it counts against the maximum) but offers nothing.
    Ending,
}

/// The agent a running job started, as the coordinator lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentView {
    pub node_id: String,
    /// Drained, or leaving: takes no new task.
    pub draining: bool,
    /// Said GoingAway (SIGTERM): exits by itself once its tasks are done or handed back,
    /// so it is neither undrained nor cancelled, only waited for.
    pub leaving: bool,
    pub running_tasks: usize,
    pub busy_slots: u32,
    pub busy_gpus: u32,
    pub busy_memory_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolJob {
    pub id: String,
    pub phase: JobPhase,
    /// None until the agent has registered (or once it is gone).
    pub agent: Option<AgentView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Submit {
        count: u32,
    },
    /// A pending job: nothing runs there yet.
    Cancel {
        job: String,
    },
    /// Stop new work reaching an idle agent; it is retired once it holds none.
    Drain {
        job: String,
        node: String,
    },
    Undrain {
        job: String,
        node: String,
    },
    /// A drained agent with no task: its job is cancelled (SIGTERM, GoingAway).
    Retire {
        job: String,
        node: String,
    },
}

#[derive(Debug)]
pub struct Plan {
    pub desired: u32,
    pub pending: u32,
    /// Running jobs whose agent is up (or still starting) and not draining.
    pub up: u32,
    pub draining: u32,
    pub leaving: u32,
    pub actions: Vec<Action>,
    pub reason: String,
    pub surplus_since: Option<Instant>,
}

fn ceil_div(a: u64, b: u64) -> u64 {
    if b == 0 {
        0
    } else {
        a.div_ceil(b)
    }
}

/// Decides what `pool` needs now. `surplus_since` is the last plan's value.
pub fn plan(pool: &Pool, demand: Demand, jobs: &[PoolJob], surplus_since: Option<Instant>, cooldown: Duration, now: Instant) -> Plan {
    // A draining agent's tasks are finishing, not work that needs an agent.
    let agents = || jobs.iter().filter_map(|j| j.agent.as_ref()).filter(|a| !a.draining);
    let busy_slots: u64 = agents().map(|a| u64::from(a.busy_slots)).sum();
    let busy_gpus: u64 = agents().map(|a| u64::from(a.busy_gpus)).sum();
    let busy_memory: u64 = agents().map(|a| a.busy_memory_bytes).sum();
    let by_slots = ceil_div(busy_slots + demand.queued_slots, u64::from(pool.slots));
    let by_gpus = ceil_div(busy_gpus + demand.queued_gpus, u64::from(pool.gpus));
    let by_memory = ceil_div(busy_memory + demand.queued_memory_bytes, pool.memory_mb * 1_000_000);
    let needed = by_slots.max(by_gpus).max(by_memory);
    let desired = u32::try_from(needed).unwrap_or(u32::MAX).clamp(pool.min, pool.max);

    let pending: Vec<&PoolJob> = jobs.iter().filter(|j| j.phase == JobPhase::Pending).collect();
    let running = || jobs.iter().filter(|j| j.phase == JobPhase::Running);
    let up: Vec<&PoolJob> = running().filter(|j| !j.agent.as_ref().is_some_and(|a| a.draining)).collect();
    let draining: Vec<(&PoolJob, &AgentView)> = running()
        .filter_map(|j| j.agent.as_ref().filter(|a| a.draining && !a.leaving).map(|a| (j, a)))
        .collect();
    let leaving = running().filter(|j| j.agent.as_ref().is_some_and(|a| a.leaving)).count()
        + jobs.iter().filter(|j| j.phase == JobPhase::Ending).count();
    let active = (pending.len() + up.len()) as u32;

    let mut actions = Vec::new();
    let mut surplus = None;
    let mut wanted_back = 0usize;
    let verdict;
    if desired > active {
        // Agents already up but draining are the fastest capacity there is.
        let short = (desired - active) as usize;
        wanted_back = short.min(draining.len());
        for (j, a) in draining.iter().take(wanted_back) {
            actions.push(Action::Undrain {
                job: j.id.clone(),
                node: a.node_id.clone(),
            });
        }
        // The maximum bounds the jobs held in the provisioner, leaving agents included: an
        // allocation is spent until its agent has gone.
        let room = (pool.max as usize).saturating_sub(jobs.len());
        let count = (short - wanted_back).min(room) as u32;
        if count > 0 {
            actions.push(Action::Submit { count });
        }
        let waiting = short - wanted_back - count as usize;
        verdict = format!("scale up by {short} ({wanted_back} undrained, {count} submitted, {waiting} waiting for leaving agents to go)");
    } else if desired < active {
        let since = surplus_since.unwrap_or(now);
        surplus = Some(since);
        let waited = now.saturating_duration_since(since);
        if waited < cooldown {
            verdict = format!(
                "{} more than needed; cool-down, {:.0} s of {:.0} s waited",
                active - desired,
                waited.as_secs_f64(),
                cooldown.as_secs_f64()
            );
        } else {
            let mut excess = (active - desired) as usize;
            // Newest pending first: the oldest is closest to starting.
            for j in pending.iter().rev().take(excess) {
                actions.push(Action::Cancel { job: j.id.clone() });
            }
            let cancelled = excess.min(pending.len());
            excess -= cancelled;
            let mut drained = 0;
            for j in &up {
                if drained == excess {
                    break;
                }
                // Never an agent with work, nor one not yet registered (it may be about to
                // take some): those go when idle, at a later tick.
                if let Some(a) = j.agent.as_ref().filter(|a| a.running_tasks == 0 && a.busy_slots == 0) {
                    actions.push(Action::Drain {
                        job: j.id.clone(),
                        node: a.node_id.clone(),
                    });
                    drained += 1;
                }
            }
            verdict = format!(
                "scale down by {} ({cancelled} pending cancelled, {drained} idle drained, {} busy or starting kept)",
                active - desired,
                excess - drained
            );
        }
    } else {
        verdict = "steady".to_string();
    }
    for (j, a) in draining.iter().skip(wanted_back) {
        if a.running_tasks == 0 {
            actions.push(Action::Retire {
                job: j.id.clone(),
                node: a.node_id.clone(),
            });
        }
    }
    let reason = format!(
        "queued {} task(s) ({} slot(s)), busy {busy_slots} slot(s); need {needed} agent(s), bounds {}..{} -> {desired}; \
         {} pending, {} up, {} draining, {leaving} leaving: {verdict}",
        demand.queued_tasks,
        demand.queued_slots,
        pool.min,
        pool.max,
        pending.len(),
        up.len(),
        draining.len()
    );
    Plan {
        desired,
        pending: pending.len() as u32,
        up: up.len() as u32,
        draining: draining.len() as u32,
        leaving: leaving as u32,
        actions,
        reason,
        surplus_since: surplus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(min: u32, max: u32) -> Pool {
        Pool {
            name: "cpu".into(),
            engines: vec!["vina".into()],
            slots: 4,
            memory_mb: 0,
            gpus: 0,
            min,
            max,
            script: "a.sbatch".into(),
            sbatch_args: vec![],
            engine_kinds: vec![],
        }
    }

    fn agent(node: &str, draining: bool, tasks: usize) -> Option<AgentView> {
        Some(AgentView {
            node_id: node.into(),
            draining,
            leaving: false,
            running_tasks: tasks,
            busy_slots: tasks as u32,
            busy_gpus: 0,
            busy_memory_bytes: 0,
        })
    }

    fn job(id: &str, phase: JobPhase, agent: Option<AgentView>) -> PoolJob {
        PoolJob {
            id: id.into(),
            phase,
            agent,
        }
    }

    fn queued(tasks: u64) -> Demand {
        Demand {
            queued_tasks: tasks,
            queued_slots: tasks,
            ..Demand::default()
        }
    }

    const COOL: Duration = Duration::from_secs(60);

    #[test]
    fn a_queue_asks_for_enough_agents_up_to_the_maximum() {
        let now = Instant::now();
        let p = plan(&pool(0, 3), queued(9), &[], None, COOL, now);
        assert_eq!(p.desired, 3);
        assert_eq!(p.actions, vec![Action::Submit { count: 3 }], "{}", p.reason);
        let p = plan(&pool(0, 10), queued(9), &[], None, COOL, now);
        assert_eq!(p.actions, vec![Action::Submit { count: 3 }], "9 slots / 4 per agent: {}", p.reason);
        let p = plan(&pool(2, 10), Demand::default(), &[], None, COOL, now);
        assert_eq!(p.actions, vec![Action::Submit { count: 2 }], "the minimum: {}", p.reason);
    }

    #[test]
    fn pending_and_starting_jobs_count_so_nothing_is_asked_for_twice() {
        let now = Instant::now();
        let jobs = [job("1", JobPhase::Pending, None), job("2", JobPhase::Running, None)];
        let p = plan(&pool(0, 10), queued(8), &jobs, None, COOL, now);
        assert_eq!(p.actions, vec![], "{}", p.reason);
        let p = plan(&pool(0, 10), queued(12), &jobs, None, COOL, now);
        assert_eq!(p.actions, vec![Action::Submit { count: 1 }], "{}", p.reason);
    }

    #[test]
    fn busy_agents_count_as_demand_and_are_never_drained() {
        let now = Instant::now();
        let jobs = [
            job("1", JobPhase::Running, agent("a", false, 4)),
            job("2", JobPhase::Running, agent("b", false, 1)),
        ];
        // 5 busy slots need 2 agents even with nothing queued.
        let p = plan(&pool(0, 10), Demand::default(), &jobs, None, COOL, now);
        assert_eq!((p.desired, p.actions.len()), (2, 0), "{}", p.reason);
        let jobs = [
            job("1", JobPhase::Running, agent("a", false, 1)),
            job("2", JobPhase::Running, agent("b", false, 1)),
            job("3", JobPhase::Running, agent("c", false, 0)),
        ];
        let p = plan(&pool(0, 10), Demand::default(), &jobs, Some(now - COOL), COOL, now);
        assert_eq!(p.desired, 1);
        assert_eq!(
            p.actions,
            vec![Action::Drain {
                job: "3".into(),
                node: "c".into()
            }],
            "only the idle agent goes, the busy surplus waits: {}",
            p.reason
        );
    }

    #[test]
    fn a_surplus_waits_out_the_cool_down_then_cancels_pending_before_draining() {
        let t0 = Instant::now();
        let jobs = [
            job("1", JobPhase::Running, agent("a", false, 0)),
            job("2", JobPhase::Pending, None),
            job("3", JobPhase::Pending, None),
        ];
        let p = plan(&pool(0, 10), Demand::default(), &jobs, None, COOL, t0);
        assert_eq!(p.actions, vec![], "{}", p.reason);
        assert_eq!(p.surplus_since, Some(t0));
        let p = plan(&pool(0, 10), Demand::default(), &jobs, p.surplus_since, COOL, t0 + COOL / 2);
        assert_eq!(p.actions, vec![], "{}", p.reason);
        let p = plan(&pool(0, 10), Demand::default(), &jobs, p.surplus_since, COOL, t0 + COOL);
        assert_eq!(
            p.actions,
            vec![
                Action::Cancel { job: "3".into() },
                Action::Cancel { job: "2".into() },
                Action::Drain {
                    job: "1".into(),
                    node: "a".into()
                }
            ],
            "{}",
            p.reason
        );
        // Demand back before the cool-down ran out: the clock restarts.
        let p = plan(&pool(0, 10), queued(12), &jobs, Some(t0), COOL, t0 + COOL);
        assert_eq!(p.surplus_since, None);
    }

    #[test]
    fn drained_agents_are_retired_when_idle_or_taken_back_when_needed() {
        let now = Instant::now();
        let jobs = [
            job("1", JobPhase::Running, agent("a", true, 0)),
            job("2", JobPhase::Running, agent("b", true, 2)),
        ];
        let p = plan(&pool(0, 10), Demand::default(), &jobs, None, COOL, now);
        assert_eq!(
            p.actions,
            vec![Action::Retire {
                job: "1".into(),
                node: "a".into()
            }],
            "the one with tasks finishes them first: {}",
            p.reason
        );
        let p = plan(&pool(0, 10), queued(4), &jobs, None, COOL, now);
        assert_eq!(
            p.actions,
            vec![Action::Undrain {
                job: "1".into(),
                node: "a".into()
            }],
            "one agent's worth queued: the idle drained one comes back, the busy one keeps draining: {}",
            p.reason
        );
    }

    #[test]
    fn leaving_agents_hold_their_place_under_the_maximum() {
        let now = Instant::now();
        let leaving = agent("b", true, 2).map(|a| AgentView { leaving: true, ..a });
        let jobs = [
            job("1", JobPhase::Running, agent("a", false, 2)),
            job("2", JobPhase::Running, leaving),
        ];
        // One up, one leaving with tasks: a maximum of 2 has no room until it has gone.
        let p = plan(&pool(0, 2), queued(8), &jobs, None, COOL, now);
        assert_eq!(p.actions, vec![], "{}", p.reason);
        let p = plan(&pool(0, 3), queued(8), &jobs, None, COOL, now);
        assert_eq!(p.actions, vec![Action::Submit { count: 1 }], "{}", p.reason);
        // A job Slurm is still ending holds its place too.
        let jobs = [job("1", JobPhase::Running, agent("a", false, 2)), job("2", JobPhase::Ending, None)];
        let p = plan(&pool(0, 2), queued(8), &jobs, None, COOL, now);
        assert_eq!((p.actions.len(), p.leaving), (0, 1), "{}", p.reason);
    }

    #[test]
    fn gpus_and_memory_size_the_pool_too() {
        let now = Instant::now();
        let mut gpu = pool(0, 10);
        gpu.gpus = 2;
        gpu.memory_mb = 1000;
        let d = Demand {
            queued_tasks: 5,
            queued_slots: 5,
            queued_gpus: 5,
            queued_memory_bytes: 1_000_000_000,
        };
        let p = plan(&gpu, d, &[], None, COOL, now);
        assert_eq!(p.desired, 3, "5 GPUs at 2 per agent: {}", p.reason);
        let d = Demand {
            queued_memory_bytes: 3_500_000_000,
            ..d
        };
        let p = plan(&gpu, d, &[], None, COOL, now);
        assert_eq!(p.desired, 4, "3.5 GB at 1 GB per agent: {}", p.reason);
    }
}
