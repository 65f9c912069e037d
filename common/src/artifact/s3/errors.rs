//! Mapping S3 failures (SDK errors and error responses) to the `DockyardError` a caller can
//! act on, in one place.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::S3Store;
use crate::artifact::ArtifactKey;
use crate::error::DockyardError;

impl S3Store {
    pub(super) fn sdk_err<E>(&self, op: &str, key: Option<&ArtifactKey>, e: SdkError<E, HttpResponse>) -> DockyardError
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
}

pub(super) struct ServiceFailure<'a> {
    pub(super) op: &'a str,
    pub(super) status: u16,
    pub(super) code: &'a str,
    pub(super) msg: &'a str,
    pub(super) bucket: &'a str,
    pub(super) target: &'a str,
    pub(super) key: Option<&'a ArtifactKey>,
}

/// Maps an S3 error response to the error a caller can act on.
pub(super) fn classify(f: ServiceFailure<'_>) -> DockyardError {
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

pub(super) fn no_such_bucket(bucket: &str, target: &str) -> DockyardError {
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
