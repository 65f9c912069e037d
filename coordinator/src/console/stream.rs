//! Live pages without a polling loop in the page: server-sent events. A job's come from
//! WatchJob (the scheduler pushes each change); the cluster's are read once a second here,
//! one pair of calls per open page, until the page goes away.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::json;

use dockyard_proto::v1 as pb;

use super::api::ApiError;
use super::inproc::{request, Services};
use super::json;

const CLUSTER_EVERY: Duration = Duration::from_secs(1);

pub async fn job(
    State(s): State<Services>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let events = s
        .jobs
        .clone()
        .watch_job(request(&h, pb::WatchJobRequest { job_id: id }))
        .await?
        .into_inner();
    let out = events.map(|ev| {
        Ok(match ev {
            Ok(e) => Event::default().event("job").data(
                json!({
                    "job": e.job.as_ref().map(json::job),
                    "final": e.r#final,
                    "top_hits": e.top_hits.iter().enumerate().map(|(i, r)| json::result(i + 1, r)).collect::<Vec<_>>(),
                })
                .to_string(),
            ),
            Err(st) => Event::default().event("failed").data(json!({"message": st.message()}).to_string()),
        })
    });
    Ok(Sse::new(out).keep_alive(KeepAlive::default()))
}

/// Queue depth and counters, and the nodes, every second (admin: the calls need it).
pub async fn cluster(State(s): State<Services>, h: HeaderMap) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Refuse up front, with a status, rather than in the first event.
    s.admin.clone().queue_stats(request(&h, pb::QueueStatsRequest {})).await?;
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(CLUSTER_EVERY));
    let out = ticks
        .then(move |_| {
            let (s, h) = (s.clone(), h.clone());
            async move {
                let q = s.admin.clone().queue_stats(request(&h, pb::QueueStatsRequest {})).await;
                let n = s.admin.clone().list_nodes(request(&h, pb::ListNodesRequest {})).await;
                match (q, n) {
                    (Ok(q), Ok(n)) => Ok(Event::default().event("cluster").data(
                        json!({
                            "at_ms": dockyard_common::time::now_ms(),
                            "queue": json::queue(&q.into_inner()),
                            "nodes": n.into_inner().nodes.iter().map(json::node).collect::<Vec<_>>(),
                        })
                        .to_string(),
                    )),
                    (Err(st), _) | (_, Err(st)) => Err(Event::default().event("failed").data(json!({"message": st.message()}).to_string())),
                }
            }
        })
        // A refusal (a revoked token) ends the stream after saying why.
        .scan(false, |ended, ev| {
            if *ended {
                return futures::future::ready(None);
            }
            let ev = ev.unwrap_or_else(|failed| {
                *ended = true;
                failed
            });
            futures::future::ready(Some(ev))
        })
        .map(Ok);
    Ok(Sse::new(out).keep_alive(KeepAlive::default()))
}
