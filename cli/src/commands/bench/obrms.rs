//! Symmetry-aware heavy-atom RMSD to a crystal pose, by Open Babel's `obrms` (not a
//! hand-written RMSD: obrms matches atoms through the molecule's automorphisms).

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

/// The RMSDs `obrms -f REFERENCE POSES` printed, one per pose in file order: lines
/// `RMSD <title>:<file> <value>`. obrms exits 0 even when it could not read a file, so output
/// without any RMSD line is an error carrying what it printed instead.
pub fn parse(output: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for line in output.lines().filter(|l| l.starts_with("RMSD ")) {
        let value = line.split_whitespace().last().unwrap_or("");
        // "inf" (no atom mapping: not the same molecule) parses as infinity, kept as such.
        let rmsd: f64 = value
            .parse()
            .map_err(|_| format!("obrms printed an RMSD that is not a number: '{line}'"))?;
        out.push(rmsd);
    }
    if out.is_empty() {
        let said = output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("====="))
            .collect::<Vec<_>>();
        return Err(format!("obrms printed no RMSD: {}", said.join(" / ")));
    }
    Ok(out)
}

/// RMSD of the first pose of `poses` (the engine's top-ranked one) to `crystal`.
pub async fn top_pose_rmsd(crystal: &Path, poses: &Path) -> Result<f64> {
    let out = Command::new("obrms")
        .arg("-f")
        .arg(crystal)
        .arg(poses)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run obrms (Open Babel's RMSD tool; Debian: apt-get install openbabel)")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let rmsds = parse(&text).map_err(anyhow::Error::msg)?;
    let top = rmsds[0];
    if !top.is_finite() {
        bail!(
            "obrms found no atom mapping between the top pose and {} (not the same molecule?)",
            crystal.display()
        );
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rmsd_per_pose_in_file_order() {
        let out = "RMSD STI:1iep/1iep_ligand_vina_out.pdbqt 0.379094\nRMSD STI:1iep/1iep_ligand_vina_out.pdbqt 1.4293\n\
                   RMSD STI:1iep/1iep_ligand_vina_out.pdbqt 12.2857\n";
        assert_eq!(parse(out), Ok(vec![0.379094, 1.4293, 12.2857]));
    }

    #[test]
    fn file_names_with_spaces_and_warnings_around_the_lines() {
        let out = "*** Open Babel Warning  in PerceiveBondOrders\n  Failed to kekulize aromatic bonds\n\
                   RMSD P59:/tmp/my poses/a b.sdf 0.93\n";
        assert_eq!(parse(out), Ok(vec![0.93]));
    }

    #[test]
    fn a_different_molecule_is_infinite() {
        let r = parse("RMSD STI:5x72_ligand_vina_out.pdbqt inf\n").expect("parsed");
        assert!(r[0].is_infinite());
    }

    #[test]
    fn no_rmsd_line_is_an_error_with_what_obrms_said() {
        let e = parse("==============================\n*** Open Babel Error  in OpenInAndOutFiles\n  Cannot read from /x.pdbqt\n")
            .expect_err("nothing parsed");
        assert!(e.contains("Cannot read from /x.pdbqt"), "{e}");
        assert!(parse("").is_err());
        assert!(parse("RMSD STI:x.pdbqt abc\n").expect_err("not a number").contains("abc"));
    }
}
