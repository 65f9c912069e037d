//! `dockyard.v1.AdminService`.

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use dockyard_common::ids::NodeId;
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::admin_service_server::AdminService;

use crate::cluster::election::LeaderView;
use crate::scheduler::{Command, SchedulerHandle};

pub struct AdminApi {
    pub scheduler: SchedulerHandle,
    pub leader: watch::Receiver<LeaderView>,
    pub coordinator_id: String,
    pub cluster: String,
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

    async fn get_leader(&self, _r: Request<pb::GetLeaderRequest>) -> Result<Response<pb::LeaderInfo>, Status> {
        let v = self.leader.borrow().clone();
        Ok(Response::new(pb::LeaderInfo {
            leader_endpoint: v.endpoint,
            this_is_leader: v.this_is_leader,
            epoch: v.epoch,
            coordinator_id: self.coordinator_id.clone(),
            cluster: self.cluster.clone(),
        }))
    }
}
