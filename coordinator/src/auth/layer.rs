//! The one place requests are authenticated: a tower layer in front of every service. It
//! decides what a path needs ([`access`]), checks the bearer token (or the agent's client
//! certificate), and puts the [`Caller`] in the request extensions for handlers to scope
//! with. Refusals never reach a handler: UNAUTHENTICATED says what credential is missing
//! or wrong, PERMISSION_DENIED that an organisation token called an admin method.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use super::{Access, Auth};

const GET_LEADER_PATH: &str = "/dockyard.v1.AdminService/GetLeader";

/// What a gRPC path needs. Anything under `dockyard.v1` not listed is admin-only, so a new
/// service is closed until someone decides otherwise.
pub fn access(path: &str) -> Access {
    if !path.starts_with("/dockyard.v1.") || path == GET_LEADER_PATH {
        // Health, reflection, and finding the leader (clients and agents do it first).
        Access::Open
    } else if path.starts_with("/dockyard.v1.JobService/") {
        Access::Client
    } else if path.starts_with("/dockyard.v1.AgentService/") {
        Access::Agent
    } else {
        Access::Admin
    }
}

/// The token of an `authorization: Bearer TOKEN` header (the scheme case-insensitively).
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Auth>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Auth>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was not polled ready goes back; the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(&self.auth);
        Box::pin(async move {
            let need = access(req.uri().path());
            // rustls verified the chain against --tls-client-ca before any request got here.
            let verified_cert = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.peer_certs())
                .is_some_and(|c| !c.is_empty());
            let token = bearer(req.headers()).map(str::to_string);
            match auth.authenticate(need, token.as_deref(), verified_cert).await {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    inner.call(req).await
                }
                Err(e) => Ok(tonic::Status::from(e).into_http::<tonic::body::Body>()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_what_they_need() {
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), Access::Open);
        assert_eq!(access(GET_LEADER_PATH), Access::Open);
        assert_eq!(access("/dockyard.v1.JobService/SubmitJob"), Access::Client);
        assert_eq!(access("/dockyard.v1.AgentService/Connect"), Access::Agent);
        assert_eq!(access("/dockyard.v1.AdminService/ListNodes"), Access::Admin);
        assert_eq!(access("/dockyard.v1.AdminService/CreateToken"), Access::Admin);
        assert_eq!(access("/dockyard.v1.NewService/Anything"), Access::Admin);
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer dyk_x_y"));
        assert_eq!(bearer(&h), Some("dyk_x_y"));
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
