//! Ligand preparation with Meeko (and RDKit, and molscrub to protonate): what the Vina
//! authors use instead of Open Babel's PDBQT.
//!
//! The agent runs a Python driver that is part of this repository
//! (`node-agent/drivers/meeko_prepare.py`, compiled in and written into the task's scratch
//! folder), one process per task batch since importing RDKit and Meeko costs about a
//! second. The process is supervised like obabel's (timeout, cancellation of its group).
//! A ligand the driver cannot prepare fails alone with Meeko's or RDKit's reason; a crash
//! or a timeout fails the ligand the driver was working on, and the rest are run again.
//!
//! Prepared files land in the node's preparation cache, keyed by the input's bytes and
//! format, the Meeko, RDKit and molscrub versions, protonation and the driver's own text.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use dockyard_common::artifact::sha256_hex;
use dockyard_common::molecule::validate_ligand;
use dockyard_common::spec::{MEEKO, MOLSCRUB, PROTONATION_PH};
use dockyard_proto::v1 as pb;

use super::{log_tail, remove_quietly, PrepareError};
use crate::engine::process::{run_process, ExitKind, ProcessSpec, DEFAULT_GRACE};
use crate::engine::EngineError;

/// The driver's source, written into each run's scratch folder.
pub const DRIVER: &str = include_str!("../../drivers/meeko_prepare.py");
const DRIVER_FILE: &str = "meeko_prepare.py";
/// ETKDG's random seed: the same SMILES gives the same conformer on every node and run.
pub const EMBED_SEED: u32 = 42;
/// Importing RDKit and Meeko on a loaded node takes several seconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// A driver run's time: the imports, then each ligand (ETKDG + MMFF take well under a
/// second for a drug-like molecule; big flexible ones many times that).
const RUN_BASE: Duration = Duration::from_secs(60);
const PER_LIGAND: Duration = Duration::from_secs(120);

/// Printed by the probe before the versions, so import warnings cannot be mistaken for them.
const VERSIONS_MARK: &str = "DOCKYARD-MEEKO-VERSIONS ";
const PROBE_SNIPPET: &str = r#"
import json
import meeko, rdkit
v = {"meeko": meeko.__version__, "rdkit": rdkit.__version__}
try:
    import molscrub
    v["molscrub"] = molscrub.__version__
except Exception:
    pass
print("DOCKYARD-MEEKO-VERSIONS " + json.dumps(v))
"#;

/// Versions the probe reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct MeekoVersions {
    pub meeko: String,
    pub rdkit: String,
    #[serde(default)]
    pub molscrub: Option<String>,
}

/// Reads the probe's output: the line after [`VERSIONS_MARK`].
pub fn parse_versions(text: &str) -> Option<MeekoVersions> {
    let json = text.lines().find_map(|l| l.trim().strip_prefix(VERSIONS_MARK.trim_end()))?;
    let v: MeekoVersions = serde_json::from_str(json.trim()).ok()?;
    (!v.meeko.is_empty() && !v.rdkit.is_empty()).then_some(v)
}

/// The interpreter named by the `#!` line of `script` in the folders of `path` (a PATH
/// value), when it is a Python: where `pip` put `mk_prepare_ligand.py`, that Python can
/// import meeko.
fn shebang_python(script: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    let file = std::env::split_paths(path).map(|d| d.join(script)).find(|p| p.is_file())?;
    let first = std::fs::read_to_string(file).ok()?.lines().next()?.to_string();
    let mut words = first.strip_prefix("#!")?.split_whitespace();
    let program = words.next()?;
    // `#!/usr/bin/env python3`: the interpreter is the next word.
    let program = if program.ends_with("/env") { words.next()? } else { program };
    Path::new(program)
        .file_name()?
        .to_string_lossy()
        .starts_with("python")
        .then(|| PathBuf::from(program))
}

/// A prepared ligand: its PDBQT in the node's cache and how it was made, for results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub path: PathBuf,
    pub how: String,
}

/// One ligand of a batch: its index in the task, its file and format.
#[derive(Debug, Clone)]
pub struct LigandJob {
    pub index: u32,
    pub input: PathBuf,
    pub format: &'static str,
}

pub struct MeekoPreparer {
    python: PathBuf,
    versions: MeekoVersions,
    cache_dir: PathBuf,
    /// Driver processes started; lets tests prove a cache hit ran nothing.
    runs: AtomicU64,
    tmp_seq: AtomicU64,
}

impl std::fmt::Debug for MeekoPreparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeekoPreparer")
            .field("python", &self.python)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

/// What the driver said about one ligand.
#[derive(Debug, Default)]
struct RunReport {
    /// How each prepared ligand's coordinates were made, or why it failed.
    done: HashMap<u32, Result<String, String>>,
    /// Started without a result: the ligand a crash or timeout interrupted.
    in_progress: Option<u32>,
}

fn read_report(text: &str) -> RunReport {
    let mut r = RunReport::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(id) = v.get("id").and_then(serde_json::Value::as_u64).and_then(|i| u32::try_from(i).ok()) else {
            continue;
        };
        if v.get("start").is_some() {
            r.in_progress = Some(id);
        } else if v.get("ok").is_some() {
            let geometry = v
                .get("geometry")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("coordinates not reported");
            r.done.insert(id, Ok(geometry.to_string()));
            r.in_progress = None;
        } else if let Some(e) = v.get("error") {
            r.done.insert(id, Err(e.as_str().unwrap_or("unknown error").to_string()));
            r.in_progress = None;
        }
    }
    r
}

impl MeekoPreparer {
    /// Finds a Python that imports meeko and rdkit: `python` when given, else `python3`,
    /// else the Python of `mk_prepare_ligand.py` on PATH. `None` when there is none: the
    /// node then takes no meeko jobs.
    pub async fn probe(python: Option<&Path>, cache_dir: PathBuf) -> Option<MeekoPreparer> {
        let candidates: Vec<PathBuf> = match python {
            Some(p) => vec![p.to_path_buf()],
            None => std::iter::once(PathBuf::from("python3"))
                .chain(std::env::var_os("PATH").and_then(|p| shebang_python("mk_prepare_ligand.py", &p)))
                .collect(),
        };
        for program in candidates {
            match probe_python(&program).await {
                Ok(versions) => return Some(MeekoPreparer::new(program, versions, cache_dir)),
                Err(why) => tracing::info!(python = %program.display(), reason = %why, "meeko not available"),
            }
        }
        None
    }

    pub fn new(python: PathBuf, versions: MeekoVersions, cache_dir: PathBuf) -> MeekoPreparer {
        MeekoPreparer {
            python,
            versions,
            cache_dir,
            runs: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
        }
    }

    pub fn versions(&self) -> &MeekoVersions {
        &self.versions
    }

    /// Whether molscrub is there to protonate.
    pub fn can_protonate(&self) -> bool {
        self.versions.molscrub.is_some()
    }

    /// The tools the agent advertises: meeko, and molscrub when importable.
    pub fn tools(&self) -> Vec<pb::EngineInfo> {
        let mut t = vec![pb::EngineInfo {
            name: MEEKO.into(),
            version: self.versions.meeko.clone(),
            test_only: false,
        }];
        if let Some(v) = &self.versions.molscrub {
            t.push(pb::EngineInfo {
                name: MOLSCRUB.into(),
                version: v.clone(),
                test_only: false,
            });
        }
        t
    }

    /// Driver processes started (cache hits start none).
    pub fn conversions(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// How a ligand in `from` format was prepared, for results, with `geometry` as the
    /// driver reported it: "meeko 0.8.0 (rdkit 2024.03.5): smi -> pdbqt (ETKDGv3 seed 42, MMFF94)".
    pub fn describe(&self, from: &str, protonate: bool, geometry: &str) -> String {
        let v = &self.versions;
        let scrub = match (&v.molscrub, protonate) {
            (Some(s), true) => format!("molscrub {s} pH {PROTONATION_PH}, "),
            _ => String::new(),
        };
        format!("meeko {} (rdkit {}): {from} -> pdbqt ({scrub}{geometry})", v.meeko, v.rdkit)
    }

    /// The cache key of one input: everything that changes the output, not the file name.
    fn key(&self, bytes: &[u8], format: &str, protonate: bool) -> String {
        let v = &self.versions;
        let scrub = if protonate {
            format!("molscrub {} pH {PROTONATION_PH}", v.molscrub.as_deref().unwrap_or("-"))
        } else {
            String::new()
        };
        let head = format!(
            "ligand\0{format}\0meeko {} rdkit {}\0{scrub}\0seed {EMBED_SEED}\0{}\0",
            v.meeko,
            v.rdkit,
            sha256_hex(DRIVER.as_bytes())
        );
        let mut keyed = Vec::with_capacity(head.len() + bytes.len());
        keyed.extend_from_slice(head.as_bytes());
        keyed.extend_from_slice(bytes);
        sha256_hex(&keyed)
    }

    /// Prepares a batch of ligands into cached PDBQT files, one result per ligand in the
    /// order given. `scratch` holds the driver, its job list, results and log.
    pub async fn prepare(&self, ligands: &[LigandJob], protonate: bool, scratch: &Path) -> Vec<(u32, Result<Prepared, PrepareError>)> {
        let mut out: Vec<(u32, Option<Result<Prepared, PrepareError>>)> = Vec::with_capacity(ligands.len());
        let mut todo: Vec<(usize, String)> = Vec::new();
        for (i, l) in ligands.iter().enumerate() {
            let res = self.cached(l, protonate).await;
            match res {
                Ok(Ok(hit)) => out.push((l.index, Some(Ok(hit)))),
                Ok(Err(key)) => {
                    out.push((l.index, None));
                    todo.push((i, key));
                }
                Err(e) => out.push((l.index, Some(Err(e)))),
            }
        }
        if protonate && !self.can_protonate() && !todo.is_empty() {
            for (i, _) in todo.drain(..) {
                out[i].1 = Some(Err(PrepareError::tool(
                    &ligands[i].input,
                    ligands[i].format,
                    "molscrub is not importable by this node's Python (pip install molscrub)",
                )));
            }
        }
        let mut round = 0u32;
        while !todo.is_empty() {
            round += 1;
            let results = self.run_batch(ligands, &todo, protonate, scratch, round).await;
            let mut again = Vec::new();
            for ((i, key), r) in todo.into_iter().zip(results) {
                match r {
                    Some(r) => out[i].1 = Some(r),
                    None => again.push((i, key)),
                }
            }
            todo = again;
        }
        out.into_iter()
            .zip(ligands)
            .map(|((index, r), l)| {
                let r = r.unwrap_or_else(|| Err(PrepareError::tool(&l.input, l.format, "meeko driver gave no result")));
                (index, r)
            })
            .collect()
    }

    /// `Ok(Ok(prepared))` on a cache hit, `Ok(Err(key))` on a miss.
    async fn cached(&self, l: &LigandJob, protonate: bool) -> Result<Result<Prepared, String>, PrepareError> {
        let bytes = tokio::fs::read(&l.input)
            .await
            .map_err(|e| PrepareError::tool(&l.input, l.format, format!("cannot read input: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(PrepareError::bad(&l.input, l.format, "input file is empty"));
        }
        let key = self.key(&bytes, l.format, protonate);
        let path = self.final_path(&key);
        // Written by this or an earlier run of the agent (only complete files are renamed
        // in, each after the note of how it was made).
        if tokio::fs::metadata(&path).await.is_err() {
            return Ok(Err(key));
        }
        let geometry = tokio::fs::read_to_string(self.how_path(&key)).await.unwrap_or_default();
        let how = self.describe(l.format, protonate, geometry.trim());
        Ok(Ok(Prepared { path, how }))
    }

    fn final_path(&self, key: &str) -> PathBuf {
        self.cache_dir.join(format!("{key}.pdbqt"))
    }

    fn how_path(&self, key: &str) -> PathBuf {
        self.cache_dir.join(format!("{key}.how"))
    }

    /// One driver process over `todo` (indices into `ligands` with their keys). `None` for
    /// a ligand the process never reached (it died or timed out on an earlier one): run again.
    async fn run_batch(
        &self,
        ligands: &[LigandJob],
        todo: &[(usize, String)],
        protonate: bool,
        scratch: &Path,
        round: u32,
    ) -> Vec<Option<Result<Prepared, PrepareError>>> {
        let all_fail = |reason: String| -> Vec<Option<Result<Prepared, PrepareError>>> {
            todo.iter()
                .map(|(i, _)| Some(Err(PrepareError::tool(&ligands[*i].input, ligands[*i].format, reason.clone()))))
                .collect()
        };
        if let Err(e) = tokio::fs::create_dir_all(&self.cache_dir).await {
            return all_fail(format!("cache folder {}: {e}", self.cache_dir.display()));
        }
        let driver = scratch.join(DRIVER_FILE);
        let jobs_file = scratch.join(format!("meeko-jobs-{round}.json"));
        let results_file = scratch.join(format!("meeko-results-{round}.jsonl"));
        let log = scratch.join(format!("meeko-{round}.log"));
        let tmp: Vec<PathBuf> = todo
            .iter()
            .map(|(_, key)| {
                let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
                self.cache_dir.join(format!("{key}.{}.{seq}.tmp", std::process::id()))
            })
            .collect();
        let jobs = serde_json::json!({
            "seed": EMBED_SEED,
            "protonate": protonate,
            "ph": PROTONATION_PH.parse::<f64>().unwrap_or(7.4),
            "ligands": todo.iter().zip(&tmp).map(|((i, _), t)| serde_json::json!({
                "id": i,
                "input": ligands[*i].input,
                "format": ligands[*i].format,
                "output": t,
            })).collect::<Vec<_>>(),
        });
        let written = async {
            tokio::fs::create_dir_all(scratch).await?;
            tokio::fs::write(&driver, DRIVER).await?;
            tokio::fs::write(&jobs_file, jobs.to_string()).await
        };
        if let Err(e) = written.await {
            return all_fail(format!("cannot write the meeko driver's files: {e}"));
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        let spec = ProcessSpec {
            program: self.python.clone(),
            args: vec![
                driver.as_os_str().to_owned(),
                jobs_file.as_os_str().to_owned(),
                results_file.as_os_str().to_owned(),
            ],
            cwd: scratch.to_path_buf(),
            log_path: log.clone(),
            timeout: RUN_BASE + PER_LIGAND * todo.len() as u32,
            grace: DEFAULT_GRACE,
            cancel: CancellationToken::new(),
            // Python must not write .pyc files next to the driver in the scratch folder.
            env: vec![(OsString::from("PYTHONDONTWRITEBYTECODE"), OsString::from("1"))],
        };
        let run = run_process(spec).await;
        let report = read_report(&tokio::fs::read_to_string(&results_file).await.unwrap_or_default());
        let tail = log_tail(&log).await;
        let stopped = match run {
            Ok(o) if o.exit.success() => None,
            Ok(o) => Some(match o.exit {
                ExitKind::Signal(s) => format!("meeko's python was killed by signal {s}: {tail}"),
                ExitKind::Code(c) => format!("meeko's python failed (exit code {c}): {tail}"),
            }),
            Err(EngineError::Timeout(d)) => Some(format!("meeko timed out after {d:?}")),
            Err(e) => Some(format!("meeko's python: {e}")),
        };
        let mut results = Vec::with_capacity(todo.len());
        for ((i, key), t) in todo.iter().zip(&tmp) {
            let l = &ligands[*i];
            let id = *i as u32;
            let r = match report.done.get(&id) {
                Some(Ok(geometry)) => Some(self.store(l, t, key, protonate, geometry).await),
                Some(Err(reason)) => Some(Err(PrepareError::bad(&l.input, l.format, format!("meeko: {reason}")))),
                // The ligand the process was on when it died or ran out of time fails alone.
                None if report.in_progress == Some(id) => {
                    Some(Err(PrepareError::tool(&l.input, l.format, stopped.clone().unwrap_or_default())))
                }
                // Never reached: run again, unless nothing was started at all (the imports
                // failed), which another run would repeat.
                None => match &stopped {
                    Some(why) if report.in_progress.is_none() && report.done.is_empty() => {
                        Some(Err(PrepareError::tool(&l.input, l.format, why.clone())))
                    }
                    Some(_) => None,
                    None => Some(Err(PrepareError::tool(
                        &l.input,
                        l.format,
                        format!("meeko driver gave no result: {tail}"),
                    ))),
                },
            };
            if !matches!(r, Some(Ok(_))) {
                remove_quietly(t).await;
            }
            results.push(r);
        }
        for f in [&jobs_file, &results_file, &log] {
            remove_quietly(f).await;
        }
        results
    }

    /// Checks the driver's output as Vina would read it and moves it into the cache, after
    /// the note of how its coordinates were made.
    async fn store(&self, l: &LigandJob, tmp: &Path, key: &str, protonate: bool, geometry: &str) -> Result<Prepared, PrepareError> {
        let text = tokio::fs::read_to_string(tmp).await.unwrap_or_default();
        if let Err(e) = validate_ligand(&text) {
            return Err(PrepareError::bad(
                &l.input,
                l.format,
                format!("meeko output is not a valid ligand PDBQT: {e}"),
            ));
        }
        let cannot = |e: std::io::Error| PrepareError::tool(&l.input, l.format, format!("cannot store prepared file: {e}"));
        tokio::fs::write(self.how_path(key), geometry).await.map_err(cannot)?;
        let path = self.final_path(key);
        tokio::fs::rename(tmp, &path).await.map_err(cannot)?;
        Ok(Prepared {
            path,
            how: self.describe(l.format, protonate, geometry),
        })
    }
}

/// Asks `python` for the meeko, rdkit and molscrub versions.
async fn probe_python(python: &Path) -> Result<MeekoVersions, String> {
    let output = tokio::process::Command::new(python)
        .args(["-c", PROBE_SNIPPET])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(PROBE_TIMEOUT, output).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("importing meeko took over {PROBE_TIMEOUT:?}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_versions(&stdout).ok_or_else(|| {
        let err = String::from_utf8_lossy(&output.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        format!("cannot import meeko and rdkit: {}", last.trim())
    })
}

#[cfg(test)]
mod tests;
