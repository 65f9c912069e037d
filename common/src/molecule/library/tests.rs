// Panicking on unexpected data is what a test should do.
#![allow(clippy::unwrap_used)]

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/");

fn data(rel: &str) -> PathBuf {
    Path::new(DATA).join(rel)
}

fn read_text(rel: &str) -> String {
    std::fs::read_to_string(data(rel)).unwrap()
}

fn read_str(text: &str, format: LibraryFormat) -> Vec<Result<MolRecord, RecordError>> {
    read_library(text.as_bytes(), format, "lib").collect()
}

fn read_bytes(bytes: &[u8], format: LibraryFormat) -> Vec<Result<MolRecord, RecordError>> {
    read_library(bytes, format, "lib").collect()
}

fn open_all(path: &Path) -> (LibraryFormat, Vec<Result<MolRecord, RecordError>>) {
    let (format, iter) = open_library(path).unwrap();
    (format, iter.collect())
}

fn oks(items: &[Result<MolRecord, RecordError>]) -> Vec<&MolRecord> {
    items.iter().filter_map(|r| r.as_ref().ok()).collect()
}

fn errs(items: &[Result<MolRecord, RecordError>]) -> Vec<&RecordError> {
    items.iter().filter_map(|r| r.as_ref().err()).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Converts the 20-ligand SDF with obabel into `out_name` (format from its extension), if obabel is installed.
fn obabel(dir: &Path, out_name: &str, extra: &[&str]) -> Option<String> {
    let out = dir.join(out_name);
    let status = Command::new("obabel")
        .arg(data("ligands/ligands-20-3d.sdf"))
        .arg("-O")
        .arg(&out)
        .args(extra)
        .output()
        .ok()?;
    if !status.status.success() {
        return None;
    }
    std::fs::read_to_string(out).ok()
}

fn smi_ids(rel: &str) -> Vec<String> {
    read_text(rel)
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn format_from_name() {
    use LibraryFormat::*;
    for (name, want) in [
        ("a.sdf", Some(Sdf)),
        ("a.SD", Some(Sdf)),
        ("a.mol", Some(Sdf)),
        ("dir.x/a.sdf.gz", Some(Sdf)),
        ("a.mol2", Some(Mol2)),
        ("a.mol2.gz", Some(Mol2)),
        ("a.smi", Some(Smiles)),
        ("a.smiles.GZ", Some(Smiles)),
        ("a.pdb", Some(Pdb)),
        ("a.ent.gz", Some(Pdb)),
        ("a.pdbqt", Some(Pdbqt)),
        ("a.pdbqt.gz", Some(Pdbqt)),
        ("a.txt", None),
        ("a.gz", None),
        ("sdf", None),
        ("", None),
    ] {
        assert_eq!(LibraryFormat::from_name(name), want, "{name}");
    }
    assert_eq!(library_stem("lib.sdf.gz"), "lib");
    assert_eq!(library_stem("my.lib.smi"), "my.lib");
}

#[test]
fn error_display() {
    let e = RecordError {
        index: 2,
        name: "X".into(),
        line: 17,
        reason: "bad".into(),
        kind: RecordErrorKind::Invalid,
    };
    assert_eq!(e.to_string(), "record 3 'X' line 17: bad");
}

#[test]
fn sdf_real_20_ligands() {
    let (format, items) = open_all(&data("ligands/ligands-20-3d.sdf"));
    assert_eq!(format, LibraryFormat::Sdf);
    assert_eq!(items.len(), 20);
    let recs = oks(&items);
    assert_eq!(recs.len(), 20, "{:?}", errs(&items));
    let ids = smi_ids("ligands/ligands-20.smi");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.name, ids[i]);
        assert!(r.name.starts_with("MOSES_TEST_"));
        assert!(r.text.ends_with("$$$$\n"));
        assert!(r.atoms > 0);
    }
    assert_eq!(recs[0].line, 1);
    assert_eq!(recs[0].atoms, 42);
    // Each record's text is a valid one-record library on its own.
    let again = read_str(&recs[3].text, LibraryFormat::Sdf);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].as_ref().unwrap().name, recs[3].name);
    // Record 2 starts right after record 1's text.
    assert_eq!(recs[1].line, recs[0].text.lines().count() + 1);
}

#[test]
fn sdf_engine_outputs_and_examples() {
    for (rel, count, first) in [
        (
            "engine-output-samples/gnina_workshop2021_minimized_sample.sdf",
            4,
            "27626_CHEMBL135_active",
        ),
        (
            "engine-output-samples/SYNTHETIC_gnina_native_writer_format.sdf",
            2,
            "SYNTHETIC_not_real_gnina_output",
        ),
        (
            "engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.mk_export.sdf",
            3,
            "out_ex8_cpu1_r1",
        ),
        ("vina-examples/1iep/1iep_ligand.sdf", 1, ""),
        ("vina-examples/5x72/5x72_ligand_p59.sdf", 1, ""),
        ("vina-examples/5x72/5x72_ligand_p69.sdf", 1, ""),
    ] {
        let (_, items) = open_all(&data(rel));
        assert_eq!(items.len(), count, "{rel}");
        let recs = oks(&items);
        assert_eq!(recs.len(), count, "{rel}: {:?}", errs(&items));
        if !first.is_empty() {
            assert_eq!(recs[0].name, first);
        }
    }
    let (_, items) = open_all(&data("engine-output-samples/gnina_workshop2021_minimized_sample.sdf"));
    let last = items[3].as_ref().unwrap();
    assert!(last.text.contains("<minimizedAffinity>"), "data items kept in the text");
    assert!(last.text.contains("59.37991"));
}

#[test]
fn smiles_real_files() {
    for (rel, n) in [("ligands-100.smi", 100), ("ligands/ligands-20.smi", 20)] {
        let (format, items) = open_all(&data(rel));
        assert_eq!(format, LibraryFormat::Smiles);
        let recs = oks(&items);
        assert_eq!(recs.len(), n, "{rel}: {:?}", errs(&items));
        let ids = smi_ids(rel);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.name, ids[i]);
            assert_eq!(r.line, i + 1);
            assert!(r.smiles.is_some());
            assert!(r.atoms >= 10, "{} has {} atoms", r.name, r.atoms);
        }
    }
}

#[test]
fn pdbqt_real_files() {
    for (rel, n) in [
        ("vina-examples/1iep/1iep_ligand.pdbqt", 1),
        ("vina-examples/5x72/5x72_ligand_p59.pdbqt", 1),
        ("engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt", 3),
        ("engine-output-samples/vina-1.1.2_dockstring_1iep_ex1_seed42.out.pdbqt", 1),
        ("vina-examples/1iep/1iep_ligand_vina_out.pdbqt", 4),
    ] {
        let (format, items) = open_all(&data(rel));
        assert_eq!(format, LibraryFormat::Pdbqt);
        assert_eq!(oks(&items).len(), n, "{rel}: {:?}", errs(&items));
    }
    let (_, items) = open_all(&data("vina-examples/1iep/1iep_ligand.pdbqt"));
    let rec = items[0].as_ref().unwrap();
    assert_eq!(rec.name, "1iep_ligand_1");
    assert!(rec.smiles.as_deref().is_some_and(|s| s.starts_with("Cc1ccc")));
    for entry in std::fs::read_dir(data("ligands/pdbqt-meeko")).unwrap() {
        let path = entry.unwrap().path();
        let (_, items) = open_all(&path);
        assert_eq!(oks(&items).len(), 1, "{}", path.display());
    }
    let (_, items) = open_all(&data("ligands/pdbqt-obabel/MOSES_TEST_140264.pdbqt"));
    assert_eq!(items[0].as_ref().unwrap().name, "MOSES_TEST_140264");
    // Multi-ligand / flexible-residue models are not single ligands: errors, one per model, no panic.
    let (_, items) = open_all(&data("vina-examples/5x72/5x72_ligand_vina_out.pdbqt"));
    assert_eq!(items.len(), 7);
}

#[test]
fn pdbqt_error_line_maps_to_file() {
    let text = read_text("engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt");
    let lines: Vec<&str> = text.lines().collect();
    // Drop the TORSDOF of model 2 so that only that model is refused.
    let model2 = lines.iter().position(|l| l.starts_with("MODEL 2")).unwrap();
    let tors = model2 + lines[model2..].iter().position(|l| l.starts_with("TORSDOF")).unwrap();
    let broken: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != tors)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let items = read_str(&broken, LibraryFormat::Pdbqt);
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[2].is_ok());
    let e = items[1].as_ref().unwrap_err();
    assert_eq!(e.index, 1);
    assert!(e.reason.contains("TORSDOF"), "{e}");
}

#[test]
fn gzip_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "ligands/ligands-20-3d.sdf",
        "ligands-100.smi",
        "engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt",
    ] {
        let plain = data(rel);
        let bytes = std::fs::read(&plain).unwrap();
        let gz = dir.path().join(format!("{}.gz", plain.file_name().unwrap().to_str().unwrap()));
        std::fs::write(&gz, gzip(&bytes)).unwrap();
        let (f1, a) = open_all(&plain);
        let (f2, b) = open_all(&gz);
        assert_eq!(f1, f2);
        assert_eq!(a, b, "{rel}");
    }
    // Concatenated gzip members (bgzip, `cat a.gz b.gz`) are one stream.
    let bytes = std::fs::read(data("ligands/ligands-20-3d.sdf")).unwrap();
    let mut two = gzip(&bytes);
    two.extend(gzip(&bytes));
    let path = dir.path().join("two.sdf.gz");
    std::fs::write(&path, two).unwrap();
    let (_, items) = open_all(&path);
    assert_eq!(oks(&items).len(), 40);
    assert_eq!(items[39].as_ref().unwrap().index, 39);
}

#[test]
fn corrupt_gzip_ends_with_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(data("ligands-100.smi")).unwrap();
    let mut gz = gzip(&bytes);
    let len = gz.len();
    gz.truncate(len / 2);
    let path = dir.path().join("cut.smi.gz");
    std::fs::write(&path, gz).unwrap();
    let (_, items) = open_all(&path);
    let e = errs(&items);
    assert!(!e.is_empty());
    assert!(items.last().unwrap().is_err(), "the stream error ends the iteration");

    let path = dir.path().join("plain.sdf.gz");
    std::fs::write(&path, b"not gzip at all\n").unwrap();
    let (_, items) = open_all(&path);
    assert_eq!(items.len(), 1);
    assert!(items[0].as_ref().unwrap_err().reason.contains("read error"));
}

#[test]
fn open_library_unknown_extension() {
    let err = open_library(Path::new("/nonexistent/x.txt")).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(open_library(Path::new("/nonexistent/x.sdf")).is_err());
}

/// The file's lines, and the 0-based line index where each SDF record starts.
fn sdf_record_starts(text: &str) -> (Vec<&str>, Vec<usize>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut starts = vec![0];
    for (i, l) in lines.iter().enumerate() {
        if *l == "$$$$" && i + 1 < lines.len() {
            starts.push(i + 1);
        }
    }
    (lines, starts)
}

fn join(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn sdf_truncated_at_end() {
    let text = read_text("ligands/ligands-20-3d.sdf");
    let (lines, starts) = sdf_record_starts(&text);
    let cut = starts[4] + 10;
    let items = read_str(&join(&lines[..cut]), LibraryFormat::Sdf);
    assert_eq!(items.len(), 5);
    assert_eq!(oks(&items).len(), 4);
    let e = items[4].as_ref().unwrap_err();
    assert_eq!(e.index, 4);
    assert_eq!(e.name, lines[starts[4]]);
    assert!(e.reason.contains("truncated"), "{e}");
    assert!(e.to_string().starts_with(&format!("record 5 '{}'", lines[starts[4]])));

    // Cut in the middle of a line too, and at every byte of the last record: never a panic.
    let end = text.len();
    for cut in (end - 3000..end).step_by(7) {
        let items = read_str(&text[..cut], LibraryFormat::Sdf);
        assert!(oks(&items).len() >= 19);
    }
    // Without the final $$$$ the last record is still fine (M  END seen).
    let items = read_str(text.trim_end().strip_suffix("$$$$").unwrap(), LibraryFormat::Sdf);
    assert_eq!(oks(&items).len(), 20);
    assert!(items[19].as_ref().unwrap().text.ends_with("M  END\n$$$$\n"));
}

#[test]
fn sdf_truncated_in_the_middle_resyncs() {
    let text = read_text("ligands/ligands-20-3d.sdf");
    let (lines, starts) = sdf_record_starts(&text);
    // Record 3 loses its tail but keeps its $$$$: only record 3 fails.
    let mut spliced: Vec<&str> = lines[..starts[2] + 12].to_vec();
    spliced.extend(&lines[starts[3] - 1..]);
    let items = read_str(&join(&spliced), LibraryFormat::Sdf);
    assert_eq!(items.len(), 20);
    assert_eq!(oks(&items).len(), 19);
    let e = items[2].as_ref().unwrap_err();
    assert_eq!((e.index, e.name.as_str()), (2, lines[starts[2]]));
    assert_eq!(items[3].as_ref().unwrap().name, lines[starts[3]]);

    // Record 3 also loses its $$$$: it swallows record 4, and 5..20 still read.
    let mut spliced: Vec<&str> = lines[..starts[2] + 12].to_vec();
    spliced.extend(&lines[starts[3]..]);
    let items = read_str(&join(&spliced), LibraryFormat::Sdf);
    assert_eq!(errs(&items).len(), 1);
    assert_eq!(oks(&items).len(), 18);
    assert_eq!(items.last().unwrap().as_ref().unwrap().name, lines[starts[19]]);
}

#[test]
fn sdf_bad_bond_reference_names_the_line() {
    let text = read_text("ligands/ligands-20-3d.sdf");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Record 1 has 42 atoms; its first bond line follows the 4 header lines and the atom block.
    let bond_idx = 4 + 42;
    let rest = lines[bond_idx][6..].to_string();
    lines[bond_idx] = format!("  1 99{rest}");
    let items = read_str(&(lines.join("\n") + "\n"), LibraryFormat::Sdf);
    assert_eq!(oks(&items).len(), 19);
    let e = items[0].as_ref().unwrap_err();
    assert_eq!(e.line, bond_idx + 1);
    assert!(e.reason.contains("bond line 1") && e.reason.contains("99"), "{e}");
}

#[test]
fn sdf_header_and_atom_errors() {
    let good = "t\n  prog\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\n    0.0000    0.0000    0.0000 C   0  0\n    1.5000    0.0000    0.0000 O   0  0\n  1  2  1  0\nM  END\n> <SMILES>\nCO\n\n$$$$\n";
    let items = read_str(good, LibraryFormat::Sdf);
    let rec = items[0].as_ref().unwrap();
    assert_eq!((rec.atoms, rec.smiles.as_deref()), (2, Some("CO")));

    let cases = [
        (good.replace("  2  1  0  0", " xx  1  0  0"), 4, "atom count"),
        (good.replace("    1.5000    0.0000", "    1.5000      abc "), 6, "atom line 2"),
        (good.replace(" O   0", "     0"), 6, "element"),
        (good.replace("M  END\n", ""), 0, "M  END"),
        (good.replace("> <SMILES>", "> SMILES"), 9, "data item"),
        (good.replace("  1  2  1  0", "  1  0  1  0"), 7, "out of range"),
    ];
    for (text, line, want) in cases {
        let items = read_str(&text, LibraryFormat::Sdf);
        assert_eq!(items.len(), 1, "{text}");
        let e = items[0].as_ref().unwrap_err();
        assert!(e.reason.contains(want), "{want}: {e}");
        if line > 0 {
            assert_eq!(e.line, line, "{e}");
        }
    }
    // Blank title: named after the stem.
    let items = read_str(&good.replacen('t', " ", 1), LibraryFormat::Sdf);
    assert_eq!(items[0].as_ref().unwrap().name, "lib_1");
}

const V3000: &str = "v3\n  prog\n\n  0  0  0     0  0            999 V3000\nM  V30 BEGIN CTAB\nM  V30 COUNTS 3 2 0 0 0\nM  V30 BEGIN ATOM\nM  V30 1 C 0 0 0 0\nM  V30 2 O 1.2 0 -\nM  V30 0 0\nM  V30 3 N -1.4 0 0 0\nM  V30 END ATOM\nM  V30 BEGIN BOND\nM  V30 1 1 1 2\nM  V30 2 1 1 3\nM  V30 END BOND\nM  V30 END CTAB\nM  END\n$$$$\n";

#[test]
fn sdf_v3000_inline() {
    let items = read_str(V3000, LibraryFormat::Sdf);
    let rec = items[0].as_ref().unwrap();
    assert_eq!((rec.name.as_str(), rec.atoms), ("v3", 3));

    let cases = [
        (V3000.replace("M  V30 2 1 1 3", "M  V30 2 1 1 7"), 15, "atom 7"),
        (V3000.replace("COUNTS 3 2", "COUNTS 4 2"), 12, "COUNTS says 4"),
        (V3000.replace("M  V30 END CTAB\n", ""), 0, "END CTAB"),
        (V3000.replace("M  V30 BEGIN CTAB\n", ""), 0, "BEGIN CTAB"),
        (V3000.replace("M  V30 3 N -1.4", "M  V30 3 N xyz"), 11, "atom line"),
    ];
    for (text, line, want) in cases {
        let items = read_str(&text, LibraryFormat::Sdf);
        let e = items[0].as_ref().unwrap_err();
        assert!(e.reason.contains(want), "{want}: {e}");
        if line > 0 {
            assert_eq!(e.line, line, "{e}");
        }
    }
}

#[test]
fn sdf_v3000_from_obabel() {
    let dir = tempfile::tempdir().unwrap();
    let Some(text) = obabel(dir.path(), "v3.sdf", &["-x3"]) else {
        eprintln!("obabel not available: V3000 conversion skipped");
        return;
    };
    assert!(text.contains("V3000"));
    let v3 = read_str(&text, LibraryFormat::Sdf);
    let v2 = read_str(&read_text("ligands/ligands-20-3d.sdf"), LibraryFormat::Sdf);
    assert_eq!(oks(&v3).len(), 20, "{:?}", errs(&v3));
    for (a, b) in oks(&v3).iter().zip(oks(&v2)) {
        assert_eq!((&a.name, a.atoms), (&b.name, b.atoms));
    }
    let cut = &text[..text.len() * 2 / 3];
    let items = read_str(cut, LibraryFormat::Sdf);
    assert_eq!(errs(&items).len(), 1);
}

const MOL2: &str = "# comment\n\n@<TRIPOS>MOLECULE\nethanol\n 3 2 0 0 0\nSMALL\nGASTEIGER\n\n@<TRIPOS>ATOM\n      1 C1    0.0 0.0 0.0 C.3 1 UNL1 0.0\n      2 C2    1.5 0.0 0.0 C.3 1 UNL1 0.0\n      3 O     2.0 1.0 0.0 O.3 1 UNL1 0.0\n@<TRIPOS>BOND\n     1     1     2    1\n     2     2     3    1\n@<TRIPOS>SUBSTRUCTURE\n     1 UNL1        1 GROUP             0 ****  ****    0  \n";

#[test]
fn mol2_inline() {
    let two = format!("{MOL2}{}", MOL2.replace("ethanol", "second").replace("# comment\n\n", ""));
    let items = read_str(&two, LibraryFormat::Mol2);
    assert_eq!(items.len(), 2);
    let r = items[0].as_ref().unwrap();
    assert_eq!((r.name.as_str(), r.atoms, r.line), ("ethanol", 3, 3));
    assert!(r.text.starts_with("@<TRIPOS>MOLECULE\n"));
    assert_eq!(items[1].as_ref().unwrap().name, "second");

    let bad = two.replacen("     2     2     3    1", "     2     2     9    1", 1);
    let items = read_str(&bad, LibraryFormat::Mol2);
    let e = items[0].as_ref().unwrap_err();
    assert_eq!(e.line, 15);
    assert!(e.reason.contains("atom 9"), "{e}");
    assert!(items[1].is_ok(), "next molecule still reads");

    let cases = [
        (MOL2.replace(" 3 2 0 0 0", " 4 2 0 0 0"), "4 atoms"),
        (MOL2.replace("1.5 0.0 0.0", "1.5 x 0.0"), "ATOM line"),
        (MOL2.replace(" 3 2 0 0 0", " three"), "atom count"),
        (MOL2.replace("     1     1     2    1", "     1     a     2    1"), "BOND line"),
    ];
    for (text, want) in cases {
        let items = read_str(&text, LibraryFormat::Mol2);
        let e = items[0].as_ref().unwrap_err();
        assert!(e.reason.contains(want), "{want}: {e}");
    }
    let items = read_str(&format!("junk line\n{MOL2}"), LibraryFormat::Mol2);
    assert_eq!(items.len(), 2);
    assert!(items[0].is_err() && items[1].is_ok());
}

#[test]
fn mol2_from_obabel() {
    let dir = tempfile::tempdir().unwrap();
    let Some(text) = obabel(dir.path(), "lib.mol2", &[]) else {
        eprintln!("obabel not available: MOL2 conversion skipped");
        return;
    };
    let items = read_str(&text, LibraryFormat::Mol2);
    let recs = oks(&items);
    assert_eq!(recs.len(), 20, "{:?}", errs(&items));
    let ids = smi_ids("ligands/ligands-20.smi");
    assert!(recs.iter().zip(&ids).all(|(r, id)| &r.name == id));
    assert_eq!(recs[0].atoms, 42);
    // Cut record 6 in its ATOM block, then resume at record 7.
    let starts: Vec<usize> = text.match_indices("@<TRIPOS>MOLECULE").map(|(i, _)| i).collect();
    let spliced = format!("{}\n{}", &text[..starts[5] + 300], &text[starts[6]..]);
    let items = read_str(&spliced, LibraryFormat::Mol2);
    assert_eq!(items.len(), 20);
    let e = items[5].as_ref().unwrap_err();
    assert_eq!((e.index, e.name.as_str()), (5, ids[5].as_str()));
    assert_eq!(oks(&items).len(), 19);
}

const PDB: &str = "COMPND    ethanol\nHETATM    1  C1  UNL     1       0.000   0.000   0.000  1.00  0.00           C\nHETATM    2  C2  UNL     1       1.500   0.000   0.000  1.00  0.00           C\nHETATM    3  O   UNL     1       2.000   1.000   0.000  1.00  0.00           O\nCONECT    1    2\nCONECT    2    1    3\nEND\n";

#[test]
fn pdb_inline() {
    let items = read_str(PDB, LibraryFormat::Pdb);
    let r = items[0].as_ref().unwrap();
    assert_eq!((r.name.as_str(), r.atoms), ("ethanol", 3));

    let models = "MODEL        1\nATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N\nENDMDL\nMODEL        2\nATOM      1  N   ALA A   1      11.204   6.234  -6.604  1.00  0.00           N\nENDMDL\nEND\n";
    let items = read_str(models, LibraryFormat::Pdb);
    assert_eq!(oks(&items).len(), 2);
    assert_eq!(items[1].as_ref().unwrap().line, 4);
    assert_eq!(items[1].as_ref().unwrap().name, "lib_2");

    let bad = PDB.replace("CONECT    2    1    3", "CONECT    2    1    8");
    let e = read_str(&bad, LibraryFormat::Pdb).remove(0).unwrap_err();
    assert_eq!(e.line, 6);
    assert!(e.reason.contains("serial 8"), "{e}");
    let bad = PDB.replace("1.500   0.000", "1.500   x.000");
    let e = read_str(&bad, LibraryFormat::Pdb).remove(0).unwrap_err();
    assert_eq!(e.line, 3);
    let e = read_str("just some text\n", LibraryFormat::Pdb).remove(0).unwrap_err();
    assert!(e.reason.contains("no ATOM/HETATM"));
}

#[test]
fn pdb_from_obabel() {
    let dir = tempfile::tempdir().unwrap();
    let Some(text) = obabel(dir.path(), "lib.pdb", &[]) else {
        eprintln!("obabel not available: PDB conversion skipped");
        return;
    };
    let items = read_str(&text, LibraryFormat::Pdb);
    let recs = oks(&items);
    assert_eq!(recs.len(), 20, "{:?}", errs(&items));
    assert_eq!(recs[0].name, "MOSES_TEST_140264");
    assert_eq!(recs[0].atoms, 42);
    let items = read_str(&text[..text.len() / 2], LibraryFormat::Pdb);
    assert!(oks(&items).len() >= 9);
}

#[test]
fn smiles_syntax_and_layout() {
    let text = "# header comment\nCCO ethanol\n\nc1ccccc1\tbenzene ring\nC(C\tunbalanced\nC1CC  ring_open\nCC{C} braces\nC[NH3+].[Cl-] salt\nCl%12CC%12 pct\n[C@@H](F)(Cl)Br chiral\n)C bad\nhello world\n";
    let items = read_str(text, LibraryFormat::Smiles);
    assert_eq!(items.len(), 10);
    let ok_names: Vec<&str> = oks(&items).iter().map(|r| r.name.as_str()).collect();
    assert_eq!(ok_names, ["ethanol", "benzene ring", "salt", "pct", "chiral"]);
    assert_eq!(read_str("CCN\n", LibraryFormat::Smiles)[0].as_ref().unwrap().name, "lib_1");
    let r = items[1].as_ref().unwrap();
    assert_eq!((r.line, r.atoms, r.text.as_str()), (4, 6, "c1ccccc1\tbenzene ring\n"));
    assert_eq!(items[0].as_ref().unwrap().smiles.as_deref(), Some("CCO"));
    let reasons: Vec<String> = errs(&items).iter().map(|e| format!("{} {}", e.name, e.reason)).collect();
    assert!(reasons[0].starts_with("unbalanced") && reasons[0].contains("'('"), "{reasons:?}");
    assert!(reasons[1].contains("ring bond 1"), "{reasons:?}");
    assert!(reasons[2].contains("'{'"), "{reasons:?}");
    assert!(reasons[3].contains("')'"), "{reasons:?}");
    assert!(reasons[4].contains("'h'"), "{reasons:?}");
    assert_eq!(errs(&items)[0].line, 5);
    for bad in ["C[C", "C]", "[]", "C%1", "1CC1", "(C)", "C[C(]", "é"] {
        assert!(smiles::check_smiles(bad).is_err(), "{bad}");
    }
    for good in [
        "[2H]C",
        "C=C",
        "C#N",
        "c1ccc2ccccc2c1",
        "C/C=C\\C",
        "[Fe+2]",
        "*C",
        "BrCCCl",
        "C1CC1C1CC1",
    ] {
        assert!(smiles::check_smiles(good).is_ok(), "{good}");
    }
}

#[test]
fn empty_and_blank_inputs_give_no_records() {
    for format in [
        LibraryFormat::Sdf,
        LibraryFormat::Mol2,
        LibraryFormat::Smiles,
        LibraryFormat::Pdb,
        LibraryFormat::Pdbqt,
    ] {
        assert!(read_str("", format).is_empty(), "{format:?}");
        assert!(read_str("\n\n  \n", format).is_empty(), "{format:?}");
    }
}

#[test]
fn garbage_and_binary_give_errors() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0\x5c\x72\xa8\x66";
    let sdf_gz = gzip(read_text("ligands/ligands-20-3d.sdf").as_bytes());
    for format in [
        LibraryFormat::Sdf,
        LibraryFormat::Mol2,
        LibraryFormat::Smiles,
        LibraryFormat::Pdb,
        LibraryFormat::Pdbqt,
    ] {
        for input in [&png[..], &sdf_gz[..], b"hello world\nthis is not a molecule\n"] {
            let items = read_bytes(input, format);
            assert!(!items.is_empty(), "{format:?}");
            assert!(items.iter().all(|r| r.is_err()), "{format:?}: {items:?}");
        }
    }
    let e = read_bytes(png, LibraryFormat::Sdf).remove(0).unwrap_err();
    assert!(e.reason.contains("UTF-8") || e.reason.contains("NUL"), "{e}");
}

#[test]
fn overlong_line_and_record_are_bounded() {
    let good = read_text("ligands/ligands-20.smi");
    let mut text = "C".repeat(MAX_LINE_BYTES + 10);
    text.push_str(" huge\n");
    text.push_str(&good);
    let items = read_str(&text, LibraryFormat::Smiles);
    assert_eq!(items.len(), 21);
    let e = items[0].as_ref().unwrap_err();
    assert!(e.reason.contains("longer than"), "{e}");
    assert_eq!(oks(&items).len(), 20);
    assert_eq!(items[1].as_ref().unwrap().line, 2);

    // A "record" bigger than the cap, followed by a normal one: only the big one fails.
    let sdf = read_text("ligands/ligands-20-3d.sdf");
    let filler = "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n";
    let mut big = String::from("big\n\n\n");
    while big.len() <= MAX_RECORD_BYTES {
        big.push_str(filler);
    }
    big.push_str("$$$$\n");
    big.push_str(&sdf);
    let items = read_str(&big, LibraryFormat::Sdf);
    assert_eq!(items.len(), 21);
    let e = items[0].as_ref().unwrap_err();
    assert_eq!(e.name, "big");
    assert!(e.reason.contains("larger than"), "{e}");
    let first_ok = items[1].as_ref().unwrap();
    assert_eq!(first_ok.line, big.lines().count() - sdf.lines().count() + 1);
}

/// Yields `good` bytes, then fails.
struct FailingReader {
    good: io::Cursor<Vec<u8>>,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.good.read(buf)? {
            0 => Err(io::Error::other("disk on fire")),
            n => Ok(n),
        }
    }
}

#[test]
fn io_error_ends_iteration_with_one_error() {
    let text = read_text("ligands/ligands-20.smi");
    let cut = text.lines().take(5).map(|l| format!("{l}\n")).collect::<String>();
    let reader = BufReader::new(FailingReader {
        good: io::Cursor::new(cut.into_bytes()),
    });
    let items: Vec<_> = read_library(reader, LibraryFormat::Smiles, "x").collect();
    assert_eq!(items.len(), 6);
    assert_eq!(oks(&items).len(), 5);
    let e = items[5].as_ref().unwrap_err();
    assert!(e.reason.contains("disk on fire"), "{e}");
    assert_eq!(e.index, 5);
}

#[test]
fn bom_crlf_and_problem_after_preamble() {
    let items = read_bytes(b"\xEF\xBB\xBFCCO ethanol\r\nCCN ethylamine\r\n", LibraryFormat::Smiles);
    let names: Vec<&str> = oks(&items).iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ethanol", "ethylamine"]);
    // A comment preamble followed by binary must not be skipped as "just a preamble".
    let items = read_bytes(b"# header\n\xff\xfe\x00binary\n", LibraryFormat::Mol2);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().unwrap_err().line, 2);
}
