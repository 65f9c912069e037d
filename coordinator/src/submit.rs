//! Turns a SubmitJob request into a validated `JobSpec`: every field and every molecule is
//! checked before anything is stored or queued, and input files are stored content-addressed.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use dockyard_common::artifact::{input_key, sha256_hex, ArtifactKey, ArtifactStore};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;
use dockyard_common::molecule::{split_models, validate_ligand, validate_receptor};
use dockyard_common::spec::{
    DockBox, DockParams, EngineKind, InputRef, JobSpec, DEFAULT_BATCH_SIZE, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S, MAX_SLEEP_TASKS,
};
use dockyard_proto::v1 as pb;

use crate::api::convert::dock_box;

/// Upload ids are `sha256:<hex>`; the key is rebuilt from the caller's organisation, so an id
/// can never name another tenant's object.
pub fn upload_key(org: &OrgId, upload_id: &str) -> Result<ArtifactKey, DockyardError> {
    let hex = upload_id
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| DockyardError::invalid("upload_id", format!("'{upload_id}' is not an id returned by UploadInput")))?;
    input_key(org, &hex.to_ascii_lowercase())
}

async fn input_bytes(field: &str, f: &pb::InputFile, org: &OrgId, store: &dyn ArtifactStore) -> Result<Bytes, DockyardError> {
    match &f.source {
        Some(pb::input_file::Source::Content(b)) => Ok(Bytes::copy_from_slice(b)),
        Some(pb::input_file::Source::UploadId(id)) => {
            let key = upload_key(org, id).map_err(|e| DockyardError::invalid(format!("{field}.upload_id"), e.to_string()))?;
            store.get(&key).await.map_err(|e| match e {
                DockyardError::NotFound { .. } => DockyardError::invalid(format!("{field}.upload_id"), format!("{id} was never uploaded")),
                other => other,
            })
        }
        None => Err(DockyardError::invalid(
            field,
            format!("'{}' has neither content nor upload_id", f.name),
        )),
    }
}

fn display_name(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    let base = cleaned.rsplit('/').next().unwrap_or(&cleaned).to_string();
    if base.is_empty() {
        "unnamed".to_string()
    } else {
        base
    }
}

fn stem(name: &str) -> String {
    let n = display_name(name);
    n.strip_suffix(".pdbqt").map(str::to_string).unwrap_or(n)
}

fn text<'a>(field: &str, name: &str, b: &'a [u8]) -> Result<&'a str, DockyardError> {
    std::str::from_utf8(b).map_err(|e| DockyardError::invalid(field, format!("'{name}' is not a text PDBQT file ({e})")))
}

fn check_format(field: &str, name: &str) -> Result<(), DockyardError> {
    let lower = name.to_ascii_lowercase();
    for ext in [".sdf", ".sdf.gz", ".mol2", ".smi", ".smiles", ".pdb", ".mol"] {
        if lower.ends_with(ext) {
            return Err(DockyardError::invalid(
                field,
                format!("'{name}': this version accepts PDBQT only; convert with `obabel {name} -O out.pdbqt`"),
            ));
        }
    }
    Ok(())
}

/// Validates the request and stores its inputs; returns the spec to queue.
pub async fn build_spec(
    req: &pb::SubmitJobRequest,
    org: OrgId,
    store: Arc<dyn ArtifactStore>,
    now_ms: i64,
) -> Result<JobSpec, DockyardError> {
    let engine = EngineKind::parse(req.engine.trim())?;
    JobSpec::validate_scalars(req.priority, req.batch_size, req.max_attempts, req.timeout_s)?;
    let p = req.params.unwrap_or_default();
    let params = DockParams::from_request(p.exhaustiveness, p.num_modes, p.seed, p.energy_range, p.sleep_ms)?;
    if req.name.chars().count() > 200 {
        return Err(DockyardError::invalid("name", "at most 200 characters"));
    }
    if req.gpus_per_task > 16 {
        return Err(DockyardError::invalid(
            "gpus_per_task",
            format!("{} must be 0-16", req.gpus_per_task),
        ));
    }
    if engine == EngineKind::Vina && req.gpus_per_task > 0 {
        return Err(DockyardError::invalid("gpus_per_task", "vina runs on CPUs only; use 0"));
    }
    for (k, v) in &req.labels {
        if k.is_empty() || k.len() > 63 || v.len() > 256 {
            return Err(DockyardError::invalid(
                "labels",
                format!("label '{k}': keys 1-63 bytes, values up to 256"),
            ));
        }
    }
    let mut spec = JobSpec {
        name: display_name(&req.name),
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
        dock_box: DockBox {
            center: [0.0; 3],
            size: [1.0; 3],
        },
        params,
        receptor: None,
        ligands: Vec::new(),
        sleep_tasks: 0,
        labels: req.labels.clone().into_iter().collect::<BTreeMap<_, _>>(),
        created_at_ms: now_ms,
    };
    if req.name.is_empty() {
        spec.name = String::new();
    }

    if engine == EngineKind::Sleep {
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
        return Ok(spec);
    }
    if req.sleep_task_count != 0 {
        return Err(DockyardError::invalid(
            "sleep_task_count",
            "only the sleep engine takes a task count",
        ));
    }
    spec.dock_box = dock_box(req.r#box.as_ref())?;

    let receptor = req
        .receptor
        .as_ref()
        .ok_or_else(|| DockyardError::invalid("receptor", "missing; give a receptor PDBQT file"))?;
    check_format("receptor", &receptor.name)?;
    let rbytes = input_bytes("receptor", receptor, &org, store.as_ref()).await?;
    let rtext = text("receptor", &receptor.name, &rbytes)?;
    validate_receptor(rtext).map_err(|e| DockyardError::invalid("receptor", format!("'{}' {e}", display_name(&receptor.name))))?;

    if req.ligands.is_empty() {
        return Err(DockyardError::invalid(
            "ligands",
            "the library is empty; give at least one ligand PDBQT file",
        ));
    }
    // Validate everything before storing anything, so a bad library leaves nothing behind.
    let mut ligands: Vec<(String, Bytes)> = Vec::new();
    for (i, f) in req.ligands.iter().enumerate() {
        let field = format!("ligands[{i}]");
        check_format(&field, &f.name)?;
        let b = input_bytes(&field, f, &org, store.as_ref()).await?;
        let t = text(&field, &f.name, &b)?;
        let models = split_models(t);
        if models.is_empty() {
            return Err(DockyardError::invalid(
                field,
                format!("'{}' holds no ligand", display_name(&f.name)),
            ));
        }
        let many = models.len() > 1;
        for (k, (title, body)) in models.into_iter().enumerate() {
            let summary = validate_ligand(&body).map_err(|e| {
                let rec = if many { format!(" record {}", k + 1) } else { String::new() };
                DockyardError::invalid(field.clone(), format!("'{}'{rec} {e}", display_name(&f.name)))
            })?;
            let name = match (title.or(summary.title), many) {
                (Some(t), _) if !t.trim().is_empty() => display_name(t.trim()),
                (_, true) => format!("{}_{}", stem(&f.name), k + 1),
                (_, false) => stem(&f.name),
            };
            ligands.push((name, Bytes::from(body.into_bytes())));
        }
    }

    let rkey = input_key(&org, &sha256_hex(&rbytes))?;
    let rsize = rbytes.len() as u64;
    store.put(&rkey, rbytes).await?;
    spec.receptor = Some(InputRef {
        name: display_name(&receptor.name),
        key: rkey.to_string(),
        size: rsize,
    });
    let org2 = org.clone();
    spec.ligands = futures::stream::iter(ligands.into_iter().map(move |(name, body)| {
        let store = store.clone();
        let org = org2.clone();
        async move {
            let key = input_key(&org, &sha256_hex(&body))?;
            let size = body.len() as u64;
            if store.head(&key).await?.is_none() {
                store.put(&key, body).await?;
            }
            Ok::<_, DockyardError>(InputRef {
                name,
                key: key.to_string(),
                size,
            })
        }
    }))
    .buffered(16)
    .try_collect()
    .await?;
    Ok(spec)
}
