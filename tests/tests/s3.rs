//! The S3 artifact store against a real S3 server (`s3s-fs`, SigV4 enforced) on loopback.
//!
//! Every test passes endpoint, region and credentials explicitly through `S3Options`: the
//! tests of one binary share the process environment, so none of them sets AWS_* variables.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dockyard_common::artifact::{ArtifactKey, ArtifactStore, S3Options, S3Preset, S3Store, S3_PART_SIZE};
use dockyard_common::error::DockyardError;
use dockyard_tests::servers::{S3Server, S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY};
use sha2::{Digest, Sha256};

const BUCKET: &str = "dockyard-test";

fn options(srv: &S3Server, prefix: &str, secret: &str) -> S3Options {
    S3Options {
        bucket: BUCKET.into(),
        prefix: prefix.into(),
        endpoint: Some(srv.endpoint.clone()),
        region: Some(S3_REGION.into()),
        path_style: true,
        preset: S3Preset::Standard,
        credentials: Some((S3_ACCESS_KEY.into(), secret.into())),
    }
}

async fn store(srv: &S3Server, prefix: &str) -> S3Store {
    S3Store::connect(options(srv, prefix, S3_SECRET_KEY)).await.expect("connect")
}

fn server() -> (tempfile::TempDir, S3Server) {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = S3Server::start(dir.path());
    srv.create_bucket(BUCKET);
    (dir, srv)
}

fn key(k: &str) -> ArtifactKey {
    ArtifactKey::new(k).expect("key")
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    v
}

/// Every regular file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    dockyard_tests::files_under(dir)
        .iter()
        .filter_map(|p| p.strip_prefix(dir).ok().map(|r| r.display().to_string()))
        .collect()
}

/// A bare SDK client, to look at what the store left on the server.
fn raw_client(srv: &S3Server) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(S3_REGION))
        .endpoint_url(&srv.endpoint)
        .credentials_provider(Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// s3s-fs keeps one `.upload_id-<id>` file (plus its parts) per multipart upload in progress.
fn pending_uploads(srv: &S3Server) -> Vec<String> {
    std::fs::read_dir(&srv.root)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with(".upload_id-"))
                .collect()
        })
        .unwrap_or_default()
}

fn object_path(srv: &S3Server, full_key: &str) -> PathBuf {
    srv.root.join(BUCKET).join(full_key)
}

#[tokio::test]
async fn put_get_head_list_delete_round_trip() {
    let (_dir, srv) = server();
    let s = store(&srv, "dockyard/prod").await;
    assert!(
        s.uri().starts_with(&format!("s3://{BUCKET}/dockyard/prod?endpoint=")),
        "{}",
        s.uri()
    );
    s.check().await.expect("bucket reachable with the right key");

    let a = key("orgs/default/jobs/j1/a.txt");
    let b = key("orgs/default/jobs/j1/b.txt");
    let other = key("orgs/other/jobs/j2/c.txt");
    let meta = s.put(&a, Bytes::from_static(b"hello")).await.expect("put");
    assert_eq!(meta.size, 5);
    assert_eq!(meta.sha256, sha(b"hello"));
    s.put(&b, Bytes::from_static(b"")).await.expect("put empty");
    s.put(&other, Bytes::from_static(b"elsewhere")).await.expect("put other org");

    // The store's prefix is applied on the server, and stripped again from listed keys.
    assert_eq!(
        std::fs::read(object_path(&srv, "dockyard/prod/orgs/default/jobs/j1/a.txt")).expect("object on disk"),
        b"hello"
    );
    assert_eq!(&s.get(&a).await.expect("get")[..], b"hello");
    assert_eq!(s.get(&b).await.expect("get empty").len(), 0);
    // A ranged read of the head of an object (the compression layer's frame header).
    assert_eq!(&s.get_prefix(&a, 3).await.expect("prefix")[..], b"hel");
    assert_eq!(&s.get_prefix(&a, 64).await.expect("whole")[..], b"hello");
    assert_eq!(s.head(&a).await.expect("head"), Some(meta));
    assert_eq!(s.list("orgs/default/").await.expect("list"), vec![a.clone(), b.clone()]);
    assert_eq!(s.list("").await.expect("list all"), vec![a.clone(), b.clone(), other.clone()]);
    assert!(s.list("orgs/nobody/").await.expect("list none").is_empty());

    // Overwrite replaces content and hash.
    let meta2 = s.put(&a, Bytes::from_static(b"hello again")).await.expect("overwrite");
    assert_eq!(s.head(&a).await.expect("head").expect("exists").sha256, meta2.sha256);

    s.delete(&a).await.expect("delete");
    s.delete(&a).await.expect("delete is idempotent");
    assert_eq!(s.head(&a).await.expect("head"), None);
    assert_eq!(s.list("orgs/default/").await.expect("list"), vec![b]);
}

#[tokio::test]
async fn large_file_goes_up_in_parts_and_comes_back_identical() {
    let (dir, srv) = server();
    let s = store(&srv, "").await;
    // Not a multiple of the part size, so the last part is short.
    let data = random_bytes(20 * 1024 * 1024 + 12_345);
    assert!(data.len() as u64 > 2 * S3_PART_SIZE);
    let src = dir.path().join("library.bin");
    std::fs::write(&src, &data).expect("write source");
    let k = key("orgs/default/libraries/lib1/library.bin");

    let meta = s.put_file(&k, &src).await.expect("multipart put_file");
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.sha256, sha(&data));
    assert_eq!(
        s.head(&k).await.expect("head"),
        Some(meta.clone()),
        "sha256 metadata set at upload creation"
    );
    // No part files or pending uploads left behind in the server's folder.
    assert_eq!(files_under(&srv.root.join(BUCKET)), vec![k.to_string()]);
    assert!(pending_uploads(&srv).is_empty(), "{:?}", files_under(&srv.root));
    // The server saw three parts (8 + 8 + the rest): a multipart ETag ends in -<parts>.
    let head = raw_client(&srv)
        .head_object()
        .bucket(BUCKET)
        .key(k.as_str())
        .send()
        .await
        .expect("raw head");
    assert!(
        head.e_tag().is_some_and(|t| t.trim_matches('"').ends_with("-3")),
        "{:?}",
        head.e_tag()
    );

    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let out = out_dir.join("library.bin");
    assert_eq!(s.get_to_file(&k, &out).await.expect("get_to_file"), data.len() as u64);
    let back = std::fs::read(&out).expect("read back");
    assert!(back == data, "downloaded bytes differ");
    assert_eq!(sha(&back), meta.sha256);
    assert_eq!(
        files_under(&out_dir),
        vec!["library.bin".to_string()],
        "temporary file left beside the target"
    );

    // A small file takes the single-PUT path and lands the same way.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, b"small").expect("write small");
    let ks = key("orgs/default/libraries/lib1/small.bin");
    assert_eq!(s.put_file(&ks, &small).await.expect("put_file small").sha256, sha(b"small"));
    assert_eq!(&s.get(&ks).await.expect("get small")[..], b"small");
}

#[tokio::test]
async fn a_cancelled_multipart_upload_is_aborted() {
    let (dir, srv) = server();
    let s = std::sync::Arc::new(store(&srv, "").await);
    let src = dir.path().join("big.bin");
    std::fs::write(&src, random_bytes(48 * 1024 * 1024)).expect("write source");
    let k = key("orgs/default/libraries/big.bin");
    let task = {
        let (s, k, src) = (s.clone(), k.clone(), src.clone());
        tokio::spawn(async move { s.put_file(&k, &src).await })
    };
    // Cancel (as a dropped gRPC request would) once the upload exists on the server.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending_uploads(&srv).is_empty() {
        assert!(!task.is_finished() && Instant::now() < deadline, "no multipart upload seen");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    task.abort();
    assert!(
        task.await.is_err_and(|e| e.is_cancelled()),
        "the upload finished before it could be cancelled"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pending_uploads(&srv).is_empty() {
        assert!(
            Instant::now() < deadline,
            "incomplete upload left behind: {:?}",
            pending_uploads(&srv)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.head(&k).await.expect("head"), None);
    assert!(files_under(&srv.root.join(BUCKET)).is_empty());
}

#[tokio::test]
async fn wrong_credentials_are_refused_with_what_to_fix_and_nothing_is_written() {
    let (_dir, srv) = server();
    let bad = S3Store::connect(options(&srv, "", "not-the-secret"))
        .await
        .expect("connect is lazy");
    let k = key("orgs/default/x.txt");
    let e = bad.put(&k, Bytes::from_static(b"x")).await.expect_err("wrong secret accepted");
    assert!(matches!(e, DockyardError::FailedPrecondition(_)), "{e:?}");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    // Refused, not mistaken for a missing object or a transient failure.
    let e = bad.get(&k).await.expect_err("read with wrong secret");
    assert!(matches!(e, DockyardError::FailedPrecondition(_)), "{e:?}");
    assert!(matches!(bad.head(&k).await, Err(DockyardError::FailedPrecondition(_))));
    assert!(matches!(bad.check().await, Err(DockyardError::FailedPrecondition(_))));

    let mut unknown = options(&srv, "", S3_SECRET_KEY);
    unknown.credentials = Some(("nobody".into(), S3_SECRET_KEY.into()));
    let e = S3Store::connect(unknown)
        .await
        .expect("connect")
        .put(&k, Bytes::from_static(b"x"))
        .await
        .expect_err("unknown access key accepted");
    assert!(matches!(e, DockyardError::FailedPrecondition(_)), "{e:?}");
    assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");

    assert!(files_under(&srv.root.join(BUCKET)).is_empty(), "{:?}", files_under(&srv.root));
    assert_eq!(store(&srv, "").await.head(&k).await.expect("head"), None);
}

#[tokio::test]
async fn missing_keys_are_not_found() {
    let (dir, srv) = server();
    let s = store(&srv, "p").await;
    let k = key("orgs/default/missing.bin");
    assert!(matches!(s.get(&k).await, Err(DockyardError::NotFound { .. })));
    let out = dir.path().join("missing.out");
    let e = s.get_to_file(&k, &out).await.expect_err("get_to_file of a missing key");
    assert!(matches!(e, DockyardError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains(k.as_str()), "{e}");
    assert!(!out.exists());
    assert_eq!(files_under(dir.path()).iter().filter(|f| f.contains(".tmp")).count(), 0);
    assert_eq!(s.head(&k).await.expect("head"), None);
    s.delete(&k).await.expect("deleting a missing key is fine");

    let mut o = options(&srv, "", S3_SECRET_KEY);
    o.bucket = "no-such-bucket".into();
    let missing = S3Store::connect(o).await.expect("connect");
    for e in [
        missing.check().await.expect_err("check of a missing bucket"),
        missing.list("orgs/").await.expect_err("list of a missing bucket"),
    ] {
        assert!(matches!(e, DockyardError::FailedPrecondition(_)), "{e:?}");
        assert!(e.to_string().contains("'no-such-bucket' does not exist"), "{e}");
    }
}

#[tokio::test]
async fn a_corrupted_object_is_refused_on_read() {
    let (dir, srv) = server();
    let s = store(&srv, "").await;
    let k = key("orgs/default/jobs/j/out.pdbqt");
    s.put(&k, Bytes::from_static(b"REMARK good pose\n")).await.expect("put");
    // Same length, different bytes: only the content hash can tell.
    std::fs::write(object_path(&srv, k.as_str()), b"REMARK evil pose\n").expect("tamper");
    let e = s.get(&k).await.expect_err("corrupted object returned");
    assert!(matches!(e, DockyardError::Storage(_)), "{e:?}");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    let out = dir.path().join("out.pdbqt");
    let e = s.get_to_file(&k, &out).await.expect_err("corrupted object written to disk");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    assert!(!out.exists(), "a corrupted download must not land at the target");
}

#[tokio::test]
async fn objects_written_by_other_tools_are_hashed_and_listed() {
    let (_dir, srv) = server();
    let s = store(&srv, "").await;
    let p = object_path(&srv, "orgs/default/imported/lib.sdf");
    std::fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
    std::fs::write(&p, b"foreign").expect("write");
    let k = key("orgs/default/imported/lib.sdf");
    let meta = s.head(&k).await.expect("head").expect("exists");
    assert_eq!((meta.size, meta.sha256), (7, sha(b"foreign")));
    assert_eq!(&s.get(&k).await.expect("get unverified")[..], b"foreign");
}

#[tokio::test]
async fn list_follows_continuation_tokens() {
    let (_dir, srv) = server();
    let s = store(&srv, "").await;
    // More than one page (the server returns at most 1000 keys per page).
    let dir = object_path(&srv, "orgs/default/many");
    std::fs::create_dir_all(&dir).expect("dir");
    for i in 0..1234 {
        std::fs::write(dir.join(format!("k{i:05}")), b"").expect("write");
    }
    let keys = s.list("orgs/default/many/").await.expect("list");
    assert_eq!(keys.len(), 1234);
    assert_eq!(keys[0].as_str(), "orgs/default/many/k00000");
    assert_eq!(keys[1233].as_str(), "orgs/default/many/k01233");
}

#[tokio::test]
async fn a_brief_outage_is_ridden_out_by_retries() {
    let (_dir, mut srv) = server();
    let s = std::sync::Arc::new(store(&srv, "").await);
    let k = key("orgs/default/retry.txt");
    s.put(&k, Bytes::from_static(b"before")).await.expect("put before the outage");

    srv.stop();
    let started = Instant::now();
    let task = {
        let s = s.clone();
        let k = k.clone();
        tokio::spawn(async move { s.put(&k, Bytes::from_static(b"during the outage")).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!task.is_finished(), "the put gave up during a 2 s outage");
    srv.restart();
    let meta = task.await.expect("join").expect("put across a server restart");
    assert_eq!(meta.sha256, sha(b"during the outage"));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(&s.get(&k).await.expect("get after the outage")[..], b"during the outage");
}

#[tokio::test]
async fn a_dead_server_fails_in_bounded_time_as_unavailable() {
    let (_dir, mut srv) = server();
    let s = store(&srv, "").await;
    srv.stop();
    let started = Instant::now();
    let e = s.get(&key("orgs/default/x")).await.expect_err("a dead server answered");
    let took = started.elapsed();
    assert!(matches!(e, DockyardError::Unavailable(_)), "{e:?}");
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.to_string().contains(&srv.endpoint), "{e}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // It did retry rather than fail on the first refused connection.
    assert!(took >= Duration::from_millis(3500), "took {took:?}");
}
