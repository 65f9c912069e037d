//! smina's result table on stdout, the only place it reports each pose's RMSD to the best
//! pose: its SDF output carries the affinity but not the RMSD bounds.
//!
//! smina (`src/main/main.cpp`, `do_search`) prints one row per pose it writes, in the same
//! loop and order, after a `-----+------------+----------+----------` rule:
//! `mode`, affinity (1 decimal), RMSD lower bound, RMSD upper bound (3 decimals). The mode
//! column is left-aligned in real output (`1       -10.9      0.000      0.000`), so rows are
//! read as whitespace-separated numbers rather than by column. gnina prints a different
//! table (CNN columns, no RMSD) and is not read here.

/// One row: `(affinity, rmsd_lb, rmsd_ub)`.
pub(crate) type Row = (f64, f64, f64);

const RULE: &str = "-----+------------+----------+----------";

/// The rows of the last table in `log` (one smina process's output); empty when it printed
/// none (`--minimize`, `--score_only`, `--local_only`, or no pose inside the box).
pub(crate) fn parse_rows(log: &str) -> Vec<Row> {
    let mut lines = log.lines();
    let mut rows = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() != RULE {
            continue;
        }
        // A later table (another ligand in the same log) replaces an earlier one.
        rows.clear();
        for line in lines.by_ref() {
            match parse_row(line) {
                Some(row) => rows.push(row),
                None => break,
            }
        }
    }
    rows
}

fn parse_row(line: &str) -> Option<Row> {
    let mut fields = line.split_whitespace();
    let _mode: u32 = fields.next()?.parse().ok()?;
    let mut num = || fields.next()?.parse::<f64>().ok().filter(|v| v.is_finite());
    let row = (num()?, num()?, num()?);
    fields.next().is_none().then_some(row)
}

/// The rows when they describe `affinities` (the SDF poses, in file order): as many, each
/// affinity equal to the row's once rounded to one decimal. `None` otherwise, so a table
/// that does not belong to these poses never lends them its RMSDs.
pub(crate) fn matching(rows: &[Row], affinities: &[f64]) -> Option<Vec<Row>> {
    let same = rows.len() == affinities.len()
        && rows
            .iter()
            .zip(affinities)
            // 0.05 is the rounding; the rest absorbs the decimal printing of both.
            .all(|((table, ..), sdf)| (table - sdf).abs() <= 0.05 + 1e-6);
    same.then(|| rows.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from a run of the real smina 2a4feb4 (1iep, exhaustiveness 1, seed 42).
    const REAL: &str = "Using random seed: 42\n\n\
        0%   10   20   30   40   50   60   70   80   90   100%\n\
        |----|----|----|----|----|----|----|----|----|----|\n\
        ***************************************************\n\n\
        mode |   affinity | dist from best mode\n     | (kcal/mol) | rmsd l.b.| rmsd u.b.\n\
        -----+------------+----------+----------\n\
        1       -10.9      0.000      0.000    \n\
        2       -9.7       1.482      2.226    \n\
        Refine time 9.005\nLoop time 9.604\n";

    #[test]
    fn reads_the_left_aligned_real_table() {
        assert_eq!(parse_rows(REAL), vec![(-10.9, 0.0, 0.0), (-9.7, 1.482, 2.226)]);
    }

    #[test]
    fn right_aligned_rows_positive_energies_and_no_table() {
        let log = "-----+------------+----------+----------\n   1        -13.4      0.000      0.000\n   2          1.5      3.047     12.380\n\n";
        assert_eq!(parse_rows(log), vec![(-13.4, 0.0, 0.0), (1.5, 3.047, 12.38)]);
        assert!(parse_rows("Affinity: -13.31642  -0.42875 (kcal/mol)\nRMSD: 0.20736\n").is_empty());
        // The rule with no rows after it: no pose inside the box.
        assert!(parse_rows("-----+------------+----------+----------\nWARNING: Could not find any conformations\n").is_empty());
        // A row with a fifth column is not one of smina's.
        assert!(parse_rows("-----+------------+----------+----------\n1 -9.0 0.0 0.0 7\n").is_empty());
    }

    #[test]
    fn the_last_table_wins() {
        let log = format!("{REAL}-----+------------+----------+----------\n1       -5.0      0.000      0.000\n");
        assert_eq!(parse_rows(&log), vec![(-5.0, 0.0, 0.0)]);
    }

    #[test]
    fn rows_match_only_the_poses_they_describe() {
        let rows = parse_rows(REAL);
        assert_eq!(matching(&rows, &[-10.9481754, -9.69245815]), Some(rows.clone()));
        assert_eq!(matching(&rows, &[-10.9481754]), None, "count differs");
        assert_eq!(matching(&rows, &[-10.9481754, -9.8]), None, "affinity differs");
        assert_eq!(matching(&[], &[]), Some(Vec::new()));
    }
}
