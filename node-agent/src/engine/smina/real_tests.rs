//! The smina adapter against the real smina (2a4feb4, the AutoDock Vina 1.1.2 fork), on the
//! 1iep example and the shared ligand set. Runs are kept tiny (exhaustiveness 1, a 12 Å box,
//! small ligands) so that the whole set takes seconds.

use std::process::Stdio;
use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

use dockyard_common::molecule::coords::{atom_coords, atoms_in_box, autobox};
use dockyard_common::molecule::LibraryFormat;
use dockyard_common::spec::{DockMode, DockParams, EngineOptions, Scoring};

use super::*;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared");
const CENTER_1IEP: [f64; 3] = [15.19, 53.903, 16.917];
/// The one molecule of `ligands-20-3d.sdf` (record 1) docked below: 5 torsions, quick.
const SMALL: &str = "MOSES_TEST_140264";

/// The real smina: `$SMINA`, else the path `../shared/vendor/smina/build.sh` prints (it
/// builds smina once, in about two minutes, and caches it). Panics saying how to get it.
pub(crate) fn real_smina() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND.get_or_init(find_smina).clone().unwrap_or_else(|e| panic!("{e}"))
}

fn find_smina() -> Result<PathBuf, String> {
    const HOW: &str = "these tests run the real smina: set SMINA=/path/to/smina, or run \
                       ../shared/vendor/smina/build.sh (builds it in about 2 minutes, caches it, prints its path)";
    if let Some(path) = std::env::var_os("SMINA").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(format!("SMINA={} is not a file; {HOW}", path.display())),
        };
    }
    let script = Path::new(SHARED).join("vendor/smina/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {HOW}", script.display()))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    let path = printed.lines().last().map(str::trim).unwrap_or_default();
    if !out.status.success() || path.is_empty() {
        return Err(format!("{} failed ({}); {HOW}", script.display(), out.status));
    }
    Ok(PathBuf::from(path))
}

fn data(rel: &str) -> PathBuf {
    Path::new(SHARED).join("data").join(rel)
}

/// A shared file as ligand `index`, read where it lies (the adapter makes paths absolute).
fn shared_ligand(index: u32, rel: &str) -> LigandFile {
    let path = data(rel);
    LigandFile {
        index,
        name: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        path,
    }
}

/// `records` of `ligands-20-3d.sdf` (0-based) written to `dir/<name>`, as ligand `index`.
fn moses_sdf(dir: &Path, index: u32, name: &str, records: &[usize]) -> LigandFile {
    let text = std::fs::read_to_string(data("ligands/ligands-20-3d.sdf")).expect("ligands-20-3d.sdf");
    let all: Vec<&str> = text.split_inclusive("$$$$\n").collect();
    let picked: String = records.iter().map(|&r| all[r]).collect();
    let path = dir.join(name);
    std::fs::write(&path, picked).expect("write ligand");
    LigandFile {
        index,
        name: name.into(),
        path,
    }
}

/// A run into the 1iep receptor: 12 Å box on the pocket, exhaustiveness 1, 3 poses, seed 0
/// (the adapter's fixed default), one core.
fn run_1iep(dir: &Path, ligands: Vec<LigandFile>) -> EngineRun {
    let work_dir = dir.join("work");
    std::fs::create_dir_all(&work_dir).expect("work dir");
    EngineRun {
        task_id: "task-real".into(),
        receptor: Some(data("vina-examples/1iep/1iep_receptor.pdbqt")),
        ligands,
        center: CENTER_1IEP,
        size: [12.0, 12.0, 12.0],
        params: DockParams {
            exhaustiveness: 1,
            num_modes: 3,
            seed: 0,
            energy_range: 0.0,
            sleep_ms: 0,
            extra: EngineOptions::default(),
        },
        gpus: Vec::new(),
        work_dir,
        cpu: 1,
        timeout: Duration::from_secs(120),
        cancel: CancellationToken::new(),
    }
}

fn with_mode(mut run: EngineRun, mode: DockMode) -> EngineRun {
    run.params.extra.mode = Some(mode);
    run
}

async fn real_run(run: EngineRun) -> EngineOutput {
    let engine = probe(&real_smina()).await.expect("probe the real smina");
    engine.run(run).await.expect("smina runs")
}

fn docked(out: &EngineOutput, i: usize) -> &DockedLigand {
    match &out.ligands[i].result {
        Ok(d) => d,
        Err(e) => panic!("ligand {} failed: {e}", out.ligands[i].name),
    }
}

/// Each pose's (title, atom coordinates) in an SDF file.
fn sdf_poses(path: &Path) -> Vec<(String, Vec<[f64; 3]>)> {
    let text = std::fs::read_to_string(path).expect("pose file");
    text.split_inclusive("$$$$\n")
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            (
                r.lines().next().unwrap_or("").trim().to_string(),
                atom_coords(r, LibraryFormat::Sdf),
            )
        })
        .collect()
}

/// What a docking must look like: 1 to 3 poses, best first, with plausible energies for a
/// small lead-like molecule in 1iep, RMSD bounds from smina's table, every pose in the box.
fn check_docking(d: &DockedLigand, title: &str, center: [f64; 3], size: [f64; 3]) {
    assert!((1..=3).contains(&d.poses.len()), "{d:?}");
    assert_eq!(d.best_score, d.poses[0].affinity);
    assert!(d.best_score < -4.0 && d.best_score > -12.0, "implausible best score: {d:?}");
    assert!(d.poses.windows(2).all(|w| w[0].affinity <= w[1].affinity), "not sorted: {d:?}");
    let ranks: Vec<u32> = d.poses.iter().map(|p| p.rank).collect();
    assert_eq!(ranks, (1..=d.poses.len() as u32).collect::<Vec<_>>());
    // The best pose is the reference of the RMSDs; other poses differ from it.
    assert_eq!((d.poses[0].rmsd_lb, d.poses[0].rmsd_ub), (0.0, 0.0), "{d:?}");
    for p in &d.poses[1..] {
        assert!(p.rmsd_lb > 0.0 && p.rmsd_ub >= p.rmsd_lb, "RMSDs not read from the table: {p:?}");
    }
    let poses = sdf_poses(&d.pose_file);
    assert_eq!(poses.len(), d.poses.len(), "{}", d.pose_file.display());
    for (name, atoms) in poses {
        assert_eq!(name, title);
        assert!(!atoms.is_empty());
        // Heavy atoms must lie in the box; hydrogens may reach a bond length past it.
        assert_eq!(atoms_in_box(&atoms, center, size, 1.2), atoms.len(), "a pose leaves the box");
    }
}

#[tokio::test]
async fn probe_reads_the_real_version() {
    let engine = probe(&real_smina()).await.expect("probe");
    let d = engine.descriptor();
    assert_eq!(d.name(), "smina");
    assert!(!d.test_only());
    // smina 2a4feb4 reports its build date, e.g. "Smina Dec  5 2026.", read as "Dec 5 2026".
    let words: Vec<&str> = d.version.split(' ').collect();
    assert_eq!(words.len(), 3, "{:?}", d.version);
    assert!(words[1].parse::<u8>().is_ok_and(|day| (1..=31).contains(&day)), "{:?}", d.version);
    assert!(words[2].len() == 4 && words[2].parse::<u16>().is_ok(), "{:?}", d.version);
}

#[tokio::test]
async fn docks_from_sdf_and_from_pdbqt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ligands = vec![
        moses_sdf(dir.path(), 3, "small.sdf", &[0]),
        shared_ligand(5, &format!("ligands/pdbqt-meeko/{SMALL}.pdbqt")),
    ];
    let run = run_1iep(dir.path(), ligands);
    let (work_dir, size) = (run.work_dir.clone(), run.size);
    let out = real_run(run).await;
    assert_eq!(out.ligands.iter().map(|l| l.index).collect::<Vec<_>>(), [3, 5]);
    let from_sdf = docked(&out, 0);
    check_docking(from_sdf, SMALL, CENTER_1IEP, size);
    assert_eq!(from_sdf.pose_file, work_dir.join("lig_3").join(OUT_NAME));
    // Open Babel writes the poses of a PDBQT ligand with an empty title.
    check_docking(docked(&out, 1), "", CENTER_1IEP, size);
    assert!(out.cpu_seconds > 0.1, "{}", out.cpu_seconds);
    let log = std::fs::read_to_string(out.log_file.as_deref().expect("log")).expect("log");
    // seed 0 is the adapter's fixed seed, never smina's random one.
    assert_eq!(log.matches(&format!("Using random seed: {DEFAULT_SEED}")).count(), 2, "{log}");
}

#[tokio::test]
async fn autobox_ligand_sets_the_box() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crystal = data("vina-examples/1iep/1iep_ligand.sdf");
    let mut run = run_1iep(dir.path(), vec![moses_sdf(dir.path(), 0, "small.sdf", &[0])]);
    // Far from the pocket: used, these would put every pose near the origin.
    run.center = [0.0, 0.0, 0.0];
    run.size = [8.0, 8.0, 8.0];
    let opts = SminaOptions {
        autobox_ligand: Some(crystal.clone()),
        autobox_add: Some(1.0),
        ..SminaOptions::default()
    };
    let engine = probe(&real_smina()).await.expect("probe");
    let out = engine.run_with(run, &opts).await.expect("runs");
    let text = std::fs::read_to_string(&crystal).expect("crystal");
    let (center, size) = autobox(&atom_coords(&text, LibraryFormat::Sdf), 1.0).expect("crystal atoms");
    check_docking(docked(&out, 0), SMALL, center, size);
}

/// The one-pose modes on imatinib's crystal pose: fast, and each checks a number smina
/// documents (README of ../shared/vendor/smina: the crystal pose rescored at -12.517).
#[tokio::test]
async fn score_only_minimize_and_local_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crystal = || shared_ligand(0, "vina-examples/1iep/1iep_ligand.sdf");
    let mut scores = Vec::new();
    for mode in [DockMode::ScoreOnly, DockMode::Minimize, DockMode::LocalOnly] {
        let out = real_run(with_mode(run_1iep(&dir.path().join(mode.as_str()), vec![crystal()]), mode)).await;
        let d = docked(&out, 0);
        assert_eq!(d.poses.len(), 1, "{mode:?}: {d:?}");
        assert_eq!((d.poses[0].rmsd_lb, d.poses[0].rmsd_ub), (0.0, 0.0), "no table in {mode:?}");
        let text = std::fs::read_to_string(&d.pose_file).expect("pose file");
        let pose = &parse_sdf_scores(&text).expect("scores")[0].poses[0];
        assert_eq!(pose.affinity, d.best_score);
        // Only the modes that move the ligand say how far it moved.
        assert_eq!(pose.rmsd.is_some(), mode != DockMode::ScoreOnly, "{mode:?}: {text}");
        if let Some(moved) = pose.rmsd {
            assert!(moved > 0.0 && moved < 1.0, "{mode:?} moved the crystal pose {moved} Å");
        }
        scores.push(d.best_score);
    }
    assert!((scores[0] - -12.517).abs() < 0.01, "score_only: {}", scores[0]);
    // Minimising only lowers the energy of an already good pose.
    assert!(scores[1] < scores[0] && scores[2] < scores[0], "{scores:?}");
}

/// Every scoring function a smina task may name (`Scoring::ALL`, the SMINA traits) is one
/// the real binary accepts, and each gives its own score.
#[tokio::test]
async fn every_offered_scoring_function_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let offered = EngineKind::Smina.traits().scorings;
    assert_eq!(offered, Scoring::ALL);
    let mut scores: Vec<(Scoring, f64)> = Vec::new();
    for &scoring in offered {
        let mut run = with_mode(
            run_1iep(
                &dir.path().join(scoring.as_str()),
                vec![shared_ligand(0, "vina-examples/1iep/1iep_ligand.sdf")],
            ),
            DockMode::ScoreOnly,
        );
        run.params.extra.scoring = Some(scoring);
        let out = real_run(run).await;
        let d = docked(&out, 0);
        assert!(d.best_score.is_finite() && d.best_score < 0.0, "{scoring:?}: {d:?}");
        scores.push((scoring, d.best_score));
    }
    for (i, (a, sa)) in scores.iter().enumerate() {
        for (b, sb) in &scores[i + 1..] {
            assert!((sa - sb).abs() > 1e-3, "{a:?} and {b:?} both scored {sa}: --scoring not applied");
        }
    }
}

#[tokio::test]
async fn a_bad_ligand_fails_alone_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, "not a molecule\n").expect("write");
        LigandFile {
            index: 0,
            name: name.into(),
            path,
        }
    };
    let ligands = vec![
        LigandFile {
            index: 0,
            ..garbage("bad.pdbqt")
        },
        LigandFile {
            index: 1,
            ..garbage("bad.sdf")
        },
        shared_ligand(2, "vina-examples/1iep/1iep_ligand.sdf"),
        moses_sdf(dir.path(), 3, "two.sdf", &[0, 1]),
    ];
    let out = real_run(with_mode(run_1iep(dir.path(), ligands), DockMode::ScoreOnly)).await;
    let err = |i: usize| out.ligands[i].result.as_ref().expect_err("fails").clone();
    // PDBQT is smina's own parser: it names the file and exits 1.
    let e = err(0);
    assert!(e.starts_with("smina rejected the ligand: Parse error on line 1"), "{e}");
    assert!(e.contains("bad.pdbqt"), "{e}");
    // Other formats go through Open Babel, which skips what it cannot read: smina exits 0
    // with an empty output.
    let e = err(1);
    assert!(e.contains("read no molecule from the ligand file \"bad.sdf\""), "{e}");
    assert!(docked(&out, 2).best_score < -12.0);
    // smina scores both molecules of a two-molecule file; which one the task meant is unknown.
    let e = err(3);
    assert!(e.contains("holds 2 molecules") && e.contains(SMALL), "{e}");
}

#[tokio::test]
async fn no_pose_inside_a_tiny_box_fails_the_ligand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = run_1iep(dir.path(), vec![moses_sdf(dir.path(), 0, "small.sdf", &[0])]);
    run.size = [1.0, 1.0, 1.0];
    run.params.num_modes = 1;
    let out = real_run(run).await;
    let e = out.ligands[0].result.as_ref().expect_err("no pose");
    assert!(e.contains("no pose of this ligand that fits inside the search box"), "{e}");
}

#[tokio::test]
async fn a_bad_receptor_or_option_fails_the_run_permanently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = probe(&real_smina()).await.expect("probe");
    let ligand = || vec![shared_ligand(0, "vina-examples/1iep/1iep_ligand.sdf")];

    // Open Babel cannot read it, and smina says so as for a missing file.
    let mut run = with_mode(run_1iep(dir.path(), ligand()), DockMode::ScoreOnly);
    let receptor = dir.path().join("rec.pdb");
    std::fs::write(&receptor, "not a protein\n").expect("write");
    run.receptor = Some(receptor);
    let err = engine.run(run).await.expect_err("bad receptor");
    assert!(
        matches!(err, EngineError::BadInput(ref m) if m.contains("could not open") && m.contains("rec.pdb")),
        "{err}"
    );
    assert!(!err.retryable());

    let run = with_mode(run_1iep(dir.path(), ligand()), DockMode::ScoreOnly);
    let opts = SminaOptions {
        scoring: Some("made_up".into()),
        mode: DockMode::ScoreOnly,
        ..SminaOptions::default()
    };
    let err = engine.run_with(run, &opts).await.expect_err("bad scoring");
    assert!(
        matches!(err, EngineError::BadInput(ref m) if m.contains("Invalid builtin scoring function: made_up")),
        "{err}"
    );

    // gnina's options through the shared runner: Boost's parse error.
    let run = with_mode(run_1iep(dir.path(), ligand()), DockMode::ScoreOnly);
    let runner = SdfRunner {
        engine: "smina",
        program: &real_smina(),
        grace: Duration::from_millis(200),
        env: Vec::new(),
        rmsd_table: true,
    };
    let err = runner
        .run(run, false, |r| {
            let mut a = build_args(r, &SminaOptions::default());
            a.push("--no_gpu".into());
            a
        })
        .await
        .expect_err("fails");
    assert!(
        matches!(err, EngineError::BadInput(ref m) if m.contains("Command line parse error")),
        "{err}"
    );
}

/// Processes, other than zombies, whose working folder is `dir`.
fn running_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd == dir))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn timeout_kills_the_real_smina() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Imatinib in the full example box at exhaustiveness 64 runs for minutes.
    let mut run = run_1iep(dir.path(), vec![shared_ligand(0, "vina-examples/1iep/1iep_ligand.pdbqt")]);
    run.size = [20.0, 20.0, 20.0];
    run.params.exhaustiveness = 64;
    run.timeout = Duration::from_millis(1500);
    let lig_dir = std::path::absolute(run.work_dir.join("lig_0")).expect("absolute");
    let mut engine = probe(&real_smina()).await.expect("probe");
    engine.grace = Duration::from_millis(200);
    let started = Instant::now();
    let err = engine.run(run).await.expect_err("times out");
    assert!(matches!(err, EngineError::Timeout(d) if d == Duration::from_millis(1500)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    for _ in 0..50 {
        if running_in(&lig_dir).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("smina survived the timeout: pids {:?}", running_in(&lig_dir));
}
