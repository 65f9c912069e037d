//! An artifact store that can be replaced while the agent runs: it starts as the relay
//! through the coordinator and becomes the coordinator's own s3:// store when the leader
//! says which store it uses, so bulk bytes never pass through the coordinator.

use std::path::Path;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;

use dockyard_common::artifact::{ArtifactKey, ArtifactStore, ObjectMeta};
use dockyard_common::error::DockyardError;

pub struct SwapStore {
    inner: RwLock<Arc<dyn ArtifactStore>>,
}

impl SwapStore {
    pub fn new(inner: Arc<dyn ArtifactStore>) -> Self {
        SwapStore { inner: RwLock::new(inner) }
    }

    pub fn replace(&self, store: Arc<dyn ArtifactStore>) {
        if let Ok(mut g) = self.inner.write() {
            *g = store;
        }
    }

    fn current(&self) -> Arc<dyn ArtifactStore> {
        match self.inner.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }
}

#[async_trait]
impl ArtifactStore for SwapStore {
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<ObjectMeta, DockyardError> {
        self.current().put(key, data).await
    }
    async fn put_file(&self, key: &ArtifactKey, path: &Path) -> Result<ObjectMeta, DockyardError> {
        self.current().put_file(key, path).await
    }
    async fn get(&self, key: &ArtifactKey) -> Result<Bytes, DockyardError> {
        self.current().get(key).await
    }
    async fn get_to_file(&self, key: &ArtifactKey, path: &Path) -> Result<u64, DockyardError> {
        self.current().get_to_file(key, path).await
    }
    async fn head(&self, key: &ArtifactKey) -> Result<Option<ObjectMeta>, DockyardError> {
        self.current().head(key).await
    }
    async fn get_prefix(&self, key: &ArtifactKey, len: usize) -> Result<Bytes, DockyardError> {
        self.current().get_prefix(key, len).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ArtifactKey>, DockyardError> {
        self.current().list(prefix).await
    }
    async fn delete(&self, key: &ArtifactKey) -> Result<(), DockyardError> {
        self.current().delete(key).await
    }
    fn uri(&self) -> String {
        self.current().uri()
    }
}
