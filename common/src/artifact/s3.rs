//! S3 adapter: `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&preset=minio&path_style=true]`.
//!
//! Only the part of the S3 API that AWS and MinIO (and other S3-compatible servers) share is
//! used: path-style addressing when asked, no SDK-computed CRC checksums (some servers refuse
//! them), Content-MD5 per request so the server refuses a body corrupted in transit, and the
//! content's SHA-256 kept as user metadata (`x-amz-meta-sha256`) and verified on every read.
//!
//! Keys are `ArtifactKey`s, which the server builds from ids; a client never names an S3 key.
//!
//! Objects that Dockyard did not write (copied in by an operator) carry no `sha256` metadata:
//! reads of those are not verified, and `head` computes their hash by streaming the object
//! once, because `ObjectMeta::sha256` promises a real SHA-256 and an empty or ETag-derived
//! value would be silently wrong.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::{ArtifactKey, ArtifactStore, ObjectMeta};
use crate::error::DockyardError;
use errors::no_such_bucket;
use options::{bad_uri, check_bucket, require_endpoint};
pub use options::{S3Options, S3Preset};
use read::{FileSink, HashSink, MemorySink};
use upload::PartSource;

mod errors;
mod options;
mod read;
mod upload;

/// Objects above this go up as a multipart upload, one part of this size at a time.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3's limit on parts per upload; larger files get larger parts.
const MAX_PARTS: u64 = 10_000;
/// A single PutObject is limited to 5 GiB; above it `put` switches to multipart too.
const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;
const META_SHA256: &str = "sha256";
const SDK_MAX_ATTEMPTS: u32 = 5;
/// The SDK's backoff is "full jitter" (a random fraction of 2^n times this), so its retries
/// alone may all land within a few hundred milliseconds; with the SDK's 1 s default a dead
/// endpoint took ~30 s to report. A short base keeps the SDK's part quick and bounded...
const SDK_INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const SDK_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// ...and these outer attempts guarantee a floor (3.5 s in all) that rides out a restarting
/// server or a load-balancer swap, stopping once `RETRY_BUDGET` has passed so that a dead
/// endpoint still fails in bounded time.
const OUTER_BACKOFF: [Duration; 3] = [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];
const RETRY_BUDGET: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt carries at most one part (8 MiB by default): 2 minutes allows ~70 KB/s.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
/// `get` preallocates from Content-Length, which the server controls.
const MAX_PREALLOC: usize = 64 * 1024 * 1024;

fn content_md5(data: &[u8]) -> String {
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn meta_sha256(meta: Option<&HashMap<String, String>>) -> Option<String> {
    let v = meta?.get(META_SHA256)?.to_ascii_lowercase();
    is_sha256_hex(&v).then_some(v)
}

fn io_err(p: &Path, e: std::io::Error) -> DockyardError {
    DockyardError::Storage(format!("{}: {e}", p.display()))
}

pub struct S3Store {
    client: Client,
    opts: S3Options,
    /// Where requests go, for error messages ("AWS S3 (eu-west-1)" when the SDK picks).
    target: String,
}

impl S3Store {
    /// Opens a store from an `s3://` URI, with the rest of the settings from the AWS chain.
    /// Makes no request: see `check` for a startup probe.
    pub async fn open(uri: &str) -> Result<S3Store, DockyardError> {
        S3Store::connect(S3Options::from_uri(uri)?).await
    }

    /// Builds the client from explicit options; unset ones come from the AWS chain.
    pub async fn connect(opts: S3Options) -> Result<S3Store, DockyardError> {
        check_bucket(&opts.bucket)?;
        let mut opts = opts;
        opts.prefix = opts.prefix.trim_matches('/').to_string();
        if !opts.prefix.is_empty() {
            ArtifactKey::new(opts.prefix.as_str()).map_err(|e| bad_uri(format!("prefix: {e}")))?;
        }
        if opts.preset == S3Preset::Minio {
            opts.path_style = true;
            opts.region.get_or_insert_with(|| "us-east-1".to_string());
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(SDK_MAX_ATTEMPTS)
                    .with_initial_backoff(SDK_INITIAL_BACKOFF)
                    .with_max_backoff(SDK_MAX_BACKOFF),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            // The SDK's default CRC32 request checksums are refused by some S3-compatible
            // servers; integrity comes from Content-MD5 and our own SHA-256 instead.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &opts.endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some((id, secret)) = &opts.credentials {
            loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "dockyard-s3-options"));
        }
        let sdk = loader.load().await;
        // The S3 client also honours AWS_ENDPOINT_URL_S3, which wins over the global
        // AWS_ENDPOINT_URL but not over an endpoint given in code.
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok().filter(|e| !e.is_empty()))
            .or_else(|| sdk.endpoint_url().map(str::to_string));
        require_endpoint(opts.preset, endpoint.as_deref())?;
        let Some(region) = sdk.region().map(|r| r.to_string()) else {
            return Err(bad_uri(
                "no AWS region configured: add ?region=R to the URI or set AWS_REGION (or a region in the AWS profile)",
            ));
        };
        let target = endpoint.unwrap_or_else(|| format!("AWS S3 ({region})"));
        let conf = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(opts.path_style).build();
        Ok(S3Store {
            client: Client::from_conf(conf),
            opts,
            target,
        })
    }

    pub fn options(&self) -> &S3Options {
        &self.opts
    }

    /// One HeadBucket: fails with a clear error when the endpoint, bucket or credentials are
    /// wrong. Not done by `open`, since a least-privilege key may lack s3:ListBucket.
    pub async fn check(&self) -> Result<(), DockyardError> {
        let r = self
            .retrying("check bucket", || async {
                self.client
                    .head_bucket()
                    .bucket(&self.opts.bucket)
                    .send()
                    .await
                    .map_err(|e| self.sdk_err("HeadBucket", None, e))
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            // HeadBucket answers a bare 404 (no error code) for a missing bucket.
            Err(DockyardError::NotFound { .. }) => Err(no_such_bucket(&self.opts.bucket, &self.target)),
            Err(e) => Err(e),
        }
    }

    fn s3_key(&self, key: &ArtifactKey) -> String {
        if self.opts.prefix.is_empty() {
            key.as_str().to_string()
        } else {
            format!("{}/{}", self.opts.prefix, key.as_str())
        }
    }

    /// Retries transient failures (`Unavailable`) with backoff, beyond the SDK's own retries.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, DockyardError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DockyardError>>,
    {
        let start = Instant::now();
        let mut backoff = OUTER_BACKOFF.iter();
        loop {
            match op().await {
                Err(DockyardError::Unavailable(msg)) => {
                    let Some(delay) = backoff.next().filter(|d| start.elapsed() + **d < RETRY_BUDGET) else {
                        return Err(DockyardError::Unavailable(msg));
                    };
                    // Jitter upwards only, so the total wait never drops below the schedule.
                    let delay = delay.mul_f64(1.0 + rand::random::<f64>() * 0.25);
                    debug!(op = what, error = %msg, ?delay, "S3 unavailable; retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }
}

async fn hash_file(path: &Path) -> Result<ObjectMeta, DockyardError> {
    let mut f = tokio::fs::File::open(path).await.map_err(|e| io_err(path, e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).await.map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(ObjectMeta {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn tmp_beside(target: &Path) -> PathBuf {
    let r: u64 = rand::random();
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("obj");
    target.with_file_name(format!(".{name}.{r:016x}.tmp"))
}

#[async_trait]
impl ArtifactStore for S3Store {
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<ObjectMeta, DockyardError> {
        let meta = ObjectMeta {
            size: data.len() as u64,
            sha256: super::sha256_hex(&data),
        };
        if meta.size > MAX_SINGLE_PUT {
            return self.put_multipart(key, PartSource::Memory(data), meta).await;
        }
        self.put_single(&self.s3_key(key), data, &meta.sha256).await?;
        Ok(meta)
    }

    async fn put_file(&self, key: &ArtifactKey, path: &Path) -> Result<ObjectMeta, DockyardError> {
        let len = tokio::fs::metadata(path).await.map_err(|e| io_err(path, e))?.len();
        if len <= PART_SIZE {
            let mut f = tokio::fs::File::open(path).await.map_err(|e| io_err(path, e))?;
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            // One byte past the limit tells a file that grew since the stat.
            (&mut f)
                .take(PART_SIZE + 1)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| io_err(path, e))?;
            if buf.len() as u64 <= PART_SIZE {
                return self.put(key, Bytes::from(buf)).await;
            }
        }
        let meta = hash_file(path).await?;
        let f = tokio::fs::File::open(path).await.map_err(|e| io_err(path, e))?;
        self.put_multipart(key, PartSource::File(f, path.to_path_buf()), meta).await
    }

    async fn get(&self, key: &ArtifactKey) -> Result<Bytes, DockyardError> {
        self.retrying("get", || async {
            let mut sink = MemorySink(BytesMut::new());
            let (_, got, expect) = self.stream_object(key, &mut sink).await?;
            self.verify(key, &got, expect.as_deref())?;
            Ok(sink.0.freeze())
        })
        .await
    }

    async fn get_prefix(&self, key: &ArtifactKey, len: usize) -> Result<Bytes, DockyardError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        self.retrying("get prefix", || async { self.read_range(key, len).await }).await
    }

    async fn get_to_file(&self, key: &ArtifactKey, path: &Path) -> Result<u64, DockyardError> {
        self.retrying("get to file", || async {
            let tmp = tmp_beside(path);
            let result = async {
                let f = tokio::fs::File::create(&tmp).await.map_err(|e| io_err(&tmp, e))?;
                let mut sink = FileSink(f, &tmp);
                let (size, got, expect) = self.stream_object(key, &mut sink).await?;
                self.verify(key, &got, expect.as_deref())?;
                sink.0.flush().await.map_err(|e| io_err(&tmp, e))?;
                sink.0.sync_all().await.map_err(|e| io_err(&tmp, e))?;
                tokio::fs::rename(&tmp, path).await.map_err(|e| io_err(path, e))?;
                Ok(size)
            }
            .await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            result
        })
        .await
    }

    async fn head(&self, key: &ArtifactKey) -> Result<Option<ObjectMeta>, DockyardError> {
        match self.head_metadata(key).await? {
            None => Ok(None),
            Some((size, Some(sha256))) => Ok(Some(ObjectMeta { size, sha256 })),
            Some((_, None)) => {
                warn!(%key, "object has no sha256 metadata (not written by Dockyard); hashing it by download");
                let hashed = self
                    .retrying("hash object", || async { self.stream_object(key, &mut HashSink).await })
                    .await;
                match hashed {
                    Ok((size, sha256, _)) => Ok(Some(ObjectMeta { size, sha256 })),
                    Err(DockyardError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ArtifactKey>, DockyardError> {
        let strip = if self.opts.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.opts.prefix)
        };
        let full_prefix = format!("{strip}{prefix}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retrying("list", || async {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.opts.bucket)
                        .prefix(&full_prefix)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| self.sdk_err("ListObjectsV2", None, e))
                })
                .await?;
            for obj in page.contents() {
                let Some(rel) = obj.key().and_then(|k| k.strip_prefix(&strip)) else {
                    continue;
                };
                // Objects put there by other tools may not be valid keys; they are not ours.
                if let Ok(k) = ArtifactKey::new(rel) {
                    out.push(k);
                }
            }
            let next = page.next_continuation_token().filter(|t| !t.is_empty()).map(str::to_string);
            if !page.is_truncated().unwrap_or(false) || next.is_none() {
                break;
            }
            if next == token {
                return Err(DockyardError::Storage(format!(
                    "S3 at {} returned the same continuation token twice listing '{full_prefix}'",
                    self.target
                )));
            }
            token = next;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<(), DockyardError> {
        let full = self.s3_key(key);
        let r = self
            .retrying("delete", || async {
                self.client
                    .delete_object()
                    .bucket(&self.opts.bucket)
                    .key(&full)
                    .send()
                    .await
                    .map_err(|e| self.sdk_err("DeleteObject", Some(key), e))
            })
            .await;
        match r {
            Ok(_) | Err(DockyardError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn uri(&self) -> String {
        let o = &self.opts;
        let mut uri = format!("s3://{}", o.bucket);
        if !o.prefix.is_empty() {
            uri.push('/');
            uri.push_str(&o.prefix);
        }
        let mut q = Vec::new();
        if let Some(e) = &o.endpoint {
            q.push(format!("endpoint={e}"));
        }
        if let Some(r) = &o.region {
            q.push(format!("region={r}"));
        }
        if o.preset == S3Preset::Minio {
            q.push("preset=minio".to_string());
        } else if o.path_style {
            q.push("path_style=true".to_string());
        }
        if !q.is_empty() {
            uri.push('?');
            uri.push_str(&q.join("&"));
        }
        uri
    }
}

#[cfg(test)]
mod tests;
