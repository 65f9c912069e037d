//! The redocking set of `dockyard bench redock`: a folder per complex, laid out as the
//! AutoDock Vina examples are (`../shared/data/vina-examples/`), read as it is.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One ligand to redock into its receptor and compare with its crystal pose.
#[derive(Debug, Clone, PartialEq)]
pub struct Complex {
    /// The folder's name, or `folder/suffix` when the folder holds several ligands.
    pub name: String,
    pub receptor: PathBuf,
    /// The ligand docked (`<stem>.pdbqt`).
    pub ligand: PathBuf,
    /// Its crystal pose (`<stem>.sdf`), the RMSD reference.
    pub crystal: PathBuf,
    pub center: [f64; 3],
    pub size: [f64; 3],
}

/// A folder (or a ligand) of the set that cannot be redocked, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct RedockSet {
    pub complexes: Vec<Complex>,
    pub skipped: Vec<Skipped>,
}

/// Reads every sub-folder of `dir` as a complex (or `dir` itself when it holds a `*.box.txt`).
/// A folder that lacks a part is skipped with the reason; a box file that does not parse, or
/// a folder whose receptor or box is ambiguous, is an error naming the files.
pub fn discover(dir: &Path) -> Result<RedockSet> {
    let mut set = RedockSet::default();
    let folders = if sorted_files(dir)?.iter().any(|f| file_name(f).ends_with(".box.txt")) {
        vec![dir.to_path_buf()]
    } else {
        let mut sub: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("--set {}: cannot read the folder", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        sub.sort();
        sub
    };
    for folder in folders {
        read_folder(&folder, &mut set)?;
    }
    if set.complexes.is_empty() && set.skipped.is_empty() {
        bail!(
            "--set {}: no complex folders in it (see `dockyard bench redock --help` for the layout)",
            dir.display()
        );
    }
    Ok(set)
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// The regular files of a folder (symbolic links followed), sorted by name.
fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn read_folder(folder: &Path, set: &mut RedockSet) -> Result<()> {
    let folder_name = file_name(folder).to_string();
    let files = sorted_files(folder)?;
    let receptors: Vec<&PathBuf> = files
        .iter()
        .filter(|f| file_name(f).contains("_receptor") && file_name(f).ends_with(".pdbqt"))
        .collect();
    // A flexible docking ships the moving side chains as `*_receptor_flex.pdbqt` beside the
    // rigid part; only the rigid one is a receptor this bench docks into.
    let (flex, rigid): (Vec<&PathBuf>, Vec<&PathBuf>) = receptors.iter().partition(|f| file_name(f).contains("_flex"));
    let boxes: Vec<&PathBuf> = files.iter().filter(|f| file_name(f).ends_with(".box.txt")).collect();
    if rigid.len() > 1 {
        bail!("{}: more than one rigid receptor: {}", folder.display(), names(&rigid));
    }
    if boxes.len() > 1 {
        bail!("{}: more than one box file: {}", folder.display(), names(&boxes));
    }
    let dockbox = boxes.first().map(|b| read_box(b)).transpose()?;

    let mut pairs = Vec::new();
    for sdf in files.iter().filter(|f| file_name(f).ends_with(".sdf")) {
        let stem = file_name(sdf).trim_end_matches(".sdf").to_string();
        let pdbqt = folder.join(format!("{stem}.pdbqt"));
        if pdbqt.is_file() && !receptors.contains(&&pdbqt) {
            pairs.push((stem, pdbqt, sdf.clone()));
        } else {
            set.skipped.push(Skipped {
                name: format!("{folder_name}/{stem}"),
                reason: format!("crystal ligand {stem}.sdf has no {stem}.pdbqt to dock beside it"),
            });
        }
    }

    let mut missing = Vec::new();
    if pairs.is_empty() {
        missing.push("no crystal ligand (no <stem>.sdf beside a <stem>.pdbqt)".to_string());
    }
    if rigid.is_empty() {
        missing.push("no rigid receptor (*_receptor*.pdbqt)".to_string());
    }
    if dockbox.is_none() {
        missing.push("no box (*.box.txt)".to_string());
    }
    let (Some(receptor), Some((center, size)), false) = (rigid.first(), dockbox, pairs.is_empty()) else {
        if let Some(f) = flex.first() {
            missing.push(format!("flexible receptor {} (flexible docking is not benchmarked)", file_name(f)));
        }
        set.skipped.push(Skipped {
            name: folder_name,
            reason: missing.join("; "),
        });
        return Ok(());
    };
    let several = pairs.len() > 1;
    for (stem, ligand, crystal) in pairs {
        let name = if several {
            format!("{folder_name}/{}", short_stem(&folder_name, &stem))
        } else {
            folder_name.clone()
        };
        set.complexes.push(Complex {
            name,
            receptor: (*receptor).clone(),
            ligand,
            crystal,
            center,
            size,
        });
    }
    Ok(())
}

fn names(files: &[&PathBuf]) -> String {
    files.iter().map(|f| file_name(f)).collect::<Vec<_>>().join(", ")
}

/// `5x72_ligand_p59` in folder `5x72` -> `p59`.
fn short_stem<'a>(folder: &str, stem: &'a str) -> &'a str {
    stem.strip_prefix(&format!("{folder}_ligand_"))
        .or_else(|| stem.strip_prefix(&format!("{folder}_")))
        .filter(|s| !s.is_empty())
        .unwrap_or(stem)
}

/// A Vina config file's box: `center_x = …` … `size_z = …`, one per line; other keys (a Vina
/// config may name the receptor or the exhaustiveness) and `#` comments are ignored.
pub fn read_box(path: &Path) -> Result<([f64; 3], [f64; 3])> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the box file {}", path.display()))?;
    parse_box(&text).with_context(|| format!("box file {}", path.display()))
}

fn parse_box(text: &str) -> Result<([f64; 3], [f64; 3])> {
    const KEYS: [&str; 6] = ["center_x", "center_y", "center_z", "size_x", "size_y", "size_z"];
    let mut v: [Option<f64>; 6] = [None; 6];
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected `key = value`, got '{line}'", i + 1);
        };
        if let Some(k) = KEYS.iter().position(|k| *k == key.trim()) {
            let value = value.trim();
            let x: f64 = value
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .with_context(|| format!("line {}: {} = '{value}' is not a number", i + 1, KEYS[k]))?;
            v[k] = Some(x);
        }
    }
    let mut out = [0.0; 6];
    for (k, x) in v.iter().enumerate() {
        out[k] = x.with_context(|| format!("no {} line", KEYS[k]))?;
    }
    if out[3..].iter().any(|s| *s <= 0.0) {
        bail!("the box sizes must be positive");
    }
    Ok(([out[0], out[1], out[2]], [out[3], out[4], out[5]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOX: &str = "center_x = 15.190\ncenter_y = 53.903\ncenter_z = -16.917\nsize_x = 20.000\nsize_y = 20.000\nsize_z = 24.000";

    fn touch(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    /// The layout of ../shared/data/vina-examples: one ligand, two ligands, and a flexible
    /// docking without a crystal ligand.
    fn vina_examples() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        let a = d.path().join("1iep");
        std::fs::create_dir(&a).expect("mkdir");
        for f in [
            "1iep_ligand.pdbqt",
            "1iep_ligand.sdf",
            "1iep_ligand_vina_out.pdbqt",
            "1iep_receptor.pdbqt",
        ] {
            touch(&a, f, "x");
        }
        touch(&a, "1iep_receptor.box.txt", BOX);
        let b = d.path().join("5x72");
        std::fs::create_dir(&b).expect("mkdir");
        for f in [
            "5x72_ligand_p59.pdbqt",
            "5x72_ligand_p59.sdf",
            "5x72_ligand_p69.pdbqt",
            "5x72_ligand_p69.sdf",
            "5x72_ligand_vina_out.pdbqt",
            "5x72_receptor.pdbqt",
        ] {
            touch(&b, f, "x");
        }
        touch(&b, "5x72_receptor.box.txt", BOX);
        let c = d.path().join("1fpu");
        std::fs::create_dir(&c).expect("mkdir");
        for f in [
            "1fpu_ligand_flex_vina_out.pdbqt",
            "1fpu_receptor_flex.pdbqt",
            "1fpu_receptor_rigid.pdbqt",
        ] {
            touch(&c, f, "x");
        }
        touch(&c, "1fpu_receptor.box.txt", BOX);
        touch(d.path(), "LICENSE.txt", "x");
        d
    }

    #[test]
    fn reads_the_vina_examples_layout() {
        let d = vina_examples();
        let set = discover(d.path()).expect("set");
        let names: Vec<&str> = set.complexes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["1iep", "5x72/p59", "5x72/p69"]);
        let c = &set.complexes[0];
        assert_eq!(c.receptor, d.path().join("1iep/1iep_receptor.pdbqt"));
        assert_eq!(c.ligand, d.path().join("1iep/1iep_ligand.pdbqt"));
        assert_eq!(c.crystal, d.path().join("1iep/1iep_ligand.sdf"));
        assert_eq!((c.center, c.size), ([15.19, 53.903, -16.917], [20.0, 20.0, 24.0]));
        assert_eq!(set.complexes[2].ligand, d.path().join("5x72/5x72_ligand_p69.pdbqt"));
        assert_eq!(set.complexes[2].crystal, d.path().join("5x72/5x72_ligand_p69.sdf"));

        assert_eq!(set.skipped.len(), 1, "{:?}", set.skipped);
        assert_eq!(set.skipped[0].name, "1fpu");
        let why = &set.skipped[0].reason;
        assert!(why.contains("no crystal ligand"), "{why}");
        assert!(why.contains("flexible receptor 1fpu_receptor_flex.pdbqt"), "{why}");
        assert!(!why.contains("no rigid receptor") && !why.contains("no box"), "{why}");
    }

    #[test]
    fn a_complex_folder_itself_is_a_set_of_one() {
        let d = vina_examples();
        let set = discover(&d.path().join("1iep")).expect("set");
        assert_eq!(set.complexes.len(), 1);
        assert_eq!(set.complexes[0].name, "1iep");
    }

    #[test]
    fn a_folder_missing_parts_is_skipped_with_every_reason() {
        let d = tempfile::tempdir().expect("tmp");
        let a = d.path().join("abcd");
        std::fs::create_dir(&a).expect("mkdir");
        touch(&a, "lig.pdbqt", "x");
        touch(&a, "lig.sdf", "x");
        touch(&a, "other.sdf", "x");
        let set = discover(d.path()).expect("set");
        assert!(set.complexes.is_empty());
        let reasons: Vec<(&str, &str)> = set.skipped.iter().map(|s| (s.name.as_str(), s.reason.as_str())).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert_eq!(
            reasons[0],
            ("abcd/other", "crystal ligand other.sdf has no other.pdbqt to dock beside it")
        );
        assert_eq!(reasons[1], ("abcd", "no rigid receptor (*_receptor*.pdbqt); no box (*.box.txt)"));
    }

    #[test]
    fn an_unparseable_box_names_the_file_and_line() {
        let d = vina_examples();
        let bad = d.path().join("5x72/5x72_receptor.box.txt");
        std::fs::write(&bad, "center_x = 1\ncenter_y = abc\n").expect("write");
        let e = format!("{:#}", discover(d.path()).expect_err("bad box"));
        assert!(
            e.contains("5x72_receptor.box.txt") && e.contains("line 2") && e.contains("center_y"),
            "{e}"
        );

        std::fs::write(&bad, "center_x = 1\ncenter_y = 2\ncenter_z = 3\nsize_x = 4\nsize_y = 5\n").expect("write");
        let e = format!("{:#}", discover(d.path()).expect_err("short box"));
        assert!(e.contains("5x72_receptor.box.txt") && e.contains("no size_z"), "{e}");

        std::fs::write(&bad, "center_x 1\n").expect("write");
        let e = format!("{:#}", discover(d.path()).expect_err("no ="));
        assert!(e.contains("5x72_receptor.box.txt") && e.contains("key = value"), "{e}");
    }

    #[test]
    fn box_files_take_comments_and_other_vina_keys() {
        let (c, s) = parse_box(&format!("receptor = r.pdbqt\n# a comment\n{BOX}\nexhaustiveness = 8 # effort\n")).expect("box");
        assert_eq!((c, s), ([15.19, 53.903, -16.917], [20.0, 20.0, 24.0]));
        assert!(parse_box(&BOX.replace("size_x = 20.000", "size_x = 0")).is_err());
    }

    #[test]
    fn ambiguous_receptors_and_empty_sets_are_errors() {
        let d = vina_examples();
        touch(&d.path().join("1iep"), "1iep_receptor_h.pdbqt", "x");
        let e = format!("{:#}", discover(d.path()).expect_err("two receptors"));
        assert!(e.contains("1iep_receptor.pdbqt, 1iep_receptor_h.pdbqt"), "{e}");

        let empty = tempfile::tempdir().expect("tmp");
        let e = format!("{:#}", discover(empty.path()).expect_err("empty"));
        assert!(e.contains("no complex folders"), "{e}");
        let e = format!("{:#}", discover(&empty.path().join("absent")).expect_err("absent"));
        assert!(e.contains("absent"), "{e}");
    }
}
