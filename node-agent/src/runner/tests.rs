use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use dockyard_common::artifact::{ArtifactKey, ArtifactStore, LocalStore};
use tokio_util::sync::CancellationToken;

use dockyard_common::spec::{DockMode, EngineOptions, Scoring};

use super::upload::best_pose_fields;
use super::*;
use crate::engine::gnina::{CnnScoring, GninaOptions};
use crate::engine::smina::tests::fixture;
use crate::engine::smina::SminaOptions;
use crate::engine::{EngineRun, GninaEngine};

const GNINA_SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/engine-output-samples/SYNTHETIC_gnina_native_writer_format.sdf"
);

fn params() -> pb::EngineParams {
    pb::EngineParams::default()
}

#[test]
fn smina_options_come_from_the_task() {
    assert_eq!(SminaOptions::default().for_task(&EngineOptions::default()), SminaOptions::default());
    let task = EngineOptions {
        scoring: Some(Scoring::Vinardo),
        mode: Some(DockMode::Minimize),
        ..EngineOptions::default()
    };
    assert_eq!(
        SminaOptions::default().for_task(&task),
        SminaOptions {
            scoring: Some("vinardo".into()),
            mode: DockMode::Minimize,
            ..SminaOptions::default()
        }
    );
    // The engine's own options hold where the task sets none.
    let own = SminaOptions {
        scoring: Some("dkoes_fast".into()),
        mode: DockMode::LocalOnly,
        ..SminaOptions::default()
    };
    assert_eq!(own.for_task(&EngineOptions::default()), own);
}

#[test]
fn gnina_options_come_from_the_task_and_its_gpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = crate::engine::smina::tests::engine_run(dir.path(), vec![]);
    assert_eq!(GninaOptions::default().for_run(&run), GninaOptions::default());
    let p = pb::EngineParams {
        scoring: "dkoes_scoring".into(),
        mode: "score_only".into(),
        cnn_scoring: "none".into(),
        cnn_model: "dense_ensemble".into(),
        ..params()
    };
    run.params = DockParams::from_proto(EngineKind::Gnina, Some(&p)).expect("valid");
    run.gpus = vec![2, 5];
    assert_eq!(
        GninaOptions::default().for_run(&run),
        GninaOptions {
            base: SminaOptions {
                scoring: Some("dkoes_scoring".into()),
                mode: DockMode::ScoreOnly,
                ..SminaOptions::default()
            },
            cnn_scoring: Some(CnnScoring::None),
            cnn: Some("dense_ensemble".into()),
            cnn_model: None,
            device: Some(2),
            no_gpu: false,
        }
    );
    run.params.extra.no_gpu = true;
    run.gpus = vec![3];
    let o = GninaOptions::default().for_run(&run);
    assert!(o.no_gpu);
    assert_eq!(o.device, Some(3));
}

/// An option the engine does not take fails the task for good, before anything is fetched.
#[tokio::test]
async fn vina_refuses_another_scoring_function() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    let vina = crate::engine::VinaEngine::new("/nonexistent/vina", "1.2.5");
    let ctx = Arc::new(RunnerContext::new(
        vec![Arc::new(vina) as Arc<dyn DockingEngine>],
        store,
        dir.path().join("work"),
    ));
    let a = pb::TaskAssignment {
        task_id: "t1".into(),
        attempt: 1,
        engine: "vina".into(),
        params: Some(pb::EngineParams {
            scoring: "vinardo".into(),
            ..params()
        }),
        receptor: Some(pb::ArtifactRef {
            key: "orgs/t/in/never-stored.pdbqt".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let res = run_task(ctx, a, CancellationToken::new()).await;
    let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
        panic!("expected a failure: {res:?}");
    };
    assert!(!f.retryable);
    assert!(f.reason.contains("params.scoring") && f.reason.contains("vinardo"), "{}", f.reason);
}

/// An engine this node does not have (or no build knows) is retried elsewhere.
#[tokio::test]
async fn an_engine_missing_here_is_retryable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    let ctx = Arc::new(RunnerContext::new(Vec::new(), store, dir.path().join("work")));
    for engine in ["vina", "autodock9"] {
        let a = pb::TaskAssignment {
            task_id: "t1".into(),
            attempt: 1,
            engine: engine.into(),
            ..Default::default()
        };
        let res = run_task(ctx.clone(), a, CancellationToken::new()).await;
        let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
            panic!("expected a failure: {res:?}");
        };
        assert!(f.retryable);
        assert_eq!(f.reason, format!("engine '{engine}' is not available on this node"));
    }
}

#[test]
fn fields_of_best_gnina_pose() {
    let text = std::fs::read_to_string(GNINA_SAMPLE).expect("sample");
    let fields = best_pose_fields(&text).expect("fields");
    let want: HashMap<String, f64> = [
        ("minimizedAffinity", -13.384),
        ("CNNscore", 0.9),
        ("CNNaffinity", 8.0),
        ("CNN_VS", 7.2),
        ("CNNaffinity_variance", 0.1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(fields, want);
    assert!(best_pose_fields("").is_err());
}

#[test]
fn fields_include_minimized_rmsd() {
    let text = "lig\n  x\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n\
                > <minimizedAffinity>\n-7.5\n\n> <minimizedRMSD>\n0.42\n\n$$$$\n";
    let fields = best_pose_fields(text).expect("fields");
    assert_eq!(fields.get("minimizedAffinity"), Some(&-7.5));
    assert_eq!(fields.get("minimizedRMSD"), Some(&0.42));
    assert_eq!(fields.len(), 2);
}

/// A gnina task through the runner, against the test double: the options reach the
/// engine's command line and environment, and the scores come back as fields.
#[tokio::test]
async fn gnina_task_gets_gpu_and_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    let put = |key: &'static str, data: &'static [u8]| {
        let store = store.clone();
        async move {
            store
                .put(&ArtifactKey::new(key).expect("key"), Bytes::from_static(data))
                .await
                .expect("put");
        }
    };
    put(
        "orgs/t/in/rec.pdb",
        b"ATOM      1  N   ALA A   1      0.000   0.000   0.000  1.00  0.00           N\n",
    )
    .await;
    put("orgs/t/in/lig0.sdf", b"fake\n").await;
    let ctx = RunnerContext::new(
        vec![Arc::new(GninaEngine::new(fixture("fake_gnina.sh"), "1.1")) as Arc<dyn DockingEngine>],
        store.clone(),
        dir.path().join("work"),
    );
    let a = pb::TaskAssignment {
        task_id: "t1".into(),
        attempt: 1,
        engine: "gnina".into(),
        r#box: Some(pb::DockingBox {
            center: Some(pb::Vec3 { x: 1.0, y: 2.0, z: 3.0 }),
            size: Some(pb::Vec3 { x: 20.0, y: 20.0, z: 20.0 }),
        }),
        params: Some(pb::EngineParams {
            cnn_scoring: "none".into(),
            ..params()
        }),
        receptor: Some(pb::ArtifactRef {
            key: "orgs/t/in/rec.pdb".into(),
            format: "pdb".into(),
            ..Default::default()
        }),
        ligands: vec![pb::LigandInput {
            index: 0,
            name: "lig0".into(),
            artifact: Some(pb::ArtifactRef {
                key: "orgs/t/in/lig0.sdf".into(),
                format: "sdf".into(),
                ..Default::default()
            }),
        }],
        output_prefix: "orgs/t/out/t1/".into(),
        cpu_slots: 1,
        gpu_indices: vec![2],
        timeout_s: 60,
        ..Default::default()
    };
    // `execute` rather than `run_task`, which removes the scratch folder the double writes
    // its arguments into.
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(scratch.join("in")).expect("scratch");
    // What the double "docks" the staged ligand into.
    std::fs::copy(GNINA_SAMPLE, scratch.join("in/input_0.sdf.fake_result.sdf")).expect("sample");
    let res = match execute(&ctx, &a, &scratch, CancellationToken::new()).await {
        Ok(res) => res,
        Err(RunError::Engine(e)) => panic!("engine failed: {e}"),
        Err(RunError::Setup { reason, .. }) => panic!("setup failed: {reason}"),
    };
    let args = std::fs::read_to_string(scratch.join("work/lig_0/fake_args.txt")).expect("args");
    assert!(args.contains("--device\n0\n"), "{args}");
    assert!(args.contains("--cnn_scoring\nnone\n"), "{args}");
    let env = std::fs::read_to_string(scratch.join("work/lig_0/fake_env.txt")).expect("env");
    assert_eq!(env.trim(), "CUDA_VISIBLE_DEVICES=2");

    let Some(pb::task_result::Outcome::Ok(ok)) = res.outcome else {
        panic!("task failed: {res:?}");
    };
    let lig = &ok.ligands[0];
    assert!(lig.error.is_empty(), "{lig:?}");
    assert_eq!(lig.best_score, -13.384);
    assert_eq!(lig.fields.get("CNNscore"), Some(&0.9));
    assert_eq!(lig.fields.get("minimizedAffinity"), Some(&-13.384));
    assert_eq!(lig.sdf_key, "orgs/t/out/t1/lig_0.sdf");
    let sdf = store
        .get(&ArtifactKey::new(lig.sdf_key.as_str()).expect("key"))
        .await
        .expect("sdf stored");
    assert_eq!(sdf, Bytes::from(std::fs::read(GNINA_SAMPLE).expect("sample")));
}

#[tokio::test]
async fn bad_option_fails_permanently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    let ctx = Arc::new(RunnerContext::new(
        vec![Arc::new(GninaEngine::new(PathBuf::from("/nonexistent/gnina"), "1.1")) as Arc<dyn DockingEngine>],
        store,
        dir.path().join("work"),
    ));
    let a = pb::TaskAssignment {
        task_id: "t1".into(),
        attempt: 1,
        engine: "gnina".into(),
        params: Some(pb::EngineParams {
            cnn_scoring: "sometimes".into(),
            ..params()
        }),
        ..Default::default()
    };
    let res = run_task(ctx, a, CancellationToken::new()).await;
    let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
        panic!("expected a failure: {res:?}");
    };
    assert!(!f.retryable);
    assert!(
        f.reason.starts_with("invalid params.cnn_scoring: 'sometimes' must be one of"),
        "{}",
        f.reason
    );
}

const RECEPTOR_1IEP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/vina-examples/1iep/1iep_receptor.pdbqt"
);
const LIGAND_1IEP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/vina-examples/1iep/1iep_ligand.pdbqt"
);

/// A store holding the 1iep receptor and ligand (with `ligand_extra` prepended), and an
/// assignment docking one into the other with `engine`.
async fn one_ligand_task(dir: &Path, engine: &str, ligand_extra: &str) -> (Arc<LocalStore>, pb::TaskAssignment) {
    let store = Arc::new(LocalStore::open(dir.join("store")).expect("store"));
    let receptor = std::fs::read(RECEPTOR_1IEP).expect("shared receptor");
    let mut ligand = ligand_extra.as_bytes().to_vec();
    ligand.extend(std::fs::read(LIGAND_1IEP).expect("shared ligand"));
    for (key, data) in [("orgs/t/in/rec.pdbqt", receptor), ("orgs/t/in/lig0.pdbqt", ligand)] {
        store
            .put(&ArtifactKey::new(key).expect("key"), Bytes::from(data))
            .await
            .expect("put");
    }
    let a = pb::TaskAssignment {
        task_id: "t1".into(),
        attempt: 1,
        engine: engine.into(),
        r#box: Some(pb::DockingBox {
            center: Some(pb::Vec3 {
                x: 15.19,
                y: 53.9,
                z: 16.9,
            }),
            size: Some(pb::Vec3 { x: 20.0, y: 20.0, z: 20.0 }),
        }),
        receptor: Some(pb::ArtifactRef {
            key: "orgs/t/in/rec.pdbqt".into(),
            ..Default::default()
        }),
        ligands: vec![pb::LigandInput {
            index: 0,
            name: "lig0".into(),
            artifact: Some(pb::ArtifactRef {
                key: "orgs/t/in/lig0.pdbqt".into(),
                ..Default::default()
            }),
        }],
        output_prefix: "orgs/t/out/t1/".into(),
        cpu_slots: 1,
        timeout_s: 30,
        ..Default::default()
    };
    (store, a)
}

fn scratch_folders(work: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(crate::sandbox::runs_dir(work)) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

struct PanickingEngine(crate::engine::EngineDescriptor);

#[async_trait::async_trait]
impl DockingEngine for PanickingEngine {
    fn descriptor(&self) -> &crate::engine::EngineDescriptor {
        &self.0
    }

    async fn run(&self, run: EngineRun) -> Result<crate::engine::EngineOutput, EngineError> {
        std::fs::write(run.work_dir.join("partial.txt"), "half-done").expect("write");
        panic!("engine adapter bug");
    }
}

/// A panic in the runner fails the attempt (retryable) and still removes its scratch folder.
#[tokio::test]
async fn a_panic_fails_the_task_and_removes_the_scratch_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, a) = one_ligand_task(dir.path(), "sleep", "").await;
    let engine = PanickingEngine(crate::engine::EngineDescriptor {
        kind: EngineKind::Sleep,
        version: "1".into(),
    });
    let work = dir.path().join("work");
    let ctx = Arc::new(RunnerContext::new(
        vec![Arc::new(engine) as Arc<dyn DockingEngine>],
        store,
        work.clone(),
    ));
    let res = run_task(ctx, a, CancellationToken::new()).await;
    let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
        panic!("expected a failure: {res:?}");
    };
    assert!(f.retryable);
    assert_eq!(f.reason, "agent error: the task runner panicked: engine adapter bug");
    assert_eq!(scratch_folders(&work), Vec::<PathBuf>::new());
    assert!(work.join("cache").is_dir(), "the receptor cache is kept");
}

/// The node's limits reach the engine: a run writing past the file-size limit fails with
/// the limit as the reason (retryable), and its scratch folder is removed.
#[tokio::test]
async fn the_file_size_limit_fails_the_task_with_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, a) = one_ligand_task(dir.path(), "vina", "REMARK DOCKYARD_FAULT=fill-disk\n").await;
    let work = dir.path().join("work");
    let vina = crate::engine::VinaEngine::new(fixture("fault_engine.sh"), "1.2.5");
    let ctx = Arc::new(
        RunnerContext::new(vec![Arc::new(vina) as Arc<dyn DockingEngine>], store, work.clone()).with_sandbox(SandboxConfig {
            max_file_bytes: Some(2 << 20),
            ..SandboxConfig::default()
        }),
    );
    let res = run_task(ctx, a, CancellationToken::new()).await;
    let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
        panic!("expected a failure: {res:?}");
    };
    assert!(f.retryable);
    assert_eq!(f.reason, "engine exceeded the file-size limit of 2 MB");
    assert_eq!(scratch_folders(&work), Vec::<PathBuf>::new());
}

/// A crashing engine fails the task (retryable) with the signal in the reason.
#[tokio::test]
async fn a_crashing_engine_fails_the_task_retryably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, a) = one_ligand_task(dir.path(), "vina", "REMARK DOCKYARD_FAULT=crash\n").await;
    let work = dir.path().join("work");
    let vina = crate::engine::VinaEngine::new(fixture("fault_engine.sh"), "1.2.5");
    let ctx = Arc::new(RunnerContext::new(
        vec![Arc::new(vina) as Arc<dyn DockingEngine>],
        store,
        work.clone(),
    ));
    let res = run_task(ctx, a, CancellationToken::new()).await;
    let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
        panic!("expected a failure: {res:?}");
    };
    assert!(f.retryable);
    assert!(f.reason.starts_with("engine crashed (killed by signal 11)"), "{}", f.reason);
    assert!(f.reason.contains("about to crash"), "{}", f.reason);
    assert_eq!(scratch_folders(&work), Vec::<PathBuf>::new());
}

#[test]
fn per_pose_scores_become_sd_fields_of_their_records() {
    let sdf = "a\n\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n>  <MODEL>\n1\n\n$$$$\nb\nM  END\n$$$$\nc\nM  END\n$$$$\n";
    let fields = vec![
        vec![("cnn_score".to_string(), 0.75), ("cnn_affinity".to_string(), 6.5)],
        vec![("cnn_score".to_string(), 0.25)],
    ];
    let out = super::upload::add_sd_fields(sdf, &fields);
    let records: Vec<&str> = out.split("$$$$\n").collect();
    assert_eq!(records.len(), 4, "{out}");
    assert!(
        records[0].ends_with(">  <MODEL>\n1\n\n>  <cnn_score>\n0.75\n\n>  <cnn_affinity>\n6.5\n\n"),
        "{out}"
    );
    assert!(records[1].ends_with("M  END\n>  <cnn_score>\n0.25\n\n"), "{out}");
    assert_eq!(records[2], "c\nM  END\n");
}
