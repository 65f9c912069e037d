//! The gRPC services as the console calls them: in process, through the leader gate and
//! the authentication layer that guard the network port, so a console request is allowed
//! exactly what the same token may do over gRPC.

use std::convert::Infallible;

use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use dockyard_proto::v1::admin_service_client::AdminServiceClient;
use dockyard_proto::v1::job_service_client::JobServiceClient;

use crate::auth::layer::AuthLayer;
use crate::cluster::gate::LeaderGateLayer;

pub type InProc = BoxCloneSyncService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, Infallible>;

#[derive(Clone)]
pub struct Services {
    pub jobs: JobServiceClient<InProc>,
    pub admin: AdminServiceClient<InProc>,
}

impl Services {
    /// The job and admin services behind `gate` and `auth`, as the server stacks them.
    pub fn new<J, A>(jobs: J, admin: A, gate: LeaderGateLayer, auth: AuthLayer) -> Self
    where
        J: tonic::server::NamedService
            + tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        J::Future: Send + 'static,
        A: tonic::server::NamedService
            + tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        A::Future: Send + 'static,
    {
        let routes = tonic::service::Routes::new(jobs).add_service(admin);
        let svc = ServiceBuilder::new().layer(gate).layer(auth).service(routes);
        let svc: InProc = BoxCloneSyncService::new(svc);
        let max = 64 << 20;
        Services {
            jobs: JobServiceClient::new(svc.clone()).max_decoding_message_size(max),
            admin: AdminServiceClient::new(svc).max_decoding_message_size(max),
        }
    }
}

/// A gRPC request carrying the browser's `authorization` header, if any.
pub fn request<T>(headers: &http::HeaderMap, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| MetadataValue::try_from(v).ok())
    {
        r.metadata_mut().insert("authorization", v);
    }
    r
}
