use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use dockyard_common::artifact::{ArtifactKey, ArtifactStore, LocalStore};
use dockyard_common::molecule::{validate_ligand, validate_receptor};
use dockyard_proto::v1 as pb;

use super::*;
use crate::runner::{run_task, RunnerContext};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/")).join(rel)
}

/// The real obabel; panics with what is missing (CI has obabel and the shared data, and a
/// test that passes without running is no test).
async fn preparer(cache: &Path) -> Preparer {
    let sample = data("ligands/ligands-20-3d.sdf");
    assert!(
        sample.is_file(),
        "shared test data missing: {} (the repository reads ../shared)",
        sample.display()
    );
    Preparer::probe(None, cache.to_path_buf())
        .await
        .unwrap_or_else(|| panic!("this test needs obabel on PATH; install it (Debian: apt-get install openbabel)"))
}

/// The first record of an SDF file (through its `$$$$` line).
fn first_sdf_record(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("$$$$") {
            break;
        }
    }
    out
}

#[test]
fn parses_obabel_version() {
    assert_eq!(
        parse_obabel_version("Open Babel 3.1.1 -- Jan  4 2023 -- 09:58:24\n").as_deref(),
        Some("3.1.1")
    );
    assert_eq!(parse_obabel_version("Open Babel 2.4.1 -- Oct 10 2019").as_deref(), Some("2.4.1"));
    assert_eq!(parse_obabel_version("obabel: command not found"), None);
    assert_eq!(parse_obabel_version("Open Babel"), None);
}

#[tokio::test]
async fn probe_of_a_missing_binary_is_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(Preparer::probe(Some(Path::new("/nonexistent/obabel")), dir.path().join("c"))
        .await
        .is_none());
}

#[test]
fn describe_and_info() {
    let p = Preparer::new("obabel".into(), "3.1.1".into(), PathBuf::from("/tmp/x"));
    assert_eq!(
        p.describe("sdf", false),
        "obabel 3.1.1: sdf -> pdbqt (-h --partialcharge gasteiger)"
    );
    assert_eq!(
        p.describe("sdf", true),
        "obabel 3.1.1: sdf -> pdbqt (-p 7.4 --partialcharge gasteiger)"
    );
    assert_eq!(
        p.describe("smi", true),
        "obabel 3.1.1: smi -> pdbqt (--gen3d, then -p 7.4 --partialcharge gasteiger)"
    );
    assert_eq!(
        p.describe("smi", false),
        "obabel 3.1.1: smi -> pdbqt (--gen3d -h --partialcharge gasteiger)"
    );
    assert!(p.describe_receptor("pdb").starts_with("obabel 3.1.1: pdb -> pdbqt (-xr"));
    let i = p.info();
    assert_eq!((i.name.as_str(), i.version.as_str(), i.test_only), ("obabel", "3.1.1", false));
}

#[tokio::test]
async fn missing_binary_is_a_retryable_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("lig.sdf");
    std::fs::write(&input, "x\n").expect("write");
    let p = Preparer::new("/nonexistent/obabel".into(), "3.1.1".into(), dir.path().join("cache"));
    let err = p.ligand_to_pdbqt(&input, "sdf", false).await.expect_err("no obabel");
    assert!(err.retryable(), "{err}");
    assert!(err.to_string().starts_with("lig.sdf (sdf): "), "{err}");
    let err = p.ligand_to_pdbqt(&input, "xyz", false).await.expect_err("unknown format");
    assert!(!err.retryable(), "{err}");
    let err = p.receptor_to_pdbqt(&input, "smi").await.expect_err("not a receptor format");
    assert!(!err.retryable(), "{err}");
}

#[tokio::test]
async fn smiles_to_ligand_pdbqt_and_garbage_smiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = preparer(&dir.path().join("cache")).await;
    let smi = std::fs::read_to_string(data("ligands/ligands-20.smi")).expect("smi");
    let input = dir.path().join("lig.smi");
    std::fs::write(&input, format!("{}\n", smi.lines().next().expect("a line"))).expect("write");
    let out = p.ligand_to_pdbqt(&input, "smi", false).await.expect("prepared");
    let text = std::fs::read_to_string(&out).expect("read");
    let summary = validate_ligand(&text).expect("valid ligand");
    assert!(summary.atoms > 5, "{summary:?}");
    assert!(out.starts_with(dir.path().join("cache")));

    let bad = dir.path().join("bad.smi");
    std::fs::write(&bad, "XXXnotasmiles bad\n").expect("write");
    let err = p.ligand_to_pdbqt(&bad, "smi", false).await.expect_err("garbage");
    assert!(!err.retryable(), "{err}");
    assert!(err.to_string().contains("bad.smi (smi)"), "{err}");
    // Nothing half-written is left behind for a later cache hit.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".log"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `--protonate` with obabel: `-p 7.4` puts ethylamine's nitrogen in its ammonium form (three
/// polar hydrogens instead of two), and the two preparations are cached apart.
#[tokio::test]
async fn protonation_at_ph_7_4_charges_an_amine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = preparer(&dir.path().join("cache")).await;
    let input = dir.path().join("ea.smi");
    std::fs::write(&input, "CCN ethylamine\n").expect("write");
    let polar_h = |path: &Path| {
        let text = std::fs::read_to_string(path).expect("read");
        validate_ligand(&text).expect("valid ligand");
        text.lines()
            .filter(|l| l.starts_with("ATOM") || l.starts_with("HETATM"))
            .filter(|l| l.trim_end().ends_with(" HD"))
            .count()
    };
    let neutral = p.ligand_to_pdbqt(&input, "smi", false).await.expect("neutral");
    let charged = p.ligand_to_pdbqt(&input, "smi", true).await.expect("protonated");
    assert_ne!(neutral, charged, "one cache entry per preparation");
    assert_eq!((polar_h(&neutral), polar_h(&charged)), (2, 3));
}

#[tokio::test]
async fn sdf_record_to_pdbqt_is_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = preparer(&dir.path().join("cache")).await;
    let sdf = std::fs::read_to_string(data("ligands/ligands-20-3d.sdf")).expect("sdf");
    let input = dir.path().join("one.sdf");
    std::fs::write(&input, first_sdf_record(&sdf)).expect("write");
    // Concurrent callers for the same content share one obabel run.
    let (a, b) = tokio::join!(p.ligand_to_pdbqt(&input, "sdf", false), p.ligand_to_pdbqt(&input, "sdf", false));
    let out = a.expect("prepared");
    assert_eq!(out, b.expect("prepared"));
    assert_eq!(p.conversions(), 1);
    validate_ligand(&std::fs::read_to_string(&out).expect("read")).expect("valid ligand");

    // Same bytes under another name: a cache hit that runs nothing.
    let copy = dir.path().join("copy.sdf");
    std::fs::copy(&input, &copy).expect("copy");
    let started = Instant::now();
    let again = p.ligand_to_pdbqt(&copy, "sdf", false).await.expect("cached");
    assert!(started.elapsed() < Duration::from_millis(50), "{:?}", started.elapsed());
    assert_eq!(again, out);
    assert_eq!(p.conversions(), 1);

    // A fresh preparer (an agent restart) finds the file on disk.
    let p2 = Preparer::new(PathBuf::from("obabel"), p.version().to_string(), dir.path().join("cache"));
    assert_eq!(p2.ligand_to_pdbqt(&input, "sdf", false).await.expect("cached"), out);
    assert_eq!(p2.conversions(), 0);
}

#[tokio::test]
async fn pdb_receptor_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = preparer(&dir.path().join("cache")).await;
    let pdb = dir.path().join("rec.pdb");
    let st = std::process::Command::new("obabel")
        .arg("-ipdbqt")
        .arg(data("vina-examples/1iep/1iep_receptor.pdbqt"))
        .args(["-opdb", "-O"])
        .arg(&pdb)
        .output()
        .expect("obabel runs");
    assert!(st.status.success());
    let out = p.receptor_to_pdbqt(&pdb, "pdb").await.expect("prepared");
    let summary = validate_receptor(&std::fs::read_to_string(&out).expect("read")).expect("valid receptor");
    assert!(summary.atoms > 1000, "{summary:?}");
}

#[tokio::test]
async fn vina_poses_to_sdf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = preparer(&dir.path().join("cache")).await;
    let out = dir.path().join("poses.sdf");
    p.pdbqt_to_sdf(&data("engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt"), &out)
        .await
        .expect("converted");
    let text = std::fs::read_to_string(&out).expect("read");
    assert_eq!(text.lines().filter(|l| l.starts_with("$$$$")).count(), 3);
    assert!(!dir.path().join("poses.sdf.obabel.log").exists());
}

/// A vina task with an SDF ligand and a SMILES that cannot be parsed: the SDF one docks
/// and gets an SDF export, the bad one fails alone.
#[tokio::test]
async fn runner_prepares_sdf_ligand_for_vina() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = preparer(&dir.path().join("work/prep-cache")).await;
    let vina = crate::engine::vina::probe(Path::new("vina"))
        .await
        .unwrap_or_else(|e| panic!("this test needs AutoDock Vina 1.2 on PATH ({e}); install it (Debian: apt-get install autodock-vina)"));
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    let put = |key: &'static str, data: Vec<u8>| {
        let store = store.clone();
        async move {
            store
                .put(&ArtifactKey::new(key).expect("key"), Bytes::from(data))
                .await
                .expect("put");
        }
    };
    put(
        "orgs/t/in/rec.pdbqt",
        std::fs::read(data("vina-examples/1iep/1iep_receptor.pdbqt")).expect("rec"),
    )
    .await;
    put(
        "orgs/t/in/lig0.sdf",
        std::fs::read(data("vina-examples/1iep/1iep_ligand.sdf")).expect("lig"),
    )
    .await;
    put("orgs/t/in/lig1.smi", b"XXXnotasmiles bad\n".to_vec()).await;
    let ctx = Arc::new(
        RunnerContext::new(
            vec![Arc::new(vina) as Arc<dyn crate::engine::DockingEngine>],
            store.clone(),
            dir.path().join("work"),
        )
        .with_preparer(Some(Arc::new(p))),
    );
    let art = |key: &str, format: &str| pb::ArtifactRef {
        key: key.into(),
        format: format.into(),
        ..Default::default()
    };
    let a = pb::TaskAssignment {
        task_id: "t1".into(),
        attempt: 1,
        engine: "vina".into(),
        r#box: Some(pb::DockingBox {
            center: Some(pb::Vec3 {
                x: 15.19,
                y: 53.903,
                z: 16.917,
            }),
            size: Some(pb::Vec3 { x: 20.0, y: 20.0, z: 20.0 }),
        }),
        params: Some(pb::EngineParams {
            exhaustiveness: 1,
            num_modes: 3,
            seed: 42,
            ..Default::default()
        }),
        receptor: Some(art("orgs/t/in/rec.pdbqt", "")),
        ligands: vec![
            pb::LigandInput {
                index: 0,
                name: "imatinib".into(),
                artifact: Some(art("orgs/t/in/lig0.sdf", "sdf")),
            },
            pb::LigandInput {
                index: 1,
                name: "bad".into(),
                artifact: Some(art("orgs/t/in/lig1.smi", "smi")),
            },
        ],
        output_prefix: "orgs/t/out/t1/".into(),
        cpu_slots: 2,
        timeout_s: 300,
        ..Default::default()
    };
    let res = run_task(ctx, a, CancellationToken::new()).await;
    let Some(pb::task_result::Outcome::Ok(ok)) = res.outcome else {
        panic!("task failed: {res:?}");
    };
    assert_eq!(ok.ligands.len(), 2, "{ok:?}");
    let good = ok.ligands.iter().find(|l| l.index == 0).expect("ligand 0");
    assert!(good.error.is_empty(), "{good:?}");
    assert!(good.best_score < 0.0, "{good:?}");
    assert!(good.preparation.starts_with("obabel 3."), "{good:?}");
    assert!(good.preparation.contains("sdf -> pdbqt"), "{good:?}");
    assert_eq!(good.sdf_key, "orgs/t/out/t1/lig_0.sdf");
    let sdf = store
        .get(&ArtifactKey::new(good.sdf_key.as_str()).expect("key"))
        .await
        .expect("sdf stored");
    assert!(String::from_utf8_lossy(&sdf).contains("$$$$"));
    let bad = ok.ligands.iter().find(|l| l.index == 1).expect("ligand 1");
    assert!(bad.error.starts_with("preparation failed: "), "{bad:?}");
    assert_eq!(bad.smiles, "XXXnotasmiles");
}

#[tokio::test]
async fn runner_without_preparer_hands_non_pdbqt_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vina = crate::engine::VinaEngine::new("/nonexistent/vina", "1.2.3");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    store
        .put(&ArtifactKey::new("orgs/t/in/lig0.sdf").expect("key"), Bytes::from_static(b"x\n"))
        .await
        .expect("put");
    let ctx = Arc::new(RunnerContext::new(
        vec![Arc::new(vina) as Arc<dyn crate::engine::DockingEngine>],
        store,
        dir.path().join("work"),
    ));
    let a = pb::TaskAssignment {
        task_id: "t1".into(),
        attempt: 1,
        engine: "vina".into(),
        ligands: vec![pb::LigandInput {
            index: 0,
            name: "x".into(),
            artifact: Some(pb::ArtifactRef {
                key: "orgs/t/in/lig0.sdf".into(),
                format: "sdf".into(),
                ..Default::default()
            }),
        }],
        output_prefix: "orgs/t/out/t1/".into(),
        ..Default::default()
    };
    let res = run_task(ctx, a, CancellationToken::new()).await;
    let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
        panic!("expected a failure: {res:?}");
    };
    assert!(f.retryable, "{f:?}");
    assert!(f.reason.contains("install openbabel"), "{f:?}");
}
