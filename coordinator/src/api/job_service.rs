//! `dockyard.v1.JobService`.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use dockyard_common::artifact::{ArtifactKey, ArtifactStore, ParsedKey};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::{JobId, OrgId};
use dockyard_common::spec::RankKey;
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::job_service_server::JobService;

use super::convert::ligand_result;
use super::funnel_view;
use super::results_page;
use crate::auth::guard::until_revoked;
use crate::auth::{Auth, Caller};
use crate::scheduler::{Command, SchedulerHandle};
use crate::store::Store;
use crate::submit::SubmitLimits;

#[derive(Clone)]
pub struct JobApi {
    pub scheduler: SchedulerHandle,
    pub store: Store,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub upload_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub auth: Arc<Auth>,
    pub limits: SubmitLimits,
}

/// A ListJobs call reads at most this many job ids (then hands back a page token, however
/// few of them were the caller's), so one call stays cheap on a coordinator with many jobs.
const MAX_SCANNED_PER_PAGE: usize = 10_000;

/// Another organisation's job gets exactly the answer a job that does not exist gets, so
/// ids cannot be probed across tenants.
/// Results a job report lists.
const REPORT_TOP_HITS: usize = 10;

fn no_such_job(job: &JobId) -> DockyardError {
    DockyardError::not_found(format!("job {job}"))
}

/// May `caller` read the artifact `key`? Only job outputs (`orgs/<org>/jobs/...`) of an
/// organisation the caller sees; inputs and anything else are not served here.
fn artifact_visible(caller: &Caller, key: &ArtifactKey) -> bool {
    matches!(ParsedKey::of(key), Ok(ParsedKey::Job { org, .. }) if caller.sees(org.as_str()))
}

impl JobApi {
    /// The job's current view, if `caller` may see it.
    async fn visible_job(&self, caller: &Caller, job: &JobId) -> Result<pb::Job, DockyardError> {
        let j = job.clone();
        let view = self.scheduler.ask(|reply| Command::GetJob { job: j, reply }).await?;
        if caller.sees(&view.org) {
            Ok(view)
        } else {
            Err(no_such_job(job))
        }
    }
}

fn final_state(s: i32) -> bool {
    matches!(
        pb::JobState::try_from(s),
        Ok(pb::JobState::Succeeded | pb::JobState::Partial | pb::JobState::Failed | pb::JobState::Cancelled)
    )
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(&self, request: Request<pb::SubmitJobRequest>) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let org = Caller::of(&request)?.org();
        Ok(Response::new(self.submit_one(org, request.into_inner()).await?))
    }

    type SubmitJobsStream = Pin<Box<dyn Stream<Item = Result<pb::SubmitJobsResponse, Status>> + Send>>;

    async fn submit_jobs(&self, request: Request<Streaming<pb::SubmitJobRequest>>) -> Result<Response<Self::SubmitJobsStream>, Status> {
        let caller = Caller::of(&request)?;
        let answers = self.submit_stream(caller.org(), request.into_inner());
        Ok(Response::new(until_revoked(Box::pin(answers), &self.auth, &caller)))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let caller = Caller::of(&request)?;
        let job = JobId::parse(&request.get_ref().job_id)?;
        Ok(Response::new(self.visible_job(&caller, &job).await?))
    }

    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let size = match req.page_size {
            0 => 50,
            n => n.min(1000),
        } as usize;
        let mut cursor = if req.page_token.is_empty() {
            None
        } else {
            Some(JobId::parse(&req.page_token).map_err(|_| DockyardError::invalid("page_token", "not a token from a previous page"))?)
        };
        let filter = if req.org.is_empty() { None } else { Some(OrgId::parse(&req.org)?) };
        let wanted = |org: &OrgId| caller.sees(org.as_str()) && filter.as_ref().is_none_or(|f| f == org);
        let mut jobs = Vec::with_capacity(size);
        let (mut more, mut scanned) = (true, 0usize);
        'pages: while more && scanned < MAX_SCANNED_PER_PAGE {
            let ids = self.store.job_ids(cursor.as_ref(), size)?;
            more = ids.len() == size;
            scanned += ids.len();
            let n = ids.len();
            for (i, id) in ids.into_iter().enumerate() {
                cursor = Some(id.clone());
                if let (Some(spec), Some(st)) = (self.store.spec(&id)?, self.store.status(&id)?) {
                    // A funnel's later stages are listed inside the funnel, not beside it.
                    if wanted(&spec.org) && spec.funnel_root().is_none() {
                        jobs.push(funnel_view::view(&self.store, &id, &spec, &st));
                    }
                }
                if jobs.len() == size {
                    more = more || i + 1 < n;
                    break 'pages;
                }
            }
        }
        let next_page_token = match (more, cursor) {
            (true, Some(c)) => c.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListJobsResponse { jobs, next_page_token }))
    }

    type WatchJobStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

    async fn watch_job(&self, request: Request<pb::WatchJobRequest>) -> Result<Response<Self::WatchJobStream>, Status> {
        const TOP_HITS: usize = 5;
        let caller = Caller::of(&request)?;
        let job = JobId::parse(&request.get_ref().job_id)?;
        self.visible_job(&caller, &job).await?;
        let mut rx = self.scheduler.ask(|reply| Command::Watch { job: job.clone(), reply }).await?;
        let (tx, out) = tokio::sync::mpsc::channel(4);
        let store = self.store.clone();
        let spec = self.store.spec(&job)?;
        // Results are committed before the snapshot that counts them is published, so the
        // hits read here are never behind the counts.
        let event = move |view: pb::Job| {
            let fin = final_state(view.state);
            let source = match &spec {
                Some(s) if !s.plan().is_empty() => funnel_view::results_source(&store, &job, s, 0)
                    .map(|r| r.job)
                    .unwrap_or(job.clone()),
                _ => job.clone(),
            };
            let top_hits = if view.ligands_docked > 0 {
                store
                    .results(&source, None, TOP_HITS)
                    .map(|(rows, _)| rows.into_iter().map(ligand_result).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            (
                pb::JobEvent {
                    job: Some(view),
                    r#final: fin,
                    top_hits,
                },
                fin,
            )
        };
        tokio::spawn(async move {
            loop {
                let view = rx.borrow_and_update().clone();
                let (ev, fin) = event(view);
                if tx.send(Ok(ev)).await.is_err() || fin {
                    break;
                }
                if rx.changed().await.is_err() {
                    // The scheduler dropped the job after its final snapshot; send that.
                    let view = rx.borrow().clone();
                    let _ = tx.send(Ok(event(view).0)).await;
                    break;
                }
                // Coalesce bursts: at most ten snapshots a second per watcher.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Response::new(until_revoked(
            Box::pin(ReceiverStream::new(out)),
            &self.auth,
            &caller,
        )))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Result<Response<pb::Job>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let job = JobId::parse(&req.job_id)?;
        // Checked first: another organisation's job must not even be cancelled.
        self.visible_job(&caller, &job).await?;
        Ok(Response::new(
            self.scheduler
                .ask(|reply| Command::Cancel {
                    job,
                    reason: req.reason,
                    reply,
                })
                .await?,
        ))
    }

    async fn list_results(&self, request: Request<pb::ListResultsRequest>) -> Result<Response<pb::ListResultsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let job = JobId::parse(&req.job_id)?;
        let spec = self.store.spec(&job)?.filter(|spec| caller.sees(spec.org.as_str()));
        let (spec, status) = match (spec, self.store.status(&job)?) {
            (Some(spec), Some(status)) => (spec, status),
            _ => return Err(no_such_job(&job).into()),
        };
        let size = match req.page_size {
            0 => 100,
            n => n.min(1000),
        } as usize;
        // A funnel's results are its deepest stage's, each carrying the earlier stages' values.
        let source = funnel_view::results_source(&self.store, &job, &spec, req.stage)?;
        let total = if source.job == job {
            status.ligands_docked
        } else {
            self.store.status(&source.job)?.map_or(0, |s| s.ligands_docked)
        };
        let key = RankKey::parse(&req.rank_by)?.unwrap_or(source.key);
        let page = results_page::page(&self.store, &source.job, key, &req.page_token, size)?;
        Ok(Response::new(pb::ListResultsResponse {
            results: page.rows.into_iter().map(ligand_result).collect(),
            next_page_token: page.next_token,
            total,
            rank_by: key.name().to_string(),
            stage_columns: source.stage_columns,
        }))
    }

    async fn get_job_report(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::JobReport>, Status> {
        let caller = Caller::of(&request)?;
        let job_id = JobId::parse(&request.get_ref().job_id)?;
        let job = self.visible_job(&caller, &job_id).await?;
        let spec = self.store.spec(&job_id)?.ok_or_else(|| no_such_job(&job_id))?;
        let failures = funnel_view::failure_groups(&self.store, &job_id, &spec)?;
        let skipped = self.store.skipped(&job_id)?.into_iter().map(Into::into).collect();
        let source = funnel_view::results_source(&self.store, &job_id, &spec, 0)?;
        let key = source.key;
        let top = results_page::page(&self.store, &source.job, key, "", REPORT_TOP_HITS)?;
        Ok(Response::new(pb::JobReport {
            cpu_seconds: job.cpu_seconds,
            job: Some(job),
            failures,
            skipped,
            top_hits: top.rows.into_iter().map(ligand_result).collect(),
            rank_by: key.name().to_string(),
            stage_columns: source.stage_columns,
        }))
    }

    type GetArtifactStream = Pin<Box<dyn Stream<Item = Result<pb::ArtifactData, Status>> + Send>>;

    async fn get_artifact(&self, request: Request<pb::GetArtifactRequest>) -> Result<Response<Self::GetArtifactStream>, Status> {
        let caller = Caller::of(&request)?;
        // Refuses `..`, absolute keys and odd bytes before anything else.
        let key = ArtifactKey::new(request.get_ref().key.as_str())?;
        // Only job outputs of the caller's organisation; anything else looks like it does not exist.
        if !artifact_visible(&caller, &key) {
            return Err(DockyardError::not_found(format!("artifact {key}")).into());
        }
        let data = self.artifacts.get(&key).await?;
        let chunks: Vec<Result<pb::ArtifactData, Status>> =
            data.chunks(1 << 20).map(|c| Ok(pb::ArtifactData { data: c.to_vec() })).collect();
        Ok(Response::new(until_revoked(
            Box::pin(tokio_stream::iter(chunks)),
            &self.auth,
            &caller,
        )))
    }

    async fn upload_input(&self, request: Request<Streaming<pb::UploadInputChunk>>) -> Result<Response<pb::UploadInputResponse>, Status> {
        let org = Caller::of(&request)?.org();
        let mut stream = request.into_inner();
        // What the organisation may still store: refuse as soon as the upload passes it,
        // not after it has been written out in full.
        let limit = self.auth.quotas().get(&org).max_bytes_stored;
        let room = match limit {
            0 => u64::MAX,
            l => l.saturating_sub(self.auth.store().usage(&org).await?),
        };
        tokio::fs::create_dir_all(&self.upload_dir).await.map_err(DockyardError::from)?;
        let tmp = self.upload_dir.join(format!("upload-{:016x}", rand::random::<u64>()));
        // Removed even when the client goes away mid-stream (the request future is then dropped).
        let _tmp_guard = crate::submit::RemoveOnDrop(tmp.clone());
        let result = async {
            let mut f = tokio::fs::File::create(&tmp).await.map_err(DockyardError::from)?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut named = false;
            while let Some(chunk) = stream.message().await? {
                match chunk.part {
                    Some(pb::upload_input_chunk::Part::Name(_)) if !named => named = true,
                    Some(pb::upload_input_chunk::Part::Name(_)) => return Err(DockyardError::invalid("name", "sent twice").into()),
                    Some(pb::upload_input_chunk::Part::Data(d)) => {
                        size += d.len() as u64;
                        if size > self.max_upload_bytes {
                            return Err(DockyardError::ResourceExhausted(format!(
                                "upload is larger than the {} byte limit",
                                self.max_upload_bytes
                            ))
                            .into());
                        }
                        if size > room {
                            return Err(DockyardError::ResourceExhausted(format!(
                                "quota max_bytes_stored exceeded for organisation {org}: {} bytes stored + {size} uploaded so far > limit {limit}",
                                limit - room
                            ))
                            .into());
                        }
                        hasher.update(&d);
                        f.write_all(&d).await.map_err(DockyardError::from)?;
                    }
                    None => {}
                }
            }
            f.sync_all().await.map_err(DockyardError::from)?;
            if size == 0 {
                return Err(DockyardError::invalid("data", "the upload is empty").into());
            }
            let hex = hex::encode(hasher.finalize());
            let key = ArtifactKey::input(&org, &hex)?;
            // Charged atomically now: a concurrent upload may have used the room seen above.
            self.auth.charge_bytes(&org, size).await?;
            if let Err(e) = self.artifacts.put_file(&key, &tmp).await {
                self.auth.refund_bytes(&org, size).await;
                return Err(e.into());
            }
            Ok::<_, Status>(pb::UploadInputResponse {
                upload_id: format!("sha256:{hex}"),
                size,
            })
        }
        .await;
        // A failed or partial upload leaves nothing behind.
        let _ = tokio::fs::remove_file(&tmp).await;
        Ok(Response::new(result?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn artifacts_are_visible_only_under_the_callers_job_outputs() {
        let chem = Caller {
            role: Role::Org(OrgId::parse("chem").expect("org")),
            token_id: None,
        };
        let key = |k: &str| ArtifactKey::new(k.replace("JOB", "018f2a3b4c5d0123abcd")).expect("key");
        assert!(artifact_visible(&chem, &key("orgs/chem/jobs/JOB/tasks/0/a1e1/lig.pdbqt")));
        assert!(artifact_visible(&chem, &key("orgs/chem/jobs/JOB/tasks/0/a1/lig.pdbqt")));
        assert!(artifact_visible(&chem, &key("orgs/chem/jobs/JOB/spec.json")));
        assert!(!artifact_visible(&chem, &key("orgs/bio/jobs/JOB/tasks/0/a1e1/lig.pdbqt")));
        assert!(!artifact_visible(&chem, &key("orgs/chem/inputs/sha256/aa")));
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert!(!artifact_visible(&chem, &key(&format!("orgs/chem/inputs/sha256/{sha}"))));
        assert!(!artifact_visible(&chem, &key("orgs/chem")));
        assert!(!artifact_visible(&chem, &key("orgs/chem/jobs/not-a-job/x")));
        assert!(artifact_visible(&Caller::local_admin(), &key("orgs/bio/jobs/JOB/x")));
        assert!(!artifact_visible(&Caller::agent(), &key("orgs/bio/jobs/JOB/x")));
    }
}
