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

/// The real smina: `$SMINA`, else the path `../shared/vendor/smina/build.sh` prints (it
/// builds smina once, in about two minutes, and caches it). Panics saying how to get it.
pub fn require_smina() -> PathBuf {
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    FOUND.get_or_init(find_smina).clone().unwrap_or_else(|e| panic!("{e}"))
}

fn find_smina() -> Result<PathBuf, String> {
    const HOW: &str = "this test runs the real smina: set SMINA=/path/to/smina, or run \
                       ../shared/vendor/smina/build.sh (builds it in about 2 minutes, caches it, prints its path)";
    if let Some(path) = std::env::var_os("SMINA").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(format!("SMINA={} is not a file; {HOW}", path.display())),
        };
    }
    let script = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vendor/smina/build.sh"));
    let out = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {HOW}", script.display()))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    let path = printed.lines().last().map(str::trim).unwrap_or_default();
    if !out.status.success() || path.is_empty() {
        return Err(format!("{} failed ({}); {HOW}", script.display(), out.status));
    }
    Ok(PathBuf::from(path))
}

/// The value of `key=` in a benchmark's output line (`key=value` fields, values without spaces).
pub fn bench_field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}
