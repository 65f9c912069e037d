//! Funnels: one job that docks a library in stages, each stage on the best ligands of the
//! one before (a cheap pass over everything, then harder work on what survives it).
//!
//! Every stage runs as a job of its own, with an id derived from the funnel's
//! ([`crate::ids::JobId::stage`]); the funnel's job runs the first stage and carries the plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DockBox, DockMode, DockParams, EngineKind, InputRef, RankKey};
use crate::error::DockyardError;
use crate::ids::JobId;

/// Which of the previous stage's docked ligands go on to a stage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Keep {
    /// The best N.
    Top(u32),
    /// The best P% of the ligands that entered the previous stage, rounded up.
    Percent(f64),
    /// Every ligand scoring at most this (kcal/mol; lower is better).
    MaxScore(f64),
}

impl Keep {
    /// Reads the rule of stage `i` (0-based) of a request: exactly one for every stage but
    /// the first, none for the first.
    pub fn from_proto(i: usize, s: &dockyard_proto::v1::Stage) -> Result<Option<Keep>, DockyardError> {
        let field = |f: &str| format!("stages[{i}].{f}");
        let mut rules = Vec::new();
        if s.keep_top > 0 {
            rules.push(Keep::Top(s.keep_top));
        }
        if s.keep_percent != 0.0 {
            if !(s.keep_percent > 0.0 && s.keep_percent <= 100.0) {
                return Err(DockyardError::invalid(
                    field("keep_percent"),
                    format!("{} must be more than 0 and at most 100", s.keep_percent),
                ));
            }
            rules.push(Keep::Percent(s.keep_percent));
        }
        if let Some(m) = s.max_score {
            if !m.is_finite() {
                return Err(DockyardError::invalid(field("max_score"), "must be a finite score"));
            }
            rules.push(Keep::MaxScore(m));
        }
        match (i, rules.as_slice()) {
            (0, []) => Ok(None),
            (0, _) => Err(DockyardError::invalid(
                field("keep"),
                "the first stage docks the whole library; a keep rule belongs to the stages after it",
            )),
            (_, [one]) => Ok(Some(*one)),
            (_, []) => Err(DockyardError::invalid(
                field("keep"),
                "missing: say which ligands of the previous stage go on (keep_top, keep_percent or max_score)",
            )),
            (_, _) => Err(DockyardError::invalid(
                field("keep"),
                "give one rule only (keep_top, keep_percent or max_score)",
            )),
        }
    }

    pub fn to_proto(self, s: &mut dockyard_proto::v1::Stage) {
        match self {
            Keep::Top(n) => s.keep_top = n,
            Keep::Percent(p) => s.keep_percent = p,
            Keep::MaxScore(m) => s.max_score = Some(m),
        }
    }

    /// As a user writes it: `keep=500`, `keep=5%`, `max_score=-8`.
    pub fn label(self) -> String {
        match self {
            Keep::Top(n) => format!("keep={n}"),
            Keep::Percent(p) => format!("keep={p}%"),
            Keep::MaxScore(m) => format!("max_score={m}"),
        }
    }

    /// Whether a ligand's fate is known from its own result alone, so the stage after can
    /// start before this one ends. Counting rules must see the whole stage ranked.
    pub fn streams(self) -> bool {
        matches!(self, Keep::MaxScore(_))
    }

    /// How many of `ranked` (best first by `key`) go on, out of the `entered` ligands that
    /// entered the previous stage.
    pub fn survivors<T>(self, ranked: &[T], entered: usize, key: RankKey, value: impl Fn(&T) -> Option<f64>) -> usize {
        match self {
            Keep::Top(n) => ranked.len().min(n as usize),
            Keep::Percent(p) => {
                let n = ((entered as f64) * p / 100.0).ceil() as usize;
                ranked.len().min(n.max(1))
            }
            Keep::MaxScore(m) => {
                debug_assert_eq!(key, RankKey::Score);
                ranked.iter().take_while(|r| value(r).is_some_and(|v| v <= m)).count()
            }
        }
    }
}

/// One stage, resolved: every setting the job left to stages is filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StagePlan {
    pub name: String,
    pub engine: EngineKind,
    pub params: DockParams,
    pub gpus_per_task: u32,
    pub cpus_per_task: u32,
    pub batch_size: u32,
    pub timeout_s: u32,
    /// `score`, `cnn_score` or `cnn_affinity`.
    pub rank_by: String,
    /// `None`: the job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receptor: Option<InputRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dock_box: Option<DockBox>,
    /// `None` for the first stage only.
    pub keep: Option<Keep>,
}

impl StagePlan {
    pub fn rank_key(&self) -> RankKey {
        RankKey::parse(&self.rank_by)
            .ok()
            .flatten()
            .unwrap_or(self.engine.traits().rank_key)
    }

    /// Rescoring stages take the previous stage's poses instead of the library's molecules.
    pub fn rescores(&self) -> bool {
        matches!(
            self.params.extra.mode,
            Some(DockMode::ScoreOnly | DockMode::Minimize | DockMode::LocalOnly)
        )
    }

    /// Whether the stage writes poses a later rescoring stage could read.
    pub fn writes_poses(&self) -> bool {
        self.params.extra.mode != Some(DockMode::ScoreOnly)
    }
}

/// A stage name: short, and safe as part of a result field name and a CSV column.
pub fn validate_stage_name(i: usize, name: &str) -> Result<(), DockyardError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DockyardError::invalid(
            format!("stages[{i}].name"),
            format!("'{name}' must be 1-32 characters of a-z, 0-9, _ and -"),
        ))
    }
}

/// Where a job stands in a funnel (`JobSpec.funnel`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Funnel {
    /// 0-based index of the stage this job runs.
    pub stage: u32,
    /// On the funnel's own job (stage 0): every stage, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<StagePlan>,
    /// On a later stage's job: the funnel's job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<JobId>,
    /// On a later stage's job, one per ligand (in `JobSpec.ligands` order): what earlier
    /// stages measured for it, as result fields named `<stage>.<field>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<BTreeMap<String, f64>>,
    /// On a later stage's job, one per ligand: its index in the funnel's library.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origin: Vec<u32>,
    /// A stage fed while the stage before still runs (a `max_score` rule): more ligands may
    /// be appended, a whole batch at a time, until the stage before ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
    /// Queue positions set aside for the tasks an open stage may grow to.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserve: u32,
    /// How many times the spec was rewritten (ligands appended, closed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Funnel {
    /// The funnel this job belongs to (`own` is this job's id).
    pub fn root_of(&self, own: &JobId) -> JobId {
        self.root.clone().unwrap_or_else(|| own.clone())
    }
}

/// What stage `name` measured for a ligand, as later stages carry it: its score and each
/// field of its own engine under `<name>.`, plus what earlier stages carried to it.
pub fn carry(name: &str, score: f64, fields: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (k, v) in fields {
        if k.contains('.') {
            out.insert(k.clone(), *v);
        } else {
            out.insert(format!("{name}.{k}"), *v);
        }
    }
    out.insert(format!("{name}.score"), score);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockyard_proto::v1 as pb;

    #[test]
    fn each_rule_keeps_its_share_of_a_ranked_stage() {
        // Scores of a stage, best first; 40 ligands entered it, 10 of them docked.
        let ranked: Vec<f64> = (0..10).map(|i| -9.0 + f64::from(i) * 0.5).collect();
        let v = |s: &f64| Some(*s);
        assert_eq!(Keep::Top(3).survivors(&ranked, 40, RankKey::Score, v), 3);
        assert_eq!(Keep::Top(500).survivors(&ranked, 40, RankKey::Score, v), 10);
        // 5% of 40 entered is 2; 1% of 40 rounds up to 1.
        assert_eq!(Keep::Percent(5.0).survivors(&ranked, 40, RankKey::Score, v), 2);
        assert_eq!(Keep::Percent(1.0).survivors(&ranked, 40, RankKey::Score, v), 1);
        assert_eq!(Keep::Percent(100.0).survivors(&ranked, 40, RankKey::Score, v), 10);
        // -9.0, -8.5, -8.0 are at most -8.0.
        assert_eq!(Keep::MaxScore(-8.0).survivors(&ranked, 40, RankKey::Score, v), 3);
        assert_eq!(Keep::MaxScore(-20.0).survivors(&ranked, 40, RankKey::Score, v), 0);
        assert!(Keep::MaxScore(-8.0).streams() && !Keep::Top(1).streams() && !Keep::Percent(5.0).streams());
    }

    #[test]
    fn keep_rules_are_read_from_a_request_and_misuse_is_refused() {
        let stage = |f: fn(&mut pb::Stage)| {
            let mut s = pb::Stage::default();
            f(&mut s);
            s
        };
        assert_eq!(Keep::from_proto(0, &pb::Stage::default()).expect("first"), None);
        assert_eq!(
            Keep::from_proto(1, &stage(|s| s.keep_percent = 5.0)).expect("5%"),
            Some(Keep::Percent(5.0))
        );
        assert_eq!(
            Keep::from_proto(2, &stage(|s| s.max_score = Some(-8.0))).expect("max"),
            Some(Keep::MaxScore(-8.0))
        );
        for (i, s, says) in [
            (0, stage(|s| s.keep_top = 5), "stages[0].keep"),
            (1, pb::Stage::default(), "missing"),
            (1, stage(|s| s.keep_percent = 120.0), "at most 100"),
            (1, stage(|s| s.keep_percent = -1.0), "more than 0"),
            (
                1,
                stage(|s| {
                    s.keep_top = 5;
                    s.max_score = Some(-7.0)
                }),
                "one rule only",
            ),
            (1, stage(|s| s.max_score = Some(f64::NAN)), "finite"),
        ] {
            let e = Keep::from_proto(i, &s).expect_err("refused").to_string();
            assert!(e.contains(says), "{e}");
        }
        let mut s = pb::Stage::default();
        Keep::Percent(5.0).to_proto(&mut s);
        assert_eq!(Keep::from_proto(1, &s).expect("round trip"), Some(Keep::Percent(5.0)));
        assert_eq!(Keep::Percent(5.0).label(), "keep=5%");
    }

    #[test]
    fn a_stage_carries_its_own_fields_under_its_name_and_passes_earlier_ones_on() {
        let fields = BTreeMap::from([("cnn_score".to_string(), 0.8), ("prescreen.score".to_string(), -6.0)]);
        let c = carry("redock", -9.5, &fields);
        assert_eq!(
            c,
            BTreeMap::from([
                ("prescreen.score".to_string(), -6.0),
                ("redock.cnn_score".to_string(), 0.8),
                ("redock.score".to_string(), -9.5),
            ])
        );
        assert!(validate_stage_name(0, "pre_screen-1").is_ok());
        for bad in ["", "Stage", "a.b", &"x".repeat(33)] {
            assert!(validate_stage_name(1, bad).is_err(), "{bad}");
        }
    }
}
