//! The JSON the console's page reads: protobuf messages as plain objects, states as words,
//! a best score only once something is docked (never a default 0).

use serde_json::{json, Value};

use dockyard_proto::v1 as pb;

pub use dockyard_common::state_names::{is_final, job_state, node_state};

fn counts(t: Option<&pb::TaskCounts>) -> Value {
    let t = t.cloned().unwrap_or_default();
    json!({"total": t.total, "queued": t.queued, "running": t.running, "succeeded": t.succeeded, "failed": t.failed, "cancelled": t.cancelled})
}

pub fn job(j: &pb::Job) -> Value {
    json!({
        "job_id": j.job_id,
        "name": j.name,
        "org": j.org,
        "engine": j.engine,
        "state": job_state(j.state),
        "final": is_final(j.state),
        "priority": j.priority,
        "tasks": counts(j.tasks.as_ref()),
        "ligands_total": j.ligands_total,
        "ligands_docked": j.ligands_docked,
        "ligands_failed": j.ligands_failed,
        "ligands_skipped": j.ligands_skipped,
        "best_score": (j.ligands_docked > 0).then_some(j.best_score),
        "cpu_seconds": j.cpu_seconds,
        "created_at_ms": j.created_at_ms,
        "finished_at_ms": (j.finished_at_ms > 0).then_some(j.finished_at_ms),
        "error": j.error,
        "unschedulable_reason": j.unschedulable_reason,
        "test_only": j.test_only,
        "stages": j.stages.iter().map(stage).collect::<Vec<_>>(),
    })
}

fn stage(s: &pb::StageProgress) -> Value {
    json!({
        "stage": s.stage,
        "name": s.name,
        "engine": s.engine,
        "state": job_state(s.state),
        "job_id": s.job_id,
        "tasks": counts(s.tasks.as_ref()),
        "ligands_in": s.ligands_in,
        "ligands_docked": s.ligands_docked,
        "ligands_failed": s.ligands_failed,
        "survivors": s.survivors,
        "survivors_chosen": s.survivors_chosen,
        "best_score": (s.ligands_docked > 0).then_some(s.best_score),
        "keep": s.keep,
        "rank_by": s.rank_by,
        "streaming": s.streaming,
    })
}

pub fn result(rank: usize, r: &pb::LigandResult) -> Value {
    json!({
        "rank": rank,
        "ligand": r.ligand,
        "index": r.ligand_index,
        "smiles": r.smiles,
        "score": r.score,
        "poses": r.poses.len(),
        "fields": r.fields,
        "cached": r.cached,
        "has_sdf": !r.sdf_key.is_empty(),
    })
}

pub fn node(n: &pb::Node) -> Value {
    let cap = n.capacity.clone().unwrap_or_default();
    json!({
        "node_id": n.node_id,
        "state": node_state(n.state),
        "hostname": n.hostname,
        "slots": cap.cpu_slots,
        "free_slots": n.free_slots,
        "memory_bytes": cap.memory_bytes,
        "free_memory_bytes": n.free_memory_bytes,
        "gpus": cap.gpus.iter().map(|g| json!({"index": g.index, "model": g.model, "memory_bytes": g.memory_bytes})).collect::<Vec<_>>(),
        "engines": n.engines.iter().map(|e| json!({"name": e.name, "version": e.version})).collect::<Vec<_>>(),
        "tools": n.tools.iter().map(|e| json!({"name": e.name, "version": e.version})).collect::<Vec<_>>(),
        "running": n.running.iter().map(|t| t.task_id.clone()).collect::<Vec<_>>(),
        "labels": n.labels,
        "agent_version": n.agent_version,
        "last_seen_ms": n.last_seen_ms,
    })
}

pub fn queue(q: &pb::QueueStatsResponse) -> Value {
    json!({
        "queued": q.queued,
        "delayed": q.delayed,
        "running": q.running,
        "by_priority": q.by_priority.iter().map(|p| json!({"priority": p.priority, "queued": p.queued})).collect::<Vec<_>>(),
        "by_org": q.by_org.iter().map(|o| json!({"org": o.org, "queued": o.queued})).collect::<Vec<_>>(),
        "dispatched_total": q.dispatched_total,
        "results_committed_total": q.results_committed_total,
        "requeued_total": q.requeued_total,
    })
}

pub fn report(r: &pb::JobReport) -> Value {
    json!({
        "job": r.job.as_ref().map(job),
        "cpu_seconds": r.cpu_seconds,
        "failures": r.failures.iter().map(|f| json!({"kind": f.kind, "reason": f.reason, "count": f.count, "examples": f.examples, "stage": f.stage})).collect::<Vec<_>>(),
        "skipped": r.skipped.iter().map(|s| json!({"file": s.file, "record": s.record, "name": s.name, "line": s.line, "reason": s.reason})).collect::<Vec<_>>(),
    })
}

/// Counts of `scores` in `bins` equal bins from the lowest to the highest.
pub fn histogram(scores: &[f64], bins: usize) -> Value {
    let finite: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    let (Some(lo), Some(hi)) = (finite.iter().copied().reduce(f64::min), finite.iter().copied().reduce(f64::max)) else {
        return json!({"count": 0, "bins": []});
    };
    let bins = bins.clamp(1, 200);
    let width = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let mut counts = vec![0u64; bins];
    for s in &finite {
        let i = (((s - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    json!({
        "count": finite.len(),
        "min": lo,
        "max": hi,
        "bins": counts.iter().enumerate().map(|(i, c)| json!({"from": lo + i as f64 * width, "to": lo + (i + 1) as f64 * width, "count": c})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_score_once() {
        let h = histogram(&[-9.0, -8.0, -8.0, -7.0, f64::NAN], 2);
        assert_eq!(h["count"], 4);
        let c: Vec<u64> = h["bins"]
            .as_array()
            .expect("bins")
            .iter()
            .map(|b| b["count"].as_u64().expect("n"))
            .collect();
        assert_eq!(c, vec![1, 3]);
        assert_eq!(histogram(&[], 10)["count"], 0);
    }

    #[test]
    fn nothing_docked_has_no_best_score() {
        let j = job(&pb::Job {
            best_score: 0.0,
            ..Default::default()
        });
        assert!(j["best_score"].is_null());
    }
}
