//! PDB coordinate files: one record per MODEL, or per END-terminated entry.

use std::collections::HashSet;

use super::{parse_f64, pdb_keyword, Boundary, Chunk, Failure, Parsed, RecordFormat};

/// Records that carry no coordinates: a chunk made only of these (a trailing `END`, a
/// header before `MODEL 1` that got cut off) is not a molecule.
const NON_ATOM_RECORDS: &[&str] = &[
    "HEADER", "OBSLTE", "TITLE", "SPLIT", "CAVEAT", "COMPND", "SOURCE", "KEYWDS", "EXPDTA", "NUMMDL", "MDLTYP", "AUTHOR", "REVDAT",
    "SPRSDE", "JRNL", "REMARK", "DBREF", "DBREF1", "DBREF2", "SEQADV", "SEQRES", "MODRES", "HET", "HETNAM", "HETSYN", "FORMUL", "HELIX",
    "SHEET", "SSBOND", "LINK", "CISPEP", "SITE", "CRYST1", "ORIGX1", "ORIGX2", "ORIGX3", "SCALE1", "SCALE2", "SCALE3", "MTRIX1", "MTRIX2",
    "MTRIX3", "MODEL", "ENDMDL", "TER", "CONECT", "MASTER", "END",
];

fn is_atom(kw: &str) -> bool {
    kw == "ATOM" || kw == "HETATM"
}

#[derive(Default)]
pub(crate) struct PdbFormat {
    has_atoms: bool,
}

impl RecordFormat for PdbFormat {
    fn boundary(&mut self, text: &str) -> Boundary {
        match pdb_keyword(text) {
            "ENDMDL" | "END" => Boundary::Ends,
            // A MODEL without the previous ENDMDL still starts a new molecule.
            "MODEL" if self.has_atoms => Boundary::Starts,
            kw => {
                if is_atom(kw) {
                    self.has_atoms = true;
                }
                Boundary::Inside
            }
        }
    }

    fn reset(&mut self) {
        self.has_atoms = false;
    }

    fn skip(&self, chunk: &Chunk) -> bool {
        chunk.problem.is_none()
            && chunk
                .lines
                .iter()
                .all(|l| l.trim().is_empty() || NON_ATOM_RECORDS.contains(&pdb_keyword(l)))
    }

    fn title(&self, chunk: &Chunk) -> Option<String> {
        let value = |kw: &str| {
            chunk.lines.iter().find(|l| pdb_keyword(l) == kw).map(|l| {
                let v = l.get(10..).unwrap_or("").trim();
                let v = v.strip_prefix("MOLECULE:").unwrap_or(v).trim();
                v.strip_suffix(';').unwrap_or(v).trim().to_string()
            })
        };
        value("COMPND").filter(|v| !v.is_empty()).or_else(|| value("TITLE"))
    }

    fn parse(&self, chunk: &Chunk) -> Result<Parsed, Failure> {
        let mut serials: HashSet<u64> = HashSet::new();
        let mut atoms = 0usize;
        let mut conects: Vec<(usize, &str)> = Vec::new();
        for (i, line) in chunk.lines.iter().enumerate() {
            let n = chunk.line_no(i);
            let kw = pdb_keyword(line);
            if is_atom(kw) {
                let xyz = [line.get(30..38), line.get(38..46), line.get(46..54)];
                if xyz.iter().any(|f| parse_f64(*f).is_none()) {
                    return Err((n, format!("{kw} record: coordinates (columns 31-54) are not numbers")));
                }
                // Hybrid-36 serials (over 99999) are not decimal; such atoms just cannot be CONECT targets here.
                if let Some(serial) = line.get(6..11).and_then(|f| f.trim().parse().ok()) {
                    serials.insert(serial);
                }
                atoms += 1;
            } else if kw == "CONECT" {
                conects.push((n, line));
            }
        }
        if atoms == 0 {
            return Err((0, "no ATOM/HETATM records".into()));
        }
        for (n, line) in conects {
            for serial in conect_serials(line).ok_or_else(|| (n, "CONECT record: atom serials are not numbers".to_string()))? {
                if !serials.contains(&serial) {
                    return Err((
                        n,
                        format!("CONECT record refers to atom serial {serial}, which is not in this model"),
                    ));
                }
            }
        }
        Ok(Parsed {
            name: None,
            text: chunk.text(),
            smiles: None,
            atoms,
        })
    }
}

fn conect_serials(line: &str) -> Option<Vec<u64>> {
    let fixed: Option<Vec<u64>> = [6..11, 11..16, 16..21, 21..26, 26..31]
        .into_iter()
        .filter_map(|r| line.get(r).map(str::trim).filter(|f| !f.is_empty()))
        .map(|f| f.parse().ok())
        .collect();
    match fixed {
        Some(v) if !v.is_empty() => Some(v),
        // Hand-written files often ignore the columns.
        _ => line.split_whitespace().skip(1).map(|t| t.parse().ok()).collect(),
    }
}
