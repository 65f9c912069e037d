//! Read-only and small admin commands: jobs, results, cancel, nodes, drain, stats.

use anyhow::Result;

use dockyard_proto::v1 as pb;

use crate::client::{explain, Client};
use crate::output::{self, Format};

pub async fn jobs(c: &Client, limit: u32, org: String, f: Format) -> Result<()> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = (limit as usize - out.len()).min(1000) as u32;
        let r = c
            .jobs
            .clone()
            .list_jobs(c.req(pb::ListJobsRequest {
                page_size: page,
                page_token: token,
                org: org.clone(),
            }))
            .await
            .map_err(explain)?
            .into_inner();
        out.extend(r.jobs);
        if r.next_page_token.is_empty() || out.len() >= limit as usize {
            break;
        }
        token = r.next_page_token;
    }
    output::print_jobs(&out, f);
    Ok(())
}

/// The job's `top` best results by `rank_by` ("" = the engine's own ranking), and the key
/// the coordinator ranked them by.
pub async fn fetch_results(c: &Client, job: &str, top: usize, rank_by: &str) -> Result<(Vec<pb::LigandResult>, output::Ranking)> {
    fetch_stage_results(c, job, top, rank_by, 0).await
}

/// As [`fetch_results`], for one stage of a funnel (1-based; 0 = its deepest so far).
pub async fn fetch_stage_results(
    c: &Client,
    job: &str,
    top: usize,
    rank_by: &str,
    stage: u32,
) -> Result<(Vec<pb::LigandResult>, output::Ranking)> {
    let mut out = Vec::new();
    let mut token = String::new();
    let ranked_by = loop {
        let page = (top - out.len()).min(1000) as u32;
        let r = c
            .jobs
            .clone()
            .list_results(c.req(pb::ListResultsRequest {
                job_id: job.to_string(),
                page_size: page,
                page_token: token,
                rank_by: rank_by.to_string(),
                stage,
            }))
            .await
            .map_err(explain)?
            .into_inner();
        out.extend(r.results);
        if r.next_page_token.is_empty() || out.len() >= top {
            break output::Ranking {
                key: r.rank_by,
                stage_columns: r.stage_columns,
            };
        }
        token = r.next_page_token;
    };
    out.truncate(top);
    Ok((out, ranked_by))
}

pub async fn results(c: &Client, job: &str, top: usize, rank_by: &str, stage: u32, f: Format) -> Result<()> {
    let (rows, ranked_by) = fetch_stage_results(c, job, top, rank_by, stage).await?;
    output::print_results(&rows, &ranked_by, f);
    Ok(())
}

pub async fn cancel(c: &Client, job: &str, f: Format) -> Result<()> {
    let j = c
        .jobs
        .clone()
        .cancel_job(c.req(pb::CancelJobRequest {
            job_id: job.to_string(),
            reason: "cancelled from the CLI".into(),
        }))
        .await
        .map_err(explain)?
        .into_inner();
    output::print_jobs(&[j], f);
    Ok(())
}

pub async fn nodes(c: &Client, f: Format) -> Result<()> {
    let r = c
        .admin
        .clone()
        .list_nodes(c.req(pb::ListNodesRequest {}))
        .await
        .map_err(explain)?
        .into_inner();
    output::print_nodes(&r.nodes, f);
    Ok(())
}

pub async fn drain(c: &Client, node: &str, drain: bool, f: Format) -> Result<()> {
    let req = c.req(pb::DrainNodeRequest { node_id: node.to_string() });
    let n = if drain {
        c.admin.clone().drain_node(req).await
    } else {
        c.admin.clone().undrain_node(req).await
    }
    .map_err(explain)?
    .into_inner();
    output::print_nodes(&[n], f);
    Ok(())
}

pub async fn stats(c: &Client) -> Result<pb::QueueStatsResponse> {
    Ok(c.admin
        .clone()
        .queue_stats(c.req(pb::QueueStatsRequest {}))
        .await
        .map_err(explain)?
        .into_inner())
}

pub async fn fetch_report(c: &Client, job: &str) -> Result<pb::JobReport> {
    Ok(c.jobs
        .clone()
        .get_job_report(c.req(pb::GetJobRequest { job_id: job.to_string() }))
        .await
        .map_err(explain)?
        .into_inner())
}

pub async fn report(c: &Client, job: &str, f: Format) -> Result<()> {
    let r = fetch_report(c, job).await?;
    print!("{}", output::render_report(&r, f));
    Ok(())
}

/// Writes the top hits' poses as one SDF, each record carrying its scores as data fields.
pub async fn export_sdf(c: &Client, job: &str, top: usize, rank_by: &str, stage: u32, out: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let (rows, _) = fetch_stage_results(c, job, top, rank_by, stage).await?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?);
    let mut written = 0;
    let mut missing = Vec::new();
    for (rank, r) in rows.iter().enumerate() {
        if r.sdf_key.is_empty() {
            missing.push(r.ligand.clone());
            continue;
        }
        let mut s = c
            .jobs
            .clone()
            .get_artifact(c.req(pb::GetArtifactRequest { key: r.sdf_key.clone() }))
            .await
            .map_err(explain)?
            .into_inner();
        let mut data = Vec::new();
        while let Some(ch) = s.message().await.map_err(explain)? {
            data.extend_from_slice(&ch.data);
        }
        let text = String::from_utf8_lossy(&data);
        for (pose_i, rec) in text.split("$$$$").map(str::trim_end).filter(|r| !r.trim().is_empty()).enumerate() {
            let pose = r.poses.get(pose_i);
            writeln!(f, "{}", rec.trim_start_matches(['\r', '\n']))?;
            let mut field = |k: &str, v: String| writeln!(f, ">  <{k}>\n{v}\n");
            field("dockyard_ligand", r.ligand.clone())?;
            field("dockyard_rank", (rank + 1).to_string())?;
            field("dockyard_pose", (pose_i + 1).to_string())?;
            if let Some(p) = pose {
                field("dockyard_affinity", format!("{:.3}", p.affinity))?;
            }
            field("dockyard_best_score", format!("{:.3}", r.score))?;
            if !r.smiles.is_empty() {
                field("dockyard_smiles", r.smiles.clone())?;
            }
            for (k, v) in &r.fields {
                field(k, format!("{v}"))?;
            }
            writeln!(f, "$$$$")?;
            written += 1;
        }
    }
    f.flush()?;
    eprintln!(
        "wrote {written} poses of {} ligands to {}",
        rows.len() - missing.len(),
        out.display()
    );
    if !missing.is_empty() {
        eprintln!(
            "no SDF poses for {} ligand(s) (their agent had no Open Babel): {}",
            missing.len(),
            missing.join(", ")
        );
    }
    Ok(())
}
