//! `dockyard bench compression` end to end on a few fragments from
//! `examples/fragments/make_fragments.py`, with the real Vina: both modes dock the same
//! results, the bytes the bench counts on disk agree with what the codec says it was handed
//! (off) and are smaller with zstd, and the generator makes the same library twice.

use std::path::{Path, PathBuf};
use std::process::Command;

use dockyard_tests::{bench_field as field, binary, require_vina};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn num(line: &str, key: &str) -> f64 {
    field(line, key).parse().unwrap_or_else(|e| panic!("{key} in {line:?}: {e}"))
}

fn make_fragments(count: u32, out: &Path) -> String {
    let o = Command::new("python3")
        .arg(repo().join("examples/fragments/make_fragments.py"))
        .args(["--count", &count.to_string(), "--out"])
        .arg(out)
        .output()
        .expect("run python3 examples/fragments/make_fragments.py");
    assert!(
        o.status.success(),
        "make_fragments.py failed (it needs rdkit and meeko: ./dev.sh installs them):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read_to_string(out.with_extension("smi")).expect("the .smi beside the folder")
}

#[test]
fn both_modes_dock_the_same_and_zstd_stores_less_than_the_disk_shows_for_off() {
    require_vina();
    let tmp = tempfile::tempdir().expect("tmp");
    let frags = tmp.path().join("frag");
    let smi = make_fragments(6, &frags);
    let lines: Vec<&str> = smi.lines().collect();
    assert_eq!(lines.len(), 6, "{smi}");
    let distinct: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(distinct.len(), 6, "distinct SMILES: {smi}");
    assert_eq!(std::fs::read_dir(&frags).expect("folder").count(), 6);
    let again = tmp.path().join("again");
    assert_eq!(make_fragments(6, &again), smi, "the same --count and --seed make the same library");

    let o = Command::new(binary("dockyard"))
        .args(["bench", "compression", "--receptor"])
        .arg(repo().join("examples/receptor.pdbqt"))
        .arg("--ligands")
        .arg(&frags)
        .args(["--center", "15.851,14.647,3.904", "--size", "30,30,30"])
        .args(["--slots", "2", "--batch-size", "3"])
        .output()
        .expect("run dockyard bench compression");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench compression failed ({}):\n{out}\n{err}", o.status);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "off, zstd and the comparison:\n{out}\n{err}");
    let (off, zstd, cmp) = (rows[0], rows[1], rows[2]);
    assert_eq!(field(off, "mode"), "off", "{out}");
    assert_eq!(field(zstd, "mode"), "zstd", "{out}");
    for row in [off, zstd] {
        assert_eq!(field(row, "ligands_docked"), "6", "{out}");
        // receptor, one ligand pack per task (2), and per task a PDBQT, an SDF and a log
        assert!(num(row, "objects") >= 9.0, "{out}");
        assert!(num(row, "engine_cpu_s") > 0.0, "{out}");
    }
    assert_eq!(field(cmp, "same_results"), "yes", "{out}");
    // Off: the files on disk are exactly what the codec was handed and wrote.
    let on_disk = num(off, "stored_bytes");
    assert_eq!(on_disk, num(off, "codec_written_bytes"), "{out}");
    assert_eq!(on_disk, num(off, "codec_stored_bytes"), "{out}");
    assert_eq!(num(off, "compress_cpu_s"), 0.0, "{out}");
    // Zstd: the disk holds what the codec says it stored, less than half of off's (PDBQT
    // text compresses to about a fifth).
    assert_eq!(num(zstd, "stored_bytes"), num(zstd, "codec_stored_bytes"), "{out}");
    assert!(num(zstd, "stored_bytes") < 0.5 * on_disk, "{out}");
    assert!(num(zstd, "compress_cpu_s") > 0.0, "{out}");
}
