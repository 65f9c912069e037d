//! Reading the receptor and the ligand library record by record, storing each valid ligand
//! record as its own content-addressed artifact while the file streams in.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use dockyard_common::artifact::{input_key, sha256_hex, ArtifactKey, ArtifactStore};
use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;
use dockyard_common::molecule::coords::atom_coords;
use dockyard_common::molecule::{open_library, read_library, validate_receptor, LibraryFormat, MolRecord, RecordError};
use dockyard_common::spec::InputRef;
use dockyard_proto::v1 as pb;

use super::{display_name, materialise};

/// Errors listed in a rejection; the rest are counted.
const MAX_LISTED_ERRORS: usize = 5;
/// Skipped records kept for the job report; the rest are counted.
const MAX_KEPT_SKIPS: usize = 1000;
const FORMATS: &str = ".pdbqt, .sdf, .mol2, .smi, .pdb (optionally .gz)";

pub struct ReceptorInput {
    name: String,
    format: LibraryFormat,
    bytes: Bytes,
    pub coords: Vec<[f64; 3]>,
}

pub async fn read_receptor(f: &pb::InputFile, org: &OrgId, store: &dyn ArtifactStore, dir: &Path) -> Result<ReceptorInput, DockyardError> {
    let name = display_name(&f.name);
    let format = match LibraryFormat::from_name(&name) {
        Some(fmt @ (LibraryFormat::Pdbqt | LibraryFormat::Pdb)) if !name.to_ascii_lowercase().ends_with(".gz") => fmt,
        _ => {
            return Err(DockyardError::invalid(
                "receptor",
                format!("'{name}' must be a .pdbqt or .pdb file"),
            ))
        }
    };
    let path = materialise("receptor", f, org, store, dir).await?;
    let bytes = Bytes::from(tokio::fs::read(&path).await?);
    let text = std::str::from_utf8(&bytes).map_err(|e| DockyardError::invalid("receptor", format!("'{name}' is not a text file ({e})")))?;
    match format {
        LibraryFormat::Pdbqt => {
            validate_receptor(text).map_err(|e| DockyardError::invalid("receptor", format!("'{name}' {e}")))?;
        }
        _ => match read_library(std::io::Cursor::new(text.as_bytes()), LibraryFormat::Pdb, "receptor").next() {
            Some(Ok(r)) if r.atoms > 0 => {}
            Some(Err(e)) => {
                return Err(DockyardError::invalid(
                    "receptor",
                    format!("'{name}' line {}: {}", e.line, e.reason),
                ))
            }
            _ => return Err(DockyardError::invalid("receptor", format!("'{name}' has no atoms"))),
        },
    }
    let coords = atom_coords(text, format);
    Ok(ReceptorInput {
        name,
        format,
        bytes,
        coords,
    })
}

pub async fn store_receptor(r: ReceptorInput, org: &OrgId, store: &dyn ArtifactStore) -> Result<InputRef, DockyardError> {
    let key = input_key(org, &sha256_hex(&r.bytes))?;
    let size = r.bytes.len() as u64;
    store.put(&key, r.bytes).await?;
    Ok(InputRef {
        name: r.name,
        key: key.to_string(),
        size,
        format: r.format.extension().to_string(),
    })
}

pub struct Stored {
    pub ligands: Vec<InputRef>,
    pub skipped: Vec<pb::SkippedRecord>,
    pub skipped_total: u32,
}

enum Item {
    Record(usize, MolRecord),
    Bad(usize, RecordError),
    /// The file itself could not be read (unknown format, I/O error).
    File(usize, String),
}

/// Streams every ligand file record by record (on a blocking thread) and stores each valid
/// record as it arrives. Without `skip_invalid` the first invalid record rejects the job and
/// every object this call created is deleted again.
pub async fn store_ligands(
    files: &[pb::InputFile],
    skip_invalid: bool,
    org: &OrgId,
    store: Arc<dyn ArtifactStore>,
    dir: &Path,
) -> Result<Stored, DockyardError> {
    let mut paths = Vec::with_capacity(files.len());
    let mut names = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let name = display_name(&f.name);
        if LibraryFormat::from_name(&name).is_none() {
            return Err(DockyardError::invalid(
                format!("ligands[{i}]"),
                format!("'{name}': unknown format; use {FORMATS}"),
            ));
        }
        paths.push(materialise(&format!("ligands[{i}]"), f, org, store.as_ref(), dir).await?);
        names.push(name);
    }
    let (tx, mut rx) = mpsc::channel::<Item>(256);
    let reader = tokio::task::spawn_blocking(move || {
        for (i, path) in paths.iter().enumerate() {
            let iter = match open_library(path) {
                Ok((_, iter)) => iter,
                Err(e) => {
                    let _ = tx.blocking_send(Item::File(i, e.to_string()));
                    return;
                }
            };
            for item in iter {
                let msg = match item {
                    Ok(r) => Item::Record(i, r),
                    Err(e) => Item::Bad(i, e),
                };
                if tx.blocking_send(msg).is_err() {
                    // The submission was rejected; stop reading.
                    return;
                }
            }
        }
    });

    let mut created: Vec<ArtifactKey> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Stored {
        ligands: Vec::new(),
        skipped: Vec::new(),
        skipped_total: 0,
    };
    // Per file: (first ligand position, records seen), to name a lone untitled record after its file.
    let mut per_file: Vec<(usize, usize)> = vec![(usize::MAX, 0); names.len()];
    let mut errors: Vec<String> = Vec::new();
    let mut failure: Option<DockyardError> = None;
    while let Some(item) = rx.recv().await {
        match item {
            Item::Record(i, r) => {
                let slot = &mut per_file[i];
                if slot.0 == usize::MAX {
                    slot.0 = out.ligands.len();
                }
                slot.1 += 1;
                let body = Bytes::from(r.text.into_bytes());
                let key = match input_key(org, &sha256_hex(&body)) {
                    Ok(k) => k,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                let size = body.len() as u64;
                if seen.insert(key.to_string()) {
                    let exists = match store.head(&key).await {
                        Ok(h) => h.is_some(),
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    };
                    if !exists {
                        if let Err(e) = store.put(&key, body).await {
                            failure = Some(e);
                            break;
                        }
                        created.push(key.clone());
                    }
                }
                out.ligands.push(InputRef {
                    name: r.name,
                    key: key.to_string(),
                    size,
                    format: r.format.extension().to_string(),
                });
            }
            Item::Bad(i, e) => {
                let text = format!("'{}' line {}, record {} '{}': {}", names[i], e.line, e.index + 1, e.name, e.reason);
                if skip_invalid {
                    out.skipped_total += 1;
                    if out.skipped.len() < MAX_KEPT_SKIPS {
                        out.skipped.push(pb::SkippedRecord {
                            file: names[i].clone(),
                            record: (e.index + 1) as u32,
                            name: e.name,
                            line: e.line as u32,
                            reason: e.reason,
                        });
                    }
                } else {
                    errors.push(format!("ligands[{i}]: {text}"));
                    if errors.len() >= MAX_LISTED_ERRORS {
                        break;
                    }
                }
            }
            Item::File(i, e) => {
                failure = Some(DockyardError::invalid(format!("ligands[{i}]"), format!("'{}': {e}", names[i])));
                break;
            }
        }
    }
    drop(rx);
    let _ = reader.await;
    if failure.is_none() && !errors.is_empty() {
        let field = errors[0].split(':').next().unwrap_or("ligands").to_string();
        let listed: Vec<String> = errors
            .iter()
            .map(|e| e.split_once(": ").map(|(_, r)| r.to_string()).unwrap_or_else(|| e.clone()))
            .collect();
        let more = if errors.len() >= MAX_LISTED_ERRORS {
            " (first errors shown; fix them or submit with skip_invalid)"
        } else {
            ""
        };
        failure = Some(DockyardError::invalid(field, format!("{}{more}", listed.join("; "))));
    }
    for (i, (first, count)) in per_file.iter().enumerate() {
        let stem = names[i].split('.').next().unwrap_or("");
        if *count == 1 && !stem.is_empty() {
            if let Some(l) = out.ligands.get_mut(*first) {
                if l.name == format!("{stem}_1") {
                    l.name = stem.to_string();
                }
            }
        }
    }
    if failure.is_none() && out.ligands.is_empty() {
        failure = Some(DockyardError::invalid(
            "ligands",
            format!("the library has no valid ligand ({} skipped)", out.skipped_total),
        ));
    }
    if let Some(e) = failure {
        // Nothing half-submitted is left behind.
        for k in created {
            let _ = store.delete(&k).await;
        }
        return Err(e);
    }
    Ok(out)
}
