//! The smina adapter's command lines and parsing, and the failures that only the stand-in
//! (`tests/fixtures/fake_smina.sh`) can produce. Everything the real smina can do is tested
//! against the real binary in `real_tests.rs`.

use std::os::unix::fs::PermissionsExt;

use tokio_util::sync::CancellationToken;

use dockyard_common::spec::{DockMode, DockParams, EngineOptions};

use super::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/engine-output-samples");

/// The smina test double (see the script's header).
fn fake_smina() -> PathBuf {
    fixture("fake_smina.sh")
}

/// Returns a test-double script, making sure it is executable (a checkout may drop the
/// mode bit); only the mode is touched, never the content, so no ETXTBSY on exec.
pub(crate) fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name);
    let mode = std::fs::metadata(&path).expect("fixture exists").permissions().mode();
    if mode & 0o111 != 0o111 {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod fixture");
    }
    path
}

/// Writes a ligand whose content steers the test double, and next to it the SDF sample the
/// double "docks" it into.
pub(crate) fn ligand(dir: &Path, index: u32, content: &str, sample: Option<&str>) -> LigandFile {
    let path = dir.join(format!("lig{index}.sdf"));
    std::fs::write(&path, content).expect("write ligand");
    if let Some(sample) = sample {
        std::fs::copy(format!("{DATA}/{sample}"), dir.join(format!("lig{index}.sdf.fake_result.sdf"))).expect("copy sample");
    }
    LigandFile {
        index,
        name: format!("lig{index}"),
        path,
    }
}

pub(crate) fn engine_run(dir: &Path, ligands: Vec<LigandFile>) -> EngineRun {
    let receptor = dir.join("rec.pdb");
    if !receptor.exists() {
        std::fs::write(
            &receptor,
            "ATOM      1  N   ALA A   1      0.000   0.000   0.000  1.00  0.00           N\n",
        )
        .expect("write receptor");
    }
    let work_dir = dir.join("work");
    std::fs::create_dir_all(&work_dir).expect("work dir");
    EngineRun {
        task_id: "task-test".into(),
        receptor: Some(receptor),
        ligands,
        center: [15.19, 53.903, 16.917],
        size: [20.0, 20.0, 20.0],
        params: DockParams {
            exhaustiveness: 4,
            num_modes: 5,
            seed: 0,
            energy_range: 0.0,
            sleep_ms: 0,
            extra: EngineOptions::default(),
        },
        gpus: Vec::new(),
        work_dir,
        cpu: 2,
        timeout: Duration::from_secs(30),
        cancel: CancellationToken::new(),
    }
}

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

fn run_for_args() -> EngineRun {
    EngineRun {
        task_id: "t".into(),
        receptor: Some(PathBuf::from("/r/rec.pdb")),
        ligands: vec![
            LigandFile {
                index: 0,
                name: "a".into(),
                path: PathBuf::from("/l/a.sdf"),
            },
            LigandFile {
                index: 1,
                name: "b".into(),
                path: PathBuf::from("/l/b.sdf"),
            },
        ],
        center: [1.5, -2.0, 3.25],
        size: [20.0, 22.0, 24.0],
        params: DockParams {
            exhaustiveness: 16,
            num_modes: 9,
            seed: 7,
            energy_range: 4.0,
            sleep_ms: 0,
            extra: EngineOptions::default(),
        },
        gpus: Vec::new(),
        work_dir: PathBuf::from("/w"),
        cpu: 0,
        timeout: Duration::ZERO,
        cancel: CancellationToken::new(),
    }
}

#[test]
fn args_dock_mode_with_box() {
    let args = strings(&build_args(&run_for_args(), &SminaOptions::default()));
    assert_eq!(
        args.join(" "),
        "-r /r/rec.pdb -l /l/a.sdf -l /l/b.sdf --center_x 1.5 --center_y -2 --center_z 3.25 \
         --size_x 20 --size_y 22 --size_z 24 --exhaustiveness 16 --num_modes 9 --energy_range 4 \
         --seed 7 --cpu 1 -o /w/docked.sdf"
    );
}

#[test]
fn args_each_mode_scoring_and_autobox() {
    let mut run = run_for_args();
    run.params.seed = 0;
    run.ligands.truncate(1);
    let cases = [
        (DockMode::Minimize, "--minimize"),
        (DockMode::ScoreOnly, "--score_only"),
        (DockMode::LocalOnly, "--local_only"),
    ];
    for (mode, flag) in cases {
        let opts = SminaOptions {
            scoring: Some("vinardo".into()),
            mode,
            autobox_ligand: Some(PathBuf::from("/x/crystal.sdf")),
            autobox_add: Some(6.0),
        };
        let args = strings(&build_args(&run, &opts));
        assert_eq!(
            args.join(" "),
            format!(
                "-r /r/rec.pdb -l /l/a.sdf --autobox_ligand /x/crystal.sdf --autobox_add 6 --scoring vinardo {flag} \
                 --seed {DEFAULT_SEED} --cpu 1 -o /w/docked.sdf"
            ),
            "{mode:?}"
        );
    }
    // autobox_add alone means nothing without an autobox ligand.
    let opts = SminaOptions {
        autobox_add: Some(2.0),
        ..SminaOptions::default()
    };
    let args = strings(&build_args(&run, &opts));
    assert!(!args.iter().any(|a| a.starts_with("--autobox")), "{args:?}");
    assert!(args.contains(&"--center_x".to_string()));
}

#[test]
fn version_parsing_is_lenient() {
    assert_eq!(
        parse_version("smina", "Smina Oct 15 2019.  Based on AutoDock Vina 1.1.2.\n").as_deref(),
        Some("Oct 15 2019")
    );
    // The real 2a4feb4 build pads a one-digit day.
    assert_eq!(
        parse_version("smina", "Smina Dec  5 2026.  Based on AutoDock Vina 1.1.2.\n").as_deref(),
        Some("Dec 5 2026")
    );
    assert_eq!(parse_version("smina", "smina v2020.12.10\n").as_deref(), Some("2020.12.10"));
    assert_eq!(
        parse_version("gnina", "gnina v1.1 master:e4cb380+   Built Nov  9 2023.\n").as_deref(),
        Some("1.1")
    );
    assert_eq!(parse_version("gnina", "  gnina 1.3.1\n").as_deref(), Some("1.3.1"));
    assert_eq!(parse_version("smina", "banner\nsmina\n").as_deref(), Some("unknown"));
    assert_eq!(parse_version("smina", "AutoDock Vina v1.2.3\n"), None);
    assert_eq!(parse_version("gnina", ""), None);
}

/// The real smina always creates its output file, even when it has nothing to write, so
/// only the stand-in can exit 0 without one.
#[tokio::test]
async fn exit_zero_without_an_output_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = engine_run(dir.path(), vec![ligand(dir.path(), 5, "fake ligand\n", None)]);
    let out = SminaEngine::new(fake_smina(), "test").run(run).await.expect("runs");
    let err = out.ligands[0].result.as_ref().expect_err("no output");
    assert!(err.contains("wrote no output"), "{err}");
}

/// A clashing minimised pose (recorded gnina/smina output) keeps its positive energy.
#[test]
fn positive_affinity_is_kept() {
    let groups = parse_sdf_scores(&std::fs::read_to_string(format!("{DATA}/gnina_workshop2021_minimized_sample.sdf")).expect("read"))
        .expect("parses");
    let decoy = groups.into_iter().nth(3).expect("4th");
    let docked = docked_ligand(decoy, Path::new("x.sdf"), &[]);
    assert!((docked.best_score - 59.37991).abs() < 1e-9);
    assert_eq!(docked.poses.len(), 1);
}

/// smina's table lends its RMSDs to the SDF poses it describes, and only to those.
#[test]
fn rmsds_come_from_a_matching_table() {
    let text = std::fs::read_to_string(format!("{DATA}/SYNTHETIC_gnina_native_writer_format.sdf")).expect("read");
    let group = parse_sdf_scores(&text).expect("parses").pop().expect("one ligand");
    let docked = docked_ligand(group.clone(), Path::new("x.sdf"), &[(-13.4, 0.0, 0.0), (-11.4, 3.047, 12.38)]);
    let bounds: Vec<(f64, f64)> = docked.poses.iter().map(|p| (p.rmsd_lb, p.rmsd_ub)).collect();
    assert_eq!(bounds, [(0.0, 0.0), (3.047, 12.38)]);
    let docked = docked_ligand(group, Path::new("x.sdf"), &[(-13.4, 0.0, 0.0)]);
    assert!(docked.poses.iter().all(|p| (p.rmsd_lb, p.rmsd_ub) == (0.0, 0.0)), "{docked:?}");
}

/// The real smina cannot be made to crash by a signal, and exits 1 for every error it
/// reports: a crash and an unexplained exit code are the stand-in's.
#[tokio::test]
async fn crashes_are_retryable_engine_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = engine_run(dir.path(), vec![ligand(dir.path(), 0, "CRASH\n", None)]);
    let err = SminaEngine::new(fake_smina(), "test").run(run).await.expect_err("crash");
    assert!(
        matches!(err, EngineError::Crashed { exit_code: None, signal: Some(s), .. } if s == libc::SIGSEGV),
        "{err}"
    );
    assert!(err.retryable());

    let dir = tempfile::tempdir().expect("tempdir");
    let run = engine_run(dir.path(), vec![ligand(dir.path(), 0, "INTERNAL\n", None)]);
    let err = SminaEngine::new(fake_smina(), "test").run(run).await.expect_err("internal error");
    match err {
        EngineError::Crashed {
            exit_code: Some(1),
            signal: None,
            ref stderr_tail,
        } => assert!(stderr_tail.contains("internal error"), "{stderr_tail}"),
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn params_checked_before_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = SminaEngine::new("/nonexistent/smina", "test");

    let mut run = engine_run(dir.path(), vec![ligand(dir.path(), 0, "x\n", None)]);
    run.size = [0.0, 10.0, 10.0];
    assert!(matches!(engine.run(run).await, Err(EngineError::BadInput(_))));

    // With an autobox ligand the box fields are not used, so they are not checked.
    let mut run = engine_run(dir.path(), vec![ligand(dir.path(), 0, "x\n", None)]);
    run.size = [0.0, 0.0, 0.0];
    let opts = SminaOptions {
        autobox_ligand: Some(dir.path().join("lig0.sdf")),
        ..SminaOptions::default()
    };
    assert!(matches!(engine.run_with(run, &opts).await, Err(EngineError::Spawn(_))));

    let mut run = engine_run(dir.path(), vec![]);
    run.params.seed = i64::from(i32::MAX) + 1;
    assert!(matches!(engine.run(run).await, Err(EngineError::BadInput(_))));

    let mut run = engine_run(dir.path(), vec![]);
    run.receptor = None;
    assert!(matches!(engine.run(run).await, Err(EngineError::BadInput(_))));

    let run = engine_run(dir.path(), vec![]);
    let out = engine.run(run).await.expect("nothing to do");
    assert!(out.ligands.is_empty());

    let run = engine_run(dir.path(), vec![]);
    let opts = SminaOptions {
        autobox_add: Some(f64::NAN),
        ..SminaOptions::default()
    };
    assert!(matches!(engine.run_with(run, &opts).await, Err(EngineError::BadInput(_))));
}
