//! Where the workspace binaries are, and whether they are older than their sources.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The folder holding the workspace binaries: the parent of the test executable's folder
/// (`target/debug/deps/<test>` → `target/debug`), or `DOCKYARD_TEST_BIN_DIR` if set.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKYARD_TEST_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("cannot locate the test executable");
    let dir = exe.parent().expect("test executable has no parent folder");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps folder has no parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary; panics with a clear message when it has not been built.
pub fn binary(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    if !p.is_file() {
        panic!(
            "binary `{name}` not found at {}: run `cargo build --workspace` first (cargo test -p dockyard-tests does not build it)",
            p.display()
        );
    }
    p
}

/// Every file under `dir`, recursively, sorted (an absent folder has none).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Newest modification time of the files under `dir` (recursively).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    files_under(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

/// A hint when a binary is older than the sources it is built from (printed with the logs
/// of a failing test: a stale binary explains many surprises).
pub(crate) fn staleness_note(bin: &Path, crates: &[&str]) -> Option<String> {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for c in crates {
        if newest_mtime(&root.join(c)).is_some_and(|src| src > built) {
            return Some(format!(
                "note: {} is older than the sources in {c}/; run `cargo build --workspace` to test the current code",
                bin.display()
            ));
        }
    }
    None
}
