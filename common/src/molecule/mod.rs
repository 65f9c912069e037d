//! Molecule file formats: validation before queueing, and parsing of engine output.

pub mod coords;
pub mod library;
pub mod pdbqt;

pub use pdbqt::{
    parse_vina_poses, split_models, text_from_bytes, validate_ligand, validate_receptor, LigandSummary, PdbqtError, ReceptorSummary,
};

pub use library::{open_library, read_library, LibraryFormat, MolRecord, RecordError, RecordIter};

/// One docked pose as reported by the engine, in the order the engine wrote it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pose {
    /// 1-based position in the engine's output file (Vina writes best first).
    pub rank: u32,
    /// kcal/mol; lower is better. Can be positive for clashing poses.
    pub affinity: f64,
    /// RMSD lower bound to the best pose, in Angstrom (0 for the best pose).
    pub rmsd_lb: f64,
    /// RMSD upper bound to the best pose, in Angstrom (0 for the best pose).
    pub rmsd_ub: f64,
}

impl From<&Pose> for dockyard_proto::v1::Pose {
    fn from(p: &Pose) -> Self {
        dockyard_proto::v1::Pose {
            rank: p.rank,
            affinity: p.affinity,
            rmsd_lb: p.rmsd_lb,
            rmsd_ub: p.rmsd_ub,
        }
    }
}

impl From<&dockyard_proto::v1::Pose> for Pose {
    fn from(p: &dockyard_proto::v1::Pose) -> Self {
        Pose {
            rank: p.rank,
            affinity: p.affinity,
            rmsd_lb: p.rmsd_lb,
            rmsd_ub: p.rmsd_ub,
        }
    }
}
