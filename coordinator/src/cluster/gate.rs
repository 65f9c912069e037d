//! Standbys redirect: every Dockyard RPC on a coordinator that does not lead is answered
//! `UNAVAILABLE` with the leader's endpoint in the `dockyard-leader` trailer (and in the
//! message, for grpcurl users). `AdminService/GetLeader`, health and reflection always pass.
//! Clients and agents resolve the leader with `GetLeader` before they call anything else.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::codegen::http;
use tower::{Layer, Service};

use super::election::LeaderView;

pub const LEADER_METADATA: &str = "dockyard-leader";
const GET_LEADER_PATH: &str = "/dockyard.v1.AdminService/GetLeader";

#[derive(Clone)]
pub struct LeaderGateLayer {
    view: watch::Receiver<LeaderView>,
}

impl LeaderGateLayer {
    pub fn new(view: watch::Receiver<LeaderView>) -> Self {
        LeaderGateLayer { view }
    }
}

impl<S> Layer<S> for LeaderGateLayer {
    type Service = LeaderGate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LeaderGate {
            inner,
            view: self.view.clone(),
        }
    }
}

#[derive(Clone)]
pub struct LeaderGate<S> {
    inner: S,
    view: watch::Receiver<LeaderView>,
}

/// `Some(status)` when this request must be turned away.
fn refusal(path: &str, view: &LeaderView) -> Option<tonic::Status> {
    if view.this_is_leader || !path.starts_with("/dockyard.v1.") || path == GET_LEADER_PATH {
        return None;
    }
    let mut st = if view.endpoint.is_empty() {
        tonic::Status::unavailable("this coordinator is a standby and no leader is elected yet; retry shortly")
    } else {
        tonic::Status::unavailable(format!("this coordinator is a standby; the leader is {}", view.endpoint))
    };
    if let Ok(v) = view.endpoint.parse() {
        st.metadata_mut().insert(LEADER_METADATA, v);
    }
    Some(st)
}

impl<S, B> Service<http::Request<B>> for LeaderGate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(st) = refusal(req.uri().path(), &self.view.borrow()) {
            let resp = st.into_http::<tonic::body::Body>();
            return Box::pin(async move { Ok(resp) });
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standbys_turn_away_dockyard_calls_but_not_get_leader_or_health() {
        let standby = LeaderView {
            endpoint: "http://10.0.0.1:50051".into(),
            epoch: 7,
            this_is_leader: false,
        };
        let st = refusal("/dockyard.v1.JobService/SubmitJob", &standby).expect("refused");
        assert_eq!(st.code(), tonic::Code::Unavailable);
        assert!(st.message().contains("http://10.0.0.1:50051"));
        assert_eq!(
            st.metadata().get(LEADER_METADATA).and_then(|v| v.to_str().ok()),
            Some("http://10.0.0.1:50051")
        );
        assert!(refusal(GET_LEADER_PATH, &standby).is_none());
        assert!(refusal("/grpc.health.v1.Health/Check", &standby).is_none());
        let leader = LeaderView {
            this_is_leader: true,
            ..standby
        };
        assert!(refusal("/dockyard.v1.JobService/SubmitJob", &leader).is_none());
    }
}
