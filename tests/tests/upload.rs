//! UploadInput: inputs too big for one SubmitJob message are streamed first, then referenced.

use dockyard_tests::{input, ligand_1iep, pb, read_shared, receptor_1iep, vina_1iep_request, TestCluster};
use sha2::{Digest, Sha256};
use tonic::Code;

async fn upload(c: &TestCluster, name: &str, data: &[u8]) -> Result<pb::UploadInputResponse, tonic::Status> {
    let mut msgs = vec![pb::UploadInputChunk {
        part: Some(pb::upload_input_chunk::Part::Name(name.into())),
    }];
    for chunk in data.chunks(64 * 1024) {
        msgs.push(pb::UploadInputChunk {
            part: Some(pb::upload_input_chunk::Part::Data(chunk.to_vec())),
        });
    }
    c.jobs().await.upload_input(tokio_stream::iter(msgs)).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn uploaded_receptor_is_referenced_by_id() {
    let c = TestCluster::builder().start().await;
    let receptor = read_shared(&receptor_1iep());
    let up = upload(&c, "1iep_receptor.pdbqt", &receptor).await.expect("upload");
    assert_eq!(up.size, receptor.len() as u64);
    assert_eq!(up.upload_id, format!("sha256:{}", hex::encode(Sha256::digest(&receptor))));
    // The stored object is the uploaded bytes, under the organisation's inputs, compressed
    // (the id stays the hash of the bytes as uploaded).
    let stored = c.artifacts_dir().join(format!("orgs/default/inputs/sha256/{}", &up.upload_id[7..]));
    let stored = std::fs::read(&stored).expect("stored upload");
    assert!(
        stored.len() * 2 < receptor.len(),
        "stored {} bytes of {}",
        stored.len(),
        receptor.len()
    );
    assert_eq!(zstd::stream::decode_all(&stored[..]).expect("a zstd frame"), receptor);

    let mut req = vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]);
    req.receptor = Some(pb::InputFile {
        name: "1iep_receptor.pdbqt".into(),
        source: Some(pb::input_file::Source::UploadId(up.upload_id)),
    });
    let job = c.submit(req).await;
    let j = c.get_job(&job).await;
    assert_eq!(j.ligands_total, 1);
}

#[tokio::test]
async fn unknown_or_malformed_upload_ids_are_invalid_arguments() {
    let c = TestCluster::builder().start().await;
    for id in [
        format!("sha256:{}", "ab".repeat(32)),
        "../../etc/passwd".to_string(),
        "sha256:xyz".to_string(),
    ] {
        let mut req = vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]);
        req.receptor = Some(pb::InputFile {
            name: "r.pdbqt".into(),
            source: Some(pb::input_file::Source::UploadId(id.clone())),
        });
        let err = c.jobs().await.submit_job(req).await.expect_err("bad upload id accepted");
        assert_eq!(err.code(), Code::InvalidArgument, "{id}: {err:?}");
        assert!(err.message().contains("receptor.upload_id"), "{id}: {}", err.message());
    }
    assert!(c.list_jobs().await.is_empty());
}

#[tokio::test]
async fn empty_upload_is_refused() {
    let c = TestCluster::builder().start().await;
    let err = upload(&c, "empty.pdbqt", b"").await.expect_err("empty upload accepted");
    assert_eq!(err.code(), Code::InvalidArgument);
    // Nothing half-written is left in the coordinator's upload folder.
    let leftovers = std::fs::read_dir(c.data_dir().join("uploads")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0);
}
