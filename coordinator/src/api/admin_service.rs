//! `dockyard.v1.AdminService`. Everything but `GetLeader` needs the admin role; the auth
//! layer has checked that before a handler runs.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use dockyard_common::error::DockyardError;
use dockyard_common::ids::{NodeId, OrgId};
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::admin_service_server::AdminService;

use crate::auth::{Auth, Limits, TokenRecord};
use crate::backup::Backups;
use crate::cluster::election::LeaderView;
use crate::scheduler::{Command, SchedulerHandle};

pub struct AdminApi {
    pub backups: Arc<Backups>,
    pub scheduler: SchedulerHandle,
    pub leader: watch::Receiver<LeaderView>,
    pub coordinator_id: String,
    pub cluster: String,
    pub auth: Arc<Auth>,
}

fn token_info(t: TokenRecord) -> pb::TokenInfo {
    pb::TokenInfo {
        token_id: t.id,
        org: t.org.unwrap_or_default(),
        admin: t.admin,
        description: t.description,
        created_at_ms: t.created_at_ms,
        revoked: t.revoked,
        revoked_at_ms: t.revoked_at_ms,
        expires_at_ms: t.expires_at_ms,
    }
}

fn org_of(field: &str) -> Result<OrgId, DockyardError> {
    OrgId::parse(field.trim()).map_err(|e| match e {
        DockyardError::InvalidArgument { reason, .. } => DockyardError::invalid("org", reason),
        other => other,
    })
}

impl AdminApi {
    async fn quota(&self, org: OrgId) -> Result<pb::Quota, DockyardError> {
        let l = self.auth.quotas().get(&org);
        let bytes = self.auth.store().usage(&org).await?;
        let o = org.clone();
        let (queued, running) = self.scheduler.ask(|reply| Command::OrgUsage { org: o, reply }).await?;
        Ok(pb::Quota {
            org: org.to_string(),
            max_queued_tasks: l.max_queued_tasks,
            max_running_tasks: l.max_running_tasks,
            max_bytes_stored: l.max_bytes_stored,
            max_running_share_pct: l.max_running_share_pct,
            queued_tasks: queued,
            running_tasks: running,
            bytes_stored: bytes,
        })
    }
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

    async fn create_token(&self, r: Request<pb::CreateTokenRequest>) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let req = r.into_inner();
        let org = if req.org.trim().is_empty() { None } else { Some(org_of(&req.org)?) };
        let (rec, token) = self.auth.create_token_for(org, req.admin, &req.description, req.ttl_s).await?;
        Ok(Response::new(pb::CreateTokenResponse {
            token_id: rec.id,
            token,
            org: rec.org.unwrap_or_default(),
        }))
    }

    async fn revoke_token(&self, r: Request<pb::RevokeTokenRequest>) -> Result<Response<pb::TokenInfo>, Status> {
        let rec = self.auth.revoke_token(r.get_ref().token_id.trim()).await?;
        Ok(Response::new(token_info(rec)))
    }

    async fn list_tokens(&self, _r: Request<pb::ListTokensRequest>) -> Result<Response<pb::ListTokensResponse>, Status> {
        let tokens = self.auth.list_tokens().into_iter().map(token_info).collect();
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }

    async fn set_quota(&self, r: Request<pb::SetQuotaRequest>) -> Result<Response<pb::Quota>, Status> {
        let req = r.into_inner();
        let org = org_of(&req.org)?;
        let l = Limits {
            max_queued_tasks: req.max_queued_tasks,
            max_running_tasks: req.max_running_tasks,
            max_bytes_stored: req.max_bytes_stored,
            max_running_share_pct: req.max_running_share_pct,
        };
        if l.max_running_share_pct > 100 {
            return Err(DockyardError::invalid(
                "max_running_share_pct",
                format!("{} is not a percentage (1-100, 0 = none)", l.max_running_share_pct),
            )
            .into());
        }
        self.auth.set_limits(&org, l).await?;
        Ok(Response::new(self.quota(org).await?))
    }

    async fn get_quota(&self, r: Request<pb::GetQuotaRequest>) -> Result<Response<pb::Quota>, Status> {
        let org = org_of(&r.get_ref().org)?;
        Ok(Response::new(self.quota(org).await?))
    }

    async fn backup(&self, r: Request<pb::BackupRequest>) -> Result<Response<pb::BackupResponse>, Status> {
        let to = r.get_ref().to.trim();
        if to.is_empty() {
            return Err(DockyardError::invalid("to", "give a location: file:///DIR or s3://BUCKET/PREFIX").into());
        }
        let (m, uri, seconds) = self.backups.backup(to).await?;
        Ok(Response::new(pb::BackupResponse {
            id: m.id.clone(),
            uri,
            commit_position: m.commit_position,
            bytes: m.parts.iter().map(|p| p.bytes).sum(),
            records: m
                .parts
                .iter()
                .filter(|p| p.name != crate::backup::format::ARTIFACTS_PART)
                .map(|p| p.records)
                .sum(),
            pause_ms: m.pause_ms,
            artifact_keys: m.artifact_keys,
            seconds,
        }))
    }
}
