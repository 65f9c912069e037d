//! The `ArtifactStore` port: job inputs, poses and logs. Adapters sit beside it, one per file.

#[cfg(feature = "metrics-http")]
mod codec_metrics;
mod compressed;
mod key;
mod local;
#[cfg(feature = "cloud")]
mod s3;
/// The one `unsafe` call of this crate: a clock std does not offer.
#[allow(unsafe_code)]
mod thread_cpu;
mod timed;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

#[cfg(feature = "metrics-http")]
pub use codec_metrics::CodecCollector;
pub use compressed::{is_compressed, CodecStats, CompressedStore, Compression, MAX_DECODED_BYTES};
pub use key::{ArtifactKey, JobFile, OutputPrefix, ParsedKey, TaskFile};
pub use local::LocalStore;
#[cfg(feature = "cloud")]
pub use s3::{S3Options, S3Preset, S3Store, PART_SIZE as S3_PART_SIZE};
pub use timed::{StoreObserver, StoreOp, TimedStore};

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
    /// The object's first `len` bytes (fewer if it is shorter), for a format's header. The
    /// default reads the whole object; adapters that can read a range do.
    async fn get_prefix(&self, key: &ArtifactKey, len: usize) -> Result<Bytes, DockyardError> {
        let b = self.get(key).await?;
        Ok(b.slice(..len.min(b.len())))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ArtifactKey>, DockyardError>;
    async fn delete(&self, key: &ArtifactKey) -> Result<(), DockyardError>;
    /// The URI this store was opened from, for logs.
    fn uri(&self) -> String;
}

/// Opens a store from a URI: `file:///abs/dir`, `file://relative/dir`, or
/// `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&preset=minio&path_style=true]` (see `S3Store`).
pub async fn open(uri: &str) -> Result<Arc<dyn ArtifactStore>, DockyardError> {
    #[cfg(feature = "cloud")]
    if uri.starts_with("s3://") {
        return Ok(Arc::new(S3Store::open(uri).await?));
    }
    resolve(uri)
}

/// Opens a `file://` store without a runtime; `s3://` needs the async `open`.
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
            "s3:// stores are opened with the async `dockyard_common::artifact::open(uri)`; `resolve` only opens file:// stores",
        ));
    }
    Err(DockyardError::invalid(
        "artifacts",
        format!("'{uri}' is not a supported store URI (file://DIR or s3://BUCKET/PREFIX)"),
    ))
}

pub fn sha256_hex(data: &[u8]) -> String {
    crate::digest::Sha256::of(data).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_points_s3_uris_to_open() {
        let e = resolve("s3://bucket/prefix").err().expect("s3 via resolve");
        assert!(matches!(e, DockyardError::InvalidArgument { .. }), "{e:?}");
        assert!(e.to_string().contains("artifact::open"), "{e}");
    }

    #[tokio::test]
    async fn open_handles_file_and_refuses_unknown_schemes() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = open(&format!("file://{}", dir.path().display())).await.expect("file store");
        assert!(s.uri().starts_with("file://"));
        let e = open("ftp://x").await.err().expect("ftp");
        assert!(e.to_string().contains("s3://"), "{e}");
        let e = open("s3://Bad_Bucket").await.err().expect("bad bucket");
        assert!(e.to_string().contains("not a valid bucket name"), "{e}");
    }
}
