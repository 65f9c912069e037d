//! Following a job: a progress bar on stderr fed by the WatchJob stream.

use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use dockyard_common::spec::RankKey;
use dockyard_proto::v1 as pb;

use crate::client::{explain, Client};
use crate::output::{is_final, job_state};

fn units(j: &pb::Job) -> (u64, u64, &'static str) {
    let t = j.tasks.unwrap_or_default();
    if !j.stages.is_empty() {
        // A funnel: every ligand of every stage started so far.
        let (done, total) = crate::output_stages::progress(&j.stages);
        return (done, total, "ligands over its stages");
    }
    if j.ligands_total > 0 {
        (
            u64::from(j.ligands_docked + j.ligands_failed),
            u64::from(j.ligands_total),
            "ligands",
        )
    } else {
        (u64::from(t.succeeded + t.failed + t.cancelled), u64::from(t.total), "tasks")
    }
}

/// Streams progress until the job is final; returns the last snapshot.
pub async fn watch(client: &Client, job_id: &str, quiet: bool) -> Result<pb::Job> {
    let mut stream = client
        .jobs
        .clone()
        .watch_job(client.req(pb::WatchJobRequest {
            job_id: job_id.to_string(),
        }))
        .await
        .map_err(explain)?
        .into_inner();
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let started = Instant::now();
    let mut last: Option<pb::Job> = None;
    let mut warned = false;
    while let Some(ev) = stream.message().await.map_err(explain)? {
        let Some(j) = ev.job else { continue };
        let (done, total, unit) = units(&j);
        bar.set_length(total);
        bar.set_position(done);
        let t = j.tasks.unwrap_or_default();
        let best = match ev.top_hits.first() {
            Some(h) => match RankKey::CnnScore.value(h.score, &h.fields) {
                Some(cnn) => format!(" · best {} {:.2} (cnn_score {cnn:.2})", h.ligand, h.score),
                None => format!(" · best {} {:.2}", h.ligand, h.score),
            },
            None if j.ligands_docked > 0 => format!(" · best {:.2}", j.best_score),
            None => String::new(),
        };
        let stages = if j.stages.is_empty() {
            String::new()
        } else {
            format!(" · {}", crate::output_stages::progress_line(&j.stages))
        };
        bar.set_message(format!(
            "{unit} · {} · {} running, {} queued{stages}{best}",
            job_state(j.state),
            t.running,
            t.queued
        ));
        if !j.unschedulable_reason.is_empty() && !warned {
            bar.suspend(|| eprintln!("warning: job {} is unschedulable: {}", j.job_id, j.unschedulable_reason));
            warned = true;
        }
        let fin = ev.r#final || is_final(j.state);
        last = Some(j);
        if fin {
            break;
        }
    }
    bar.finish_and_clear();
    let j = last.ok_or_else(|| anyhow::anyhow!("the watch stream ended without any event"))?;
    if !quiet {
        if !j.stages.is_empty() {
            eprint!("{}", crate::output_stages::funnel_table(&j.stages));
        }
        let (done, total, unit) = units(&j);
        eprintln!(
            "job {} {} in {:.1}s: {done}/{total} {unit}, {} docked, {} failed{}",
            j.job_id,
            job_state(j.state),
            started.elapsed().as_secs_f64(),
            j.ligands_docked,
            j.ligands_failed,
            if j.error.is_empty() {
                String::new()
            } else {
                format!(" ({})", j.error)
            }
        );
    }
    Ok(j)
}
