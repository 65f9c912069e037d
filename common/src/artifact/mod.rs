//! The `ArtifactStore` port: job inputs, poses and logs. Adapters sit beside it, one per file.

mod key;
mod local;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use key::ArtifactKey;
pub use local::LocalStore;

use crate::error::DockyardError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Writes the whole object; readers never see a partial one.
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<ObjectMeta, DockyardError>;
    /// Streams a local file into the store.
    async fn put_file(&self, key: &ArtifactKey, path: &Path) -> Result<ObjectMeta, DockyardError>;
    async fn get(&self, key: &ArtifactKey) -> Result<Bytes, DockyardError>;
    /// Streams an object into a local file (written atomically).
    async fn get_to_file(&self, key: &ArtifactKey, path: &Path) -> Result<u64, DockyardError>;
    async fn head(&self, key: &ArtifactKey) -> Result<Option<ObjectMeta>, DockyardError>;
    async fn list(&self, prefix: &str) -> Result<Vec<ArtifactKey>, DockyardError>;
    async fn delete(&self, key: &ArtifactKey) -> Result<(), DockyardError>;
    /// The URI this store was opened from, for logs.
    fn uri(&self) -> String;
}

/// Opens a store from a URI: `file:///abs/dir` or `file://relative/dir`.
pub fn resolve(uri: &str) -> Result<Arc<dyn ArtifactStore>, DockyardError> {
    if let Some(path) = uri.strip_prefix("file://") {
        if path.is_empty() {
            return Err(DockyardError::invalid(
                "artifacts",
                "file:// needs a folder, e.g. file:///var/lib/dockyard/artifacts",
            ));
        }
        return Ok(Arc::new(LocalStore::open(path)?));
    }
    if uri.starts_with("s3://") {
        return Err(DockyardError::invalid(
            "artifacts",
            "s3:// stores are not available in this build yet; use file://DIR",
        ));
    }
    Err(DockyardError::invalid(
        "artifacts",
        format!("'{uri}' is not a supported store URI (file://DIR)"),
    ))
}

/// Content address of input bytes, under the organisation's namespace.
pub fn input_key(org: &crate::ids::OrgId, sha256_hex: &str) -> Result<ArtifactKey, DockyardError> {
    ArtifactKey::new(format!("orgs/{org}/inputs/sha256/{sha256_hex}"))
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
