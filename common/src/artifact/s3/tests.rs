use super::errors::{classify, ServiceFailure};
use super::options::{parse_uri, require_endpoint};
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
