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
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::{ArtifactKey, ArtifactStore, ObjectMeta};
use crate::error::DockyardError;

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

/// Server flavour: `Minio` means path-style addressing, `us-east-1` unless a region is
/// given, and an endpoint that must be set (there is no default MinIO host).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum S3Preset {
    #[default]
    Standard,
    Minio,
}

/// How to reach a bucket. `None` fields come from the standard AWS chain (AWS_ENDPOINT_URL,
/// AWS_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/config, IMDS...).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing '/'; empty for none.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub preset: S3Preset,
    /// (access key id, secret access key); `None` uses the AWS credential chain.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("preset", &self.preset)
            .field("credentials", &self.credentials.as_ref().map(|(id, _)| format!("{id}:<redacted>")))
            .finish()
    }
}

fn bad_uri(reason: impl Into<String>) -> DockyardError {
    DockyardError::invalid("artifacts", reason)
}

impl S3Options {
    /// Parses an `s3://` URI; `DOCKYARD_S3_PRESET` and `DOCKYARD_S3_PATH_STYLE` apply when the
    /// query does not say otherwise.
    pub fn from_uri(uri: &str) -> Result<S3Options, DockyardError> {
        parse_uri(uri, &|name| std::env::var(name).ok())
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool, DockyardError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad_uri(format!("{name}='{v}' must be true or false"))),
    }
}

fn parse_preset(source: &str, v: &str) -> Result<S3Preset, DockyardError> {
    match v.to_ascii_lowercase().as_str() {
        "minio" => Ok(S3Preset::Minio),
        "aws" | "standard" | "" => Ok(S3Preset::Standard),
        _ => Err(bad_uri(format!("{source}='{v}' is not a known preset (minio, aws)"))),
    }
}

/// Minimal %XX decoding, enough for an endpoint URL or region passed in a query string.
fn percent_decode(s: &str) -> Result<String, DockyardError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_uri(format!("bad %-escape in '{s}'")))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad_uri(format!("'{s}' is not UTF-8 once decoded")))
}

/// S3's bucket naming rules (also MinIO's), checked here so a typo fails at startup with a
/// clear message rather than as an odd signature or DNS error later.
fn check_bucket(bucket: &str) -> Result<(), DockyardError> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    let ok_ends = bucket.starts_with(|c: char| c.is_ascii_alphanumeric()) && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(bad_uri(format!(
            "'{bucket}' is not a valid bucket name (3-63 lowercase letters, digits, '-' and '.')"
        )))
    }
}

fn parse_uri(uri: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<S3Options, DockyardError> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| bad_uri(format!("'{uri}' is not an s3:// URI")))?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let (bucket, prefix) = match path.split_once('/') {
        Some((b, p)) => (b, p.trim_matches('/')),
        None => (path, ""),
    };
    if bucket.is_empty() {
        return Err(bad_uri("s3:// needs a bucket, e.g. s3://my-bucket/dockyard"));
    }
    check_bucket(bucket)?;
    if !prefix.is_empty() {
        // The prefix is joined to server-built keys, so it obeys the same rules.
        ArtifactKey::new(prefix).map_err(|e| bad_uri(format!("prefix of '{uri}': {e}")))?;
    }
    let mut o = S3Options {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        ..S3Options::default()
    };
    let mut path_style = None;
    let mut preset = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "endpoint" if !v.is_empty() => {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(bad_uri(format!("endpoint '{v}' must start with http:// or https://")));
                }
                o.endpoint = Some(v);
            }
            "region" if !v.is_empty() => o.region = Some(v),
            "path_style" => path_style = Some(parse_bool("path_style", &v)?),
            "preset" => preset = Some(parse_preset("preset", &v)?),
            "endpoint" | "region" => return Err(bad_uri(format!("{k}= is empty in '{uri}'"))),
            _ => {
                return Err(bad_uri(format!(
                    "unknown option '{k}' in '{uri}' (known: endpoint, region, preset, path_style)"
                )))
            }
        }
    }
    let preset = match preset {
        Some(p) => p,
        None => match env("DOCKYARD_S3_PRESET") {
            Some(v) => parse_preset("DOCKYARD_S3_PRESET", &v)?,
            None => S3Preset::Standard,
        },
    };
    let path_style = match path_style {
        Some(p) => p,
        None => match env("DOCKYARD_S3_PATH_STYLE") {
            Some(v) => parse_bool("DOCKYARD_S3_PATH_STYLE", &v)?,
            None => false,
        },
    };
    o.preset = preset;
    o.path_style = path_style || preset == S3Preset::Minio;
    if preset == S3Preset::Minio && o.region.is_none() {
        o.region = Some("us-east-1".to_string());
    }
    Ok(o)
}

/// The endpoint a MinIO preset needs, or why it is missing.
fn require_endpoint(preset: S3Preset, resolved: Option<&str>) -> Result<(), DockyardError> {
    if preset == S3Preset::Minio && resolved.is_none_or(str::is_empty) {
        return Err(bad_uri(
            "preset=minio needs the server's address: add ?endpoint=http://HOST:9000 to the URI or set AWS_ENDPOINT_URL",
        ));
    }
    Ok(())
}

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

/// Where the bytes of an upload come from: at most one part is held in memory at a time.
enum PartSource {
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

    fn sdk_err<E>(&self, op: &str, key: Option<&ArtifactKey>, e: SdkError<E, HttpResponse>) -> DockyardError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let bucket = &self.opts.bucket;
        let target = &self.target;
        let obj = key.map(|k| format!(" for {k}")).unwrap_or_default();
        let detail = DisplayErrorContext(&e).to_string();
        match &e {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().unwrap_or("");
                let msg = se.err().message().unwrap_or("");
                classify(ServiceFailure {
                    op,
                    status,
                    code,
                    msg,
                    bucket,
                    target,
                    key,
                })
            }
            SdkError::TimeoutError(_) => DockyardError::Unavailable(format!("S3 {op}{obj} at {target} timed out: {detail}")),
            SdkError::DispatchFailure(d) if d.is_user() => {
                DockyardError::Storage(format!("S3 {op}{obj}: could not send the request: {detail}"))
            }
            SdkError::DispatchFailure(_) => DockyardError::Unavailable(format!("cannot reach S3 at {target} ({op}{obj}): {detail}")),
            SdkError::ResponseError(r) if r.raw().status().is_server_error() => {
                DockyardError::Unavailable(format!("S3 {op}{obj} at {target}: server error: {detail}"))
            }
            SdkError::ConstructionFailure(_) => DockyardError::FailedPrecondition(format!(
                "cannot build the S3 {op} request for bucket '{bucket}': {detail}; if no credentials were found, \
                 set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )),
            _ => DockyardError::Storage(format!("S3 {op}{obj} at {target}: {detail}")),
        }
    }

    async fn put_single(&self, full: &str, data: Bytes, sha: &str) -> Result<(), DockyardError> {
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
    async fn put_multipart(&self, key: &ArtifactKey, mut src: PartSource, meta: ObjectMeta) -> Result<ObjectMeta, DockyardError> {
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

    /// (size, sha256 metadata) or None when the object does not exist.
    async fn head_metadata(&self, key: &ArtifactKey) -> Result<Option<(u64, Option<String>)>, DockyardError> {
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
    async fn stream_object<S>(&self, key: &ArtifactKey, sink: &mut S) -> Result<(u64, String, Option<String>), DockyardError>
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

    fn verify(&self, key: &ArtifactKey, got: &str, expect: Option<&str>) -> Result<(), DockyardError> {
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
trait ChunkSink: Send {
    fn reserve(&mut self, _declared: u64) {}
    async fn write(&mut self, chunk: Bytes) -> Result<(), DockyardError>;
}

struct MemorySink(BytesMut);

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

struct FileSink<'a>(tokio::fs::File, &'a Path);

#[async_trait]
impl ChunkSink for FileSink<'_> {
    async fn write(&mut self, chunk: Bytes) -> Result<(), DockyardError> {
        self.0.write_all(&chunk).await.map_err(|e| io_err(self.1, e))
    }
}

struct HashSink;

#[async_trait]
impl ChunkSink for HashSink {
    async fn write(&mut self, _chunk: Bytes) -> Result<(), DockyardError> {
        Ok(())
    }
}

struct ServiceFailure<'a> {
    op: &'a str,
    status: u16,
    code: &'a str,
    msg: &'a str,
    bucket: &'a str,
    target: &'a str,
    key: Option<&'a ArtifactKey>,
}

/// Maps an S3 error response to the error a caller can act on.
fn classify(f: ServiceFailure<'_>) -> DockyardError {
    let ServiceFailure {
        op,
        status,
        code,
        msg,
        bucket,
        target,
        key,
    } = f;
    let obj = key.map(|k| format!(" for {k}")).unwrap_or_default();
    let said = if code.is_empty() && msg.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {code}: {msg}")
    };
    let refused = |fix: &str| {
        // FailedPrecondition: the request was fine, the deployment's credentials are not; a
        // retry cannot help until an operator fixes them.
        DockyardError::FailedPrecondition(format!("S3 at {target} refused {op}{obj} on bucket '{bucket}' ({said}): {fix}"))
    };
    match code {
        "NoSuchBucket" => return no_such_bucket(bucket, target),
        "NoSuchKey" => return DockyardError::not_found(artifact_name(key)),
        "SignatureDoesNotMatch" => return refused("the secret key is wrong; check AWS_SECRET_ACCESS_KEY (or the profile's secret)"),
        "InvalidAccessKeyId" => return refused("the access key is unknown to this server; check AWS_ACCESS_KEY_ID"),
        "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired" => {
            return refused("the session token is expired or invalid; refresh the credentials (AWS_SESSION_TOKEN)")
        }
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => {
            return refused("the credentials lack permission for this bucket/prefix; check the key's policy")
        }
        "RequestTimeTooSkewed" => return refused("this machine's clock is off; sync it (NTP)"),
        "BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch" => {
            return DockyardError::Storage(format!(
                "S3 at {target} refused {op}{obj}: the body was corrupted in transit ({said})"
            ))
        }
        "SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" => {
            return DockyardError::Unavailable(format!("S3 at {target} is overloaded or failing ({op}{obj}, {said})"))
        }
        _ => {}
    }
    match status {
        404 => DockyardError::not_found(artifact_name(key)),
        401 | 403 => refused("check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the key's permissions on this bucket"),
        429 | 500..=599 => DockyardError::Unavailable(format!("S3 at {target} is overloaded or failing ({op}{obj}, {said})")),
        _ => DockyardError::Storage(format!("S3 at {target} refused {op}{obj} on bucket '{bucket}' ({said})")),
    }
}

fn no_such_bucket(bucket: &str, target: &str) -> DockyardError {
    DockyardError::FailedPrecondition(format!(
        "bucket '{bucket}' does not exist at {target}: create it or fix the artifacts URI"
    ))
}

fn artifact_name(key: Option<&ArtifactKey>) -> String {
    match key {
        Some(k) => format!("artifact {k}"),
        None => "object".to_string(),
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
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(uri: &str) -> Result<S3Options, DockyardError> {
        parse_uri(uri, &no_env)
    }

    #[test]
    fn bucket_and_prefix() {
        let o = parse("s3://my-bucket/dockyard/prod/").expect("parse");
        assert_eq!(o.bucket, "my-bucket");
        assert_eq!(o.prefix, "dockyard/prod");
        assert_eq!(
            (o.endpoint, o.region, o.path_style, o.preset),
            (None, None, false, S3Preset::Standard)
        );
        let o = parse("s3://bkt").expect("parse");
        assert_eq!((o.bucket.as_str(), o.prefix.as_str()), ("bkt", ""));
        assert_eq!(parse("s3://bkt/").expect("parse").prefix, "");
    }

    #[test]
    fn query_options() {
        let o = parse("s3://bkt/p?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&path_style=true").expect("parse");
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        assert!(o.path_style);
        let o = parse("s3://bkt?endpoint=https://s3.example.org").expect("parse");
        assert_eq!(o.endpoint.as_deref(), Some("https://s3.example.org"));
        assert!(!o.path_style);
    }

    #[test]
    fn minio_preset_forces_path_style_and_defaults_the_region() {
        let o = parse("s3://bkt?preset=minio&endpoint=http://minio:9000").expect("parse");
        assert_eq!(o.preset, S3Preset::Minio);
        assert!(o.path_style);
        assert_eq!(o.region.as_deref(), Some("us-east-1"));
        let o = parse("s3://bkt?preset=minio&region=eu-1&path_style=false").expect("parse");
        assert!(o.path_style, "minio always uses path-style");
        assert_eq!(o.region.as_deref(), Some("eu-1"));
    }

    #[test]
    fn env_applies_unless_the_query_says_otherwise() {
        let env = |k: &str| match k {
            "DOCKYARD_S3_PRESET" => Some("minio".to_string()),
            "DOCKYARD_S3_PATH_STYLE" => Some("true".to_string()),
            _ => None,
        };
        let o = parse_uri("s3://bkt", &env).expect("parse");
        assert_eq!((o.preset, o.path_style), (S3Preset::Minio, true));
        let o = parse_uri("s3://bkt?preset=aws", &env).expect("parse");
        assert_eq!((o.preset, o.path_style), (S3Preset::Standard, true));
        let o = parse_uri("s3://bkt?preset=aws&path_style=false", &env).expect("parse");
        assert!(!o.path_style);
        let bad = |k: &str| (k == "DOCKYARD_S3_PATH_STYLE").then(|| "maybe".to_string());
        let e = parse_uri("s3://bkt", &bad).expect_err("bad bool");
        assert!(e.to_string().contains("DOCKYARD_S3_PATH_STYLE"), "{e}");
    }

    #[test]
    fn bad_uris_are_refused_with_the_reason() {
        for (uri, says) in [
            ("s3://", "needs a bucket"),
            ("s3:///prefix", "needs a bucket"),
            ("s3://My_Bucket", "not a valid bucket name"),
            ("s3://ab", "not a valid bucket name"),
            ("s3://bkt/../etc", "relative path segment"),
            ("s3://bkt/a//b", "empty path segment"),
            ("s3://bkt?endpoint=minio:9000", "must start with http"),
            ("s3://bkt?region=", "is empty"),
            ("s3://bkt?preset=ceph", "not a known preset"),
            ("s3://bkt?path_style=perhaps", "must be true or false"),
            ("s3://bkt?endpiont=http://x", "unknown option 'endpiont'"),
            ("s3://bkt?endpoint=http://x%zz", "bad %-escape"),
            ("file:///x", "not an s3:// URI"),
        ] {
            let e = parse(uri).expect_err(uri);
            assert!(matches!(e, DockyardError::InvalidArgument { .. }), "{uri}: {e}");
            assert!(e.to_string().contains(says), "{uri}: {e}");
        }
    }

    #[test]
    fn minio_without_an_endpoint_says_how_to_give_one() {
        let e = require_endpoint(S3Preset::Minio, None).expect_err("no endpoint");
        assert!(
            e.to_string().contains("AWS_ENDPOINT_URL") && e.to_string().contains("endpoint="),
            "{e}"
        );
        assert!(require_endpoint(S3Preset::Minio, Some("http://m:9000")).is_ok());
        assert!(require_endpoint(S3Preset::Standard, None).is_ok());
    }

    #[tokio::test]
    async fn connect_applies_the_minio_preset_without_a_request() {
        let s = S3Store::connect(S3Options {
            bucket: "bkt".into(),
            prefix: "/dockyard/".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            preset: S3Preset::Minio,
            credentials: Some(("id".into(), "secret".into())),
            ..S3Options::default()
        })
        .await
        .expect("connect makes no request");
        assert!(s.options().path_style);
        assert_eq!(s.options().region.as_deref(), Some("us-east-1"));
        assert_eq!(
            s.uri(),
            "s3://bkt/dockyard?endpoint=http://127.0.0.1:1&region=us-east-1&preset=minio"
        );
        assert_eq!(s.s3_key(&ArtifactKey::new("orgs/o/a").expect("key")), "dockyard/orgs/o/a");
        let again = parse(&s.uri()).expect("uri() parses back");
        assert_eq!(
            (again.bucket, again.prefix, again.endpoint),
            ("bkt".into(), "dockyard".into(), s.options().endpoint.clone())
        );
    }

    #[test]
    fn options_debug_hides_the_secret() {
        let o = S3Options {
            bucket: "b".into(),
            credentials: Some(("AKIA".into(), "s3cr3t".into())),
            ..S3Options::default()
        };
        let d = format!("{o:?}");
        assert!(d.contains("AKIA") && !d.contains("s3cr3t"), "{d}");
    }

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        // RFC 1321 test vector for "abc", base64 of 900150983cd24fb0d6963f7d28e17f72.
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }

    #[test]
    fn errors_map_to_actionable_variants() {
        let k = ArtifactKey::new("orgs/o/x").expect("key");
        let f = |status, code| {
            classify(ServiceFailure {
                op: "PutObject",
                status,
                code,
                msg: "m",
                bucket: "b",
                target: "http://s3",
                key: Some(&k),
            })
        };
        assert!(matches!(f(404, "NoSuchKey"), DockyardError::NotFound { .. }));
        assert!(matches!(f(404, ""), DockyardError::NotFound { .. }));
        assert!(matches!(f(404, "NoSuchBucket"), DockyardError::FailedPrecondition(m) if m.contains("does not exist")));
        assert!(matches!(f(403, "SignatureDoesNotMatch"), DockyardError::FailedPrecondition(m) if m.contains("AWS_SECRET_ACCESS_KEY")));
        assert!(matches!(f(403, "InvalidAccessKeyId"), DockyardError::FailedPrecondition(m) if m.contains("AWS_ACCESS_KEY_ID")));
        assert!(matches!(f(403, ""), DockyardError::FailedPrecondition(_)));
        assert!(matches!(f(503, "SlowDown"), DockyardError::Unavailable(_)));
        assert!(matches!(f(500, "Whatever"), DockyardError::Unavailable(_)));
        assert!(matches!(f(400, "BadDigest"), DockyardError::Storage(m) if m.contains("corrupted")));
        assert_eq!(f(403, "AccessDenied").code(), tonic::Code::FailedPrecondition);
    }

    #[test]
    fn metadata_hash_must_look_like_sha256() {
        let good = "a".repeat(64);
        let m = HashMap::from([(META_SHA256.to_string(), good.to_uppercase())]);
        assert_eq!(meta_sha256(Some(&m)), Some(good));
        let m = HashMap::from([(META_SHA256.to_string(), "xyz".to_string())]);
        assert_eq!(meta_sha256(Some(&m)), None);
        assert_eq!(meta_sha256(None), None);
    }
}
