//! Real screening inputs: SDF/SMILES libraries, record-level validation, skip-invalid,
//! autobox from a reference ligand, and the box-on-receptor check.

use dockyard_tests::{input, ligand_1iep, pb, read_shared, shared_data, vina_1iep_request, TestCluster};
use tonic::Code;

/// The first `n` records of the 20-ligand 3D SDF.
fn sdf_records(n: usize) -> Vec<String> {
    let text = String::from_utf8(read_shared(&shared_data("ligands/ligands-20-3d.sdf"))).expect("utf-8");
    text.split_inclusive("$$$$\n").take(n).map(str::to_string).collect()
}

/// Record 2 of 3 with a bond that points at atom 999.
fn sdf_with_bad_record() -> String {
    let recs = sdf_records(3);
    let lines: Vec<&str> = recs[1].lines().collect();
    let natoms: usize = lines[3][0..3].trim().parse().expect("counts line");
    let mut bad: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let bond = 4 + natoms;
    bad[bond] = format!("{}999{}", &bad[bond][..3], &bad[bond][6..]);
    format!("{}{}\n{}", recs[0], bad.join("\n"), recs[2])
}

#[tokio::test]
async fn an_sdf_library_is_split_into_one_ligand_per_record() {
    let c = TestCluster::builder().start().await;
    let lib = sdf_records(20).concat();
    let mut req = vina_1iep_request(vec![input("ligands-20-3d.sdf", lib)]);
    req.batch_size = 8;
    let j = c.get_job(&c.submit(req).await).await;
    assert_eq!((j.ligands_total, j.tasks.unwrap_or_default().total), (20, 3), "{j:?}");
}

#[tokio::test]
async fn a_bad_record_rejects_the_library_naming_it_and_stores_nothing() {
    let c = TestCluster::builder().start().await;
    let req = vina_1iep_request(vec![input("three.sdf", sdf_with_bad_record())]);
    let err = c.jobs().await.submit_job(req).await.expect_err("bad record accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let m = err.message();
    assert!(
        m.contains("invalid ligands[0]") && m.contains("'three.sdf'") && m.contains("record 2"),
        "{m}"
    );
    assert!(m.contains("999"), "the reason should name the bad atom reference: {m}");
    assert!(c.list_jobs().await.is_empty());
    let stored = dockyard_tests::files_under(&c.artifacts_dir());
    assert!(stored.is_empty(), "a rejected library left objects behind: {stored:?}");
}

#[tokio::test]
async fn skip_invalid_queues_the_good_records_and_reports_the_bad_one() {
    let c = TestCluster::builder().start().await;
    let mut req = vina_1iep_request(vec![input("three.sdf", sdf_with_bad_record())]);
    req.skip_invalid = true;
    let job = c.submit(req).await;
    let j = c.get_job(&job).await;
    assert_eq!((j.ligands_total, j.ligands_skipped), (2, 1), "{j:?}");
    let r = c
        .jobs()
        .await
        .get_job_report(pb::GetJobRequest { job_id: job.clone() })
        .await
        .expect("report")
        .into_inner();
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    let s = &r.skipped[0];
    assert_eq!((s.file.as_str(), s.record), ("three.sdf", 2), "{s:?}");
    assert!(s.line > 4 && !s.reason.is_empty(), "{s:?}");

    // `dockyard report` shows them too, in both forms.
    let o = c.cli(&["report", &job, "--format", "json"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("report JSON");
    let rows = v["skipped"].as_array().expect("skipped list");
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(
        (rows[0]["file"].as_str(), rows[0]["record"].as_u64()),
        (Some("three.sdf"), Some(2)),
        "{v}"
    );
    assert_eq!(rows[0]["reason"].as_str(), Some(s.reason.as_str()), "{v}");
    let o = c.cli(&["report", &job]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("1 skipped") && table.contains("three.sdf record 2"), "{table}");
    assert!(table.contains(&s.reason), "{table}");
}

#[tokio::test]
async fn smiles_library_and_unknown_formats() {
    let c = TestCluster::builder().start().await;
    let smi = String::from_utf8(read_shared(&shared_data("ligands/ligands-20.smi"))).expect("utf-8");
    let j = c
        .get_job(&c.submit(vina_1iep_request(vec![input("ligands-20.smi", smi)])).await)
        .await;
    assert_eq!(j.ligands_total, 20);
    let err = c
        .jobs()
        .await
        .submit_job(vina_1iep_request(vec![input("ligands.xyz", "3\nwater\nO 0 0 0\n")]))
        .await
        .expect_err("unknown format accepted");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("ligands[0]") && err.message().contains("unknown format"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn autobox_from_a_reference_ligand_and_boxes_off_the_receptor() {
    let c = TestCluster::builder().start().await;
    let mut req = vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]);
    req.r#box = None;
    req.autobox_ligand = Some(input(
        "1iep_ligand.sdf",
        read_shared(&shared_data("vina-examples/1iep/1iep_ligand.sdf")),
    ));
    c.submit(req).await;

    let mut far = vina_1iep_request(vec![input("1iep_ligand.pdbqt", read_shared(&ligand_1iep()))]);
    far.r#box = Some(pb::DockingBox {
        center: Some(dockyard_tests::vec3(500.0, 500.0, 500.0)),
        size: Some(dockyard_tests::vec3(20.0, 20.0, 20.0)),
    });
    let err = c.jobs().await.submit_job(far).await.expect_err("box off the receptor accepted");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("invalid box") && err.message().contains("receptor"),
        "{}",
        err.message()
    );
}

/// SDF and SMILES ligands prepared on the agent with Open Babel, docked with the real Vina,
/// exported as SDF with the scores as data fields.
#[tokio::test]
async fn sdf_and_smiles_ligands_are_prepared_docked_and_exported() {
    dockyard_tests::require_vina();
    let c = TestCluster::builder().agent(dockyard_tests::AgentOptions::vina(2)).start().await;
    let smi = String::from_utf8(read_shared(&shared_data("ligands/ligands-20.smi"))).expect("utf-8");
    let first_smiles = smi.lines().next().expect("a SMILES line").to_string();
    let mut req = vina_1iep_request(vec![
        input("one.sdf", sdf_records(1).concat()),
        input("one.smi", format!("{first_smiles}\n")),
    ]);
    req.batch_size = 1;
    let job = c.submit(req).await;
    let j = c.wait_job_final(&job, std::time::Duration::from_secs(300)).await;
    assert_eq!(
        dockyard_tests::state(&j),
        pb::JobState::Succeeded,
        "{}",
        dockyard_tests::describe_job(&j)
    );
    let rows = c.results(&job).await.results;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert!(r.score < 0.0, "{r:?}");
        assert!(r.preparation.starts_with("obabel"), "preparation not stated: {r:?}");
        assert!(!r.sdf_key.is_empty(), "{r:?}");
    }
    let from_smiles = rows
        .iter()
        .find(|r| !r.smiles.is_empty())
        .expect("the SMILES ligand keeps its SMILES");
    assert_eq!(Some(from_smiles.smiles.as_str()), first_smiles.split_whitespace().next());

    let out = c.dir().join("hits.sdf");
    let o = c
        .cli(&["results", &job, "--format", "sdf", "--out", out.to_str().expect("utf-8 path")])
        .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sdf = std::fs::read_to_string(&out).expect("exported SDF");
    assert!(sdf.matches("$$$$").count() >= 2, "{sdf}");
    assert!(
        sdf.contains(">  <dockyard_affinity>") && sdf.contains(">  <dockyard_ligand>"),
        "{sdf}"
    );
    // The SD format: a data header follows the molecule's `M  END` or the blank line that
    // ends the item before it; otherwise readers take it as part of that item's value.
    let lines: Vec<&str> = sdf.lines().collect();
    for (i, l) in lines.iter().enumerate().skip(1) {
        if l.starts_with(">  <") {
            let prev = lines[i - 1];
            assert!(prev.is_empty() || prev == "M  END", "line {}: {l:?} follows {prev:?}", i + 1);
        }
    }
}
