//! A task's engine parameters, typed: the one model the coordinator validates a request
//! into, stores with the job, sends to agents, and the agent's engines run from.
//!
//! It crosses the wire through one conversion pair, [`DockParams::from_proto`] and
//! [`DockParams::to_proto`]; the coordinator (on a request) and the agent (on an
//! assignment) both read it with `from_proto`, so option names are checked in one place,
//! against what each engine accepts ([`EngineKind::traits`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use dockyard_proto::v1 as pb;

use super::engine::{EngineKind, EngineTraits};
use crate::error::DockyardError;

/// A closed set of option values, each written as its name.
pub trait OptionName: Sized {
    fn name(&self) -> &str;
    fn from_name(s: &str) -> Option<Self>;
}

macro_rules! named_options {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s,)+
                }
            }
        }

        impl OptionName for $name {
            fn name(&self) -> &str {
                self.as_str()
            }

            fn from_name(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

named_options! {
    /// Scoring function (`--scoring`).
    Scoring {
        Vina = "vina",
        Vinardo = "vinardo",
        DkoesScoring = "dkoes_scoring",
        DkoesScoringOld = "dkoes_scoring_old",
        DkoesFast = "dkoes_fast",
        Ad4Scoring = "ad4_scoring",
    }
}

named_options! {
    /// What the engine does with the ligand; each but `Dock` is one smina/gnina flag.
    DockMode {
        Dock = "dock",
        /// `--minimize`: local energy minimisation of the input pose (writes `minimizedRMSD`).
        Minimize = "minimize",
        /// `--score_only`: score the input pose as is.
        ScoreOnly = "score_only",
        /// `--local_only`: local search in the box around the input pose.
        LocalOnly = "local_only",
    }
}

named_options! {
    /// gnina's `--cnn_scoring`: where the CNN is used. gnina's own default is `Rescore`.
    CnnScoring {
        /// Empirical scoring only (smina behaviour, no GPU needed).
        None = "none",
        /// CNN re-ranks the final poses (gnina's default).
        Rescore = "rescore",
        /// CNN also refines poses; about 10x slower than `Rescore` on a GPU.
        Refinement = "refinement",
        MetroRescore = "metrorescore",
        MetroRefine = "metrorefine",
        /// CNN throughout the search; about 1000x slower than `Rescore`.
        All = "all",
    }
}

named_options! {
    /// Rustina's `search_mode`: how poses are searched. Rustina's own default is
    /// `Qvina2Active`; a task given GPUs runs `Gpu` unless it names another.
    SearchMode {
        /// AutoDock Vina's Monte Carlo search.
        Vina = "vina",
        /// QuickVina 2: Vina's search skipping local optimisation of unpromising steps.
        Qvina2 = "qvina2",
        /// QuickVina 2 with runs racing to stop early (at least 16 runs).
        Qvina2Race = "qvina2-race",
        /// Rustina's default: QuickVina 2 with active run selection (at least 16 runs).
        Qvina2Active = "qvina2-active",
        /// The batched search on a GPU (wgpu); needs a GPU assigned to the task.
        Gpu = "gpu",
    }
}

/// A built-in gnina CNN model name (`--cnn`): letters, digits, `_` and `-` only, as it
/// becomes an engine argument.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CnnModel(String);

impl CnnModel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl OptionName for CnnModel {
    fn name(&self) -> &str {
        &self.0
    }

    fn from_name(s: &str) -> Option<Self> {
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| CnnModel(s.to_string()))
    }
}

/// Engine options beyond Vina's search settings; `None` means the engine's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EngineOptions {
    #[serde(with = "blank_is_none")]
    pub scoring: Option<Scoring>,
    #[serde(with = "blank_is_none")]
    pub mode: Option<DockMode>,
    #[serde(with = "blank_is_none")]
    pub cnn_scoring: Option<CnnScoring>,
    #[serde(with = "blank_is_none")]
    pub cnn_model: Option<CnnModel>,
    /// gnina: run the CNN on the CPU even when a GPU is assigned.
    pub no_gpu: bool,
    /// rustina: the search mode (`None`: `gpu` when the task has GPUs, else rustina's own).
    /// Specs stored before it existed read back as unset.
    #[serde(default, with = "blank_is_none")]
    pub search_mode: Option<SearchMode>,
}

impl EngineOptions {
    /// The options as the request named them ("" for unset), in a fixed order: what the
    /// result cache's key is made of.
    pub fn names(&self) -> [&str; 5] {
        [
            self.scoring.as_ref().map_or("", OptionName::name),
            self.mode.as_ref().map_or("", OptionName::name),
            self.cnn_scoring.as_ref().map_or("", OptionName::name),
            self.cnn_model.as_ref().map_or("", OptionName::name),
            self.search_mode.as_ref().map_or("", OptionName::name),
        ]
    }

    /// The mode, `Dock` when unset.
    pub fn mode(&self) -> DockMode {
        self.mode.unwrap_or(DockMode::Dock)
    }

    /// Reads and checks the options against what `engine` accepts.
    fn from_proto(engine: EngineKind, p: &pb::EngineParams) -> Result<Self, DockyardError> {
        let t = engine.traits();
        let scoring = match p.scoring.as_str() {
            "" => None,
            s => match Scoring::from_name(s).filter(|v| t.scorings.contains(v)) {
                Some(v) => Some(v),
                None => {
                    return Err(DockyardError::invalid(
                        "params.scoring",
                        format!("'{s}' is not a scoring function {engine} accepts"),
                    ))
                }
            },
        };
        let mode = match p.mode.as_str() {
            "" => None,
            s => match DockMode::from_name(s).filter(|v| t.modes.contains(v)) {
                Some(v) => Some(v),
                None => {
                    let accepted: Vec<&str> = t.modes.iter().map(|m| m.as_str()).collect();
                    return Err(DockyardError::invalid(
                        "params.mode",
                        format!("'{s}': {engine} accepts {}", accepted.join(", ")),
                    ));
                }
            },
        };
        let cnn_scoring = match p.cnn_scoring.as_str() {
            "" => None,
            s => {
                let v = CnnScoring::from_name(s).ok_or_else(|| {
                    let all: Vec<&str> = CnnScoring::ALL.iter().map(|c| c.as_str()).collect();
                    DockyardError::invalid("params.cnn_scoring", format!("'{s}' must be one of {}", all.join(", ")))
                })?;
                if !t.cnn_scorings.contains(&v) {
                    return Err(DockyardError::invalid(
                        "params.cnn_scoring",
                        refused(engine, s, t.cnn_scorings, |k| k.cnn_scorings),
                    ));
                }
                Some(v)
            }
        };
        if (!p.cnn_model.is_empty() || p.no_gpu) && !t.cnn_model {
            let takers = takers(|k| k.cnn_model);
            return Err(DockyardError::invalid(
                "params.cnn_model",
                format!("cnn_model and no_gpu are for the {} engine only", takers.join(", ")),
            ));
        }
        let search_mode = match p.search_mode.as_str() {
            "" => None,
            s => match SearchMode::from_name(s).filter(|v| t.search_modes.contains(v)) {
                Some(v) => Some(v),
                None => {
                    return Err(DockyardError::invalid(
                        "params.search_mode",
                        refused(engine, s, t.search_modes, |k| k.search_modes),
                    ))
                }
            },
        };
        let cnn_model = match p.cnn_model.as_str() {
            "" => None,
            s => Some(
                CnnModel::from_name(s)
                    .ok_or_else(|| DockyardError::invalid("params.cnn_model", "a built-in model name (letters, digits, '_', '-')"))?,
            ),
        };
        Ok(EngineOptions {
            scoring,
            mode,
            cnn_scoring,
            cnn_model,
            no_gpu: p.no_gpu,
            search_mode,
        })
    }
}

/// The engines whose traits pass `takes`.
fn takers(takes: impl Fn(&EngineTraits) -> bool) -> Vec<&'static str> {
    EngineKind::ALL
        .into_iter()
        .filter(|k| takes(k.traits()))
        .map(EngineKind::name)
        .collect()
}

/// Why `engine` refuses the option value `s`: the values it takes, or the engines that take
/// the option at all.
fn refused<T: Copy + OptionName + 'static>(engine: EngineKind, s: &str, accepted: &[T], of: fn(&EngineTraits) -> &'static [T]) -> String {
    if accepted.is_empty() {
        let takers = takers(|t| !of(t).is_empty());
        return format!("'{s}': this option is for the {} engine only", takers.join(", "));
    }
    let names: Vec<&str> = accepted.iter().map(OptionName::name).collect();
    format!("'{s}': {engine} accepts {}", names.join(", "))
}

/// Engine parameters after defaults are applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DockParams {
    pub exhaustiveness: u32,
    pub num_modes: u32,
    pub seed: i64,
    /// 0 = engine default.
    pub energy_range: f64,
    pub sleep_ms: u32,
    /// Engine options beyond Vina's (checked per engine).
    #[serde(default)]
    pub extra: EngineOptions,
}

/// Seed used when the client gives none: fixed so a rerun reproduces the same poses.
pub const DEFAULT_SEED: i64 = 42;

impl DockParams {
    /// The search settings with defaults applied and ranges checked; no engine options.
    pub fn from_request(exhaustiveness: u32, num_modes: u32, seed: i64, energy_range: f64, sleep_ms: u32) -> Result<Self, DockyardError> {
        let exhaustiveness = if exhaustiveness == 0 { 8 } else { exhaustiveness };
        if exhaustiveness > 512 {
            return Err(DockyardError::invalid(
                "params.exhaustiveness",
                format!("{exhaustiveness} must be 1-512"),
            ));
        }
        let num_modes = if num_modes == 0 { 9 } else { num_modes };
        if num_modes > 100 {
            return Err(DockyardError::invalid("params.num_modes", format!("{num_modes} must be 1-100")));
        }
        if !energy_range.is_finite() || !(0.0..=100.0).contains(&energy_range) {
            return Err(DockyardError::invalid(
                "params.energy_range",
                format!("{energy_range} must be 0-100 kcal/mol"),
            ));
        }
        if sleep_ms > 3_600_000 {
            return Err(DockyardError::invalid("params.sleep_ms", "must be at most one hour"));
        }
        let seed = if seed == 0 { DEFAULT_SEED } else { seed };
        Ok(DockParams {
            exhaustiveness,
            num_modes,
            seed,
            energy_range,
            sleep_ms,
            extra: EngineOptions::default(),
        })
    }

    /// Reads the wire form for `engine`: defaults applied, ranges and option names checked.
    /// A missing message is all defaults.
    pub fn from_proto(engine: EngineKind, p: Option<&pb::EngineParams>) -> Result<Self, DockyardError> {
        let default = pb::EngineParams::default();
        let p = p.unwrap_or(&default);
        let mut params = Self::from_request(p.exhaustiveness, p.num_modes, p.seed, p.energy_range, p.sleep_ms)?;
        params.extra = EngineOptions::from_proto(engine, p)?;
        Ok(params)
    }

    /// The wire form; [`DockParams::from_proto`] reads it back unchanged.
    pub fn to_proto(&self) -> pb::EngineParams {
        let [scoring, mode, cnn_scoring, cnn_model, search_mode] = self.extra.names().map(str::to_string);
        pb::EngineParams {
            exhaustiveness: self.exhaustiveness,
            num_modes: self.num_modes,
            seed: self.seed,
            energy_range: self.energy_range,
            sleep_ms: self.sleep_ms,
            scoring,
            mode,
            cnn_scoring,
            cnn_model,
            no_gpu: self.extra.no_gpu,
            search_mode,
        }
    }
}

impl Default for DockParams {
    /// Every setting at its default (what an empty request gets).
    fn default() -> Self {
        DockParams {
            exhaustiveness: 8,
            num_modes: 9,
            seed: DEFAULT_SEED,
            energy_range: 0.0,
            sleep_ms: 0,
            extra: EngineOptions::default(),
        }
    }
}

impl fmt::Display for CnnModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stored specs write an unset option as "" (as requests do), so jobs stored before the
/// options were typed read back unchanged.
mod blank_is_none {
    use super::*;

    pub fn serialize<S: Serializer, T: OptionName>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_ref().map_or("", OptionName::name))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: OptionName>(d: D) -> Result<Option<T>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        T::from_name(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown option value '{s}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(scoring: &str, mode: &str, cnn: &str) -> pb::EngineParams {
        pb::EngineParams {
            scoring: scoring.into(),
            mode: mode.into(),
            cnn_scoring: cnn.into(),
            ..Default::default()
        }
    }

    fn check(engine: EngineKind, p: pb::EngineParams) -> Result<DockParams, DockyardError> {
        DockParams::from_proto(engine, Some(&p))
    }

    #[test]
    fn engine_options_are_checked_per_engine() {
        let ok = check(EngineKind::Smina, params("vinardo", "minimize", "")).expect("smina");
        assert_eq!(ok.extra.scoring, Some(Scoring::Vinardo));
        assert_eq!(ok.extra.mode(), DockMode::Minimize);
        let ok = check(EngineKind::Gnina, params("", "score_only", "refinement")).expect("gnina");
        assert_eq!(ok.extra.cnn_scoring, Some(CnnScoring::Refinement));
        assert!(check(EngineKind::Vina, params("vina", "dock", "")).is_ok());
        let e = check(EngineKind::Vina, params("vinardo", "", "")).expect_err("vina scoring");
        assert!(e.to_string().contains("params.scoring"), "{e}");
        let e = check(EngineKind::Vina, params("", "minimize", "")).expect_err("vina mode");
        assert!(
            e.to_string().contains("params.mode") && e.to_string().contains("accepts dock"),
            "{e}"
        );
        let e = check(EngineKind::Smina, params("", "", "all")).expect_err("cnn on smina");
        assert!(e.to_string().contains("gnina"), "{e}");
        let ok = check(EngineKind::Rustina, params("ad4_scoring", "", "none")).expect("rustina");
        assert_eq!(ok.extra.scoring, Some(Scoring::Ad4Scoring));
        assert_eq!(ok.extra.cnn_scoring, Some(CnnScoring::None));
        let e = check(EngineKind::Rustina, params("", "", "refinement")).expect_err("rustina only rescores");
        assert!(e.to_string().contains("accepts none, rescore"), "{e}");
        let e = check(EngineKind::Rustina, params("dkoes_fast", "", "")).expect_err("rustina scoring");
        assert!(e.to_string().contains("params.scoring"), "{e}");
        let mut p = params("", "", "");
        p.no_gpu = true;
        let e = check(EngineKind::Rustina, p).expect_err("no_gpu is gnina's");
        assert!(e.to_string().contains("params.cnn_model"), "{e}");
        let mut p = params("", "", "");
        p.search_mode = "qvina2-race".into();
        assert_eq!(
            check(EngineKind::Rustina, p.clone()).expect("mode").extra.search_mode,
            Some(SearchMode::Qvina2Race)
        );
        let e = check(EngineKind::Vina, p.clone()).expect_err("search mode on vina");
        assert!(
            e.to_string().contains("params.search_mode") && e.to_string().contains("rustina engine only"),
            "{e}"
        );
        p.search_mode = "warp".into();
        let e = check(EngineKind::Rustina, p).expect_err("unknown mode");
        assert!(
            e.to_string().contains("accepts vina, qvina2, qvina2-race, qvina2-active, gpu"),
            "{e}"
        );
        let e = check(EngineKind::Gnina, params("", "", "bogus")).expect_err("cnn value");
        assert!(e.to_string().contains("params.cnn_scoring"), "{e}");
        let e = check(EngineKind::Smina, params("made_up", "", "")).expect_err("scoring name");
        assert!(e.to_string().contains("made_up"), "{e}");
        let e = check(EngineKind::Sleep, params("vina", "", "")).expect_err("sleep scores nothing");
        assert!(e.to_string().contains("params.scoring"), "{e}");
        let mut p = params("", "", "");
        p.cnn_model = "crossdock default".into();
        let e = check(EngineKind::Gnina, p).expect_err("model name");
        assert!(e.to_string().contains("params.cnn_model"), "{e}");
    }

    #[test]
    fn the_wire_form_reads_back_unchanged() {
        let p = pb::EngineParams {
            exhaustiveness: 16,
            num_modes: 3,
            seed: 7,
            energy_range: 2.5,
            sleep_ms: 0,
            scoring: "dkoes_fast".into(),
            mode: "local_only".into(),
            cnn_scoring: "all".into(),
            cnn_model: "dense".into(),
            no_gpu: true,
            search_mode: String::new(),
        };
        let typed = check(EngineKind::Gnina, p.clone()).expect("valid");
        assert_eq!(typed.to_proto(), p);
        let r = pb::EngineParams {
            scoring: "vina".into(),
            cnn_scoring: "none".into(),
            search_mode: "gpu".into(),
            ..p.clone()
        };
        let r = pb::EngineParams {
            mode: String::new(),
            cnn_model: String::new(),
            no_gpu: false,
            ..r
        };
        assert_eq!(check(EngineKind::Rustina, r.clone()).expect("rustina").to_proto(), r);
        assert_eq!(
            DockParams::from_proto(EngineKind::Gnina, Some(&typed.to_proto())).expect("again"),
            typed
        );
        // Defaults are applied once and survive the round trip.
        let d = DockParams::from_proto(EngineKind::Vina, None).expect("defaults");
        assert_eq!(d, DockParams::default());
        assert_eq!(DockParams::from_proto(EngineKind::Vina, Some(&d.to_proto())).expect("again"), d);
    }

    #[test]
    fn stored_options_keep_their_blank_strings() {
        let mut p = DockParams::default();
        p.extra.scoring = Some(Scoring::Vinardo);
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(
            json["extra"],
            serde_json::json!({"scoring": "vinardo", "mode": "", "cnn_scoring": "", "cnn_model": "", "no_gpu": false, "search_mode": ""})
        );
        let back: DockParams = serde_json::from_value(json).expect("read");
        assert_eq!(back, p);
        let bad = serde_json::json!({"scoring": "nope", "mode": "", "cnn_scoring": "", "cnn_model": "", "no_gpu": false});
        assert!(serde_json::from_value::<EngineOptions>(bad).is_err());
        // Stored before search modes existed: reads back with none.
        let old = serde_json::json!({"scoring": "vina", "mode": "", "cnn_scoring": "", "cnn_model": "", "no_gpu": false});
        let old: EngineOptions = serde_json::from_value(old).expect("old spec");
        assert_eq!(old.search_mode, None);
        assert_eq!(old.names()[4], "");
    }
}
