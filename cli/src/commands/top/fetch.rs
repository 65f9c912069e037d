//! Gathering one [`Snapshot`] of the cluster from the existing RPCs: `ListNodes` and
//! `QueueStats` (admin only), `ListJobs` and `ListResults` (scoped to the caller's
//! organisation by the server).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;

use dockyard_proto::v1 as pb;

use crate::client::{explain, Client};
use crate::output;

/// Jobs asked for per refresh, newest first. Active jobs are nearly always recent ones, and
/// one bounded page keeps a refresh cheap on a coordinator holding years of history.
const JOBS_PAGE: u32 = 200;
/// Finished jobs shown (and searched for hits) besides the active ones.
pub const RECENT_FINISHED: usize = 3;

/// One ligand result, reduced to what the view shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub job_id: String,
    pub ligand: String,
    pub score: f64,
}

/// Everything one frame shows, as the server reported it at `at`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// `None` when the caller may not list nodes (an organisation token).
    pub nodes: Option<Vec<pb::Node>>,
    /// `None` when the caller may not read queue statistics (an organisation token).
    pub queue: Option<pb::QueueStatsResponse>,
    /// Active jobs, then up to [`RECENT_FINISHED`] finished ones, newest first in each group.
    pub jobs: Vec<pb::Job>,
    /// Best hits across `jobs`, best first, at most the requested number.
    pub hits: Vec<Hit>,
}

/// Gathers snapshots, remembering results that cannot have changed since the last refresh
/// so a refresh costs one `ListResults` per job that docked something new.
pub struct Fetcher {
    top: usize,
    /// job id -> (ligands docked when fetched, that job's best hits).
    cache: HashMap<String, (u32, Vec<Hit>)>,
}

impl Fetcher {
    pub fn new(top: usize) -> Self {
        Fetcher {
            top,
            cache: HashMap::new(),
        }
    }

    pub async fn fetch(&mut self, c: &Client) -> Result<Snapshot> {
        let (mut a1, mut a2, mut j) = (c.admin.clone(), c.admin.clone(), c.jobs.clone());
        let (nodes, queue, jobs) = tokio::join!(
            a1.list_nodes(c.req(pb::ListNodesRequest {})),
            a2.queue_stats(c.req(pb::QueueStatsRequest {})),
            j.list_jobs(c.req(pb::ListJobsRequest {
                page_size: JOBS_PAGE,
                ..Default::default()
            })),
        );
        let nodes = admin_only(nodes)?.map(|r| r.nodes);
        let queue = admin_only(queue)?;
        let jobs = pick_jobs(jobs.map_err(explain)?.into_inner().jobs);

        let mut hits = Vec::new();
        for j in hit_candidates(&jobs, self.top) {
            hits.extend(self.job_hits(c, j).await?);
        }
        let hits = best_hits(hits, self.top);
        self.cache.retain(|id, _| jobs.iter().any(|j| &j.job_id == id));
        Ok(Snapshot {
            at: Instant::now(),
            nodes,
            queue,
            jobs,
            hits,
        })
    }

    async fn job_hits(&mut self, c: &Client, j: &pb::Job) -> Result<Vec<Hit>> {
        if let Some((docked, hits)) = self.cache.get(&j.job_id) {
            if *docked == j.ligands_docked {
                return Ok(hits.clone());
            }
        }
        let r = c
            .jobs
            .clone()
            .list_results(c.req(pb::ListResultsRequest {
                job_id: j.job_id.clone(),
                page_size: u32::try_from(self.top).unwrap_or(u32::MAX),
                page_token: String::new(),
                // The dashboard's hits column is by score, whatever the engine ranks by.
                rank_by: "score".into(),
                // A funnel's deepest stage.
                stage: 0,
            }))
            .await;
        let rows = match r {
            Ok(r) => r.into_inner().results,
            // Deleted or out of reach since ListJobs: nothing to show, not a failed refresh.
            Err(s) if s.code() == tonic::Code::NotFound => Vec::new(),
            Err(s) => return Err(explain(s)),
        };
        let hits: Vec<Hit> = rows
            .into_iter()
            .map(|r| Hit {
                job_id: j.job_id.clone(),
                ligand: r.ligand,
                score: r.score,
            })
            .collect();
        self.cache.insert(j.job_id.clone(), (j.ligands_docked, hits.clone()));
        Ok(hits)
    }
}

/// An admin-only figure: `None` when the token lacks the admin role, so an organisation
/// token still gets its jobs and hits instead of an error.
fn admin_only<T>(r: std::result::Result<tonic::Response<T>, tonic::Status>) -> Result<Option<T>> {
    match r {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::PermissionDenied => Ok(None),
        Err(s) => Err(explain(s)),
    }
}

/// Active jobs (all of them in the page) followed by the newest few finished ones.
pub fn pick_jobs(jobs: Vec<pb::Job>) -> Vec<pb::Job> {
    let (mut active, finished): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| !output::is_final(j.state));
    active.extend(finished.into_iter().take(RECENT_FINISHED));
    active
}

/// Jobs worth a `ListResults` call: those that docked something, best first by their best
/// score, only as many as could still place a hit in the top `top`.
pub fn hit_candidates(jobs: &[pb::Job], top: usize) -> Vec<&pb::Job> {
    let mut c: Vec<&pb::Job> = jobs.iter().filter(|j| j.ligands_docked > 0 && j.best_score.is_finite()).collect();
    c.sort_by(|a, b| a.best_score.total_cmp(&b.best_score));
    // Each job contributes at least its best hit, so the top `top` come from at most `top` jobs.
    c.truncate(top);
    c
}

/// The best `top` hits, lowest score first; non-finite scores are dropped (they rank
/// nothing), ties broken by job and ligand so frames do not flicker.
pub fn best_hits(mut hits: Vec<Hit>, top: usize) -> Vec<Hit> {
    hits.retain(|h| h.score.is_finite());
    hits.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then_with(|| a.job_id.cmp(&b.job_id))
            .then_with(|| a.ligand.cmp(&b.ligand))
    });
    hits.truncate(top);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(job: &str, lig: &str, score: f64) -> Hit {
        Hit {
            job_id: job.into(),
            ligand: lig.into(),
            score,
        }
    }

    fn job(id: &str, state: pb::JobState, docked: u32, best: f64) -> pb::Job {
        pb::Job {
            job_id: id.into(),
            state: state as i32,
            ligands_docked: docked,
            best_score: best,
            ..Default::default()
        }
    }

    #[test]
    fn best_hits_rank_lowest_first_and_drop_non_finite() {
        let hits = vec![
            hit("a", "x", -5.0),
            hit("b", "y", f64::NAN),
            hit("b", "z", -9.5),
            hit("a", "w", f64::NEG_INFINITY),
            hit("c", "v", -7.25),
            hit("a", "u", -7.25),
        ];
        let best = best_hits(hits, 3);
        let names: Vec<&str> = best.iter().map(|h| h.ligand.as_str()).collect();
        assert_eq!(names, ["z", "u", "v"]);
    }

    #[test]
    fn active_jobs_first_then_a_few_finished() {
        let mut jobs = Vec::new();
        for i in 0..6 {
            jobs.push(job(&format!("done{i}"), pb::JobState::Succeeded, 0, 0.0));
        }
        jobs.push(job("run", pb::JobState::Running, 0, 0.0));
        jobs.push(job("wait", pb::JobState::Queued, 0, 0.0));
        let ids: Vec<String> = pick_jobs(jobs).into_iter().map(|j| j.job_id).collect();
        assert_eq!(ids, ["run", "wait", "done0", "done1", "done2"]);
    }

    #[test]
    fn only_jobs_that_could_place_a_hit_are_asked() {
        let jobs = vec![
            job("none", pb::JobState::Running, 0, 0.0),
            job("weak", pb::JobState::Running, 3, -4.0),
            job("strong", pb::JobState::Succeeded, 3, -9.0),
            job("mid", pb::JobState::Running, 3, -6.0),
        ];
        let ids: Vec<&str> = hit_candidates(&jobs, 2).iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ids, ["strong", "mid"]);
    }
}
