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
use tracing::{info_span, Instrument};

use dockyard_common::artifact::{input_key, ArtifactKey, ArtifactStore};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::{JobId, OrgId};
use dockyard_common::time::now_ms;
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::job_service_server::JobService;

use super::convert::{job_view, ligand_result};
use crate::scheduler::{Command, SchedulerHandle};
use crate::store::Store;
use crate::submit::build_spec;

pub struct JobApi {
    pub scheduler: SchedulerHandle,
    pub store: Store,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub upload_dir: PathBuf,
    pub max_upload_bytes: u64,
}

/// Until authentication lands, every caller belongs to the default organisation.
fn caller_org<T>(_req: &Request<T>) -> OrgId {
    OrgId::default_org()
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
        let org = caller_org(&request);
        let req = request.into_inner();
        let now = now_ms();
        let job_id = JobId::generate(now);
        let span = info_span!("submit_job", job = %job_id, engine = %req.engine, ligands = req.ligands.len());
        async move {
            let sub = build_spec(&req, org, self.artifacts.clone(), &self.upload_dir, now).await?;
            if !sub.skipped.is_empty() {
                self.store.put_skipped(&job_id, &sub.skipped)?;
            }
            let spec = sub.spec;
            let job = self
                .scheduler
                .ask(|reply| Command::Submit {
                    job: job_id.clone(),
                    spec,
                    reply,
                })
                .await?;
            Ok(Response::new(pb::SubmitJobResponse {
                job_id: job_id.to_string(),
                job: Some(job),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: DockyardError| e.into())
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let job = JobId::parse(&request.get_ref().job_id)?;
        Ok(Response::new(self.scheduler.ask(|reply| Command::GetJob { job, reply }).await?))
    }

    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let req = request.into_inner();
        let size = match req.page_size {
            0 => 50,
            n => n.min(1000),
        } as usize;
        let before = if req.page_token.is_empty() {
            None
        } else {
            Some(JobId::parse(&req.page_token).map_err(|_| DockyardError::invalid("page_token", "not a token from a previous page"))?)
        };
        let ids = self.store.job_ids(before.as_ref(), size)?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in &ids {
            if let (Some(spec), Some(st)) = (self.store.spec(id)?, self.store.status(id)?) {
                jobs.push(job_view(id, &spec, &st));
            }
        }
        let next_page_token = if ids.len() == size {
            ids.last().map(|i| i.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListJobsResponse { jobs, next_page_token }))
    }

    type WatchJobStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

    async fn watch_job(&self, request: Request<pb::WatchJobRequest>) -> Result<Response<Self::WatchJobStream>, Status> {
        const TOP_HITS: usize = 5;
        let job = JobId::parse(&request.get_ref().job_id)?;
        let mut rx = self.scheduler.ask(|reply| Command::Watch { job: job.clone(), reply }).await?;
        let (tx, out) = tokio::sync::mpsc::channel(4);
        let store = self.store.clone();
        // Results are committed before the snapshot that counts them is published, so the
        // hits read here are never behind the counts.
        let event = move |view: pb::Job| {
            let fin = final_state(view.state);
            let top_hits = if view.ligands_docked > 0 {
                store
                    .results(&job, None, TOP_HITS)
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
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> Result<Response<pb::Job>, Status> {
        let req = request.into_inner();
        let job = JobId::parse(&req.job_id)?;
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
        let req = request.into_inner();
        let job = JobId::parse(&req.job_id)?;
        let status = self
            .store
            .status(&job)?
            .ok_or_else(|| DockyardError::not_found(format!("job {job}")))?;
        let size = match req.page_size {
            0 => 100,
            n => n.min(1000),
        } as usize;
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(hex::decode(&req.page_token).map_err(|_| DockyardError::invalid("page_token", "not a token from a previous page"))?)
        };
        let (rows, more) = self.store.results(&job, after.as_deref(), size)?;
        Ok(Response::new(pb::ListResultsResponse {
            results: rows.into_iter().map(ligand_result).collect(),
            next_page_token: more.map(hex::encode).unwrap_or_default(),
            total: status.ligands_docked,
        }))
    }

    async fn get_job_report(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::JobReport>, Status> {
        let job_id = JobId::parse(&request.get_ref().job_id)?;
        let job = self
            .scheduler
            .ask(|reply| Command::GetJob {
                job: job_id.clone(),
                reply,
            })
            .await?;
        let failures = crate::report::failure_groups(&self.store, &job_id)?;
        let skipped = self.store.skipped(&job_id)?;
        Ok(Response::new(pb::JobReport {
            cpu_seconds: job.cpu_seconds,
            job: Some(job),
            failures,
            skipped,
        }))
    }

    type GetArtifactStream = Pin<Box<dyn Stream<Item = Result<pb::ArtifactData, Status>> + Send>>;

    async fn get_artifact(&self, request: Request<pb::GetArtifactRequest>) -> Result<Response<Self::GetArtifactStream>, Status> {
        let org = caller_org(&request);
        let key = ArtifactKey::new(request.get_ref().key.as_str())?;
        // Only the caller's own job outputs; anything else looks like it does not exist.
        if !key.starts_with(&format!("orgs/{org}/jobs/")) {
            return Err(DockyardError::not_found(format!("artifact {key}")).into());
        }
        let data = self.artifacts.get(&key).await?;
        let chunks: Vec<Result<pb::ArtifactData, Status>> =
            data.chunks(1 << 20).map(|c| Ok(pb::ArtifactData { data: c.to_vec() })).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn upload_input(&self, request: Request<Streaming<pb::UploadInputChunk>>) -> Result<Response<pb::UploadInputResponse>, Status> {
        let org = caller_org(&request);
        let mut stream = request.into_inner();
        tokio::fs::create_dir_all(&self.upload_dir).await.map_err(DockyardError::from)?;
        let tmp = self.upload_dir.join(format!("upload-{:016x}", rand::random::<u64>()));
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
            let key = input_key(&org, &hex)?;
            self.artifacts.put_file(&key, &tmp).await?;
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
