//! Reading objects: streaming one through a sink while hashing it, and checking the hash
//! against the object's `sha256` metadata.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::{io_err, meta_sha256, S3Store, MAX_PREALLOC};
use crate::artifact::ArtifactKey;
use crate::error::DockyardError;

impl S3Store {
    /// (size, sha256 metadata) or None when the object does not exist.
    pub(super) async fn head_metadata(&self, key: &ArtifactKey) -> Result<Option<(u64, Option<String>)>, DockyardError> {
        let full = self.s3_key(key);
        let out = self
            .retrying("head", || async {
                self.client
                    .head_object()
                    .bucket(&self.opts.bucket)
                    .key(&full)
                    .send()
                    .await
                    .map_err(|e| self.sdk_err("HeadObject", Some(key), e))
            })
            .await;
        match out {
            Ok(o) => {
                let size = o.content_length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                Ok(Some((size, meta_sha256(o.metadata.as_ref()))))
            }
            Err(DockyardError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mismatch(&self, key: &ArtifactKey, expect: &str, got: &str) -> DockyardError {
        DockyardError::Storage(format!(
            "checksum mismatch reading {key} from S3 at {}: stored sha256 {expect}, received {got}; the object is corrupted \
             or was changed without Dockyard",
            self.target
        ))
    }

    /// Streams an object through `sink`; returns (bytes, sha256 hex, sha256 from metadata).
    pub(super) async fn stream_object<S>(&self, key: &ArtifactKey, sink: &mut S) -> Result<(u64, String, Option<String>), DockyardError>
    where
        S: ChunkSink,
    {
        let out = self
            .client
            .get_object()
            .bucket(&self.opts.bucket)
            .key(self.s3_key(key))
            .send()
            .await
            .map_err(|e| self.sdk_err("GetObject", Some(key), e))?;
        let expect = meta_sha256(out.metadata.as_ref());
        let declared = out.content_length.and_then(|n| u64::try_from(n).ok());
        sink.reserve(declared.unwrap_or(0));
        let mut body = out.body;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let chunk = body.try_next().await.map_err(|e| {
                DockyardError::Unavailable(format!(
                    "connection to S3 at {} lost while reading {key}: {}",
                    self.target,
                    DisplayErrorContext(&e)
                ))
            })?;
            let Some(chunk) = chunk else { break };
            hasher.update(&chunk);
            size += chunk.len() as u64;
            sink.write(chunk).await?;
        }
        if let Some(d) = declared {
            if d != size {
                return Err(DockyardError::Unavailable(format!(
                    "S3 at {} sent {size} of {d} bytes of {key}",
                    self.target
                )));
            }
        }
        Ok((size, hex::encode(hasher.finalize()), expect))
    }

    /// The first `len` bytes (a ranged GET; no checksum, which covers the whole object).
    pub(super) async fn read_range(&self, key: &ArtifactKey, len: usize) -> Result<Bytes, DockyardError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.opts.bucket)
            .key(self.s3_key(key))
            .range(format!("bytes=0-{}", len.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| self.sdk_err("GetObject", Some(key), e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| DockyardError::Unavailable(format!("connection to S3 at {} lost while reading {key}: {e}", self.target)))?;
        let b = body.into_bytes();
        Ok(b.slice(..len.min(b.len())))
    }

    pub(super) fn verify(&self, key: &ArtifactKey, got: &str, expect: Option<&str>) -> Result<(), DockyardError> {
        match expect {
            Some(e) if e != got => Err(self.mismatch(key, e, got)),
            Some(_) => Ok(()),
            None => {
                debug!(%key, "object has no sha256 metadata (not written by Dockyard); not verified");
                Ok(())
            }
        }
    }
}

/// Where `stream_object` puts the bytes: memory for `get`, a file for `get_to_file`.
#[async_trait]
pub(super) trait ChunkSink: Send {
    fn reserve(&mut self, _declared: u64) {}
    async fn write(&mut self, chunk: Bytes) -> Result<(), DockyardError>;
}

pub(super) struct MemorySink(pub(super) BytesMut);

#[async_trait]
impl ChunkSink for MemorySink {
    fn reserve(&mut self, declared: u64) {
        self.0.reserve(usize::try_from(declared).unwrap_or(MAX_PREALLOC).min(MAX_PREALLOC));
    }
    async fn write(&mut self, chunk: Bytes) -> Result<(), DockyardError> {
        self.0.extend_from_slice(&chunk);
        Ok(())
    }
}

pub(super) struct FileSink<'a>(pub(super) tokio::fs::File, pub(super) &'a Path);

#[async_trait]
impl ChunkSink for FileSink<'_> {
    async fn write(&mut self, chunk: Bytes) -> Result<(), DockyardError> {
        self.0.write_all(&chunk).await.map_err(|e| io_err(self.1, e))
    }
}

pub(super) struct HashSink;

#[async_trait]
impl ChunkSink for HashSink {
    async fn write(&mut self, _chunk: Bytes) -> Result<(), DockyardError> {
        Ok(())
    }
}
