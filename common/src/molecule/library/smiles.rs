//! SMILES files: one `SMILES [ID...]` per line.

use super::{Boundary, Chunk, Failure, Parsed, RecordFormat};

pub(crate) struct SmilesFormat;

fn split_line(line: &str) -> (&str, &str) {
    let t = line.trim();
    match t.find(char::is_whitespace) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, ""),
    }
}

impl RecordFormat for SmilesFormat {
    fn boundary(&mut self, _text: &str) -> Boundary {
        Boundary::Ends
    }

    fn reset(&mut self) {}

    fn skip(&self, chunk: &Chunk) -> bool {
        chunk.is_blank() || (chunk.problem.is_none() && chunk.lines.first().is_some_and(|l| l.trim_start().starts_with('#')))
    }

    fn title(&self, chunk: &Chunk) -> Option<String> {
        chunk.lines.first().map(|l| split_line(l).1.to_string())
    }

    fn parse(&self, chunk: &Chunk) -> Result<Parsed, Failure> {
        let line = chunk.lines.first().map(String::as_str).unwrap_or("");
        let (smiles, _) = split_line(line);
        let atoms = check_smiles(smiles).map_err(|reason| (chunk.first_line, format!("SMILES '{}': {reason}", preview(smiles))))?;
        Ok(Parsed {
            name: None,
            text: format!("{}\n", line.trim()),
            smiles: Some(smiles.to_string()),
            atoms,
        })
    }
}

/// Keeps error messages readable when a "SMILES" is a long run of garbage.
fn preview(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

/// Light syntax check (characters, brackets, branches, ring closures); no chemistry.
/// Returns the number of atoms written in the string (hydrogens implied by valence not counted).
pub(crate) fn check_smiles(s: &str) -> Result<usize, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    let mut atoms = 0usize;
    let mut rings = [false; 100];
    while i < b.len() {
        let c = b[i];
        match c {
            b'(' => {
                if atoms == 0 {
                    return Err("branch '(' before any atom".into());
                }
                depth += 1;
            }
            b')' => {
                depth = depth.checked_sub(1).ok_or("unbalanced ')'")?;
            }
            b'[' => {
                let close = b[i + 1..].iter().position(|&x| x == b']').ok_or("unclosed '['")?;
                let inner = &b[i + 1..i + 1 + close];
                if let Some(&bad) = inner.iter().find(|&&x| !(x.is_ascii_alphanumeric() || b"@+-:*".contains(&x))) {
                    return Err(format!("character '{}' is not valid inside a bracket atom", char::from(bad)));
                }
                if !inner.iter().any(|&x| x.is_ascii_alphabetic() || x == b'*') {
                    return Err("bracket atom without an element".into());
                }
                atoms += 1;
                i += close + 2;
                continue;
            }
            b']' => return Err("unbalanced ']'".into()),
            b'0'..=b'9' | b'%' => {
                let (n, len) = if c == b'%' {
                    match (b.get(i + 1), b.get(i + 2)) {
                        (Some(d1), Some(d2)) if d1.is_ascii_digit() && d2.is_ascii_digit() => {
                            (usize::from((d1 - b'0') * 10 + (d2 - b'0')), 3)
                        }
                        _ => return Err("'%' must be followed by two digits".into()),
                    }
                } else {
                    (usize::from(c - b'0'), 1)
                };
                if atoms == 0 {
                    return Err("ring closure before any atom".into());
                }
                rings[n] = !rings[n];
                i += len;
                continue;
            }
            b'=' | b'#' | b'$' | b':' | b'/' | b'\\' | b'-' | b'.' => {}
            b'*' | b'N' | b'O' | b'P' | b'S' | b'F' | b'I' | b'b' | b'c' | b'n' | b'o' | b'p' | b's' => atoms += 1,
            b'C' | b'B' => {
                // Cl and Br are the only two-letter elements allowed outside brackets.
                let second = if c == b'C' { b'l' } else { b'r' };
                if b.get(i + 1) == Some(&second) {
                    i += 1;
                }
                atoms += 1;
            }
            _ => {
                let ch = s.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
                return Err(format!("character '{}' is not valid in SMILES", ch.escape_default()));
            }
        }
        i += 1;
    }
    if depth > 0 {
        return Err("unbalanced '('".into());
    }
    if let Some(n) = rings.iter().position(|&open| open) {
        return Err(format!("ring bond {n} opened but never closed"));
    }
    if atoms == 0 {
        return Err("no atoms".into());
    }
    Ok(atoms)
}
