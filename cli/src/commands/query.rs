//! Read-only and small admin commands: jobs, job, cancel, nodes, drain, stats, report.

use anyhow::Result;

use dockyard_proto::v1 as pb;

use crate::client::{explain, Client};
use crate::commands::results::Pages;
use crate::output::{self, Format};

/// `limit` None: every job. When the list is cut, stderr says so (stdout stays the list).
pub async fn jobs(c: &Client, limit: Option<usize>, org: String, f: Format) -> Result<()> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        // One job past the limit, to know whether more exist: a full page's token does not
        // tell (the coordinator hands one out whenever a page is full).
        let want = limit.map_or(1000, |l| (l + 1 - out.len()).min(1000));
        let r = c
            .jobs
            .clone()
            .list_jobs(c.req(pb::ListJobsRequest {
                page_size: want as u32,
                page_token: token,
                org: org.clone(),
            }))
            .await
            .map_err(explain)?
            .into_inner();
        out.extend(r.jobs);
        if r.next_page_token.is_empty() || limit.is_some_and(|l| out.len() > l) {
            break;
        }
        token = r.next_page_token;
    }
    let cut = limit.filter(|&l| out.len() > l);
    if let Some(l) = cut {
        out.truncate(l);
    }
    output::print_jobs(&out, f);
    if let Some(l) = cut {
        eprintln!("showing the newest {l} jobs; more exist: use --limit N or --all");
    }
    Ok(())
}

/// `dockyard job JOB`: one job's state.
pub async fn job(c: &Client, job: &str, f: Format) -> Result<()> {
    let j = c
        .jobs
        .clone()
        .get_job(c.req(pb::GetJobRequest { job_id: job.to_string() }))
        .await
        .map_err(explain)?
        .into_inner();
    output::print_job(&j, f);
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
    let mut pages = Pages::new(c, job, Some(top), rank_by, stage);
    let (mut out, ranking) = pages.next().await?.unwrap_or_default();
    while let Some((rows, _)) = pages.next().await? {
        out.extend(rows);
    }
    Ok((out, ranking))
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
