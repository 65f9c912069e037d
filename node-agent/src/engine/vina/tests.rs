use std::os::unix::fs::PermissionsExt;

use tokio_util::sync::CancellationToken;

use dockyard_common::spec::{DockParams, EngineOptions};

use super::*;
use crate::engine::LigandDock;
use crate::engine::LigandFile;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

fn data(rel: &str) -> PathBuf {
    PathBuf::from(format!("{DATA}/{rel}"))
}

fn meeko(id: &str) -> PathBuf {
    data(&format!("ligands/pdbqt-meeko/{id}.pdbqt"))
}

fn receptor_1iep() -> PathBuf {
    data("vina-examples/1iep/1iep_receptor.pdbqt")
}

/// The real `vina` on PATH; panics with an install hint where there is none (CI has it, and
/// a test that passes without running is no test).
fn vina_on_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("vina"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("this test needs AutoDock Vina 1.2 on PATH; install it (Debian: apt-get install autodock-vina)"))
}

fn lig(index: u32, path: PathBuf) -> LigandFile {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("ligand").to_string();
    LigandFile { index, name, path }
}

fn engine_run(work_dir: &Path, ligands: Vec<LigandFile>) -> EngineRun {
    EngineRun {
        task_id: "task-test".into(),
        receptor: Some(receptor_1iep()),
        ligands,
        center: [15.190, 53.903, 16.917],
        size: [20.0, 20.0, 20.0],
        params: DockParams {
            exhaustiveness: 1,
            num_modes: 0,
            seed: 42,
            energy_range: 0.0,
            sleep_ms: 0,
            extra: EngineOptions::default(),
        },
        gpus: Vec::new(),
        work_dir: work_dir.to_path_buf(),
        cpu: 1,
        timeout: Duration::from_secs(600),
        cancel: CancellationToken::new(),
    }
}

/// Writes an executable script and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Behaves like Vina 1.2.3 batch mode as far as files go: one output per `--batch` input,
/// written in order; a ligand containing `BADLIGAND` aborts the batch with Vina's message.
const FAKE_VINA: &str = r#"echo "ARGS: $*"
dir=""; batches=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2;;
    --batch) batches="$batches $2"; shift 2;;
    *) shift;;
  esac
done
echo "Computing Vina grid ... done."
for b in $batches; do
  if grep -q BADLIGAND "$b"; then
    echo 'PDBQT parsing error: Coordinate "bc.de018" is not valid.'
    echo ' > ATOM      3  N   UNL     1       1.  abc.de018'
    exit 1
  fi
  n=$(basename "$b" .pdbqt)
  printf 'MODEL 1\nREMARK VINA RESULT:    -7.000      0.000      0.000\nENDMDL\n' > "$dir/${n}_out.pdbqt"
done
"#;

fn fake_engine(dir: &Path, body: &str) -> VinaEngine {
    let mut engine = VinaEngine::new(script(dir, "fake-vina", body), "1.2.3");
    engine.grace = Duration::from_millis(200);
    engine
}

fn log_text(out: &EngineOutput) -> String {
    let path = out.log_file.as_ref().expect("log file");
    std::fs::read_to_string(path).expect("read log")
}

fn ok_score(dock: &LigandDock) -> f64 {
    match &dock.result {
        Ok(d) => d.best_score,
        Err(e) => panic!("ligand {} failed: {e}", dock.index),
    }
}

fn err_reason(dock: &LigandDock) -> &str {
    match &dock.result {
        Ok(_) => panic!("ligand {} should have failed", dock.index),
        Err(e) => e,
    }
}

// ---- pure helpers ----

#[test]
fn version_parsing() {
    assert_eq!(parse_vina_version("AutoDock Vina v1.2.3\n").as_deref(), Some("1.2.3"));
    assert_eq!(parse_vina_version("AutoDock Vina 1.1.2 (May 11, 2011)").as_deref(), Some("1.1.2"));
    assert_eq!(
        parse_vina_version("noise\nAutoDock Vina v1.2.5-mod\n").as_deref(),
        Some("1.2.5-mod")
    );
    assert_eq!(parse_vina_version("smina 2020.12.10"), None);
    assert_eq!(parse_vina_version("AutoDock Vina"), None);
    assert!(supports_batch("1.2.3"));
    assert!(supports_batch("1.10.0"));
    assert!(supports_batch("2.0"));
    assert!(!supports_batch("1.1.2"));
    assert!(!supports_batch("garbage"));
}

#[test]
fn failure_classification_from_real_vina_logs() {
    let ligand = "Computing Vina grid ... done.\nPerforming docking (random seed: 42) ... \n\
        \n\nPDBQT parsing error: Coordinate \"bc.de018\" is not valid.\n \
        > ATOM      3  N   UNL     1       1.  abc.de018   1.215\n\n";
    match classify_failure(ligand) {
        Failure::Ligand(msg) => {
            assert!(msg.starts_with("PDBQT parsing error: Coordinate"), "{msg}");
            assert!(msg.contains("> ATOM      3"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    let empty = "Computing Vina grid ... done.\nERROR: Cannot read ligand file. Ligand string is empty.\n";
    assert!(matches!(classify_failure(empty), Failure::Ligand(_)));

    let receptor = "Verbosity: 1\n\n\n\nPDBQT parsing error: Unknown or inappropriate tag found in rigid receptor.\n > ROOT\n";
    assert!(matches!(classify_failure(receptor), Failure::Setup(m) if m.contains("> ROOT")));

    let cli = "Command line parse error: the argument ('2147483648') for option '--seed' is invalid\n";
    assert!(matches!(classify_failure(cli), Failure::Setup(_)));

    let oom = "Computing Vina grid ... done.\nError: insufficient memory!\n";
    assert_eq!(classify_failure(oom), Failure::Other);
}

#[test]
fn tail_cuts_at_a_line_boundary() {
    assert_eq!(tail("a\nb\n", 100), "a\nb");
    assert_eq!(tail("first line\nsecond\nthird\n", 12), "third");
    assert_eq!(tail("ééééé", 3), "é");
}

#[test]
fn seed_zero_means_the_fixed_default() {
    assert_eq!(effective_seed(0).expect("ok"), 42);
    assert_eq!(effective_seed(-5).expect("ok"), -5);
    assert!(matches!(effective_seed(1 << 40), Err(EngineError::BadInput(_))));
}

// ---- probing ----

#[tokio::test]
async fn probe_reads_the_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = script(dir.path(), "vina-good", "echo 'AutoDock Vina v1.2.3'\n");
    let engine = probe(&good).await.expect("usable");
    assert_eq!(engine.descriptor().version, "1.2.3");
    assert_eq!(engine.descriptor().name(), "vina");
    assert_eq!(engine.program(), good);

    let old = script(dir.path(), "vina-old", "echo 'AutoDock Vina 1.1.2 (May 11, 2011)'\n");
    let err = probe(&old).await.err().expect("too old");
    assert!(err.contains("no batch mode"), "{err}");

    let other = script(dir.path(), "not-vina", "echo hello\n");
    assert!(probe(&other).await.is_err());
    assert!(probe(Path::new("/nonexistent/vina")).await.is_err());
}

// ---- input checks (no process is started) ----

#[tokio::test]
async fn bad_parameters_are_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), "exit 99\n");
    let ligs = || vec![lig(0, meeko("MOSES_TEST_170272"))];

    let mut r = engine_run(dir.path(), ligs());
    r.receptor = None;
    let e = engine.run(r).await.expect_err("no receptor");
    assert!(matches!(e, EngineError::BadInput(ref m) if m.contains("receptor")), "{e}");
    assert!(!e.retryable());

    let mut r = engine_run(dir.path(), ligs());
    r.size = [20.0, 0.0, 20.0];
    assert!(matches!(engine.run(r).await, Err(EngineError::BadInput(_))));

    let mut r = engine_run(dir.path(), ligs());
    r.center = [f64::NAN, 0.0, 0.0];
    assert!(matches!(engine.run(r).await, Err(EngineError::BadInput(_))));

    let mut r = engine_run(dir.path(), ligs());
    r.params.seed = i64::MAX;
    assert!(matches!(engine.run(r).await, Err(EngineError::BadInput(_))));

    let mut r = engine_run(dir.path(), ligs());
    r.ligands.push(lig(0, meeko("MOSES_TEST_150311")));
    let e = engine.run(r).await.expect_err("duplicate index");
    assert!(e.to_string().contains("appears twice"), "{e}");

    let mut r = engine_run(dir.path(), ligs());
    r.receptor = Some(meeko("MOSES_TEST_150311"));
    let e = engine.run(r).await.expect_err("ligand as receptor");
    assert!(matches!(e, EngineError::BadInput(ref m) if m.contains("ROOT")), "{e}");

    let mut r = engine_run(dir.path(), ligs());
    r.receptor = Some(dir.path().join("missing.pdbqt"));
    assert!(matches!(engine.run(r).await, Err(EngineError::Io(_))));

    assert!(!dir.path().join(LOG_NAME).exists(), "no process should have run");
}

#[tokio::test]
async fn no_ligands_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), "exit 99\n");
    let out = engine.run(engine_run(dir.path(), vec![])).await.expect("empty run");
    assert!(out.ligands.is_empty());
    assert_eq!(out.log_file, None);
}

// ---- with a fake vina binary ----

#[tokio::test]
async fn arguments_and_default_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), FAKE_VINA);
    let mut r = engine_run(
        dir.path(),
        vec![lig(3, meeko("MOSES_TEST_170272")), lig(8, meeko("MOSES_TEST_150311"))],
    );
    r.params.seed = 0;
    r.cpu = 0;
    r.params.exhaustiveness = 0;
    let out = engine.run(r).await.expect("runs");
    let log = log_text(&out);
    let args = log.lines().find_map(|l| l.strip_prefix("ARGS: ")).expect("args echoed");
    let receptor = receptor_1iep();
    assert_eq!(
        args,
        format!(
            "--receptor {} --batch in/lig_3.pdbqt --batch in/lig_8.pdbqt --dir out \
             --center_x 15.19 --center_y 53.903 --center_z 16.917 \
             --size_x 20 --size_y 20 --size_z 20 --seed 42 --cpu 1",
            receptor.display()
        )
    );
    assert_eq!(out.ligands.len(), 2);
    for d in &out.ligands {
        assert_eq!(ok_score(d), -7.0);
        let docked = d.result.as_ref().expect("ok");
        assert_eq!(docked.pose_file, dir.path().join(format!("out/lig_{}_out.pdbqt", d.index)));
    }
    assert_eq!(out.ligands[0].name, "MOSES_TEST_170272");

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), FAKE_VINA);
    let mut r = engine_run(dir.path(), vec![lig(0, meeko("MOSES_TEST_170272"))]);
    r.params.exhaustiveness = 4;
    r.params.num_modes = 5;
    r.params.energy_range = 2.5;
    r.params.seed = -7;
    r.cpu = 3;
    let out = engine.run(r).await.expect("runs");
    let log = log_text(&out);
    assert!(
        log.contains("--exhaustiveness 4 --num_modes 5 --energy_range 2.5 --seed -7 --cpu 3"),
        "{log}"
    );
}

#[tokio::test]
async fn invalid_ligand_fails_alone_before_vina() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), FAKE_VINA);
    let broken = dir.path().join("broken.pdbqt");
    let text = std::fs::read_to_string(meeko("MOSES_TEST_170272")).expect("read");
    std::fs::write(&broken, text.replace("ENDBRANCH   8  10\n", "")).expect("write");
    let garbage = dir.path().join("garbage.pdbqt");
    std::fs::write(&garbage, [0x7f, b'E', b'L', b'F', 0xff, 0x00]).expect("write");
    let r = engine_run(
        dir.path(),
        vec![
            lig(0, meeko("MOSES_TEST_170272")),
            lig(1, broken),
            lig(2, garbage),
            lig(3, meeko("MOSES_TEST_150311")),
        ],
    );
    let out = engine.run(r).await.expect("runs");
    assert_eq!(ok_score(&out.ligands[0]), -7.0);
    let reason = err_reason(&out.ligands[1]);
    assert!(reason.contains("BRANCH 8 10 not closed"), "{reason}");
    let reason = err_reason(&out.ligands[2]);
    assert!(reason.contains("not UTF-8"), "{reason}");
    assert_eq!(ok_score(&out.ligands[3]), -7.0);
    let log = log_text(&out);
    assert!(!log.contains("lig_1.pdbqt") && !log.contains("lig_2.pdbqt"), "{log}");
}

#[tokio::test]
async fn ligand_aborting_the_batch_fails_alone_and_the_rest_is_rerun() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), FAKE_VINA);
    // Passes validation, but the fake vina refuses it the way Vina refuses a bad file.
    let poisoned = dir.path().join("poisoned.pdbqt");
    let text = std::fs::read_to_string(meeko("MOSES_TEST_121465")).expect("read");
    std::fs::write(&poisoned, format!("REMARK BADLIGAND\n{text}")).expect("write");
    let r = engine_run(
        dir.path(),
        vec![
            lig(0, meeko("MOSES_TEST_170272")),
            lig(1, poisoned.clone()),
            lig(2, meeko("MOSES_TEST_150311")),
            lig(3, poisoned),
            lig(4, meeko("MOSES_TEST_005468")),
        ],
    );
    let out = engine.run(r).await.expect("runs");
    let ok: Vec<u32> = out.ligands.iter().filter(|d| d.result.is_ok()).map(|d| d.index).collect();
    assert_eq!(ok, [0, 2, 4]);
    for bad in [1, 3] {
        let reason = err_reason(&out.ligands[bad]);
        assert!(
            reason.starts_with("vina rejected the ligand: PDBQT parsing error: Coordinate"),
            "{reason}"
        );
    }
    let log = log_text(&out);
    let runs: Vec<&str> = log.lines().filter(|l| l.starts_with("ARGS: ")).collect();
    assert_eq!(runs.len(), 3, "{log}");
    assert!(runs[1].contains("--batch in/lig_2.pdbqt --batch in/lig_3.pdbqt --batch in/lig_4.pdbqt"));
    assert!(runs[2].contains("--batch in/lig_4.pdbqt --dir"));
}

#[tokio::test]
async fn crashes_and_unexplained_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ligs = || vec![lig(0, meeko("MOSES_TEST_170272"))];

    let engine = fake_engine(dir.path(), "echo 'Computing Vina grid ... done.'\nkill -SEGV $$\n");
    let e = engine.run(engine_run(dir.path(), ligs())).await.expect_err("crash");
    match &e {
        EngineError::Crashed { signal, stderr_tail, .. } => {
            assert_eq!(*signal, Some(libc::SIGSEGV));
            assert!(stderr_tail.contains("Computing Vina grid"), "{stderr_tail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.retryable());

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(
        dir.path(),
        "echo 'Computing Vina grid ... done.'\necho 'Error: insufficient memory!'\nexit 1\n",
    );
    let e = engine.run(engine_run(dir.path(), ligs())).await.expect_err("failure");
    assert!(
        matches!(e, EngineError::Crashed { exit_code: Some(1), ref stderr_tail, .. } if stderr_tail.contains("insufficient memory")),
        "{e}"
    );

    // A parse error before the grid is about the receptor or options.
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(
        dir.path(),
        "echo 'PDBQT parsing error: Unknown or inappropriate tag found in rigid receptor.'\nexit 1\n",
    );
    let e = engine.run(engine_run(dir.path(), ligs())).await.expect_err("setup");
    assert!(matches!(e, EngineError::BadInput(_)), "{e}");

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), "exit 0\n");
    let out = engine.run(engine_run(dir.path(), ligs())).await.expect("exit 0");
    assert!(err_reason(&out.ligands[0]).contains("no output"));
}

#[tokio::test]
async fn timeout_and_cancellation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), "sleep 100\n");
    let mut r = engine_run(dir.path(), vec![lig(0, meeko("MOSES_TEST_170272"))]);
    r.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let e = engine.run(r).await.expect_err("timeout");
    assert!(matches!(e, EngineError::Timeout(d) if d == Duration::from_millis(300)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let dir = tempfile::tempdir().expect("tempdir");
    let engine = fake_engine(dir.path(), "sleep 100\n");
    let r = engine_run(dir.path(), vec![lig(0, meeko("MOSES_TEST_170272"))]);
    let cancel = r.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let e = engine.run(r).await.expect_err("cancelled");
    assert!(matches!(e, EngineError::Cancelled), "{e}");
}

// ---- real AutoDock Vina ----

#[tokio::test]
async fn real_vina_docks_1iep() {
    let vina = vina_on_path();
    let engine = probe(&vina).await.expect("vina probes");
    let dir = tempfile::tempdir().expect("tempdir");
    let r_ligands = [data("vina-examples/1iep/1iep_ligand.pdbqt"), meeko("MOSES_TEST_170272")];
    let r = engine_run(
        dir.path(),
        r_ligands.iter().enumerate().map(|(i, p)| lig(i as u32, p.clone())).collect(),
    );
    let out = engine.run(r).await.expect("vina runs");
    assert_eq!(out.ligands.len(), 2);
    for d in &out.ligands {
        println!("ligand {} {}: {:?}", d.index, d.name, d.result);
    }
    println!("cpu {:.1} s, wall {:.1} s", out.cpu_seconds, out.wall_seconds);
    for d in &out.ligands {
        let docked = d.result.as_ref().expect("docked");
        assert!(docked.pose_file.is_file(), "{:?}", docked.pose_file);
        assert!(!docked.poses.is_empty());
        assert!(
            docked.best_score < -3.0 && docked.best_score > -25.0,
            "ligand {}: {}",
            d.index,
            docked.best_score
        );
        assert_eq!(docked.best_score, docked.poses[0].affinity);
        // Vina's energy terms, per pose and for the best pose, give back its affinity by
        // Vina's own formula (weight 0.05846 per torsion of the input ligand).
        assert_eq!(docked.pose_fields.len(), docked.poses.len());
        let input = std::fs::read_to_string(&r_ligands[d.index as usize]).expect("ligand");
        let torsdof: f64 = input
            .lines()
            .find_map(|l| l.strip_prefix("TORSDOF"))
            .and_then(|v| v.trim().parse().ok())
            .expect("TORSDOF");
        let f = |name: &str| *docked.fields.get(name).unwrap_or_else(|| panic!("no {name}: {:?}", docked.fields));
        let affinity = (f("vina_inter_intra") - f("vina_unbound")) / (1.0 + 0.05846 * torsdof);
        assert!((affinity - docked.best_score).abs() < 0.002, "{affinity} vs {}", docked.best_score);
    }
    // Imatinib redocked into its own pocket scores far better than a small fragment.
    assert!(ok_score(&out.ligands[0]) < -8.0, "{:?}", out.ligands[0]);
    assert!(out.cpu_seconds > 0.5, "{}", out.cpu_seconds);
    assert!(out.wall_seconds > 0.0);
    let log = log_text(&out);
    assert!(log.contains("random seed: 42"), "{log}");
}

#[tokio::test]
async fn real_vina_aborts_the_batch_on_a_bad_ligand() {
    let vina = vina_on_path();
    let engine = probe(&vina).await.expect("vina probes");
    let dir = tempfile::tempdir().expect("tempdir");
    tokio::fs::create_dir_all(dir.path().join("in")).await.expect("mkdir");
    tokio::fs::create_dir_all(dir.path().join("out")).await.expect("mkdir");
    let good_a = std::fs::read(meeko("MOSES_TEST_170272")).expect("read");
    let good_b = std::fs::read(meeko("MOSES_TEST_150311")).expect("read");
    let bad = std::fs::read_to_string(meeko("MOSES_TEST_121465"))
        .expect("read")
        .replace("1.023  -2.018", "1.  abc.de018");
    // Staged directly: validation would keep it away from vina.
    let pending = vec![
        stage(dir.path(), 0, "a", &good_a).await.expect("stage"),
        stage(dir.path(), 1, "bad", bad.as_bytes()).await.expect("stage"),
        stage(dir.path(), 2, "b", &good_b).await.expect("stage"),
    ];
    let mut r = engine_run(dir.path(), vec![]);
    r.size = [16.0; 3];
    let log = dir.path().join(LOG_NAME);
    let mut results = HashMap::new();
    let cpu = engine
        .dock_batches(&r, &receptor_1iep(), pending, &mut results, &log, Instant::now())
        .await
        .expect("runs");
    assert!(cpu > 0.0);
    assert!(results[&0].as_ref().is_ok_and(|d| d.best_score < 0.0), "{:?}", results[&0]);
    assert!(results[&2].as_ref().is_ok_and(|d| d.best_score < 0.0), "{:?}", results[&2]);
    let reason = results[&1].as_ref().expect_err("bad ligand fails");
    assert!(
        reason.contains("PDBQT parsing error: Coordinate") && reason.contains("abc.de018"),
        "{reason}"
    );
    // Vina stopped at the bad ligand, so the ligand after it needed a second run.
    let log = std::fs::read_to_string(&log).expect("log");
    let runs: Vec<&str> = log.lines().filter(|l| l.starts_with("$ ")).collect();
    assert_eq!(runs.len(), 2, "{log}");
    assert!(runs[0].contains("in/lig_0.pdbqt --batch in/lig_1.pdbqt --batch in/lig_2.pdbqt"));
    assert!(runs[1].contains("--batch in/lig_2.pdbqt --dir out"), "{}", runs[1]);
}

#[tokio::test]
async fn real_vina_refusing_the_receptor_is_bad_input() {
    let vina = vina_on_path();
    let engine = probe(&vina).await.expect("vina probes");
    let dir = tempfile::tempdir().expect("tempdir");
    tokio::fs::create_dir_all(dir.path().join("in")).await.expect("mkdir");
    tokio::fs::create_dir_all(dir.path().join("out")).await.expect("mkdir");
    let good = std::fs::read(meeko("MOSES_TEST_170272")).expect("read");
    let pending = vec![stage(dir.path(), 0, "a", &good).await.expect("stage")];
    let r = engine_run(dir.path(), vec![]);
    let mut results = HashMap::new();
    // A ligand passed as the receptor: vina refuses it before computing the grid.
    let e = engine
        .dock_batches(
            &r,
            &meeko("MOSES_TEST_150311"),
            pending,
            &mut results,
            &dir.path().join(LOG_NAME),
            Instant::now(),
        )
        .await
        .expect_err("refused");
    assert!(matches!(e, EngineError::BadInput(ref m) if m.contains("rigid receptor")), "{e}");
}
