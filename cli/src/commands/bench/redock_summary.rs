//! The lines `dockyard bench redock` prints: one per complex and engine, then one per engine.

use std::fmt;

/// Top pose under this RMSD to the crystal pose: a redocking success (the field's usual cut-off).
pub const SUCCESS_RMSD: f64 = 2.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Docked; the top pose's score and RMSD, the engine processes' CPU seconds and the job's wall seconds.
    Docked { score: f64, rmsd: f64, cpu_s: f64, wall_s: f64 },
    /// Tried and failed (the job, the ligand, or the RMSD); the figures when the job ran.
    Failed {
        reason: String,
        cpu_s: Option<f64>,
        wall_s: Option<f64>,
    },
    /// No agent offers the engine: nothing was measured, which is not zero.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub complex: String,
    pub engine: String,
    pub outcome: Outcome,
}

fn or_na(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.decimals$}"))
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "complex={} engine={} ", self.complex, self.engine)?;
        match &self.outcome {
            Outcome::Docked {
                score,
                rmsd,
                cpu_s,
                wall_s,
            } => {
                write!(f, "top_score={score:.2} rmsd={rmsd:.2} cpu_s={cpu_s:.1} wall_s={wall_s:.1}")
            }
            Outcome::Failed { reason, cpu_s, wall_s } => write!(
                f,
                "top_score=n/a rmsd=n/a cpu_s={} wall_s={} failed={reason:?}",
                or_na(*cpu_s, 1),
                or_na(*wall_s, 1)
            ),
            Outcome::Unavailable => write!(f, "top_score=n/a rmsd=n/a cpu_s=n/a wall_s=n/a"),
        }
    }
}

/// Median of the values, `None` for none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// `engine=… success=k/n median_rmsd=… cpu_s_per_ligand=…` over the engine's rows. `n`
/// counts every complex tried (a failure is not a success); the median is over the docked
/// ones; CPU is the engines' CPU seconds over every job that ran, per ligand. An engine that
/// ran nowhere prints `n/a` throughout.
pub fn summary(engine: &str, rows: &[Row]) -> String {
    let tried: Vec<&Outcome> = rows
        .iter()
        .filter(|r| r.engine == engine)
        .map(|r| &r.outcome)
        .filter(|o| **o != Outcome::Unavailable)
        .collect();
    if tried.is_empty() {
        return format!("engine={engine} success=n/a median_rmsd=n/a cpu_s_per_ligand=n/a");
    }
    let rmsds: Vec<f64> = tried
        .iter()
        .filter_map(|o| match o {
            Outcome::Docked { rmsd, .. } => Some(*rmsd),
            _ => None,
        })
        .collect();
    let cpus: Vec<f64> = tried
        .iter()
        .filter_map(|o| match o {
            Outcome::Docked { cpu_s, .. } => Some(*cpu_s),
            Outcome::Failed { cpu_s, .. } => *cpu_s,
            Outcome::Unavailable => None,
        })
        .collect();
    let success = rmsds.iter().filter(|r| **r < SUCCESS_RMSD).count();
    let cpu_per_ligand = (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64);
    format!(
        "engine={engine} success={success}/{} median_rmsd={} cpu_s_per_ligand={}",
        tried.len(),
        or_na(median(&rmsds), 2),
        or_na(cpu_per_ligand, 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docked(complex: &str, engine: &str, rmsd: f64, cpu_s: f64) -> Row {
        Row {
            complex: complex.into(),
            engine: engine.into(),
            outcome: Outcome::Docked {
                score: -10.0,
                rmsd,
                cpu_s,
                wall_s: cpu_s + 1.0,
            },
        }
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn success_is_under_two_angstrom_and_failures_count_in_n() {
        let rows = vec![
            docked("a", "vina", 0.5, 4.0),
            docked("b", "vina", 2.0, 6.0),
            docked("c", "vina", 1.99, 5.0),
            Row {
                complex: "d".into(),
                engine: "vina".into(),
                outcome: Outcome::Failed {
                    reason: "engine exited 1".into(),
                    cpu_s: Some(1.0),
                    wall_s: Some(2.0),
                },
            },
            Row {
                complex: "e".into(),
                engine: "vina".into(),
                outcome: Outcome::Failed {
                    reason: "rejected".into(),
                    cpu_s: None,
                    wall_s: None,
                },
            },
            docked("a", "smina", 9.0, 100.0),
        ];
        assert_eq!(
            summary("vina", &rows),
            "engine=vina success=2/5 median_rmsd=1.99 cpu_s_per_ligand=4.0"
        );
        assert_eq!(
            summary("smina", &rows),
            "engine=smina success=0/1 median_rmsd=9.00 cpu_s_per_ligand=100.0"
        );
    }

    #[test]
    fn an_engine_no_agent_offers_is_na_never_zero() {
        let rows = vec![
            docked("a", "vina", 0.5, 4.0),
            Row {
                complex: "a".into(),
                engine: "rustina".into(),
                outcome: Outcome::Unavailable,
            },
        ];
        assert_eq!(
            summary("rustina", &rows),
            "engine=rustina success=n/a median_rmsd=n/a cpu_s_per_ligand=n/a"
        );
        assert_eq!(
            rows[1].to_string(),
            "complex=a engine=rustina top_score=n/a rmsd=n/a cpu_s=n/a wall_s=n/a"
        );
        assert_eq!(
            summary("gnina", &rows),
            "engine=gnina success=n/a median_rmsd=n/a cpu_s_per_ligand=n/a"
        );
    }

    #[test]
    fn row_lines() {
        assert_eq!(
            docked("5x72/p59", "vina", 0.379094, 5.3).to_string(),
            "complex=5x72/p59 engine=vina top_score=-10.00 rmsd=0.38 cpu_s=5.3 wall_s=6.3"
        );
        let failed = Row {
            complex: "1iep".into(),
            engine: "smina".into(),
            outcome: Outcome::Failed {
                reason: "no \"pose\"".into(),
                cpu_s: Some(1.24),
                wall_s: None,
            },
        };
        assert_eq!(
            failed.to_string(),
            "complex=1iep engine=smina top_score=n/a rmsd=n/a cpu_s=1.2 wall_s=n/a failed=\"no \\\"pose\\\"\""
        );
    }

    #[test]
    fn only_failures_give_na_median_but_a_count() {
        let rows = vec![Row {
            complex: "a".into(),
            engine: "vina".into(),
            outcome: Outcome::Failed {
                reason: "x".into(),
                cpu_s: Some(3.0),
                wall_s: Some(4.0),
            },
        }];
        assert_eq!(
            summary("vina", &rows),
            "engine=vina success=0/1 median_rmsd=n/a cpu_s_per_ligand=3.0"
        );
    }
}
