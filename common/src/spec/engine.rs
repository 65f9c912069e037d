//! The engines Dockyard drives and what each one accepts and needs: the one place that says
//! how engines differ. The coordinator validates and schedules from these facts; the agent
//! prepares inputs, limits processes and reads results from them. Adding an engine means a
//! variant here, its name and its [`EngineTraits`]; nothing else in `common` matches on it.

use serde::{Deserialize, Serialize};

use super::params::{CnnScoring, DockMode, Scoring, SearchMode};
use super::rank::RankKey;
use crate::error::DockyardError;

/// Engines Dockyard knows how to drive. Whether a node *has* one is a separate fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Vina,
    Smina,
    Gnina,
    /// Rustina (PyPI `rustina`): QuickVina2-style search on Vinardo grids, GNINA's fast CNN
    /// ranking the poses, a batched GPU search through wgpu. Driven through Python.
    Rustina,
    /// Does no docking: waits, for smoke tests and benchmarks.
    Sleep,
}

/// What an engine accepts and needs, beyond its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineTraits {
    /// Scoring functions a task may ask for (empty: the option is refused).
    pub scorings: &'static [Scoring],
    /// What the engine may do with the ligand (`[Dock]`: only docking).
    pub modes: &'static [DockMode],
    /// `cnn_scoring` values a task may ask for (empty: the option is refused).
    pub cnn_scorings: &'static [CnnScoring],
    /// Takes gnina's `cnn_model` and `no_gpu`.
    pub cnn_model: bool,
    /// `search_mode` values a task may ask for (empty: the option is refused).
    pub search_modes: &'static [SearchMode],
    /// Reads PDBQT only: other input formats are converted on the agent (obabel) first.
    pub needs_pdbqt: bool,
    /// A job may ask for GPUs per task.
    pub accepts_gpus: bool,
    /// May open CUDA even with no GPU assigned, so no address-space limit can hold it.
    pub may_use_cuda: bool,
    /// Writes its poses as SDF with scores as data items (else Vina's PDBQT).
    pub sdf_poses: bool,
    /// The result field the best pose's score is reported under, for PDBQT engines whose
    /// pose file carries no named fields.
    pub score_field: Option<&'static str>,
    /// Holds grid maps in memory, sized by the box (see `JobSpec::task_memory_bytes`).
    pub grid_memory: bool,
    /// What the engine ranks its poses by: a job's results are listed by it unless the
    /// caller asks for another key.
    pub rank_key: RankKey,
}

const VINA: EngineTraits = EngineTraits {
    // The vina adapter runs Vina's default scoring only.
    scorings: &[Scoring::Vina],
    modes: &[DockMode::Dock],
    cnn_scorings: &[],
    cnn_model: false,
    search_modes: &[],
    needs_pdbqt: true,
    accepts_gpus: false,
    may_use_cuda: false,
    sdf_poses: false,
    score_field: Some("vina_affinity"),
    grid_memory: true,
    rank_key: RankKey::Score,
};

const SMINA: EngineTraits = EngineTraits {
    // Every one of these runs in the real smina 2a4feb4 (node-agent smina real_tests).
    scorings: Scoring::ALL,
    modes: DockMode::ALL,
    cnn_scorings: &[],
    cnn_model: false,
    search_modes: &[],
    needs_pdbqt: false,
    // smina is CPU-only (built without SMINA_GPU, its adapter passes no device): a GPU
    // given to a smina task would sit idle.
    accepts_gpus: false,
    may_use_cuda: false,
    sdf_poses: true,
    score_field: None,
    grid_memory: true,
    rank_key: RankKey::Score,
};

const GNINA: EngineTraits = EngineTraits {
    cnn_scorings: CnnScoring::ALL,
    cnn_model: true,
    accepts_gpus: true,
    may_use_cuda: true,
    // gnina's `--pose_sort_order` defaults to CNNscore.
    rank_key: RankKey::CnnScore,
    ..SMINA
};

const RUSTINA: EngineTraits = EngineTraits {
    // `ad4_scoring` is rustina's `ad4`; the adapter translates the name.
    scorings: &[Scoring::Vinardo, Scoring::Vina, Scoring::Ad4Scoring],
    modes: &[DockMode::Dock],
    // The CNN only ranks the final poses, or is skipped.
    cnn_scorings: &[CnnScoring::None, CnnScoring::Rescore],
    cnn_model: false,
    search_modes: SearchMode::ALL,
    needs_pdbqt: true,
    accepts_gpus: true,
    // wgpu opens Vulkan/GL, not CUDA, and only in the `gpu` search mode.
    may_use_cuda: false,
    sdf_poses: false,
    score_field: Some("rustina_affinity"),
    grid_memory: true,
    // Rustina orders its poses by the CNN's pose score (by affinity with the CNN off, and
    // then no result has a cnn_score and the listing falls back to the score).
    rank_key: RankKey::CnnScore,
};

const SLEEP: EngineTraits = EngineTraits {
    scorings: &[],
    modes: &[DockMode::Dock],
    cnn_scorings: &[],
    cnn_model: false,
    search_modes: &[],
    needs_pdbqt: false,
    accepts_gpus: true,
    may_use_cuda: false,
    sdf_poses: false,
    score_field: None,
    grid_memory: false,
    rank_key: RankKey::Score,
};

impl EngineKind {
    pub const ALL: [EngineKind; 5] = [
        EngineKind::Vina,
        EngineKind::Smina,
        EngineKind::Gnina,
        EngineKind::Rustina,
        EngineKind::Sleep,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Vina => "vina",
            EngineKind::Smina => "smina",
            EngineKind::Gnina => "gnina",
            EngineKind::Rustina => "rustina",
            EngineKind::Sleep => "sleep",
        }
    }

    pub fn traits(self) -> &'static EngineTraits {
        match self {
            EngineKind::Vina => &VINA,
            EngineKind::Smina => &SMINA,
            EngineKind::Gnina => &GNINA,
            EngineKind::Rustina => &RUSTINA,
            EngineKind::Sleep => &SLEEP,
        }
    }

    pub fn parse(s: &str) -> Result<Self, DockyardError> {
        let names = || Self::ALL.map(Self::name).join(", ");
        if s.is_empty() {
            return Err(DockyardError::invalid("engine", format!("missing; one of {}", names())));
        }
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| DockyardError::invalid("engine", format!("unknown engine '{s}'; one of {}", names())))
    }

    pub fn test_only(self) -> bool {
        self == EngineKind::Sleep
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_parses_back_from_its_name() {
        for k in EngineKind::ALL {
            assert_eq!(EngineKind::parse(k.name()).expect("known"), k);
        }
        let e = EngineKind::parse("autodock9").expect_err("unknown");
        assert!(
            e.to_string().contains("engine") && e.to_string().contains("vina, smina, gnina, rustina, sleep"),
            "{e}"
        );
        assert!(EngineKind::parse("").expect_err("missing").to_string().contains("missing"));
    }

    #[test]
    fn cnn_options_search_modes_pdbqt_inputs_and_gpus_per_engine() {
        let cnn: Vec<_> = EngineKind::ALL
            .into_iter()
            .filter(|k| !k.traits().cnn_scorings.is_empty())
            .collect();
        assert_eq!(cnn, [EngineKind::Gnina, EngineKind::Rustina]);
        let models: Vec<_> = EngineKind::ALL.into_iter().filter(|k| k.traits().cnn_model).collect();
        assert_eq!(models, [EngineKind::Gnina]);
        assert_eq!(EngineKind::Rustina.traits().cnn_scorings, [CnnScoring::None, CnnScoring::Rescore]);
        let modes: Vec<_> = EngineKind::ALL
            .into_iter()
            .filter(|k| !k.traits().search_modes.is_empty())
            .collect();
        assert_eq!(modes, [EngineKind::Rustina]);
        let pdbqt: Vec<_> = EngineKind::ALL.into_iter().filter(|k| k.traits().needs_pdbqt).collect();
        assert_eq!(pdbqt, [EngineKind::Vina, EngineKind::Rustina]);
        assert!(!EngineKind::Vina.traits().accepts_gpus);
        assert!(EngineKind::Rustina.traits().accepts_gpus);
        assert_eq!(EngineKind::Rustina.traits().score_field, Some("rustina_affinity"));
        let gpus: Vec<_> = EngineKind::ALL.into_iter().filter(|k| k.traits().accepts_gpus).collect();
        assert_eq!(gpus, [EngineKind::Gnina, EngineKind::Rustina, EngineKind::Sleep]);
    }
}
