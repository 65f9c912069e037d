//! PDBQT ligand libraries: one record per MODEL (Vina output, multi-ligand files), or the
//! whole file when it has no MODEL lines. Validation is the submission-time ligand check.

use super::{Boundary, Chunk, Failure, Parsed, RecordFormat};
use crate::molecule::pdbqt::{split_models, validate_ligand};

fn keyword(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

fn is_structure(kw: &str) -> bool {
    matches!(kw, "ATOM" | "HETATM" | "ROOT" | "ENDROOT" | "BRANCH" | "ENDBRANCH" | "TORSDOF")
}

#[derive(Default)]
pub(crate) struct PdbqtFormat {
    has_atoms: bool,
}

impl RecordFormat for PdbqtFormat {
    fn boundary(&mut self, text: &str) -> Boundary {
        match keyword(text) {
            "ENDMDL" => Boundary::Ends,
            "MODEL" if self.has_atoms => Boundary::Starts,
            kw => {
                if is_structure(kw) {
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
        // Trailers after the last ENDMDL; anything else without structure is reported, so a
        // non-PDBQT file does not silently read as an empty library.
        chunk.problem.is_none() && chunk.lines.iter().all(|l| matches!(keyword(l), "" | "END" | "REMARK" | "USER"))
    }

    fn title(&self, chunk: &Chunk) -> Option<String> {
        chunk.lines.iter().find_map(|l| remark_value(l, &["Name"]))
    }

    fn parse(&self, chunk: &Chunk) -> Result<Parsed, Failure> {
        let text = chunk.text();
        let mut models = split_models(&text);
        if models.len() != 1 {
            return Err((0, "atom records outside MODEL/ENDMDL".into()));
        }
        let (name, body) = models.remove(0);
        // split_models drops the MODEL line and what precedes it; map body lines back to the file.
        let model_at = chunk.lines.iter().position(|l| keyword(l) == "MODEL");
        let summary = validate_ligand(&body).map_err(|e| {
            let line = match (e.line, model_at) {
                (0, _) => 0,
                (k, Some(m)) => chunk.line_no(m) + k,
                (k, None) => chunk.line_no(k - 1),
            };
            (line, e.reason)
        })?;
        let smiles = body
            .lines()
            .find_map(|l| remark_value(l, &["SMILES"]))
            .filter(|s| !s.starts_with("IDX"));
        Ok(Parsed {
            name: name.or(summary.title),
            text: body,
            smiles,
            atoms: summary.atoms,
        })
    }
}

/// `REMARK <key> [=] value`, case-insensitive key.
fn remark_value(line: &str, keys: &[&str]) -> Option<String> {
    let rest = line.strip_prefix("REMARK")?.trim_start();
    keys.iter().find_map(|k| {
        let head = rest.get(..k.len())?;
        if !head.eq_ignore_ascii_case(k) {
            return None;
        }
        let after = rest.get(k.len()..)?;
        if !after.starts_with(char::is_whitespace) && !after.starts_with(['=', ':']) {
            return None;
        }
        let after = after.trim_start();
        let value = after.strip_prefix(['=', ':']).unwrap_or(after).trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}
