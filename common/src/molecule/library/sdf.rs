//! MDL SD files, V2000 and V3000 connection tables.

use std::collections::HashSet;

use super::{parse_f64, Boundary, Chunk, Failure, Parsed, RecordFormat};

pub(crate) struct SdfFormat;

fn is_terminator(line: &str) -> bool {
    line.trim_end() == "$$$$"
}

fn is_m_end(line: &str) -> bool {
    line.trim_end() == "M  END"
}

impl RecordFormat for SdfFormat {
    fn boundary(&mut self, text: &str) -> Boundary {
        if is_terminator(text) {
            Boundary::Ends
        } else {
            Boundary::Inside
        }
    }

    fn reset(&mut self) {}

    fn skip(&self, chunk: &Chunk) -> bool {
        // A stray "$$$$" (e.g. doubled terminator) is not a molecule.
        chunk.is_blank() || (chunk.problem.is_none() && chunk.lines.len() == 1 && is_terminator(&chunk.lines[0]))
    }

    fn title(&self, chunk: &Chunk) -> Option<String> {
        chunk.lines.first().map(|l| l.trim().to_string())
    }

    fn parse(&self, chunk: &Chunk) -> Result<Parsed, Failure> {
        let lines = &chunk.lines;
        let terminated = lines.last().is_some_and(|l| is_terminator(l));
        let body = if terminated { &lines[..lines.len() - 1] } else { &lines[..] };
        let last_line = chunk.line_no(body.len().saturating_sub(1));
        if body.len() < 4 {
            return Err((
                last_line,
                "truncated: the header needs 4 lines (title, program, comment, counts)".into(),
            ));
        }
        let atoms_end = if body[3].contains("V3000") {
            v3000(chunk, body)?
        } else {
            v2000(chunk, body)?
        };
        let (atoms, ctab_end) = atoms_end;
        let m_end = (ctab_end..body.len())
            .find(|&i| is_m_end(&body[i]))
            .ok_or_else(|| (last_line, "missing 'M  END' (truncated record?)".to_string()))?;
        let smiles = data_items(chunk, &body[m_end + 1..], m_end + 1)?;
        let mut text = chunk.text();
        if !terminated {
            // Only possible for the last record at EOF; a one-record file still wants its terminator.
            text.push_str("$$$$\n");
        }
        Ok(Parsed {
            name: None,
            text,
            smiles,
            atoms,
        })
    }
}

/// Checks the data items and returns a `SMILES` item if there is one.
fn data_items(chunk: &Chunk, items: &[String], offset: usize) -> Result<Option<String>, Failure> {
    let mut smiles = None;
    let mut want_smiles = false;
    for (i, line) in items.iter().enumerate() {
        if line.starts_with('>') {
            let name = line
                .find('<')
                .and_then(|a| line[a + 1..].find('>').map(|b| &line[a + 1..a + 1 + b]));
            match name {
                Some(n) => want_smiles = n.eq_ignore_ascii_case("smiles"),
                None => return Err((chunk.line_no(offset + i), "data item header without '<NAME>'".into())),
            }
        } else if want_smiles && !line.trim().is_empty() {
            smiles = Some(line.trim().to_string());
            want_smiles = false;
        }
    }
    Ok(smiles)
}

fn count_field(line: &str, range: std::ops::Range<usize>, token: usize) -> Option<usize> {
    line.get(range)
        .and_then(|f| f.trim().parse().ok())
        .or_else(|| line.split_whitespace().nth(token).and_then(|t| t.parse().ok()))
}

/// Returns (atom count, index of the first line after the bond block).
fn v2000(chunk: &Chunk, body: &[String]) -> Result<(usize, usize), Failure> {
    let counts_line = chunk.line_no(3);
    let natoms = count_field(&body[3], 0..3, 0).ok_or_else(|| (counts_line, "counts line: atom count is not a number".to_string()))?;
    let nbonds = count_field(&body[3], 3..6, 1).ok_or_else(|| (counts_line, "counts line: bond count is not a number".to_string()))?;
    let truncated = |what: &str, expected: usize, found: usize| {
        (
            chunk.line_no(body.len().saturating_sub(1)),
            format!("truncated: expected {expected} {what} lines, found {found}"),
        )
    };
    for i in 0..natoms {
        let idx = 4 + i;
        let line = body.get(idx).ok_or_else(|| truncated("atom", natoms, i))?;
        if !v2000_atom_ok(line) {
            return Err((
                chunk.line_no(idx),
                format!("atom line {}: expected x y z coordinates and an element symbol", i + 1),
            ));
        }
    }
    for i in 0..nbonds {
        let idx = 4 + natoms + i;
        let line = body.get(idx).ok_or_else(|| truncated("bond", nbonds, i))?;
        let a1 = count_field(line, 0..3, 0);
        let a2 = count_field(line, 3..6, 1);
        let (Some(a1), Some(a2)) = (a1, a2) else {
            return Err((chunk.line_no(idx), format!("bond line {}: atom numbers are not numbers", i + 1)));
        };
        for a in [a1, a2] {
            if a == 0 || a > natoms {
                return Err((
                    chunk.line_no(idx),
                    format!("bond line {}: atom {a} out of range 1..={natoms}", i + 1),
                ));
            }
        }
    }
    Ok((natoms, 4 + natoms + nbonds))
}

fn v2000_atom_ok(line: &str) -> bool {
    let symbol_ok = |s: &str| !s.is_empty() && !s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.');
    let fixed = (
        parse_f64(line.get(0..10)),
        parse_f64(line.get(10..20)),
        parse_f64(line.get(20..30)),
        line.get(31..34).or_else(|| line.get(31..)).map(str::trim),
    );
    if let (Some(_), Some(_), Some(_), Some(sym)) = fixed {
        if symbol_ok(sym) {
            return true;
        }
    }
    // Some writers do not honour the fixed columns; whitespace-separated fields are still unambiguous.
    let mut toks = line.split_whitespace();
    let xyz_ok = (0..3).all(|_| parse_f64(toks.next()).is_some());
    xyz_ok && toks.next().is_some_and(symbol_ok)
}

/// One `M  V30` logical line (continuations joined) and its first file line.
struct V30Line {
    line: usize,
    text: String,
}

fn v30_lines(chunk: &Chunk, body: &[String]) -> (Vec<V30Line>, usize) {
    let mut out: Vec<V30Line> = Vec::new();
    let mut continuing = false;
    for (i, raw) in body.iter().enumerate().skip(4) {
        let Some(content) = raw.strip_prefix("M  V30 ").or_else(|| raw.strip_prefix("M  V30")) else {
            if is_m_end(raw) {
                return (out, i);
            }
            continuing = false;
            continue;
        };
        let content = content.trim_end();
        let (piece, more) = match content.strip_suffix('-') {
            Some(p) => (p, true),
            None => (content, false),
        };
        match out.last_mut() {
            Some(last) if continuing => last.text.push_str(piece),
            _ => out.push(V30Line {
                line: chunk.line_no(i),
                text: piece.to_string(),
            }),
        }
        continuing = more;
    }
    (out, body.len())
}

#[derive(PartialEq)]
enum V30Block {
    Outside,
    Ctab,
    Atom,
    Bond,
    Other(String),
}

fn v3000(chunk: &Chunk, body: &[String]) -> Result<(usize, usize), Failure> {
    let (logical, end) = v30_lines(chunk, body);
    let mut block = V30Block::Outside;
    let mut counts: Option<(usize, usize)> = None;
    let mut atom_ids: HashSet<u64> = HashSet::new();
    let mut bonds = 0usize;
    let mut ctab_done = false;
    let mut seen_ctab = false;
    for l in &logical {
        let toks: Vec<&str> = l.text.split_whitespace().collect();
        let first = toks.first().copied().unwrap_or("");
        let second = toks.get(1).copied().unwrap_or("");
        match (&block, first) {
            (V30Block::Outside, "BEGIN") if second == "CTAB" && !seen_ctab => {
                block = V30Block::Ctab;
                seen_ctab = true;
            }
            (V30Block::Outside, _) if !seen_ctab => return Err((l.line, "expected 'M  V30 BEGIN CTAB'".into())),
            (V30Block::Outside, _) => {}
            (V30Block::Ctab, "COUNTS") => {
                let na = toks.get(1).and_then(|t| t.parse().ok());
                let nb = toks.get(2).and_then(|t| t.parse().ok());
                match (na, nb) {
                    (Some(na), Some(nb)) => counts = Some((na, nb)),
                    _ => return Err((l.line, "COUNTS line: atom and bond counts must be numbers".into())),
                }
            }
            (V30Block::Ctab, "BEGIN") => {
                if counts.is_none() {
                    return Err((l.line, "BEGIN block before the COUNTS line".into()));
                }
                block = match second {
                    "ATOM" => V30Block::Atom,
                    "BOND" => V30Block::Bond,
                    other => V30Block::Other(other.to_string()),
                };
            }
            (V30Block::Ctab, "END") if second == "CTAB" => {
                block = V30Block::Outside;
                ctab_done = true;
            }
            (V30Block::Ctab, _) => {}
            (V30Block::Atom, "END") if second == "ATOM" => {
                let na = counts.map(|c| c.0).unwrap_or(0);
                if atom_ids.len() != na {
                    return Err((l.line, format!("atom block has {} atoms, COUNTS says {na}", atom_ids.len())));
                }
                block = V30Block::Ctab;
            }
            (V30Block::Atom, _) => {
                let id = first.parse::<u64>().ok();
                let xyz_ok = toks.len() >= 5 && toks[2..5].iter().all(|t| parse_f64(Some(t)).is_some());
                match id {
                    Some(id) if xyz_ok && !toks[1].is_empty() => {
                        if !atom_ids.insert(id) {
                            return Err((l.line, format!("atom index {id} used twice")));
                        }
                    }
                    _ => return Err((l.line, "atom line: expected index, type and x y z coordinates".into())),
                }
            }
            (V30Block::Bond, "END") if second == "BOND" => {
                let nb = counts.map(|c| c.1).unwrap_or(0);
                if bonds != nb {
                    return Err((l.line, format!("bond block has {bonds} bonds, COUNTS says {nb}")));
                }
                block = V30Block::Ctab;
            }
            (V30Block::Bond, _) => {
                let refs: Vec<Option<u64>> = toks.iter().skip(2).take(2).map(|t| t.parse().ok()).collect();
                if refs.len() != 2 || first.parse::<u64>().is_err() {
                    return Err((l.line, "bond line: expected index, type and two atom indices".into()));
                }
                for r in refs {
                    match r {
                        Some(a) if atom_ids.contains(&a) => {}
                        Some(a) => return Err((l.line, format!("bond line: atom {a} is not in the atom block"))),
                        None => return Err((l.line, "bond line: atom indices are not numbers".into())),
                    }
                }
                bonds += 1;
            }
            (V30Block::Other(name), "END") if second == name.as_str() => block = V30Block::Ctab,
            (V30Block::Other(_), _) => {}
        }
    }
    let last = chunk.line_no(end.min(body.len()).saturating_sub(1));
    if !seen_ctab {
        return Err((last, "missing 'M  V30 BEGIN CTAB'".into()));
    }
    if !ctab_done {
        return Err((last, "missing 'M  V30 END CTAB' (truncated record?)".into()));
    }
    let (na, nb) = counts.ok_or_else(|| (last, "missing 'M  V30 COUNTS' line".to_string()))?;
    if atom_ids.len() != na {
        return Err((last, format!("COUNTS says {na} atoms but the atom block has {}", atom_ids.len())));
    }
    if bonds != nb {
        return Err((last, format!("COUNTS says {nb} bonds but the bond block has {bonds}")));
    }
    Ok((na, end))
}
