//! JSON over the gRPC services: each handler is one or a few in-process calls with the
//! browser's token; a refusal comes back with its HTTP status and the server's message.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use dockyard_proto::v1 as pb;

use super::inproc::{request, Services};
use super::json;

/// A gRPC status as the page sees it: the HTTP status a browser expects, and the message.
pub struct ApiError(pub tonic::Status);

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        ApiError(s)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.0.code() {
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            code,
            Json(json!({"code": format!("{:?}", self.0.code()), "message": self.0.message()})),
        )
            .into_response()
    }
}

pub type ApiResult = Result<Json<Value>, ApiError>;

/// Who the token is: jobs readable at all (else 401), and whether the admin pages apply
/// (the admin service answers it, else 403).
pub async fn session(State(s): State<Services>, h: HeaderMap) -> ApiResult {
    s.jobs
        .clone()
        .list_jobs(request(
            &h,
            pb::ListJobsRequest {
                page_size: 1,
                ..Default::default()
            },
        ))
        .await?;
    let admin = match s.admin.clone().queue_stats(request(&h, pb::QueueStatsRequest {})).await {
        Ok(_) => true,
        Err(st) if st.code() == tonic::Code::PermissionDenied => false,
        Err(st) => return Err(st.into()),
    };
    let leader = s.admin.clone().get_leader(request(&h, pb::GetLeaderRequest {})).await?.into_inner();
    Ok(Json(
        json!({"admin": admin, "coordinator_id": leader.coordinator_id, "cluster": leader.cluster}),
    ))
}

pub async fn nodes(State(s): State<Services>, h: HeaderMap) -> ApiResult {
    let r = s.admin.clone().list_nodes(request(&h, pb::ListNodesRequest {})).await?.into_inner();
    Ok(Json(json!(r.nodes.iter().map(json::node).collect::<Vec<_>>())))
}

pub async fn drain(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let n = s
        .admin
        .clone()
        .drain_node(request(&h, pb::DrainNodeRequest { node_id: id }))
        .await?
        .into_inner();
    Ok(Json(json::node(&n)))
}

pub async fn undrain(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let n = s
        .admin
        .clone()
        .undrain_node(request(&h, pb::DrainNodeRequest { node_id: id }))
        .await?
        .into_inner();
    Ok(Json(json::node(&n)))
}

pub async fn queue(State(s): State<Services>, h: HeaderMap) -> ApiResult {
    let q = s
        .admin
        .clone()
        .queue_stats(request(&h, pb::QueueStatsRequest {}))
        .await?
        .into_inner();
    Ok(Json(json::queue(&q)))
}

#[derive(Deserialize)]
pub struct JobsQuery {
    #[serde(default)]
    org: String,
    #[serde(default)]
    state: String,
    limit: Option<u32>,
}

/// The newest jobs (one page of up to `limit`, 200 by default), filtered by state here.
pub async fn jobs(State(s): State<Services>, h: HeaderMap, Query(q): Query<JobsQuery>) -> ApiResult {
    let r = s
        .jobs
        .clone()
        .list_jobs(request(
            &h,
            pb::ListJobsRequest {
                page_size: q.limit.unwrap_or(200).clamp(1, 1000),
                page_token: String::new(),
                org: q.org,
            },
        ))
        .await?
        .into_inner();
    let jobs: Vec<Value> = r
        .jobs
        .iter()
        .filter(|j| q.state.is_empty() || json::job_state(j.state) == q.state)
        .map(json::job)
        .collect();
    Ok(Json(json!({"jobs": jobs, "more": !r.next_page_token.is_empty()})))
}

pub async fn job(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let j = s
        .jobs
        .clone()
        .get_job(request(&h, pb::GetJobRequest { job_id: id }))
        .await?
        .into_inner();
    Ok(Json(json::job(&j)))
}

pub async fn cancel(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let req = pb::CancelJobRequest {
        job_id: id,
        reason: "cancelled from the web console".into(),
    };
    let j = s.jobs.clone().cancel_job(request(&h, req)).await?.into_inner();
    Ok(Json(json::job(&j)))
}

#[derive(Deserialize)]
pub struct ResultsQuery {
    top: Option<u32>,
    #[serde(default)]
    rank_by: String,
}

/// The best `top` results (50 by default, at most 1000).
pub async fn results(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>, Query(q): Query<ResultsQuery>) -> ApiResult {
    let req = pb::ListResultsRequest {
        job_id: id,
        page_size: q.top.unwrap_or(50).clamp(1, 1000),
        rank_by: q.rank_by,
        ..Default::default()
    };
    let r = s.jobs.clone().list_results(request(&h, req)).await?.into_inner();
    let rows: Vec<Value> = r.results.iter().enumerate().map(|(i, x)| json::result(i + 1, x)).collect();
    Ok(Json(json!({"total": r.total, "rank_by": r.rank_by, "results": rows})))
}

#[derive(Deserialize)]
pub struct HistogramQuery {
    bins: Option<usize>,
}

/// The distribution of every result's score, read page by page.
pub async fn histogram(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>, Query(q): Query<HistogramQuery>) -> ApiResult {
    let mut scores = Vec::new();
    let mut pages = super::export::Pages::new(s, h, id);
    while let Some((rows, _)) = pages.next().await? {
        scores.extend(rows.iter().map(|x| x.score));
    }
    Ok(Json(json::histogram(&scores, q.bins.unwrap_or(30))))
}

pub async fn report(State(s): State<Services>, h: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let r = s
        .jobs
        .clone()
        .get_job_report(request(&h, pb::GetJobRequest { job_id: id }))
        .await?
        .into_inner();
    Ok(Json(json::report(&r)))
}
