//! `dockyard.v1.AgentService`: the per-agent bidi stream and artifact relay.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use dockyard_common::artifact::{ArtifactKey, ArtifactStore, JobFile, ParsedKey};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::{NodeId, TaskId};
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::agent_service_server::AgentService;
use dockyard_proto::PROTOCOL_VERSION;

use crate::auth::guard::until_revoked;
use crate::auth::{Auth, Caller};
use crate::scheduler::{Command, GpuInfo, Registration, SchedulerHandle};

/// Outbound messages buffered per agent. Credit-based dispatch keeps this small; an agent
/// that stops reading fills it and is evicted rather than stalling the scheduler.
const OUTBOUND_CAPACITY: usize = 256;
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
const CHUNK: usize = 1 << 20;

pub struct AgentApi {
    pub scheduler: SchedulerHandle,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub upload_dir: PathBuf,
    pub max_artifact_bytes: u64,
    pub auth: Arc<Auth>,
}

fn registration(r: pb::Register) -> Result<Registration, DockyardError> {
    if r.protocol_version != PROTOCOL_VERSION {
        return Err(DockyardError::FailedPrecondition(format!(
            "agent speaks protocol {} but this coordinator speaks {PROTOCOL_VERSION}; upgrade the older side",
            r.protocol_version
        )));
    }
    let node = NodeId::parse(&r.node_id)?;
    let cap = r.capacity.unwrap_or_default();
    if cap.cpu_slots == 0 {
        return Err(DockyardError::invalid("capacity.cpu_slots", "must be at least 1"));
    }
    let mut running = Vec::with_capacity(r.running.len());
    for t in r.running {
        running.push((TaskId::parse(&t.task_id)?, t.attempt));
    }
    Ok(Registration {
        node,
        slots: cap.cpu_slots,
        memory_bytes: cap.memory_bytes,
        gpus: cap
            .gpus
            .into_iter()
            .map(|g| GpuInfo {
                index: g.index,
                model: g.model,
                memory_bytes: g.memory_bytes,
            })
            .collect(),
        engines: r.engines,
        tools: r.tools,
        labels: r.labels.into_iter().collect(),
        hostname: r.hostname,
        agent_version: r.agent_version,
        running,
    })
}

/// Agents may write only under a task's output prefix.
fn output_key(key: &str) -> Result<ArtifactKey, DockyardError> {
    let k = ArtifactKey::new(key)?;
    match ParsedKey::of(&k) {
        Ok(ParsedKey::Job {
            file: JobFile::TaskOutput { .. },
            ..
        }) => Ok(k),
        _ => Err(DockyardError::invalid("key", format!("'{key}' is not under a task output prefix"))),
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ConnectStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

    async fn connect(&self, request: Request<Streaming<pb::AgentMessage>>) -> Result<Response<Self::ConnectStream>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
        let caller = Caller::of(&request)?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Register message within 10 s"))??;
        let reg = match first.and_then(|m| m.kind) {
            Some(pb::agent_message::Kind::Register(r)) => registration(r)?,
            _ => return Err(Status::failed_precondition("the first message on the stream must be Register")),
        };
        let node = reg.node.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOUND_CAPACITY);
        let conn = self.scheduler.ask(|reply| Command::Register { reg, outbound: tx, reply }).await?;
        info!(node = %node, peer = %peer, conn, "agent stream open");
        let scheduler = self.scheduler.clone();
        tokio::spawn(async move {
            let reason = loop {
                match inbound.message().await {
                    Ok(Some(m)) => {
                        let Some(kind) = m.kind else { continue };
                        if scheduler
                            .send(Command::Agent {
                                node: node.clone(),
                                conn,
                                msg: kind,
                            })
                            .await
                            .is_err()
                        {
                            break "coordinator shutting down".to_string();
                        }
                    }
                    Ok(None) => break "agent closed the stream".to_string(),
                    Err(e) => break format!("{}: {}", e.code(), e.message()),
                }
            };
            debug!(node = %node, conn, reason = %reason, "agent stream ended");
            let _ = scheduler.send(Command::Disconnected { node, conn, reason }).await;
        });
        // Join tokens and certificates cannot be revoked today; a stored token could be, and
        // its stream would end here like a client's.
        Ok(Response::new(until_revoked(Box::pin(ReceiverStream::new(rx)), &self.auth, &caller)))
    }

    type FetchArtifactStream = Pin<Box<dyn Stream<Item = Result<pb::ArtifactChunk, Status>> + Send>>;

    async fn fetch_artifact(&self, request: Request<pb::FetchArtifactRequest>) -> Result<Response<Self::FetchArtifactStream>, Status> {
        let key = ArtifactKey::new(request.get_ref().key.as_str())?;
        if !key.in_org_namespace() {
            return Err(DockyardError::invalid("key", "only organisation artifacts can be fetched").into());
        }
        let data = self.artifacts.get(&key).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut off = 0;
            loop {
                let end = (off + CHUNK).min(data.len());
                if tx
                    .send(Ok(pb::ArtifactChunk {
                        data: data.slice(off..end).to_vec(),
                    }))
                    .await
                    .is_err()
                {
                    break;
                }
                off = end;
                if off >= data.len() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn store_artifact(
        &self,
        request: Request<Streaming<pb::StoreArtifactChunk>>,
    ) -> Result<Response<pb::StoreArtifactResponse>, Status> {
        let mut stream = request.into_inner();
        tokio::fs::create_dir_all(&self.upload_dir).await.map_err(DockyardError::from)?;
        let tmp = self.upload_dir.join(format!("artifact-{:016x}", rand::random::<u64>()));
        // Removed even when the client goes away mid-stream (the request future is then dropped).
        let _tmp_guard = crate::submit::RemoveOnDrop(tmp.clone());
        let result = async {
            let mut key = None;
            let mut f = tokio::fs::File::create(&tmp).await.map_err(DockyardError::from)?;
            let mut size = 0u64;
            while let Some(chunk) = stream.message().await? {
                match chunk.part {
                    Some(pb::store_artifact_chunk::Part::Key(k)) if key.is_none() => key = Some(output_key(&k)?),
                    Some(pb::store_artifact_chunk::Part::Key(_)) => return Err(DockyardError::invalid("key", "sent twice").into()),
                    Some(pb::store_artifact_chunk::Part::Data(d)) => {
                        size += d.len() as u64;
                        if size > self.max_artifact_bytes {
                            return Err(DockyardError::ResourceExhausted(format!(
                                "artifact larger than {} bytes",
                                self.max_artifact_bytes
                            ))
                            .into());
                        }
                        f.write_all(&d).await.map_err(DockyardError::from)?;
                    }
                    None => {}
                }
            }
            f.flush().await.map_err(DockyardError::from)?;
            let key = key.ok_or_else(|| DockyardError::invalid("key", "missing: the first message must carry the key"))?;
            let meta = self.artifacts.put_file(&key, &tmp).await?;
            Ok::<_, Status>(pb::StoreArtifactResponse {
                key: key.to_string(),
                size: meta.size,
                sha256: meta.sha256,
            })
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        if let Err(e) = &result {
            warn!(error = %e, "artifact upload from agent refused");
        }
        Ok(Response::new(result?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_write_only_under_task_outputs() {
        let job = "018f2a3b4c5d0123abcd";
        assert!(output_key(&format!("orgs/default/jobs/{job}/tasks/0/a1e2/lig_0.pdbqt")).is_ok());
        assert!(output_key(&format!("orgs/default/jobs/{job}/tasks/0/a1/lig_0.pdbqt")).is_ok());
        assert!(output_key("orgs/default/inputs/sha256/aa").is_err());
        assert!(output_key("orgs/default/jobs/../tasks/0/x").is_err());
        assert!(output_key(&format!("orgs/default/jobs/{job}/spec.json")).is_err());
        assert!(output_key(&format!("orgs/default/jobs/{job}/commits/00000000000000000001-000000000001.json")).is_err());
        assert!(output_key(&format!("orgs/default/jobs/{job}/tasks/0/a1e2")).is_err());
    }
}
