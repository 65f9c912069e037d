//! Size limits on what clients send: gzip bombs, oversized records and files, messages over
//! the gRPC limit, and interrupted uploads. Every refusal names the file, the limit and the
//! flag that sets it, and leaves nothing behind in the artifact store or the upload folder.
//!
//! Tests of the default limits use [`TestCluster`]. Those that need a limit small enough to
//! reach in a test start a bare coordinator with the flag ([`SmallLimits`]): the harness
//! starts its coordinator with a fixed set of flags, and a refusal needs no agent.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dockyard_tests::{binary, files_under, input, pb, vina_1iep_request, TestCluster};
use pb::job_service_client::JobServiceClient;
use tonic::transport::Channel;
use tonic::Code;

/// Gzips with the `gzip` program (Essential on Debian), which saves this crate a
/// compression dependency.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().expect("writer thread").expect("write to gzip");
    assert!(out.status.success());
    out.stdout
}

/// What is in the artifact store and the upload folder, to compare before and after.
fn stored(data_dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    (files_under(&data_dir.join("artifacts")), files_under(&data_dir.join("uploads")))
}

/// Waits (briefly) until nothing was added to the store and the upload folder is empty:
/// cleanup after a dropped request runs on its own task.
async fn assert_nothing_left(data_dir: &Path, before: &(Vec<PathBuf>, Vec<PathBuf>)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = stored(data_dir);
        let added: Vec<&PathBuf> = now.0.iter().filter(|p| !before.0.contains(p)).collect();
        if added.is_empty() && now.1.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("left behind: artifacts {added:?}, uploads {:?}", now.1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sdf_record(title: &str, atoms: usize) -> String {
    let mut s = format!("{title}\n  dockyard-test\n\n{atoms:>3}  0  0  0  0  0  0  0  0  0999 V2000\n");
    for i in 0..atoms {
        s.push_str(&format!(
            "{:>10.4}    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n",
            i as f64
        ));
    }
    s.push_str("M  END\n$$$$\n");
    s
}

#[tokio::test]
async fn gzip_bombs_are_refused_naming_file_limit_and_flag() {
    let c = TestCluster::builder().start().await;
    let before = stored(c.data_dir());
    // 10 MB of zeros compressed to ~10 KB; and a 1 GiB expansion made of 1000 gzip members of
    // 1 MiB of zeros each (about 1 MB on the wire).
    let small = gzip(&vec![0u8; 10 << 20]);
    let member = gzip(&vec![0u8; 1 << 20]);
    let big: Vec<u8> = member.iter().copied().cycle().take(member.len() * 1000).collect();
    for (name, bomb) in [("bomb.sdf.gz", small), ("gigabomb.smi.gz", big)] {
        for skip_invalid in [false, true] {
            let mut req = vina_1iep_request(vec![input("good.smi", "CCO ethanol\n"), input(name, bomb.clone())]);
            // Skipping invalid records must not skip the rest of a file that was never read.
            req.skip_invalid = skip_invalid;
            let started = Instant::now();
            let err = c.jobs().await.submit_job(req).await.expect_err("gzip bomb accepted");
            assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
            let m = err.message();
            assert!(m.contains("ligands[1]") && m.contains(name), "{m}");
            assert!(m.contains("100 times") && m.contains("--max-gzip-ratio"), "{m}");
            // Refused after the first megabytes, not after inflating the whole gigabyte.
            assert!(started.elapsed() < Duration::from_secs(20), "{name}: {:?}", started.elapsed());
        }
    }
    assert_nothing_left(c.data_dir(), &before).await;
    assert!(c.list_jobs().await.is_empty());
}

#[tokio::test]
async fn an_oversized_record_is_refused_naming_the_flag() {
    let c = TestCluster::builder().start().await;
    let before = stored(c.data_dir());
    // 16,000 atom lines: about 1.1 MB, over the 1 MiB default.
    let big = sdf_record("huge", 16_000);
    assert!(big.len() > 1 << 20);
    let lib = format!("{}{big}", sdf_record("small", 3));
    let err = c
        .jobs()
        .await
        .submit_job(vina_1iep_request(vec![input("lib.sdf", lib.clone())]))
        .await
        .expect_err("oversized record accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let m = err.message();
    assert!(m.contains("'lib.sdf'") && m.contains("'huge'"), "{m}");
    assert!(m.contains("1048576-byte limit") && m.contains("--max-record-bytes"), "{m}");
    assert_nothing_left(c.data_dir(), &before).await;

    // With skip_invalid it is one skipped record, and the rest of the file is docked.
    let mut req = vina_1iep_request(vec![input("lib.sdf", lib)]);
    req.skip_invalid = true;
    let job = c.submit(req).await;
    let j = c.get_job(&job).await;
    assert_eq!(j.ligands_total, 1);
}

#[tokio::test]
async fn a_message_over_the_grpc_limit_is_refused() {
    let c = TestCluster::builder().start().await;
    let before = stored(c.data_dir());
    // One byte over the 64 MiB default of --max-message-bytes.
    let content = vec![b'C'; 64 << 20];
    let err = c
        .jobs()
        .await
        .submit_job(vina_1iep_request(vec![input("big.smi", content)]))
        .await
        .expect_err("oversized message accepted");
    // tonic refuses a message over max_decoding_message_size with OUT_OF_RANGE ("decoded
    // message length too large"), before the handler runs; not RESOURCE_EXHAUSTED as
    // grpc-go does.
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{}", err.message());
    assert_nothing_left(c.data_dir(), &before).await;
}

async fn upload(client: &mut JobServiceClient<Channel>, name: &str, data: Vec<u8>) -> Result<pb::UploadInputResponse, tonic::Status> {
    let mut msgs = vec![pb::UploadInputChunk {
        part: Some(pb::upload_input_chunk::Part::Name(name.into())),
    }];
    for chunk in data.chunks(64 * 1024) {
        msgs.push(pb::UploadInputChunk {
            part: Some(pb::upload_input_chunk::Part::Data(chunk.to_vec())),
        });
    }
    client.upload_input(tokio_stream::iter(msgs)).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn an_interrupted_upload_leaves_nothing_behind() {
    let c = TestCluster::builder().start().await;
    let before = stored(c.data_dir());
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadInputChunk>(4);
    let mut client = c.jobs().await;
    let call = tokio::spawn(async move { client.upload_input(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    tx.send(pb::UploadInputChunk {
        part: Some(pb::upload_input_chunk::Part::Name("lib.smi".into())),
    })
    .await
    .expect("send name");
    for _ in 0..4 {
        tx.send(pb::UploadInputChunk {
            part: Some(pb::upload_input_chunk::Part::Data(b"CCO ethanol\n".repeat(1000))),
        })
        .await
        .expect("send data");
    }
    // The server is writing the upload to its upload folder...
    let uploads = c.data_dir().join("uploads");
    let deadline = Instant::now() + Duration::from_secs(10);
    while files_under(&uploads).is_empty() {
        assert!(Instant::now() < deadline, "the upload never reached the upload folder");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...when the client goes away without finishing the stream.
    call.abort();
    drop(tx);
    assert_nothing_left(c.data_dir(), &before).await;
}

#[tokio::test]
async fn an_abandoned_submission_leaves_nothing_behind() {
    let c = TestCluster::builder().start().await;
    let before = stored(c.data_dir());
    // Enough distinct records (~100 packs of 4096) that storing them takes a while.
    let lib: String = (0..400_000).map(|i| format!("C{}O mol{i}\n", "C".repeat(i % 40))).collect();
    let mut client = c.jobs().await;
    let call = tokio::spawn(async move { client.submit_job(vina_1iep_request(vec![input("lib.smi", lib)])).await });
    // Packs of records are being stored one by one...
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&c.artifacts_dir()).len() < before.0.len() + 3 {
        assert!(!call.is_finished(), "the submission ended before it could be abandoned");
        assert!(Instant::now() < deadline, "no record was stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...when the client gives up.
    call.abort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (artifacts, uploads) = stored(c.data_dir());
        let added: Vec<&PathBuf> = artifacts.iter().filter(|p| !before.0.contains(p)).collect();
        if added.is_empty() && uploads.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {} artifacts ({:?}...), uploads {uploads:?}",
            added.len(),
            &added[..added.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.list_jobs().await.is_empty());
}

/// A bare coordinator (no agents) started with extra flags, for limits too large to reach
/// in a test at their defaults.
struct SmallLimits {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl SmallLimits {
    fn start(flags: &[&str]) -> SmallLimits {
        let dir = tempfile::Builder::new()
            .prefix("dockyard-limits-")
            .tempdir()
            .expect("temporary folder");
        let mut cmd = Command::new(binary("dockyard-coordinator"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("DOCKYARD_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("coordinator"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("coordinator.log")).expect("log file"))
            .spawn()
            .expect("start the coordinator");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut addr = None;
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some(a) = line.trim().strip_prefix("listening on ") {
                addr = a.trim().parse().ok();
                break;
            }
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.path().join("coordinator.log")).unwrap_or_default();
            panic!("the coordinator did not start with {flags:?}:\n{log}");
        };
        SmallLimits { child, dir, addr }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("coordinator")
    }

    async fn jobs(&self) -> JobServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        JobServiceClient::new(channel)
    }
}

impl Drop for SmallLimits {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_upload_over_the_upload_limit_is_refused_and_removed() {
    let c = SmallLimits::start(&["--max-upload-bytes", "100000"]);
    let before = stored(&c.data_dir());
    let err = upload(&mut c.jobs().await, "lib.smi", b"CCO ethanol\n".repeat(20_000))
        .await
        .expect_err("oversized upload accepted");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("100000"), "{}", err.message());
    assert_nothing_left(&c.data_dir(), &before).await;
}

#[tokio::test]
async fn oversized_files_are_refused_before_they_are_read() {
    let c = SmallLimits::start(&["--max-library-bytes", "10000", "--max-receptor-bytes", "1000"]);
    let before = stored(&c.data_dir());
    let lib = b"CCO ethanol\n".repeat(500);
    // Two files of 6 KB: each under the cap, together over it.
    let mut req = vina_1iep_request(vec![input("a.smi", lib.clone()), input("b.smi", lib.clone())]);
    req.receptor = None;
    let mut jobs = c.jobs().await;
    let err = jobs.submit_job(req).await.expect_err("receptor missing, yet accepted");
    assert_eq!(err.code(), Code::InvalidArgument);
    // The 1iep receptor (~300 KB) is over the 1000-byte receptor cap.
    let err = jobs
        .submit_job(vina_1iep_request(vec![input("a.smi", lib.clone())]))
        .await
        .expect_err("receptor over the cap accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let m = err.message();
    assert!(
        m.contains("1iep_receptor.pdbqt") && m.contains("1000-byte limit") && m.contains("--max-receptor-bytes"),
        "{m}"
    );
    assert_nothing_left(&c.data_dir(), &before).await;

    // An uploaded ligand file counts with its stored size.
    let c = SmallLimits::start(&["--max-library-bytes", "10000"]);
    let before = stored(&c.data_dir());
    let mut jobs = c.jobs().await;
    let up = upload(&mut jobs, "b.smi", lib.clone()).await.expect("upload");
    let uploaded = pb::InputFile {
        name: "b.smi".into(),
        source: Some(pb::input_file::Source::UploadId(up.upload_id)),
    };
    let err = jobs
        .submit_job(vina_1iep_request(vec![input("a.smi", lib), uploaded]))
        .await
        .expect_err("library over the cap accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let m = err.message();
    assert!(
        m.contains("'b.smi'") && m.contains("10000-byte limit") && m.contains("--max-library-bytes"),
        "{m}"
    );
    // Only the upload itself (stored by UploadInput, before the submission) is there.
    let (artifacts, uploads) = stored(&c.data_dir());
    let added: Vec<_> = artifacts.iter().filter(|p| !before.0.contains(p)).collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(uploads.is_empty(), "{uploads:?}");
}

#[tokio::test]
async fn a_gzip_file_over_the_decompressed_limit_is_refused() {
    let c = SmallLimits::start(&["--max-decompressed-bytes", "100000"]);
    let before = stored(&c.data_dir());
    // Distinct SMILES lines: compressible like real ones (far under the ratio cap).
    let text: String = (0..20_000).map(|i| format!("C{}O mol{i}\n", "C".repeat(i % 13))).collect();
    let err = c
        .jobs()
        .await
        .submit_job(vina_1iep_request(vec![input("big.smi.gz", gzip(text.as_bytes()))]))
        .await
        .expect_err("over the decompressed limit, yet accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let m = err.message();
    assert!(
        m.contains("'big.smi.gz'") && m.contains("100000 bytes") && m.contains("--max-decompressed-bytes"),
        "{m}"
    );
    assert_nothing_left(&c.data_dir(), &before).await;
}

#[tokio::test]
async fn a_small_message_limit_applies_to_submissions() {
    let c = SmallLimits::start(&["--max-message-bytes", "1000000"]);
    let before = stored(&c.data_dir());
    let err = c
        .jobs()
        .await
        .submit_job(vina_1iep_request(vec![input("big.smi", b"CCO ethanol\n".repeat(100_000))]))
        .await
        .expect_err("oversized message accepted");
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("the limit is: 1000000 bytes"), "{}", err.message());
    assert_nothing_left(&c.data_dir(), &before).await;
}
