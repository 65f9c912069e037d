//! Unit tests, and the real rustina (PyPI 0.9.0, `python3` on PATH) on the 5x72 example at
//! the cheapest settings it takes: `qvina2`, one run, one thread.

use tokio_util::sync::CancellationToken;

use dockyard_common::spec::{DockParams, EngineOptions};

use super::*;
use crate::engine::LigandFile;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/vina-examples/5x72");

fn data(name: &str) -> PathBuf {
    PathBuf::from(format!("{DATA}/{name}"))
}

fn lig(index: u32, path: PathBuf) -> LigandFile {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("ligand").to_string();
    LigandFile { index, name, path }
}

/// The real engine; panics with an install hint where `python3` cannot import rustina (CI
/// installs it, and a test that passes without running is no test).
async fn real() -> RustinaEngine {
    probe(Path::new("python3"))
        .await
        .unwrap_or_else(|e| panic!("this test needs rustina: pip install rustina==0.9.0 ({e})"))
}

fn cheap_run(work_dir: &Path, ligands: Vec<LigandFile>) -> EngineRun {
    EngineRun {
        task_id: "task-test".into(),
        receptor: Some(data("5x72_receptor.pdbqt")),
        ligands,
        center: [-15.0, 15.0, 129.0],
        size: [20.0, 20.0, 20.0],
        params: DockParams {
            // qvina2 at exhaustiveness 1: a single run.
            exhaustiveness: 1,
            num_modes: 3,
            seed: 42,
            energy_range: 0.0,
            sleep_ms: 0,
            extra: EngineOptions {
                search_mode: Some(SearchMode::Qvina2),
                ..EngineOptions::default()
            },
        },
        gpus: Vec::new(),
        work_dir: work_dir.to_path_buf(),
        cpu: 1,
        timeout: Duration::from_secs(300),
        cancel: CancellationToken::new(),
    }
}

#[test]
fn exhaustiveness_scales_rustinas_own_runs() {
    for mode in SearchMode::ALL {
        assert_eq!(runs(8, *mode), None, "{mode:?}: exhaustiveness 8 is rustina's default");
    }
    assert_eq!(runs(16, SearchMode::Qvina2Active), Some(32));
    assert_eq!(runs(4, SearchMode::Qvina2Active), Some(16), "race modes take no fewer than 16");
    assert_eq!(runs(1, SearchMode::Qvina2Race), Some(16));
    assert_eq!(runs(24, SearchMode::Qvina2Race), Some(96));
    assert_eq!(runs(1, SearchMode::Qvina2), Some(4));
    assert_eq!(runs(3, SearchMode::Vina), Some(12));
    assert_eq!(runs(64, SearchMode::Gpu), None);
}

#[test]
fn search_mode_follows_the_gpus() {
    assert_eq!(search_mode(None, &[]).expect("cpu"), SearchMode::Qvina2Active);
    assert_eq!(search_mode(None, &[1]).expect("gpu"), SearchMode::Gpu);
    assert_eq!(search_mode(Some(SearchMode::Vina), &[1]).expect("asked"), SearchMode::Vina);
    let e = search_mode(Some(SearchMode::Gpu), &[]).expect_err("no gpu");
    assert!(
        matches!(e, EngineError::BadInput(_)) && e.to_string().contains("needs a GPU"),
        "{e}"
    );
}

#[test]
fn the_environment_gives_threads_and_only_the_assigned_device() {
    let get = |env: &[(OsString, OsString)], k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let cpu = run_env(2, SearchMode::Qvina2Active, &[3]);
    assert_eq!(get(&cpu, "RAYON_NUM_THREADS"), Some("2".into()));
    assert_eq!(get(&cpu, "OMP_NUM_THREADS"), Some("2".into()));
    assert_eq!(get(&cpu, "CUDA_VISIBLE_DEVICES"), None, "a CPU search touches no GPU");
    let gpu = run_env(1, SearchMode::Gpu, &[3, 5]);
    assert_eq!(get(&gpu, "CUDA_VISIBLE_DEVICES"), Some("3".into()));
    assert_eq!(get(&gpu, "WGPU_BACKEND"), Some("vulkan".into()));
}

#[test]
fn scoring_names_are_rustinas() {
    assert_eq!(scoring_name(None).expect("default"), "vinardo");
    assert_eq!(scoring_name(Some(Scoring::Ad4Scoring)).expect("ad4"), "ad4");
    assert_eq!(scoring_name(Some(Scoring::Vina)).expect("vina"), "vina");
    assert!(scoring_name(Some(Scoring::DkoesFast)).is_err());
}

#[test]
fn version_parsing() {
    assert_eq!(parse_rustina_version("0.9.0\n"), Some("0.9.0".into()));
    assert_eq!(parse_rustina_version("warning: x\n1.2.3rc1\n\n"), Some("1.2.3rc1".into()));
    assert_eq!(parse_rustina_version("Traceback ...\nModuleNotFoundError: No module"), None);
    assert_eq!(parse_rustina_version(""), None);
}

#[tokio::test]
async fn probe_needs_a_python_that_imports_rustina() {
    let e = probe(Path::new("/nonexistent/python3")).await.err().expect("no python");
    assert!(e.contains("cannot run"), "{e}");
    // A program that runs but imports nothing: `false` exits 1 without output.
    let e = probe(Path::new("false")).await.err().expect("no rustina");
    assert!(e.contains("cannot import rustina"), "{e}");
    let engine = real().await;
    assert_eq!(engine.descriptor().kind, EngineKind::Rustina);
    assert_eq!(engine.descriptor().version, "0.9.0");
}

#[tokio::test]
async fn bad_parameters_are_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = RustinaEngine::new("python3", "0.9.0");
    let mut run = cheap_run(dir.path(), vec![lig(0, data("5x72_ligand_p59.pdbqt"))]);
    run.params.seed = -1;
    assert!(matches!(engine.run(run).await, Err(EngineError::BadInput(_))));
    let mut run = cheap_run(dir.path(), vec![lig(0, data("5x72_ligand_p59.pdbqt"))]);
    run.params.extra.search_mode = Some(SearchMode::Gpu);
    let e = engine.run(run).await.expect_err("gpu without a gpu");
    assert!(e.to_string().contains("needs a GPU"), "{e}");
    let mut run = cheap_run(dir.path(), vec![lig(0, data("5x72_ligand_p59.pdbqt"))]);
    run.receptor = None;
    assert!(matches!(engine.run(run).await, Err(EngineError::BadInput(_))));
}

/// With the CNN off the poses are ranked by affinity and carry no CNN scores (rustina
/// reports 0.0 for them, which would read as a probability).
#[tokio::test]
async fn real_rustina_without_the_cnn_reports_no_cnn_fields() {
    let engine = real().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = cheap_run(dir.path(), vec![lig(0, data("5x72_ligand_p59.pdbqt"))]);
    run.params.extra.cnn_scoring = Some(CnnScoring::None);
    let out = engine.run(run).await.expect("run");
    let d = out.ligands[0].result.as_ref().expect("docked");
    assert!(d.fields.is_empty() && d.pose_fields.iter().all(Vec::is_empty), "{d:?}");
    assert!(d.poses.windows(2).all(|w| w[0].affinity <= w[1].affinity), "{d:?}");
    assert_eq!(d.best_score, d.poses[0].affinity);
}

/// A receptor rustina cannot read fails the run as bad input naming the receptor, rather
/// than every ligand with a reason that names no file.
#[tokio::test]
async fn real_rustina_refusing_the_receptor_is_bad_input() {
    let engine = real().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let receptor = dir.path().join("receptor.pdbqt");
    std::fs::write(&receptor, "ATOM      1  C   ALA A   1      xx\n").expect("write");
    let mut run = cheap_run(dir.path(), vec![lig(0, data("5x72_ligand_p59.pdbqt"))]);
    run.receptor = Some(receptor);
    let e = engine.run(run).await.expect_err("bad receptor");
    assert!(matches!(e, EngineError::BadInput(_)), "{e:?}");
    assert!(e.to_string().contains("rustina refused the receptor: ValueError: line 1"), "{e}");
}

/// p59 with atom 3 numbered 4 like the atom after it (no BRANCH names either): rustina
/// alone refuses it with `duplicate atom serial 4`.
fn p59_with_a_repeated_serial(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(data("5x72_ligand_p59.pdbqt")).expect("p59");
    let mut done = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if !done && l.starts_with("ATOM      3 ") {
                done = true;
                format!("ATOM      4 {}", &l[12..])
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(done, "p59 has an atom 3");
    let path = dir.join("p59_dup.pdbqt");
    std::fs::write(&path, out.join("\n") + "\n").expect("write");
    path
}

/// Real rustina: two good ligands (one with a repeated serial, renumbered) and one refused;
/// the refused one fails alone with rustina's reason, the others carry three poses with CNN
/// scores, in a pose file Vina's reader reads.
#[tokio::test]
async fn real_rustina_docks_and_fails_a_bad_ligand_alone() {
    let engine = real().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.pdbqt");
    std::fs::write(&bad, "ROOT\nATOM      1  C   UNL     1     x\nENDROOT\nTORSDOF 0\n").expect("write");
    let ligands = vec![
        lig(0, p59_with_a_repeated_serial(dir.path())),
        lig(1, bad),
        lig(2, data("5x72_ligand_p69.pdbqt")),
    ];
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let out = engine.run(cheap_run(&work, ligands)).await.expect("run");
    assert_eq!(out.ligands.iter().map(|l| l.index).collect::<Vec<_>>(), [0, 1, 2]);
    let log = std::fs::read_to_string(out.log_file.as_ref().expect("log")).expect("log");
    assert!(out.cpu_seconds > 0.0, "{out:?}");
    for i in [0, 2] {
        let d = out.ligands[i].result.as_ref().unwrap_or_else(|e| panic!("ligand {i}: {e}\n{log}"));
        assert_eq!(d.poses.len(), 3, "{d:?}");
        assert_eq!(d.best_score, d.poses[0].affinity);
        assert!(d.best_score < -3.0, "{d:?}");
        assert_eq!(d.poses[0].rmsd_ub, 0.0);
        assert!(d.poses[1].rmsd_ub > 0.0 && d.poses[1].rmsd_lb <= d.poses[1].rmsd_ub, "{d:?}");
        let p = d.fields["cnn_score"];
        assert!((0.0..=1.0).contains(&p), "{d:?}");
        assert!(d.fields["cnn_affinity"] > 0.0, "{d:?}");
        assert_eq!(d.pose_fields.len(), 3);
        assert_eq!(d.pose_fields[0][0], ("cnn_score".to_string(), p));
        // Ranked by the CNN: the top pose has the highest pose probability.
        assert!(d.pose_fields.iter().all(|f| f[0].1 <= p), "{d:?}");
    }
    let reason = out.ligands[1].result.as_ref().expect_err("bad ligand");
    assert!(reason.starts_with("rustina refused the ligand: "), "{reason}");
    assert!(log.contains("ligand 2: docked"), "{log}");
    // What the renumbering spared it: rustina's own verdict on the file as given.
    let refused = std::process::Command::new("python3")
        .args(["-c", "import rustina, sys; rustina.score(sys.argv[1], sys.argv[2])"])
        .arg(data("5x72_receptor.pdbqt"))
        .arg(dir.path().join("p59_dup.pdbqt"))
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("duplicate atom serial 4"), "{stderr}");
}

/// A TEST DOUBLE for the Python running the driver: it reads the job the adapter wrote and
/// "docks" each ligand with one fixed pose, except that it dies of SIGSEGV on a ligand whose
/// file contains `crash`, and exits 1 before any ligand when one contains `crash_first` (a
/// Python that cannot start). Each call's ligands are logged.
fn python_double(dir: &Path) -> PathBuf {
    let body = r#"#!/usr/bin/env python3
import json, os, signal, sys
job = json.load(open(sys.argv[2]))
open(os.path.join(os.path.dirname(sys.argv[0]), "calls.log"), "a").write(
    " ".join(str(l["index"]) for l in job["ligands"]) + "\n")
if any("crash_first" in open(l["path"]).read() for l in job["ligands"]):
    print("ImportError: no module named rustina", flush=True)
    sys.exit(1)
os.makedirs("out", exist_ok=True)
for lig in job["ligands"]:
    i = lig["index"]
    print("ligand %d: start" % i, flush=True)
    if "crash" in open(lig["path"]).read():
        os.kill(os.getpid(), signal.SIGSEGV)
    open("out/lig_%d_out.pdbqt" % i, "w").write(
        "MODEL 1\nREMARK VINA RESULT:    -7.000      0.000      0.000\nENDMDL\n")
    open("out/lig_%d.json" % i, "w").write(
        json.dumps({"poses": [{"affinity": -7.0, "cnn_score": 0.5, "cnn_affinity": 5.0}]}))
"#;
    let path = dir.join("python-double");
    std::fs::write(&path, body).expect("write the double");
    let mut perm = std::fs::metadata(&path).expect("double").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).expect("chmod the double");
    path
}

/// The ligand the Python process died on fails alone, the ones after it run again; a
/// process that dies before any ligand fails the run as a crash (the node's, retryable).
#[tokio::test]
async fn a_crash_fails_the_ligand_being_docked_and_the_rest_run_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = RustinaEngine::new(python_double(dir.path()), "0.9.0");
    let crash = dir.path().join("x.pdbqt");
    std::fs::write(&crash, "REMARK crash\n").expect("write");
    let good = data("5x72_ligand_p59.pdbqt");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work");
    let ligands = vec![lig(0, good.clone()), lig(1, crash), lig(2, good.clone()), lig(3, good.clone())];
    let out = engine.run(cheap_run(&work, ligands)).await.expect("run");
    let calls = std::fs::read_to_string(dir.path().join("calls.log")).expect("calls");
    assert_eq!(calls, "0 1 2 3\n2 3\n");
    let reason = out.ligands[1].result.as_ref().expect_err("crashed ligand");
    assert!(reason.contains("killed by signal 11"), "{reason}");
    for i in [0, 2, 3] {
        let d = out.ligands[i].result.as_ref().unwrap_or_else(|e| panic!("ligand {i}: {e}"));
        assert_eq!((d.best_score, d.fields["cnn_score"]), (-7.0, 0.5));
    }

    let first = dir.path().join("crash_first.pdbqt");
    std::fs::write(&first, "REMARK crash_first\n").expect("write");
    let work = dir.path().join("work2");
    std::fs::create_dir(&work).expect("work");
    let e = engine
        .run(cheap_run(&work, vec![lig(0, first), lig(1, good)]))
        .await
        .expect_err("no start");
    assert!(
        matches!(e, EngineError::Crashed { exit_code: Some(1), .. }) && e.retryable(),
        "{e:?}"
    );
    assert!(e.to_string().contains("no module named rustina"), "{e}");
}

/// Cancelling a run stops it at once and leaves no Python process behind.
#[tokio::test]
async fn cancellation_kills_the_python_process() {
    let engine = real().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = cheap_run(dir.path(), vec![lig(0, data("5x72_ligand_p59.pdbqt"))]);
    // Rustina's default search: long enough to be cancelled while it runs.
    run.params.exhaustiveness = 64;
    run.params.extra.search_mode = None;
    let cancel = run.cancel.clone();
    let driver = dir.path().join(DRIVER_NAME);
    let running = tokio::spawn(async move { engine.run(run).await });
    let log = dir.path().join(LOG_NAME);
    let until = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("ligand 0: start") {
        assert!(Instant::now() < until, "the driver never started docking");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!drivers_running(&driver).is_empty(), "no python process found");
    let t = Instant::now();
    cancel.cancel();
    let res = running.await.expect("join");
    assert!(matches!(res, Err(EngineError::Cancelled)), "{res:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(drivers_running(&driver), Vec::<i32>::new(), "python outlived the cancellation");
}

/// Processes whose command line runs this test's driver.
fn drivers_running(driver: &Path) -> Vec<i32> {
    super::super::process::proc_pids()
        .into_iter()
        .filter(|pid| {
            // A zombie has an empty command line; it runs nothing.
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.split(|b| *b == 0).any(|a| a == driver.as_os_str().as_encoded_bytes())
        })
        .collect()
}
