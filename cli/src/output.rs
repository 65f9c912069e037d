//! Rendering for humans (tables) and scripts (json, csv).

use dockyard_proto::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub use dockyard_common::state_names::{is_final, job_state, node_state};

pub fn job_json(j: &pb::Job) -> serde_json::Value {
    let t = j.tasks.unwrap_or_default();
    serde_json::json!({
        "job_id": j.job_id,
        "name": j.name,
        "org": j.org,
        "engine": j.engine,
        "test_only": j.test_only,
        "state": job_state(j.state),
        "priority": j.priority,
        "tasks": {"total": t.total, "queued": t.queued, "running": t.running, "succeeded": t.succeeded, "failed": t.failed, "cancelled": t.cancelled},
        "ligands_total": j.ligands_total,
        "ligands_docked": j.ligands_docked,
        "ligands_failed": j.ligands_failed,
        "ligands_skipped": j.ligands_skipped,
        "best_score": if j.ligands_docked > 0 { serde_json::json!(j.best_score) } else { serde_json::Value::Null },
        "created_at_ms": j.created_at_ms,
        "finished_at_ms": j.finished_at_ms,
        "unschedulable_reason": j.unschedulable_reason,
        "error": j.error,
        "stages": j.stages.iter().map(crate::output_stages::stage_json).collect::<Vec<_>>(),
    })
}

pub fn print_jobs(jobs: &[pb::Job], f: Format) {
    match f {
        Format::Json => println!("{}", serde_json::Value::Array(jobs.iter().map(job_json).collect())),
        Format::Csv => {
            println!("job_id,state,engine,priority,tasks_done,tasks_total,ligands_docked,ligands_failed,best_score,name");
            for j in jobs {
                let t = j.tasks.unwrap_or_default();
                println!(
                    "{},{},{},{},{},{},{},{},{},{}",
                    j.job_id,
                    job_state(j.state),
                    j.engine,
                    j.priority,
                    t.succeeded + t.failed + t.cancelled,
                    t.total,
                    j.ligands_docked,
                    j.ligands_failed,
                    best(j),
                    csv(&j.name)
                );
            }
        }
        Format::Table => {
            println!(
                "{:<20}  {:<10}  {:<6}  {:>3}  {:>13}  {:>15}  {:>8}  NAME",
                "JOB", "STATE", "ENGINE", "PRI", "TASKS", "LIGANDS", "BEST"
            );
            for j in jobs {
                let t = j.tasks.unwrap_or_default();
                let done = t.succeeded + t.failed + t.cancelled;
                let eng = if j.test_only { format!("{}*", j.engine) } else { j.engine.clone() };
                println!(
                    "{:<20}  {:<10}  {:<6}  {:>3}  {:>13}  {:>15}  {:>8}  {}",
                    j.job_id,
                    job_state(j.state),
                    eng,
                    j.priority,
                    format!("{done}/{}", t.total),
                    format!("{}/{}", j.ligands_docked, j.ligands_total),
                    best(j),
                    j.name
                );
                if !j.unschedulable_reason.is_empty() {
                    println!("{:<20}  ! unschedulable: {}", "", j.unschedulable_reason);
                }
            }
            if jobs.iter().any(|j| j.test_only) {
                println!("* test-only sleep engine: no docking was done");
            }
        }
    }
}

/// `dockyard job`: the job's `jobs` row, then why it failed and a funnel's stages; JSON is
/// the object `jobs --format json` lists.
pub fn print_job(j: &pb::Job, f: Format) {
    match f {
        Format::Json => println!("{}", job_json(j)),
        Format::Csv => print_jobs(std::slice::from_ref(j), f),
        Format::Table => {
            print_jobs(std::slice::from_ref(j), f);
            if !j.error.is_empty() {
                println!("error: {}", j.error);
            }
            if !j.stages.is_empty() {
                print!("{}", crate::output_stages::funnel_table(&j.stages));
            }
        }
    }
}

fn best(j: &pb::Job) -> String {
    if j.ligands_docked > 0 {
        format!("{:.2}", j.best_score)
    } else {
        "-".into()
    }
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub use dockyard_common::results_export::Ranking;

impl From<Format> for dockyard_common::results_export::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => Self::Table,
            Format::Json => Self::Json,
            Format::Csv => Self::Csv,
        }
    }
}

/// A whole list at once; long exports stream through
/// [`dockyard_common::results_export::ResultsWriter`].
pub fn render_results(rows: &[pb::LigandResult], ranking: &Ranking, f: Format) -> String {
    dockyard_common::results_export::render(rows, ranking, f.into())
}

fn ranking(r: &pb::JobReport) -> Ranking {
    Ranking {
        key: r.rank_by.clone(),
        stage_columns: r.stage_columns.clone(),
    }
}

/// `dockyard report`: counts, failures grouped by reason, and the library records left out
/// at submission (`--skip-invalid`). JSON for `--output json`, a table otherwise.
pub fn render_report(r: &pb::JobReport, f: Format) -> String {
    use std::fmt::Write;
    let j = r.job.clone().unwrap_or_default();
    let mut out = String::new();
    if f == Format::Json {
        let v = serde_json::json!({
            "job": job_json(&j),
            "cpu_seconds": r.cpu_seconds,
            "failures": r.failures.iter().map(|g| serde_json::json!({"stage": g.stage, "kind": g.kind, "reason": g.reason, "count": g.count, "examples": g.examples})).collect::<Vec<_>>(),
            "skipped": r.skipped.iter().map(|s| serde_json::json!({"file": s.file, "record": s.record, "name": s.name, "line": s.line, "reason": s.reason})).collect::<Vec<_>>(),
            "rank_by": r.rank_by,
            "stages": j.stages.iter().map(crate::output_stages::stage_json).collect::<Vec<_>>(),
            "top_hits": serde_json::from_str::<serde_json::Value>(&render_results(&r.top_hits, &ranking(r), Format::Json)).unwrap_or_default(),
        });
        let _ = writeln!(out, "{v}");
        return out;
    }
    let t = j.tasks.unwrap_or_default();
    let _ = writeln!(out, "job {} ({}): {}", j.job_id, j.engine, job_state(j.state));
    let _ = writeln!(
        out,
        "  tasks:   {} total, {} succeeded, {} failed, {} cancelled, {} queued, {} running",
        t.total, t.succeeded, t.failed, t.cancelled, t.queued, t.running
    );
    let _ = writeln!(
        out,
        "  ligands: {} total, {} docked, {} failed, {} skipped",
        j.ligands_total, j.ligands_docked, j.ligands_failed, j.ligands_skipped
    );
    let _ = writeln!(out, "  engine CPU time: {:.1} s", r.cpu_seconds);
    if !j.stages.is_empty() {
        let _ = writeln!(out, "  funnel:");
        for line in crate::output_stages::funnel_table(&j.stages).lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    if r.failures.is_empty() {
        let _ = writeln!(out, "  failures: none");
    } else {
        let _ = writeln!(out, "  failures by reason:");
        for g in &r.failures {
            let stage = if g.stage.is_empty() {
                String::new()
            } else {
                format!("[{}] ", g.stage)
            };
            let _ = writeln!(
                out,
                "    {:>5} x {stage}{} {}: e.g. {}",
                g.count,
                g.kind,
                g.reason,
                g.examples.join(", ")
            );
        }
    }
    if !r.skipped.is_empty() {
        // The coordinator keeps the first records it skipped; the job counts them all.
        let listed = r.skipped.len() as u32;
        if j.ligands_skipped > listed {
            let _ = writeln!(
                out,
                "  skipped at submission ({} records, first {listed} listed):",
                j.ligands_skipped
            );
        } else {
            let _ = writeln!(out, "  skipped at submission:");
        }
        for s in &r.skipped {
            let name = if s.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.name)
            };
            let _ = writeln!(out, "    {} record {}{name}, line {}: {}", s.file, s.record, s.line, s.reason);
        }
    }
    if !r.top_hits.is_empty() {
        let _ = writeln!(out, "  top hits:");
        for line in render_results(&r.top_hits, &ranking(r), Format::Table).lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// A node's preparation tools as "meeko 0.8.0".
fn tools(n: &pb::Node) -> Vec<String> {
    n.tools.iter().map(|t| format!("{} {}", t.name, t.version)).collect()
}

pub fn print_nodes(nodes: &[pb::Node], f: Format) {
    match f {
        Format::Json => {
            let v: Vec<serde_json::Value> = nodes
                .iter()
                .map(|n| {
                    let c = n.capacity.clone().unwrap_or_default();
                    serde_json::json!({
                        "node_id": n.node_id,
                        "state": node_state(n.state),
                        "slots": c.cpu_slots,
                        "free_slots": n.free_slots,
                        "memory_bytes": c.memory_bytes,
                        "free_memory_bytes": n.free_memory_bytes,
                        "gpus": c.gpus.iter().map(|g| serde_json::json!({"index": g.index, "model": g.model, "memory_bytes": g.memory_bytes})).collect::<Vec<_>>(),
                        "engines": n.engines.iter().map(|e| serde_json::json!({"name": e.name, "version": e.version, "test_only": e.test_only})).collect::<Vec<_>>(),
                        "tools": n.tools.iter().map(|t| serde_json::json!({"name": t.name, "version": t.version})).collect::<Vec<_>>(),
                        "running": n.running.iter().map(|r| serde_json::json!({"task_id": r.task_id, "attempt": r.attempt})).collect::<Vec<_>>(),
                        "hostname": n.hostname,
                        "agent_version": n.agent_version,
                        "last_seen_ms": n.last_seen_ms,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Csv => {
            println!("node_id,state,slots,free_slots,memory_mb,gpus,engines,tools");
            for n in nodes {
                let c = n.capacity.clone().unwrap_or_default();
                let engines: Vec<String> = n.engines.iter().map(|e| format!("{} {}", e.name, e.version)).collect();
                println!(
                    "{},{},{},{},{},{},{},{}",
                    n.node_id,
                    node_state(n.state),
                    c.cpu_slots,
                    n.free_slots,
                    c.memory_bytes / 1_000_000,
                    c.gpus.len(),
                    csv(&engines.join(";")),
                    csv(&tools(n).join(";"))
                );
            }
        }
        Format::Table => {
            println!(
                "{:<20}  {:<8}  {:>11}  {:>9}  {:>4}  ENGINES  (PREPARATION TOOLS)",
                "NODE", "STATE", "SLOTS(FREE)", "MEM_GB", "GPUS"
            );
            for n in nodes {
                let c = n.capacity.clone().unwrap_or_default();
                let engines: Vec<String> = n
                    .engines
                    .iter()
                    .map(|e| {
                        if e.test_only {
                            format!("{}* {}", e.name, e.version)
                        } else {
                            format!("{} {}", e.name, e.version)
                        }
                    })
                    .collect();
                let tools = tools(n);
                let tools = if tools.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", tools.join(", "))
                };
                println!(
                    "{:<20}  {:<8}  {:>11}  {:>9.1}  {:>4}  {}{tools}",
                    n.node_id,
                    node_state(n.state),
                    format!("{}({})", c.cpu_slots, n.free_slots),
                    c.memory_bytes as f64 / 1e9,
                    c.gpus.len(),
                    engines.join(", ")
                );
            }
            if nodes.iter().any(|n| n.engines.iter().any(|e| e.test_only)) {
                println!("* test-only sleep engine: does no docking");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(ligand: &str, score: f64, fields: &[(&str, f64)]) -> pb::LigandResult {
        pb::LigandResult {
            ligand: ligand.into(),
            score,
            fields: fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn cnn_columns_show_values_or_n_a_never_zero() {
        let rows = [
            hit("a", -9.5, &[("cnn_score", 0.91), ("cnn_affinity", 7.25)]),
            // gnina's SDF names for the same quantities.
            hit("b", -8.0, &[("CNNscore", 0.5), ("CNNaffinity", 6.0)]),
            hit("c", -7.0, &[]),
        ];
        let csv = render_results(&rows, &"cnn_score".into(), Format::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        // The original columns lead; SMILES and the engine fields follow.
        assert!(
            lines[0].starts_with("rank,ligand,score,cnn_score,cnn_affinity,poses,pose_key,smiles,"),
            "{csv}"
        );
        assert!(lines[1].starts_with("1,a,-9.500,0.910,7.250,0,,"), "{csv}");
        assert!(lines[2].starts_with("2,b,-8.000,0.500,6.000,0,,"), "{csv}");
        assert!(lines[3].starts_with("3,c,-7.000,n/a,n/a,0,,"), "{csv}");

        let table = render_results(&rows, &"cnn_score".into(), Format::Table);
        assert!(
            table.contains("CNN_SCORE") && table.contains("ranked by cnn_score, highest first"),
            "{table}"
        );
        let plain = render_results(&rows[2..], &"score".into(), Format::Table);
        assert!(!plain.contains("CNN_SCORE") && plain.contains("ranked by score"), "{plain}");

        let json: serde_json::Value = serde_json::from_str(&render_results(&rows, &"".into(), Format::Json)).expect("json");
        assert_eq!(json[1]["cnn_affinity"], serde_json::json!(6.0));
        assert!(json[2]["cnn_score"].is_null(), "{json}");
    }

    fn report_with_skips() -> pb::JobReport {
        pb::JobReport {
            job: Some(pb::Job {
                job_id: "j1".into(),
                ligands_total: 2,
                ligands_skipped: 3,
                ..Default::default()
            }),
            cpu_seconds: 1.5,
            failures: Vec::new(),
            skipped: vec![
                pb::SkippedRecord {
                    file: "lib.sdf".into(),
                    record: 2,
                    name: "bad-one".into(),
                    line: 40,
                    reason: "bond names atom 999".into(),
                },
                pb::SkippedRecord {
                    file: "lib.sdf".into(),
                    record: 5,
                    name: String::new(),
                    line: 120,
                    reason: "no atoms".into(),
                },
            ],
            top_hits: vec![hit("best", -9.5, &[("cnn_score", 0.91), ("cnn_affinity", 7.25)])],
            rank_by: "cnn_score".into(),
            stage_columns: Vec::new(),
        }
    }

    #[test]
    fn the_report_table_lists_skipped_records() {
        let out = render_report(&report_with_skips(), Format::Table);
        assert!(out.contains("2 total, 0 docked, 0 failed, 3 skipped"), "{out}");
        assert!(out.contains("skipped at submission (3 records, first 2 listed):"), "{out}");
        assert!(out.contains("lib.sdf record 2 (bad-one), line 40: bond names atom 999"), "{out}");
        assert!(out.contains("lib.sdf record 5, line 120: no atoms"), "{out}");
        assert!(out.contains("top hits:") && out.contains("0.910") && out.contains("7.250"), "{out}");
    }

    #[test]
    fn the_report_json_lists_skipped_records() {
        let out = render_report(&report_with_skips(), Format::Json);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let skipped = v["skipped"].as_array().expect("skipped array");
        assert_eq!(skipped.len(), 2, "{v}");
        assert_eq!(skipped[0]["record"], 2);
        assert_eq!(skipped[0]["name"], "bad-one");
        assert_eq!(skipped[1]["reason"], "no atoms");
        assert_eq!(v["job"]["ligands_skipped"], 3);
    }

    #[test]
    fn a_report_without_skips_says_nothing_about_them() {
        let mut r = report_with_skips();
        r.skipped.clear();
        r.job.as_mut().expect("job").ligands_skipped = 0;
        let out = render_report(&r, Format::Table);
        assert!(!out.contains("skipped at submission"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&render_report(&r, Format::Json)).expect("json");
        assert_eq!(v["skipped"], serde_json::json!([]));
    }
}
