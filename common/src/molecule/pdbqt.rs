//! PDBQT validation and AutoDock Vina output parsing.
//!
//! The validators follow what AutoDock Vina 1.2.3 itself accepts (record tags, atom types,
//! column layout), as measured against the Debian build: a job that Vina would refuse is
//! then refused at submission with a line number, instead of failing later on an agent
//! after the receptor grid has been computed.

use std::collections::HashSet;

use super::{clip, Pose};

/// Characters of a file's text quoted in an error message.
const QUOTED_CHARS: usize = 40;

/// Why a PDBQT text was refused. `line` is 1-based; 0 means the file as a whole.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("line {line}: {reason}")]
pub struct PdbqtError {
    pub line: usize,
    pub reason: String,
}

impl PdbqtError {
    fn new(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceptorSummary {
    pub atoms: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LigandSummary {
    pub atoms: usize,
    /// Always `Some` after a successful [`validate_ligand`] (TORSDOF is mandatory for Vina).
    pub torsdof: Option<u32>,
    /// From a `REMARK  Name = X` line (Open Babel writes one), if any.
    pub title: Option<String>,
}

/// Atom types (columns 78-79) that Vina 1.2.3 accepts. Measured, not taken from the
/// AutoDock4 parameter file: Vina refuses AD4 types such as `HS`, `NS`, `OS`, `B`,
/// upper-case `CL`/`BR`, and accepts a few metal element names as generic metals.
const VINA_ATOM_TYPES: &[&str] = &[
    "C", "A", "N", "O", "P", "S", "H", "F", "I", "NA", "OA", "SA", "HD", "Mg", "Mn", "Zn", "Ca", "Fe", "Cl", "Br", "Si", "At", "G0", "G1",
    "G2", "G3", "CG0", "CG1", "CG2", "CG3", "W", "Se", "Cu", "Na", "K", "Hg", "Co", "U", "Cd", "Ni",
];

/// Turns uploaded bytes into text, refusing binary data with the position of the first bad byte.
pub fn text_from_bytes(bytes: &[u8]) -> Result<&str, PdbqtError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let offset = e.valid_up_to();
            let line = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
            let byte = bytes.get(offset).copied().unwrap_or(0);
            Err(PdbqtError::new(
                line,
                format!("not UTF-8 text (byte 0x{byte:02x} at offset {offset}): binary file, not PDBQT"),
            ))
        }
    }
}

/// Checks a rigid receptor: ATOM/HETATM records with numeric coordinates and a Vina atom
/// type, at least one of them, and no ligand/flexible-residue records.
pub fn validate_receptor(text: &str) -> Result<ReceptorSummary, PdbqtError> {
    reject_empty(text)?;
    let mut atoms = 0usize;
    for (idx, raw) in text.lines().enumerate() {
        let n = idx + 1;
        let line = check_text_line(n, raw)?;
        if line.is_empty() {
            continue;
        }
        if is_atom_record(line) {
            parse_atom(n, line)?;
            atoms += 1;
            continue;
        }
        let kw = keyword(line);
        match kw {
            "ROOT" | "ENDROOT" | "BRANCH" | "ENDBRANCH" | "TORSDOF" => {
                return Err(PdbqtError::new(
                    n,
                    format!("{kw} record in a receptor: this looks like a ligand PDBQT"),
                ));
            }
            "BEGIN_RES" | "END_RES" => {
                return Err(PdbqtError::new(
                    n,
                    format!("{kw} record in a rigid receptor: flexible side chains must be a separate file"),
                ));
            }
            "MODEL" => {
                return Err(PdbqtError::new(
                    n,
                    "MODEL record in a receptor: Vina accepts a single receptor model only",
                ));
            }
            _ if line.starts_with("REMARK") || line.starts_with("WARNING") || line.starts_with("TER") || line.starts_with("END") => {
                continue;
            }
            _ => return Err(unexpected_record(n, line, "receptor")),
        }
    }
    if atoms == 0 {
        return Err(PdbqtError::new(0, "no ATOM/HETATM records"));
    }
    Ok(ReceptorSummary { atoms })
}

#[derive(Clone, Copy, PartialEq)]
enum LigandState {
    BeforeRoot,
    InRoot,
    Torsions,
    Done,
}

struct OpenBranch {
    parent: u32,
    child: u32,
    line: usize,
    child_seen: bool,
}

/// Checks a single ligand: one ROOT/ENDROOT, balanced BRANCH/ENDBRANCH whose serials
/// match and refer to real atoms, a TORSDOF record, and valid atom records.
pub fn validate_ligand(text: &str) -> Result<LigandSummary, PdbqtError> {
    reject_empty(text)?;
    let mut state = LigandState::BeforeRoot;
    let mut root_line = 0usize;
    let mut root_atoms = 0usize;
    let mut atoms = 0usize;
    let mut serials: HashSet<u32> = HashSet::new();
    let mut branches: Vec<OpenBranch> = Vec::new();
    let mut torsdof = None;
    let mut title = None;

    for (idx, raw) in text.lines().enumerate() {
        let n = idx + 1;
        let line = check_text_line(n, raw)?;
        if line.is_empty() || line.starts_with("WARNING") {
            continue;
        }
        if line.starts_with("REMARK") {
            if title.is_none() {
                title = remark_name(line);
            }
            continue;
        }
        if is_atom_record(line) {
            match state {
                LigandState::BeforeRoot => {
                    return Err(PdbqtError::new(
                        n,
                        "ATOM record before ROOT: not a ligand PDBQT (missing ROOT, or a receptor?)",
                    ));
                }
                LigandState::Torsions if branches.is_empty() => {
                    return Err(PdbqtError::new(n, "ATOM record outside ROOT/BRANCH blocks"));
                }
                LigandState::Done => {
                    return Err(PdbqtError::new(
                        n,
                        "ATOM record after TORSDOF (several ligands in one file? split them first)",
                    ));
                }
                _ => {}
            }
            let atom = parse_atom(n, line)?;
            let serial = atom
                .serial
                .ok_or_else(|| PdbqtError::new(n, "atom serial number (columns 7-11) not numeric"))?;
            if let Some(top) = branches.last_mut() {
                if top.child == serial {
                    top.child_seen = true;
                }
            } else {
                root_atoms += 1;
            }
            serials.insert(serial);
            atoms += 1;
            continue;
        }

        let kw = keyword(line);
        match kw {
            "ROOT" => {
                if state != LigandState::BeforeRoot {
                    return Err(PdbqtError::new(
                        n,
                        "second ROOT record (several ligands in one file? split them first)",
                    ));
                }
                state = LigandState::InRoot;
                root_line = n;
            }
            "ENDROOT" => {
                if state != LigandState::InRoot {
                    return Err(PdbqtError::new(n, "ENDROOT without ROOT"));
                }
                if root_atoms == 0 {
                    return Err(PdbqtError::new(n, "ROOT block has no atoms"));
                }
                state = LigandState::Torsions;
            }
            "BRANCH" => {
                match state {
                    LigandState::BeforeRoot => {
                        return Err(PdbqtError::new(n, "BRANCH before ROOT"));
                    }
                    LigandState::InRoot => {
                        return Err(PdbqtError::new(n, "BRANCH inside ROOT (missing ENDROOT)"));
                    }
                    LigandState::Done => {
                        return Err(PdbqtError::new(n, "BRANCH after TORSDOF"));
                    }
                    LigandState::Torsions => {}
                }
                let (parent, child) = branch_serials(n, line)?;
                if !serials.contains(&parent) {
                    return Err(PdbqtError::new(
                        n,
                        format!("BRANCH {parent} {child}: parent atom {parent} is not defined before it"),
                    ));
                }
                branches.push(OpenBranch {
                    parent,
                    child,
                    line: n,
                    child_seen: false,
                });
            }
            "ENDBRANCH" => {
                let (parent, child) = branch_serials(n, line)?;
                let Some(open) = branches.pop() else {
                    return Err(PdbqtError::new(n, format!("ENDBRANCH {parent} {child} without an open BRANCH")));
                };
                if (open.parent, open.child) != (parent, child) {
                    return Err(PdbqtError::new(
                        n,
                        format!(
                            "ENDBRANCH {parent} {child} does not match BRANCH {} {} (line {})",
                            open.parent, open.child, open.line
                        ),
                    ));
                }
                if !open.child_seen {
                    return Err(PdbqtError::new(
                        open.line,
                        format!("BRANCH {parent} {child}: atom {child} is not in this branch"),
                    ));
                }
            }
            "TORSDOF" => {
                match state {
                    LigandState::BeforeRoot => {
                        return Err(PdbqtError::new(n, "TORSDOF before ROOT"));
                    }
                    LigandState::InRoot => {
                        return Err(PdbqtError::new(root_line, "ROOT not closed (missing ENDROOT)"));
                    }
                    LigandState::Done => {
                        return Err(PdbqtError::new(n, "second TORSDOF record"));
                    }
                    LigandState::Torsions => {}
                }
                if let Some(open) = branches.last() {
                    return Err(branch_not_closed(open));
                }
                let value = line.split_whitespace().nth(1).unwrap_or("");
                let count = value.parse::<u32>().map_err(|_| {
                    PdbqtError::new(
                        n,
                        format!("TORSDOF value '{}' is not a non-negative integer", clip(value, QUOTED_CHARS)),
                    )
                })?;
                torsdof = Some(count);
                state = LigandState::Done;
            }
            "MODEL" | "ENDMDL" => {
                return Err(PdbqtError::new(
                    n,
                    format!("{kw} record: a multi-model file must be split into one ligand per file"),
                ));
            }
            "BEGIN_RES" | "END_RES" => {
                return Err(PdbqtError::new(
                    n,
                    format!("{kw} record: this is a flexible residue file, not a ligand"),
                ));
            }
            _ => return Err(unexpected_record(n, line, "ligand")),
        }
    }

    if atoms == 0 {
        return Err(PdbqtError::new(0, "no ATOM/HETATM records"));
    }
    match state {
        LigandState::BeforeRoot => Err(PdbqtError::new(0, "no ROOT record")),
        LigandState::InRoot => Err(PdbqtError::new(root_line, "ROOT not closed (missing ENDROOT; truncated file?)")),
        LigandState::Torsions => match branches.last() {
            Some(open) => Err(branch_not_closed(open)),
            None => Err(PdbqtError::new(0, "missing TORSDOF record (truncated file?)")),
        },
        LigandState::Done => Ok(LigandSummary { atoms, torsdof, title }),
    }
}

/// Splits a multi-ligand PDBQT into one text per `MODEL`/`ENDMDL` block, without the
/// MODEL/ENDMDL lines, each with the name from its `REMARK Name = X` line if any.
///
/// A text without MODEL lines is returned whole as one ligand. Atom-bearing lines found
/// outside any block become an extra entry rather than being dropped, so that validation
/// reports them instead of silently losing a molecule.
pub fn split_models(text: &str) -> Vec<(Option<String>, String)> {
    let has_models = text.lines().any(|l| keyword(l) == "MODEL");
    if !has_models {
        let name = text.lines().find_map(remark_name);
        return vec![(name, text.to_string())];
    }

    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    let mut outside: Vec<&str> = Vec::new();
    let mut outside_has_atoms = false;

    let finish = |lines: Vec<&str>, out: &mut Vec<(Option<String>, String)>| {
        let name = lines.iter().copied().find_map(remark_name);
        let mut body = lines.join("\n");
        body.push('\n');
        out.push((name, body));
    };

    for line in text.lines() {
        match keyword(line) {
            "MODEL" => {
                // A MODEL without ENDMDL before the next MODEL still yields its own ligand;
                // validation will then point at whatever is wrong inside it.
                if let Some(lines) = current.take() {
                    finish(lines, &mut out);
                }
                current = Some(Vec::new());
            }
            "ENDMDL" => {
                if let Some(lines) = current.take() {
                    finish(lines, &mut out);
                }
            }
            kw => match current.as_mut() {
                Some(lines) => lines.push(line),
                None => {
                    if is_atom_record(line) || matches!(kw, "ROOT" | "ENDROOT" | "BRANCH" | "ENDBRANCH" | "TORSDOF") {
                        outside_has_atoms = true;
                    }
                    outside.push(line);
                }
            },
        }
    }
    if let Some(lines) = current.take() {
        finish(lines, &mut out);
    }
    if outside_has_atoms {
        finish(outside, &mut out);
    }
    out
}

/// Reads the poses of a Vina `--out` PDBQT (1.2.x and 1.1.2 layouts): one [`Pose`] per
/// MODEL, from its `REMARK VINA RESULT:` line.
pub fn parse_vina_poses(text: &str) -> Result<Vec<Pose>, PdbqtError> {
    let mut poses = Vec::new();
    // (line of the MODEL record, its VINA RESULT once seen)
    let mut open_model: Option<(usize, Option<VinaResult>)> = None;
    let mut saw_model = false;
    let mut loose_result: Option<VinaResult> = None;
    reject_binary(text)?;

    for (idx, raw) in text.lines().enumerate() {
        let n = idx + 1;
        // Output is only read, never fed back to Vina, so stray whitespace lines are harmless.
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match keyword(line) {
            "MODEL" => {
                if let Some((start, _)) = open_model {
                    return Err(PdbqtError::new(
                        n,
                        format!("MODEL inside the MODEL of line {start} (missing ENDMDL)"),
                    ));
                }
                saw_model = true;
                open_model = Some((n, None));
            }
            "ENDMDL" => {
                let Some((start, result)) = open_model.take() else {
                    return Err(PdbqtError::new(n, "ENDMDL without MODEL"));
                };
                let Some((affinity, rmsd_lb, rmsd_ub)) = result else {
                    return Err(PdbqtError::new(start, "MODEL has no REMARK VINA RESULT line"));
                };
                poses.push(Pose {
                    rank: u32::try_from(poses.len() + 1).unwrap_or(u32::MAX),
                    affinity,
                    rmsd_lb,
                    rmsd_ub,
                });
            }
            _ => {
                let Some(rest) = vina_result_payload(line) else {
                    continue;
                };
                let values = parse_vina_result(n, rest)?;
                match open_model.as_mut() {
                    Some((_, slot @ None)) => *slot = Some(values),
                    Some((_, Some(_))) => {
                        return Err(PdbqtError::new(n, "second REMARK VINA RESULT line in one MODEL"));
                    }
                    None => {
                        loose_result.get_or_insert(values);
                    }
                }
            }
        }
    }
    if let Some((start, _)) = open_model {
        return Err(PdbqtError::new(start, "MODEL not closed by ENDMDL (truncated file?)"));
    }
    if !saw_model {
        // A single pose written without MODEL wrapping (e.g. extracted by hand) still counts.
        if let Some((affinity, rmsd_lb, rmsd_ub)) = loose_result {
            poses.push(Pose {
                rank: 1,
                affinity,
                rmsd_lb,
                rmsd_ub,
            });
        }
    }
    if poses.is_empty() {
        return Err(PdbqtError::new(
            0,
            "no pose found: no MODEL with a REMARK VINA RESULT line (not a Vina output file?)",
        ));
    }
    Ok(poses)
}

fn vina_result_payload(line: &str) -> Option<&str> {
    line.strip_prefix("REMARK")?.trim_start().strip_prefix("VINA RESULT:")
}

/// Affinity, RMSD lower bound, RMSD upper bound.
type VinaResult = (f64, f64, f64);

fn parse_vina_result(n: usize, rest: &str) -> Result<VinaResult, PdbqtError> {
    let bad = || {
        PdbqtError::new(
            n,
            format!(
                "REMARK VINA RESULT needs three numbers (affinity, rmsd l.b., rmsd u.b.), got '{}'",
                clip(rest.trim(), QUOTED_CHARS)
            ),
        )
    };
    let mut fields = rest.split_whitespace().map(|f| f.parse::<f64>().ok().filter(|v| v.is_finite()));
    let mut next = || fields.next().flatten().ok_or_else(bad);
    let affinity = next()?;
    let rmsd_lb = next()?;
    let rmsd_ub = next()?;
    Ok((affinity, rmsd_lb, rmsd_ub))
}

fn reject_empty(text: &str) -> Result<(), PdbqtError> {
    reject_binary(text)?;
    if text.trim().is_empty() {
        return Err(PdbqtError::new(0, "empty file"));
    }
    Ok(())
}

/// Refuses binary content before any record is looked at, so that a binary upload gets
/// that diagnosis rather than a complaint about whatever its first line resembles.
fn reject_binary(text: &str) -> Result<(), PdbqtError> {
    for (idx, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(c) = line.chars().find(|&c| c.is_control() && c != '\t') {
            return Err(PdbqtError::new(
                idx + 1,
                format!("binary data: control character U+{:04X} (not a PDBQT text file)", u32::from(c)),
            ));
        }
        if line.contains('\u{FFFD}') {
            return Err(PdbqtError::new(
                idx + 1,
                "binary data: invalid UTF-8 replaced by U+FFFD (not a PDBQT text file)",
            ));
        }
    }
    Ok(())
}

/// Strips a trailing CR: Vina reads CRLF files fine.
fn check_text_line(n: usize, raw: &str) -> Result<&str, PdbqtError> {
    let line = raw.strip_suffix('\r').unwrap_or(raw);
    if !line.is_empty() && line.trim().is_empty() {
        // Vina refuses whitespace-only lines (unlike empty ones).
        return Err(PdbqtError::new(n, "line holds only whitespace"));
    }
    Ok(line)
}

fn is_atom_record(line: &str) -> bool {
    line.starts_with("ATOM") || line.starts_with("HETATM")
}

fn keyword(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

fn unexpected_record(n: usize, line: &str, what: &str) -> PdbqtError {
    let shown: String = line.chars().take(20).collect();
    PdbqtError::new(n, format!("unexpected record '{shown}' in a {what} (not accepted by Vina)"))
}

fn branch_not_closed(open: &OpenBranch) -> PdbqtError {
    PdbqtError::new(open.line, format!("BRANCH {} {} not closed", open.parent, open.child))
}

fn branch_serials(n: usize, line: &str) -> Result<(u32, u32), PdbqtError> {
    let mut it = line.split_whitespace().skip(1).map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => Err(PdbqtError::new(n, format!("{} needs two atom serial numbers", keyword(line)))),
    }
}

/// `REMARK  Name = X` (Open Babel) or `REMARK Name: X`.
fn remark_name(line: &str) -> Option<String> {
    let rest = line.strip_prefix("REMARK")?.trim_start();
    let head = rest.get(..4)?;
    if !head.eq_ignore_ascii_case("name") {
        return None;
    }
    let after = rest.get(4..)?.trim_start();
    let value = after.strip_prefix('=').or_else(|| after.strip_prefix(':'))?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

struct AtomRecord {
    serial: Option<u32>,
}

/// PDB fixed columns (1-based): serial 7-11, x/y/z 31-38/39-46/47-54, charge 69-76,
/// AutoDock type from 78 to the end of the line (Vina reads 3-letter types such as `CG0`).
fn parse_atom(n: usize, line: &str) -> Result<AtomRecord, PdbqtError> {
    if !line.is_ascii() {
        return Err(PdbqtError::new(n, "non-ASCII characters in an atom record"));
    }
    if line.len() < 54 {
        return Err(PdbqtError::new(
            n,
            "atom record too short: coordinates need columns 31-54 (truncated line?)",
        ));
    }
    for (axis, range) in [("x", 30..38), ("y", 38..46), ("z", 46..54)] {
        let field = line.get(range).unwrap_or("").trim();
        let ok = field.parse::<f64>().map(f64::is_finite).unwrap_or(false);
        if !ok {
            return Err(PdbqtError::new(
                n,
                format!("coordinates not numeric: {axis} is '{field}' (columns 31-54)"),
            ));
        }
    }
    let charge = line.get(68..line.len().min(76)).unwrap_or("").trim();
    if !charge.is_empty() && charge.parse::<f64>().map(|c| !c.is_finite()).unwrap_or(true) {
        return Err(PdbqtError::new(
            n,
            format!("partial charge not numeric: '{charge}' (columns 69-76)"),
        ));
    }
    let atom_type = line.get(77..).unwrap_or("").trim();
    if atom_type.is_empty() {
        return Err(PdbqtError::new(n, "missing AutoDock atom type (columns 78-79)"));
    }
    if !VINA_ATOM_TYPES.contains(&atom_type) {
        return Err(PdbqtError::new(
            n,
            format!(
                "unknown AutoDock atom type '{}' (types are case-sensitive)",
                clip(atom_type, QUOTED_CHARS)
            ),
        ));
    }
    let serial = line.get(6..11).unwrap_or("").trim().parse::<u32>().ok();
    Ok(AtomRecord { serial })
}

#[cfg(test)]
mod tests;
