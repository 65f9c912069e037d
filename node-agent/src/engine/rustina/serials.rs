//! Rustina refuses a ligand PDBQT whose atom serials repeat (`duplicate atom serial 1`),
//! e.g. a file holding several molecules or poses, each numbered from 1, which Vina reads.
//! Renumbering the atoms in file order, and the `BRANCH`/`ENDBRANCH` records that name
//! them, makes such a file acceptable without changing what it describes.

use std::collections::HashSet;

/// The text with atom serials renumbered 1, 2, ... in file order, when some serial repeats;
/// `None` when every serial is already unique (the file is used as is).
///
/// A `BRANCH a b` names its parent atom `a`, read before it, and its first child `b`, read
/// right after it; an `ENDBRANCH a b` closes it after both were read. So `a` (and `b` of an
/// `ENDBRANCH`) is the latest atom with that old serial before the record, and `b` of a
/// `BRANCH` the first one after it. A reference that names no such atom is left as is, for
/// the engine to refuse with its own reason.
pub fn renumber_serials(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    // (line index, old serial) of each atom, in file order; its new serial is its position + 1.
    let atoms: Vec<(usize, Option<u32>)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_atom(l))
        .map(|(i, l)| (i, l.get(6..11).and_then(|s| s.trim().parse().ok())))
        .collect();
    let mut seen = HashSet::new();
    if atoms.iter().all(|(_, s)| s.is_none_or(|s| seen.insert(s))) {
        return None;
    }
    let new_serial = |k: usize| u32::try_from(k + 1).unwrap_or(u32::MAX);
    let before = |line: usize, old: u32| {
        atoms
            .iter()
            .enumerate()
            .rev()
            .find(|(_, (i, s))| *i < line && *s == Some(old))
            .map(|(k, _)| new_serial(k))
    };
    let after = |line: usize, old: u32| {
        atoms
            .iter()
            .enumerate()
            .find(|(_, (i, s))| *i > line && *s == Some(old))
            .map(|(k, _)| new_serial(k))
    };

    let mut out = String::with_capacity(text.len() + 64);
    let mut next_atom = 0usize;
    for (i, line) in lines.iter().enumerate() {
        if is_atom(line) {
            next_atom += 1;
            // Serial in columns 7-11, right-justified; a line too short keeps its shape.
            match (line.get(..6), line.get(11..)) {
                (Some(head), Some(rest)) => out.push_str(&format!("{head}{:>5}{rest}", next_atom)),
                _ => out.push_str(line),
            }
        } else if let Some((keyword, a, b)) = branch(line) {
            let new_a = before(i, a);
            let new_b = if keyword == "BRANCH" { after(i, b) } else { before(i, b) };
            match (new_a, new_b) {
                (Some(a), Some(b)) => out.push_str(&format!("{keyword}{a:>4}{b:>4}")),
                _ => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Some(out)
}

fn is_atom(line: &str) -> bool {
    line.starts_with("ATOM") || line.starts_with("HETATM")
}

/// `BRANCH a b` or `ENDBRANCH a b`: the keyword and the two serials.
fn branch(line: &str) -> Option<(&'static str, u32, u32)> {
    let mut words = line.split_whitespace();
    let keyword = match words.next()? {
        "BRANCH" => "BRANCH",
        "ENDBRANCH" => "ENDBRANCH",
        _ => return None,
    };
    let a = words.next()?.parse().ok()?;
    let b = words.next()?.parse().ok()?;
    Some((keyword, a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serials(text: &str) -> Vec<u32> {
        text.lines()
            .filter(|l| is_atom(l))
            .map(|l| l[6..11].trim().parse().expect("serial"))
            .collect()
    }

    fn branches(text: &str) -> Vec<(&'static str, u32, u32)> {
        text.lines().filter_map(branch).collect()
    }

    fn atom(serial: u32, name: &str) -> String {
        format!("ATOM  {serial:>5}  {name:<3} UNL     1       0.000   0.000   0.000  1.00  0.00     0.000 C ")
    }

    /// Two copies of a 3-atom ligand with one rotatable bond, each numbered from 1.
    fn doubled() -> String {
        let one = [
            "ROOT".to_string(),
            atom(1, "C1"),
            atom(2, "C2"),
            "ENDROOT".to_string(),
            "BRANCH   2   3".to_string(),
            atom(3, "C3"),
            "ENDBRANCH   2   3".to_string(),
            "TORSDOF 1".to_string(),
        ]
        .join("\n");
        format!("{one}\n{one}\n")
    }

    #[test]
    fn unique_serials_are_left_alone() {
        let text = "ROOT\n".to_string() + &atom(1, "C1") + "\n" + &atom(2, "C2") + "\nENDROOT\nTORSDOF 0\n";
        assert_eq!(renumber_serials(&text), None);
    }

    #[test]
    fn repeated_serials_and_their_branches_are_renumbered_in_order() {
        let out = renumber_serials(&doubled()).expect("renumbered");
        assert_eq!(serials(&out), [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            branches(&out),
            [("BRANCH", 2, 3), ("ENDBRANCH", 2, 3), ("BRANCH", 5, 6), ("ENDBRANCH", 5, 6)]
        );
        // Columns are kept: the coordinates and types still start where PDBQT expects them.
        let first = out.lines().find(|l| is_atom(l)).expect("atom");
        assert_eq!(first.len(), atom(1, "C1").len());
        assert_eq!(&first[30..38], "   0.000");
        assert!(out.contains("TORSDOF 1\n") && out.lines().count() == doubled().lines().count());
    }

    /// The 5x72 example's Vina output: nine MODELs, each holding two ligands numbered from 1
    /// (rustina: `duplicate atom serial 1`).
    #[test]
    fn the_5x72_vina_output_gets_unique_serials_and_consistent_branches() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/vina-examples/5x72/5x72_ligand_vina_out.pdbqt"
        );
        let text = std::fs::read_to_string(path).expect("shared 5x72 example");
        let before = serials(&text);
        assert!(before.iter().filter(|s| **s == 1).count() > 1, "the example repeats serial 1");
        let out = renumber_serials(&text).expect("renumbered");
        let after = serials(&out);
        assert_eq!(after, (1..=u32::try_from(before.len()).expect("count")).collect::<Vec<_>>());
        // Lines keep their places, so each new serial maps back to the atom's old one: every
        // BRANCH/ENDBRANCH names the same atoms as before, now by unique serials.
        let old_lines: Vec<&str> = text.lines().collect();
        let new_lines: Vec<&str> = out.lines().collect();
        assert_eq!(old_lines.len(), new_lines.len());
        let old_of = |new: u32| before[usize::try_from(new - 1).expect("index")];
        let mut checked = 0;
        for (i, line) in new_lines.iter().enumerate() {
            let Some((keyword, a, b)) = branch(line) else { continue };
            let (_, old_a, old_b) = branch(old_lines[i]).expect("old branch");
            assert_eq!((old_of(a), old_of(b)), (old_a, old_b), "line {}", i + 1);
            if keyword == "BRANCH" {
                let child = new_lines[i + 1..].iter().find(|l| is_atom(l)).expect("child atom");
                assert_eq!(child[6..11].trim().parse::<u32>().expect("serial"), b, "line {}", i + 1);
            }
            checked += 1;
        }
        assert!(checked >= 18, "{checked} branch records");
        assert_eq!(branches(&out).len(), branches(&text).len());
    }
}
