//! Molecule file formats: validation before queueing, and parsing of engine output.

pub mod coords;
pub mod library;
pub mod pdbqt;

pub use pdbqt::{
    parse_vina_poses, split_models, text_from_bytes, validate_ligand, validate_receptor, LigandSummary, PdbqtError, ReceptorSummary,
};

pub use library::{
    library_from_reader, open_library, open_library_with, read_library, read_library_with, FileLimit, LibraryFormat, MolRecord, ReadLimits,
    RecordError, RecordErrorKind, RecordIter,
};

/// At most `max` characters of `s`, marked with "..." when cut. Text quoted from a file in
/// an error message, or used as a name, must not make that message (a gRPC status header,
/// a stored job record) as large as the file.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

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
