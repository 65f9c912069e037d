//! `ArtifactStore` adapter that relays through the coordinator's AgentService, for agents
//! that cannot reach the store themselves (a `file://` store on another host).

use std::path::Path;
use std::sync::RwLock;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use dockyard_common::artifact::{sha256_hex, ArtifactKey, ArtifactStore, ObjectMeta};
use dockyard_common::error::DockyardError;
use dockyard_proto::v1 as pb;
use dockyard_proto::v1::agent_service_client::AgentServiceClient;

use crate::link::dial::AgentChannel;

const CHUNK: usize = 1 << 20;

pub struct CoordinatorRelayStore {
    client: RwLock<AgentServiceClient<AgentChannel>>,
    uri: String,
}

fn client_for(channel: AgentChannel) -> AgentServiceClient<AgentChannel> {
    AgentServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

impl CoordinatorRelayStore {
    pub fn new(channel: AgentChannel, uri: String) -> Self {
        CoordinatorRelayStore {
            client: RwLock::new(client_for(channel)),
            uri,
        }
    }

    /// Follows the leader: after a failover the relay goes to the new one.
    pub fn retarget(&self, channel: AgentChannel) {
        if let Ok(mut c) = self.client.write() {
            *c = client_for(channel);
        }
    }

    fn client(&self) -> AgentServiceClient<AgentChannel> {
        match self.client.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

fn status(e: tonic::Status) -> DockyardError {
    match e.code() {
        tonic::Code::NotFound => DockyardError::not_found(e.message().to_string()),
        tonic::Code::InvalidArgument => DockyardError::invalid("artifact", e.message().to_string()),
        _ => DockyardError::Storage(format!("coordinator relay: {}: {}", e.code(), e.message())),
    }
}

#[async_trait]
impl ArtifactStore for CoordinatorRelayStore {
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<ObjectMeta, DockyardError> {
        let mut msgs = vec![pb::StoreArtifactChunk {
            part: Some(pb::store_artifact_chunk::Part::Key(key.to_string())),
        }];
        for c in data.chunks(CHUNK) {
            msgs.push(pb::StoreArtifactChunk {
                part: Some(pb::store_artifact_chunk::Part::Data(c.to_vec())),
            });
        }
        let r = self
            .client()
            .store_artifact(tokio_stream::iter(msgs))
            .await
            .map_err(status)?
            .into_inner();
        let expect = sha256_hex(&data);
        if r.sha256 != expect {
            return Err(DockyardError::Storage(format!(
                "checksum mismatch storing {key}: sent {expect}, stored {}",
                r.sha256
            )));
        }
        Ok(ObjectMeta {
            size: r.size,
            sha256: r.sha256,
        })
    }

    async fn put_file(&self, key: &ArtifactKey, path: &Path) -> Result<ObjectMeta, DockyardError> {
        let mut f = tokio::fs::File::open(path).await?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).await?;
        self.put(key, Bytes::from(buf)).await
    }

    async fn get(&self, key: &ArtifactKey) -> Result<Bytes, DockyardError> {
        let mut s = self
            .client()
            .fetch_artifact(pb::FetchArtifactRequest { key: key.to_string() })
            .await
            .map_err(status)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(c) = s.message().await.map_err(status)? {
            out.extend_from_slice(&c.data);
        }
        Ok(Bytes::from(out))
    }

    async fn get_to_file(&self, key: &ArtifactKey, path: &Path) -> Result<u64, DockyardError> {
        let data = self.get(key).await?;
        let tmp = path.with_extension(format!("part{:08x}", rand::random::<u32>()));
        tokio::fs::write(&tmp, &data).await?;
        tokio::fs::rename(&tmp, path).await?;
        Ok(data.len() as u64)
    }

    async fn head(&self, key: &ArtifactKey) -> Result<Option<ObjectMeta>, DockyardError> {
        match self.get(key).await {
            Ok(b) => Ok(Some(ObjectMeta {
                size: b.len() as u64,
                sha256: sha256_hex(&b),
            })),
            Err(DockyardError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, _prefix: &str) -> Result<Vec<ArtifactKey>, DockyardError> {
        Err(DockyardError::FailedPrecondition(
            "listing is not available through the coordinator relay".into(),
        ))
    }

    async fn delete(&self, _key: &ArtifactKey) -> Result<(), DockyardError> {
        Err(DockyardError::FailedPrecondition(
            "deleting is not available through the coordinator relay".into(),
        ))
    }

    fn uri(&self) -> String {
        self.uri.clone()
    }
}
