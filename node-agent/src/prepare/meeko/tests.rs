use std::path::{Path, PathBuf};

use dockyard_common::molecule::validate_ligand;

use super::*;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/")).join(rel)
}

/// The real meeko through `python3`; panics with what is missing (CI installs it, and a
/// test that passes without running is no test).
async fn meeko(cache: &Path) -> MeekoPreparer {
    MeekoPreparer::probe(None, cache.to_path_buf()).await.unwrap_or_else(|| {
        panic!("this test needs a python3 that imports meeko, rdkit and molscrub (pip install 'meeko==0.8.*' rdkit molscrub scipy gemmi)")
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn job(index: u32, input: PathBuf, format: &'static str) -> LigandJob {
    LigandJob { index, input, format }
}

fn versions() -> MeekoVersions {
    MeekoVersions {
        meeko: "0.8.0".into(),
        rdkit: "2024.03.5".into(),
        molscrub: Some("0.3.2".into()),
    }
}

#[test]
fn versions_are_read_after_their_mark_only() {
    let out = "some warning\nDOCKYARD-MEEKO-VERSIONS {\"meeko\": \"0.8.0\", \"rdkit\": \"2024.03.5\"}\n";
    let v = parse_versions(out).expect("parsed");
    assert_eq!((v.meeko.as_str(), v.rdkit.as_str(), v.molscrub), ("0.8.0", "2024.03.5", None));
    assert_eq!(parse_versions("{\"meeko\": \"0.8.0\", \"rdkit\": \"1\"}"), None);
    assert_eq!(parse_versions("DOCKYARD-MEEKO-VERSIONS {\"meeko\": \"\", \"rdkit\": \"1\"}"), None);
    assert_eq!(parse_versions("Traceback ... ModuleNotFoundError: No module named 'meeko'"), None);
}

#[test]
fn description_and_tools_name_every_version() {
    let m = MeekoPreparer::new("python3".into(), versions(), PathBuf::from("/tmp/x"));
    assert_eq!(
        m.describe("smi", false, "ETKDGv3 seed 42, MMFF94"),
        "meeko 0.8.0 (rdkit 2024.03.5): smi -> pdbqt (ETKDGv3 seed 42, MMFF94)"
    );
    assert_eq!(
        m.describe("sdf", false, "input coordinates"),
        "meeko 0.8.0 (rdkit 2024.03.5): sdf -> pdbqt (input coordinates)"
    );
    let scrubbed = m.describe("sdf", true, "ETKDGv3 seed 42, MMFF94");
    assert!(scrubbed.contains("(molscrub 0.3.2 pH 7.4, ETKDGv3"), "{scrubbed}");
    let tools: Vec<String> = m.tools().iter().map(|t| format!("{} {}", t.name, t.version)).collect();
    assert_eq!(tools, ["meeko 0.8.0", "molscrub 0.3.2"]);
    let bare = MeekoPreparer::new(
        "python3".into(),
        MeekoVersions {
            molscrub: None,
            ..versions()
        },
        PathBuf::from("/tmp/x"),
    );
    assert_eq!(bare.tools().len(), 1);
    assert!(!bare.can_protonate());
    // Protonation and each version change the cache key; the file name does not exist in it.
    assert_ne!(m.key(b"CCO x\n", "smi", false), m.key(b"CCO x\n", "smi", true));
    assert_ne!(m.key(b"CCO x\n", "smi", false), bare.key(b"CCO x\n", "sdf", false));
}

#[test]
fn the_python_of_mk_prepare_ligand_is_found_from_its_shebang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let path = std::env::join_paths([&a, &b]).expect("PATH");
    assert_eq!(shebang_python("mk_prepare_ligand.py", &path), None, "not on PATH");
    write(&b, "mk_prepare_ligand.py", "#!/opt/venv/bin/python3.11\nimport meeko\n");
    assert_eq!(
        shebang_python("mk_prepare_ligand.py", &path),
        Some(PathBuf::from("/opt/venv/bin/python3.11"))
    );
    // The first one on PATH wins; `env` names the interpreter in its argument.
    write(&a, "mk_prepare_ligand.py", "#!/usr/bin/env python3\n");
    assert_eq!(shebang_python("mk_prepare_ligand.py", &path), Some(PathBuf::from("python3")));
    // A shim that is not a Python (pyenv's are bash scripts) is no interpreter to use.
    write(&a, "mk_prepare_ligand.py", "#!/usr/bin/env bash\nexec pyenv exec \"$0\"\n");
    assert_eq!(shebang_python("mk_prepare_ligand.py", &path), None);
}

#[tokio::test]
async fn probe_of_a_missing_python_is_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(MeekoPreparer::probe(Some(Path::new("/nonexistent/python")), dir.path().join("c"))
        .await
        .is_none());
}

/// One batch, one process: SMILES, a salt, an SDF pose and garbage. The good ones become
/// valid ligand PDBQT in the cache, the garbage fails alone with RDKit's reason, and a
/// second batch of the same inputs starts no process.
#[tokio::test]
async fn a_batch_prepares_each_ligand_or_fails_it_alone_and_is_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = meeko(&dir.path().join("cache")).await;
    let smi = std::fs::read_to_string(data("ligands/ligands-20.smi")).expect("smi");
    let first = smi.lines().next().expect("a line");
    let ligands = vec![
        job(3, write(dir.path(), "a.smi", &format!("{first}\n")), "smi"),
        job(5, write(dir.path(), "bad.smi", "XXXnotasmiles bad\n"), "smi"),
        job(7, write(dir.path(), "salt.smi", "NCCC(=O)O.Cl beta-alanine\n"), "smi"),
        job(9, data("vina-examples/1iep/1iep_ligand.sdf"), "sdf"),
    ];
    let out = m.prepare(&ligands, false, &dir.path().join("run")).await;
    assert_eq!(m.conversions(), 1, "one process for the batch");
    let indices: Vec<u32> = out.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, [3, 5, 7, 9]);
    for (i, r) in &out {
        if *i == 5 {
            let e = r.as_ref().expect_err("garbage SMILES");
            assert!(!e.retryable(), "{e}");
            assert!(e.to_string().starts_with("bad.smi (smi): meeko: "), "{e}");
            assert!(e.to_string().contains("SMILES"), "{e}");
            continue;
        }
        let p = r.as_ref().unwrap_or_else(|e| panic!("ligand {i}: {e}"));
        assert!(p.path.starts_with(dir.path().join("cache")), "{}", p.path.display());
        let geometry = if *i == 9 {
            "(input coordinates)"
        } else {
            "(ETKDGv3 seed 42, MMFF94)"
        };
        assert!(p.how.starts_with("meeko ") && p.how.ends_with(geometry), "{}", p.how);
        let text = std::fs::read_to_string(&p.path).expect("read");
        assert!(text.contains("REMARK SMILES"), "not Meeko's PDBQT: {text}");
        let summary = validate_ligand(&text).expect("valid ligand PDBQT");
        assert!(summary.atoms >= 6, "{summary:?}");
        if *i == 7 {
            assert!(!text.contains("Cl"), "the salt's counter-ion is dropped: {text}");
        }
    }
    // Nothing half-written or left over in the cache.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.iter().filter(|n| n.ends_with(".pdbqt")).count(), 3, "{names:?}");
    assert_eq!(names.iter().filter(|n| n.ends_with(".how")).count(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with(".pdbqt") || n.ends_with(".how")), "{names:?}");

    let again = m.prepare(&ligands[..1], false, &dir.path().join("run2")).await;
    assert_eq!(again[0].1.as_ref().expect("cached"), out[0].1.as_ref().expect("prepared"));
    assert_eq!(m.conversions(), 1, "a cache hit runs nothing");
    // A fresh preparer (an agent restart) finds the file and how it was made.
    let m2 = MeekoPreparer::new("/nonexistent/python3".into(), m.versions().clone(), dir.path().join("cache"));
    let again = m2.prepare(&ligands[3..], false, &dir.path().join("run3")).await;
    assert_eq!(again[0].1.as_ref().expect("cached"), out[3].1.as_ref().expect("prepared"));
    assert_eq!(m2.conversions(), 0);
}

/// molscrub protonates at pH 7.4: the amine and the acid come out charged.
#[tokio::test]
async fn protonation_charges_an_amino_acid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = meeko(&dir.path().join("cache")).await;
    assert!(m.can_protonate(), "this test needs molscrub (pip install molscrub)");
    let input = write(dir.path(), "ba.smi", "NCCC(=O)O beta-alanine\n");
    let out = m.prepare(&[job(0, input.clone(), "smi")], true, &dir.path().join("run")).await;
    let text = std::fs::read_to_string(&out[0].1.as_ref().expect("prepared").path).expect("read");
    let smiles = text.lines().next().expect("first line");
    assert!(smiles.contains("[NH3+]") && smiles.contains("[O-]"), "{smiles}");
    let neutral = m.prepare(&[job(0, input, "smi")], false, &dir.path().join("run2")).await;
    let text = std::fs::read_to_string(&neutral[0].1.as_ref().expect("prepared").path).expect("read");
    assert!(!text.lines().next().expect("first line").contains('+'), "{text}");
}

/// A Python that dies on one ligand (as an RDKit crash would): that ligand fails alone,
/// the ligands after it are run again in a new process and prepared.
#[tokio::test]
async fn a_crash_fails_the_ligand_it_was_on_and_the_rest_are_rerun() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let real = meeko(&dir.path().join("probe")).await;
    let fake = write(
        dir.path(),
        "crashing-python",
        r#"#!/usr/bin/env python3
# Runs the real driver on the ligands before one whose file says CRASH, then dies on it.
import json, os, signal, subprocess, sys
driver, jobs, results = sys.argv[1:4]
spec = json.load(open(jobs))
before = []
for l in spec["ligands"]:
    if "CRASH" in open(l["input"]).read():
        if before:
            json.dump(dict(spec, ligands=before), open(jobs + ".part", "w"))
            subprocess.run([sys.executable, driver, jobs + ".part", results], check=True)
        with open(results, "a") as out:
            out.write(json.dumps({"id": l["id"], "start": True}) + "\n")
        os.kill(os.getpid(), signal.SIGKILL)
    before.append(l)
sys.exit(subprocess.run([sys.executable, driver, jobs, results]).returncode)
"#,
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let m = MeekoPreparer::new(fake, real.versions().clone(), dir.path().join("cache"));
    let ligands = vec![
        job(0, write(dir.path(), "a.smi", "CCO ethanol\n"), "smi"),
        job(1, write(dir.path(), "crash.smi", "CCN CRASH\n"), "smi"),
        job(2, write(dir.path(), "c.smi", "CCC propane\n"), "smi"),
    ];
    let out = m.prepare(&ligands, false, &dir.path().join("run")).await;
    assert!(out[0].1.is_ok(), "{:?}", out[0]);
    let e = out[1].1.as_ref().expect_err("crashed on it");
    assert!(
        e.to_string().contains("crash.smi (smi)") && e.to_string().contains("signal 9"),
        "{e}"
    );
    assert!(out[2].1.is_ok(), "rerun after the crash: {:?}", out[2]);
    assert_eq!(m.conversions(), 2, "the crash, then one rerun of the rest");
}

/// A Python without meeko: every ligand fails with the import error, once, not in a loop.
#[tokio::test]
async fn a_python_without_meeko_fails_the_batch_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = MeekoPreparer::new(PathBuf::from("/nonexistent/python3"), versions(), dir.path().join("cache"));
    let ligands = vec![
        job(0, write(dir.path(), "a.smi", "CCO ethanol\n"), "smi"),
        job(1, write(dir.path(), "b.smi", "CCN ethylamine\n"), "smi"),
    ];
    let out = m.prepare(&ligands, false, &dir.path().join("run")).await;
    assert_eq!(m.conversions(), 1);
    for (_, r) in &out {
        let e = r.as_ref().expect_err("no python");
        assert!(e.retryable(), "the node's fault: {e}");
        assert!(e.to_string().contains("meeko's python"), "{e}");
    }
}

/// A `--prepare meeko` task on a node without meeko fails before fetching anything, and
/// retryably: the coordinator should not have sent it, another node may take it.
#[tokio::test]
async fn a_meeko_task_on_a_node_without_meeko_is_handed_back() {
    use std::sync::Arc;

    use dockyard_common::artifact::LocalStore;
    use tokio_util::sync::CancellationToken;

    use crate::runner::{run_task, RunnerContext};

    let dir = tempfile::tempdir().expect("tempdir");
    let vina = crate::engine::VinaEngine::new("/nonexistent/vina", "1.2.3");
    let store = Arc::new(LocalStore::open(dir.path().join("store")).expect("store"));
    let ctx = Arc::new(RunnerContext::new(
        vec![Arc::new(vina) as Arc<dyn crate::engine::DockingEngine>],
        store,
        dir.path().join("work"),
    ));
    let a = pb::TaskAssignment {
        task_id: "t1".into(),
        attempt: 1,
        engine: "vina".into(),
        prepare: "meeko".into(),
        ligands: vec![pb::LigandInput {
            index: 0,
            name: "x".into(),
            // Never fetched: the store does not have it.
            artifact: Some(pb::ArtifactRef {
                key: "orgs/t/in/missing.smi".into(),
                format: "smi".into(),
                ..Default::default()
            }),
        }],
        output_prefix: "orgs/t/out/t1/".into(),
        ..Default::default()
    };
    let res = run_task(ctx.clone(), a.clone(), CancellationToken::new()).await;
    let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
        panic!("expected a failure: {res:?}");
    };
    assert!(f.retryable && f.reason.contains("no meeko"), "{f:?}");

    // An unknown tool fails the same way everywhere: not retried.
    let res = run_task(
        ctx,
        pb::TaskAssignment {
            prepare: "corina".into(),
            ..a
        },
        CancellationToken::new(),
    )
    .await;
    let Some(pb::task_result::Outcome::Failed(f)) = res.outcome else {
        panic!("expected a failure: {res:?}");
    };
    assert!(!f.retryable && f.reason.contains("prepare"), "{f:?}");
}
