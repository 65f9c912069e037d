//! Bad input is refused with INVALID_ARGUMENT naming the field, and nothing is queued or stored.

use dockyard_tests::{files_under, input, ligand_1iep, pb, read_shared, vec3, vina_1iep_request, TestCluster};
use tonic::Code;

/// Starts a cluster with one valid job queued (no agents), submits `req`, and checks that it
/// is refused with INVALID_ARGUMENT whose message contains `field` and `more`, and that the
/// job list, the queue and the artifact store are unchanged.
async fn assert_refused(req: pb::SubmitJobRequest, field: &str, more: &str) {
    let c = TestCluster::builder().start().await;
    let good = c.submit_sleep(2, 10, 0).await;
    let jobs_before = c.list_jobs().await;
    let queued_before = c.stats().await.queued;
    assert_eq!((jobs_before.len(), queued_before), (1, 2));
    let stored_before = files_under(&c.artifacts_dir());

    let err = c.jobs().await.submit_job(req).await.expect_err("bad input was accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains(&format!("invalid {field}")),
        "message should name `{field}`: {:?}",
        err.message()
    );
    assert!(err.message().contains(more), "message should mention {more:?}: {:?}", err.message());

    let jobs_after = c.list_jobs().await;
    assert_eq!(jobs_after.len(), 1, "a refused job was listed: {jobs_after:?}");
    assert_eq!(jobs_after[0].job_id, good);
    let s = c.stats().await;
    assert_eq!(s.queued, queued_before, "the queue changed: {s:?}");
    assert_eq!(
        files_under(&c.artifacts_dir()),
        stored_before,
        "a refused job left artifacts behind"
    );
}

fn good_ligand() -> pb::InputFile {
    input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))
}

#[tokio::test]
async fn malformed_pdbqt_ligand_is_refused() {
    let garbage = input("bad.pdbqt", "this is not a molecule\nATOM garbage garbage\n12 34 56\n");
    assert_refused(vina_1iep_request(vec![good_ligand(), garbage]), "ligands[1]", "'bad.pdbqt' line").await;
}

#[tokio::test]
async fn empty_library_is_refused() {
    assert_refused(vina_1iep_request(Vec::new()), "ligands", "empty").await;
}

#[tokio::test]
async fn box_with_zero_size_is_refused() {
    let mut req = vina_1iep_request(vec![good_ligand()]);
    req.r#box = Some(pb::DockingBox {
        center: Some(vec3(15.19, 53.9, 16.9)),
        size: Some(vec3(20.0, 0.0, 20.0)),
    });
    assert_refused(req, "box.size.y", "0").await;
}

#[tokio::test]
async fn unknown_engine_is_refused() {
    let mut req = vina_1iep_request(vec![good_ligand()]);
    req.engine = "autodock9".into();
    assert_refused(req, "engine", "autodock9").await;
}

#[tokio::test]
async fn zero_or_absurd_cores_per_task_are_refused() {
    let mut req = vina_1iep_request(vec![good_ligand()]);
    req.cpus_per_task = Some(0);
    assert_refused(req.clone(), "cpus_per_task", "0 must be 1-1024").await;
    req.cpus_per_task = Some(100_000);
    assert_refused(req, "cpus_per_task", "100000 must be 1-1024").await;
}

#[tokio::test]
async fn rustina_gpu_search_without_gpus_is_refused() {
    let mut req = vina_1iep_request(vec![good_ligand()]);
    req.engine = "rustina".into();
    let params = req.params.get_or_insert_with(Default::default);
    params.search_mode = "gpu".into();
    assert_refused(req, "params.search_mode", "gpu needs GPUs").await;
}
