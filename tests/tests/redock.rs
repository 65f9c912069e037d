//! `dockyard bench redock` end to end: its own coordinator and agent, the real Vina, and an
//! RMSD that matches the one this test computes with obrms on the pose the bench kept.

use std::path::Path;
use std::process::Command;

use dockyard_tests::{bench_field as field, binary, require_vina, shared_data};

fn link(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from, to).unwrap_or_else(|e| panic!("symlink {}: {e}", to.display()));
}

#[test]
fn redock_1iep_with_vina_prints_the_rmsd_obrms_gives() {
    require_vina();
    let set = tempfile::tempdir().expect("tmp");
    let poses = tempfile::tempdir().expect("tmp");
    // The 1iep complex only, and a flexible docking without a crystal ligand, as in the Vina examples.
    let one = set.path().join("1iep");
    std::fs::create_dir(&one).expect("mkdir");
    for f in [
        "1iep_ligand.pdbqt",
        "1iep_ligand.sdf",
        "1iep_receptor.pdbqt",
        "1iep_receptor.box.txt",
    ] {
        link(&shared_data(&format!("vina-examples/1iep/{f}")), &one.join(f));
    }
    let flex = set.path().join("1fpu");
    std::fs::create_dir(&flex).expect("mkdir");
    for f in ["1fpu_receptor_flex.pdbqt", "1fpu_receptor_rigid.pdbqt", "1fpu_receptor.box.txt"] {
        link(&shared_data(&format!("vina-examples/1fpu/{f}")), &flex.join(f));
    }

    let o = Command::new(binary("dockyard"))
        .args(["bench", "redock", "--set"])
        .arg(set.path())
        .args(["--engines", "vina,gnina", "--exhaustiveness", "1", "--cores", "1", "--poses-out"])
        .arg(poses.path())
        .output()
        .expect("run dockyard bench redock");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench redock failed ({}):\n{out}\n{err}", o.status);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "skipped + 2 rows + 2 summaries expected:\n{out}\n{err}");

    assert!(lines[0].starts_with("complex=1fpu skipped=\""), "{out}");
    assert!(
        lines[0].contains("no crystal ligand") && lines[0].contains("flexible receptor"),
        "{out}"
    );

    let vina = lines[1];
    assert_eq!((field(vina, "complex"), field(vina, "engine")), ("1iep", "vina"), "{out}");
    let score: f64 = field(vina, "top_score").parse().expect("score");
    let rmsd: f64 = field(vina, "rmsd").parse().expect("rmsd");
    let cpu: f64 = field(vina, "cpu_s").parse().expect("cpu_s");
    let wall: f64 = field(vina, "wall_s").parse().expect("wall_s");
    assert!(score < -5.0 && score > -20.0, "implausible score for imatinib: {vina}");
    assert!(rmsd.is_finite() && rmsd >= 0.0, "{vina}");
    assert!(cpu > 0.1 && wall > 0.0, "engine CPU not measured: {vina}");

    // The bench's RMSD is obrms's on the pose it docked, not a figure of its own.
    let pose = poses.path().join("1iep_vina.pdbqt");
    let ours = Command::new("obrms")
        .arg("-f")
        .arg(shared_data("vina-examples/1iep/1iep_ligand.sdf"))
        .arg(&pose)
        .output()
        .expect("this test needs Open Babel's obrms on PATH");
    let ours = String::from_utf8_lossy(&ours.stdout);
    let first = ours
        .lines()
        .find(|l| l.starts_with("RMSD "))
        .unwrap_or_else(|| panic!("obrms: {ours}"));
    let expected: f64 = first.split_whitespace().last().and_then(|v| v.parse().ok()).expect("obrms value");
    assert_eq!(format!("{expected:.2}"), format!("{rmsd:.2}"), "bench {vina} vs obrms {first}");

    // gnina is not offered here: n/a, never 0, and said why.
    assert_eq!(
        lines[2], "complex=1iep engine=gnina top_score=n/a rmsd=n/a cpu_s=n/a wall_s=n/a",
        "{out}"
    );
    assert!(err.contains("engine gnina: no agent offers it"), "{err}");

    let success = if rmsd < 2.0 { "1/1" } else { "0/1" };
    assert_eq!(
        lines[3],
        format!("engine=vina success={success} median_rmsd={rmsd:.2} cpu_s_per_ligand={cpu:.1}"),
        "{out}"
    );
    assert_eq!(lines[4], "engine=gnina success=n/a median_rmsd=n/a cpu_s_per_ligand=n/a", "{out}");
}
