//! What a job's results are ranked by: the docking score, or one of the CNN fields that
//! gnina and rustina report. One vocabulary for the coordinator (which sorts), the CLI
//! (which asks and prints) and the engine traits (which say what an engine ranks by).

use std::collections::{BTreeMap, HashMap};

use crate::error::DockyardError;

/// A result's named fields (`fields` of a result record or of its protobuf message).
pub trait ResultFields {
    fn field(&self, name: &str) -> Option<f64>;
}

impl ResultFields for HashMap<String, f64> {
    fn field(&self, name: &str) -> Option<f64> {
        self.get(name).copied()
    }
}

impl ResultFields for BTreeMap<String, f64> {
    fn field(&self, name: &str) -> Option<f64> {
        self.get(name).copied()
    }
}

/// A result's ranking key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RankKey {
    /// Best affinity in kcal/mol; lower is better.
    Score,
    /// CNN pose score: the probability that the pose is within 2 Å of the true one; higher is better.
    CnnScore,
    /// CNN affinity in pK units; higher is better.
    CnnAffinity,
}

impl RankKey {
    pub const ALL: [RankKey; 3] = [RankKey::Score, RankKey::CnnScore, RankKey::CnnAffinity];

    pub fn name(self) -> &'static str {
        match self {
            RankKey::Score => "score",
            RankKey::CnnScore => "cnn_score",
            RankKey::CnnAffinity => "cnn_affinity",
        }
    }

    /// `""` is `None`: the engine's own ranking.
    pub fn parse(s: &str) -> Result<Option<Self>, DockyardError> {
        if s.is_empty() {
            return Ok(None);
        }
        Self::ALL.into_iter().find(|k| k.name() == s).map(Some).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            DockyardError::invalid(
                "rank_by",
                format!("'{s}' must be one of {} (or empty for the engine's own ranking)", names.join(", ")),
            )
        })
    }

    pub fn higher_is_better(self) -> bool {
        self != RankKey::Score
    }

    /// The result field names the key is read from: rustina writes `cnn_score`, gnina's
    /// SDF calls the same quantity `CNNscore`.
    pub fn field_names(self) -> &'static [&'static str] {
        match self {
            RankKey::Score => &[],
            RankKey::CnnScore => &["cnn_score", "CNNscore"],
            RankKey::CnnAffinity => &["cnn_affinity", "CNNaffinity"],
        }
    }

    /// The key's value for one result; `None` when the engine did not report it.
    pub fn value(self, score: f64, fields: &impl ResultFields) -> Option<f64> {
        match self {
            RankKey::Score => Some(score).filter(|s| s.is_finite()),
            _ => self.field_names().iter().find_map(|n| fields.field(n)).filter(|v| v.is_finite()),
        }
    }

    /// Orders results best first by this key; results without it come after all that
    /// have it, by score, so a mixed job (CNN off for some ligands) still lists everything.
    pub fn compare<F: ResultFields>(self, a: (f64, &F), b: (f64, &F)) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let by_score = || a.0.total_cmp(&b.0);
        match (self.value(a.0, a.1), self.value(b.0, b.1)) {
            (Some(x), Some(y)) => {
                let o = if self.higher_is_better() {
                    y.total_cmp(&x)
                } else {
                    x.total_cmp(&y)
                };
                o.then_with(by_score)
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => by_score(),
        }
    }
}

impl std::fmt::Display for RankKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn parses_names_and_refuses_others_naming_the_field() {
        assert_eq!(RankKey::parse("").expect("empty"), None);
        for k in RankKey::ALL {
            assert_eq!(RankKey::parse(k.name()).expect("known"), Some(k));
        }
        let e = RankKey::parse("cnnscore").expect_err("unknown").to_string();
        assert!(e.contains("rank_by") && e.contains("cnn_affinity"), "{e}");
    }

    #[test]
    fn cnn_keys_read_rustina_and_gnina_names() {
        let rustina = fields(&[("cnn_score", 0.9), ("cnn_affinity", 7.5)]);
        let gnina = fields(&[("CNNscore", 0.8), ("CNNaffinity", 6.0)]);
        assert_eq!(RankKey::CnnScore.value(-9.0, &rustina), Some(0.9));
        assert_eq!(RankKey::CnnAffinity.value(-9.0, &gnina), Some(6.0));
        assert_eq!(RankKey::CnnScore.value(-9.0, &HashMap::<String, f64>::new()), None);
        assert_eq!(RankKey::Score.value(-9.0, &BTreeMap::<String, f64>::new()), Some(-9.0));
    }

    #[test]
    fn sorts_best_first_with_missing_values_last() {
        let a = fields(&[("cnn_score", 0.5)]);
        let b = fields(&[("cnn_score", 0.9)]);
        let none: HashMap<String, f64> = HashMap::new();
        let mut rows = [(-12.0, &none), (-7.0, &a), (-6.0, &b), (-13.0, &none)];
        rows.sort_by(|x, y| RankKey::CnnScore.compare(*x, *y));
        let scores: Vec<f64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(scores, [-6.0, -7.0, -13.0, -12.0]);
        rows.sort_by(|x, y| RankKey::Score.compare(*x, *y));
        let scores: Vec<f64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(scores, [-13.0, -12.0, -7.0, -6.0]);
    }
}
