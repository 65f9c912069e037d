//! From snapshots to what a frame shows: throughput, ETAs, progress bars and the rows of
//! each table. Pure functions, shared by the live view and the `--once` text.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use dockyard_proto::v1 as pb;

use super::fetch::Snapshot;
use crate::output;

/// Refresh windows throughput is averaged over: one window jumps with every batch that
/// lands; a handful smooths that without hiding a stall for long.
const WINDOWS: usize = 5;
const BAR_WIDTH: usize = 20;
/// Server-provided names are cut to this many characters so one long name cannot push
/// every other column off the screen.
const NAME_MAX: usize = 32;

/// The counters of one refresh that rates are computed from.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: std::time::Instant,
    /// The coordinator's committed-task counter; `None` without the admin role.
    pub committed: Option<u64>,
    /// Finished tasks per job shown.
    pub job_done: HashMap<String, u64>,
}

impl Sample {
    pub fn of(s: &Snapshot) -> Self {
        Sample {
            at: s.at,
            committed: s.queue.as_ref().map(|q| q.results_committed_total),
            job_done: s.jobs.iter().map(|j| (j.job_id.clone(), done(j))).collect(),
        }
    }
}

/// A rate and the span it was measured over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_s: f64,
    pub over: Duration,
}

/// The last few samples, oldest first.
#[derive(Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    pub fn push(&mut self, s: Sample) {
        if self.samples.len() > WINDOWS {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// Tasks finished per second across the cluster (or, without the admin role, across the
    /// caller's jobs shown). `None` until there are two samples.
    pub fn throughput(&self) -> Option<Rate> {
        self.rate(|prev, cur| match (prev.committed, cur.committed) {
            // A coordinator restart or failover starts the counter again from zero: the
            // negative step counts as nothing rather than as a huge negative rate.
            (Some(p), Some(c)) => c.saturating_sub(p),
            _ => cur
                .job_done
                .iter()
                .map(|(id, c)| prev.job_done.get(id).map_or(0, |p| c.saturating_sub(*p)))
                .sum(),
        })
    }

    /// Tasks of one job finished per second over the recorded windows.
    pub fn job_rate(&self, job: &str) -> Option<Rate> {
        self.rate(|prev, cur| match (prev.job_done.get(job), cur.job_done.get(job)) {
            (Some(p), Some(c)) => c.saturating_sub(*p),
            _ => 0,
        })
    }

    fn rate(&self, step: impl Fn(&Sample, &Sample) -> u64) -> Option<Rate> {
        let first = self.samples.front()?;
        let last = self.samples.back()?;
        let over = last.at.saturating_duration_since(first.at);
        if over.is_zero() {
            return None;
        }
        let n: u64 = self.samples.iter().zip(self.samples.iter().skip(1)).map(|(p, c)| step(p, c)).sum();
        Some(Rate {
            per_s: n as f64 / over.as_secs_f64(),
            over,
        })
    }
}

/// Finished tasks of a job, whatever their outcome.
pub fn done(j: &pb::Job) -> u64 {
    let t = j.tasks.unwrap_or_default();
    u64::from(t.succeeded) + u64::from(t.failed) + u64::from(t.cancelled)
}

/// `[#########-----------]  45%`; an empty bar and `-` while the total is unknown.
pub fn progress_bar(done: u64, total: u64, width: usize) -> String {
    if total == 0 {
        return format!("[{}]    -", "-".repeat(width));
    }
    let done = done.min(total);
    // Integer arithmetic so a bar is full only when every task is done.
    let filled = usize::try_from(done.saturating_mul(width as u64) / total).unwrap_or(width);
    let pct = done * 100 / total;
    format!("[{}{}] {pct:>3}%", "#".repeat(filled), "-".repeat(width - filled))
}

/// Time left at `rate`; `None` when nothing is known to be moving.
pub fn eta(remaining: u64, per_s: f64) -> Option<Duration> {
    if remaining == 0 {
        return Some(Duration::ZERO);
    }
    if !(per_s.is_finite() && per_s > 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(remaining as f64 / per_s).ok()
}

/// `45s`, `3m05s`, `2h07m`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A server-provided string made safe to print: control characters (escape sequences
/// included) become `?`, and long values are cut.
pub fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > max {
        out.pop();
        out.push('~');
    }
    out
}

/// How a row should stand out in the live view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Normal,
    Good,
    Warn,
    Bad,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<(Vec<String>, Tone)>,
    /// Shown in place of the rows when there are none.
    pub empty: String,
}

/// One screenful, independent of how it is drawn.
#[derive(Clone, Debug)]
pub struct Frame {
    pub title: String,
    /// `(label, value)` lines above the tables.
    pub summary: Vec<(&'static str, String)>,
    pub tables: Vec<Table>,
}

/// What the frame is about beyond the snapshot itself.
pub struct Context<'a> {
    pub endpoint: &'a str,
    pub interval: Duration,
    pub top: usize,
    /// Wall-clock now in Unix ms, for jobs' since-start rates (server timestamps).
    pub now_ms: i64,
    /// Why the last refresh failed, when it did (the frame then shows older data).
    pub error: Option<String>,
    pub once: bool,
}

pub fn build(s: &Snapshot, h: &History, cx: &Context<'_>) -> Frame {
    let title = if cx.once {
        format!("dockyard top  {}", clean(cx.endpoint, 200))
    } else {
        format!(
            "dockyard top  {}  every {}  (q to quit)",
            clean(cx.endpoint, 200),
            short_secs(cx.interval)
        )
    };
    let mut summary = vec![
        ("queue", queue_line(s.queue.as_ref())),
        ("throughput", throughput_line(h, s.queue.is_some())),
        ("nodes", nodes_line(s.nodes.as_deref())),
    ];
    if let Some(e) = &cx.error {
        summary.push(("error", format!("last refresh failed, showing older data: {}", clean(e, 300))));
    }
    let mut tables = Vec::new();
    if let Some(nodes) = &s.nodes {
        tables.push(nodes_table(nodes));
    }
    tables.push(jobs_table(&s.jobs, h, cx.now_ms));
    tables.push(hits_table(s, cx.top));
    Frame { title, summary, tables }
}

fn short_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

fn queue_line(q: Option<&pb::QueueStatsResponse>) -> String {
    let Some(q) = q else {
        return "n/a (needs an admin token)".into();
    };
    let by: Vec<String> = q.by_priority.iter().map(|p| format!("p{} {}", p.priority, p.queued)).collect();
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(" ({})", by.join(", "))
    };
    format!("{} queued{by}, {} delayed, {} running", q.queued, q.delayed, q.running)
}

fn throughput_line(h: &History, cluster_wide: bool) -> String {
    let scope = if cluster_wide { "" } else { " (your jobs shown)" };
    match h.throughput() {
        Some(r) => format!("{:.1} tasks/s over the last {}{scope}", r.per_s, short_secs(r.over)),
        None => "n/a (needs two refreshes)".into(),
    }
}

fn nodes_line(nodes: Option<&[pb::Node]>) -> String {
    let Some(nodes) = nodes else {
        return "n/a (needs an admin token)".into();
    };
    let count = |st: &str| nodes.iter().filter(|n| output::node_state(n.state) == st).count();
    let (busy, total) = nodes
        .iter()
        .filter(|n| output::node_state(n.state) != "lost")
        .map(slots)
        .fold((0u64, 0u64), |(b, t), (nb, nt)| (b + u64::from(nb), t + u64::from(nt)));
    format!(
        "{} ready, {} draining, {} lost; slots {busy}/{total} busy",
        count("ready"),
        count("draining"),
        count("lost")
    )
}

/// (busy, total) slots of a node.
fn slots(n: &pb::Node) -> (u32, u32) {
    let total = n.capacity.as_ref().map_or(0, |c| c.cpu_slots);
    (total.saturating_sub(n.free_slots), total)
}

fn nodes_table(nodes: &[pb::Node]) -> Table {
    let rows = nodes
        .iter()
        .map(|n| {
            let state = output::node_state(n.state);
            let (busy, total) = slots(n);
            // A lost node holds nothing; its free-slot figure is stale.
            let slots = if state == "lost" {
                format!("-/{total}")
            } else {
                format!("{busy}/{total}")
            };
            let engines: Vec<String> = n
                .engines
                .iter()
                .map(|e| format!("{}{}", clean(&e.name, 16), if e.test_only { "*" } else { "" }))
                .collect();
            let tone = match state {
                "ready" => Tone::Good,
                "draining" => Tone::Warn,
                _ => Tone::Bad,
            };
            (
                vec![clean(&n.node_id, NAME_MAX), state.to_string(), slots, engines.join(", ")],
                tone,
            )
        })
        .collect();
    Table {
        title: "NODES".into(),
        header: vec!["NODE", "STATE", "SLOTS", "ENGINES"],
        rows,
        empty: "no nodes registered".into(),
    }
}

fn jobs_table(jobs: &[pb::Job], h: &History, now_ms: i64) -> Table {
    let rows = jobs
        .iter()
        .map(|j| {
            let t = j.tasks.unwrap_or_default();
            let (d, total) = (done(j), u64::from(t.total));
            let state = output::job_state(j.state);
            let eta = if output::is_final(j.state) {
                "-".to_string()
            } else {
                job_eta(j, h, now_ms).map_or_else(|| "?".into(), short_duration)
            };
            let tone = match state {
                "succeeded" => Tone::Good,
                "partial" | "cancelled" => Tone::Warn,
                "failed" => Tone::Bad,
                _ if t.failed > 0 || !j.unschedulable_reason.is_empty() => Tone::Warn,
                _ => Tone::Normal,
            };
            (
                vec![
                    clean(&j.job_id, NAME_MAX),
                    clean(&j.name, NAME_MAX),
                    state.to_string(),
                    j.priority.to_string(),
                    progress_bar(d, total, BAR_WIDTH),
                    format!("{d}/{total}"),
                    t.failed.to_string(),
                    clean(&crate::output_stages::current(&j.stages), NAME_MAX),
                    eta,
                ],
                tone,
            )
        })
        .collect();
    Table {
        title: "JOBS".into(),
        header: vec!["JOB", "NAME", "STATE", "PRI", "PROGRESS", "DONE", "FAILED", "STAGE", "ETA"],
        rows,
        empty: "no active or recent jobs".into(),
    }
}

/// ETA from the job's rate over the recorded windows, or, before there are two samples
/// (always with `--once`), from its average rate since it was submitted.
fn job_eta(j: &pb::Job, h: &History, now_ms: i64) -> Option<Duration> {
    let t = j.tasks.unwrap_or_default();
    let remaining = u64::from(t.total).saturating_sub(done(j));
    let per_s = match h.job_rate(&j.job_id) {
        Some(r) if r.per_s > 0.0 => r.per_s,
        _ => {
            let elapsed_ms = now_ms.saturating_sub(j.created_at_ms);
            if elapsed_ms <= 0 {
                return None;
            }
            done(j) as f64 * 1000.0 / elapsed_ms as f64
        }
    };
    eta(remaining, per_s)
}

fn hits_table(s: &Snapshot, top: usize) -> Table {
    let rows = s
        .hits
        .iter()
        .enumerate()
        .map(|(i, hit)| {
            (
                vec![
                    (i + 1).to_string(),
                    format!("{:.2}", hit.score),
                    clean(&hit.ligand, NAME_MAX),
                    clean(&hit.job_id, NAME_MAX),
                ],
                Tone::Normal,
            )
        })
        .collect();
    Table {
        title: format!("BEST HITS (top {top}, kcal/mol)"),
        header: vec!["#", "SCORE", "LIGAND", "JOB"],
        rows,
        empty: "none yet (no ligand docked in the jobs shown)".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn sample(at: Instant, committed: Option<u64>, jobs: &[(&str, u64)]) -> Sample {
        Sample {
            at,
            committed,
            job_done: jobs.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn throughput_from_the_counter_over_the_windows() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.push(sample(t0, Some(100), &[]));
        assert_eq!(h.throughput(), None, "one sample has no rate");
        h.push(sample(t0 + Duration::from_secs(2), Some(110), &[]));
        h.push(sample(t0 + Duration::from_secs(4), Some(130), &[]));
        let r = h.throughput().expect("rate");
        assert_eq!(r.over, Duration::from_secs(4));
        assert!((r.per_s - 7.5).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn a_counter_reset_counts_as_nothing() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.push(sample(t0, Some(500), &[]));
        // The coordinator restarted: its counter starts again.
        h.push(sample(t0 + Duration::from_secs(1), Some(3), &[]));
        h.push(sample(t0 + Duration::from_secs(2), Some(9), &[]));
        let r = h.throughput().expect("rate");
        assert!((r.per_s - 3.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn without_the_counter_throughput_comes_from_the_jobs() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.push(sample(t0, None, &[("a", 10), ("b", 0)]));
        h.push(sample(t0 + Duration::from_secs(2), None, &[("a", 14), ("b", 2), ("new", 50)]));
        let r = h.throughput().expect("rate");
        assert!((r.per_s - 3.0).abs() < 1e-9, "a job first seen counts from its next refresh: {r:?}");
        let a = h.job_rate("a").expect("rate of a");
        assert!((a.per_s - 2.0).abs() < 1e-9, "{a:?}");
    }

    #[test]
    fn history_keeps_a_few_windows() {
        let t0 = Instant::now();
        let mut h = History::default();
        for i in 0..20u64 {
            h.push(sample(t0 + Duration::from_secs(i), Some(i * 10), &[]));
        }
        let r = h.throughput().expect("rate");
        assert_eq!(r.over, Duration::from_secs(WINDOWS as u64));
        assert!((r.per_s - 10.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn progress_bars() {
        assert_eq!(progress_bar(0, 4, 8), "[--------]   0%");
        assert_eq!(progress_bar(1, 4, 8), "[##------]  25%");
        assert_eq!(progress_bar(999, 1000, 10), "[#########-]  99%", "full only when done");
        assert_eq!(progress_bar(7, 4, 8), "[########] 100%", "more done than total is clamped");
        assert_eq!(progress_bar(0, 0, 4), "[----]    -");
    }

    #[test]
    fn eta_and_durations() {
        assert_eq!(eta(0, 0.0), Some(Duration::ZERO));
        assert_eq!(eta(10, 0.0), None);
        assert_eq!(eta(10, f64::NAN), None);
        assert_eq!(eta(10, 2.0), Some(Duration::from_secs(5)));
        assert_eq!(short_duration(Duration::from_secs(45)), "45s");
        assert_eq!(short_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(short_duration(Duration::from_secs(7620)), "2h07m");
    }

    #[test]
    fn server_strings_cannot_inject_escape_codes() {
        assert_eq!(clean("lig\x1b[2Jand", 40), "lig?[2Jand");
        assert_eq!(clean("abcdef", 4), "abc~");
        assert_eq!(clean("abcd", 4), "abcd");
    }

    #[test]
    fn eta_before_two_samples_uses_the_average_since_submission() {
        let j = pb::Job {
            job_id: "j".into(),
            state: pb::JobState::Running as i32,
            created_at_ms: 1_000,
            tasks: Some(pb::TaskCounts {
                total: 30,
                succeeded: 10,
                ..Default::default()
            }),
            ..Default::default()
        };
        // 10 tasks in 5 s: 20 left take 10 s.
        assert_eq!(job_eta(&j, &History::default(), 6_000), Some(Duration::from_secs(10)));
        assert_eq!(job_eta(&j, &History::default(), 500), None, "a clock behind the server's");
    }
}
