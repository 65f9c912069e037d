use super::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

fn read(rel: &str) -> String {
    let path = format!("{DATA}/{rel}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn pdbqt_files(rel_dir: &str) -> Vec<std::path::PathBuf> {
    let dir = format!("{DATA}/{rel_dir}");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read_dir {dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pdbqt"))
        .collect();
    files.sort();
    files
}

fn small_ligand() -> String {
    read("ligands/pdbqt-meeko/MOSES_TEST_170272.pdbqt")
}

fn receptor_1iep() -> String {
    read("vina-examples/1iep/1iep_receptor.pdbqt")
}

fn err_ligand(text: &str) -> PdbqtError {
    validate_ligand(text).expect_err("ligand should be refused")
}

fn err_receptor(text: &str) -> PdbqtError {
    validate_receptor(text).expect_err("receptor should be refused")
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// ---- Vina output parsing ----

#[test]
fn every_engine_output_sample_pdbqt_parses() {
    let files = pdbqt_files("engine-output-samples");
    assert!(files.len() >= 3, "expected the Vina samples, found {files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read sample");
        let poses = parse_vina_poses(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!poses.is_empty());
        assert_eq!(poses[0].rank, 1);
        assert!(approx(poses[0].rmsd_lb, 0.0) && approx(poses[0].rmsd_ub, 0.0));
    }
}

#[test]
fn ex8_seed1001_has_three_models_with_exact_values() {
    let text = read("engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt");
    let poses = parse_vina_poses(&text).expect("parse");
    let expect = [(1, -13.384, 0.0, 0.0), (2, -11.432, 3.047, 12.379), (3, -11.273, 3.848, 12.202)];
    assert_eq!(poses.len(), expect.len(), "the stdout table shows 9, the file holds 3");
    for (p, (rank, aff, lb, ub)) in poses.iter().zip(expect) {
        assert_eq!(p.rank, rank);
        assert!(approx(p.affinity, aff), "{p:?}");
        assert!(approx(p.rmsd_lb, lb), "{p:?}");
        assert!(approx(p.rmsd_ub, ub), "{p:?}");
    }
}

#[test]
fn ex1_seed42_and_vina_112_single_pose() {
    let v123 = read("engine-output-samples/vina-1.2.3_1iep_ex1_cpu1_seed42.out.pdbqt");
    let poses = parse_vina_poses(&v123).expect("1.2.3");
    assert_eq!(poses.len(), 1);
    assert!(approx(poses[0].affinity, -13.555));

    let v112 = read("engine-output-samples/vina-1.1.2_dockstring_1iep_ex1_seed42.out.pdbqt");
    let poses = parse_vina_poses(&v112).expect("1.1.2");
    assert_eq!(poses.len(), 1);
    assert!(approx(poses[0].affinity, -13.3));
}

#[test]
fn upstream_example_outputs_parse() {
    let cases = [
        ("vina-examples/1iep/1iep_ligand_vina_out.pdbqt", 4, -13.234),
        ("vina-examples/5x72/5x72_ligand_vina_out.pdbqt", 7, -19.043),
        ("vina-examples/1fpu/1fpu_ligand_flex_vina_out.pdbqt", 8, -11.627),
    ];
    for (rel, count, best) in cases {
        let poses = parse_vina_poses(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(poses.len(), count, "{rel}");
        assert!(approx(poses[0].affinity, best), "{rel}");
        let ranks: Vec<u32> = poses.iter().map(|p| p.rank).collect();
        assert_eq!(ranks, (1..=count as u32).collect::<Vec<_>>());
    }
}

#[test]
fn scientific_notation_and_positive_energies() {
    let text = "MODEL 1\nREMARK VINA RESULT:  1.852e+04  10.59  12.63\nENDMDL\n\
                MODEL 2\nREMARK VINA RESULT:     +59.38  2.5E-1  3\nENDMDL\n";
    let poses = parse_vina_poses(text).expect("parse");
    assert_eq!(poses.len(), 2);
    assert!(approx(poses[0].affinity, 18520.0));
    assert!(approx(poses[1].affinity, 59.38));
    assert!(approx(poses[1].rmsd_lb, 0.25));
    assert!(approx(poses[1].rmsd_ub, 3.0));
}

#[test]
fn crlf_output_parses() {
    let text = read("engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt").replace('\n', "\r\n");
    assert_eq!(parse_vina_poses(&text).expect("parse").len(), 3);
}

#[test]
fn single_result_without_model_wrapping_is_one_pose() {
    let text = "REMARK VINA RESULT:   -7.5   0.000   0.000\nROOT\n";
    let poses = parse_vina_poses(text).expect("parse");
    assert_eq!(poses.len(), 1);
    assert!(approx(poses[0].affinity, -7.5));
}

#[test]
fn poses_errors() {
    let e = parse_vina_poses("").expect_err("empty");
    assert_eq!(e.line, 0);
    assert!(e.reason.contains("no pose found"), "{e}");

    // An input ligand is not an output: no VINA RESULT.
    let e = parse_vina_poses(&small_ligand()).expect_err("ligand");
    assert!(e.reason.contains("no pose found"), "{e}");

    // Truncated before the last ENDMDL.
    let full = read("engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt");
    let cut = &full[..full.rfind("ENDMDL").expect("has ENDMDL")];
    let e = parse_vina_poses(cut).expect_err("truncated");
    assert_eq!(e.line, 141, "{e}");
    assert!(e.reason.contains("not closed"), "{e}");

    let e = parse_vina_poses("MODEL 1\nREMARK VINA RESULT:  -7.1  abc  0\nENDMDL\n").expect_err("bad number");
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("three numbers"), "{e}");

    let e = parse_vina_poses("MODEL 1\nREMARK VINA RESULT:  -7.1\nENDMDL\n").expect_err("short");
    assert_eq!(e.line, 2);

    let e = parse_vina_poses("MODEL 1\nROOT\nENDMDL\n").expect_err("no result");
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("no REMARK VINA RESULT"), "{e}");

    let e = parse_vina_poses("MODEL 1\nREMARK VINA RESULT: nan 0 0\nENDMDL\n").expect_err("nan");
    assert_eq!(e.line, 2);

    let e = parse_vina_poses("MODEL 1\nMODEL 2\n").expect_err("nested");
    assert_eq!(e.line, 2);

    let e = parse_vina_poses("MODEL 1\nREMARK VINA RESULT: -1 0 0\nENDMDL\n\0\0\0").expect_err("binary");
    assert!(e.reason.contains("binary"), "{e}");
}

// ---- receptors ----

#[test]
fn example_receptors_validate() {
    for (rel, atoms) in [
        ("vina-examples/1iep/1iep_receptor.pdbqt", 2702),
        ("vina-examples/5x72/5x72_receptor.pdbqt", 1481),
        ("vina-examples/1fpu/1fpu_receptor_rigid.pdbqt", 2422),
    ] {
        let summary = validate_receptor(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(summary.atoms, atoms, "{rel}");
    }
}

#[test]
fn receptor_accepts_what_vina_accepts() {
    let base = receptor_1iep();
    let extra = "\nREMARK prepared by hand\nTER\nWARNING x\nEND\n";
    let crlf = format!("{base}{extra}").replace('\n', "\r\n");
    assert_eq!(validate_receptor(&crlf).expect("crlf").atoms, 2702);
    let hetatm = base.replacen("ATOM  ", "HETATM", 1);
    assert!(validate_receptor(&hetatm).is_ok());
    let metal = format!("{base}ATOM   9999 ZN   ZN  A 999      15.000  53.000  16.000  1.00  0.00     2.000 Zn\n");
    assert_eq!(validate_receptor(&metal).expect("zn").atoms, 2703);
}

#[test]
fn ligand_given_as_receptor_is_refused() {
    let e = err_receptor(&small_ligand());
    assert_eq!(e.line, 5);
    assert!(e.reason.contains("ROOT") && e.reason.contains("ligand"), "{e}");
}

#[test]
fn flex_residue_file_is_not_a_rigid_receptor() {
    let e = err_receptor(&read("vina-examples/1fpu/1fpu_receptor_flex.pdbqt"));
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("BEGIN_RES"), "{e}");
}

#[test]
fn receptor_failures() {
    let e = err_receptor("");
    assert_eq!((e.line, e.reason.as_str()), (0, "empty file"));
    let e = err_receptor("REMARK only a remark\n");
    assert_eq!((e.line, e.reason.as_str()), (0, "no ATOM/HETATM records"));

    let base = receptor_1iep();
    let mut lines: Vec<&str> = base.lines().collect();

    // Cut in the middle of the last line.
    let cut = &base[..base.len() - 40];
    let e = err_receptor(cut);
    assert_eq!(e.line, 2702);
    assert!(e.reason.contains("too short") || e.reason.contains("atom type"), "{e}");

    let bad = lines[2].replace("32.589", "  3x.1");
    lines[2] = &bad;
    let e = err_receptor(&lines.join("\n"));
    assert_eq!(e.line, 3);
    assert!(e.reason.starts_with("coordinates not numeric"), "{e}");

    let e = err_receptor(&base.replacen(" OA\n", " Xx\n", 1));
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("unknown AutoDock atom type 'Xx'"), "{e}");

    let e = err_receptor(&base.replacen(" OA\n", "\n", 1));
    assert!(e.reason.contains("missing AutoDock atom type"), "{e}");

    let e = err_receptor(&format!("HEADER    KINASE\n{base}"));
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("unexpected record"), "{e}");

    let e = err_receptor(&format!("MODEL 1\n{base}ENDMDL\n"));
    assert_eq!(e.line, 1);

    let e = err_receptor(&format!("{base}   \n"));
    assert!(e.reason.contains("whitespace"), "{e}");
}

#[test]
fn garbage_bytes_are_refused() {
    let mut bytes = b"ATOM      1  C   SER A 438      11.317  66.182  33.926".to_vec();
    bytes.extend_from_slice(&[b'\n', 0x89, b'P', b'N', b'G', 0xff, 0xfe, 0x00]);
    let e = text_from_bytes(&bytes).expect_err("not utf-8");
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("not UTF-8"), "{e}");

    let lossy = String::from_utf8_lossy(&bytes);
    let e = err_receptor(&lossy);
    assert!(e.reason.contains("binary"), "{e}");
    let e = err_ligand(&lossy);
    assert!(e.reason.contains("binary"), "{e}");

    let e = err_receptor("\u{0}\u{1}\u{2}ELF\u{7f}");
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("binary"), "{e}");

    assert_eq!(text_from_bytes(b"ROOT\n").expect("ascii"), "ROOT\n");
}

// ---- ligands ----

#[test]
fn all_meeko_and_obabel_ligands_validate() {
    for dir in ["ligands/pdbqt-meeko", "ligands/pdbqt-obabel"] {
        let files = pdbqt_files(dir);
        assert_eq!(files.len(), 20, "{dir}");
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            let s = validate_ligand(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let atoms = text.lines().filter(|l| l.starts_with("ATOM") || l.starts_with("HETATM")).count();
            assert_eq!(s.atoms, atoms, "{}", f.display());
            let torsdof_line = text.lines().find(|l| l.starts_with("TORSDOF")).expect("TORSDOF line");
            assert_eq!(
                s.torsdof.map(|t| format!("TORSDOF {t}")).as_deref(),
                Some(torsdof_line.trim_end()),
                "{}",
                f.display()
            );
            let stem = f.file_stem().and_then(|s| s.to_str()).map(str::to_string);
            if dir.ends_with("obabel") {
                assert_eq!(s.title, stem, "obabel writes REMARK Name");
            } else {
                assert_eq!(s.title, None, "meeko writes no name");
            }
        }
    }
}

#[test]
fn example_ligands_validate() {
    for (rel, torsdof) in [
        ("vina-examples/1iep/1iep_ligand.pdbqt", 7),
        ("vina-examples/5x72/5x72_ligand_p59.pdbqt", 2),
        ("vina-examples/5x72/5x72_ligand_p69.pdbqt", 2),
    ] {
        let s = validate_ligand(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(s.torsdof, Some(torsdof), "{rel}");
    }
}

#[test]
fn receptor_given_as_ligand_is_refused() {
    let e = err_ligand(&receptor_1iep());
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("before ROOT"), "{e}");
}

#[test]
fn ligand_without_root() {
    let text: String = small_ligand()
        .lines()
        .filter(|l| !l.contains("ROOT"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = err_ligand(&text);
    assert_eq!(e.line, 5);
    assert!(e.reason.contains("before ROOT"), "{e}");

    let e = err_ligand("REMARK SMILES C\nREMARK H PARENT\n");
    assert_eq!((e.line, e.reason.as_str()), (0, "no ATOM/HETATM records"));

    let e = err_ligand("REMARK SMILES C\nROOT\nENDROOT\nTORSDOF 0\n");
    assert_eq!((e.line, e.reason.as_str()), (3, "ROOT block has no atoms"));
}

#[test]
fn unbalanced_branches() {
    let lig = small_ligand();
    let without_endbranch: String = lig
        .lines()
        .filter(|l| !l.starts_with("ENDBRANCH"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = err_ligand(&without_endbranch);
    assert_eq!(e.line, 16);
    assert_eq!(e.reason, "BRANCH 8 10 not closed");

    let mismatched = lig.replace("ENDBRANCH   8  10", "ENDBRANCH   8  11");
    let e = err_ligand(&mismatched);
    assert_eq!(e.line, 22);
    assert!(e.reason.contains("does not match BRANCH 8 10 (line 16)"), "{e}");

    let extra = lig.replace("TORSDOF 1", "ENDBRANCH   8  10\nTORSDOF 1");
    let e = err_ligand(&extra);
    assert_eq!(e.line, 23);
    assert!(e.reason.contains("without an open BRANCH"), "{e}");

    // Replacing "BRANCH" also rewrites the matching ENDBRANCH line.
    let missing_child = lig.replace("BRANCH   8  10", "BRANCH   8  99");
    let e = err_ligand(&missing_child);
    assert_eq!(e.line, 16);
    assert!(e.reason.contains("atom 99 is not in this branch"), "{e}");

    let unknown_parent = lig.replace("BRANCH   8  10", "BRANCH  42  10");
    let e = err_ligand(&unknown_parent);
    assert!(e.reason.contains("parent atom 42"), "{e}");

    // Truncated inside a nested branch of imatinib.
    let imatinib = read("vina-examples/1iep/1iep_ligand.pdbqt");
    let cut: String = imatinib.lines().take(40).map(|l| format!("{l}\n")).collect();
    let e = err_ligand(&cut);
    assert!(e.reason.ends_with("not closed"), "{e}");
}

#[test]
fn ligand_structure_failures() {
    let lig = small_ligand();

    let e = err_ligand(&lig.replace("TORSDOF 1\n", ""));
    assert_eq!((e.line, e.reason.contains("missing TORSDOF")), (0, true), "{e}");

    let e = err_ligand(&lig.replace("TORSDOF 1", "TORSDOF x"));
    assert!(e.reason.contains("TORSDOF value 'x'"), "{e}");

    let e = err_ligand(&lig.replace("ENDROOT\n", ""));
    assert!(e.reason.contains("BRANCH inside ROOT"), "{e}");

    let e = err_ligand(&format!("{lig}{lig}"));
    assert_eq!(e.line, 28);
    assert!(e.reason.contains("split"), "{e}");

    let e = err_ligand(&format!("MODEL 1\n{lig}ENDMDL\n"));
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("MODEL"), "{e}");

    let e = err_ligand(&format!("{lig}END\n"));
    assert!(e.reason.contains("unexpected record 'END'"), "{e}");

    let e = err_ligand("");
    assert_eq!((e.line, e.reason.as_str()), (0, "empty file"));
    let e = err_ligand("\n\n");
    assert_eq!((e.line, e.reason.as_str()), (0, "empty file"));

    // Vina itself accepts these.
    let s = validate_ligand(&format!("\n{lig}REMARK trailing\n\n")).expect("blank + remark");
    assert_eq!(s.atoms, 14);
    let s = validate_ligand(&lig.replace("BRANCH   8  10", "BRANCH   3  10")).expect("parent anywhere in the root");
    assert_eq!(s.torsdof, Some(1));
    assert!(validate_ligand(&lig.replace('\n', "\r\n")).is_ok());
    assert!(validate_ligand(&lig.replace("TORSDOF 1", "TORSDOF 1 extra")).is_ok());
}

#[test]
fn ligand_atom_failures() {
    let lig = small_ligand();
    let line6 = lig.lines().nth(5).expect("line 6").to_string();

    let e = err_ligand(&lig.replace(&line6, &line6.replace("  1.489", "abc.def")));
    assert_eq!(e.line, 6);
    assert!(e.reason.starts_with("coordinates not numeric: x is 'abc.def'"), "{e}");

    let e = err_ligand(&lig.replace(&line6, &line6.replace("  1.489", "       ")));
    assert!(e.reason.starts_with("coordinates not numeric"), "{e}");

    let e = err_ligand(&lig.replace(&line6, &line6.replace("  1.489", "    nan")));
    assert!(e.reason.starts_with("coordinates not numeric"), "{e}");

    let e = err_ligand(&lig.replace(&line6, &line6[..40]));
    assert!(e.reason.contains("too short"), "{e}");

    let e = err_ligand(&lig.replace(&line6, &line6.replace("-0.047", " abcde")));
    assert!(e.reason.contains("partial charge"), "{e}");

    let e = err_ligand(&lig.replace(&line6, &line6.replace("ATOM      1", "ATOM    abc")));
    assert!(e.reason.contains("serial"), "{e}");

    let e = err_ligand(&lig.replace(&line6, &line6.replace(" Br", " BR")));
    assert!(e.reason.contains("unknown AutoDock atom type 'BR'"), "{e}");

    let e = err_ligand(&lig.replace(&line6, &line6.replace("UNL", "UNé")));
    assert!(e.reason.contains("non-ASCII"), "{e}");
}

#[test]
fn error_display_has_line() {
    let e = err_ligand("");
    assert_eq!(e.to_string(), "line 0: empty file");
}

// ---- split_models ----

#[test]
fn split_without_model_is_one_ligand() {
    let obabel = read("ligands/pdbqt-obabel/MOSES_TEST_003929.pdbqt");
    let parts = split_models(&obabel);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0.as_deref(), Some("MOSES_TEST_003929"));
    assert_eq!(parts[0].1, obabel);

    let meeko = small_ligand();
    let parts = split_models(&meeko);
    assert_eq!(parts, vec![(None, meeko)]);
}

#[test]
fn split_multi_model_library_keeps_names_and_order() {
    let files = pdbqt_files("ligands/pdbqt-obabel");
    let mut lib = String::new();
    let mut names = Vec::new();
    for (i, f) in files.iter().take(5).enumerate() {
        lib.push_str(&format!("MODEL {}\n", i + 1));
        lib.push_str(&std::fs::read_to_string(f).expect("read"));
        lib.push_str("ENDMDL\n");
        names.push(f.file_stem().and_then(|s| s.to_str()).map(str::to_string));
    }
    lib.push_str("END\n");
    let parts = split_models(&lib);
    assert_eq!(parts.len(), 5);
    for ((name, text), expected) in parts.iter().zip(&names) {
        assert_eq!(name, expected);
        assert!(!text.contains("MODEL") && !text.contains("ENDMDL"));
        validate_ligand(text).unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
}

#[test]
fn split_vina_output_gives_valid_ligands() {
    let out = read("engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt");
    let parts = split_models(&out);
    assert_eq!(parts.len(), 3);
    for (name, text) in &parts {
        assert_eq!(name, &None);
        assert_eq!(validate_ligand(text).expect("pose is a ligand").torsdof, Some(7));
        assert_eq!(parse_vina_poses(text).expect("one pose").len(), 1);
    }
}

#[test]
fn split_keeps_stray_atoms_outside_models() {
    let lig = small_ligand();
    let text = format!("MODEL 1\n{lig}ENDMDL\n{lig}");
    let parts = split_models(&text);
    assert_eq!(parts.len(), 2);
    assert!(validate_ligand(&parts[0].1).is_ok());
    assert!(validate_ligand(&parts[1].1).is_ok());

    // Multi-ligand docking output holds two molecules per MODEL: each part is refused.
    let parts = split_models(&read("vina-examples/5x72/5x72_ligand_vina_out.pdbqt"));
    assert_eq!(parts.len(), 7);
    let e = validate_ligand(&parts[0].1).expect_err("two ligands in one model");
    assert!(e.reason.contains("split"), "{e}");
}

#[test]
fn remark_name_forms() {
    assert_eq!(remark_name("REMARK  Name = ZINC000001").as_deref(), Some("ZINC000001"));
    assert_eq!(remark_name("REMARK Name: aspirin 2").as_deref(), Some("aspirin 2"));
    assert_eq!(remark_name("REMARK  NAME=x").as_deref(), Some("x"));
    assert_eq!(remark_name("REMARK  Name = "), None);
    assert_eq!(remark_name("REMARK  Names are here"), None);
    assert_eq!(remark_name("REMARK SMILES CCO"), None);
}

/// Fuzz regressions (fuzz/regressions/pdbqt, vina_poses): text quoted from the file in an
/// error message is clipped, so a megabyte-long token cannot make a megabyte-long message.
#[test]
fn quoted_file_text_in_errors_is_clipped() {
    let atom = "ATOM      1  C   LIG     1       0.000   0.000   0.000  0.00  0.00    +0.000 C";
    let long_type = format!("{}{}", &atom[..atom.len() - 1], "X".repeat(100_000));
    let e = err_ligand(&format!("ROOT\n{long_type}\nENDROOT\nTORSDOF 0\n"));
    assert!(
        e.reason.contains("unknown AutoDock atom type 'XXX") && e.reason.len() < 200,
        "{}",
        e.reason.len()
    );
    let e = err_ligand(&format!("ROOT\n{atom}\nENDROOT\nTORSDOF {}\n", "9".repeat(100_000) + "x"));
    assert!(e.reason.contains("TORSDOF value") && e.reason.len() < 200, "{}", e.reason.len());
    let e = parse_vina_poses(&format!("MODEL 1\nREMARK VINA RESULT: {}\nENDMDL\n", "nan ".repeat(100_000))).expect_err("NaN result");
    assert!(e.reason.contains("VINA RESULT") && e.reason.len() < 200, "{}", e.reason.len());
}
