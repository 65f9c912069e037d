//! Writing objects: single PUTs, and multipart uploads that hold one part in memory at a time
//! and never leave an incomplete upload behind.

use std::path::PathBuf;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

use super::{content_md5, io_err, S3Store, MAX_PARTS, META_SHA256, PART_SIZE};
use crate::artifact::{ArtifactKey, ObjectMeta};
use crate::error::DockyardError;

/// Where the bytes of an upload come from: at most one part is held in memory at a time.
pub(super) enum PartSource {
    Memory(Bytes),
    File(tokio::fs::File, PathBuf),
}

impl PartSource {
    async fn next_part(&mut self, part_size: u64) -> Result<Option<Bytes>, DockyardError> {
        match self {
            PartSource::Memory(b) if b.is_empty() => Ok(None),
            PartSource::Memory(b) => {
                let n = b.len().min(usize::try_from(part_size).unwrap_or(usize::MAX));
                Ok(Some(b.split_to(n)))
            }
            PartSource::File(f, p) => {
                let cap = usize::try_from(part_size).unwrap_or(usize::MAX);
                let mut buf = Vec::with_capacity(cap);
                (&mut *f).take(part_size).read_to_end(&mut buf).await.map_err(|e| io_err(p, e))?;
                Ok((!buf.is_empty()).then(|| Bytes::from(buf)))
            }
        }
    }
}

/// Aborts a multipart upload when the future driving it is dropped (a cancelled request), so
/// no incomplete upload is left behind to be billed. Error paths abort explicitly and disarm.
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortGuard {
    fn disarm(&mut self) -> Option<String> {
        self.upload_id.take()
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            warn!(key = %self.key, %upload_id, "multipart upload left incomplete: no runtime to abort it");
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        rt.spawn(async move { abort_upload(&client, &bucket, &key, &upload_id).await });
    }
}

async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => debug!(%key, %upload_id, "aborted incomplete multipart upload"),
        Err(e) => warn!(
            %key,
            %upload_id,
            error = %DisplayErrorContext(&e),
            "could not abort multipart upload; a bucket lifecycle rule (AbortIncompleteMultipartUpload) will have to clean it up"
        ),
    }
}

impl S3Store {
    pub(super) async fn put_single(&self, full: &str, data: Bytes, sha: &str) -> Result<(), DockyardError> {
        let md5 = content_md5(&data);
        self.retrying("put", || async {
            self.client
                .put_object()
                .bucket(&self.opts.bucket)
                .key(full)
                .content_md5(&md5)
                .content_type("application/octet-stream")
                .metadata(META_SHA256, sha)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map_err(|e| self.sdk_err("PutObject", None, e))
        })
        .await?;
        Ok(())
    }

    /// Uploads `src` part by part. `meta` is the content's size and hash, known beforehand
    /// because S3 takes user metadata only when the upload is created; the parts are hashed
    /// again as they go so a file that changed between the two passes is refused.
    pub(super) async fn put_multipart(
        &self,
        key: &ArtifactKey,
        mut src: PartSource,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta, DockyardError> {
        let full = self.s3_key(key);
        let part_size = PART_SIZE.max(meta.size.div_ceil(MAX_PARTS));
        let created = self
            .retrying("create multipart upload", || async {
                self.client
                    .create_multipart_upload()
                    .bucket(&self.opts.bucket)
                    .key(&full)
                    .content_type("application/octet-stream")
                    .metadata(META_SHA256, &meta.sha256)
                    .send()
                    .await
                    .map_err(|e| self.sdk_err("CreateMultipartUpload", Some(key), e))
            })
            .await?;
        let upload_id = created
            .upload_id
            .ok_or_else(|| DockyardError::Storage(format!("S3 at {} started an upload for {key} without an upload id", self.target)))?;
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.opts.bucket.clone(),
            key: full.clone(),
            upload_id: Some(upload_id.clone()),
        };
        let result = self.upload_parts(key, &full, &upload_id, &mut src, part_size, &meta).await;
        if let Some(id) = guard.disarm() {
            if let Err(e) = &result {
                warn!(%key, upload_id = %id, error = %e, "multipart upload failed; aborting it");
                abort_upload(&self.client, &self.opts.bucket, &full, &id).await;
            }
        }
        match result {
            Ok(()) => Ok(meta),
            // NoSuchUpload: someone (a lifecycle rule, an operator) aborted it under us. The
            // caller asked to store, so "not found" would mislead.
            Err(DockyardError::NotFound { .. }) => Err(DockyardError::Storage(format!(
                "{key}: S3 at {} dropped the multipart upload before it completed",
                self.target
            ))),
            Err(e) => Err(e),
        }
    }

    async fn upload_parts(
        &self,
        key: &ArtifactKey,
        full: &str,
        upload_id: &str,
        src: &mut PartSource,
        part_size: u64,
        meta: &ObjectMeta,
    ) -> Result<(), DockyardError> {
        let mut parts = Vec::new();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut number = 1i32;
        while let Some(part) = src.next_part(part_size).await? {
            hasher.update(&part);
            size += part.len() as u64;
            let md5 = content_md5(&part);
            let out = self
                .retrying("upload part", || async {
                    self.client
                        .upload_part()
                        .bucket(&self.opts.bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(number)
                        .content_md5(&md5)
                        .body(ByteStream::from(part.clone()))
                        .send()
                        .await
                        .map_err(|e| self.sdk_err("UploadPart", Some(key), e))
                })
                .await?;
            let etag = out
                .e_tag
                .ok_or_else(|| DockyardError::Storage(format!("S3 at {} returned no ETag for part {number} of {key}", self.target)))?;
            parts.push(CompletedPart::builder().part_number(number).e_tag(etag).build());
            number += 1;
        }
        let sha = hex::encode(hasher.finalize());
        if sha != meta.sha256 || size != meta.size {
            return Err(DockyardError::Storage(format!(
                "{key}: the source changed while it was being uploaded ({} bytes, sha256 {} before; {size} bytes, {sha} after)",
                meta.size, meta.sha256
            )));
        }
        let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let completed = self
            .retrying("complete multipart upload", || {
                let done = done.clone();
                async move {
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.opts.bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .multipart_upload(done)
                        .send()
                        .await
                        .map_err(|e| self.sdk_err("CompleteMultipartUpload", Some(key), e))
                }
            })
            .await;
        match completed {
            Ok(_) => Ok(()),
            // A retried Complete (ours or the SDK's) whose earlier try succeeded but lost its
            // response finds the upload gone: the object with this content is there, which
            // is what counts.
            Err(DockyardError::NotFound { .. }) => match self.head_metadata(key).await? {
                Some((s, Some(h))) if s == meta.size && h == meta.sha256 => Ok(()),
                _ => Err(DockyardError::Storage(format!(
                    "{key}: S3 at {} lost the multipart upload before it completed",
                    self.target
                ))),
            },
            Err(e) => Err(e),
        }
    }
}
