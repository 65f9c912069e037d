//! `dockyard.v1.AdminService`.

use tonic::{Request, Response, Status};

use dockyard_common::ids::NodeId;
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::admin_service_server::AdminService;

use crate::scheduler::{Command, SchedulerHandle};

pub struct AdminApi {
    pub scheduler: SchedulerHandle,
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_nodes(&self, _r: Request<pb::ListNodesRequest>) -> Result<Response<pb::ListNodesResponse>, Status> {
        let nodes = self.scheduler.ask(|reply| Command::ListNodes { reply }).await?;
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn drain_node(&self, r: Request<pb::DrainNodeRequest>) -> Result<Response<pb::Node>, Status> {
        let node = NodeId::parse(&r.get_ref().node_id)?;
        Ok(Response::new(
            self.scheduler.ask(|reply| Command::Drain { node, drain: true, reply }).await?,
        ))
    }

    async fn undrain_node(&self, r: Request<pb::DrainNodeRequest>) -> Result<Response<pb::Node>, Status> {
        let node = NodeId::parse(&r.get_ref().node_id)?;
        Ok(Response::new(
            self.scheduler.ask(|reply| Command::Drain { node, drain: false, reply }).await?,
        ))
    }

    async fn queue_stats(&self, _r: Request<pb::QueueStatsRequest>) -> Result<Response<pb::QueueStatsResponse>, Status> {
        Ok(Response::new(self.scheduler.ask(|reply| Command::QueueStats { reply }).await?))
    }
}
