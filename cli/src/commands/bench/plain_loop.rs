//! One docking by an engine run directly, without the cluster: the "plain loop" side of
//! `dockyard bench docking`, timed and with its CPU seconds.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use super::procs;

/// An engine the plain loop runs.
pub(super) enum LoopEngine {
    Vina,
    /// The smina binary: Vina's command line.
    Smina(PathBuf),
    /// A Python that imports `rustina`: one `rustina.dock()` call per ligand.
    Rustina(PathBuf),
}

/// Rustina has no command: a Python one-liner docks one ligand with rustina's own defaults
/// (search, runs, CNN ranking) and writes the poses, best first, one MODEL each.
const RUSTINA_DOCK: &str = "import sys, rustina
rec, lig, out = sys.argv[1:4]
c = [float(x) for x in sys.argv[4:10]]
poses = rustina.dock(rec, lig, *c, seed=int(sys.argv[10]), threads=int(sys.argv[11]))
open(out, 'w').write(''.join(f\"MODEL {i + 1}\\n{p['pdbqt'].rstrip()}\\nENDMDL\\n\" for i, p in enumerate(poses)))";

impl LoopEngine {
    pub(super) fn name(&self) -> &'static str {
        match self {
            LoopEngine::Vina => "vina",
            LoopEngine::Smina(_) => "smina",
            LoopEngine::Rustina(_) => "rustina",
        }
    }

    /// Fails early, before any timing, when the engine cannot run here.
    pub(super) async fn check(&self) -> Result<()> {
        let (program, args): (&Path, Vec<&str>) = match self {
            LoopEngine::Vina => (Path::new("vina"), vec!["--version"]),
            LoopEngine::Smina(p) => (p, vec!["--version"]),
            LoopEngine::Rustina(py) => (py, vec!["-c", "import rustina"]),
        };
        let out = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {} for the plain {} loop", program.display(), self.name()))?;
        // smina and vina print their version and may exit non-zero doing so.
        if !out.status.success() && out.stdout.is_empty() {
            bail!(
                "{} {} failed for the plain {} loop: {}",
                program.display(),
                args.join(" "),
                self.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// What one plain docking docks, and how hard.
pub(super) struct Docking<'a> {
    pub receptor: &'a Path,
    pub ligand: &'a Path,
    pub out: &'a Path,
    pub center: [&'a str; 3],
    pub size: [&'a str; 3],
    pub exhaustiveness: u32,
    pub seed: i64,
    pub cores: u32,
}

/// Runs one docking; returns its wall seconds and the engine process's CPU seconds.
pub(super) async fn dock(engine: &LoopEngine, d: &Docking<'_>) -> Result<(f64, f64)> {
    let mut cmd = match engine {
        LoopEngine::Vina | LoopEngine::Smina(_) => {
            let mut c = Command::new(match engine {
                LoopEngine::Smina(p) => p.as_path(),
                _ => Path::new("vina"),
            });
            c.arg("--receptor")
                .arg(d.receptor)
                .arg("--ligand")
                .arg(d.ligand)
                .args(["--center_x", d.center[0], "--center_y", d.center[1], "--center_z", d.center[2]])
                .args(["--size_x", d.size[0], "--size_y", d.size[1], "--size_z", d.size[2]])
                .args(["--exhaustiveness", &d.exhaustiveness.to_string()])
                .args(["--seed", &d.seed.to_string(), "--cpu", &d.cores.to_string()])
                .arg("--out")
                .arg(d.out);
            c
        }
        LoopEngine::Rustina(py) => {
            let mut c = Command::new(py);
            c.args(["-c", RUSTINA_DOCK])
                .arg(d.receptor)
                .arg(d.ligand)
                .arg(d.out)
                .args(d.center)
                .args(d.size)
                .args([d.seed.to_string(), d.cores.to_string()]);
            c
        }
    };
    // The agent gives an engine as many OpenMP threads as cores; so does the loop.
    cmd.env("OMP_NUM_THREADS", d.cores.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let cpu0 = procs::waited_children_cpu_seconds();
    let t = Instant::now();
    let status = cmd.status().await.with_context(|| format!("cannot run {}", engine.name()))?;
    let wall = t.elapsed().as_secs_f64();
    let cpu = procs::waited_children_cpu_seconds() - cpu0;
    if !status.success() {
        bail!("{} failed ({status}) on {}", engine.name(), d.ligand.display());
    }
    Ok((wall, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rustina one-liner against a stand-in `rustina` module that checks the arguments
    /// it is called with: what the loop writes and how it passes the box, seed and threads.
    /// (The real rustina docks in the redock and docking benchmarks themselves.)
    #[tokio::test]
    async fn the_rustina_loop_passes_the_box_seed_threads_and_writes_one_model_per_pose() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(
            d.path().join("rustina.py"),
            "def dock(rec, lig, cx, cy, cz, sx, sy, sz, seed=None, threads=None):\n\
             \x20   assert (rec, lig) == ('r.pdbqt', 'l.pdbqt'), (rec, lig)\n\
             \x20   assert (cx, cy, cz, sx, sy, sz) == (1.5, -2.0, 3.0, 20.0, 22.0, 24.0)\n\
             \x20   assert (seed, threads) == (42, 2), (seed, threads)\n\
             \x20   return [{'pdbqt': 'REMARK a\\nATOM 1\\n'}, {'pdbqt': 'REMARK b\\nATOM 2'}]\n",
        )
        .expect("write");
        let python = d.path().join("python");
        std::fs::write(
            &python,
            format!("#!/bin/sh\nPYTHONPATH={} exec python3 \"$@\"\n", d.path().display()),
        )
        .expect("write");
        std::fs::set_permissions(&python, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let out = d.path().join("out.pdbqt");
        let docking = Docking {
            receptor: Path::new("r.pdbqt"),
            ligand: Path::new("l.pdbqt"),
            out: &out,
            center: ["1.5", "-2", "3"],
            size: ["20", "22", "24"],
            exhaustiveness: 8,
            seed: 42,
            cores: 2,
        };
        let engine = LoopEngine::Rustina(python);
        engine.check().await.expect("the stand-in imports");
        let (wall, _cpu) = dock(&engine, &docking).await.expect("docked");
        assert!(wall > 0.0);
        let text = std::fs::read_to_string(&out).expect("poses written");
        assert_eq!(text, "MODEL 1\nREMARK a\nATOM 1\nENDMDL\nMODEL 2\nREMARK b\nATOM 2\nENDMDL\n");

        let e = dock(&engine, &Docking { seed: 7, ..docking })
            .await
            .expect_err("the stand-in refuses another seed");
        assert!(e.to_string().contains("rustina failed"), "{e}");
    }

    #[tokio::test]
    async fn an_engine_that_cannot_run_fails_the_check() {
        let e = LoopEngine::Smina("/nonexistent/smina".into()).check().await.expect_err("absent");
        assert!(format!("{e:#}").contains("/nonexistent/smina"), "{e:#}");
    }
}
