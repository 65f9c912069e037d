//! Submission, shared by the unary `SubmitJob` and the streamed `SubmitJobs`: one request
//! in, one job stored (or one refusal, with nothing stored and the bytes refunded).
//!
//! A stream answers in request order and handles up to [`IN_FLIGHT`] of its requests at
//! once, so a service can keep a single stream busy instead of paying a gRPC call per job:
//! on this 2-core machine the unary call's own cost (client and server) was about half of
//! a submission's CPU (docs/benchmarks.md).

use futures::{Stream, StreamExt};
use tonic::{Status, Streaming};
use tracing::{info_span, Instrument};

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{JobId, OrgId};
use dockyard_common::time::now_ms;
use dockyard_proto::v1 as pb;

use super::job_service::JobApi;
use crate::scheduler::Command;
use crate::submit::build_spec;

/// Requests of one stream being checked and stored at once. The stream reads no further
/// ahead than this (HTTP/2 flow control then holds the client back), so a fast client
/// cannot make the coordinator buffer its submissions.
pub const IN_FLIGHT: usize = 128;

/// Bytes a submission brings inline (uploads were counted when they were uploaded).
fn inline_bytes(req: &pb::SubmitJobRequest) -> u64 {
    req.receptor
        .iter()
        .chain(req.ligands.iter())
        .chain(req.autobox_ligand.iter())
        .map(|f| match &f.source {
            Some(pb::input_file::Source::Content(b)) => b.len() as u64,
            _ => 0,
        })
        .sum()
}

impl JobApi {
    pub(super) async fn submit_one(&self, org: OrgId, req: pb::SubmitJobRequest) -> Result<pb::SubmitJobResponse, DockyardError> {
        let now = now_ms();
        let job_id = JobId::generate(now);
        let span = info_span!("submit_job", job = %job_id, org = %org, engine = %req.engine, ligands = req.ligands.len());
        // The first span of the job's trace, under the job span recorded when it finishes.
        dockyard_common::telemetry::trace::set_job_parent(&span, job_id.as_str());
        // Counted (and refused when over the limit) before anything is stored.
        let bytes = inline_bytes(&req);
        self.auth.charge_bytes(&org, bytes).await?;
        let result = async {
            let sub = build_spec(&req, org.clone(), self.artifacts.clone(), &self.upload_dir, now, &self.limits).await?;
            let job = self
                .scheduler
                .ask(|reply| Command::Submit {
                    job: job_id.clone(),
                    spec: Box::new(sub.spec),
                    skipped: sub.skipped.into_iter().map(Into::into).collect(),
                    reply,
                })
                .await?;
            Ok(pb::SubmitJobResponse {
                job_id: job_id.to_string(),
                job: Some(job),
            })
        }
        .instrument(span)
        .await;
        if result.is_err() {
            self.auth.refund_bytes(&org, bytes).await;
        }
        result
    }

    /// The answers to a `SubmitJobs` stream. A request the client failed to send (a
    /// transport or decoding error) ends the stream with that error, after the answers to
    /// the requests before it.
    pub(super) fn submit_stream(
        &self,
        org: OrgId,
        requests: Streaming<pb::SubmitJobRequest>,
    ) -> impl Stream<Item = Result<pb::SubmitJobsResponse, Status>> + Send + 'static {
        let api = self.clone();
        requests
            .enumerate()
            .map(move |(index, req)| {
                let (api, org) = (api.clone(), org.clone());
                async move {
                    let outcome = match api.submit_one(org, req?).await {
                        Ok(submitted) => pb::submit_jobs_response::Outcome::Submitted(submitted),
                        Err(e) => pb::submit_jobs_response::Outcome::Refused(refusal(e)),
                    };
                    Ok(pb::SubmitJobsResponse {
                        index: index as u64,
                        outcome: Some(outcome),
                    })
                }
            })
            .buffered(IN_FLIGHT)
            // Nothing is read or answered after the first transport error.
            .scan(false, |failed, item: Result<_, Status>| {
                let out = (!*failed).then_some(item);
                if let Some(Err(_)) = &out {
                    *failed = true;
                }
                futures::future::ready(out)
            })
    }
}

/// The refusal SubmitJob would have answered with: the same code and message.
fn refusal(e: DockyardError) -> pb::SubmitRefusal {
    let st = Status::from(e);
    pb::SubmitRefusal {
        code: st.code() as i32,
        message: st.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_inputs_are_counted_uploads_are_not() {
        let req = pb::SubmitJobRequest {
            receptor: Some(pb::InputFile {
                name: "r.pdbqt".into(),
                source: Some(pb::input_file::Source::Content(vec![0; 10])),
            }),
            ligands: vec![
                pb::InputFile {
                    name: "l.pdbqt".into(),
                    source: Some(pb::input_file::Source::Content(vec![0; 5])),
                },
                pb::InputFile {
                    name: "u.pdbqt".into(),
                    source: Some(pb::input_file::Source::UploadId("sha256:00".into())),
                },
            ],
            ..Default::default()
        };
        assert_eq!(inline_bytes(&req), 15);
    }
}
