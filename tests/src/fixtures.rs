//! The shared test data (`<repo>/../shared/data`) and the tools some tests need.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A file under the shared data folder that sits beside the repository
/// (`<repo>/../shared/data/<rel>`); never copied into the repository.
pub fn shared_data(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data")).join(rel)
}

/// The 1iep receptor from the Vina examples.
pub fn receptor_1iep() -> PathBuf {
    shared_data("vina-examples/1iep/1iep_receptor.pdbqt")
}

/// The 1iep ligand (imatinib) from the Vina examples.
pub fn ligand_1iep() -> PathBuf {
    shared_data("vina-examples/1iep/1iep_ligand.pdbqt")
}

/// Reads a shared data file, with a clear message when the shared folder is missing.
pub fn read_shared(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); the tests expect the shared/ folder beside the repository",
            path.display()
        )
    })
}

/// Panics with an install hint unless `vina --version` runs.
pub fn require_vina() {
    match Command::new("vina").arg("--version").stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() || !o.stdout.is_empty() => {}
        Ok(o) => panic!("`vina --version` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("this test needs AutoDock Vina 1.2 on PATH ({e}); install it (Debian: apt-get install autodock-vina)"),
    }
}
