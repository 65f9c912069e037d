//! Tripos MOL2 files.

use std::collections::HashSet;

use super::{parse_f64, Boundary, Chunk, Failure, Parsed, RecordFormat};

const MOLECULE: &str = "@<TRIPOS>MOLECULE";

pub(crate) struct Mol2Format;

fn is_molecule_start(line: &str) -> bool {
    line.trim_start().starts_with(MOLECULE)
}

fn is_filler(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

impl RecordFormat for Mol2Format {
    fn boundary(&mut self, text: &str) -> Boundary {
        if is_molecule_start(text) {
            Boundary::Starts
        } else {
            Boundary::Inside
        }
    }

    fn reset(&mut self) {}

    fn skip(&self, chunk: &Chunk) -> bool {
        // Comment/blank preamble before the first molecule is allowed by the format.
        chunk.problem.is_none() && chunk.lines.iter().all(|l| is_filler(l))
    }

    fn title(&self, chunk: &Chunk) -> Option<String> {
        match chunk.lines.first() {
            Some(first) if is_molecule_start(first) => chunk.lines.get(1).map(|l| l.trim().to_string()),
            _ => None,
        }
    }

    fn parse(&self, chunk: &Chunk) -> Result<Parsed, Failure> {
        let lines = &chunk.lines;
        if !lines.first().is_some_and(|l| is_molecule_start(l)) {
            return Err((0, format!("text before the first {MOLECULE} (not a MOL2 file?)")));
        }
        let last_line = chunk.line_no(lines.len().saturating_sub(1));
        let header_end = (1..lines.len())
            .find(|&i| lines[i].trim_start().starts_with("@<TRIPOS>"))
            .unwrap_or(lines.len());
        if header_end < 3 {
            return Err((last_line, "truncated: MOLECULE section needs a name line and a counts line".into()));
        }
        let mut counts = lines[2].split_whitespace().map(|t| t.parse::<usize>());
        let natoms = match counts.next() {
            Some(Ok(n)) => n,
            _ => return Err((chunk.line_no(2), "counts line: atom count is not a number".into())),
        };
        let nbonds = match counts.next() {
            Some(Ok(n)) => Some(n),
            None => None,
            Some(Err(_)) => return Err((chunk.line_no(2), "counts line: bond count is not a number".into())),
        };

        let mut section = "";
        let mut atom_ids: HashSet<u64> = HashSet::new();
        let mut atom_lines = 0usize;
        let mut bond_refs: Vec<(usize, u64)> = Vec::new();
        let mut bond_lines = 0usize;
        for (i, line) in lines.iter().enumerate().skip(header_end) {
            let n = chunk.line_no(i);
            if let Some(name) = line.trim_start().strip_prefix("@<TRIPOS>") {
                section = name.trim();
                if section == "MOLECULE" {
                    return Err((n, format!("second {MOLECULE} inside one record")));
                }
                continue;
            }
            if is_filler(line) {
                continue;
            }
            let toks: Vec<&str> = line.split_whitespace().collect();
            match section {
                "ATOM" => {
                    let id = toks.first().and_then(|t| t.parse::<u64>().ok());
                    let xyz_ok = toks.len() >= 6 && toks[2..5].iter().all(|t| parse_f64(Some(t)).is_some());
                    match id {
                        Some(id) if xyz_ok => {
                            if !atom_ids.insert(id) {
                                return Err((n, format!("atom id {id} used twice")));
                            }
                            atom_lines += 1;
                        }
                        _ => return Err((n, "ATOM line: expected id, name, x y z coordinates and atom type".into())),
                    }
                }
                "BOND" => {
                    let parsed: Vec<Option<u64>> = toks.iter().take(3).map(|t| t.parse().ok()).collect();
                    match parsed.as_slice() {
                        [Some(_), Some(a1), Some(a2)] if toks.len() >= 4 => {
                            bond_refs.push((n, *a1));
                            bond_refs.push((n, *a2));
                            bond_lines += 1;
                        }
                        _ => return Err((n, "BOND line: expected id, two atom ids and bond type".into())),
                    }
                }
                _ => {}
            }
        }
        if atom_lines != natoms {
            return Err((
                last_line,
                format!("counts line says {natoms} atoms, ATOM section has {atom_lines} (truncated record?)"),
            ));
        }
        if let Some(nb) = nbonds {
            if bond_lines != nb {
                return Err((
                    last_line,
                    format!("counts line says {nb} bonds, BOND section has {bond_lines} (truncated record?)"),
                ));
            }
        }
        if let Some((n, a)) = bond_refs.iter().find(|(_, a)| !atom_ids.contains(a)) {
            return Err((*n, format!("BOND line refers to atom {a}, which is not in the ATOM section")));
        }
        Ok(Parsed {
            name: None,
            text: chunk.text(),
            smiles: None,
            atoms: natoms,
        })
    }
}
