//! Downloads: the results as CSV (the same writer and page size as `dockyard results
//! --format csv`, so the files match) and the poses as SDF, streamed page by page.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use dockyard_common::results_export::{write_sdf_records, Format, Ranking, ResultsWriter, EXPORT_PAGE};
use dockyard_proto::v1 as pb;

use super::api::ApiError;
use super::inproc::{request, Services};

/// Pages in flight between the reader and the HTTP body: a slow download holds the reader.
const BUFFERED_PAGES: usize = 4;

/// A job's results, best first, one ListResults page of `EXPORT_PAGE` at a time.
pub(super) struct Pages {
    s: Services,
    h: HeaderMap,
    req: pb::ListResultsRequest,
    done: bool,
}

impl Pages {
    pub(super) fn new(s: Services, h: HeaderMap, job: String) -> Self {
        Pages {
            s,
            h,
            req: pb::ListResultsRequest {
                job_id: job,
                page_size: EXPORT_PAGE as u32,
                ..Default::default()
            },
            done: false,
        }
    }

    pub(super) async fn next(&mut self) -> Result<Option<(Vec<pb::LigandResult>, Ranking)>, tonic::Status> {
        if self.done {
            return Ok(None);
        }
        let r = self
            .s
            .jobs
            .clone()
            .list_results(request(&self.h, self.req.clone()))
            .await?
            .into_inner();
        self.done = r.next_page_token.is_empty() || r.results.is_empty();
        self.req.page_token = r.next_page_token;
        let ranking = Ranking {
            key: r.rank_by,
            stage_columns: r.stage_columns,
        };
        Ok(Some((r.results, ranking)))
    }
}

fn attachment(body: Body, kind: &'static str, name: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

fn body(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

pub async fn csv(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut pages = Pages::new(s, h, id.clone());
    // The first page before the response: a refusal gets its status, not a broken file.
    let first = pages.next().await?.unwrap_or_default();
    let (tx, rx) = mpsc::channel(BUFFERED_PAGES);
    tokio::spawn(async move {
        let mut w = ResultsWriter::new(Vec::new(), Format::Csv);
        let mut page = Some(Ok::<_, tonic::Status>(first));
        while let Some(p) = page {
            let sent = match p.map_err(|st| std::io::Error::other(st.message().to_string())) {
                Ok((rows, ranking)) => w.page(&rows, &ranking).map(|()| Bytes::from(std::mem::take(w.sink_mut()))),
                Err(e) => Err(e),
            };
            let failed = sent.is_err();
            if tx.send(sent).await.is_err() || failed {
                return;
            }
            page = pages.next().await.transpose();
        }
        let _ = match w.finish() {
            Ok((rest, _)) => tx.send(Ok(Bytes::from(rest))).await,
            Err(e) => tx.send(Err(e)).await,
        };
    });
    Ok(attachment(body(rx), "text/csv; charset=utf-8", format!("{id}.csv")))
}

pub async fn sdf(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let artifacts = (s.clone(), h.clone());
    let mut pages = Pages::new(s, h, id.clone());
    let first = pages.next().await?.unwrap_or_default();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(BUFFERED_PAGES);
    tokio::spawn(async move {
        let mut rank = 0usize;
        let mut page = Some(Ok::<_, tonic::Status>(first));
        while let Some(p) = page {
            let (rows, _) = match p {
                Ok(p) => p,
                Err(st) => {
                    let _ = tx.send(Err(std::io::Error::other(st.message().to_string()))).await;
                    return;
                }
            };
            for r in rows {
                rank += 1;
                if r.sdf_key.is_empty() {
                    continue;
                }
                let chunk = match artifact(&artifacts.0, &artifacts.1, &r.sdf_key).await {
                    Ok(data) => {
                        let mut out = Vec::new();
                        write_sdf_records(&mut out, &r, rank, &data).map(|_| Bytes::from(out))
                    }
                    Err(st) => Err(std::io::Error::other(st.message().to_string())),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
            page = pages.next().await.transpose();
        }
    });
    Ok(attachment(body(rx), "chemical/x-mdl-sdfile", format!("{id}.sdf")))
}

async fn artifact(s: &Services, h: &HeaderMap, key: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = s
        .jobs
        .clone()
        .get_artifact(request(h, pb::GetArtifactRequest { key: key.to_string() }))
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(c) = stream.message().await? {
        data.extend_from_slice(&c.data);
    }
    Ok(data)
}
