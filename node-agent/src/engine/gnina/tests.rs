use std::path::Path;
use std::time::Duration;

use super::*;
use crate::engine::smina::tests::{engine_run, fixture, ligand};
use crate::engine::EngineError;

fn fake_gnina() -> PathBuf {
    fixture("fake_gnina.sh")
}

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

#[test]
fn args_add_cnn_and_gpu_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = engine_run(dir.path(), vec![]);
    let base = strings(&smina::build_args(&run, &SminaOptions::default()));
    assert_eq!(strings(&build_args(&run, &GninaOptions::default())), base);
    assert!(child_env(&GninaOptions::default()).is_empty());

    let opts = GninaOptions {
        cnn_scoring: Some(CnnScoring::Refinement),
        cnn: Some("dense_ensemble".into()),
        cnn_model: Some(PathBuf::from("/m/model.pt")),
        device: Some(3),
        ..GninaOptions::default()
    };
    let args = strings(&build_args(&run, &opts));
    assert_eq!(&args[..base.len()], &base[..]);
    assert_eq!(
        args[base.len()..].join(" "),
        "--cnn_scoring refinement --cnn dense_ensemble --cnn_model /m/model.pt --device 0"
    );
    assert_eq!(
        child_env(&opts),
        vec![(OsString::from("CUDA_VISIBLE_DEVICES"), OsString::from("3"))]
    );

    let opts = GninaOptions {
        cnn_scoring: Some(CnnScoring::None),
        device: Some(3),
        no_gpu: true,
        ..GninaOptions::default()
    };
    let args = strings(&build_args(&run, &opts));
    assert_eq!(args[base.len()..].join(" "), "--cnn_scoring none --no_gpu");
    assert!(child_env(&opts).is_empty());

    let names: Vec<&str> = [
        CnnScoring::None,
        CnnScoring::Rescore,
        CnnScoring::Refinement,
        CnnScoring::MetroRescore,
        CnnScoring::MetroRefine,
        CnnScoring::All,
    ]
    .iter()
    .map(|m| m.as_str())
    .collect();
    assert_eq!(names, ["none", "rescore", "refinement", "metrorescore", "metrorefine", "all"]);
}

#[tokio::test]
async fn probe_reads_version_from_fake() {
    let engine = probe(&fake_gnina()).await.expect("probe");
    assert_eq!(engine.descriptor().name(), "gnina");
    assert_eq!(engine.descriptor().version, "1.1");
    // The real smina (gnina's parent) does not call itself gnina.
    let err = probe(&crate::engine::smina::real_tests::real_smina())
        .await
        .err()
        .expect("smina is not gnina");
    assert!(err.contains("did not report a gnina version") && err.contains("Smina"), "{err}");
}

#[tokio::test]
async fn run_on_assigned_gpu_parses_cnn_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ligs = vec![ligand(dir.path(), 4, "fake\n", Some("SYNTHETIC_gnina_native_writer_format.sdf"))];
    let run = engine_run(dir.path(), ligs);
    let work_dir = run.work_dir.clone();
    let engine = GninaEngine::new(fake_gnina(), "1.1").with_options(GninaOptions {
        cnn_scoring: Some(CnnScoring::Rescore),
        device: Some(2),
        ..GninaOptions::default()
    });
    let out = engine.run(run).await.expect("runs");
    let docked = out.ligands[0].result.as_ref().expect("docked");
    assert_eq!(docked.best_score, -13.384);
    assert_eq!(docked.poses.iter().map(|p| p.affinity).collect::<Vec<_>>(), vec![-13.384, -11.432]);
    let env = std::fs::read_to_string(work_dir.join("lig_4/fake_env.txt")).expect("env");
    assert_eq!(env.trim(), "CUDA_VISIBLE_DEVICES=2");
    let args = std::fs::read_to_string(work_dir.join("lig_4/fake_args.txt")).expect("args");
    assert!(
        args.contains("--device\n0\n") && args.contains("--cnn_scoring\nrescore\n"),
        "{args}"
    );
    assert_eq!(out.log_file.as_deref(), Some(work_dir.join("gnina.log").as_path()));
}

#[tokio::test]
async fn failures_map_to_engine_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = engine_run(dir.path(), vec![ligand(dir.path(), 0, "fine\n", None)]);
    std::fs::write(run.receptor.as_ref().expect("receptor"), "BADRECEPTOR\n").expect("write");
    let err = GninaEngine::new(fake_gnina(), "1.1").run(run).await.expect_err("bad receptor");
    assert!(
        matches!(err, EngineError::BadInput(ref m) if m.starts_with("gnina refused")),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let run = engine_run(dir.path(), vec![ligand(dir.path(), 0, "CRASH\n", None)]);
    let err = GninaEngine::new(fake_gnina(), "1.1").run(run).await.expect_err("crash");
    assert!(matches!(err, EngineError::Crashed { signal: Some(_), .. }), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = engine_run(dir.path(), vec![ligand(dir.path(), 0, "HANG\n", None)]);
    run.timeout = Duration::from_millis(400);
    let err = GninaEngine::new(fake_gnina(), "1.1").run(run).await.expect_err("timeout");
    assert!(matches!(err, EngineError::Timeout(_)), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let run = engine_run(dir.path(), vec![]);
    let opts = GninaOptions {
        cnn: Some(" ".into()),
        ..GninaOptions::default()
    };
    let err = GninaEngine::new(Path::new("/nonexistent/gnina"), "1.1")
        .run_with(run, &opts)
        .await
        .expect_err("empty model name");
    assert!(matches!(err, EngineError::BadInput(_)), "{err}");
}
