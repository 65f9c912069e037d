//! Adapter settings: `S3Options`, and parsing them from an `s3://` URI and the environment.

use std::fmt;

use crate::artifact::ArtifactKey;
use crate::error::DockyardError;

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

pub(super) fn bad_uri(reason: impl Into<String>) -> DockyardError {
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
pub(super) fn check_bucket(bucket: &str) -> Result<(), DockyardError> {
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

pub(super) fn parse_uri(uri: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<S3Options, DockyardError> {
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
pub(super) fn require_endpoint(preset: S3Preset, resolved: Option<&str>) -> Result<(), DockyardError> {
    if preset == S3Preset::Minio && resolved.is_none_or(str::is_empty) {
        return Err(bad_uri(
            "preset=minio needs the server's address: add ?endpoint=http://HOST:9000 to the URI or set AWS_ENDPOINT_URL",
        ));
    }
    Ok(())
}
