//! Input preparation with Open Babel (Meeko in [`meeko`]): turns SDF/MOL2/PDB/SMILES ligands and PDB receptors
//! into the PDBQT that Vina requires, and docked PDBQT poses back into SDF for export.
//!
//! Prepared files are cached by content (input bytes, formats, obabel version and options),
//! so a receptor shared by every task of a screen, or a ligand seen again, is converted once
//! per node. Open Babel often exits 0 after failing (e.g. "0 molecules converted"), so every
//! output is validated before it is trusted.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;

use dockyard_common::artifact::sha256_hex;
use dockyard_common::molecule::{validate_ligand, validate_receptor};
use dockyard_proto::v1 as pb;

use crate::engine::process::{run_process, ProcessSpec, DEFAULT_GRACE};
use crate::engine::EngineError;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// 3D generation from SMILES measured ~11 s per drug-like molecule here; large or
/// flexible ones take several times that.
const GEN3D_TIMEOUT: Duration = Duration::from_secs(180);
/// Conversions of existing 3D structures take well under a second, receptors a few seconds.
const CONVERT_TIMEOUT: Duration = Duration::from_secs(120);

const LIGAND_OPTS: &[&str] = &["-h", "--partialcharge", "gasteiger"];
const SMILES_OPTS: &[&str] = &["--gen3d", "-h", "--partialcharge", "gasteiger"];
/// `--protonate`: `-p` adds the hydrogens of the charge states at the pH instead of `-h`'s
/// neutral ones (the pH is `PROTONATION_PH`; a literal here keeps the lists `const`).
const LIGAND_PH_OPTS: &[&str] = &["-p", "7.4", "--partialcharge", "gasteiger"];
/// `-xr`: rigid receptor (no ROOT/BRANCH/TORSDOF); the PDBQT writer merges the non-polar
/// hydrogens that `-h` adds, leaving the polar ones Vina needs.
const RECEPTOR_OPTS: &[&str] = &["-xr", "-h", "--partialcharge", "gasteiger"];

/// How obabel converts one input: `opts`, after a first `--gen3d` run to SDF when
/// `gen3d_first`. `--gen3d` and `-p` in one run leave the molecule neutral (obabel 3.1.1
/// applies `-p` before building the 3D structure, which adds neutral hydrogens), so a
/// SMILES to protonate is built in 3D first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Recipe {
    gen3d_first: bool,
    opts: &'static [&'static str],
}

impl Recipe {
    const fn opts(opts: &'static [&'static str]) -> Recipe {
        Recipe { gen3d_first: false, opts }
    }

    /// The options as results and cache keys name them (a plain recipe: its options alone,
    /// as before recipes had steps, so cached files stay valid).
    fn describe(&self) -> String {
        let opts = self.opts.join(" ");
        if self.gen3d_first {
            format!("--gen3d, then {opts}")
        } else {
            opts
        }
    }
}

/// Why preparing one input failed. `input` names the file (and format) concerned.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PrepareError {
    /// The input itself cannot be converted: retrying anywhere fails the same way.
    #[error("{input}: {reason}")]
    BadInput { input: String, reason: String },
    /// The node could not run the conversion (obabel missing, crashed, timed out, disk).
    #[error("{input}: {reason}")]
    Tool { input: String, reason: String },
}

impl PrepareError {
    /// Whether another attempt (possibly on another node) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, PrepareError::Tool { .. })
    }

    fn bad(input: &Path, format: &str, reason: impl Into<String>) -> Self {
        PrepareError::BadInput {
            input: label(input, format),
            reason: reason.into(),
        }
    }

    fn tool(input: &Path, format: &str, reason: impl Into<String>) -> Self {
        PrepareError::Tool {
            input: label(input, format),
            reason: reason.into(),
        }
    }
}

fn label(input: &Path, format: &str) -> String {
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{name} ({format})")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ligand,
    Receptor,
}

pub struct Preparer {
    program: PathBuf,
    version: String,
    cache_dir: PathBuf,
    /// One cell per cache key, so concurrent callers for the same input share one obabel run.
    cells: Mutex<HashMap<String, Arc<OnceCell<PathBuf>>>>,
    /// Number of obabel conversions started; lets tests prove a cache hit ran nothing.
    runs: AtomicU64,
    /// Makes temporary names unique within this process (the pid covers other processes).
    tmp_seq: AtomicU64,
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("program", &self.program)
            .field("version", &self.version)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// Pulls the version out of `obabel -V`: "Open Babel 3.1.1 -- Jan  4 2023 -- 09:58:24".
pub fn parse_obabel_version(text: &str) -> Option<String> {
    let rest = text.split("Open Babel").nth(1)?;
    let v = rest.split_whitespace().next()?;
    v.chars().next().filter(char::is_ascii_digit)?;
    Some(v.to_string())
}

impl Preparer {
    /// Finds obabel (`obabel` on PATH when `obabel` is `None`) and checks it answers `-V`.
    /// `None` when it is missing or unusable: the node then takes PDBQT-only work.
    pub async fn probe(obabel: Option<&Path>, cache_dir: PathBuf) -> Option<Preparer> {
        let program = obabel.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("obabel"));
        let output = tokio::process::Command::new(&program)
            .arg("-V")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(PROBE_TIMEOUT, output).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                tracing::info!(path = %program.display(), error = %e, "obabel not available");
                return None;
            }
            Err(_) => {
                tracing::warn!(path = %program.display(), "`obabel -V` timed out");
                return None;
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let Some(version) = parse_obabel_version(&text) else {
            let shown: String = text.trim().chars().take(200).collect();
            tracing::warn!(path = %program.display(), output = %shown, "`obabel -V` did not report an Open Babel version");
            return None;
        };
        Some(Preparer::new(program, version, cache_dir))
    }

    /// A preparer for a known binary and version, without probing.
    pub fn new(program: PathBuf, version: String, cache_dir: PathBuf) -> Preparer {
        Preparer {
            program,
            version,
            cache_dir,
            cells: Mutex::new(HashMap::new()),
            runs: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn info(&self) -> pb::EngineInfo {
        pb::EngineInfo {
            name: "obabel".into(),
            version: self.version.clone(),
            test_only: false,
        }
    }

    /// How many obabel conversions this preparer has started (cache hits start none).
    pub fn conversions(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Says how a ligand in `from` format is prepared, for results: "obabel 3.1.1: sdf -> pdbqt (-h ...)".
    pub fn describe(&self, from: &str, protonate: bool) -> String {
        format!(
            "obabel {}: {from} -> pdbqt ({})",
            self.version,
            ligand_recipe(from, protonate).describe()
        )
    }

    /// Same as [`describe`](Self::describe) for a receptor.
    pub fn describe_receptor(&self, from: &str) -> String {
        format!("obabel {}: {from} -> pdbqt ({})", self.version, RECEPTOR_OPTS.join(" "))
    }

    /// PDB (or MOL2) receptor to a rigid receptor PDBQT, validated as Vina would read it.
    pub async fn receptor_to_pdbqt(&self, input: &Path, format: &str) -> Result<PathBuf, PrepareError> {
        match format {
            "pdb" | "mol2" => {
                self.prepared(input, format, Kind::Receptor, Recipe::opts(RECEPTOR_OPTS), CONVERT_TIMEOUT)
                    .await
            }
            _ => Err(PrepareError::bad(
                input,
                format,
                format!("a receptor must be PDBQT, PDB or MOL2, not '{format}'"),
            )),
        }
    }

    /// One SDF/MOL2/PDB record, or a one-line `SMILES name` file, to a ligand PDBQT;
    /// `protonate`: in its charge state at pH 7.4.
    pub async fn ligand_to_pdbqt(&self, input: &Path, format: &str, protonate: bool) -> Result<PathBuf, PrepareError> {
        let recipe = ligand_recipe(format, protonate);
        match format {
            "sdf" | "mol2" | "pdb" => self.prepared(input, format, Kind::Ligand, recipe, CONVERT_TIMEOUT).await,
            "smi" => self.prepared(input, format, Kind::Ligand, recipe, GEN3D_TIMEOUT).await,
            _ => Err(PrepareError::bad(
                input,
                format,
                format!("cannot prepare a ligand from '{format}' (sdf, mol2, pdb or smi)"),
            )),
        }
    }

    /// Docked poses (PDBQT, one MODEL each) to an SDF with one record per pose.
    pub async fn pdbqt_to_sdf(&self, pdbqt: &Path, out: &Path) -> Result<(), PrepareError> {
        let dir = out.parent().unwrap_or_else(|| Path::new("."));
        let log = dir.join(format!("{}.obabel.log", file_name(out)));
        let args = vec![
            OsString::from("-ipdbqt"),
            pdbqt.as_os_str().to_owned(),
            OsString::from("-osdf"),
            OsString::from("-O"),
            out.as_os_str().to_owned(),
        ];
        let res = self.obabel(pdbqt, "pdbqt", args, dir, &log, CONVERT_TIMEOUT).await;
        let tail = log_tail(&log).await;
        remove_quietly(&log).await;
        res?;
        let text = tokio::fs::read_to_string(out).await.unwrap_or_default();
        if !text.contains("$$$$") {
            remove_quietly(out).await;
            return Err(PrepareError::bad(pdbqt, "pdbqt", format!("obabel wrote no SDF record: {tail}")));
        }
        Ok(())
    }

    /// Returns the cached conversion of `input`, running obabel once per distinct key.
    async fn prepared(&self, input: &Path, format: &str, kind: Kind, recipe: Recipe, timeout: Duration) -> Result<PathBuf, PrepareError> {
        let bytes = tokio::fs::read(input)
            .await
            .map_err(|e| PrepareError::tool(input, format, format!("cannot read input: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(PrepareError::bad(input, format, "input file is empty"));
        }
        // Everything that changes the output is part of the key; the input's name is not.
        let mut keyed = Vec::with_capacity(bytes.len() + 128);
        let kind_tag = if kind == Kind::Receptor { "receptor" } else { "ligand" };
        keyed.extend_from_slice(format!("{kind_tag}\0{format}\0obabel {}\0{}\0", self.version, recipe.describe()).as_bytes());
        keyed.extend_from_slice(&bytes);
        let key = sha256_hex(&keyed);
        let cell = {
            let mut cells = self.cells.lock().await;
            cells.entry(key.clone()).or_insert_with(|| Arc::new(OnceCell::new())).clone()
        };
        // A failed init leaves the cell empty, so a later task tries again (the failure may
        // have been the node's); a failure is not cached.
        let path = cell
            .get_or_try_init(|| self.convert(input, format, kind, recipe, timeout, &key))
            .await?;
        Ok(path.clone())
    }

    async fn convert(
        &self,
        input: &Path,
        format: &str,
        kind: Kind,
        recipe: Recipe,
        timeout: Duration,
        key: &str,
    ) -> Result<PathBuf, PrepareError> {
        let final_path = self.cache_dir.join(format!("{key}.pdbqt"));
        // Written by an earlier run of this agent (only complete files are renamed in).
        if tokio::fs::metadata(&final_path).await.is_ok() {
            return Ok(final_path);
        }
        tokio::fs::create_dir_all(&self.cache_dir)
            .await
            .map_err(|e| PrepareError::tool(input, format, format!("cache folder {}: {e}", self.cache_dir.display())))?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{key}.{}.{seq}", std::process::id());
        let tmp = self.cache_dir.join(format!("{stem}.tmp"));
        let log = self.cache_dir.join(format!("{stem}.log"));
        let built = self.cache_dir.join(format!("{stem}.3d.sdf"));
        let (source, source_format) = if recipe.gen3d_first {
            let args = first_record_args(input, format, &["--gen3d"], "sdf", &built);
            let res = self.obabel(input, format, args, &self.cache_dir, &log, timeout).await;
            let tail = log_tail(&log).await;
            remove_quietly(&log).await;
            let built_ok = tokio::fs::metadata(&built).await.is_ok_and(|m| m.len() > 0);
            if let Err(e) = res.and_then(|()| {
                built_ok
                    .then_some(())
                    .ok_or_else(|| PrepareError::bad(input, format, format!("obabel --gen3d produced no molecule: {tail}")))
            }) {
                remove_quietly(&built).await;
                return Err(e);
            }
            (built.as_path(), "sdf")
        } else {
            (input, format)
        };
        let args = first_record_args(source, source_format, recipe.opts, "pdbqt", &tmp);
        let res = self.obabel(input, format, args, &self.cache_dir, &log, timeout).await;
        let tail = log_tail(&log).await;
        remove_quietly(&log).await;
        if recipe.gen3d_first {
            remove_quietly(&built).await;
        }
        if let Err(e) = res {
            remove_quietly(&tmp).await;
            return Err(e);
        }
        let text = tokio::fs::read_to_string(&tmp).await.unwrap_or_default();
        let checked = if text.trim().is_empty() {
            Err(format!("obabel produced no molecule: {tail}"))
        } else if kind == Kind::Receptor {
            validate_receptor(&text)
                .map(|_| ())
                .map_err(|e| format!("obabel output is not a valid receptor PDBQT: {e}"))
        } else {
            validate_ligand(&text)
                .map(|_| ())
                .map_err(|e| format!("obabel output is not a valid ligand PDBQT: {e}"))
        };
        if let Err(reason) = checked {
            remove_quietly(&tmp).await;
            return Err(PrepareError::bad(input, format, reason));
        }
        tokio::fs::rename(&tmp, &final_path)
            .await
            .map_err(|e| PrepareError::tool(input, format, format!("cannot store prepared file: {e}")))?;
        Ok(final_path)
    }

    /// Runs obabel once. A crash, timeout or spawn failure is the node's fault; a non-zero
    /// exit code is obabel refusing the input.
    async fn obabel(
        &self,
        input: &Path,
        format: &str,
        args: Vec<OsString>,
        cwd: &Path,
        log: &Path,
        timeout: Duration,
    ) -> Result<(), PrepareError> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let spec = ProcessSpec {
            program: self.program.clone(),
            args,
            cwd: cwd.to_path_buf(),
            log_path: log.to_path_buf(),
            timeout,
            grace: DEFAULT_GRACE,
            cancel: CancellationToken::new(),
            env: Vec::new(),
        };
        let out = match run_process(spec).await {
            Ok(o) => o,
            Err(EngineError::Timeout(d)) => return Err(PrepareError::tool(input, format, format!("obabel timed out after {d:?}"))),
            Err(e) => return Err(PrepareError::tool(input, format, format!("obabel: {e}"))),
        };
        if let Some(sig) = out.exit.signal() {
            let tail = log_tail(log).await;
            return Err(PrepareError::tool(input, format, format!("obabel killed by signal {sig}: {tail}")));
        }
        if !out.exit.success() {
            let tail = log_tail(log).await;
            return Err(PrepareError::bad(
                input,
                format,
                format!("obabel failed (exit code {}): {tail}", out.exit.code().unwrap_or(-1)),
            ));
        }
        Ok(())
    }
}

fn ligand_recipe(from: &str, protonate: bool) -> Recipe {
    match (from == "smi", protonate) {
        (true, false) => Recipe::opts(SMILES_OPTS),
        (true, true) => Recipe {
            gen3d_first: true,
            opts: LIGAND_PH_OPTS,
        },
        (false, false) => Recipe::opts(LIGAND_OPTS),
        (false, true) => Recipe::opts(LIGAND_PH_OPTS),
    }
}

/// obabel's arguments to convert the first record of `input` with `opts` into `out`. Only
/// the first record: the coordinator ships one per file, and a second one would become a
/// second MODEL that Vina refuses as a ligand.
fn first_record_args(input: &Path, format: &str, opts: &[&str], out_format: &str, out: &Path) -> Vec<OsString> {
    let mut args = vec![OsString::from(format!("-i{format}")), input.as_os_str().to_owned()];
    args.extend(["-l", "1"].map(OsString::from));
    args.extend(opts.iter().map(OsString::from));
    args.extend([format!("-o{out_format}"), "-O".to_string()].map(OsString::from));
    args.push(out.as_os_str().to_owned());
    args
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The end of obabel's log, flattened to one line for error messages; the command line it
/// starts with is dropped (it names temporary files, not the problem).
async fn log_tail(log: &Path) -> String {
    let text = tokio::fs::read_to_string(log).await.unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '='))
        .collect();
    let joined = lines.join("; ");
    let n = joined.chars().count();
    if n > 400 {
        joined.chars().skip(n - 400).collect()
    } else {
        joined
    }
}

async fn remove_quietly(p: &Path) {
    if let Err(e) = tokio::fs::remove_file(p).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::debug!(path = %p.display(), error = %e, "cannot remove temporary file");
        }
    }
}

pub mod meeko;

#[cfg(test)]
mod tests;
