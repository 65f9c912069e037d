//! Atom coordinates from a molecule's text, for boxes: `--autobox-ligand` and the check
//! that a box lies on the receptor.

use super::library::LibraryFormat;

fn column(line: &str, from: usize, to: usize) -> Option<f64> {
    line.get(from..to.min(line.len()))?.trim().parse().ok()
}

/// Coordinates of every atom the text lists; empty when the format has none (SMILES).
pub fn atom_coords(text: &str, format: LibraryFormat) -> Vec<[f64; 3]> {
    let mut out = Vec::new();
    match format {
        LibraryFormat::Pdb | LibraryFormat::Pdbqt => {
            for l in text.lines().filter(|l| l.starts_with("ATOM") || l.starts_with("HETATM")) {
                if let (Some(x), Some(y), Some(z)) = (column(l, 30, 38), column(l, 38, 46), column(l, 46, 54)) {
                    out.push([x, y, z]);
                }
            }
        }
        LibraryFormat::Sdf => {
            let lines: Vec<&str> = text.lines().collect();
            if lines.get(3).is_some_and(|c| c.contains("V3000")) {
                let mut in_atoms = false;
                for l in &lines {
                    let t = l.trim_start_matches("M  V30").trim();
                    if t.starts_with("BEGIN ATOM") {
                        in_atoms = true;
                    } else if t.starts_with("END ATOM") {
                        break;
                    } else if in_atoms {
                        let f: Vec<&str> = t.split_whitespace().collect();
                        if let (Some(x), Some(y), Some(z)) = (f.get(2), f.get(3), f.get(4)) {
                            if let (Ok(x), Ok(y), Ok(z)) = (x.parse(), y.parse(), z.parse()) {
                                out.push([x, y, z]);
                            }
                        }
                    }
                }
            } else if let Some(n) = lines.get(3).and_then(|c| c.get(0..3)).and_then(|n| n.trim().parse::<usize>().ok()) {
                for l in lines.iter().skip(4).take(n) {
                    if let (Some(x), Some(y), Some(z)) = (column(l, 0, 10), column(l, 10, 20), column(l, 20, 30)) {
                        out.push([x, y, z]);
                    }
                }
            }
        }
        LibraryFormat::Mol2 => {
            let mut in_atoms = false;
            for l in text.lines() {
                if l.starts_with("@<TRIPOS>") {
                    in_atoms = l.starts_with("@<TRIPOS>ATOM");
                    continue;
                }
                if in_atoms {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    if let (Some(x), Some(y), Some(z)) = (f.get(2), f.get(3), f.get(4)) {
                        if let (Ok(x), Ok(y), Ok(z)) = (x.parse(), y.parse(), z.parse()) {
                            out.push([x, y, z]);
                        }
                    }
                }
            }
        }
        LibraryFormat::Smiles => {}
    }
    out
}

/// The box smina's `--autobox_ligand` builds: the atoms' extent plus `add` Å on every side.
pub fn autobox(coords: &[[f64; 3]], add: f64) -> Option<([f64; 3], [f64; 3])> {
    let first = coords.first()?;
    let (mut lo, mut hi) = (*first, *first);
    for c in coords {
        for i in 0..3 {
            lo[i] = lo[i].min(c[i]);
            hi[i] = hi[i].max(c[i]);
        }
    }
    let center = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, (lo[2] + hi[2]) / 2.0];
    let size = [hi[0] - lo[0] + 2.0 * add, hi[1] - lo[1] + 2.0 * add, hi[2] - lo[2] + 2.0 * add];
    Some((center, size))
}

/// How many of `coords` lie inside the box grown by `margin` Å on every side.
pub fn atoms_in_box(coords: &[[f64; 3]], center: [f64; 3], size: [f64; 3], margin: f64) -> usize {
    coords
        .iter()
        .filter(|c| (0..3).all(|i| (c[i] - center[i]).abs() <= size[i] / 2.0 + margin))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rel: &str) -> String {
        std::fs::read_to_string(format!("{}/../../shared/data/{rel}", env!("CARGO_MANIFEST_DIR"))).expect("shared data")
    }

    #[test]
    fn crystal_ligand_autobox_sits_in_the_1iep_pocket() {
        let lig = atom_coords(&shared("vina-examples/1iep/1iep_ligand.sdf"), LibraryFormat::Sdf);
        assert_eq!(lig.len(), 69);
        let (c, s) = autobox(&lig, 4.0).expect("box");
        // The published 1iep box is centred at 15.19, 53.90, 16.92.
        assert!(
            (c[0] - 15.19).abs() < 4.0 && (c[1] - 53.90).abs() < 4.0 && (c[2] - 16.92).abs() < 4.0,
            "{c:?}"
        );
        assert!(s.iter().all(|x| *x > 8.0 && *x < 30.0), "{s:?}");
        let rec = atom_coords(&shared("vina-examples/1iep/1iep_receptor.pdbqt"), LibraryFormat::Pdbqt);
        assert!(rec.len() > 1000);
        assert!(atoms_in_box(&rec, c, s, 0.0) > 50);
        assert_eq!(atoms_in_box(&rec, [500.0, 500.0, 500.0], [20.0; 3], 4.0), 0);
    }

    #[test]
    fn pdbqt_and_mol2_coordinates() {
        let p = atom_coords(&shared("vina-examples/1iep/1iep_ligand.pdbqt"), LibraryFormat::Pdbqt);
        assert!(!p.is_empty());
        let m = "@<TRIPOS>MOLECULE\nx\n2 1\nSMALL\n\n@<TRIPOS>ATOM\n 1 C 1.0 2.0 3.0 C.3\n 2 O -1.5 0 0 O.3\n@<TRIPOS>BOND\n 1 1 2 1\n";
        assert_eq!(atom_coords(m, LibraryFormat::Mol2), vec![[1.0, 2.0, 3.0], [-1.5, 0.0, 0.0]]);
        assert!(atom_coords("CCO x", LibraryFormat::Smiles).is_empty());
    }
}
