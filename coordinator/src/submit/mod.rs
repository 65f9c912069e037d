//! Turns a SubmitJob request into a validated `JobSpec`: every field and every molecule
//! record is checked before anything is queued; inputs are stored content-addressed, one
//! artifact per ligand record, and a rejected submission removes what it stored.
//!
//! What a submission may make the coordinator read and store is capped ([`SubmitLimits`]):
//! file sizes are checked before a file is copied to the scratch folder, gzip files while
//! they are decompressed. A refusal names the file, the limit and the flag that sets it.

mod geometry;
mod library;
mod stages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dockyard_common::artifact::{ArtifactKey, ArtifactStore};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;
use dockyard_common::spec::{
    DockBox, DockParams, EngineKind, Funnel, JobSpec, Preparation, SearchMode, DEFAULT_BATCH_SIZE, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S,
    MAX_SLEEP_TASKS,
};
use dockyard_proto::v1 as pb;

pub use library::Stored;

/// Caps on one submission; each has a coordinator flag (see `config.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmitLimits {
    /// Largest ligand record (one molecule), in bytes of text: `--max-record-bytes`.
    pub max_record_bytes: usize,
    /// Most bytes all ligand files of one job may hold, as sent (gzipped or not): `--max-library-bytes`.
    pub max_library_bytes: u64,
    /// Most bytes one gzipped ligand file may expand to: `--max-decompressed-bytes`.
    pub max_decompressed_bytes: u64,
    /// Most decompressed bytes per compressed byte of a gzipped ligand file: `--max-gzip-ratio`.
    pub max_gzip_ratio: u64,
    /// Largest receptor or autobox ligand file (read whole into memory): `--max-receptor-bytes`.
    pub max_receptor_bytes: u64,
}

impl Default for SubmitLimits {
    /// As the coordinator declares them (`config::CoordinatorSettings`).
    fn default() -> Self {
        crate::config::CoordinatorSettings::default().limits()
    }
}

/// How a refusal names the setting to change: the flag and its environment variable.
pub(crate) fn flag_hint(flag: &str) -> String {
    format!(
        "the coordinator's --{flag} / DOCKYARD_{}",
        flag.to_ascii_uppercase().replace('-', "_")
    )
}

/// A folder removed when dropped, unless [`ScratchDir::remove`] already did. A request
/// future is dropped at an `.await` when its client goes away, which skips cleanup code
/// written after that `.await`; the drop still runs.
pub(crate) struct ScratchDir {
    path: Option<PathBuf>,
}

impl ScratchDir {
    pub(crate) fn new(path: PathBuf) -> Self {
        ScratchDir { path: Some(path) }
    }

    pub(crate) async fn remove(mut self) {
        if let Some(p) = self.path.take() {
            let _ = tokio::fs::remove_dir_all(&p).await;
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            // Blocking, but only on the rare path where the request was abandoned.
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// A temporary file removed when dropped (see [`ScratchDir`] for why a drop guard): for
/// the upload handlers' `upload-*` / `artifact-*` files in the upload folder.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// More stages than any funnel needs; each is a job of its own.
pub const MAX_STAGES: usize = 8;

/// A validated job and what was left out of it.
pub struct Submission {
    pub spec: JobSpec,
    pub skipped: Vec<pb::SkippedRecord>,
}

/// Upload ids are `sha256:<hex>`; the key is rebuilt from the caller's organisation, so an id
/// can never name another tenant's object.
pub fn upload_key(org: &OrgId, upload_id: &str) -> Result<ArtifactKey, DockyardError> {
    let hex = upload_id
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| DockyardError::invalid("upload_id", format!("'{upload_id}' is not an id returned by UploadInput")))?;
    ArtifactKey::input(org, &hex.to_ascii_lowercase())
}

pub(crate) fn display_name(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    let base = cleaned.rsplit('/').next().unwrap_or(&cleaned).to_string();
    if base.is_empty() {
        "unnamed".to_string()
    } else {
        base
    }
}

/// Size of an input before it is fetched: the inline bytes, or the stored upload's size.
async fn input_size(field: &str, f: &pb::InputFile, org: &OrgId, store: &dyn ArtifactStore) -> Result<u64, DockyardError> {
    match &f.source {
        Some(pb::input_file::Source::Content(b)) => Ok(b.len() as u64),
        Some(pb::input_file::Source::UploadId(id)) => {
            let key = upload_key(org, id).map_err(|e| DockyardError::invalid(format!("{field}.upload_id"), e.to_string()))?;
            match store.head(&key).await? {
                Some(meta) => Ok(meta.size),
                None => Err(DockyardError::invalid(
                    format!("{field}.upload_id"),
                    format!("{id} was never uploaded"),
                )),
            }
        }
        // materialise() says what is missing.
        None => Ok(0),
    }
}

/// Refuses a file read whole into memory (receptor, autobox ligand) over the receptor cap.
async fn check_whole_file_size(
    field: &str,
    f: &pb::InputFile,
    org: &OrgId,
    store: &dyn ArtifactStore,
    limits: &SubmitLimits,
) -> Result<(), DockyardError> {
    let size = input_size(field, f, org, store).await?;
    if size > limits.max_receptor_bytes {
        return Err(DockyardError::invalid(
            field,
            format!(
                "'{}' is {size} bytes, over the {}-byte limit (set by {})",
                display_name(&f.name),
                limits.max_receptor_bytes,
                flag_hint("max-receptor-bytes")
            ),
        ));
    }
    Ok(())
}

/// Materialises an input (inline or uploaded) as a local file whose name keeps the
/// original extension, so the format (and gzip) is read from it.
async fn materialise(field: &str, f: &pb::InputFile, org: &OrgId, store: &dyn ArtifactStore, dir: &Path) -> Result<PathBuf, DockyardError> {
    let safe: String = display_name(&f.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A folder per input keeps the original file name, which names records without titles.
    let folder = dir.join(format!("{:016x}", rand::random::<u64>()));
    tokio::fs::create_dir_all(&folder).await?;
    let path = folder.join(safe);
    match &f.source {
        Some(pb::input_file::Source::Content(b)) => tokio::fs::write(&path, b).await?,
        Some(pb::input_file::Source::UploadId(id)) => {
            let key = upload_key(org, id).map_err(|e| DockyardError::invalid(format!("{field}.upload_id"), e.to_string()))?;
            store.get_to_file(&key, &path).await.map_err(|e| match e {
                DockyardError::NotFound { .. } => DockyardError::invalid(format!("{field}.upload_id"), format!("{id} was never uploaded")),
                other => other,
            })?;
        }
        None => {
            return Err(DockyardError::invalid(
                field,
                format!("'{}' has neither content nor upload_id", f.name),
            ))
        }
    }
    Ok(path)
}

fn scalars(req: &pb::SubmitJobRequest, org: &OrgId, now_ms: i64) -> Result<JobSpec, DockyardError> {
    let engine = EngineKind::parse(req.engine.trim())?;
    JobSpec::validate_scalars(req.priority, req.batch_size, req.max_attempts, req.timeout_s)?;
    let mut params = DockParams::from_proto(engine, req.params.as_ref())?;
    let preparation = Preparation::from_request(engine, &req.prepare, req.protonate)?;
    if req.name.chars().count() > 200 {
        return Err(DockyardError::invalid("name", "at most 200 characters"));
    }
    if req.gpus_per_task > 16 {
        return Err(DockyardError::invalid(
            "gpus_per_task",
            format!("{} must be 0-16", req.gpus_per_task),
        ));
    }
    let cpus_per_task = JobSpec::validate_cpus(req.cpus_per_task)?;
    if !engine.traits().accepts_gpus && req.gpus_per_task > 0 {
        return Err(DockyardError::invalid(
            "gpus_per_task",
            format!("{engine} runs on CPUs only; use 0"),
        ));
    }
    if params.extra.search_mode == Some(SearchMode::Gpu) && req.gpus_per_task == 0 {
        return Err(DockyardError::invalid(
            "params.search_mode",
            "gpu needs GPUs: ask for them per task (--gpus 1)",
        ));
    }
    // A task given GPUs searches on them unless told otherwise; said in the spec, so the
    // result cache tells a GPU search from a CPU one.
    if params.extra.search_mode.is_none() && req.gpus_per_task > 0 && engine.traits().search_modes.contains(&SearchMode::Gpu) {
        params.extra.search_mode = Some(SearchMode::Gpu);
    }
    for (k, v) in &req.labels {
        if k.is_empty() || k.len() > 63 || v.len() > 256 {
            return Err(DockyardError::invalid(
                "labels",
                format!("label '{k}': keys 1-63 bytes, values up to 256"),
            ));
        }
    }
    Ok(JobSpec {
        name: if req.name.is_empty() {
            String::new()
        } else {
            display_name(&req.name)
        },
        org: org.clone(),
        engine,
        priority: req.priority,
        batch_size: if req.batch_size == 0 { DEFAULT_BATCH_SIZE } else { req.batch_size },
        max_attempts: if req.max_attempts == 0 {
            DEFAULT_MAX_ATTEMPTS
        } else {
            req.max_attempts
        },
        timeout_s: if req.timeout_s == 0 { DEFAULT_TIMEOUT_S } else { req.timeout_s },
        gpus_per_task: req.gpus_per_task,
        cpus_per_task,
        dock_box: DockBox {
            center: [0.0; 3],
            size: [1.0; 3],
        },
        params,
        preparation,
        receptor: None,
        ligands: Vec::new(),
        sleep_tasks: 0,
        skipped: 0,
        fresh: req.fresh,
        cached: 0,
        labels: req.labels.clone().into_iter().collect::<BTreeMap<_, _>>(),
        created_at_ms: now_ms,
        funnel: None,
    })
}

/// Validates the request and stores its inputs; returns the spec to queue.
pub async fn build_spec(
    req: &pb::SubmitJobRequest,
    org: OrgId,
    store: Arc<dyn ArtifactStore>,
    scratch: &Path,
    now_ms: i64,
    limits: &SubmitLimits,
) -> Result<Submission, DockyardError> {
    if req.stages.len() > MAX_STAGES {
        return Err(DockyardError::invalid(
            "stages",
            format!("{} stages; a funnel has at most {MAX_STAGES}", req.stages.len()),
        ));
    }
    let funnel = !req.stages.is_empty();
    // A funnel's job runs its first stage: the job's settings with the stage's over them.
    let mut spec = if funnel {
        scalars(&stages::stage_request(req, 0), &org, now_ms).map_err(|e| match e {
            DockyardError::InvalidArgument { field, reason } => DockyardError::invalid(format!("stages[0].{field}"), reason),
            other => other,
        })?
    } else {
        scalars(req, &org, now_ms)?
    };
    if funnel && spec.engine == EngineKind::Sleep && req.sleep_task_count != 0 {
        return Err(DockyardError::invalid(
            "sleep_task_count",
            "a funnel docks a library: give ligand files, not a task count",
        ));
    }
    // In a funnel the test-only sleep engine takes a library, so later stages have made-up
    // scores to choose survivors by.
    if spec.engine == EngineKind::Sleep && !funnel {
        if req.receptor.is_some() || !req.ligands.is_empty() {
            return Err(DockyardError::invalid(
                "engine",
                "the sleep engine takes no input files; use sleep_task_count",
            ));
        }
        if req.sleep_task_count == 0 || req.sleep_task_count > MAX_SLEEP_TASKS {
            return Err(DockyardError::invalid(
                "sleep_task_count",
                format!("{} must be 1-{MAX_SLEEP_TASKS}", req.sleep_task_count),
            ));
        }
        spec.sleep_tasks = req.sleep_task_count;
        spec.batch_size = 1;
        return Ok(Submission { spec, skipped: Vec::new() });
    }
    if req.sleep_task_count != 0 {
        return Err(DockyardError::invalid(
            "sleep_task_count",
            "only the sleep engine takes a task count",
        ));
    }
    let receptor = req
        .receptor
        .as_ref()
        .ok_or_else(|| DockyardError::invalid("receptor", "missing; give a receptor PDBQT or PDB file"))?;
    if req.ligands.is_empty() {
        return Err(DockyardError::invalid(
            "ligands",
            "the library is empty; give at least one ligand file",
        ));
    }
    let dir = scratch.join(format!("submit-{:016x}", rand::random::<u64>()));
    let scratch_dir = ScratchDir::new(dir.clone());
    let result = async {
        let rec = library::read_receptor(receptor, &org, store.as_ref(), &dir, limits).await?;
        spec.dock_box = geometry::resolve_box(req, &rec.coords, &org, store.as_ref(), &dir, limits).await?;
        let lib = library::store_ligands(&req.ligands, req.skip_invalid, &org, Arc::clone(&store), &dir, limits).await?;
        // Only now is everything valid: store the receptor too.
        let rref = match library::store_receptor(rec, &org, store.as_ref()).await {
            Ok(r) => r,
            Err(e) => {
                lib.created.delete_all().await;
                return Err(e);
            }
        };
        spec.receptor = Some(rref);
        spec.skipped = lib.skipped_total;
        spec.ligands = lib.ligands;
        if funnel {
            match stages::resolve(req, &spec, &org, store.as_ref(), &dir, limits).await {
                Ok(plan) => {
                    spec.funnel = Some(Funnel {
                        stage: 0,
                        plan,
                        ..Funnel::default()
                    })
                }
                Err(e) => {
                    lib.created.delete_all().await;
                    return Err(e);
                }
            }
        }
        lib.created.keep();
        Ok(lib.skipped)
    }
    .await;
    scratch_dir.remove().await;
    let skipped = result?;
    Ok(Submission { spec, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPUs go only to the engines that use them: a GPU held by a CPU engine's task sits idle.
    #[test]
    fn gpus_only_for_engines_that_use_them() {
        let org = OrgId::default_org();
        for (engine, takes_gpus) in [("vina", false), ("smina", false), ("gnina", true), ("sleep", true)] {
            let req = pb::SubmitJobRequest {
                engine: engine.into(),
                gpus_per_task: 1,
                ..Default::default()
            };
            match scalars(&req, &org, 0) {
                Ok(spec) => assert!(takes_gpus && spec.gpus_per_task == 1, "{engine} took a GPU"),
                Err(e) => assert!(
                    !takes_gpus && e.to_string().contains(&format!("{engine} runs on CPUs only")),
                    "{engine}: {e}"
                ),
            }
        }
    }

    #[test]
    fn limit_flags_resolve_with_defaults_and_zero_is_refused() {
        use crate::config::tests::settings_from;
        let c = settings_from(&[
            "--max-record-bytes",
            "5000",
            "--max-gzip-ratio",
            "20",
            "--max-message-bytes",
            "1048576",
        ])
        .and_then(|s| s.resolve())
        .expect("limits");
        let d = SubmitLimits::default();
        assert_eq!(
            c.limits,
            SubmitLimits {
                max_record_bytes: 5000,
                max_gzip_ratio: 20,
                ..d
            }
        );
        assert_eq!(c.max_message_bytes, 1 << 20);
        assert_eq!(c.max_upload_bytes, 4 << 30);
        let e = settings_from(&["--max-gzip-ratio", "0"])
            .and_then(|s| s.resolve())
            .expect_err("a ratio of 0 refuses every gzip file");
        assert!(e.to_string().contains("max_gzip_ratio"), "{e}");
        assert_eq!(
            flag_hint("max-gzip-ratio"),
            "the coordinator's --max-gzip-ratio / DOCKYARD_MAX_GZIP_RATIO"
        );
    }
}
