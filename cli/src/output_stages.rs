//! A funnel's stages for humans and scripts: the report's funnel table, the one-line
//! progress `watch` and `top` show, and the JSON form.

use dockyard_proto::v1 as pb;

use crate::output::job_state;

fn started(s: &pb::StageProgress) -> bool {
    !s.job_id.is_empty()
}

/// What a stage passed on: a count once chosen, `N so far` while the next stage is fed
/// as it runs, `n/a` before (or for the last stage).
fn survivors(s: &pb::StageProgress) -> String {
    if s.survivors_chosen {
        s.survivors.to_string()
    } else if s.survivors > 0 {
        format!("{}+", s.survivors)
    } else {
        "n/a".into()
    }
}

fn state(s: &pb::StageProgress) -> &'static str {
    if started(s) {
        job_state(s.state)
    } else {
        "waiting"
    }
}

pub fn stage_json(s: &pb::StageProgress) -> serde_json::Value {
    let t = s.tasks.unwrap_or_default();
    let on = started(s);
    serde_json::json!({
        "stage": s.stage,
        "name": s.name,
        "engine": s.engine,
        "state": state(s),
        "job_id": s.job_id,
        "keep": s.keep,
        "rank_by": s.rank_by,
        "tasks": {"total": t.total, "succeeded": t.succeeded, "failed": t.failed, "cancelled": t.cancelled, "queued": t.queued, "running": t.running},
        "ligands_in": if on { serde_json::json!(s.ligands_in) } else { serde_json::Value::Null },
        "ligands_docked": if on { serde_json::json!(s.ligands_docked) } else { serde_json::Value::Null },
        "ligands_failed": if on { serde_json::json!(s.ligands_failed) } else { serde_json::Value::Null },
        "survivors": if s.survivors_chosen || s.survivors > 0 { serde_json::json!(s.survivors) } else { serde_json::Value::Null },
        "survivors_final": s.survivors_chosen,
        "streaming": s.streaming,
        "cpu_seconds": if on { serde_json::json!(s.cpu_seconds) } else { serde_json::Value::Null },
        "best_score": if s.ligands_docked > 0 { serde_json::json!(s.best_score) } else { serde_json::Value::Null },
    })
}

/// The funnel as a table: ligands into and out of each stage, failures and CPU by stage.
pub fn funnel_table(stages: &[pb::StageProgress]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<12}  {:<8}  {:<14}  {:<9}  {:>7}  {:>7}  {:>6}  {:>7}  {:>10}  {:>8}",
        "STAGE", "NAME", "ENGINE", "KEEP", "STATE", "IN", "DOCKED", "FAILED", "OUT", "CPU_S", "BEST"
    );
    for s in stages {
        let on = started(s);
        let cell = |v: String| if on { v } else { "n/a".to_string() };
        let _ = writeln!(
            out,
            "{:>5}  {:<12}  {:<8}  {:<14}  {:<9}  {:>7}  {:>7}  {:>6}  {:>7}  {:>10}  {:>8}",
            s.stage,
            s.name,
            s.engine,
            if s.keep.is_empty() { "all" } else { s.keep.as_str() },
            state(s),
            cell(s.ligands_in.to_string()),
            cell(s.ligands_docked.to_string()),
            cell(s.ligands_failed.to_string()),
            survivors(s),
            cell(format!("{:.1}", s.cpu_seconds)),
            if s.ligands_docked > 0 {
                format!("{:.2}", s.best_score)
            } else {
                "n/a".into()
            },
        );
    }
    out
}

/// One line for a progress bar: `prescreen 40/40 → 4 · redock 1/4 · rescore waiting`.
pub fn progress_line(stages: &[pb::StageProgress]) -> String {
    stages
        .iter()
        .map(|s| {
            if !started(s) {
                return format!("{} waiting", s.name);
            }
            let done = s.ligands_docked + s.ligands_failed;
            if s.survivors_chosen {
                format!("{} {done}/{} → {}", s.name, s.ligands_in, s.survivors)
            } else if s.survivors > 0 {
                format!("{} {done}/{} → {} so far", s.name, s.ligands_in, s.survivors)
            } else {
                format!("{} {done}/{}", s.name, s.ligands_in)
            }
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The stage a funnel is on, for `top`: `2/3 redock 1/4`; `-` for a one-stage job.
pub fn current(stages: &[pb::StageProgress]) -> String {
    match stages.iter().rev().find(|s| started(s)) {
        Some(s) => format!(
            "{}/{} {} {}/{}",
            s.stage,
            stages.len(),
            s.name,
            s.ligands_docked + s.ligands_failed,
            s.ligands_in
        ),
        None => "-".into(),
    }
}

/// Ligands done and to do over every stage started so far (for a progress bar).
pub fn progress(stages: &[pb::StageProgress]) -> (u64, u64) {
    stages.iter().filter(|s| started(s)).fold((0, 0), |(d, t), s| {
        (d + u64::from(s.ligands_docked + s.ligands_failed), t + u64::from(s.ligands_in))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages() -> Vec<pb::StageProgress> {
        vec![
            pb::StageProgress {
                stage: 1,
                name: "pre".into(),
                engine: "vina".into(),
                state: pb::JobState::Succeeded as i32,
                job_id: "a".into(),
                ligands_in: 40,
                ligands_docked: 39,
                ligands_failed: 1,
                survivors: 4,
                survivors_chosen: true,
                cpu_seconds: 120.0,
                best_score: -9.1,
                ..Default::default()
            },
            pb::StageProgress {
                stage: 2,
                name: "redock".into(),
                engine: "vina".into(),
                state: pb::JobState::Running as i32,
                job_id: "b".into(),
                ligands_in: 4,
                ligands_docked: 1,
                best_score: -8.2,
                keep: "keep=10%".into(),
                ..Default::default()
            },
            pb::StageProgress {
                stage: 3,
                name: "rescore".into(),
                engine: "smina".into(),
                keep: "keep=2".into(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn the_funnel_shows_what_went_in_and_out_and_n_a_for_what_is_not_known() {
        let t = funnel_table(&stages());
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[1],
            ["1", "pre", "vina", "all", "succeeded", "40", "39", "1", "4", "120.0", "-9.10"]
        );
        assert_eq!(
            rows[2],
            ["2", "redock", "vina", "keep=10%", "running", "4", "1", "0", "n/a", "0.0", "-8.20"]
        );
        assert_eq!(
            rows[3],
            ["3", "rescore", "smina", "keep=2", "waiting", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]
        );
        assert_eq!(progress_line(&stages()), "pre 40/40 → 4 · redock 1/4 · rescore waiting");
        assert_eq!(progress(&stages()), (41, 44));
        assert_eq!(current(&stages()), "2/3 redock 1/4");
        assert_eq!(current(&[]), "-");
        let j = stage_json(&stages()[2]);
        assert!(j["ligands_in"].is_null() && j["survivors"].is_null(), "{j}");
    }
}
