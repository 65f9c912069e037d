//! Reads the per-pose scores that smina and gnina attach to their SDF output as data items.
//!
//! Both engines write one SDF record per pose, the poses of one ligand consecutively and
//! under the ligand's title, so a run over several ligands is grouped back into ligands by
//! runs of equal titles. Headers come in two styles: gnina's native writer emits
//! `> <NAME>`, Open Babel emits `>  <NAME>` and third-party tools append `  (1)`; every
//! `>`-line with a `<NAME>` is accepted whatever follows it. Gnina leaves its CNN fields out
//! when they are zero (e.g. a pose outside the box), so each of them is optional.

/// One pose's scores, as written by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPose {
    /// 1-based position among this ligand's poses, in file order.
    pub rank: u32,
    /// `minimizedAffinity`, kcal/mol (lower is better; can be positive for clashing poses).
    pub affinity: f64,
    /// `minimizedRMSD`, Angstrom; written only in minimise mode.
    pub rmsd: Option<f64>,
    /// `CNNscore`: predicted probability that the pose is within 2 A of the true one.
    pub cnn_score: Option<f64>,
    /// `CNNaffinity`, pK units (higher is better).
    pub cnn_affinity: Option<f64>,
    /// `CNN_VS` = CNNscore x CNNaffinity.
    pub cnn_vs: Option<f64>,
    /// `CNNaffinity_variance`, only for ensembles.
    pub cnn_variance: Option<f64>,
}

/// The poses of one ligand: consecutive records sharing a title.
#[derive(Debug, Clone, PartialEq)]
pub struct LigandPoses {
    /// The records' title line, trimmed.
    pub name: String,
    pub poses: Vec<ScoredPose>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SdfScoreError {
    #[error("SDF record {record} ({title:?}) has no minimizedAffinity field")]
    MissingAffinity { record: usize, title: String },
    #[error("SDF record {record} ({title:?}): field {field} has a non-numeric value {value:?}")]
    BadNumber {
        record: usize,
        title: String,
        field: String,
        value: String,
    },
}

/// Parses every record of `text` and groups the poses by ligand, in file order.
///
/// `record` numbers in errors are 1-based. A file with no records gives an empty list.
pub fn parse_sdf_scores(text: &str) -> Result<Vec<LigandPoses>, SdfScoreError> {
    let mut ligands: Vec<LigandPoses> = Vec::new();
    for (i, record) in split_records(text).into_iter().enumerate() {
        let number = i + 1;
        let title = record.first().map(|l| l.trim().to_string()).unwrap_or_default();
        let fields = data_items(&record);
        let num = |field: &str| -> Result<Option<f64>, SdfScoreError> {
            match fields.iter().find(|(name, _)| name == field) {
                None => Ok(None),
                Some((_, value)) => value.parse::<f64>().map(Some).map_err(|_| SdfScoreError::BadNumber {
                    record: number,
                    title: title.clone(),
                    field: field.to_string(),
                    value: value.clone(),
                }),
            }
        };
        let affinity = num("minimizedAffinity")?.ok_or_else(|| SdfScoreError::MissingAffinity {
            record: number,
            title: title.clone(),
        })?;
        let mut pose = ScoredPose {
            rank: 1,
            affinity,
            rmsd: num("minimizedRMSD")?,
            cnn_score: num("CNNscore")?,
            cnn_affinity: num("CNNaffinity")?,
            cnn_vs: num("CNN_VS")?,
            cnn_variance: num("CNNaffinity_variance")?,
        };
        match ligands.last_mut() {
            Some(last) if last.name == title => {
                pose.rank = u32::try_from(last.poses.len() + 1).unwrap_or(u32::MAX);
                last.poses.push(pose);
            }
            _ => ligands.push(LigandPoses {
                name: title,
                poses: vec![pose],
            }),
        }
    }
    Ok(ligands)
}

/// Splits on `$$$$` lines; a trailing chunk with nothing but whitespace is not a record.
fn split_records(text: &str) -> Vec<Vec<&str>> {
    let mut records = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        // `lines` leaves the `\r` of CRLF files in place.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim_end() == "$$$$" {
            records.push(std::mem::take(&mut current));
        } else {
            current.push(line);
        }
    }
    if current.iter().any(|l| !l.trim().is_empty()) {
        records.push(current);
    }
    records
}

/// The `(name, first value line)` data items after the connection table.
fn data_items(record: &[&str]) -> Vec<(String, String)> {
    // Data items only follow `M  END`; starting there keeps a title or atom line that
    // happens to begin with `>` from being read as a header. Records without `M  END`
    // (malformed) are scanned after their 3 header lines instead.
    let start = record
        .iter()
        .position(|l| l.trim_end() == "M  END")
        .map(|p| p + 1)
        .unwrap_or(3.min(record.len()));
    let mut items = Vec::new();
    let mut lines = record[start..].iter().peekable();
    while let Some(line) = lines.next() {
        let Some(name) = header_name(line) else { continue };
        let mut value = String::new();
        // A value runs until a blank line; the scores are one line, so the first is kept.
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || header_name(next).is_some() {
                break;
            }
            if value.is_empty() {
                value = next.trim().to_string();
            }
            lines.next();
        }
        items.push((name.to_string(), value));
    }
    items
}

/// `NAME` from `>  <NAME>  (1)` style header lines.
fn header_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('>')?.trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/engine-output-samples");

    fn sample(name: &str) -> String {
        std::fs::read_to_string(format!("{SAMPLES}/{name}")).expect("read sample")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn synthetic_gnina_native_writer() {
        let ligs = parse_sdf_scores(&sample("SYNTHETIC_gnina_native_writer_format.sdf")).expect("parses");
        assert_eq!(ligs.len(), 1, "two poses of one ligand: {ligs:?}");
        assert_eq!(ligs[0].name, "SYNTHETIC_not_real_gnina_output");
        let p = &ligs[0].poses;
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            ScoredPose {
                rank: 1,
                affinity: -13.384,
                rmsd: None,
                cnn_score: Some(0.9),
                cnn_affinity: Some(8.0),
                cnn_vs: Some(7.2),
                cnn_variance: Some(0.1),
            }
        );
        // Pose 2 was written with CNN fields left out (they were zero).
        assert_eq!(
            p[1],
            ScoredPose {
                rank: 2,
                affinity: -11.432,
                rmsd: None,
                cnn_score: None,
                cnn_affinity: None,
                cnn_vs: None,
                cnn_variance: None,
            }
        );
    }

    #[test]
    fn gnina_workshop_minimized_openbabel_headers() {
        let ligs = parse_sdf_scores(&sample("gnina_workshop2021_minimized_sample.sdf")).expect("parses");
        let got: Vec<(&str, f64, Option<f64>)> = ligs
            .iter()
            .map(|l| {
                assert_eq!(l.poses.len(), 1, "{l:?}");
                (l.name.as_str(), l.poses[0].affinity, l.poses[0].rmsd)
            })
            .collect();
        let want = [
            ("27626_CHEMBL135_active", -11.58327, 1.11243),
            ("224402_CHEMBL135236_active", -11.50035, 0.39522),
            ("410956_CHEMBL245378_active", -11.45930, 1.48322),
            // A clashing minimised pose: positive energies are real output.
            ("C39461463_decoy", 59.37991, 1.35878),
        ];
        assert_eq!(got.len(), want.len());
        for ((name, aff, rmsd), (wname, waff, wrmsd)) in got.iter().zip(want) {
            assert_eq!(*name, wname);
            assert!(close(*aff, waff), "{name}: {aff}");
            assert!(rmsd.is_some_and(|r| close(r, wrmsd)), "{name}: {rmsd:?}");
        }
        assert!(ligs.iter().all(|l| l.poses[0].cnn_score.is_none() && l.poses[0].rank == 1));
    }

    #[test]
    fn vina_mk_export_sdf_has_no_scores() {
        let err = parse_sdf_scores(&sample("vina-1.2.3_1iep_ex8_cpu1_seed1001.out.mk_export.sdf")).expect_err("no scores");
        assert_eq!(
            err,
            SdfScoreError::MissingAffinity {
                record: 1,
                title: "out_ex8_cpu1_r1".into()
            }
        );
    }

    #[test]
    fn header_styles_suffixes_crlf_and_grouping() {
        let rec = |title: &str, header: &str, aff: &str| {
            format!("{title}\r\n  prog\r\n\r\n  0  0  0  0  0  0  0  0  0  0999 V2000\r\nM  END\r\n{header}\r\n{aff}\r\n\r\n$$$$\r\n")
        };
        let text = [
            rec("a", "> <minimizedAffinity>", "-7.5"),
            rec("a", ">  <minimizedAffinity>  (2)", "-7.25"),
            rec("b", ">  <minimizedAffinity>", "+1.5"),
            rec("a", "><minimizedAffinity>", "-1"),
        ]
        .concat();
        let ligs = parse_sdf_scores(&text).expect("parses");
        let summary: Vec<(String, Vec<(u32, f64)>)> = ligs
            .iter()
            .map(|l| (l.name.clone(), l.poses.iter().map(|p| (p.rank, p.affinity)).collect()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a".to_string(), vec![(1, -7.5), (2, -7.25)]),
                ("b".to_string(), vec![(1, 1.5)]),
                // Not adjacent to the first "a" run, so a ligand of its own.
                ("a".to_string(), vec![(1, -1.0)]),
            ]
        );
    }

    #[test]
    fn empty_and_bad_numbers() {
        assert_eq!(parse_sdf_scores("").expect("empty"), Vec::new());
        assert_eq!(parse_sdf_scores("\n  \n").expect("blank"), Vec::new());
        let text = "x\n\n\nM  END\n> <minimizedAffinity>\nabc\n\n$$$$\n";
        assert!(matches!(
            parse_sdf_scores(text),
            Err(SdfScoreError::BadNumber { record: 1, ref field, ref value, .. }) if field == "minimizedAffinity" && value == "abc"
        ));
    }
}
